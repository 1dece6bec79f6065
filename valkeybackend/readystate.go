package valkeybackend

import (
	"sync"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// readyState is what this client knows of each lane's eligible set per
// partition: ready (non-empty), empty, or unknown (never read, invalidated
// by the server since, or older than the readiness TTL). ReadyPartitions
// reads only the unknown ones, so a claim round costs the partitions that
// changed, not all of them: with 1,024 partitions, rebuilding and looking up
// 1,024 cached reads per round was most of a job's client allocations.
//
// Each invalidation bumps the partition's generation; a read stores its
// answer only if the generation did not move while it was in flight, so an
// invalidation that overtakes a read is never lost.
type readyState struct {
	mu    sync.Mutex
	lanes map[sdk.LaneID]*laneState
}

type partState int8

const (
	partUnknown partState = iota
	partEmpty
	partReady
)

type laneState struct {
	state  []partState
	gen    []uint32
	readAt []int64 // unix ns of the stored answer
}

// lane returns lane's state, sized for partitions. Call with mu held.
func (r *readyState) lane(lane sdk.LaneID, partitions int) *laneState {
	if r.lanes == nil {
		r.lanes = make(map[sdk.LaneID]*laneState)
	}
	ls := r.lanes[lane]
	if ls == nil {
		ls = &laneState{state: make([]partState, partitions), gen: make([]uint32, partitions),
			readAt: make([]int64, partitions)}
		r.lanes[lane] = ls
	}
	return ls
}

// eligibleRef is an invalidated eligible set: its key, parsed once.
type eligibleRef struct {
	key       string
	lane      sdk.LaneID
	partition int
}

// eligibleRefs keeps the eligible-set keys of keys, parsed.
func (k *keyspace) eligibleRefs(keys []string) []eligibleRef {
	refs := make([]eligibleRef, 0, len(keys))
	for _, key := range keys {
		if lane, p, ok := k.eligibleKeyParts(key); ok {
			refs = append(refs, eligibleRef{key: key, lane: lane, partition: p})
		}
	}
	return refs
}

// invalidate marks the eligible sets refs names unknown and reports, per
// ref, whether its set was known empty: a change to such a set is the
// change arrivals announce.
func (r *readyState) invalidate(refs []eligibleRef) (wasEmpty []bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	wasEmpty = make([]bool, len(refs))
	for i, ref := range refs {
		p := ref.partition
		ls := r.lanes[ref.lane]
		if ls == nil || p >= len(ls.state) {
			continue
		}
		wasEmpty[i] = ls.state[p] == partEmpty
		ls.state[p] = partUnknown
		ls.gen[p]++
	}
	return wasEmpty
}

// forget marks everything unknown (the client's cache was flushed: a
// reconnect).
func (r *readyState) forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ls := range r.lanes {
		for p := range ls.state {
			ls.state[p] = partUnknown
			ls.gen[p]++
		}
	}
}

// split sorts partitions into the ready ones this client knows of and the
// unknown ones (with their generations) that need a read.
func (r *readyState) split(lane sdk.LaneID, partitions []int, total int, ttl time.Duration) (ready, unknown []int, gens []uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ls := r.lane(lane, total)
	stale := time.Now().Add(-ttl).UnixNano()
	for _, p := range partitions {
		switch {
		case ls.state[p] == partUnknown || ls.readAt[p] < stale:
			unknown = append(unknown, p)
			gens = append(gens, ls.gen[p])
		case ls.state[p] == partReady:
			ready = append(ready, p)
		}
	}
	return ready, unknown, gens
}

// store records what reads of partitions (taken at gens) found.
func (r *readyState) store(lane sdk.LaneID, partitions []int, gens []uint32, nonEmpty []bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ls := r.lanes[lane]
	if ls == nil {
		return
	}
	now := time.Now().UnixNano()
	for i, p := range partitions {
		if ls.gen[p] != gens[i] {
			continue // invalidated while the read was in flight: stays unknown
		}
		ls.state[p] = partEmpty
		if nonEmpty[i] {
			ls.state[p] = partReady
		}
		ls.readAt[p] = now
	}
}
