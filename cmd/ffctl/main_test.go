package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

var shared *valkeytest.Server

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Close()
	}
	os.Exit(code)
}

// fixture is a flushed server, a backend on it (which loaded the library)
// and ffctl pointed at it.
type fixture struct {
	t    *testing.T
	ctx  context.Context
	addr string
	b    *valkeybackend.Backend
}

const testPartitions = 4

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if shared == nil {
		s, err := valkeytest.Start(context.Background(), valkeytest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		shared = s
	}
	ctx := context.Background()
	if err := valkeytest.FlushAll(ctx, []string{shared.Addr()}); err != nil {
		t.Fatal(err)
	}
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{shared.Addr()}, Partitions: testPartitions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return &fixture{t: t, ctx: ctx, addr: shared.Addr(), b: b}
}

// ctl runs ffctl in-process against the fixture's server.
func (f *fixture) ctl(args ...string) (stdout, stderr string, code int) {
	f.t.Helper()
	return ctlAt(f.addr, args...)
}

func ctlAt(addr string, args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = run(context.Background(), append(args, "--addr", addr), &o, &e)
	return o.String(), e.String(), code
}

// ok runs ffctl and fails the test unless it exits 0.
func (f *fixture) ok(args ...string) string {
	f.t.Helper()
	out, errs, code := f.ctl(args...)
	if code != exitOK {
		f.t.Fatalf("ffctl %v exited %d: %s%s", args, code, out, errs)
	}
	return out
}

// okJSON runs ffctl with -o json and decodes its output into v.
func (f *fixture) okJSON(v any, args ...string) {
	f.t.Helper()
	out := f.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		f.t.Fatalf("ffctl %v -o json: %v\n%s", args, err, out)
	}
}

// exits runs ffctl and fails the test unless it exits with code.
func (f *fixture) exits(code int, args ...string) string {
	f.t.Helper()
	out, errs, got := f.ctl(args...)
	if got != code {
		f.t.Fatalf("ffctl %v exited %d, want %d: %s%s", args, got, code, out, errs)
	}
	return errs
}

func (f *fixture) create(lane sdk.LaneID, mod func(*sdk.CreateExecutionArgs)) sdk.ExecutionID {
	f.t.Helper()
	a := sdk.CreateExecutionArgs{Lane: lane, Kind: "job"}
	if mod != nil {
		mod(&a)
	}
	r, err := f.b.CreateExecution(f.ctx, a)
	if err != nil {
		f.t.Fatal(err)
	}
	return r.ID
}

// claim grants and claims id as worker w.
func (f *fixture) claim(id sdk.ExecutionID, lane sdk.LaneID, w string) sdk.Handle {
	f.t.Helper()
	g := sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: lane, WorkerID: sdk.WorkerID(w), WorkerInstanceID: sdk.WorkerInstanceID(w + "-1")}
	if _, err := f.b.IssueClaimGrant(f.ctx, g); err != nil {
		f.t.Fatalf("grant %s: %v", id, err)
	}
	a := sdk.ClaimExecutionArgs{ExecutionID: id, Lane: lane, WorkerID: g.WorkerID, WorkerInstanceID: g.WorkerInstanceID, LeaseTTL: time.Minute}
	c, err := f.b.ClaimExecution(f.ctx, a)
	if errors.Is(err, sdk.ErrUseClaimResumed) {
		c, err = f.b.ClaimResumedExecution(f.ctx, a)
	}
	if err != nil {
		f.t.Fatalf("claim %s: %v", id, err)
	}
	return c.Handle
}

