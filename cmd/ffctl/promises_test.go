package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// schpFire fires every partition's due schedules at now.
func (f *fixture) schpFire(now time.Time) sdk.FireSchedulesResult {
	f.t.Helper()
	var sum sdk.FireSchedulesResult
	for p := range f.b.Partitions() {
		r, err := f.b.FireDueSchedules(f.ctx, sdk.FireSchedulesArgs{Partition: p, Now: now})
		if err != nil {
			f.t.Fatal(err)
		}
		sum.Fired += r.Fired
		sum.Schedules += r.Schedules
	}
	return sum
}

// README "Operating it: ffctl": `go run ./cmd/ffctl help` lists "every
// command, the exit codes", and `ffctl COMMAND --help` lists a command's
// flags with their defaults: the schedules commands are all there, and
// `schedules --help` documents --limit's default (100) and range, --after,
// and the connection flags' defaults.
func TestSchedPHelpDocumentsSchedules(t *testing.T) {
	var o, e bytes.Buffer
	if code := run(context.Background(), []string{"help"}, &o, &e); code != exitOK {
		t.Fatalf("ffctl help exited %d: %s", code, e.String())
	}
	for _, w := range []string{"schedules ", "schedules describe ID", "schedules pause ID", "schedules resume ID",
		"schedules delete ID", "Exit codes", "3 not found"} {
		if !strings.Contains(o.String(), w) {
			t.Errorf("ffctl help lacks %q:\n%s", w, o.String())
		}
	}
	o.Reset()
	e.Reset()
	if code := run(context.Background(), []string{"schedules", "--help"}, &o, &e); code != exitOK {
		t.Fatalf("ffctl schedules --help exited %d", code)
	}
	help := o.String() + e.String()
	for _, w := range []string{"--limit", "(default 100)", "1..1000", "--after", "--addr", `(default "127.0.0.1:6379")`,
		"--namespace", "--output", `(default "table")`} {
		if !strings.Contains(help, w) {
			t.Errorf("schedules --help lacks %q:\n%s", w, help)
		}
	}
}

// README "Exit codes": "`2` usage: bad flags, arguments or input ...:
// nothing was written, and input ffctl can judge itself is refused before
// it connects". Pointed at an address nothing listens on, each malformed
// schedules command exits 2 (not 1, a failed connection) and says why.
func TestSchedPBadFlagsRefusedBeforeConnect(t *testing.T) {
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"schedules", "--bogus"}, "bogus"},
		{[]string{"schedules", "--limit", "1001"}, "--limit"},
		{[]string{"schedules", "--limit", "-1"}, "--limit"},
		{[]string{"schedules", "--limit", "many"}, "limit"},
		{[]string{"schedules", "--after", "a:b"}, "--after"},
		{[]string{"schedules", "describe"}, "schedule ID"},
		{[]string{"schedules", "pause", "a:b"}, "schedule id"},
		{[]string{"schedules", "resume", "x", "--after", "y"}, "after"},
		{[]string{"schedules", "delete", "x", "y"}, "schedule ID"},
		{[]string{"schedules", "-o", "yaml"}, "yaml"},
		{[]string{"schedules", "purge", "x"}, "unexpected arguments"},
	} {
		_, errs, code := ctlAt("127.0.0.1:1", c.args...)
		if code != exitUsage || !strings.Contains(errs, c.says) {
			t.Errorf("ffctl %v exited %d, want %d, saying %q: %s", c.args, code, exitUsage, c.says, errs)
		}
	}
	// The same well-formed command cannot connect there: exit 1.
	if _, errs, code := ctlAt("127.0.0.1:1", "schedules", "--connect-timeout", "500ms"); code != exitFailure {
		t.Errorf("ffctl schedules against nothing exited %d, want %d: %s", code, exitFailure, errs)
	}
}

