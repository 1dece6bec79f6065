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
	st, _, err := b.awaitTerminal(ctx, "await_terminal", id, false)
	return st, err
}

// AwaitResult is AwaitTerminal that also returns a completed execution's
// result (sdk.TerminalWatcher). Each read after the server's push goes out
// beside a read of the state and the result (GetExecutionResult's pipelined
// pair, which is consistent on its own), so an execution that completed
// costs its waiter one round trip after the push, not two. The first read
// goes alone: an execution that had already ended reads its result after.
func (b *Backend) AwaitResult(ctx context.Context, id sdk.ExecutionID) (sdk.PublicState, []byte, error) {
	return b.awaitTerminal(ctx, "await_result", id, true)
}

// stateRead is a stateAndResult reply.
type stateRead struct {
	state sdk.PublicState
	res   []byte
	err   error
}

func (b *Backend) awaitTerminal(ctx context.Context, op string, id sdk.ExecutionID, withResult bool) (sdk.PublicState, []byte, error) {
	if b.opts.CacheSizeEachConn < 0 {
		return "", nil, sdk.Unavailable(op)
	}
	if _, err := b.partitionOf(op, id); err != nil {
		return "", nil, err
	}
	key := b.ks.coreKey(id)
	ch := make(chan struct{}, 1)
	defer b.terminal.add(ch, key)()
	failures := 0
	woken := false
	for {
		var pair chan stateRead
		if withResult && woken {
			pair = make(chan stateRead, 1)
			go func() {
				st, res, err := b.stateAndResult(ctx, op, id)
				pair <- stateRead{st, res, err}
			}()
		}
		st, err := b.client.DoCache(ctx, b.client.B().Hget().Key(key).Field("state").Cache().ToStaticTTL(), terminalReadTTL).ToString()
		var p stateRead
		if pair != nil {
			p = <-pair
		}
		switch {
		case isNil(err):
			return "", nil, sdk.NewError(op, sdk.CodeExecutionNotFound, "")
		case err != nil:
			if ctx.Err() != nil {
				return "", nil, backendError(op, ctx.Err())
			}
			failures++
			if failures > 50 {
				return "", nil, backendError(op, err)
			}
			// A broken connection wakes every waiter when it reconnects;
			// until then, back off.
			select {
			case <-ch:
				woken = true
			case <-time.After(min(time.Duration(failures)*20*time.Millisecond, time.Second)):
			case <-ctx.Done():
				return "", nil, backendError(op, ctx.Err())
			}
			continue
		}
		failures = 0
		// The pair, read beside the tracked read, answers when it saw the
		// end (before or after the tracked read: it is consistent alone).
		if p.err == nil && p.state.Terminal() {
			return p.state, p.res, nil
		}
		if s := sdk.PublicState(st); s.Terminal() {
			if !withResult || s != sdk.StateCompleted {
				return s, nil, nil
			}
			res, err := b.GetExecutionResult(ctx, id)
			return s, res, err
		}
		select {
		case <-ch:
			woken = true
		case <-ctx.Done():
			return "", nil, backendError(op, ctx.Err())
		}
	}
}
