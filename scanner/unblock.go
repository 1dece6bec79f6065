package scanner

import (
	"context"
	"sync"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// UnblockBackend is what the unblock scanner needs of the backend.
type UnblockBackend interface {
	Blocked(ctx context.Context, lane sdk.LaneID, partition, offset, limit int) ([]valkeybackend.BlockedExecution, error)
	Unblock(ctx context.Context, lane sdk.LaneID, execs []valkeybackend.BlockedExecution) (int, error)
	LiveWorkers(ctx context.Context) ([]valkeybackend.LiveWorker, error)
}

// Unblock makes executions that were parked because no worker could run
// them (capability_mismatch) eligible again once a live registered worker
// serving their lane (or every lane) advertises every capability they need.
// Executions blocked for other reasons are left alone.
type Unblock struct {
	b          UnblockBackend
	lanes      *laneList
	peek       *peeker
	interval   time.Duration
	batch      int
	maxBatches int

	mu      sync.Mutex
	loaded  bool
	workers []valkeybackend.LiveWorker
}

// Name is "unblock".
func (s *Unblock) Name() string { return "unblock" }

// Interval is Config.UnblockInterval.
func (s *Unblock) Interval() time.Duration { return s.interval }

// StartCycle re-reads the lane registry (see laneList) and forgets the live
// workers; the cycle reads them again the first time a partition has
// something blocked.
func (s *Unblock) StartCycle(ctx context.Context) error {
	s.mu.Lock()
	s.loaded, s.workers = false, nil
	s.mu.Unlock()
	return s.lanes.refresh(ctx)
}

func (s *Unblock) liveWorkers(ctx context.Context) ([]valkeybackend.LiveWorker, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loaded {
		w, err := s.b.LiveWorkers(ctx)
		if err != nil {
			return nil, err
		}
		s.workers, s.loaded = w, true
	}
	return s.workers, nil
}

// ScanPartition unblocks what a live worker can now run on p.
// Outcomes: unblocked, no_capable_worker.
func (s *Unblock) ScanPartition(ctx context.Context, p int) (Counts, error) {
	lanes, err := s.lanes.get(ctx)
	if err != nil {
		return nil, err
	}
	some := s.peek.nonEmpty(ctx, laneQueries(p, valkeybackend.HeadBlocked, lanes)...)
	counts := Counts{}
	for i, lane := range lanes {
		if !some[i] {
			continue
		}
		// Page from the oldest; what stays blocked is skipped by the offset,
		// so executions no one can run never hide newer ones.
		offset := 0
		for range max(s.maxBatches, 1) {
			blocked, err := s.b.Blocked(ctx, lane, p, offset, s.batch)
			if err != nil {
				return counts, err
			}
			n, err := s.unblockPage(ctx, lane, blocked, counts)
			if err != nil {
				return counts, err
			}
			if len(blocked) < s.batch {
				break
			}
			offset += len(blocked) - n
		}
	}
	return counts, nil
}

// unblockPage unblocks the entries of one page that a live worker can run
// and returns how many moved.
func (s *Unblock) unblockPage(ctx context.Context, lane sdk.LaneID, blocked []valkeybackend.BlockedExecution, counts Counts) (int, error) {
	var candidates []valkeybackend.BlockedExecution
	for _, e := range blocked {
		if e.Reason == sdk.CodeCapabilityMismatch {
			candidates = append(candidates, e)
		}
	}
	if len(candidates) == 0 {
		return 0, nil
	}
	workers, err := s.liveWorkers(ctx)
	if err != nil {
		return 0, err
	}
	var runnable []valkeybackend.BlockedExecution
	for _, e := range candidates {
		if anyCapable(workers, lane, e.Capabilities) {
			runnable = append(runnable, e)
		} else {
			counts["no_capable_worker"]++
		}
	}
	n, err := s.b.Unblock(ctx, lane, runnable)
	if n > 0 {
		counts["unblocked"] += n
	}
	return n, err
}

// anyCapable reports whether some worker serves lane (or every lane) and
// advertises every capability in need.
func anyCapable(workers []valkeybackend.LiveWorker, lane sdk.LaneID, need []string) bool {
	for _, w := range workers {
		if serves(w.Lanes, lane) && hasAll(w.Capabilities, need) {
			return true
		}
	}
	return false
}

func serves(lanes []sdk.LaneID, lane sdk.LaneID) bool {
	if len(lanes) == 0 {
		return true
	}
	for _, l := range lanes {
		if l == lane {
			return true
		}
	}
	return false
}

func hasAll(have, need []string) bool {
	for _, n := range need {
		found := false
		for _, h := range have {
			if h == n {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
