package valkeybackend_test

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// schpFireAll fires every partition's due schedules at now and sums the
// results.
func schpFireAll(t *testing.T, b *valkeybackend.Backend, now time.Time) sdk.FireSchedulesResult {
	t.Helper()
	var sum sdk.FireSchedulesResult
	for p := range b.Partitions() {
		r, err := b.FireDueSchedules(context.Background(), sdk.FireSchedulesArgs{Partition: p, Now: now})
		if err != nil {
			t.Fatalf("FireDueSchedules(%d, %v) = %v", p, now, err)
		}
		sum.Schedules += r.Schedules
		sum.Fired += r.Fired
		sum.Duplicates += r.Duplicates
		sum.Skipped += r.Skipped
		sum.Changed += r.Changed
	}
	return sum
}

// schpTickRuns maps each tick (unix ms, from tag) to how many executions of
// the schedule's partition carry it.
func schpTickRuns(t *testing.T, b *valkeybackend.Backend, id, tag string) map[string]int {
	t.Helper()
	ctx := context.Background()
	_, _, _, p := b.ScheduleKeysForTest(id)
	out := map[string]int{}
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
			out[ec.Tags[tag]]++
		}
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
}

// README "Catch-up": "Ticks found within `Grace` always fire". An
// interval whose Grace holds more than 10,000 of its ticks (1s ticks, 3h
// grace) found 10,050 ticks behind: every one of them is on time, so all
// fire and none is skipped (the walk bound is documented for cron
// schedules far behind, an interval "skips arithmetically").
func TestSchedPIntervalOnTimeTicksBeyondWalkAllFire(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{Partitions: 1})
	t0 := time.Now().Add(-6 * time.Hour).Truncate(time.Second)
	s := sdk.Schedule{ID: "dense", Every: time.Second, Start: t0, Grace: 3 * time.Hour, CatchUp: sdk.CatchUpSkip,
		Lane: "dense", Kind: "k"}
	if _, err := b.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	const due = 10050
	now := t0.Add(due*time.Second + 500*time.Millisecond)
	var total sdk.FireSchedulesResult
	for range 3 {
		r := schpFireAll(t, b, now)
		total.Fired += r.Fired
		total.Skipped += r.Skipped
	}
	if total.Skipped != 0 || total.Fired != due {
		t.Fatalf("fired %d, skipped %d; want all %d on-time ticks fired, none skipped", total.Fired, total.Skipped, due)
	}
}

// README "Catch-up": "`CatchUpAll` fires the latest `CatchUpMax`
// (default 100, at most 10,000), oldest first", and an interval far behind
// "skips arithmetically, in one cycle". An interval (1s ticks, Grace 1s)
// 20,000 ticks behind with CatchUpAll and CatchUpMax 10,000: the latest
// 10,000 missed ticks fire with the one on time, the 9,999 older are
// skipped.
func TestSchedPIntervalCatchUpAllAtMax(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{Partitions: 1})
	t0 := time.Now().Add(-12 * time.Hour).Truncate(time.Second)
	s := sdk.Schedule{ID: "maxed", Every: time.Second, Start: t0, Grace: time.Second, CatchUp: sdk.CatchUpAll,
		CatchUpMax: sdk.MaxScheduleCatchUp, Lane: "maxed", Kind: "k"}
	if _, err := b.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(20000*time.Second + 500*time.Millisecond) // ticks 1..20000 due; 20000 on time
	var total sdk.FireSchedulesResult
	for range 3 {
		r := schpFireAll(t, b, now)
		total.Fired += r.Fired
		total.Skipped += r.Skipped
	}
	if total.Fired != sdk.MaxScheduleCatchUp+1 || total.Skipped != 20000-sdk.MaxScheduleCatchUp-1 {
		t.Fatalf("fired %d, skipped %d; want %d fired (the latest %d missed and the on-time one), %d skipped",
			total.Fired, total.Skipped, sdk.MaxScheduleCatchUp+1, sdk.MaxScheduleCatchUp, 20000-sdk.MaxScheduleCatchUp-1)
	}
}

