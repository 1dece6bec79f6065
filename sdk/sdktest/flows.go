package sdktest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Flows (sdk.Flower, RoleFlows).

func member(name string, lane sdk.LaneID) sdk.FlowMember {
	return sdk.FlowMember{Name: name, Args: simple(lane)}
}

// completeWith claims execution id (waiting, new attempt) and completes it
// with result.
func (e *env) completeWith(id sdk.ExecutionID, lane sdk.LaneID, result string) {
	e.t.Helper()
	c := e.claim(id, lane, leaseTTL)
	e.must("Complete "+string(id), e.b.Complete(e.ctx, c.Handle, []byte(result)))
}

// failTerminally claims execution id and fails it (no retry policy: the
// failure is terminal).
func (e *env) failTerminally(id sdk.ExecutionID, lane sdk.LaneID) {
	e.t.Helper()
	c := e.claim(id, lane, leaseTTL)
	out, _, _ := e.fail(c.Handle, "boom", "test")
	if out.RetryScheduled {
		e.t.Fatalf("Fail(%s) = %+v, want terminal", id, out)
	}
}

func (e *env) awaitFlow(fl sdk.Flower, id sdk.FlowID, want sdk.FlowState) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, settleDeadline)
	defer cancel()
	got, err := fl.AwaitFlow(ctx, id)
	if err != nil || got != want {
		e.t.Fatalf("AwaitFlow(%s) = %q, %v; want %q", id, got, err, want)
	}
}

// testFlowChain: a chain a -> b -> c submitted at once runs in order, each
// member waiting until its upstream completed; the handler of b reads a's
// result; the edges, the flow's record and its outcome say so; submitting
// the same spec again changes nothing.
func testFlowChain(e *env) {
	const lane sdk.LaneID = "sdktest-flow-chain"
	fl := need(e, e.roles.Flows, sdk.RoleFlows)
	spec := sdk.FlowSpec{ID: sdk.NewFlowID(e.lastPartition()),
		Members: []sdk.FlowMember{member("a", lane), member("b", lane), member("c", lane)},
		Edges:   []sdk.FlowEdge{{ID: "a-b", From: "a", To: "b"}, {From: "b", To: "c"}}}
	sub, err := fl.SubmitFlow(e.ctx, spec)
	e.must("SubmitFlow", err)
	a, b, c := sub.Members["a"], sub.Members["b"], sub.Members["c"]
	if sub.Existed || sub.States["a"] != sdk.StateWaiting || sub.States["b"] != sdk.StateWaitingChildren ||
		sub.States["c"] != sdk.StateWaitingChildren {
		e.t.Fatalf("SubmitFlow = %+v, want a waiting, b and c waiting_children", sub)
	}
	for _, id := range []sdk.ExecutionID{a, b, c} {
		if id.Tag() != sdk.PartitionTag(e.lastPartition()) {
			e.t.Fatalf("member %s is not on the flow's partition %d", id, e.lastPartition())
		}
	}
	e.requireScannable(lane, b, false, "b before a completed")
	again, err := fl.SubmitFlow(e.ctx, spec)
	e.must("SubmitFlow again", err)
	if !again.Existed || again.FlowState != sdk.FlowOpen || again.Members["b"] != b {
		e.t.Fatalf("SubmitFlow again = %+v, want the same flow, existing and open", again)
	}
	e.completeWith(a, lane, "result of a")
	e.requireState(b, sdk.StateWaiting, "b once a completed")
	e.requireState(c, sdk.StateWaitingChildren, "c once a completed")
	ups, err := fl.UpstreamResults(e.ctx, b)
	e.must("UpstreamResults(b)", err)
	if len(ups) != 1 || ups[0].ID != a || ups[0].State != sdk.StateCompleted || string(ups[0].Result) != "result of a" {
		e.t.Fatalf("UpstreamResults(b) = %+v, want a completed with its result", ups)
	}
	in, err := fl.ListEdges(e.ctx, b, sdk.Incoming)
	e.must("ListEdges(b, incoming)", err)
	out, err := fl.ListEdges(e.ctx, b, sdk.Outgoing)
	e.must("ListEdges(b, outgoing)", err)
	if len(in) != 1 || in[0].ID != "a-b" || in[0].Upstream != a || in[0].Resolution != "satisfied" || in[0].State != "applied" ||
		len(out) != 1 || out[0].ID != "e1" || out[0].Downstream != c || out[0].Resolution != "" {
		e.t.Fatalf("ListEdges(b) = in %+v, out %+v", in, out)
	}
	edge, err := fl.DescribeEdge(e.ctx, sub.ID, "a-b")
	e.must("DescribeEdge", err)
	if edge == nil || edge.Upstream != a || edge.Downstream != b || edge.StagedAt.IsZero() {
		e.t.Fatalf("DescribeEdge(a-b) = %+v", edge)
	}
	if none, err := fl.DescribeEdge(e.ctx, sub.ID, "nope"); none != nil || err != nil {
		e.t.Fatalf("DescribeEdge(nope) = %+v, %v; want nil, nil", none, err)
	}
	if f, err := fl.ResolveExecutionFlowID(e.ctx, b); f != sub.ID || err != nil {
		e.t.Fatalf("ResolveExecutionFlowID(b) = %q, %v", f, err)
	}
	solo := e.create(simple(lane))
	if f, err := fl.ResolveExecutionFlowID(e.ctx, solo); f != "" || err != nil {
		e.t.Fatalf("ResolveExecutionFlowID(solo) = %q, %v; want none", f, err)
	}
	e.completeWith(b, lane, "result of b")
	e.completeWith(c, lane, "")
	e.awaitFlow(fl, sub.ID, sdk.FlowCompleted)
	s, err := fl.DescribeFlow(e.ctx, sub.ID)
	e.must("DescribeFlow", err)
	if s.State != sdk.FlowCompleted || s.Nodes != 3 || s.Edges != 2 || s.Ended != 3 || s.NotOK != 0 || s.EndedAt.IsZero() ||
		len(s.Members) != 3 {
		e.t.Fatalf("DescribeFlow = %+v", s)
	}
	page, err := fl.ListFlows(e.ctx, e.lastPartition(), "", 10)
	e.must("ListFlows", err)
	if len(page.Flows) != 1 || page.Flows[0].ID != sub.ID || page.Flows[0].State != sdk.FlowCompleted || page.NextCursor != "" {
		e.t.Fatalf("ListFlows = %+v", page)
	}
}

