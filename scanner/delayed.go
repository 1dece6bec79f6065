package scanner

import (
	"context"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// DelayedBackend is what the delayed scanner needs of the backend.
type DelayedBackend interface {
	PromoteDelayed(ctx context.Context, args sdk.PromoteDelayedArgs) (int, error)
}

// Delayed moves delayed executions whose time came (delays, retry backoffs)
// back to their lane's eligible set.
type Delayed struct {
	b          DelayedBackend
	lanes      *laneList
	peek       *peeker
	interval   time.Duration
	batch      int
	maxBatches int
}

// Name is "delayed".
func (s *Delayed) Name() string { return "delayed" }

// Interval is Config.DelayedInterval.
func (s *Delayed) Interval() time.Duration { return s.interval }

// StartCycle re-reads the lane registry, so a lane first used since the last
// cycle is scanned in this one (see laneList).
func (s *Delayed) StartCycle(ctx context.Context) error { return s.lanes.refresh(ctx) }

// ScanPartition promotes every lane's due delayed executions on p.
// Outcome: promoted.
func (s *Delayed) ScanPartition(ctx context.Context, p int) (Counts, error) {
	lanes, err := s.lanes.get(ctx)
	if err != nil {
		return nil, err
	}
	due := s.peek.due(ctx, 0, laneQueries(p, valkeybackend.HeadDelayed, lanes)...)
	counts := Counts{}
	for i, lane := range lanes {
		if !due[i] {
			continue
		}
		for range s.maxBatches {
			n, err := s.b.PromoteDelayed(ctx, sdk.PromoteDelayedArgs{Lane: lane, Partition: p, Limit: s.batch})
			if n > 0 {
				counts["promoted"] += n
			}
			if err != nil {
				return counts, err
			}
			if n < s.batch {
				break
			}
		}
	}
	return counts, nil
}
