package scanner

import (
	"context"
	"time"

	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// SuspensionsBackend is what the suspension scanner needs of the backend.
type SuspensionsBackend interface {
	ExpireDueSuspensions(ctx context.Context, partition, limit int) (map[string]int, error)
}

// Suspensions enforces suspension timeouts: a suspended execution whose
// timeout passed gets its suspension's timeout behaviour (fail, cancel,
// expire, or resume without the signals). Signals never wait for it:
// a signal that meets a condition resumes the execution in its own call.
type Suspensions struct {
	b          SuspensionsBackend
	peek       *peeker
	interval   time.Duration
	batch      int
	maxBatches int
}

// Name is "suspensions".
func (s *Suspensions) Name() string { return "suspensions" }

// Interval is Config.TimeoutInterval (suspension timeouts share it with
// attempt timeouts and deadlines).
func (s *Suspensions) Interval() time.Duration { return s.interval }

// ScanPartition applies the due timeouts of p. Outcomes: the state each
// execution was left in (failed, cancelled, expired, waiting), and stale /
// not_due for entries that no longer apply.
func (s *Suspensions) ScanPartition(ctx context.Context, p int) (Counts, error) {
	if due := s.peek.due(ctx, 0, valkeybackend.HeadQuery{Partition: p, Index: valkeybackend.HeadSuspensions}); !due[0] {
		return Counts{}, nil
	}
	counts := Counts{}
	for range s.maxBatches {
		acted, err := s.b.ExpireDueSuspensions(ctx, p, s.batch)
		n := 0
		for k, v := range acted {
			counts[k] += v
			n += v
		}
		if err != nil {
			return counts, err
		}
		if n < s.batch {
			break
		}
	}
	return counts, nil
}