// README "API": bad input is `invalid_input` (`sdk.ErrValidation`) "and
// the keyspace is unchanged", for the limits the conformance suite does
// not try (Every in whole ms, Start before 1970, Grace over 24h, negative
// CatchUpMax, long cron, long tick tag, long zone), for a replace of an
// existing schedule, and for the other calls' malformed ids and limits.
func TestSchedPBadInputWritesNothing(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{})
			good := sdk.Schedule{ID: "sp-good", Every: time.Minute, Lane: "sp", Kind: "k", Tags: map[string]string{"a": "1"}}
			if _, err := b.PutSchedule(ctx, good); err != nil {
				t.Fatal(err)
			}
			cases := map[string]func(*sdk.Schedule){
				"interval not whole ms":   func(s *sdk.Schedule) { s.Every = time.Second + 500*time.Microsecond },
				"Start before 1970":       func(s *sdk.Schedule) { s.Start = time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC) },
				"grace over 24h":          func(s *sdk.Schedule) { s.Grace = 24*time.Hour + time.Second },
				"negative catch-up max":   func(s *sdk.Schedule) { s.CatchUpMax = -1 },
				"cron over 256 bytes":     func(s *sdk.Schedule) { s.Every, s.Cron = 0, "0 0 * * *"+strings.Repeat(" ", 250) },
				"tick tag too long":       func(s *sdk.Schedule) { s.TickTag = strings.Repeat("t", sdk.MaxIDLength+1) },
				"zone over 128 bytes":     func(s *sdk.Schedule) { s.Every, s.Cron, s.TimeZone = 0, "0 0 * * *", strings.Repeat("Z", 129) },
				"cron with seconds field": func(s *sdk.Schedule) { s.Every, s.Cron = 0, "0 0 0 * * *" },
				"TZ= prefix":              func(s *sdk.Schedule) { s.Every, s.Cron = 0, "TZ=UTC 0 0 * * *" },
				"negative priority":       func(s *sdk.Schedule) { s.Priority = -1 },
			}
			before := keyspace(t, addrs)
			for what, edit := range cases {
				for _, id := range []sdk.ScheduleID{"sp-new", good.ID} { // a create, and a replace
					s := good
					s.ID = id
					s.Tags = maps.Clone(good.Tags)
					edit(&s)
					if _, err := b.PutSchedule(ctx, s); !errors.Is(err, sdk.ErrValidation) {
						t.Errorf("PutSchedule(%s) with %s = %v; want a validation error", id, what, err)
					}
				}
			}
			calls := map[string]func() error{
				"GetSchedule a:b":        func() error { _, err := b.GetSchedule(ctx, "a:b"); return err },
				"PauseSchedule a:b":      func() error { return b.PauseSchedule(ctx, "a:b") },
				"ResumeSchedule a b":     func() error { return b.ResumeSchedule(ctx, "a b") },
				"DeleteSchedule empty":   func() error { return b.DeleteSchedule(ctx, "") },
				"ListSchedules -1":       func() error { _, err := b.ListSchedules(ctx, "", -1); return err },
				"ListSchedules after a:": func() error { _, err := b.ListSchedules(ctx, "a:", 10); return err },
				"FireDueSchedules negative limit": func() error {
					_, err := b.FireDueSchedules(ctx, sdk.FireSchedulesArgs{Partition: 0, Now: time.Now(), Limit: -1})
					return err
				},
				"FireDueSchedules zero Now": func() error {
					_, err := b.FireDueSchedules(ctx, sdk.FireSchedulesArgs{Partition: 0})
					return err
				},
				"FireDueSchedules partition -1": func() error {
					_, err := b.FireDueSchedules(ctx, sdk.FireSchedulesArgs{Partition: -1, Now: time.Now()})
					return err
				},
			}
			for what, call := range calls {
				if err := call(); !errors.Is(err, sdk.ErrValidation) {
					t.Errorf("%s = %v; want a validation error", what, err)
				}
			}
			if after := keyspace(t, addrs); !maps.Equal(before, after) {
				t.Fatalf("refused calls changed the keyspace: %d keys -> %d", len(before), len(after))
			}
			if st, err := b.GetSchedule(ctx, good.ID); err != nil || st.Revision != 1 || st.Every != time.Minute {
				t.Fatalf("the refused replaces changed the schedule: %+v %v", st, err)
			}
		})
	}
}

