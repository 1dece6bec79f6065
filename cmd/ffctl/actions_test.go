package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// absent is a well-formed id no execution has.
const absent = "{p:0}:0193a000-0000-7000-8000-0000000000aa"

// TestDescribe: every attempt with its outcome, worker and lease; the
// current lease of an active one.
func TestDescribe(t *testing.T) {
	f := newFixture(t)
	const lane sdk.LaneID = "describe"
	id := f.create(lane, func(a *sdk.CreateExecutionArgs) {
		a.Retry = sdk.RetryPolicy{MaxRetries: 2, Backoff: sdk.Backoff{ZeroDelay: true}}
		a.Tags = map[string]string{"tenant": "acme"}
	})
	if _, err := f.b.Fail(f.ctx, f.claim(id, lane, "first"), "first try", "handler_error"); err != nil {
		t.Fatal(err)
	}
	if f.state(id) == sdk.StateDelayed {
		p, _ := id.Partition()
		if _, err := f.b.PromoteDelayed(f.ctx, sdk.PromoteDelayedArgs{Lane: lane, Partition: p}); err != nil {
			t.Fatal(err)
		}
	}
	h := f.claim(id, lane, "second")
	if err := f.b.Progress(f.ctx, h, 40, "halfway"); err != nil {
		t.Fatal(err)
	}
	var d describeJSON
	f.okJSON(&d, "executions", "describe", string(id))
	if d.ID != id || d.Lane != lane || d.State != sdk.StateActive || d.Tags["tenant"] != "acme" || d.TotalAttempts != 2 ||
		d.LeaseID != h.LeaseID || d.LeaseEpoch != h.Epoch || d.WorkerInstance != "second-1" || d.LeaseExpiresAt.IsZero() {
		t.Fatalf("describe: %+v", d)
	}
	if len(d.Attempts) != 2 {
		t.Fatalf("attempts: %+v", d.Attempts)
	}
	a0, a1 := d.Attempts[0], d.Attempts[1]
	if a0.Outcome != sdk.OutcomeRetried || a0.Worker != "first" || a0.FailureReason != "first try" || a0.EndedAt.IsZero() || a0.Type != sdk.AttemptInitial {
		t.Errorf("attempt 0: %+v", a0)
	}
	if a1.Outcome != "running" || a1.Worker != "second" || a1.LeaseEpoch != h.Epoch || a1.ProgressPercent != 40 || a1.Type != sdk.AttemptRetry {
		t.Errorf("attempt 1: %+v", a1)
	}
	if d.Fields["state"] != "active" {
		t.Errorf("raw fields: %v", d.Fields)
	}
	table := f.ok("executions", "describe", string(id))
	for _, want := range []string{"ATTEMPT", "OUTCOME", "retried", "running", "first-1", "second-1", "first try",
		"40% halfway", h.LeaseID, "tenant=acme"} {
		if !strings.Contains(table, want) {
			t.Errorf("describe table lacks %q:\n%s", want, table)
		}
	}
	f.exits(exitNotFound, "executions", "describe", absent)
	f.exits(exitNotFound, "executions", "describe", absent, "-o", "json")
}

