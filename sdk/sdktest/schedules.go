package sdktest

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Schedules (sdk.Scheduler, RoleSchedules). The suite fires them itself
// with FireDueSchedules and a fixed clock (ticks an hour in the past, so
// the backend's server time never decides which are due).

// fireAll fires every partition's due schedules at now and sums the results.
func (e *env) fireAll(sc sdk.Scheduler, now time.Time) sdk.FireSchedulesResult {
	e.t.Helper()
	var sum sdk.FireSchedulesResult
	for p := range e.b.Partitions() {
		r, err := sc.FireDueSchedules(e.ctx, sdk.FireSchedulesArgs{Partition: p, Now: now})
		if err != nil {
			e.t.Fatalf("FireDueSchedules(%d, %v) = %v", p, now, err)
		}
		sum.Schedules += r.Schedules
		sum.Fired += r.Fired
		sum.Duplicates += r.Duplicates
		sum.Skipped += r.Skipped
		sum.Changed += r.Changed
	}
	return sum
}

// tickRuns maps each tick time (unix ms, from the tick tag) to the
// executions of lane carrying it.
func (e *env) tickRuns(lane sdk.LaneID, tag string) map[int64][]sdk.ExecutionID {
	e.t.Helper()
	out := map[int64][]sdk.ExecutionID{}
	for _, id := range e.listAll() {
		c, err := e.b.ReadExecutionContext(e.ctx, id)
		if err != nil {
			e.t.Fatalf("ReadExecutionContext(%s) = %v", id, err)
		}
		if c.Lane != lane {
			continue
		}
		ms, err := strconv.ParseInt(c.Tags[tag], 10, 64)
		if err != nil {
			e.t.Fatalf("execution %s of lane %s has tick tag %q", id, lane, c.Tags[tag])
		}
		out[ms] = append(out[ms], id)
	}
	return out
}

// requireTicks requires lane's executions to be exactly one per tick of
// want.
func (e *env) requireTicks(what string, lane sdk.LaneID, tag string, want []time.Time) {
	e.t.Helper()
	runs := e.tickRuns(lane, tag)
	for _, w := range want {
		if n := len(runs[w.UnixMilli()]); n != 1 {
			e.t.Fatalf("%s: tick %v has %d executions, want 1", what, w, n)
		}
	}
	if len(runs) != len(want) {
		var got []int64
		for ms := range runs {
			got = append(got, ms)
		}
		slices.Sort(got)
		e.t.Fatalf("%s: executions for ticks %v, want %d ticks", what, got, len(want))
	}
}

// everySecond returns the ticks t0+from s .. t0+to s.
func everySecond(t0 time.Time, from, to int) []time.Time {
	var out []time.Time
	for k := from; k <= to; k++ {
		out = append(out, t0.Add(time.Duration(k)*time.Second))
	}
	return out
}

func (e *env) getSchedule(sc sdk.Scheduler, id sdk.ScheduleID) sdk.ScheduleStatus {
	e.t.Helper()
	st, err := sc.GetSchedule(e.ctx, id)
	if err != nil {
		e.t.Fatalf("GetSchedule(%s) = %v", id, err)
	}
	return st
}

