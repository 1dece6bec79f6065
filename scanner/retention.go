package scanner

import (
	"context"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// RetentionBackend is what the retention scanner needs of the backend.
type RetentionBackend interface {
	TrimTerminal(ctx context.Context, lane sdk.LaneID, partition int, retention time.Duration, limit int) (int, error)
}

// Retention deletes terminal executions that ended more than Retention ago,
// with every key and index entry they had.
type Retention struct {
	b          RetentionBackend
	lanes      *laneList
	peek       *peeker
	interval   time.Duration
	retention  time.Duration
	batch      int
	maxBatches int
}

// Name is "retention".
func (s *Retention) Name() string { return "retention" }

// Interval is Config.RetentionInterval.
func (s *Retention) Interval() time.Duration { return s.interval }

// StartCycle re-reads the lane registry (see laneList).
func (s *Retention) StartCycle(ctx context.Context) error { return s.lanes.refresh(ctx) }

// ScanPartition trims every lane's old terminal executions on p.
// Outcome: trimmed.
func (s *Retention) ScanPartition(ctx context.Context, p int) (Counts, error) {
	lanes, err := s.lanes.get(ctx)
	if err != nil {
		return nil, err
	}
	due := s.peek.due(ctx, s.retention, laneQueries(p, valkeybackend.HeadTerminal, lanes)...)
	counts := Counts{}
	for i, lane := range lanes {
		if !due[i] {
			continue
		}
		for range s.maxBatches {
			n, err := s.b.TrimTerminal(ctx, lane, p, s.retention, s.batch)
			if n > 0 {
				counts["trimmed"] += n
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
