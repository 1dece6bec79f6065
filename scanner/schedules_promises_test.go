package scanner_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// schpTicks maps each tick tag value to the count of lane's executions
// carrying it, over every partition.
func schpTicks(t *testing.T, b *valkeybackend.Backend, lane sdk.LaneID, tag string) map[string]int {
	t.Helper()
	ctx := context.Background()
	out := map[string]int{}
	for p := range b.Partitions() {
		var cursor sdk.ExecutionID
		for {
			page, err := b.ListExecutions(ctx, p, cursor, 1000)
			if err != nil {
				t.Fatal(err)
			}
			for _, eid := range page.IDs {
				ec, err := b.ReadExecutionContext(ctx, eid)
				if err != nil {
					t.Fatal(err)
				}
				if ec.Lane == lane {
					out[ec.Tags[tag]]++
				}
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
	}
	return out
}

// The schedules scanner keeps the documented promises through an
// engine's life (sdk/schedules.go: "a tick fires once however many
// engines run and whenever they restart"; scanner/schedules.go: "a
// restarted engine goes on from the next tick stored in Valkey"; README:
// a paused schedule's ticks never fire, `DeleteSchedule` (its executions
// stay)):
//   - a paused schedule fires nothing while its engine's clock runs on;
//   - the engine stops, the schedule is resumed, and two new engines at
//     once fire the ticks due since, each once, none lost;
//   - a deleted schedule fires nothing more, and its executions stay.
func TestSchedPScannerPauseRestartDelete(t *testing.T) {
	addrs := standalone(t)
	b := freshBackend(t, addrs)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	s := sdk.Schedule{ID: "schp", Every: time.Second, Start: t0, CatchUp: sdk.CatchUpAll, Grace: 2 * time.Hour,
		TickTag: "tick", Lane: "schp", Kind: "k"}
	if _, err := b.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(t0.Add(3500 * time.Millisecond).UnixMilli())
	cfg := testConfig(t)
	cfg.ScheduleInterval = 20 * time.Millisecond
	cfg.ScheduleClock = func() time.Time { return time.UnixMilli(clock.Load()) }
	status := func() sdk.ScheduleStatus {
		st, err := b.GetSchedule(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	ctx1, stop1 := context.WithCancel(ctx)
	e1 := runEngineCtx(t, ctx1, connect(t, addrs), cfg)
	eventually(t, 5*time.Second, "ticks 1..3 fired", func() bool { return status().Fired == 3 })

	if err := b.PauseSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	clock.Store(t0.Add(30 * time.Minute).UnixMilli())
	time.Sleep(300 * time.Millisecond) // many cycles
	if st := status(); st.Fired != 3 || !st.Paused {
		t.Fatalf("paused schedule under a running engine: fired %d, paused %v; want 3, true", st.Fired, st.Paused)
	}
	stop1()
	<-e1.Done()

	if err := b.ResumeSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	next := status().NextTick
	clock.Store(next.Add(2500 * time.Millisecond).UnixMilli()) // next, next+1s, next+2s due
	cfg.EngineID = "schp-2"
	runEngine(t, connect(t, addrs), cfg)
	cfg.EngineID = "schp-3"
	e3ctx, stop3 := context.WithCancel(ctx)
	t.Cleanup(stop3)
	e3, err := scanner.Start(e3ctx, connect(t, addrs), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop3(); <-e3.Done() })
	eventually(t, 5*time.Second, "the 3 ticks after the resume fired", func() bool { return status().Fired >= 6 })
	time.Sleep(300 * time.Millisecond) // both engines cycle on
	runs := schpTicks(t, b, s.Lane, "tick")
	want := []time.Time{t0.Add(time.Second), t0.Add(2 * time.Second), t0.Add(3 * time.Second),
		next, next.Add(time.Second), next.Add(2 * time.Second)}
	if len(runs) != len(want) {
		t.Fatalf("executions per tick %v; want one each for %v", runs, want)
	}
	for _, w := range want {
		if n := runs[strconv.FormatInt(w.UnixMilli(), 10)]; n != 1 {
			t.Fatalf("tick %v has %d executions (all: %v)", w, n, runs)
		}
	}

	if err := b.DeleteSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	clock.Store(next.Add(time.Hour).UnixMilli())
	time.Sleep(300 * time.Millisecond)
	if runs := schpTicks(t, b, s.Lane, "tick"); len(runs) != len(want) {
		t.Fatalf("after the delete the executions are %v; want the %d kept and none new", runs, len(want))
	}
}
