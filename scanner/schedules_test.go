package scanner_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// The schedules scanner fires by the clock it is given (Config.
// ScheduleClock): with a clock that stands still, the ticks due by it
// fire once, and no later tick fires however long the engine runs; a
// second engine with the same clock fires nothing more.
func TestSchedulesScannerFiresByItsClock(t *testing.T) {
	for _, topo := range both() {
		t.Run(topo.name, func(t *testing.T) {
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs)
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			fixed := time.Now().Add(-time.Hour).Truncate(time.Second).Add(500 * time.Millisecond)
			s := sdk.Schedule{ID: "clocked", Every: time.Second, Start: fixed.Add(-10500 * time.Millisecond),
				CatchUp: sdk.CatchUpAll, Lane: "clocked", Kind: "k"}
			if _, err := b.PutSchedule(ctx, s); err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(t)
			cfg.ScheduleInterval = 20 * time.Millisecond
			cfg.ScheduleClock = func() time.Time { return fixed }
			e1 := runEngine(t, connect(t, addrs), cfg)
			fired := func() uint64 {
				st, err := b.GetSchedule(ctx, s.ID)
				if err != nil {
					t.Fatal(err)
				}
				return st.Fired
			}
			eventually(t, 5*time.Second, "the 10 due ticks fired", func() bool { return fired() == 10 })
			cfg.EngineID = "second"
			e2, err := scanner.Start(ctx, connect(t, addrs), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cancel(); <-e2.Done() })
			eventually(t, 10*time.Second, "the partitions split", func() bool {
				return e1.Stats().OwnedPartitions == 8 && e2.Stats().OwnedPartitions == 8
			})
			time.Sleep(300 * time.Millisecond) // many cycles of both
			st, err := b.GetSchedule(ctx, s.ID)
			if err != nil {
				t.Fatal(err)
			}
			if st.Fired != 10 || !st.NextTick.After(fixed) || !st.LastTick.Equal(fixed.Add(-500*time.Millisecond)) {
				t.Fatalf("fired %d, last tick %v, next %v; want 10, %v, after %v", st.Fired, st.LastTick, st.NextTick,
					fixed.Add(-500*time.Millisecond), fixed)
			}
			var acted uint64
			for _, sc := range append(e1.Stats().Scanners, e2.Stats().Scanners...) {
				if sc.Name == "schedules" {
					acted += sc.Acted["fired"]
				}
			}
			if acted != 10 {
				t.Fatalf("the engines' stats count %d fired, want 10", acted)
			}
		})
	}
}
