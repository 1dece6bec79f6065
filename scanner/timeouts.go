package scanner

import (
	"context"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// TimeoutsBackend is what the timeout scanner needs of the backend.
type TimeoutsBackend interface {
	Due(ctx context.Context, partition int, idx valkeybackend.DueIndex, limit int) ([]sdk.ExecutionID, error)
	Expire(ctx context.Context, ids []sdk.ExecutionID, idx valkeybackend.DueIndex) (valkeybackend.ActionCounts, error)
}

// Timeouts enforces attempt timeouts (the attempt fails with category
// attempt_timeout and the retry policy decides) and execution deadlines (the
// execution ends expired, whatever its state). Both share ff_expire.
type Timeouts struct {
	b          TimeoutsBackend
	peek       *peeker
	interval   time.Duration
	batch      int
	maxBatches int
}

// Name is "timeouts".
func (s *Timeouts) Name() string { return "timeouts" }

// Interval is Config.TimeoutInterval.
func (s *Timeouts) Interval() time.Duration { return s.interval }

// ScanPartition expires what is due on p. Outcomes are prefixed with the
// index: attempt_timeout:retry_scheduled, attempt_timeout:terminal_failed,
// deadline:expired, and :not_due / :stale for entries that no longer apply.
func (s *Timeouts) ScanPartition(ctx context.Context, p int) (Counts, error) {
	due := s.peek.due(ctx, 0,
		valkeybackend.HeadQuery{Partition: p, Index: valkeybackend.HeadTimeouts},
		valkeybackend.HeadQuery{Partition: p, Index: valkeybackend.HeadDeadlines})
	counts := Counts{}
	for i, idx := range []valkeybackend.DueIndex{valkeybackend.DueTimeouts, valkeybackend.DueDeadlines} {
		if !due[i] {
			continue
		}
		prefix := "deadline:"
		if idx == valkeybackend.DueTimeouts {
			prefix = "attempt_timeout:"
		}
		for range s.maxBatches {
			ids, err := s.b.Due(ctx, p, idx, s.batch)
			if err != nil {
				return counts, err
			}
			if len(ids) == 0 {
				break
			}
			acted, err := s.b.Expire(ctx, ids, idx)
			for k, v := range acted {
				counts[prefix+k] += v
			}
			if err != nil {
				return counts, err
			}
			if len(ids) < s.batch {
				break
			}
		}
	}
	return counts, nil
}