// TestExecutionActions: cancel, priority, revoke and replay act, say what
// they did, and are refused (exit 4, nothing changed) where the state
// forbids them; an unknown id exits 3.
func TestExecutionActions(t *testing.T) {
	f := newFixture(t)
	const lane sdk.LaneID = "actions"

	// cancel
	id := f.create(lane, nil)
	var r map[string]any
	f.okJSON(&r, "executions", "cancel", string(id), "--reason", "operator says so")
	if r["action"] != "cancelled" || r["previous_state"] != "waiting" {
		t.Errorf("cancel: %v", r)
	}
	snap, err := f.b.DescribeExecution(f.ctx, id)
	if err != nil || snap.State != sdk.StateCancelled || snap.CancellationReason != "operator says so" {
		t.Fatalf("after cancel: %+v %v", snap, err)
	}
	if errs := f.exits(exitRefused, "executions", "cancel", string(id)); !strings.Contains(errs, "execution_terminal") {
		t.Errorf("second cancel: %s", errs)
	}
	other := f.create(lane, nil)
	if out := f.ok("executions", "cancel", string(other)); !strings.Contains(out, "cancelled "+string(other)+" (was waiting)") {
		t.Errorf("cancel table: %s", out)
	}
	f.exits(exitNotFound, "executions", "cancel", absent)

	// priority
	waiting := f.create(lane, nil)
	if out := f.ok("executions", "priority", string(waiting), "7"); !strings.Contains(out, "0 -> 7") {
		t.Errorf("priority table: %s", out)
	}
	f.okJSON(&r, "executions", "priority", string(waiting), "9")
	if r["old"] != 7.0 || r["new"] != 9.0 {
		t.Errorf("priority json: %v", r)
	}
	if snap, err := f.b.DescribeExecution(f.ctx, waiting); err != nil || snap.Priority != 9 {
		t.Fatalf("priority after: %+v %v", snap, err)
	}
	f.exits(exitRefused, "executions", "priority", string(id), "3") // cancelled
	f.exits(exitNotFound, "executions", "priority", absent, "3")

	// revoke
	active := f.create(lane, nil)
	h := f.claim(active, lane, "w")
	f.okJSON(&r, "executions", "revoke", string(active), "--reason", "stuck")
	if r["lease_id"] != h.LeaseID || r["action"] != "revoked" {
		t.Errorf("revoke json: %v (lease %s)", r, h.LeaseID)
	}
	if _, err := f.b.Renew(f.ctx, h); !errors.Is(err, sdk.ErrLeaseRevoked) {
		t.Errorf("renew after revoke: %v, want lease_revoked", err)
	}
	active2 := f.create(lane, nil)
	h2 := f.claim(active2, lane, "w")
	if out := f.ok("executions", "revoke", string(active2)); !strings.Contains(out, "revoked lease "+h2.LeaseID) {
		t.Errorf("revoke table: %s", out)
	}
	f.exits(exitRefused, "executions", "revoke", string(waiting)) // no lease
	f.exits(exitNotFound, "executions", "revoke", absent)

	// replay
	dead := f.deadLetter(lane)
	f.okJSON(&r, "executions", "replay", string(dead))
	if r["previous_state"] != "failed" || r["action"] != "replayed" {
		t.Errorf("replay json: %v", r)
	}
	if st := f.state(dead); st != sdk.StateWaiting {
		t.Errorf("after replay: %s", st)
	}
	if out := f.ok("executions", "replay", string(other)); !strings.Contains(out, "replayed "+string(other)+" (was cancelled)") {
		t.Errorf("replay table: %s", out)
	}
	f.exits(exitRefused, "executions", "replay", string(waiting)) // not ended
	f.exits(exitNotFound, "executions", "replay", absent)
}