// testFlowPolicies: one upstream failing skips an all_of member (and its
// dependants), leaves an any_of and a quorum(2) member waiting; the any_of
// member runs on the first completion, the quorum on the second, once
// each; the flow ends failed.
func testFlowPolicies(e *env) {
	const lane sdk.LaneID = "sdktest-flow-policies"
	fl := need(e, e.roles.Flows, sdk.RoleFlows)
	ms := []sdk.FlowMember{member("u1", lane), member("u2", lane), member("u3", lane),
		member("all", lane), member("any", lane), member("q2", lane), member("after-all", lane)}
	ms[4].Policy = sdk.DependencyPolicy{Kind: sdk.AnyOf}
	ms[5].Policy = sdk.DependencyPolicy{Kind: sdk.Quorum, K: 2}
	var edges []sdk.FlowEdge
	for _, u := range []string{"u1", "u2", "u3"} {
		for _, d := range []string{"all", "any", "q2"} {
			edges = append(edges, sdk.FlowEdge{From: u, To: d})
		}
	}
	edges = append(edges, sdk.FlowEdge{From: "all", To: "after-all"})
	sub, err := fl.SubmitFlow(e.ctx, sdk.FlowSpec{Members: ms, Edges: edges})
	e.must("SubmitFlow", err)
	id := sub.Members
	e.failTerminally(id["u1"], lane)
	e.requireState(id["all"], sdk.StateSkipped, "all_of after a failed upstream")
	e.requireState(id["after-all"], sdk.StateSkipped, "the dependant of a skipped member")
	e.requireState(id["any"], sdk.StateWaitingChildren, "any_of after one failure")
	e.requireState(id["q2"], sdk.StateWaitingChildren, "quorum(2) after one failure")
	e.completeWith(id["u2"], lane, "")
	e.requireState(id["any"], sdk.StateWaiting, "any_of after one completion")
	e.requireState(id["q2"], sdk.StateWaitingChildren, "quorum(2) after one completion")
	e.completeWith(id["u3"], lane, "")
	e.requireState(id["q2"], sdk.StateWaiting, "quorum(2) after two completions")
	n := 0
	for _, got := range e.scan(lane, e.partition(id["any"]), 100) {
		if got == id["any"] || got == id["q2"] {
			n++
		}
	}
	if n != 2 {
		e.t.Fatalf("any_of and quorum members appear %d times among the eligible, want once each", n)
	}
	s, err := fl.DescribeFlow(e.ctx, sub.ID)
	e.must("DescribeFlow", err)
	if s.State != sdk.FlowOpen || s.Ended != 5 || s.NotOK != 3 {
		e.t.Fatalf("DescribeFlow mid-way = %+v, want open with 5 ended, 3 not ok", s)
	}
	e.completeWith(id["any"], lane, "")
	e.completeWith(id["q2"], lane, "")
	e.awaitFlow(fl, sub.ID, sdk.FlowFailed)
}

