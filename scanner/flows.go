package scanner

import (
	"context"
	"time"

	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// FlowsBackend is what the flow scanner needs of the backend.
type FlowsBackend interface {
	ReconcileFlows(ctx context.Context, partition int, minAge time.Duration, limit int) (settled, cancelled int, err error)
}

// Flows is the flows' safety net. A flow member's end resolves its
// dependants in the same call, and a flow cancel cancels its members
// itself (the first ones at once, the rest through the caller's next
// calls), so this scanner has work only when something interrupted that:
// a member still waiting for dependencies that have all ended, a cancelled
// flow whose backlog nobody drained. Both wait minAge (Config.FlowGrace)
// before it acts; an idle partition costs a peek at two cached index heads.
type Flows struct {
	b          FlowsBackend
	peek       *peeker
	interval   time.Duration
	minAge     time.Duration
	batch      int
	maxBatches int
}

// Name is "flows".
func (s *Flows) Name() string { return "flows" }

// Interval is Config.FlowInterval.
func (s *Flows) Interval() time.Duration { return s.interval }

// ScanPartition re-checks p's long-waiting members and drains its old
// cancel backlogs. Outcomes: settled (a member that ran or was skipped),
// cancelled (backlog members cancelled).
func (s *Flows) ScanPartition(ctx context.Context, p int) (Counts, error) {
	due := s.peek.due(ctx, s.minAge, valkeybackend.HeadQuery{Partition: p, Index: valkeybackend.HeadDepBlocked},
		valkeybackend.HeadQuery{Partition: p, Index: valkeybackend.HeadFlowCancels})
	if !due[0] && !due[1] {
		return Counts{}, nil
	}
	counts := Counts{}
	for range s.maxBatches {
		settled, cancelled, err := s.b.ReconcileFlows(ctx, p, s.minAge, s.batch)
		counts["settled"] += settled
		counts["cancelled"] += cancelled
		if err != nil {
			return counts, err
		}
		if settled < s.batch && cancelled == 0 {
			break
		}
	}
	return counts, nil
}
