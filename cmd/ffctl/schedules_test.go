package main

import (
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// TestSchedules: schedules lists and pages, describe shows a schedule's
// definition and state, pause, resume and delete act on it; unknown ids
// exit 3 and malformed input exits 2 having written nothing.
func TestSchedules(t *testing.T) {
	f := newFixture(t)
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, s := range []sdk.Schedule{
		{ID: "a-nightly", Cron: "30 1 * * *", TimeZone: "Europe/Paris", Lane: "reports", Kind: "build",
			Payload: []byte(`{"scope":"all"}`), Tags: map[string]string{"team": "data"}},
		{ID: "b-heartbeat", Every: time.Minute, Start: start, CatchUp: sdk.CatchUpSkip, TickTag: "tick", Lane: "ops", Kind: "ping",
			Payload: []byte{0xff, 0xfe}},
	} {
		if _, err := f.b.PutSchedule(f.ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	var list struct {
		Schedules []scheduleJSON
		Next      string
	}
	f.okJSON(&list, "schedules")
	if len(list.Schedules) != 2 || list.Next != "" {
		t.Fatalf("schedules: %+v", list)
	}
	a, b := list.Schedules[0], list.Schedules[1]
	if a.ID != "a-nightly" || a.Cron != "30 1 * * *" || a.TimeZone != "Europe/Paris" || a.CatchUp != sdk.CatchUpOne ||
		a.Payload != `{"scope":"all"}` || a.Tags["team"] != "data" || a.NextTick.IsZero() || a.Paused {
		t.Errorf("a-nightly: %+v", a)
	}
	if b.ID != "b-heartbeat" || b.EveryMS != 60000 || !b.Start.Equal(start) || b.CatchUp != sdk.CatchUpSkip ||
		b.TickTag != "tick" || b.PayloadBase64 == "" || !b.NextTick.Equal(start.Add(time.Minute)) {
		t.Errorf("b-heartbeat: %+v", b)
	}
	f.okJSON(&list, "schedules", "--limit", "1")
	if len(list.Schedules) != 1 || list.Next != "a-nightly" {
		t.Fatalf("first page: %+v", list)
	}
	f.okJSON(&list, "schedules", "--limit", "1", "--after", list.Next)
	if len(list.Schedules) != 1 || list.Schedules[0].ID != "b-heartbeat" {
		t.Fatalf("second page: %+v", list)
	}
	table := f.ok("schedules")
	for _, w := range []string{"NEXT TICK", "a-nightly", "30 1 * * * (Europe/Paris)", "every 1m0s", "reports"} {
		if !strings.Contains(table, w) {
			t.Errorf("schedules table lacks %q:\n%s", w, table)
		}
	}
	if out := f.ok("schedules", "describe", "b-heartbeat"); !strings.Contains(out, "tick tag") ||
		!strings.Contains(out, "base64://4=") || !strings.Contains(out, "skip") {
		t.Errorf("describe:\n%s", out)
	}

	if out := f.ok("schedules", "pause", "b-heartbeat"); !strings.Contains(out, "schedule b-heartbeat paused") {
		t.Errorf("pause: %s", out)
	}
	var d scheduleJSON
	f.okJSON(&d, "schedules", "describe", "b-heartbeat")
	if !d.Paused || !d.NextTick.IsZero() {
		t.Fatalf("after pause: %+v", d)
	}
	f.ok("schedules", "resume", "b-heartbeat")
	if st, err := f.b.GetSchedule(f.ctx, "b-heartbeat"); err != nil || st.Paused || !st.NextTick.After(time.Now().Add(-time.Second)) {
		t.Fatalf("after resume: %+v %v", st, err)
	}
	f.ok("schedules", "delete", "b-heartbeat")
	if _, err := f.b.GetSchedule(f.ctx, "b-heartbeat"); !sdkNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}

	keys := f.keyCount()
	for _, args := range [][]string{{"schedules", "delete", "b-heartbeat"}, {"schedules", "describe", "nope"},
		{"schedules", "pause", "nope"}, {"schedules", "resume", "nope"}} {
		f.exits(exitNotFound, args...)
	}
	for _, args := range [][]string{{"schedules", "describe", "a:b"}, {"schedules", "pause"},
		{"schedules", "extra"}, {"schedules", "--limit", "0"}, {"schedules", "--after", "a b"},
		{"schedules", "delete", "x", "y"}} {
		f.exits(exitUsage, args...)
	}
	if n := f.keyCount(); n != keys {
		t.Fatalf("refused commands changed the key count: %d -> %d", keys, n)
	}
}

func sdkNotFound(err error) bool { return sdk.CodeOf(err) == sdk.CodeScheduleNotFound }