// testScheduleFireOnce: a put schedule reads back as put; its due ticks
// fire once each, whoever fires them (two firings at once included); a
// tick fired again (a replace moved Start back) finds its execution
// through the tick's idempotency key and creates nothing.
func testScheduleFireOnce(e *env) {
	const lane sdk.LaneID = "sdktest-sched"
	sc := need(e, e.roles.Schedules, sdk.RoleSchedules)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	s := sdk.Schedule{ID: sdk.ScheduleID(uniqueName("once")), Every: time.Second, Start: t0, CatchUp: sdk.CatchUpAll,
		CatchUpMax: 1000, Grace: time.Minute, TickTag: "tick", Lane: lane, Kind: "report",
		Payload: []byte("p\x00\xffq"), Priority: 3, Tags: map[string]string{"team": "a"}}
	created, err := sc.PutSchedule(e.ctx, s)
	if err != nil || !created {
		e.t.Fatalf("PutSchedule = %v, %v; want created", created, err)
	}
	created, err = sc.PutSchedule(e.ctx, s)
	if err != nil || created {
		e.t.Fatalf("PutSchedule again = %v, %v; want replaced", created, err)
	}
	st := e.getSchedule(sc, s.ID)
	if st.Every != time.Second || !st.Start.Equal(t0) || st.CatchUp != sdk.CatchUpAll || st.CatchUpMax != 1000 ||
		st.Grace != time.Minute || st.TickTag != "tick" || st.Lane != lane || st.Kind != "report" ||
		!bytes.Equal(st.Payload, s.Payload) || st.Priority != 3 || st.Tags["team"] != "a" || len(st.Tags) != 1 ||
		st.Paused || !st.NextTick.Equal(t0.Add(time.Second)) || st.Fired != 0 || st.Revision != 2 {
		e.t.Fatalf("GetSchedule = %+v; want it as put, next tick %v, revision 2", st, t0.Add(time.Second))
	}

	if r := e.fireAll(sc, t0.Add(3500*time.Millisecond)); r.Fired != 3 || r.Duplicates != 0 || r.Skipped != 0 {
		e.t.Fatalf("fire at t0+3.5s = %+v; want 3 fired", r)
	}
	if r := e.fireAll(sc, t0.Add(3500*time.Millisecond)); r.Fired != 0 || r.Schedules != 0 {
		e.t.Fatalf("fire at t0+3.5s again = %+v; want nothing due", r)
	}
	e.requireTicks("after t0+3.5s", lane, "tick", everySecond(t0, 1, 3))
	ids := e.tickRuns(lane, "tick")[t0.Add(time.Second).UnixMilli()]
	e.requireContext(ids[0], lane, "report", s.Payload, map[string]string{"team": "a",
		"tick": strconv.FormatInt(t0.Add(time.Second).UnixMilli(), 10)})
	if p := e.describe(ids[0]).Priority; p != 3 {
		e.t.Fatalf("a tick's execution has priority %d, want 3", p)
	}

	// Two firings at once: each tick is created by one of them.
	var wg sync.WaitGroup
	results := make([]sdk.FireSchedulesResult, 2)
	for i := range results {
		wg.Go(func() { results[i] = e.fireAll(sc, t0.Add(10500*time.Millisecond)) })
	}
	wg.Wait()
	if fired := results[0].Fired + results[1].Fired; fired != 7 || results[0].Duplicates+results[1].Duplicates != 0 {
		e.t.Fatalf("two firings at t0+10.5s = %+v, %+v; want 7 fired in all", results[0], results[1])
	}
	e.requireTicks("after two firings", lane, "tick", everySecond(t0, 1, 10))

	// Start one second back: the same tick instants, from t0 on, due again.
	s.Start = t0.Add(-time.Second)
	e.must("PutSchedule with Start moved back", func() error { _, err := sc.PutSchedule(e.ctx, s); return err }())
	if st := e.getSchedule(sc, s.ID); !st.NextTick.Equal(t0) {
		e.t.Fatalf("next tick after Start moved back = %v, want %v", st.NextTick, t0)
	}
	if r := e.fireAll(sc, t0.Add(10500*time.Millisecond)); r.Fired != 1 || r.Duplicates != 10 {
		e.t.Fatalf("fire again = %+v; want 1 fired (t0) and 10 duplicates", r)
	}
	e.requireTicks("after the ticks fired again", lane, "tick", everySecond(t0, 0, 10))
	st = e.getSchedule(sc, s.ID)
	if st.Fired != 11 || !st.LastTick.Equal(t0.Add(10*time.Second)) || !st.NextTick.Equal(t0.Add(11*time.Second)) ||
		st.LastExecution == "" || st.Revision != 3 {
		e.t.Fatalf("status = fired %d last tick %v next %v last %q revision %d; want 11, %v, %v, an id, 3",
			st.Fired, st.LastTick, st.NextTick, st.LastExecution, st.Revision, t0.Add(10*time.Second), t0.Add(11*time.Second))
	}
}