// testFlowIncremental: a flow built call by call: create (idempotent), add
// members, stage edges under the graph revision's compare-and-set (stale
// revisions, cycles, duplicates and strangers refused, writing nothing),
// the group policy locked once edges are staged, apply (a waiting child
// starts waiting for the edge; an upstream that ended already counts at
// once).
func testFlowIncremental(e *env) {
	const lane sdk.LaneID = "sdktest-flow-build"
	fl := need(e, e.roles.Flows, sdk.RoleFlows)
	f := sdk.NewFlowID(0)
	created, err := fl.CreateFlow(e.ctx, f)
	e.must("CreateFlow", err)
	again, err := fl.CreateFlow(e.ctx, f)
	e.must("CreateFlow again", err)
	if !created || again {
		e.t.Fatalf("CreateFlow = %v then %v, want true then false", created, again)
	}
	mk := func() sdk.ExecutionID {
		a := simple(lane)
		a.ID = f.NewMemberID()
		id := e.create(a)
		added, err := fl.AddExecutionToFlow(e.ctx, f, id)
		if err != nil || !added {
			e.t.Fatalf("AddExecutionToFlow(%s) = %v, %v", id, added, err)
		}
		return id
	}
	a, b, c := mk(), mk(), mk()
	if added, err := fl.AddExecutionToFlow(e.ctx, f, a); added || err != nil {
		e.t.Fatalf("AddExecutionToFlow twice = %v, %v; want false, nil", added, err)
	}
	stage := func(edge sdk.EdgeID, up, down sdk.ExecutionID, rev uint64) func() error {
		return func() error {
			_, err := fl.StageDependencyEdge(e.ctx, sdk.StageEdgeArgs{Flow: f, Edge: edge, Upstream: up, Downstream: down, ExpectedRevision: rev})
			return err
		}
	}
	e.must("SetEdgeGroupPolicy", fl.SetEdgeGroupPolicy(e.ctx, f, c, sdk.DependencyPolicy{Kind: sdk.AnyOf}))
	e.must("stage a->b", stage("ab", a, b, 0)())
	e.rejects("StageDependencyEdge with a stale revision", stage("bc", b, c, 0), codeErr(sdk.CodeStaleGraphRevision))
	e.rejects("StageDependencyEdge closing a cycle", stage("ba", b, a, 1), codeErr(sdk.CodeCycleDetected))
	e.rejects("StageDependencyEdge with an edge id in use", stage("ab", a, c, 1), codeErr(sdk.CodeEdgeExists))
	e.rejects("StageDependencyEdge of a stranger", stage("xc", f.NewMemberID(), c, 1), codeErr(sdk.CodeNotFlowMember))
	e.rejects("StageDependencyEdge across partitions", stage("yc", sdk.NewExecutionID(1), c, 1), sdk.ErrValidation)
	e.must("stage a->c", stage("ac", a, c, 1)())
	e.rejects("SetEdgeGroupPolicy once edges are staged", func() error {
		return fl.SetEdgeGroupPolicy(e.ctx, f, c, sdk.DependencyPolicy{})
	}, codeErr(sdk.CodeGroupPolicyLocked))
	e.rejects("ApplyDependencyToChild of an unknown edge", func() error {
		_, err := fl.ApplyDependencyToChild(e.ctx, f, "nope")
		return err
	}, codeErr(sdk.CodeEdgeNotFound))
	e.requireState(b, sdk.StateWaiting, "b before its edge is applied")
	st, err := fl.ApplyDependencyToChild(e.ctx, f, "ab")
	e.must("ApplyDependencyToChild(ab)", err)
	if st != sdk.StateWaitingChildren {
		e.t.Fatalf("ApplyDependencyToChild(ab) = %s, want waiting_children", st)
	}
	e.requireScannable(lane, b, false, "b once its edge is applied")
	if st, err := fl.ApplyDependencyToChild(e.ctx, f, "ab"); err != nil || st != sdk.StateWaitingChildren {
		e.t.Fatalf("ApplyDependencyToChild(ab) again = %s, %v", st, err)
	}
	e.completeWith(a, lane, "")
	e.requireState(b, sdk.StateWaiting, "b once a completed")
	// The edge to c is applied after a completed: it counts at once, and
	// c (any_of) stays runnable.
	st, err = fl.ApplyDependencyToChild(e.ctx, f, "ac")
	e.must("ApplyDependencyToChild(ac)", err)
	if st != sdk.StateWaiting {
		e.t.Fatalf("ApplyDependencyToChild(ac) after a completed = %s, want waiting", st)
	}
	s, err := fl.DescribeFlow(e.ctx, f)
	e.must("DescribeFlow", err)
	if s.Revision != 2 || s.Nodes != 3 || s.Edges != 2 || s.State != sdk.FlowOpen {
		e.t.Fatalf("DescribeFlow = %+v, want revision 2, 3 members, 2 edges, open", s)
	}
	e.completeWith(b, lane, "")
	e.completeWith(c, lane, "")
	e.awaitFlow(fl, f, sdk.FlowCompleted)
	late := simple(lane)
	late.ID = f.NewMemberID()
	lateID := e.create(late)
	e.rejects("AddExecutionToFlow to an ended flow", func() error {
		_, err := fl.AddExecutionToFlow(e.ctx, f, lateID)
		return err
	}, codeErr(sdk.CodeFlowTerminal))
}