// README: "`schedules [--limit N] [--after ID]` ... (pages of 100, at
// most 1000; a page that has more says `next page: --after '...'`)". A
// page holding the last schedule does not say there is a next page, in
// the table nor in JSON; a page that has more does.
func TestSchedPListNextPageOnlyWhenMore(t *testing.T) {
	f := newFixture(t)
	for _, id := range []sdk.ScheduleID{"a", "b"} {
		if _, err := f.b.PutSchedule(f.ctx, sdk.Schedule{ID: id, Every: time.Minute, Lane: "l", Kind: "k"}); err != nil {
			t.Fatal(err)
		}
	}
	if out := f.ok("schedules", "--limit", "1"); !strings.Contains(out, "next page: --after 'a'") {
		t.Fatalf("a page with more lacks its next page line:\n%s", out)
	}
	if out := f.ok("schedules", "--limit", "2"); strings.Contains(out, "next page") {
		t.Errorf("the page holding every schedule says there is a next page:\n%s", out)
	}
	if out := f.ok("schedules", "--limit", "1", "--after", "a"); strings.Contains(out, "next page") {
		t.Errorf("the last page says there is a next page:\n%s", out)
	}
	var list struct {
		Schedules []scheduleJSON
		Next      string
	}
	f.okJSON(&list, "schedules", "--limit", "2")
	if len(list.Schedules) != 2 || list.Next != "" {
		t.Errorf("-o json of the last page: %d schedules, next %q; want 2 and none", len(list.Schedules), list.Next)
	}
}

// README: "`schedules pause ID`, `schedules resume ID`, `schedules delete
// ID` | pauses a schedule, resumes it at its next tick after now (ticks
// that fell while paused never fire), or deletes it (its executions
// stay)", with flags anywhere and -o json. The engine's firing
// (FireDueSchedules) is what shows the effect.
func TestSchedPActionsAsDocumented(t *testing.T) {
	f := newFixture(t)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	s := sdk.Schedule{ID: "act", Every: time.Second, Start: t0, CatchUp: sdk.CatchUpAll, Grace: 24 * time.Hour,
		TickTag: "tick", Lane: "act", Kind: "k"}
	if _, err := f.b.PutSchedule(f.ctx, s); err != nil {
		t.Fatal(err)
	}
	if r := f.schpFire(t0.Add(2500 * time.Millisecond)); r.Fired != 2 {
		t.Fatalf("fire = %+v; want 2", r)
	}
	var act map[string]any
	f.okJSON(&act, "-o", "json", "schedules", "pause", "act")
	if act["id"] != "act" || act["action"] != "pause" {
		t.Fatalf("pause -o json: %v", act)
	}
	if r := f.schpFire(time.Now().Add(time.Hour)); r.Fired != 0 {
		t.Fatalf("fire of the paused schedule = %+v; want nothing", r)
	}
	f.ok("schedules", "pause", "act") // pausing a paused schedule changes nothing
	before := time.Now()
	if out := f.ok("--output", "table", "schedules", "resume", "act"); !strings.Contains(out, "schedule act resumed") {
		t.Fatalf("resume printed %q", out)
	}
	var d scheduleJSON
	f.okJSON(&d, "schedules", "describe", "act")
	if d.Paused || d.NextTick.Before(before.Add(-time.Second)) || d.NextTick.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("after resume: paused %v, next tick %v; want the first tick after %v", d.Paused, d.NextTick, before)
	}
	// Grace 24h, catch-up all: a paused tick still pending would fire here.
	if r := f.schpFire(d.NextTick.Add(500 * time.Millisecond)); r.Fired != 1 {
		t.Fatalf("fire after resume = %+v; want only the next tick after the resume", r)
	}
	if n := f.schpCount("act"); n != 3 {
		t.Fatalf("%d executions after the resume, want 3 (2 before the pause, 1 after)", n)
	}
	f.ok("schedules", "delete", "act", "-o", "json")
	if r := f.schpFire(time.Now().Add(time.Hour)); r.Fired != 0 || r.Schedules != 0 {
		t.Fatalf("fire after delete = %+v; want nothing", r)
	}
	if n := f.schpCount("act"); n != 3 {
		t.Fatalf("%d executions after the delete, want the 3 kept", n)
	}
	f.exits(exitNotFound, "schedules", "describe", "act")
	var list struct{ Schedules []scheduleJSON }
	f.okJSON(&list, "schedules")
	if len(list.Schedules) != 0 {
		t.Fatalf("schedules after delete: %+v", list.Schedules)
	}
}

// schpCount counts lane's executions over every partition.
func (f *fixture) schpCount(lane sdk.LaneID) int {
	f.t.Helper()
	n := 0
	for p := range f.b.Partitions() {
		var cursor sdk.ExecutionID
		for {
			page, err := f.b.ListExecutions(f.ctx, p, cursor, 1000)
			if err != nil {
				f.t.Fatal(err)
			}
			for _, id := range page.IDs {
				ec, err := f.b.ReadExecutionContext(f.ctx, id)
				if err != nil {
					f.t.Fatal(err)
				}
				if ec.Lane == lane {
					n++
				}
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
	}
	return n
}