// testScheduleCatchUp: of 20 due ticks, the two found within Grace fire
// under every policy; of the 18 missed, skip fires none, one the latest,
// all the latest CatchUpMax.
func testScheduleCatchUp(e *env) {
	sc := need(e, e.roles.Schedules, sdk.RoleSchedules)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	now := t0.Add(20500 * time.Millisecond) // ticks 1..20 due; 19 and 20 within 2s
	for _, c := range []struct {
		policy        sdk.CatchUp
		max           int
		first         int // the first tick that fires
		fired, skiped int
	}{
		{sdk.CatchUpSkip, 0, 19, 2, 18},
		{sdk.CatchUpOne, 0, 18, 3, 17},
		{"", 0, 18, 3, 17}, // the default is one
		{sdk.CatchUpAll, 5, 14, 7, 13},
		{sdk.CatchUpAll, 0, 1, 20, 0}, // the default max (100) covers them all
	} {
		lane := sdk.LaneID("sdktest-catchup-" + string(c.policy) + strconv.Itoa(c.max))
		s := sdk.Schedule{ID: sdk.ScheduleID(uniqueName("catchup")), Every: time.Second, Start: t0, CatchUp: c.policy,
			CatchUpMax: c.max, Grace: 2 * time.Second, TickTag: "tick", Lane: lane, Kind: "k"}
		if _, err := sc.PutSchedule(e.ctx, s); err != nil {
			e.t.Fatalf("PutSchedule(%s) = %v", c.policy, err)
		}
		if r := e.fireAll(sc, now); r.Fired != c.fired || r.Skipped != c.skiped {
			e.t.Fatalf("%q max %d: fire = %+v; want %d fired, %d skipped", c.policy, c.max, r, c.fired, c.skiped)
		}
		e.requireTicks(string(c.policy), lane, "tick", everySecond(t0, c.first, 20))
		st := e.getSchedule(sc, s.ID)
		if st.Fired != uint64(c.fired) || st.Skipped != uint64(c.skiped) || !st.NextTick.Equal(t0.Add(21*time.Second)) {
			e.t.Fatalf("%q: status fired %d skipped %d next %v", c.policy, st.Fired, st.Skipped, st.NextTick)
		}
		e.must("DeleteSchedule", sc.DeleteSchedule(e.ctx, s.ID))
	}
}