// testFlowCancel: cancel_pending leaves a running member running and
// cancels the rest; cancel_all with more members than one call cancels
// leaves a backlog, drained by acknowledgements and CancelFlowMembers to
// empty; both flows end cancelled.
func testFlowCancel(e *env) {
	const lane sdk.LaneID = "sdktest-flow-cancel"
	fl := need(e, e.roles.Flows, sdk.RoleFlows)
	sub, err := fl.SubmitFlow(e.ctx, sdk.FlowSpec{Members: []sdk.FlowMember{member("a", lane), member("b", lane), member("c", lane)},
		Edges: []sdk.FlowEdge{{From: "a", To: "b"}}})
	e.must("SubmitFlow", err)
	ca := e.claim(sub.Members["a"], lane, leaseTTL)
	h, err := fl.CancelFlowHeader(e.ctx, sdk.CancelFlowArgs{Flow: sub.ID, Policy: sdk.CancelPending, Reason: "r"})
	e.must("CancelFlowHeader", err)
	if h.AlreadyTerminal || h.Cancelled != 2 || h.Pending != 0 || h.Policy != sdk.CancelPending {
		e.t.Fatalf("CancelFlowHeader(cancel_pending) = %+v, want 2 cancelled, none pending", h)
	}
	e.requireState(sub.Members["a"], sdk.StateActive, "a running member under cancel_pending")
	e.requireState(sub.Members["b"], sdk.StateCancelled, "b under cancel_pending")
	e.awaitFlow(fl, sub.ID, sdk.FlowCancelled)
	e.must("Complete a", e.b.Complete(e.ctx, ca.Handle, nil))
	if h, err := fl.CancelFlowHeader(e.ctx, sdk.CancelFlowArgs{Flow: sub.ID, Reason: "r"}); err != nil || !h.AlreadyTerminal ||
		h.State != sdk.FlowCancelled {
		e.t.Fatalf("CancelFlowHeader again = %+v, %v; want already terminal, cancelled", h, err)
	}

	const n = 150
	ms := make([]sdk.FlowMember, n)
	for i := range ms {
		ms[i] = member(fmt.Sprintf("m%d", i), lane)
	}
	big, err := fl.SubmitFlow(e.ctx, sdk.FlowSpec{Members: ms})
	e.must("SubmitFlow(150)", err)
	h, err = fl.CancelFlowHeader(e.ctx, sdk.CancelFlowArgs{Flow: big.ID, Policy: sdk.CancelAll, Reason: "r"})
	e.must("CancelFlowHeader(150)", err)
	if h.Cancelled+h.Pending != n || h.Pending == 0 {
		e.t.Fatalf("CancelFlowHeader(150) = %+v, want a backlog", h)
	}
	s, err := fl.DescribeFlow(e.ctx, big.ID)
	e.must("DescribeFlow", err)
	if s.PendingCancels != h.Pending || s.State != sdk.FlowCancelled {
		e.t.Fatalf("DescribeFlow = %d pending, %s; want %d, cancelled", s.PendingCancels, s.State, h.Pending)
	}
	// A caller cancels one backlog member itself and acknowledges it.
	var mine sdk.ExecutionID
	for _, id := range big.Members {
		if e.describe(id).State == sdk.StateWaiting {
			mine = id
			break
		}
	}
	_, err = e.b.CancelExecution(e.ctx, sdk.CancelExecutionArgs{ExecutionID: mine, Reason: "mine"})
	e.must("CancelExecution", err)
	e.must("AckCancelMember", fl.AckCancelMember(e.ctx, big.ID, mine))
	done, left, err := fl.CancelFlowMembers(e.ctx, big.ID, 1000)
	e.must("CancelFlowMembers", err)
	if done != h.Pending-1 || left != 0 {
		e.t.Fatalf("CancelFlowMembers = %d, %d; want %d, 0", done, left, h.Pending-1)
	}
	for name, id := range big.Members {
		if st := e.describe(id).State; st != sdk.StateCancelled {
			e.t.Fatalf("member %s is %s after the cancel, want cancelled", name, st)
		}
	}
	s, err = fl.DescribeFlow(e.ctx, big.ID)
	e.must("DescribeFlow", err)
	if s.PendingCancels != 0 || s.Ended != n {
		e.t.Fatalf("DescribeFlow after the drain = %d pending, %d ended", s.PendingCancels, s.Ended)
	}
}

