package scanner

import (
	"context"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// SchedulesBackend is what the schedules scanner needs of the backend.
type SchedulesBackend interface {
	FireDueSchedules(ctx context.Context, args sdk.FireSchedulesArgs) (sdk.FireSchedulesResult, error)
}

// Schedules fires the due ticks of the schedules on the partitions this
// engine owns (sdk.Scheduler). Each tick's create and the schedule's
// advance are one atomic call that checks the schedule is as read, so a
// partition scanned by two engines at once (an ownership hand-over) still
// fires each tick once; a restarted engine goes on from the next tick
// stored in Valkey, and ticks missed meanwhile follow the schedule's
// catch-up policy.
type Schedules struct {
	b          SchedulesBackend
	peek       *peeker
	interval   time.Duration
	batch      int
	maxBatches int
	// now is the clock that decides which ticks are due: Config's
	// ScheduleClock, else the estimate of the server's clock.
	now func(ctx context.Context) (time.Time, error)
}

// Name is "schedules".
func (s *Schedules) Name() string { return "schedules" }

// Interval is Config.ScheduleInterval.
func (s *Schedules) Interval() time.Duration { return s.interval }

// ScanPartition fires p's due schedules. Outcomes: fired, duplicate
// (a tick whose execution existed), skipped (missed ticks the catch-up
// policy skipped), changed (a schedule changed between its read and its
// fire: another engine fired it, or an operator changed it).
func (s *Schedules) ScanPartition(ctx context.Context, p int) (Counts, error) {
	now, err := s.now(ctx)
	if err != nil {
		return nil, err
	}
	if !s.peek.dueAt(ctx, now, valkeybackend.HeadQuery{Partition: p, Index: valkeybackend.HeadSchedules})[0] {
		return nil, nil
	}
	counts := Counts{}
	for range s.maxBatches {
		r, err := s.b.FireDueSchedules(ctx, sdk.FireSchedulesArgs{Partition: p, Now: now, Limit: s.batch})
		for k, v := range map[string]int{"fired": r.Fired, "duplicate": r.Duplicates, "skipped": r.Skipped, "changed": r.Changed} {
			if v > 0 {
				counts[k] += v
			}
		}
		if err != nil {
			return counts, err
		}
		if r.Schedules < s.batch {
			break
		}
	}
	return counts, nil
}