// testScheduleStates: a paused schedule fires nothing and resumes after
// the server's time (the ticks of the pause never fire); list pages in id
// order; a deleted schedule is not found, nor is an unknown one.
func testScheduleStates(e *env) {
	const lane sdk.LaneID = "sdktest-sched-states"
	sc := need(e, e.roles.Schedules, sdk.RoleSchedules)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	prefix := uniqueName("states")
	var ids []sdk.ScheduleID
	for i := range 3 {
		id := sdk.ScheduleID(prefix + "-" + strconv.Itoa(i))
		ids = append(ids, id)
		s := sdk.Schedule{ID: id, Every: time.Second, Start: t0, CatchUp: sdk.CatchUpAll, TickTag: "tick", Lane: lane, Kind: "k"}
		if i == 2 {
			s = sdk.Schedule{ID: id, Cron: "0 3 * * *", TimeZone: "Europe/Paris", Lane: lane, Kind: "k"}
		}
		if _, err := sc.PutSchedule(e.ctx, s); err != nil {
			e.t.Fatalf("PutSchedule(%s) = %v", id, err)
		}
	}
	e.must("PauseSchedule", sc.PauseSchedule(e.ctx, ids[0]))
	e.must("PauseSchedule again", sc.PauseSchedule(e.ctx, ids[0]))
	// A replace keeps the pause.
	e.must("PutSchedule of a paused one", func() error {
		_, err := sc.PutSchedule(e.ctx, sdk.Schedule{ID: ids[0], Every: time.Second, Start: t0, CatchUp: sdk.CatchUpAll,
			TickTag: "tick", Lane: lane, Kind: "k2"})
		return err
	}())
	if st := e.getSchedule(sc, ids[0]); !st.Paused || !st.NextTick.IsZero() || st.Kind != "k2" {
		e.t.Fatalf("paused schedule: paused %v next %v kind %q", st.Paused, st.NextTick, st.Kind)
	}
	if r := e.fireAll(sc, t0.Add(2500*time.Millisecond)); r.Fired != 2 {
		e.t.Fatalf("fire with one of two interval schedules paused = %+v; want 2 fired", r)
	}
	before := time.Now()
	e.must("ResumeSchedule", sc.ResumeSchedule(e.ctx, ids[0]))
	e.must("ResumeSchedule again", sc.ResumeSchedule(e.ctx, ids[0]))
	st := e.getSchedule(sc, ids[0])
	e.requireAround("resumed next tick", st.NextTick, before, time.Now().Add(time.Second))
	if st.Paused || st.NextTick.Sub(t0)%time.Second != 0 {
		e.t.Fatalf("resumed: paused %v, next tick %v off the interval's phase", st.Paused, st.NextTick)
	}
	if st := e.getSchedule(sc, ids[2]); st.TimeZone != "Europe/Paris" || st.NextTick.IsZero() ||
		st.NextTick.In(mustZone(e, "Europe/Paris")).Hour() != 3 || st.CatchUp != sdk.CatchUpOne || st.Grace != sdk.ScheduleGraceDefault {
		e.t.Fatalf("cron schedule = zone %q next %v catch-up %q grace %v", st.TimeZone, st.NextTick, st.CatchUp, st.Grace)
	}

	all, err := sc.ListSchedules(e.ctx, "", 1000)
	if err != nil {
		e.t.Fatalf("ListSchedules = %v", err)
	}
	var mine []sdk.ScheduleID
	for i, s := range all {
		if i > 0 && all[i-1].ID >= s.ID {
			e.t.Fatalf("ListSchedules out of order: %s then %s", all[i-1].ID, s.ID)
		}
		if strings.HasPrefix(string(s.ID), prefix) {
			mine = append(mine, s.ID)
		}
	}
	if !slices.Equal(mine, ids) {
		e.t.Fatalf("ListSchedules lists %v of ours, want %v", mine, ids)
	}
	page, err := sc.ListSchedules(e.ctx, ids[0], 1)
	if err != nil || len(page) != 1 || page[0].ID != ids[1] {
		e.t.Fatalf("ListSchedules after %s limit 1 = %v, %v; want %s", ids[0], page, err, ids[1])
	}

	e.must("DeleteSchedule", sc.DeleteSchedule(e.ctx, ids[1]))
	for what, call := range map[string]func() error{
		"GetSchedule of a deleted one": func() error { _, err := sc.GetSchedule(e.ctx, ids[1]); return err },
		"DeleteSchedule again":         func() error { return sc.DeleteSchedule(e.ctx, ids[1]) },
		"PauseSchedule of an unknown":  func() error { return sc.PauseSchedule(e.ctx, "sdktest-no-such") },
		"ResumeSchedule of an unknown": func() error { return sc.ResumeSchedule(e.ctx, "sdktest-no-such") },
	} {
		e.rejects(what, call, sdk.ErrScheduleNotFound)
	}
	if r := e.fireAll(sc, t0.Add(5*time.Second)); r.Fired != 0 {
		e.t.Fatalf("fire after the delete and the resume = %+v; want nothing", r)
	}
}

func mustZone(e *env, name string) *time.Location {
	e.t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return loc
}