func (f *fixture) state(id sdk.ExecutionID) sdk.PublicState {
	f.t.Helper()
	s, err := f.b.ReadExecutionState(f.ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// deadLetter makes an execution that fails every attempt until its one
// retry is spent: failed, two attempts.
func (f *fixture) deadLetter(lane sdk.LaneID) sdk.ExecutionID {
	f.t.Helper()
	id := f.create(lane, func(a *sdk.CreateExecutionArgs) {
		a.Retry = sdk.RetryPolicy{MaxRetries: 1, Backoff: sdk.Backoff{ZeroDelay: true}}
	})
	for attempt := range 2 {
		if st := f.state(id); st == sdk.StateDelayed {
			p, _ := id.Partition()
			if _, err := f.b.PromoteDelayed(f.ctx, sdk.PromoteDelayedArgs{Lane: lane, Partition: p}); err != nil {
				f.t.Fatal(err)
			}
		}
		out, err := f.b.Fail(f.ctx, f.claim(id, lane, "w"), "boom "+itoa(attempt), "handler_error")
		if err != nil {
			f.t.Fatal(err)
		}
		if out.RetryScheduled != (attempt == 0) {
			f.t.Fatalf("attempt %d: retry scheduled %v", attempt, out.RetryScheduled)
		}
	}
	if st := f.state(id); st != sdk.StateFailed {
		f.t.Fatalf("dead letter is %s", st)
	}
	return id
}

// keyCount is the server's key count: bad input must leave it as it was.
func (f *fixture) keyCount() int64 {
	f.t.Helper()
	n, err := f.b.Client().Do(f.ctx, f.b.Client().B().Dbsize().Build()).AsInt64()
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func ids(rows []execJSON) []sdk.ExecutionID {
	out := make([]sdk.ExecutionID, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	slices.Sort(out)
	return out
}

func sorted(xs ...sdk.ExecutionID) []sdk.ExecutionID {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}

func TestHelpVersionAndUsage(t *testing.T) {
	var o, e bytes.Buffer
	if code := run(context.Background(), []string{"help"}, &o, &e); code != exitOK {
		t.Fatalf("help exited %d", code)
	}
	for _, c := range commands {
		if !strings.Contains(o.String(), c.path) {
			t.Errorf("help lacks %q", c.path)
		}
	}
	for _, want := range []string{"Exit codes", "3 not found", "4 refused", "2 usage", cliconnEnv} {
		if !strings.Contains(o.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	for _, args := range [][]string{{"--version"}, {"version"}, {"lanes", "--version"}} {
		o.Reset()
		if code := run(context.Background(), args, &o, &e); code != exitOK || !strings.Contains(o.String(), "flowfabric library v") {
			t.Errorf("%v: exit %d, %q", args, code, o.String())
		}
	}
	o.Reset()
	e.Reset()
	if code := run(context.Background(), []string{"executions", "list", "--help"}, &o, &e); code != exitOK {
		t.Fatalf("executions list --help exited %d", code)
	}
	for _, want := range []string{"-lane", "-state", "-limit", "-cursor", "-addr", "-tls-ca", "-username", "-password", "-o", "Exit codes"} {
		if !strings.Contains(e.String(), want) {
			t.Errorf("executions list --help lacks %q", want)
		}
	}
	for _, args := range [][]string{nil, {"nope"}, {"executions", "nope"}, {"--addr", "x"}} {
		if code := run(context.Background(), args, &o, &e); code != exitUsage {
			t.Errorf("%v exited %d, want %d", args, code, exitUsage)
		}
	}
}

const cliconnEnv = "FF_VALKEY_PASSWORD"

// TestBadInputRefused: bad input exits 2 before any connection (the
// address is a closed port: a dial would exit 1), and input only the
// server can judge exits 2 with nothing written.
func TestBadInputRefused(t *testing.T) {
	const noServer = "127.0.0.1:1"
	good := "{p:1}:0193a000-0000-7000-8000-000000000001"
	for _, args := range [][]string{
		{"executions", "list", "--state", "bogus"},
		{"executions", "list", "--limit", "-1"},
		{"executions", "list", "--limit", "0"},
		{"executions", "list", "--limit", "1001"},
		{"executions", "list", "--cursor", "not-an-id"},
		{"executions", "list", "--lane", "has space"},
		{"executions", "list", "extra"},
		{"executions", "list", "-o", "yaml"},
		{"executions", "list", "--tls-cert", "/nonexistent"},
		{"executions", "list", "--tls-ca", "/nonexistent"},
		{"executions", "describe"},
		{"executions", "describe", "not-an-id"},
		{"executions", "describe", good, "extra"},
		{"executions", "cancel", "{p:x}:nope"},
		{"executions", "cancel", good, "--reason", strings.Repeat("r", 10000)},
		{"executions", "replay", good, "--max-replays", "0"},
		{"executions", "priority", good},
		{"executions", "priority", good, "high"},
		{"executions", "priority", good, "9001"},
		{"executions", "priority", good, "-5"},
		{"executions", "revoke", ""},
		{"dead-letters", "--state", "failed"},
		{"dead-letters", "--limit", "-3"},
		{"lanes", "pause"},
		{"lanes", "pause", "bad lane"},
		{"lanes", "resume", "a", "b"},
		{"lanes", "--lane", "bad,lane"},
		{"lanes", "extra"},
		{"suspended", "--limit", "-1"},
		{"waitpoints", "--cursor", "x"},
		{"signal", "--name", "go"},
		{"signal", "--token", "not-a-token", "--name", "go"},
		{"signal", "--token", "{p:1}:0193a000-0000-7000-8000-000000000001.k.0123456789012345678901234567890123456789", "--name", "bad name"},
		{"signal", "--token", "t", "--name", "n", "--payload", "x", "--payload-file", "/dev/null"},
		{"stream", "tail", "nope"},
		{"stream", "tail", good, "--attempt", "-2"},
		{"flows", "describe", "nope"},
		{"flows", "describe"},
	} {
		out, errs, code := ctlAt(noServer, args...)
		if code != exitUsage {
			t.Errorf("%v exited %d, want %d: %s%s", args, code, exitUsage, out, errs)
		} else if errs == "" {
			t.Errorf("%v: no message on stderr", args)
		}
	}

	// Input only the deployment can judge: a partition it does not have.
	f := newFixture(t)
	id := f.create("bad-input", nil)
	before := f.keyCount()
	beyond := strings.Replace(string(id), id.Tag(), sdk.PartitionTag(testPartitions+3), 1)
	for _, args := range [][]string{
		{"executions", "cancel", beyond},
		{"executions", "priority", beyond, "5"},
		{"executions", "revoke", beyond},
		{"executions", "replay", beyond},
		{"executions", "describe", beyond},
	} {
		if errs := f.exits(exitUsage, args...); !strings.Contains(errs, "invalid_input") {
			t.Errorf("%v: %s", args, errs)
		}
	}
	if after := f.keyCount(); after != before {
		t.Fatalf("bad input wrote: %d keys before, %d after", before, after)
	}
}

// TestListByLaneAndState: every state of a lane is listed, each execution
// once and in its own state, in tables and JSON; a page walk with --limit
// visits each execution once.
func TestListByLaneAndState(t *testing.T) {
	f := newFixture(t)
	const lane, other sdk.LaneID = "list-lane", "list-other"
	want := map[sdk.PublicState][]sdk.ExecutionID{}
	add := func(s sdk.PublicState, id sdk.ExecutionID) { want[s] = append(want[s], id) }
	for range 3 {
		add(sdk.StateWaiting, f.create(lane, nil))
	}
	f.create(other, nil) // another lane: never listed under lane
	add(sdk.StateDelayed, f.create(lane, func(a *sdk.CreateExecutionArgs) { a.DelayUntil = time.Now().Add(time.Hour) }))
	parked := f.create(lane, nil)
	if ok, err := f.b.Park(f.ctx, parked, lane, time.Now().Add(time.Hour), "rate_limited"); err != nil || !ok {
		t.Fatalf("park: %v %v", ok, err)
	}
	add(sdk.StateRateLimited, parked)
	want[sdk.StateWaiting] = slices.DeleteFunc(want[sdk.StateWaiting], func(x sdk.ExecutionID) bool { return x == parked })
	active := f.create(lane, nil)
	f.claim(active, lane, "w")
	add(sdk.StateActive, active)
	done := f.create(lane, nil)
	if err := f.b.Complete(f.ctx, f.claim(done, lane, "w"), nil); err != nil {
		t.Fatal(err)
	}
	add(sdk.StateCompleted, done)
	cancelled := f.create(lane, nil)
	if _, err := f.b.CancelExecution(f.ctx, sdk.CancelExecutionArgs{ExecutionID: cancelled, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	add(sdk.StateCancelled, cancelled)
	add(sdk.StateFailed, f.deadLetter(lane))
	sub, err := f.b.SubmitFlow(f.ctx, sdk.FlowSpec{Members: []sdk.FlowMember{
		{Name: "up", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "job"}},
		{Name: "down", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "job"}}},
		Edges: []sdk.FlowEdge{{From: "up", To: "down"}}})
	if err != nil {
		t.Fatal(err)
	}
	add(sdk.StateWaiting, sub.Members["up"])
	add(sdk.StateWaitingChildren, sub.Members["down"])

	var all []sdk.ExecutionID
	for st, xs := range want {
		all = append(all, xs...)
		var page listJSON
		f.okJSON(&page, "executions", "list", "--lane", string(lane), "--state", string(st))
		if got := ids(page.Executions); !slices.Equal(got, sorted(xs...)) {
			t.Errorf("--state %s: %v, want %v", st, got, sorted(xs...))
		}
		for _, r := range page.Executions {
			if r.State != st || r.Lane != lane || r.Kind != "job" {
				t.Errorf("--state %s: row %+v", st, r)
			}
		}
		table := f.ok("executions", "list", "--lane", string(lane), "--state", string(st))
		for _, id := range xs {
			if !strings.Contains(table, string(id)) || !strings.Contains(table, string(st)) {
				t.Errorf("--state %s table lacks %s:\n%s", st, id, table)
			}
		}
	}
	var none listJSON
	f.okJSON(&none, "executions", "list", "--lane", string(lane), "--state", "skipped")
	if len(none.Executions) != 0 || none.NextCursor != "" {
		t.Errorf("skipped: %+v", none)
	}
	if out := f.ok("executions", "list", "--lane", string(lane), "--state", "skipped"); !strings.Contains(out, "(none)") {
		t.Errorf("an empty table does not say so:\n%s", out)
	}

	// Every state at once, a page of 2 at a time.
	var seen []sdk.ExecutionID
	cursor := ""
	pages := 0
	for {
		args := []string{"executions", "list", "--lane", string(lane), "--limit", "2"}
		if cursor != "" {
			args = append(args, "--cursor", cursor)
		}
		var page listJSON
		f.okJSON(&page, args...)
		if len(page.Executions) > 2 {
			t.Fatalf("page of %d", len(page.Executions))
		}
		seen = append(seen, ids(page.Executions)...)
		pages++
		if page.NextCursor == "" {
			break
		}
		cursor = string(page.NextCursor)
		if pages > len(all) {
			t.Fatal("the page walk does not end")
		}
	}
	slices.Sort(seen)
	if !slices.Equal(seen, sorted(all...)) {
		t.Fatalf("page walk saw %v, want %v", seen, sorted(all...))
	}
	if out := f.ok("executions", "list", "--lane", string(lane), "--limit", "2"); !strings.Contains(out, "next page: --cursor") {
		t.Errorf("a table page does not name its next cursor:\n%s", out)
	}
	// No --lane: every lane.
	var every listJSON
	f.okJSON(&every, "executions", "list", "--limit", "1000")
	if len(every.Executions) != len(all)+1 {
		t.Errorf("every lane: %d executions, want %d", len(every.Executions), len(all)+1)
	}

	// ListExecutions (the sdk's partition listing) now sees waiting_children too.
	p, _ := sub.Members["down"].Partition()
	pg, err := f.b.ListExecutions(f.ctx, p, "", 1000)
	if err != nil || !slices.Contains(pg.IDs, sub.Members["down"]) || !slices.Contains(want[sdk.StateRateLimited], parked) {
		t.Fatalf("ListExecutions lacks the waiting_children member: %v %v", pg.IDs, err)
	}
}

// TestDeadLetters: executions whose retries ran out are the dead-letter
// view, with their last failure; nothing else is.
func TestDeadLetters(t *testing.T) {
	f := newFixture(t)
	const lane sdk.LaneID = "dlq"
	dead := []sdk.ExecutionID{f.deadLetter(lane), f.deadLetter(lane), f.deadLetter("dlq-other")}
	// A failure that will retry is not a dead letter; nor is a completion.
	retrying := f.create(lane, func(a *sdk.CreateExecutionArgs) { a.Retry = sdk.RetryPolicy{MaxRetries: 3} })
	if _, err := f.b.Fail(f.ctx, f.claim(retrying, lane, "w"), "flaky", "handler_error"); err != nil {
		t.Fatal(err)
	}
	done := f.create(lane, nil)
	if err := f.b.Complete(f.ctx, f.claim(done, lane, "w"), nil); err != nil {
		t.Fatal(err)
	}
	var page listJSON
	f.okJSON(&page, "dead-letters", "--lane", string(lane))
	if got := ids(page.Executions); !slices.Equal(got, sorted(dead[:2]...)) {
		t.Fatalf("dead letters %v, want %v", got, sorted(dead[:2]...))
	}
	for _, r := range page.Executions {
		if r.State != sdk.StateFailed || r.Attempts != 2 || r.FailureReason != "boom 1" || r.FailureCategory != "handler_error" || r.EndedAt.IsZero() {
			t.Errorf("dead letter %+v", r)
		}
	}
	var same listJSON
	f.okJSON(&same, "executions", "list", "--lane", string(lane), "--state", "failed")
	if !slices.Equal(ids(same.Executions), ids(page.Executions)) {
		t.Errorf("executions list --state failed %v differs from dead-letters %v", ids(same.Executions), ids(page.Executions))
	}
	var all listJSON
	f.okJSON(&all, "dead-letters")
	if got := ids(all.Executions); !slices.Equal(got, sorted(dead...)) {
		t.Errorf("dead letters of every lane %v, want %v", got, sorted(dead...))
	}
	table := f.ok("dead-letters", "--lane", string(lane))
	for _, want := range []string{"FAILED AT", "CATEGORY", "handler_error", "boom 1", string(dead[0]), string(dead[1])} {
		if !strings.Contains(table, want) {
			t.Errorf("dead-letters table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, string(retrying)) || strings.Contains(table, string(done)) {
		t.Errorf("dead-letters lists a live or completed execution:\n%s", table)
	}
}