// README "API": `DeleteSchedule` ("its executions stay"); sdk/schedules.go
// DeleteSchedule "removes a schedule (executions it created stay)". A
// deleted schedule fires nothing more, however late the clock; its
// executions stay; and a schedule put again under the same id with the
// same Start finds its old ticks' executions by their idempotency keys
// instead of creating them twice (README "Exactly once").
func TestSchedPDeleteStopsFutureRuns(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{})
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	s := sdk.Schedule{ID: "sp-del", Every: time.Second, Start: t0, CatchUp: sdk.CatchUpAll, TickTag: "tick",
		Lane: "sp-del", Kind: "k"}
	if _, err := b.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	if r := schpFireAll(t, b, t0.Add(3500*time.Millisecond)); r.Fired != 3 {
		t.Fatalf("fire at t0+3.5s = %+v; want 3", r)
	}
	if err := b.DeleteSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if r := schpFireAll(t, b, t0.Add(30*time.Minute)); r.Fired != 0 || r.Schedules != 0 {
		t.Fatalf("fire after the delete = %+v; want nothing", r)
	}
	runs := schpTickRuns(t, b, string(s.ID), "tick")
	if len(runs) != 3 {
		t.Fatalf("after the delete the executions are %v; want the 3 ticks' executions kept", runs)
	}
	if _, err := b.GetSchedule(ctx, s.ID); !errors.Is(err, sdk.ErrScheduleNotFound) {
		t.Fatalf("GetSchedule after delete = %v", err)
	}
	if err := b.DeleteSchedule(ctx, s.ID); !errors.Is(err, sdk.ErrScheduleNotFound) {
		t.Fatalf("DeleteSchedule again = %v; want not found", err)
	}
	created, err := b.PutSchedule(ctx, s)
	if err != nil || !created {
		t.Fatalf("PutSchedule after delete = %v, %v; want created", created, err)
	}
	if r := schpFireAll(t, b, t0.Add(4500*time.Millisecond)); r.Fired != 1 || r.Duplicates != 3 {
		t.Fatalf("re-created schedule at t0+4.5s = %+v; want 1 fired, 3 duplicates", r)
	}
	for tick, n := range schpTickRuns(t, b, string(s.ID), "tick") {
		if n != 1 {
			t.Fatalf("tick %s has %d executions", tick, n)
		}
	}
}

