package main

import (
	"context"
	"hash/fnv"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// A 1-second interval schedule run for 60s by two engine processes: at
// +15s and +35s the engine that owns the schedule's partition (the one
// firing it) is SIGKILLed and restarted 1.5s later, so the partition
// changes hands (and may be scanned by both while it does): every tick of
// the minute has exactly one execution, none is missing, none is doubled. The ticks are read back from the executions'
// tick tags and checked against the schedule's tick times.
func TestScheduleOncePerTickAcrossEngineKills(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 65s")
	}
	t.Parallel() // its own server and engines; it mostly waits
	srv := valkeytest.NewServer(t)
	ctx := context.Background()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Partitions: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	args := []string{"--ownership-ttl", "1s", "--schedule-interval", "100ms", "--status-interval", "200ms"}
	e1 := startEngine(t, "e1", srv.Addr(), args...)
	e2 := startEngine(t, "e2", srv.Addr(), args...)
	split := regexp.MustCompile(`msg=status owned=8 partitions=16 engines=2 `)
	e1.waitLine(split, 15*time.Second)
	e2.waitLine(split, 15*time.Second)

	const lane sdk.LaneID = "every-second"
	const run = 60 * time.Second
	start := time.Now().Truncate(time.Second)
	s := sdk.Schedule{ID: "every-second", Every: time.Second, Start: start, CatchUp: sdk.CatchUpAll, TickTag: "tick",
		Lane: lane, Kind: "tick"}
	if _, err := b.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	end := start.Add(run)

	// The schedule's partition (FNV-1a of its id modulo the partition
	// count, as the README says) and the engine that owns it now.
	h := fnv.New32a()
	h.Write([]byte(s.ID))
	ownKey := "ff:own:" + sdk.PartitionTag(int(h.Sum32()%16))
	owner := func() string {
		v, err := b.Client().Do(ctx, b.Client().B().Get().Key(ownKey).Build()).ToString()
		if err != nil {
			t.Fatalf("owner of %s: %v", ownKey, err)
		}
		return v
	}
	engines := map[string]*engineProc{"e1": e1, "e2": e2}
	restart := func() {
		t.Helper()
		name := owner() // the engine firing the schedule dies
		e := engines[name]
		if e == nil {
			t.Fatalf("%s is owned by %q", ownKey, name)
		}
		if err := e.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-e.exited
		t.Logf("%s SIGKILLed at +%v", name, time.Since(start).Round(time.Millisecond))
		time.Sleep(1500 * time.Millisecond) // its ownership leases lapse; the other takes over
		t.Logf("%s owns the schedule's partition now", owner())
		n := startEngine(t, name, srv.Addr(), args...)
		n.waitLine(regexp.MustCompile(`msg="ffengine started"`), 10*time.Second)
		t.Logf("%s restarted at +%v", name, time.Since(start).Round(time.Millisecond))
		engines[name] = n
	}
	time.Sleep(time.Until(start.Add(15 * time.Second)))
	restart()
	time.Sleep(time.Until(start.Add(35 * time.Second)))
	restart()

	// The minute's last tick fired, the schedule is paused: what it
	// created is final.
	deadline := time.Now().Add(run + 15*time.Second)
	var st sdk.ScheduleStatus
	for {
		if st, err = b.GetSchedule(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		if !st.LastTick.Before(end) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tick at %v has not fired %v after it (last tick %v)", end, time.Since(end), st.LastTick)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := b.PauseSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if st, err = b.GetSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}

	seen := map[int64]int{}
	for p := range b.Partitions() {
		var cursor sdk.ExecutionID
		for {
			page, err := b.ListExecutions(ctx, p, cursor, 500)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range page.IDs {
				ec, err := b.ReadExecutionContext(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				ms, err := strconv.ParseInt(ec.Tags["tick"], 10, 64)
				if ec.Lane != lane || err != nil {
					t.Fatalf("execution %s: lane %s tick tag %q", id, ec.Lane, ec.Tags["tick"])
				}
				seen[ms]++
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
	}
	want, err := valkeybackend.NextTicks(s, start, int(st.LastTick.Sub(start)/time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var missing, doubled []string
	for _, tick := range want {
		switch n := seen[tick.UnixMilli()]; {
		case n == 0:
			missing = append(missing, tick.Format("15:04:05"))
		case n > 1:
			doubled = append(doubled, tick.Format("15:04:05")+"x"+strconv.Itoa(n))
		}
		delete(seen, tick.UnixMilli())
	}
	var stray []int64
	for ms := range seen {
		stray = append(stray, ms)
	}
	slices.Sort(stray)
	t.Logf("%d ticks from %v to %v; schedule fired %d, skipped %d", len(want), want[0].Format("15:04:05"),
		st.LastTick.Format("15:04:05"), st.Fired, st.Skipped)
	if len(want) < int(run/time.Second) || len(missing) > 0 || len(doubled) > 0 || len(stray) > 0 ||
		st.Fired != uint64(len(want)) || st.Skipped != 0 {
		t.Fatalf("ticks: %d expected, missing %v, doubled %v, not a tick %v; fired %d skipped %d",
			len(want), missing, doubled, stray, st.Fired, st.Skipped)
	}
}