// testScheduleBadInput: a malformed schedule is a validation error and
// writes nothing.
func testScheduleBadInput(e *env) {
	sc := need(e, e.roles.Schedules, sdk.RoleSchedules)
	good := sdk.Schedule{ID: "sdktest-bad", Cron: "*/5 * * * *", Lane: "sdktest-bad", Kind: "k", Tags: map[string]string{"a": "1"}}
	if err := good.Validate(); err != nil {
		e.t.Fatalf("the template schedule is refused: %v", err)
	}
	for what, edit := range map[string]func(*sdk.Schedule){
		"malformed cron":          func(s *sdk.Schedule) { s.Cron = "61 * * * *" },
		"cron of six fields":      func(s *sdk.Schedule) { s.Cron = "0 0 * * * *" },
		"cron that never matches": func(s *sdk.Schedule) { s.Cron = "0 0 30 2 *" },
		"@every":                  func(s *sdk.Schedule) { s.Cron = "@every 1m" },
		"zone inside the cron":    func(s *sdk.Schedule) { s.Cron = "CRON_TZ=UTC 0 * * * *" },
		"unknown time zone":       func(s *sdk.Schedule) { s.TimeZone = "Mars/Olympus_Mons" },
		"Local time zone":         func(s *sdk.Schedule) { s.TimeZone = "Local" },
		"no cron, no interval":    func(s *sdk.Schedule) { s.Cron = "" },
		"both cron and interval":  func(s *sdk.Schedule) { s.Every = time.Minute },
		"interval under 1s":       func(s *sdk.Schedule) { s.Cron, s.Every = "", 500*time.Millisecond },
		"negative interval":       func(s *sdk.Schedule) { s.Cron, s.Every = "", -time.Minute },
		"interval with a zone":    func(s *sdk.Schedule) { s.Cron, s.Every, s.TimeZone = "", time.Minute, "UTC" },
		"lane with a space":       func(s *sdk.Schedule) { s.Lane = "bad lane" },
		"lane with a brace":       func(s *sdk.Schedule) { s.Lane = "x{y}" },
		"empty lane":              func(s *sdk.Schedule) { s.Lane = "" },
		"id with a colon":         func(s *sdk.Schedule) { s.ID = "a:b" },
		"empty id":                func(s *sdk.Schedule) { s.ID = "" },
		"unknown catch-up":        func(s *sdk.Schedule) { s.CatchUp = "sometimes" },
		"catch-up max over":       func(s *sdk.Schedule) { s.CatchUpMax = sdk.MaxScheduleCatchUp + 1 },
		"negative grace":          func(s *sdk.Schedule) { s.Grace = -time.Second },
		"grace under 1s":          func(s *sdk.Schedule) { s.Grace = time.Millisecond },
		"tick tag among the tags": func(s *sdk.Schedule) { s.TickTag = "a" },
		"empty kind":              func(s *sdk.Schedule) { s.Kind = "" },
		"priority out of range":   func(s *sdk.Schedule) { s.Priority = sdk.MaxPriority + 1 },
		"payload over the limit": func(s *sdk.Schedule) {
			s.Payload = make([]byte, max(e.h.MaxPayloadBytes, 1)+1)
		},
	} {
		s := good
		s.Tags = map[string]string{"a": "1"}
		edit(&s)
		if what == "payload over the limit" && e.h.MaxPayloadBytes == 0 {
			continue
		}
		e.rejects("PutSchedule with "+what, func() error { _, err := sc.PutSchedule(e.ctx, s); return err }, sdk.ErrValidation)
	}
	e.rejects("FireDueSchedules of a partition out of range", func() error {
		_, err := sc.FireDueSchedules(e.ctx, sdk.FireSchedulesArgs{Partition: e.b.Partitions(), Now: time.Now()})
		return err
	}, sdk.ErrValidation)
	e.rejects("GetSchedule of a malformed id", func() error { _, err := sc.GetSchedule(e.ctx, "a b"); return err }, sdk.ErrValidation)
	e.rejects("ListSchedules over 1000", func() error { _, err := sc.ListSchedules(e.ctx, "", 1001); return err }, sdk.ErrValidation)
}