// README "API": `ResumeSchedule` ("the next tick after the server's time:
// ticks that fell while paused never fire"); sdk "PauseSchedule stops a
// schedule's ticks until ResumeSchedule". A paused schedule fires nothing
// at any clock; once resumed, the first tick to fire is the first after
// the server's time, on the interval's phase, and none of the paused
// ticks ever gets an execution.
func TestSchedPPauseResume(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{})
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	s := sdk.Schedule{ID: "sp-pause", Every: time.Second, Start: t0, CatchUp: sdk.CatchUpAll, CatchUpMax: 10000,
		Grace: 24 * time.Hour, TickTag: "tick", Lane: "sp-pause", Kind: "k"}
	if _, err := b.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	if r := schpFireAll(t, b, t0.Add(2500*time.Millisecond)); r.Fired != 2 {
		t.Fatalf("fire = %+v; want 2", r)
	}
	if err := b.PauseSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if r := schpFireAll(t, b, time.Now().Add(time.Hour)); r.Fired != 0 || r.Schedules != 0 {
		t.Fatalf("fire of a paused schedule = %+v; want nothing", r)
	}
	// "Pausing a paused schedule, or resuming a running one, changes
	// nothing" (sdk/schedules.go).
	paused, err := b.GetSchedule(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PauseSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if again, _ := b.GetSchedule(ctx, s.ID); again.Revision != paused.Revision || !again.UpdatedAt.Equal(paused.UpdatedAt) {
		t.Fatalf("pausing a paused schedule changed it: revision %d -> %d", paused.Revision, again.Revision)
	}
	before := time.Now()
	if err := b.ResumeSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	st, err := b.GetSchedule(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Paused || st.NextTick.Before(before.Add(-time.Second)) || st.NextTick.After(time.Now().Add(2*time.Second)) ||
		st.NextTick.Sub(t0)%time.Second != 0 {
		t.Fatalf("resumed: paused %v next %v; want the first tick after %v, on the phase", st.Paused, st.NextTick, before)
	}
	if err := b.ResumeSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if again, _ := b.GetSchedule(ctx, s.ID); again.Revision != st.Revision || !again.NextTick.Equal(st.NextTick) {
		t.Fatalf("resuming a running schedule changed it: revision %d -> %d, next %v -> %v",
			st.Revision, again.Revision, st.NextTick, again.NextTick)
	}
	// Grace 24h and CatchUpAll: a paused tick, were it still pending,
	// would fire here.
	if r := schpFireAll(t, b, st.NextTick.Add(500*time.Millisecond)); r.Fired != 1 || r.Skipped != 0 {
		t.Fatalf("fire after resume = %+v; want only the resumed next tick", r)
	}
	runs := schpTickRuns(t, b, string(s.ID), "tick")
	want := []time.Time{t0.Add(time.Second), t0.Add(2 * time.Second), st.NextTick}
	if len(runs) != len(want) {
		t.Fatalf("executions for ticks %v; want %v", runs, want)
	}
	for _, w := range want {
		if runs[strconv.FormatInt(w.UnixMilli(), 10)] != 1 {
			t.Fatalf("tick %v: %d executions; all %v", w, runs[strconv.FormatInt(w.UnixMilli(), 10)], runs)
		}
	}
}

// README "Exactly once": "of two engines firing the same tick ... one
// fires and the other is told `schedule_changed`", and "API": a replace
// that keeps the timing "keeps the next tick". Two engines fire while an
// operator re-applies the same definition over and over: every tick gets
// exactly one execution, none is lost.
func TestSchedPFireOnceWhileReplaced(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{})
			t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
			s := sdk.Schedule{ID: "sp-replace", Every: time.Second, Start: t0, CatchUp: sdk.CatchUpAll, Grace: time.Hour,
				TickTag: "tick", Lane: "sp-replace", Kind: "k"}
			if _, err := b.PutSchedule(ctx, s); err != nil {
				t.Fatal(err)
			}
			_, _, _, p := b.ScheduleKeysForTest(string(s.ID))
			const ticks = 40
			errs := make(chan error, 3)
			var wg sync.WaitGroup
			for range 2 {
				eb, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, SkipPrepare: true, Partitions: 8})
				if err != nil {
					t.Fatal(err)
				}
				defer eb.Close()
				wg.Go(func() {
					for k := 1; k <= 4*ticks; k++ {
						if _, err := eb.FireDueSchedules(ctx, sdk.FireSchedulesArgs{Partition: p,
							Now: t0.Add(time.Duration(k) * 250 * time.Millisecond)}); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Go(func() {
				for i := range 60 {
					r := s
					r.Payload = []byte("v" + strconv.Itoa(i))
					if _, err := b.PutSchedule(ctx, r); err != nil && !errors.Is(err, sdk.ErrScheduleChanged) {
						errs <- err
						return
					}
				}
			})
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			// Whatever a lost race left due fires now.
			schpFireAll(t, b, t0.Add(ticks*time.Second+500*time.Millisecond))
			runs := schpTickRuns(t, b, string(s.ID), "tick")
			if len(runs) != ticks {
				t.Fatalf("%d distinct ticks have executions, want %d", len(runs), ticks)
			}
			for k := 1; k <= ticks; k++ {
				if n := runs[strconv.FormatInt(t0.Add(time.Duration(k)*time.Second).UnixMilli(), 10)]; n != 1 {
					t.Fatalf("tick %d has %d executions", k, n)
				}
			}
			st, err := b.GetSchedule(ctx, s.ID)
			if err != nil || st.Fired != ticks || !st.NextTick.Equal(t0.Add((ticks+1)*time.Second)) {
				t.Fatalf("status %+v %v; want fired %d, next %v", st, err, ticks, t0.Add((ticks+1)*time.Second))
			}
		})
	}
}