// testFlowWaitChildren: a running member adds children with edges to
// itself and waits for them: its lease is released until both ended (one
// completed, one failed), then its attempt resumes and sees both
// outcomes; with nothing left to wait for it keeps its lease.
func testFlowWaitChildren(e *env) {
	const lane sdk.LaneID = "sdktest-flow-children"
	fl := need(e, e.roles.Flows, sdk.RoleFlows)
	sub, err := fl.SubmitFlow(e.ctx, sdk.FlowSpec{Members: []sdk.FlowMember{member("parent", lane)}})
	e.must("SubmitFlow", err)
	p := sub.Members["parent"]
	cp := e.claim(p, lane, leaseTTL)
	if waiting, err := fl.WaitChildren(e.ctx, cp.Handle); err != nil || waiting {
		e.t.Fatalf("WaitChildren without children = %v, %v; want false (lease kept)", waiting, err)
	}
	rev := uint64(0)
	var kids []sdk.ExecutionID
	for i := range 2 {
		a := simple(lane)
		a.ID = sub.ID.NewMemberID()
		kid := e.create(a)
		_, err := fl.AddExecutionToFlow(e.ctx, sub.ID, kid)
		e.must("AddExecutionToFlow", err)
		edge := sdk.EdgeID(fmt.Sprintf("kid%d", i))
		rev, err = fl.StageDependencyEdge(e.ctx, sdk.StageEdgeArgs{Flow: sub.ID, Edge: edge, Upstream: kid, Downstream: p, ExpectedRevision: rev})
		e.must("StageDependencyEdge", err)
		if st, err := fl.ApplyDependencyToChild(e.ctx, sub.ID, edge); err != nil || st != sdk.StateActive {
			e.t.Fatalf("ApplyDependencyToChild to the running parent = %s, %v; want active", st, err)
		}
		kids = append(kids, kid)
	}
	waiting, err := fl.WaitChildren(e.ctx, cp.Handle)
	if err != nil || !waiting {
		e.t.Fatalf("WaitChildren = %v, %v; want true", waiting, err)
	}
	e.requireState(p, sdk.StateWaitingChildren, "the waiting parent")
	e.requireFenced(cp.Handle, "after WaitChildren", sdk.ErrExecutionNotActive)
	e.completeWith(kids[0], lane, "kid result")
	e.requireState(p, sdk.StateWaitingChildren, "the parent with one child left")
	e.failTerminally(kids[1], lane)
	e.requireState(p, sdk.StateWaiting, "the parent once both children ended")
	r := e.claimResumed(p, lane, leaseTTL, false)
	ups, err := fl.UpstreamResults(e.ctx, p)
	e.must("UpstreamResults", err)
	got := map[sdk.ExecutionID]sdk.PublicState{}
	for _, u := range ups {
		got[u.ID] = u.State
	}
	if len(ups) != 2 || got[kids[0]] != sdk.StateCompleted || got[kids[1]] != sdk.StateFailed {
		e.t.Fatalf("UpstreamResults = %+v", ups)
	}
	e.must("Complete the parent", e.b.Complete(e.ctx, r.Handle, nil))
	e.awaitFlow(fl, sub.ID, sdk.FlowFailed)
}

