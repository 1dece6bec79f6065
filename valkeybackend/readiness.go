package valkeybackend

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// ReadinessCacheTTLDefault bounds how long a cached readiness count lives
// without an invalidation. Invalidation pushes keep it exact; the TTL is a
// safety net, and it sets an idle worker's cost: lanes × partitions reads
// per TTL.
const ReadinessCacheTTLDefault = 5 * time.Minute

// watchers fans server invalidations of eligible sets out to idle workers.
type watchers struct {
	mu     sync.Mutex
	byLane map[sdk.LaneID]map[chan struct{}]struct{}
	all    map[chan struct{}]struct{}
	// prefetch starts re-reading an eligible head a woken worker is about to
	// read, so the read overlaps the worker's wake-up instead of following it.
	prefetch func(key string)
	// awaitsArrivals reports whether workers here wait for arrivals on a
	// lane. The wake-up for a set that was empty is then held back by
	// arrivalGrace: the change is likely a create whose arrival is a hop
	// behind, and a worker woken first would read the set (a round trip)
	// instead of claiming the arrival at once.
	awaitsArrivals func(lane sdk.LaneID) bool
}

// arrivalGrace is how long readiness holds back a wake-up for an arrival
// (see watchers.awaitsArrivals); the arrival usually comes within tens of µs.
const arrivalGrace = 300 * time.Microsecond

// wakeAll wakes every watcher (a reconnect emptied the cache).
func (w *watchers) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.all {
		wake(ch)
	}
}

// invalidated wakes the watchers of the eligible sets refs names
// (wasEmpty: each set was known empty before).
func (w *watchers) invalidated(refs []eligibleRef, wasEmpty []bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, ref := range refs {
		lane, key := ref.lane, ref.key
		if len(w.byLane[lane]) == 0 {
			continue
		}
		idle := false // a watcher without a wake-up pending: it will read
		for ch := range w.byLane[lane] {
			idle = idle || len(ch) == 0
		}
		if idle && w.prefetch != nil {
			w.prefetch(key)
		}
		if wasEmpty[i] && w.awaitsArrivals != nil && w.awaitsArrivals(lane) {
			time.AfterFunc(arrivalGrace, func() { w.wakeLane(lane) })
			continue
		}
		for ch := range w.byLane[lane] {
			wake(ch)
		}
	}
}

// wakeLane wakes lane's watchers.
func (w *watchers) wakeLane(lane sdk.LaneID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.byLane[lane] {
		wake(ch)
	}
}

// wake signals ch unless a signal is already pending; it reports whether it
// signalled.
func wake(ch chan struct{}) bool {
	select {
	case ch <- struct{}{}:
		return true
	default:
		return false
	}
}

// headDepth is how many ids of an eligible set's head the readiness cache
// holds: enough for a worker's scan (sdk reads at most 16 per partition), so
// a scan right after a readiness check is served from the same entries.
const headDepth = 16

// headCmdOfKey is the cached read of an eligible set's head. One command
// serves both readiness (non-empty?) and scans (which ids?).
func (b *Backend) headCmdOfKey(key string) valkey.CacheableTTL {
	return valkey.CT(b.client.B().Zrange().Key(key).Min("0").Max(itoa(headDepth-1)).Withscores().Cache().ToStaticTTL(),
		b.opts.ReadinessCacheTTL)
}

// prefetchHead re-reads an invalidated head in the background; a worker's
// read of it joins the one in flight (valkey-go shares cache fills).
func (b *Backend) prefetchHead(key string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.ConnWriteTimeout)
		defer cancel()
		b.client.DoMultiCache(ctx, b.headCmdOfKey(key))
	}()
}

// cachedHeads reads the heads of lane's eligible sets on partitions (the
// callers have checked them) through the client-side cache.
func (b *Backend) cachedHeads(ctx context.Context, op string, lane sdk.LaneID, partitions []int) ([][]sdk.RankedID, error) {
	cmds := make([]valkey.CacheableTTL, 0, len(partitions))
	for _, p := range partitions {
		cmds = append(cmds, b.headCmdOfKey(b.ks.laneKeysOf(sdk.PartitionTag(p), lane).eligible))
	}
	out := make([][]sdk.RankedID, len(partitions))
	for i, res := range b.client.DoMultiCache(ctx, cmds...) {
		ids, err := rankedIDs(res)
		if err != nil {
			return nil, backendError(op, err)
		}
		out[i] = ids
	}
	return out, nil
}

// ReadyPartitions returns the partitions whose eligible set for lane is not
// empty, ascending. What it knows it answers from memory (readyState); the
// rest it reads through the client-side cache (ZRANGE under RESP3
// tracking): while nothing changes a call costs no round trip, and the
// server's invalidation push marks a head unknown the moment its set
// changes.
func (b *Backend) ReadyPartitions(ctx context.Context, lane sdk.LaneID, partitions []int) ([]int, error) {
	const op = "ready_partitions"
	if err := lane.Validate(); err != nil {
		return nil, opError(op, err)
	}
	if b.opts.CacheSizeEachConn < 0 {
		return nil, sdk.Unavailable(op)
	}
	for _, p := range partitions {
		if err := b.checkPartition(op, p); err != nil {
			return nil, err
		}
	}
	ready, unknown, gens := b.ready.split(lane, partitions, b.partitions, b.opts.ReadinessCacheTTL)
	if len(unknown) == 0 {
		return ready, nil
	}
	heads, err := b.cachedHeads(ctx, op, lane, unknown)
	if err != nil {
		return nil, err
	}
	nonEmpty := make([]bool, len(heads))
	for i, ids := range heads {
		nonEmpty[i] = len(ids) > 0
		if nonEmpty[i] {
			ready = append(ready, unknown[i])
		}
	}
	b.ready.store(lane, unknown, gens, nonEmpty)
	slices.Sort(ready)
	return ready, nil
}

// WatchReadiness returns a channel that receives (coalesced) when an eligible
// set of one of the lanes changes, as told by the server's invalidation
// pushes for counts ReadyPartitions has read. It closes when ctx ends.
func (b *Backend) WatchReadiness(ctx context.Context, lanes []sdk.LaneID) (<-chan struct{}, error) {
	const op = "watch_readiness"
	if b.opts.CacheSizeEachConn < 0 {
		return nil, sdk.Unavailable(op)
	}
	for _, l := range lanes {
		if err := l.Validate(); err != nil {
			return nil, opError(op, err)
		}
	}
	ch := make(chan struct{}, 1)
	w := &b.watch
	w.mu.Lock()
	if w.byLane == nil {
		w.byLane = make(map[sdk.LaneID]map[chan struct{}]struct{})
		w.all = make(map[chan struct{}]struct{})
	}
	for _, l := range lanes {
		if w.byLane[l] == nil {
			w.byLane[l] = make(map[chan struct{}]struct{})
		}
		w.byLane[l][ch] = struct{}{}
	}
	w.all[ch] = struct{}{}
	w.mu.Unlock()
	go func() {
		<-ctx.Done()
		w.mu.Lock()
		for _, l := range lanes {
			delete(w.byLane[l], ch)
		}
		delete(w.all, ch)
		w.mu.Unlock()
		close(ch)
	}()
	return ch, nil
}