// TestLanes: depths per state per lane, pause and resume (a lane's quota
// survives both).
func TestLanes(t *testing.T) {
	f := newFixture(t)
	const lane, quiet sdk.LaneID = "lanes-busy", "lanes-quiet"
	for range 3 {
		f.create(lane, nil)
	}
	f.create(lane, func(a *sdk.CreateExecutionArgs) { a.DelayUntil = time.Now().Add(time.Hour) })
	f.claim(f.create(lane, nil), lane, "w")
	done := f.create(lane, nil)
	if err := f.b.Complete(f.ctx, f.claim(done, lane, "w"), nil); err != nil {
		t.Fatal(err)
	}
	f.deadLetter(lane)
	blocked := f.create(lane, nil)
	if out, err := f.b.BlockRoute(f.ctx, sdk.BlockRouteArgs{ExecutionID: blocked, Lane: lane}); err != nil || !out.Blocked {
		t.Fatalf("block: %v %v", out, err)
	}
	f.create(quiet, nil)

	var got struct{ Lanes []laneJSON }
	f.okJSON(&got, "lanes")
	if len(got.Lanes) != 2 || got.Lanes[0].Lane != lane || got.Lanes[1].Lane != quiet {
		t.Fatalf("lanes: %+v", got.Lanes)
	}
	busy := got.Lanes[0]
	want := map[sdk.PublicState]int{sdk.StateWaiting: 4, sdk.StateDelayed: 1, sdk.StateActive: 1}
	for _, s := range laneStates {
		if busy.Counts[s] != want[s] {
			t.Errorf("%s: %d, want %d (%v)", s, busy.Counts[s], want[s], busy.Counts)
		}
	}
	if busy.Blocked != 1 || busy.Ended != 2 || busy.Paused {
		t.Errorf("busy lane: %+v", busy)
	}
	if got.Lanes[1].Counts[sdk.StateWaiting] != 1 {
		t.Errorf("quiet lane: %+v", got.Lanes[1])
	}
	var first struct{ Lanes []laneJSON }
	f.okJSON(&first, "--lane", string(quiet), "lanes") // flags before the command
	if len(first.Lanes) != 1 || first.Lanes[0].Lane != quiet {
		t.Fatalf("flags before the command: %+v", first)
	}
	f.okJSON(&got, "lanes", "--lane", string(lane), "--ended")
	if len(got.Lanes) != 1 || got.Lanes[0].Counts[sdk.StateCompleted] != 1 || got.Lanes[0].Counts[sdk.StateFailed] != 1 {
		t.Fatalf("--ended: %+v", got.Lanes)
	}
	table := f.ok("lanes")
	for _, w := range []string{"LANE", "WAITING_CHILDREN", "RATE_LIMITED", "ENDED", string(lane), string(quiet)} {
		if !strings.Contains(table, w) {
			t.Errorf("lanes table lacks %q:\n%s", w, table)
		}
	}

	// pause keeps the lane's quota; the policy read by workers says paused.
	if err := f.b.CreateQuotaPolicy(f.ctx, sdk.QuotaPolicy{ID: "q", Concurrency: 5}); err != nil {
		t.Fatal(err)
	}
	if err := f.b.SetLanePolicy(f.ctx, lane, sdk.LanePolicy{Quota: "q"}); err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	f.okJSON(&r, "lanes", "pause", string(lane))
	if r["paused"] != true || r["changed"] != true {
		t.Errorf("pause: %v", r)
	}
	if p, err := f.b.LanePolicy(f.ctx, lane); err != nil || !p.Paused || p.Quota != "q" {
		t.Fatalf("policy after pause: %+v %v", p, err)
	}
	if out := f.ok("lanes", "pause", string(lane)); !strings.Contains(out, "already") {
		t.Errorf("second pause: %s", out)
	}
	if out := f.ok("lanes", "--lane", string(lane)); !strings.Contains(out, "PAUSED") {
		t.Errorf("lanes does not show the pause:\n%s", out)
	}
	if out := f.ok("lanes", "resume", string(lane)); !strings.Contains(out, "lane "+string(lane)+" resumed") {
		t.Errorf("resume: %s", out)
	}
	if p, err := f.b.LanePolicy(f.ctx, lane); err != nil || p.Paused || p.Quota != "q" {
		t.Fatalf("policy after resume: %+v %v", p, err)
	}
}