// testFlowBadInput: malformed specs and calls are refused with a typed
// error and write nothing.
func testFlowBadInput(e *env) {
	const lane sdk.LaneID = "sdktest-flow-bad"
	fl := need(e, e.roles.Flows, sdk.RoleFlows)
	two := func() []sdk.FlowMember { return []sdk.FlowMember{member("a", lane), member("b", lane)} }
	submit := func(s sdk.FlowSpec) func() error {
		return func() error { _, err := fl.SubmitFlow(e.ctx, s); return err }
	}
	quorum := two()
	quorum[1].Policy = sdk.DependencyPolicy{Kind: sdk.Quorum, K: 2}
	rootPolicy := two()
	rootPolicy[0].Policy = sdk.DependencyPolicy{Kind: sdk.AnyOf}
	delayed := two()
	delayed[1].Args.DelayUntil = time.Now().Add(time.Hour)
	elsewhere := two()
	elsewhere[0].Args.ID = sdk.NewExecutionID(0)
	keyed := two()
	keyed[0].Args.IdempotencyKey = "k"
	badLane := two()
	badLane[0].Args.Lane = "bad lane"
	tooMany := make([]sdk.FlowMember, sdk.MaxFlowItems+1)
	for i := range tooMany {
		tooMany[i] = member(fmt.Sprintf("m%d", i), lane)
	}
	on := func(p int) sdk.FlowID { return sdk.NewFlowID(p) }
	last := e.lastPartition()
	for _, c := range []struct {
		what string
		spec sdk.FlowSpec
		want error
	}{
		{"a cycle", sdk.FlowSpec{ID: on(last), Members: two(), Edges: []sdk.FlowEdge{{From: "a", To: "b"}, {From: "b", To: "a"}}}, codeErr(sdk.CodeCycleDetected)},
		{"a self edge", sdk.FlowSpec{Members: two(), Edges: []sdk.FlowEdge{{From: "a", To: "a"}}}, sdk.ErrValidation},
		{"an unknown member", sdk.FlowSpec{Members: two(), Edges: []sdk.FlowEdge{{From: "a", To: "z"}}}, sdk.ErrValidation},
		{"a name twice", sdk.FlowSpec{Members: []sdk.FlowMember{member("a", lane), member("a", lane)}}, sdk.ErrValidation},
		{"an edge id twice", sdk.FlowSpec{Members: two(), Edges: []sdk.FlowEdge{{ID: "x", From: "a", To: "b"}, {ID: "x", From: "a", To: "b"}}}, sdk.ErrValidation},
		{"a quorum over its edges", sdk.FlowSpec{Members: quorum, Edges: []sdk.FlowEdge{{From: "a", To: "b"}}}, sdk.ErrValidation},
		{"a policy without edges", sdk.FlowSpec{Members: rootPolicy}, sdk.ErrValidation},
		{"a delayed dependant", sdk.FlowSpec{Members: delayed, Edges: []sdk.FlowEdge{{From: "a", To: "b"}}}, sdk.ErrValidation},
		{"a member on another partition", sdk.FlowSpec{ID: on(last), Members: elsewhere}, sdk.ErrValidation},
		{"an idempotency key", sdk.FlowSpec{Members: keyed}, sdk.ErrValidation},
		{"a bad lane", sdk.FlowSpec{Members: badLane}, sdk.ErrValidation},
		{"no member", sdk.FlowSpec{}, sdk.ErrValidation},
		{"too many members", sdk.FlowSpec{Members: tooMany}, sdk.ErrValidation},
		{"a malformed flow id", sdk.FlowSpec{ID: "flow-1", Members: two()}, sdk.ErrValidation},
	} {
		e.rejects("SubmitFlow with "+c.what, submit(c.spec), c.want)
	}
	unknown := sdk.NewFlowID(last)
	e.rejects("DescribeFlow(unknown)", func() error { _, err := fl.DescribeFlow(e.ctx, unknown); return err }, sdk.ErrNotFound)
	e.rejects("AwaitFlow(unknown)", func() error { _, err := fl.AwaitFlow(e.ctx, unknown); return err }, sdk.ErrNotFound)
	e.rejects("CancelFlowHeader(unknown)", func() error {
		_, err := fl.CancelFlowHeader(e.ctx, sdk.CancelFlowArgs{Flow: unknown, Reason: "r"})
		return err
	}, sdk.ErrNotFound)
	e.rejects("AddExecutionToFlow(unknown flow)", func() error {
		_, err := fl.AddExecutionToFlow(e.ctx, unknown, unknown.NewMemberID())
		return err
	}, sdk.ErrNotFound)
	e.rejects("ListFlows with limit 0", func() error { _, err := fl.ListFlows(e.ctx, 0, "", 0); return err }, sdk.ErrValidation)
	e.rejects("ListEdges with a bad direction", func() error {
		_, err := fl.ListEdges(e.ctx, unknown.NewMemberID(), "sideways")
		return err
	}, sdk.ErrValidation)
	e.rejects("CancelFlowMembers with max 0", func() error { _, _, err := fl.CancelFlowMembers(e.ctx, unknown, 0); return err }, sdk.ErrValidation)
	var ve *sdk.Error
	if _, err := fl.SubmitFlow(e.ctx, sdk.FlowSpec{Members: two(), Edges: []sdk.FlowEdge{{From: "a", To: "a"}}}); !errors.As(err, &ve) ||
		!strings.Contains(err.Error(), "itself") {
		e.t.Fatalf("SubmitFlow with a self edge = %v, want a validation error saying why", err)
	}
}