// README "Ticks": "An interval ticks at `Start + k*Every` (k ≥ 1) ...
// `Start` defaults to the server time of the create"; the first tick is
// one interval after the create, and NextTicks shows the same ticks the
// engine fires.
func TestSchedPDefaultStartAndPhase(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{})
	before := time.Now()
	s := sdk.Schedule{ID: "sp-phase", Every: 90 * time.Second, Lane: "sp-phase", Kind: "k"}
	if _, err := b.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	st, err := b.GetSchedule(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Start.Before(before.Add(-time.Second)) || st.Start.After(time.Now().Add(time.Second)) {
		t.Fatalf("default Start %v, want about %v", st.Start, before)
	}
	if st.NextTick.Sub(st.Start) != s.Every {
		t.Fatalf("next tick %v, start %v: want one interval apart", st.NextTick, st.Start)
	}
	s.Start = st.Start
	want, err := valkeybackend.NextTicks(s, st.Start, 3)
	if err != nil || len(want) != 3 || !want[0].Equal(st.NextTick) {
		t.Fatalf("NextTicks = %v, %v; want first %v", want, err, st.NextTick)
	}
	for i, w := range want {
		if !w.Equal(st.Start.Add(time.Duration(i+1) * s.Every)) {
			t.Fatalf("NextTicks[%d] = %v, want Start+%d*Every", i, w, i+1)
		}
	}
}

// README "API": a replace "keeps the next tick when `Cron`, `TimeZone`,
// `Every` and `Start` are unchanged" — for a cron schedule too, with the
// zone left to its default (UTC) or named; a new zone places it anew.
func TestSchedPCronReplaceKeepsNextTick(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{})
	t0 := time.Now().Add(-time.Hour).Truncate(5 * time.Minute)
	s := sdk.Schedule{ID: "cron-keep", Cron: "*/5 * * * *", Start: t0, CatchUp: sdk.CatchUpAll, Lane: "ck", Kind: "k"}
	if _, err := b.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	if r := schpFireAll(t, b, t0.Add(16*time.Minute)); r.Fired == 0 {
		t.Fatalf("fire = %+v; want the ticks of the first 16 minutes", r)
	}
	first, err := b.GetSchedule(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tz := range []string{"", "UTC"} {
		r := s
		r.TimeZone, r.Kind = tz, "k-"+tz
		if _, err := b.PutSchedule(ctx, r); err != nil {
			t.Fatal(err)
		}
		st, _ := b.GetSchedule(ctx, s.ID)
		if !st.NextTick.Equal(first.NextTick) || st.Fired != first.Fired {
			t.Fatalf("replace with zone %q: next %v -> %v, fired %d -> %d", tz, first.NextTick, st.NextTick, first.Fired, st.Fired)
		}
	}
	r := s
	r.TimeZone = "Asia/Kolkata" // +05:30: the */5 minutes stay, the next tick is placed anew after Start
	if _, err := b.PutSchedule(ctx, r); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.GetSchedule(ctx, s.ID); st.TimeZone != "Asia/Kolkata" || !st.NextTick.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("replace with a new zone: zone %q next %v; want the first tick after Start, %v", st.TimeZone, st.NextTick,
			t0.Add(5*time.Minute))
	}
}
