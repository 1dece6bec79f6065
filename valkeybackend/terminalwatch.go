package valkeybackend

import (
	"context"
	"sync"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Waiting for an execution to end without polling (sdk.TerminalWatcher):
// the waiter reads the execution's state through the client-side cache, so
// the server tracks the read and pushes an invalidation the moment the
// record changes; only then does the waiter read again. Nothing is written
// and no command runs on the execution's path for it: a job nobody waits
// for pays nothing.

var _ sdk.TerminalWatcher = (*Backend)(nil)

// keyWaiters wakes callers waiting for keys they read through the
// client-side cache to change: the server's invalidation push names the
// key (AwaitTerminal: an execution record; SubscribeCompletions: terminal
// indexes).
type keyWaiters struct {
	mu sync.Mutex
	m  map[string]map[chan struct{}]struct{} // key -> waiters
}

// add registers ch (buffered, 1) on keys; the returned func removes it.
func (w *keyWaiters) add(ch chan struct{}, keys ...string) func() {
	w.mu.Lock()
	if w.m == nil {
		w.m = map[string]map[chan struct{}]struct{}{}
	}
	for _, key := range keys {
		set := w.m[key]
		if set == nil {
			set = map[chan struct{}]struct{}{}
			w.m[key] = set
		}
		set[ch] = struct{}{}
	}
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		for _, key := range keys {
			if set := w.m[key]; set != nil {
				delete(set, ch)
				if len(set) == 0 {
					delete(w.m, key)
				}
			}
		}
		w.mu.Unlock()
	}
}

// wake signals the waiters of keys, or every waiter with all (a lost
// connection or a flushed cache: any tracked read may be stale).
func (w *keyWaiters) wake(keys []string, all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.m) == 0 {
		return
	}
	signal := func(set map[chan struct{}]struct{}) {
		for ch := range set {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	if all {
		for _, set := range w.m {
			signal(set)
		}
		return
	}
	for _, k := range keys {
		if set := w.m[k]; set != nil {
			signal(set)
		}
	}
}

// terminalReadTTL bounds a cached state read between invalidations (they
// keep it exact; the TTL is a safety net). Execution records carry no TTL,
// so the static-TTL read is exact and needs no PTTL (nor MULTI, which the
// worker's ACL recipe does not grant).
const terminalReadTTL = time.Minute

// AwaitTerminal waits until execution id is in a terminal state and returns
// it (sdk.TerminalWatcher). Unavailable when client-side caching is off.
func (b *Backend) AwaitTerminal(ctx context.Context, id sdk.ExecutionID) (sdk.PublicState, error) {
	const op = "await_terminal"
	if b.opts.CacheSizeEachConn < 0 {
		return "", sdk.Unavailable(op)
	}
	if _, err := b.partitionOf(op, id); err != nil {
		return "", err
	}
	key := b.ks.coreKey(id)
	ch := make(chan struct{}, 1)
	defer b.terminal.add(ch, key)()
	failures := 0
	for {
		st, err := b.client.DoCache(ctx, b.client.B().Hget().Key(key).Field("state").Cache().ToStaticTTL(), terminalReadTTL).ToString()
		switch {
		case isNil(err):
			return "", sdk.NewError(op, sdk.CodeExecutionNotFound, "")
		case err != nil:
			if ctx.Err() != nil {
				return "", backendError(op, ctx.Err())
			}
			failures++
			if failures > 50 {
				return "", backendError(op, err)
			}
			// A broken connection wakes every waiter when it reconnects;
			// until then, back off.
			select {
			case <-ch:
			case <-time.After(min(time.Duration(failures)*20*time.Millisecond, time.Second)):
			case <-ctx.Done():
				return "", backendError(op, ctx.Err())
			}
			continue
		}
		failures = 0
		if s := sdk.PublicState(st); s.Terminal() {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return "", backendError(op, ctx.Err())
		}
	}
}