// testFlowHandoff: with claim offers, a member whose completion makes an
// offer (CompleteBatch) hands its ready child to that offer in the same
// call: the child comes back in the completion's outcome (Handoffs, not
// through WatchHandoffs), active on the offer's lease, its upstream
// counted, and the offer is gone. A child that offer cannot take (it
// needs a capability the offer's worker lacks) becomes waiting instead
// and the offer stays posted; a child released while its lane has a
// backlog joins it in creation order, and the offer takes the head.
func testFlowHandoff(e *env) {
	const lane sdk.LaneID = "sdktest-flow-handoff"
	fl := need(e, e.roles.Flows, sdk.RoleFlows)
	co := need(e, e.roles.ClaimOfferer, sdk.RoleClaimOffers)
	cb := need(e, e.roles.CompleteBatcher, sdk.RoleCompleteBatch)
	in := e.watchHandoffs(co)
	p := e.lastPartition()
	gpu := member("c", lane)
	gpu.Args.RequiredCapabilities = []string{"gpu"}
	spec := sdk.FlowSpec{ID: sdk.NewFlowID(p),
		Members: []sdk.FlowMember{member("a", lane), member("b", lane), gpu, member("d", lane)},
		Edges:   []sdk.FlowEdge{{From: "a", To: "b"}, {From: "b", To: "c"}, {From: "c", To: "d"}}}
	sub, err := fl.SubmitFlow(e.ctx, spec)
	e.must("SubmitFlow", err)
	a, b, c, d := sub.Members["a"], sub.Members["b"], sub.Members["c"], sub.Members["d"]
	// completeOffering completes h in a batch of one that offers its slot,
	// and returns the offer it made.
	completeOffering := func(h sdk.Handle, what string) (sdk.ClaimOffer, []sdk.ClaimedTask) {
		e.t.Helper()
		args := offerArgs(lane, 1)
		out := cb.CompleteBatch(e.ctx, []sdk.CompleteItem{{Handle: h, Offer: &args}})
		if len(out) != 1 || out[0].Err != nil || out[0].OfferErr != nil {
			e.t.Fatalf("%s: CompleteBatch = %+v", what, out)
		}
		e.requireOffers(what, out[0].Offers, args)
		return out[0].Offers[0], out[0].Handoffs
	}
	noInline := func(got []sdk.ClaimedTask, what string) {
		e.t.Helper()
		if len(got) != 0 {
			e.t.Fatalf("%s: inline hand-offs %+v, want none", what, got)
		}
	}

	ca := e.claim(a, lane, leaseTTL)
	offer, inline := completeOffering(ca.Handle, "complete a")
	if len(inline) != 1 {
		e.t.Fatalf("complete a: inline hand-offs %+v, want b", inline)
	}
	hb := inline[0]
	if hb.Handle.ExecutionID != b || hb.Handle.LeaseID != offer.LeaseID || hb.Handle.WorkerInstanceID != workerInstance ||
		hb.Handle.Lane != lane || hb.Context.Lane != lane || hb.Context.Kind != simple(lane).Kind || hb.Handle.Epoch == 0 {
		e.t.Fatalf("hand-off after a = %+v (context %+v), want b on a's offer (lease %s)", hb.Handle, hb.Context, offer.LeaseID)
	}
	in.none(e, "after a (b came inline)")
	e.requireState(b, sdk.StateActive, "b handed off")
	e.requireScannable(lane, b, false, "b handed off")
	taken, err := co.WithdrawOffers(e.ctx, []sdk.ClaimOffer{offer})
	e.requireTaken("withdraw a's offer", taken, err, true)
	ups, err := fl.UpstreamResults(e.ctx, b)
	e.must("UpstreamResults(b)", err)
	if len(ups) != 1 || ups[0].ID != a || ups[0].State != sdk.StateCompleted {
		e.t.Fatalf("UpstreamResults(b) = %+v, want a completed", ups)
	}

	// b's offer lacks the capability c needs: c waits, the offer stays.
	offer, inline = completeOffering(hb.Handle, "complete b")
	noInline(inline, "complete b")
	e.requireState(c, sdk.StateWaiting, "c, which b's offer cannot take")
	e.requireScannable(lane, c, true, "c waiting")
	taken, err = co.WithdrawOffers(e.ctx, []sdk.ClaimOffer{offer})
	e.requireTaken("withdraw b's offer", taken, err, false)
	in.none(e, "after b")

	// A backlog on d's lane and partition: d joins it in creation order,
	// before the execution created after the flow, and c's offer takes
	// the head, d, as a create behind a backlog would.
	later := e.create(onPartition(simple(lane), p))
	cc := e.claim(c, lane, leaseTTL, "gpu")
	offer, inline = completeOffering(cc.Handle, "complete c")
	noInline(inline, "complete c (d joined the backlog)")
	hd := in.next(e, "the backlog's head handed to c's offer")
	if hd.Handle.ExecutionID != d || hd.Handle.LeaseID != offer.LeaseID {
		e.t.Fatalf("hand-off after c = %s on lease %s, want d %s (the backlog's head) on c's offer %s",
			hd.Handle.ExecutionID, hd.Handle.LeaseID, d, offer.LeaseID)
	}
	e.requireState(later, sdk.StateWaiting, "the execution behind d")
	in.none(e, "after c")
	e.must("Complete d", e.b.Complete(e.ctx, hd.Handle, nil))
	e.awaitFlow(fl, sub.ID, sdk.FlowCompleted)
}
