package scanner

import (
	"context"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// LeaseExpiryBackend is what the lease-expiry scanner needs of the backend.
type LeaseExpiryBackend interface {
	Due(ctx context.Context, partition int, idx valkeybackend.DueIndex, limit int) ([]sdk.ExecutionID, error)
	ReclaimExpired(ctx context.Context, ids []sdk.ExecutionID, maxReclaims int) (valkeybackend.ActionCounts, error)
}

// LeaseExpiry turns an expired (or revoked) lease into a new attempt of the
// same execution, queued for any worker, or into terminal failure once the
// execution lost its lease MaxReclaims times. This is crash recovery: a dead
// worker's work is requeued lease TTL + Interval after its last renewal.
type LeaseExpiry struct {
	b           LeaseExpiryBackend
	peek        *peeker
	interval    time.Duration
	batch       int
	maxBatches  int
	maxReclaims int
}

// Name is "lease_expiry".
func (s *LeaseExpiry) Name() string { return "lease_expiry" }

// Interval is Config.LeaseExpiryInterval.
func (s *LeaseExpiry) Interval() time.Duration { return s.interval }

// ScanPartition reclaims the partition's due leases, a batch at a time.
// Outcomes: requeued, terminal_failed, not_due (renewed meanwhile), stale.
func (s *LeaseExpiry) ScanPartition(ctx context.Context, p int) (Counts, error) {
	if !s.peek.due(ctx, 0, valkeybackend.HeadQuery{Partition: p, Index: valkeybackend.HeadLeases})[0] {
		return nil, nil
	}
	counts := Counts{}
	for range s.maxBatches {
		ids, err := s.b.Due(ctx, p, valkeybackend.DueLeases, s.batch)
		if err != nil || len(ids) == 0 {
			return counts, err
		}
		acted, err := s.b.ReclaimExpired(ctx, ids, s.maxReclaims)
		for k, v := range acted {
			if k == "retry_scheduled" {
				k = "requeued"
			}
			counts[k] += v
		}
		if err != nil || len(ids) < s.batch {
			return counts, err
		}
	}
	return counts, nil
}