// TestSuspendedWaitpointsSignal: suspended executions with their
// waitpoints, pending waitpoints, and a signal that resumes one.
func TestSuspendedWaitpointsSignal(t *testing.T) {
	f := newFixture(t)
	const lane sdk.LaneID = "waits"
	if _, err := f.b.SeedWaitpointSecret(f.ctx, "k1", []byte("ffctl-test-waitpoint-secret")); err != nil {
		t.Fatal(err)
	}
	suspend := func() (sdk.ExecutionID, sdk.Waitpoint) {
		id := f.create(lane, nil)
		out, err := f.b.Suspend(f.ctx, f.claim(id, lane, "w"), sdk.SuspendArgs{Waitpoints: []string{"approve"},
			Timeout: time.Hour, Reason: "needs approval"})
		if err != nil || len(out.Waitpoints) != 1 {
			t.Fatalf("suspend: %+v %v", out, err)
		}
		return id, out.Waitpoints[0]
	}
	a, wa := suspend()
	b, wb := suspend()
	pendingOn := f.create(lane, nil)
	pw, err := f.b.CreateWaitpoint(f.ctx, f.claim(pendingOn, lane, "w"), "callback", time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	var sus struct {
		Suspended  []suspendedJSON `json:"suspended"`
		NextCursor string          `json:"next_cursor"`
	}
	f.okJSON(&sus, "suspended", "--lane", string(lane))
	if len(sus.Suspended) != 2 {
		t.Fatalf("suspended: %+v", sus)
	}
	byID := map[sdk.ExecutionID]suspendedJSON{}
	for _, s := range sus.Suspended {
		byID[s.ID] = s
	}
	for id, wp := range map[sdk.ExecutionID]sdk.Waitpoint{a: wa, b: wb} {
		s := byID[id]
		if s.Reason != "needs approval" || len(s.Waitpoints) != 1 || s.Waitpoints[0] != wp.ID || s.TimeoutAt.IsZero() || s.Signals != 0 {
			t.Errorf("suspended %s: %+v", id, s)
		}
	}
	f.okJSON(&sus, "suspended", "--lane", "elsewhere")
	if len(sus.Suspended) != 0 {
		t.Errorf("another lane's suspended: %+v", sus)
	}
	table := f.ok("suspended")
	for _, w := range []string{"WAITPOINTS", string(a), string(b), string(wa.ID), "needs approval"} {
		if !strings.Contains(table, w) {
			t.Errorf("suspended table lacks %q:\n%s", w, table)
		}
	}

	var wps struct {
		Waitpoints []waitpointJSON `json:"waitpoints"`
	}
	f.okJSON(&wps, "waitpoints", "--lane", string(lane))
	if len(wps.Waitpoints) != 1 || wps.Waitpoints[0].ID != pw.ID || wps.Waitpoints[0].Execution != pendingOn ||
		wps.Waitpoints[0].Label != "callback" || wps.Waitpoints[0].Lane != lane {
		t.Fatalf("waitpoints: %+v (want %s)", wps, pw.ID)
	}
	if out := f.ok("waitpoints"); !strings.Contains(out, string(pw.ID)) || !strings.Contains(out, "callback") {
		t.Errorf("waitpoints table:\n%s", out)
	}
	f.okJSON(&wps, "waitpoints", "--lane", "elsewhere")
	if len(wps.Waitpoints) != 0 {
		t.Errorf("another lane's waitpoints: %+v", wps)
	}

	// A forged token (right shape, wrong mac) is refused, nothing written.
	forged := wa.Token[:len(wa.Token)-40] + strings.Repeat("0", 40)
	before := f.keyCount()
	f.exits(exitUsage, "signal", "--token", forged, "--name", "go")
	if f.keyCount() != before || f.state(a) != sdk.StateSuspended {
		t.Fatal("a forged signal wrote")
	}
	var r map[string]any
	f.okJSON(&r, "signal", "--token", wa.Token, "--name", "go", "--payload", "yes")
	if r["effect"] != sdk.EffectResumed || r["execution"] != string(a) {
		t.Errorf("signal json: %v", r)
	}
	if st := f.state(a); st != sdk.StateWaiting {
		t.Errorf("after the signal: %s", st)
	}
	if out := f.ok("signal", "--token", wb.Token, "--name", "go"); !strings.Contains(out, "resumed") || !strings.Contains(out, string(b)) {
		t.Errorf("signal table: %s", out)
	}
	f.exits(exitRefused, "signal", "--token", wb.Token, "--name", "again") // the waitpoint closed
}

// syncBuffer is a bytes.Buffer safe to read while ffctl writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStreamTail: frames printed as text or base64, table and JSON lines;
// following picks up frames appended while it waits and ends with the
// attempt.
func TestStreamTail(t *testing.T) {
	f := newFixture(t)
	const lane sdk.LaneID = "streams"
	id := f.create(lane, nil)
	h := f.claim(id, lane, "w")
	frames := []sdk.Frame{{Type: "log", Payload: []byte("hello")}, {Type: "blob", Payload: []byte{0xff, 0x00}, CorrelationID: "c1"}}
	if _, err := f.b.AppendFrames(f.ctx, h, sdk.AppendArgs{Frames: frames}); err != nil {
		t.Fatal(err)
	}
	// --no-follow returns at once while the attempt still runs.
	if out := f.ok("stream", "tail", string(id), "--no-follow"); !strings.Contains(out, "hello") || !strings.Contains(out, "base64:/wA=") {
		t.Errorf("--no-follow:\n%s", out)
	}
	if err := f.b.Complete(f.ctx, h, nil); err != nil {
		t.Fatal(err)
	}
	out := f.ok("stream", "tail", string(id))
	for _, w := range []string{"TYPE", "log", "hello", "blob", "c1", "base64:/wA="} {
		if !strings.Contains(out, w) {
			t.Errorf("tail table lacks %q:\n%s", w, out)
		}
	}
	out = f.ok("stream", "tail", string(id), "-o", "json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("json lines: %q", out)
	}
	var f0, f1 frameJSON
	if err := json.Unmarshal([]byte(lines[0]), &f0); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &f1); err != nil {
		t.Fatal(err)
	}
	if f0.Type != "log" || f0.Payload != "hello" || f0.Cursor == "" || f1.PayloadBase64 != "/wA=" || f1.CorrelationID != "c1" {
		t.Errorf("json frames: %+v %+v", f0, f1)
	}
	// --after skips what was seen.
	if out := f.ok("stream", "tail", string(id), "--after", f0.Cursor, "-o", "json"); strings.Contains(out, "hello") || !strings.Contains(out, "/wA=") {
		t.Errorf("--after: %s", out)
	}

	// Following: a frame appended while the tail waits is printed, and the
	// tail ends when the attempt does.
	live := f.create(lane, nil)
	hl := f.claim(live, lane, "w")
	if _, err := f.b.AppendFrames(f.ctx, hl, sdk.AppendArgs{Frames: []sdk.Frame{{Type: "log", Payload: []byte("one")}}}); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(context.Background(), []string{"stream", "tail", string(live), "-o", "json", "--addr", f.addr}, &stdout, &stderr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stdout.String(), `"one"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the tail printed nothing: %s %s", stdout.String(), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := f.b.AppendFrames(f.ctx, hl, sdk.AppendArgs{Frames: []sdk.Frame{{Type: "log", Payload: []byte("two")}}}); err != nil {
		t.Fatal(err)
	}
	if err := f.b.Complete(f.ctx, hl, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != exitOK || !strings.Contains(stdout.String(), `"two"`) {
			t.Fatalf("tail exited %d: %s %s", code, stdout.String(), stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the tail did not end with its attempt")
	}
	f.exits(exitNotFound, "stream", "tail", absent)
	f.exits(exitUsage, "stream", "tail", string(live), "--attempt", "3")
}

// TestFlowsDescribe: a flow with its members' states and its edges.
func TestFlowsDescribe(t *testing.T) {
	f := newFixture(t)
	const lane sdk.LaneID = "flows"
	sub, err := f.b.SubmitFlow(f.ctx, sdk.FlowSpec{Members: []sdk.FlowMember{
		{Name: "up", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "fetch"}},
		{Name: "down", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "store"}}},
		Edges: []sdk.FlowEdge{{ID: "feeds", From: "up", To: "down"}}})
	if err != nil {
		t.Fatal(err)
	}
	up, down := sub.Members["up"], sub.Members["down"]
	var d flowJSON
	f.okJSON(&d, "flows", "describe", string(sub.ID))
	if d.ID != sub.ID || d.State != sdk.FlowOpen || d.Nodes != 2 || d.EdgeCount != 1 || len(d.Members) != 2 || len(d.Edges) != 1 {
		t.Fatalf("flow: %+v", d)
	}
	states := map[sdk.ExecutionID]memberJSON{}
	for _, m := range d.Members {
		states[m.ID] = m
	}
	if states[up].State != sdk.StateWaiting || states[up].Kind != "fetch" || states[down].State != sdk.StateWaitingChildren {
		t.Errorf("members: %+v", d.Members)
	}
	if e := d.Edges[0]; e.ID != "feeds" || e.From != up || e.To != down {
		t.Errorf("edge: %+v", e)
	}
	if err := f.b.Complete(f.ctx, f.claim(up, lane, "w"), nil); err != nil {
		t.Fatal(err)
	}
	out := f.ok("flows", "describe", string(sub.ID))
	for _, w := range []string{"MEMBER", "EDGE", "RESOLUTION", "satisfied", "feeds", string(up), string(down), "completed"} {
		if !strings.Contains(out, w) {
			t.Errorf("flow table lacks %q:\n%s", w, out)
		}
	}
	f.exits(exitNotFound, "flows", "describe", absent)
}
