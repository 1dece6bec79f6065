package valkeybackend_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// dstCases are cron schedules in America/New_York across the 2026 DST
// changes (clocks go from 02:00 EST to 03:00 EDT on 8 March, and from
// 02:00 EDT back to 01:00 EST on 1 November), with the ticks the engines
// fire between from and to, as local times with their offsets. A time the
// spring change skips does not exist, so that day has no tick (02:00 on
// 8 March); a time the autumn change repeats exists twice, an hour apart,
// and each fires (01:30 EDT and 01:30 EST on 1 November): they are two
// instants, two ticks.
var dstCases = []struct {
	cron     string
	from, to string // local midnights
	want     []string
}{
	{"30 1 * * *", "2026-03-07T00:00:00-05:00", "2026-03-10T00:00:00-04:00",
		[]string{"2026-03-07T01:30:00-05:00", "2026-03-08T01:30:00-05:00", "2026-03-09T01:30:00-04:00"}},
	{"0 2 * * *", "2026-03-07T00:00:00-05:00", "2026-03-10T00:00:00-04:00",
		[]string{"2026-03-07T02:00:00-05:00", "2026-03-09T02:00:00-04:00"}},
	{"30 1 * * *", "2026-10-31T00:00:00-04:00", "2026-11-03T00:00:00-05:00",
		[]string{"2026-10-31T01:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00",
			"2026-11-02T01:30:00-05:00"}},
	{"0 2 * * *", "2026-10-31T00:00:00-04:00", "2026-11-03T00:00:00-05:00",
		[]string{"2026-10-31T02:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-02T02:00:00-05:00"}},
	{"0 * * * *", "2026-03-08T00:00:00-05:00", "2026-03-08T04:00:00-04:00",
		[]string{"2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"}},
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// NextTicks computes the DST cases' ticks as documented, in the
// schedule's zone.
func TestNextTicksAcrossDST(t *testing.T) {
	for _, c := range dstCases {
		from, to := mustTime(t, c.from), mustTime(t, c.to)
		got, err := valkeybackend.NextTicks(sdk.Schedule{ID: "dst", Cron: c.cron, TimeZone: "America/New_York", Lane: "l", Kind: "k"},
			from, 10)
		if err != nil {
			t.Fatal(err)
		}
		var in []string
		for _, at := range got {
			if at.After(to) {
				break
			}
			if at.Location().String() != "America/New_York" {
				t.Fatalf("%s: tick %v not in the schedule's zone", c.cron, at)
			}
			in = append(in, at.Format(time.RFC3339))
		}
		if !slices.Equal(in, c.want) {
			t.Fatalf("%s from %s: ticks %v, want %v", c.cron, c.from, in, c.want)
		}
	}
	// An interval ignores zones: ticks every Every after Start.
	start := mustTime(t, "2026-03-08T01:59:59.5-05:00")
	got, err := valkeybackend.NextTicks(sdk.Schedule{ID: "i", Every: 90 * time.Minute, Start: start, Lane: "l", Kind: "k"}, start, 2)
	if err != nil || len(got) != 2 || got[0].Sub(start) != 90*time.Minute || got[1].Sub(got[0]) != 90*time.Minute {
		t.Fatalf("interval ticks %v, %v", got, err)
	}
}

// The engines' firing across the DST changes, driven by a fixed clock
// stepped every 20 minutes through the two nights (FireDueSchedules'
// Now): each schedule creates one execution per documented tick, and its
// tick tag holds that tick.
func TestScheduleFiresAcrossDST(t *testing.T) {
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	for i, c := range dstCases {
		from, to := mustTime(t, c.from), mustTime(t, c.to)
		lane := sdk.LaneID(fmt.Sprintf("dst-%d", i))
		s := sdk.Schedule{ID: sdk.ScheduleID(lane), Cron: c.cron, TimeZone: "America/New_York", Start: from,
			Grace: time.Hour, TickTag: "tick", Lane: lane, Kind: "k"}
		if _, err := b.PutSchedule(ctx, s); err != nil {
			t.Fatal(err)
		}
		_, _, _, p := b.ScheduleKeysForTest(string(s.ID))
		fired := 0
		for now := from; !now.After(to); now = now.Add(20 * time.Minute) {
			r, err := b.FireDueSchedules(ctx, sdk.FireSchedulesArgs{Partition: p, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if r.Skipped != 0 || r.Duplicates != 0 || r.Changed != 0 {
				t.Fatalf("%s at %v: %+v", c.cron, now, r)
			}
			fired += r.Fired
		}
		var got []string
		page, err := b.ListExecutions(ctx, p, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		ny, _ := time.LoadLocation("America/New_York")
		for _, id := range page.IDs {
			ec, err := b.ReadExecutionContext(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if ec.Lane != lane {
				continue
			}
			ms, _ := strconv.ParseInt(ec.Tags["tick"], 10, 64)
			got = append(got, time.UnixMilli(ms).In(ny).Format(time.RFC3339))
		}
		slices.Sort(got)
		if fired != len(c.want) || !slices.Equal(got, c.want) {
			t.Fatalf("%s from %s: fired %d, executions for %v; want %v", c.cron, c.from, fired, got, c.want)
		}
		st, err := b.GetSchedule(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := valkeybackend.NextTicks(s, to, 1)
		if !st.NextTick.Equal(want[0]) {
			t.Fatalf("%s: next tick %v, want %v", c.cron, st.NextTick, want[0])
		}
	}
}

// A put that keeps the timing keeps the next tick (re-applying a config
// does not move an interval's phase); one that changes it places the
// next tick anew. A put racing another (a stale revision) is refused.
func TestPutScheduleKeepsTiming(t *testing.T) {
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	s := sdk.Schedule{ID: "phase", Every: time.Hour, Lane: "l", Kind: "k"}
	if _, err := b.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	first, err := b.GetSchedule(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	s.Payload = []byte("v2")
	if _, err := b.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	second, _ := b.GetSchedule(ctx, s.ID)
	if !second.NextTick.Equal(first.NextTick) || !second.Start.Equal(first.Start) || string(second.Payload) != "v2" {
		t.Fatalf("replace with the same timing: next %v -> %v, start %v -> %v, payload %q",
			first.NextTick, second.NextTick, first.Start, second.Start, second.Payload)
	}
	s.Every = 2 * time.Hour
	if _, err := b.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	third, _ := b.GetSchedule(ctx, s.ID)
	if third.NextTick.Equal(first.NextTick) || third.NextTick.Sub(third.Start) != 2*time.Hour {
		t.Fatalf("replace with a new interval: next %v, start %v", third.NextTick, third.Start)
	}
}

// The walk bound: a per-minute cron two weeks behind (over 10,000 missed
// ticks) is caught up over two calls, never firing more than its policy
// allows, and ends on time.
func TestScheduleFarBehind(t *testing.T) {
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	now := time.Now().Truncate(time.Minute)
	s := sdk.Schedule{ID: "behind", Cron: "* * * * *", Start: now.Add(-14 * 24 * time.Hour), CatchUp: sdk.CatchUpAll,
		CatchUpMax: 3, Lane: "behind", Kind: "k"}
	if _, err := b.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	_, _, _, p := b.ScheduleKeysForTest("behind")
	var total sdk.FireSchedulesResult
	for range 3 {
		r, err := b.FireDueSchedules(ctx, sdk.FireSchedulesArgs{Partition: p, Now: now.Add(30 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		total.Fired += r.Fired
		total.Skipped += r.Skipped
	}
	// 14 days of minutes: 20160 ticks after Start; the last (found 30s
	// late) is on time, the 3 before it are the missed ones that fire.
	if total.Fired != 4 || total.Fired+total.Skipped != 14*24*60 {
		t.Fatalf("fired %d, skipped %d; want 3 missed + 1 on time, %d in all", total.Fired, total.Skipped, 14*24*60)
	}
	st, _ := b.GetSchedule(ctx, s.ID)
	if !st.NextTick.Equal(now.Add(time.Minute)) {
		t.Fatalf("next tick %v, want %v", st.NextTick, now.Add(time.Minute))
	}
}

// Four backends (four engines' connections) fire the same schedule at
// once, each stepping its own clock a quarter second at a time through
// 50 ticks: every tick is created once, by one of them; the others are
// told the schedule changed and create nothing.
func TestScheduleFireRace(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{})
			t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
			s := sdk.Schedule{ID: "race", Every: time.Second, Start: t0, CatchUp: sdk.CatchUpAll, TickTag: "tick",
				Lane: "race", Kind: "k"}
			if _, err := b.PutSchedule(ctx, s); err != nil {
				t.Fatal(err)
			}
			_, _, _, p := b.ScheduleKeysForTest("race")
			const engines, ticks = 4, 50
			results := make([]sdk.FireSchedulesResult, engines)
			errs := make(chan error, engines)
			var wg sync.WaitGroup
			for i := range engines {
				eb, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, SkipPrepare: true})
				if err != nil {
					t.Fatal(err)
				}
				defer eb.Close()
				wg.Go(func() {
					for k := 1; k <= 4*ticks; k++ {
						r, err := eb.FireDueSchedules(ctx, sdk.FireSchedulesArgs{Partition: p,
							Now: t0.Add(time.Duration(k) * 250 * time.Millisecond)})
						if err != nil {
							errs <- err
							return
						}
						results[i].Fired += r.Fired
						results[i].Duplicates += r.Duplicates
						results[i].Changed += r.Changed
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			fired, changed, dups := 0, 0, 0
			for _, r := range results {
				fired, changed, dups = fired+r.Fired, changed+r.Changed, dups+r.Duplicates
			}
			seen := map[string]int{}
			page, err := b.ListExecutions(ctx, p, "", 1000)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range page.IDs {
				ec, err := b.ReadExecutionContext(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				seen[ec.Tags["tick"]]++
			}
			t.Logf("%d engines: fired %d, lost a race %d times, duplicates %d", engines, fired, changed, dups)
			if fired != ticks || dups != 0 || len(seen) != ticks {
				t.Fatalf("fired %d, duplicates %d, %d distinct ticks; want %d, 0, %d", fired, dups, len(seen), ticks, ticks)
			}
			for k := 1; k <= ticks; k++ {
				if n := seen[strconv.FormatInt(t0.Add(time.Duration(k)*time.Second).UnixMilli(), 10)]; n != 1 {
					t.Fatalf("tick %d has %d executions", k, n)
				}
			}
		})
	}
}

// A record this build cannot fire (its template is not JSON: written by
// hand) is reported, and the partition's other schedules fire anyway.
func TestScheduleBadRecordDoesNotBlock(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{Partitions: 1})
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, id := range []sdk.ScheduleID{"a-broken", "b-fine"} {
		if _, err := b.PutSchedule(ctx, sdk.Schedule{ID: id, Every: time.Second, Start: t0, CatchUp: sdk.CatchUpAll,
			Lane: "l", Kind: "k"}); err != nil {
			t.Fatal(err)
		}
	}
	rec, _, _, _ := b.ScheduleKeysForTest("a-broken")
	if err := b.Client().Do(ctx, b.Client().B().Hset().Key(rec).FieldValue().FieldValue("tmpl", "{not json").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	r, err := b.FireDueSchedules(ctx, sdk.FireSchedulesArgs{Partition: 0, Now: t0.Add(2500 * time.Millisecond)})
	if sdk.KindOf(err) != sdk.KindBug || r.Fired != 2 {
		t.Fatalf("fire = %+v, %v; want b-fine's 2 ticks fired and a bug error for a-broken", r, err)
	}
	if st, err := b.GetSchedule(ctx, "b-fine"); err != nil || st.Fired != 2 {
		t.Fatalf("b-fine: %+v %v", st, err)
	}
}
