package valkeybackend_test

// Tests of the flows feature's documented promises (README "Flows", the doc
// comments of sdk/flows.go and sdk/client_flows.go) that the conformance
// suite (sdk/sdktest/flows.go) leaves unchecked or checks on the happy
// path only. Each test names the promise it checks.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// fp is the fixture of one flows-promise test: a fresh standalone backend.
type fp struct {
	t     *testing.T
	ctx   context.Context
	addrs []string
	b     *valkeybackend.Backend
	lane  sdk.LaneID
}

func newFP(t *testing.T) *fp {
	t.Helper()
	addrs := topologies()[0].addrs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return &fp{t: t, ctx: ctx, addrs: addrs, b: freshBackend(t, addrs, valkeybackend.Options{}), lane: "fp-lane"}
}

func (f *fp) must(what string, err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatalf("%s: %v", what, err)
	}
}

func (f *fp) member(name string) sdk.FlowMember {
	return sdk.FlowMember{Name: name, Args: sdk.CreateExecutionArgs{Lane: f.lane, Kind: "fp.job", Payload: []byte(name)}}
}

func (f *fp) submit(spec sdk.FlowSpec) sdk.FlowSubmission {
	f.t.Helper()
	sub, err := f.b.SubmitFlow(f.ctx, spec)
	f.must("SubmitFlow", err)
	return sub
}

// claim grants and claims execution id (a new attempt) and returns its handle.
func (f *fp) claim(id sdk.ExecutionID) sdk.Handle {
	f.t.Helper()
	task, err := f.b.GrantAndClaim(f.ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: f.lane, WorkerID: "fp-worker",
		WorkerInstanceID: "fp-worker-1", GrantTTL: 5 * time.Second}, 30*time.Second)
	f.must("GrantAndClaim "+string(id), err)
	return task.Handle
}

func (f *fp) complete(id sdk.ExecutionID, result string) sdk.Handle {
	f.t.Helper()
	h := f.claim(id)
	f.must("Complete "+string(id), f.b.Complete(f.ctx, h, []byte(result)))
	return h
}

func (f *fp) fail(id sdk.ExecutionID) {
	f.t.Helper()
	out, err := f.b.Fail(f.ctx, f.claim(id), "boom", "test")
	f.must("Fail "+string(id), err)
	if out.RetryScheduled {
		f.t.Fatalf("Fail(%s) scheduled a retry, want a terminal failure", id)
	}
}

func (f *fp) state(id sdk.ExecutionID) sdk.PublicState {
	f.t.Helper()
	s, err := f.b.DescribeExecution(f.ctx, id)
	f.must("DescribeExecution "+string(id), err)
	return s.State
}

func (f *fp) requireState(id sdk.ExecutionID, want sdk.PublicState, what string) {
	f.t.Helper()
	if got := f.state(id); got != want {
		f.t.Fatalf("%s: %s is %s, want %s", what, id, got, want)
	}
}

func (f *fp) describe(id sdk.FlowID) sdk.FlowSnapshot {
	f.t.Helper()
	s, err := f.b.DescribeFlow(f.ctx, id)
	f.must("DescribeFlow", err)
	return s
}

// await returns the flow's outcome, failing when it has none within d.
func (f *fp) await(id sdk.FlowID, d time.Duration) sdk.FlowState {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, d)
	defer cancel()
	st, err := f.b.AwaitFlow(ctx, id)
	f.must("AwaitFlow", err)
	return st
}

// refuses runs call and checks it fails with an error matching want (by
// errors.Is), code (when not "") and that the keyspace did not change.
func (f *fp) refuses(what string, want error, code string, call func() error) {
	f.t.Helper()
	before := keyspace(f.t, f.addrs)
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
				f.t.Errorf("%s panicked: %v", what, r)
			}
		}()
		return call()
	}()
	if err == nil {
		f.t.Fatalf("%s: no error, want %v", what, want)
	}
	var se *sdk.Error
	if !errors.As(err, &se) {
		f.t.Fatalf("%s: untyped error %v", what, err)
	}
	if !errors.Is(err, want) {
		f.t.Fatalf("%s: %v (kind %s, code %q), want kind %s", what, err, sdk.KindOf(err), sdk.CodeOf(err), sdk.KindOf(want))
	}
	if code != "" && sdk.CodeOf(err) != code {
		f.t.Fatalf("%s: code %q (%v), want %q", what, sdk.CodeOf(err), err, code)
	}
	requireUnchanged(f.t, what, before, keyspace(f.t, f.addrs))
}

func requireUnchanged(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	if maps.Equal(before, after) {
		return
	}
	var diff []string
	for k, v := range after {
		if before[k] != v {
			diff = append(diff, "+"+k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			diff = append(diff, "-"+k)
		}
	}
	sort.Strings(diff)
	t.Fatalf("%s wrote to the keyspace: %s", what, strings.Join(diff, " "))
}

// Promise (sdk/client_flows.go SubmitFlow, sdk/flows.go FlowSubmission,
// README "Idempotent"): submitting the same spec again (same ID) changes
// nothing and returns the same member ids; Existed, States empty, FlowState
// the flow's state now, also once the flow has ended. A second backend
// (nothing cached about lanes) makes the same promise.
func TestFlowPromiseResubmitChangesNothing(t *testing.T) {
	f := newFP(t)
	spec := sdk.FlowSpec{ID: sdk.NewFlowID(3), Members: []sdk.FlowMember{f.member("a"), f.member("b")},
		Edges: []sdk.FlowEdge{{From: "a", To: "b"}}}
	first := f.submit(spec)
	if first.Existed || first.FlowState != sdk.FlowOpen || first.ID != spec.ID {
		t.Fatalf("first SubmitFlow = %+v", first)
	}
	before := keyspace(t, f.addrs)
	other := connectOpts(t, valkeybackend.Options{Addrs: f.addrs}, 8)
	for i, b := range []*valkeybackend.Backend{f.b, other} {
		again, err := b.SubmitFlow(f.ctx, spec)
		f.must("SubmitFlow again", err)
		if !again.Existed || again.FlowState != sdk.FlowOpen || len(again.States) != 0 || !maps.Equal(again.Members, first.Members) {
			t.Fatalf("SubmitFlow again (backend %d) = %+v, want Existed, open, no states, members %v", i, again, first.Members)
		}
	}
	requireUnchanged(t, "SubmitFlow of the same spec again", before, keyspace(t, f.addrs))
	f.complete(first.Members["a"], "")
	f.complete(first.Members["b"], "")
	if st := f.await(spec.ID, 5*time.Second); st != sdk.FlowCompleted {
		t.Fatalf("AwaitFlow = %s, want completed", st)
	}
	before = keyspace(t, f.addrs)
	again := f.submit(spec)
	if !again.Existed || again.FlowState != sdk.FlowCompleted || !maps.Equal(again.Members, first.Members) {
		t.Fatalf("SubmitFlow after the end = %+v, want Existed, completed", again)
	}
	requireUnchanged(t, "SubmitFlow of an ended flow's spec again", before, keyspace(t, f.addrs))
	f.requireState(first.Members["a"], sdk.StateCompleted, "a after the repeated submit")
}

// Promise (sdk/flows.go FlowSubmission.Existed): "the flow was there
// already (a repeated submit); nothing was written". A repeated submit
// whose members name a lane not seen before must not write either.
func TestFlowPromiseExistedWritesNothing(t *testing.T) {
	f := newFP(t)
	id := sdk.NewFlowID(2)
	f.submit(sdk.FlowSpec{ID: id, Members: []sdk.FlowMember{f.member("a")}})
	other := f.member("a")
	other.Args.Lane = "fp-other-lane"
	before := keyspace(t, f.addrs)
	again, err := f.b.SubmitFlow(f.ctx, sdk.FlowSpec{ID: id, Members: []sdk.FlowMember{other}})
	f.must("SubmitFlow again", err)
	if !again.Existed {
		t.Fatalf("SubmitFlow again = %+v, want Existed", again)
	}
	requireUnchanged(t, "SubmitFlow of an existing flow id (Existed)", before, keyspace(t, f.addrs))
}

// Promise (Flower.SubmitFlow "idempotent by flow id"): concurrent submits
// of one spec create the flow once; every caller gets the same ids, one
// of them created it, the others see Existed; each member exists once.
func TestFlowPromiseConcurrentSubmit(t *testing.T) {
	f := newFP(t)
	spec := sdk.FlowSpec{ID: sdk.NewFlowID(5), Members: []sdk.FlowMember{f.member("a"), f.member("b"), f.member("c")},
		Edges: []sdk.FlowEdge{{From: "a", To: "c"}, {From: "b", To: "c"}}}
	const n = 12
	subs := make([]sdk.FlowSubmission, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			subs[i], errs[i] = f.b.SubmitFlow(f.ctx, spec)
		}()
	}
	close(start)
	wg.Wait()
	created := 0
	for i := range n {
		f.must("concurrent SubmitFlow", errs[i])
		if !subs[i].Existed {
			created++
		}
		if !maps.Equal(subs[i].Members, subs[0].Members) {
			t.Fatalf("submit %d named members %v, submit 0 %v", i, subs[i].Members, subs[0].Members)
		}
	}
	if created != 1 {
		t.Fatalf("%d of %d concurrent submits created the flow, want 1", created, n)
	}
	s := f.describe(spec.ID)
	if s.Nodes != 3 || s.Edges != 2 || len(s.Members) != 3 || s.Revision != 2 {
		t.Fatalf("DescribeFlow = %+v, want 3 members, 2 edges, revision 2", s)
	}
	in, err := f.b.ListEdges(f.ctx, subs[0].Members["c"], sdk.Incoming)
	f.must("ListEdges", err)
	if len(in) != 2 {
		t.Fatalf("c has %d incoming edges, want 2: %+v", len(in), in)
	}
}

// Promise (sdk.MaxFlowItems "bounds the members plus edges of one
// SubmitFlow", README "1,000 members plus edges per SubmitFlow"): exactly
// the limit is accepted (members and edges counted together), one more
// is refused, typed, writing nothing.
func TestFlowPromiseItemLimit(t *testing.T) {
	f := newFP(t)
	chain := func(members int) sdk.FlowSpec {
		s := sdk.FlowSpec{ID: sdk.NewFlowID(1)}
		for i := range members {
			s.Members = append(s.Members, f.member(fmt.Sprintf("m%d", i)))
			if i > 0 {
				s.Edges = append(s.Edges, sdk.FlowEdge{From: fmt.Sprintf("m%d", i-1), To: fmt.Sprintf("m%d", i)})
			}
		}
		return s
	}
	over := chain(501) // 501 + 500 = 1001
	f.refuses("SubmitFlow of 1001 members plus edges", sdk.ErrValidation, sdk.CodeInvalidInput, func() error {
		_, err := f.b.SubmitFlow(f.ctx, over)
		return err
	})
	onlyEdges := sdk.FlowSpec{ID: sdk.NewFlowID(1), Members: []sdk.FlowMember{f.member("a"), f.member("b")}}
	for i := range sdk.MaxFlowItems - 1 {
		onlyEdges.Edges = append(onlyEdges.Edges, sdk.FlowEdge{ID: sdk.EdgeID(fmt.Sprintf("x%d", i)), From: "a", To: "b"})
	}
	f.refuses("SubmitFlow of 2 members and 999 edges", sdk.ErrValidation, sdk.CodeInvalidInput, func() error {
		_, err := f.b.SubmitFlow(f.ctx, onlyEdges)
		return err
	})
	at := chain(500) // 500 + 499 = 999
	at.Members = append(at.Members, f.member("extra"))
	sub := f.submit(at) // 1000 items
	if sub.Existed || len(sub.Members) != 501 || sub.States["m0"] != sdk.StateWaiting || sub.States["m1"] != sdk.StateWaitingChildren {
		t.Fatalf("SubmitFlow of exactly %d items = existed %v, %d members, m0 %s, m1 %s", sdk.MaxFlowItems, sub.Existed,
			len(sub.Members), sub.States["m0"], sub.States["m1"])
	}
	if s := f.describe(at.ID); s.Nodes != 501 || s.Edges != 499 {
		t.Fatalf("DescribeFlow = %d members, %d edges; want 501, 499", s.Nodes, s.Edges)
	}
}

// Promise (sdk/flows.go Resolve, DependencyPolicy, FlowMember, FlowEdge;
// README "all typed and writing nothing"): malformed specs the
// conformance suite does not try are refused with a typed validation
// error (or execution_id_in_use), never panic, and write nothing.
func TestFlowPromiseBadSpecsRefused(t *testing.T) {
	f := newFP(t)
	taken := sdk.NewFlowID(4).NewMemberID()
	_, err := f.b.CreateExecution(f.ctx, sdk.CreateExecutionArgs{ID: taken, Lane: f.lane, Kind: "fp.job"})
	f.must("CreateExecution", err)
	two := func() []sdk.FlowMember { return []sdk.FlowMember{f.member("a"), f.member("b")} }
	ab := []sdk.FlowEdge{{From: "a", To: "b"}}
	with := func(i int, mod func(*sdk.FlowMember)) []sdk.FlowMember {
		ms := two()
		mod(&ms[i])
		return ms
	}
	fid := sdk.NewFlowID(4)
	for _, c := range []struct {
		what string
		spec sdk.FlowSpec
		want error
		code string
	}{
		{"an unknown policy kind", sdk.FlowSpec{Members: with(1, func(m *sdk.FlowMember) { m.Policy.Kind = "most_of" }), Edges: ab}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"a quorum of 0", sdk.FlowSpec{Members: with(1, func(m *sdk.FlowMember) { m.Policy = sdk.DependencyPolicy{Kind: sdk.Quorum} }), Edges: ab}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"a quorum of -1", sdk.FlowSpec{Members: with(1, func(m *sdk.FlowMember) { m.Policy = sdk.DependencyPolicy{Kind: sdk.Quorum, K: -1} }), Edges: ab}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"a quorum over MaxFlowItems", sdk.FlowSpec{Members: with(1, func(m *sdk.FlowMember) { m.Policy = sdk.DependencyPolicy{Kind: sdk.Quorum, K: sdk.MaxFlowItems + 1} }), Edges: ab}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"an empty member name", sdk.FlowSpec{Members: with(0, func(m *sdk.FlowMember) { m.Name = "" })}, sdk.ErrValidation, ""},
		{"a member name with a space", sdk.FlowSpec{Members: with(0, func(m *sdk.FlowMember) { m.Name = "a b" })}, sdk.ErrValidation, ""},
		{"an edge id with a space", sdk.FlowSpec{Members: two(), Edges: []sdk.FlowEdge{{ID: "e 1", From: "a", To: "b"}}}, sdk.ErrValidation, ""},
		{"an edge id clashing with a default one", sdk.FlowSpec{Members: two(), Edges: []sdk.FlowEdge{{From: "a", To: "b"}, {ID: "e0", From: "a", To: "b"}}}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"an edge from an unknown member", sdk.FlowSpec{Members: two(), Edges: []sdk.FlowEdge{{From: "", To: "b"}}}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"a malformed member id", sdk.FlowSpec{Members: with(0, func(m *sdk.FlowMember) { m.Args.ID = "nope" })}, sdk.ErrValidation, ""},
		{"a member id in use", sdk.FlowSpec{ID: fid, Members: with(0, func(m *sdk.FlowMember) { m.Args.ID = taken })}, sdk.ErrConflict, sdk.CodeExecutionIDInUse},
		{"two members with one id", sdk.FlowSpec{ID: fid, Members: []sdk.FlowMember{
			{Name: "a", Args: sdk.CreateExecutionArgs{ID: fid.NewMemberID(), Lane: f.lane, Kind: "k"}},
			{Name: "b", Args: sdk.CreateExecutionArgs{Lane: f.lane, Kind: "k"}}}}, sdk.ErrValidation, ""},
		{"an empty kind", sdk.FlowSpec{Members: with(0, func(m *sdk.FlowMember) { m.Args.Kind = "" })}, sdk.ErrValidation, ""},
		{"a flow id on a partition the backend lacks", sdk.FlowSpec{ID: sdk.NewFlowID(9999), Members: two()}, sdk.ErrValidation, ""},
		{"a longer cycle", sdk.FlowSpec{ID: fid, Members: []sdk.FlowMember{f.member("a"), f.member("b"), f.member("c")},
			Edges: []sdk.FlowEdge{{From: "a", To: "b"}, {From: "b", To: "c"}, {From: "c", To: "a"}}}, sdk.ErrConflict, sdk.CodeCycleDetected},
	} {
		if c.what == "two members with one id" {
			c.spec.Members[1].Args.ID = c.spec.Members[0].Args.ID
		}
		f.refuses("SubmitFlow with "+c.what, c.want, c.code, func() error {
			_, err := f.b.SubmitFlow(f.ctx, c.spec)
			return err
		})
	}
}

// Promise (sdk/client_flows.go AwaitFlow, Flower.AwaitFlow): "An unknown
// flow is flow_not_found"; it returns the outcome once the flow has one,
// woken when it ends, "or ctx's error"; a cancelled flow is cancelled. Also
// without client-side caching (polling).
func TestFlowPromiseAwaitFlow(t *testing.T) {
	for _, cache := range []int{0, -1} {
		t.Run(fmt.Sprintf("cache=%d", cache), func(t *testing.T) {
			f := newFP(t)
			if cache < 0 {
				f.b = connectOpts(t, valkeybackend.Options{Addrs: f.addrs, CacheSizeEachConn: cache}, 8)
			}
			f.refuses("AwaitFlow of an unknown flow", sdk.ErrNotFound, sdk.CodeFlowNotFound, func() error {
				_, err := f.b.AwaitFlow(f.ctx, sdk.NewFlowID(0))
				return err
			})
			f.refuses("AwaitFlow of a malformed id", sdk.ErrValidation, "", func() error {
				_, err := f.b.AwaitFlow(f.ctx, "flow-1")
				return err
			})
			sub := f.submit(sdk.FlowSpec{Members: []sdk.FlowMember{f.member("a"), f.member("b")}, Edges: []sdk.FlowEdge{{From: "a", To: "b"}}})
			ctx, cancel := context.WithTimeout(f.ctx, 200*time.Millisecond)
			st, err := f.b.AwaitFlow(ctx, sub.ID)
			cancel()
			if err == nil || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, sdk.ErrTimeout) {
				t.Fatalf("AwaitFlow of an open flow past its ctx = %q, %v; want the ctx's deadline error (timeout kind)", st, err)
			}
			done := make(chan struct{})
			var got sdk.FlowState
			var aerr error
			go func() {
				defer close(done)
				ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
				defer cancel()
				got, aerr = f.b.AwaitFlow(ctx, sub.ID)
			}()
			f.complete(sub.Members["a"], "")
			f.fail(sub.Members["b"])
			<-done
			if aerr != nil || got != sdk.FlowFailed {
				t.Fatalf("AwaitFlow while the flow ends = %q, %v; want failed", got, aerr)
			}
			c := f.submit(sdk.FlowSpec{Members: []sdk.FlowMember{f.member("a")}})
			done = make(chan struct{})
			go func() {
				defer close(done)
				ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
				defer cancel()
				got, aerr = f.b.AwaitFlow(ctx, c.ID)
			}()
			_, err = f.b.CancelFlowHeader(f.ctx, sdk.CancelFlowArgs{Flow: c.ID, Reason: "stop"})
			f.must("CancelFlowHeader", err)
			<-done
			if aerr != nil || got != sdk.FlowCancelled {
				t.Fatalf("AwaitFlow while the flow is cancelled = %q, %v; want cancelled", got, aerr)
			}
		})
	}
}

// Promise (sdk.AnyOf "skipped when every upstream ended otherwise"; the
// package comment "and so on down the graph"; FlowFailed): an any_of
// member whose upstreams all failed or were cancelled is skipped, its
// dependant too, and the flow ends failed with every member counted.
func TestFlowPromiseAnyOfSkippedWhenNoneCompletes(t *testing.T) {
	f := newFP(t)
	ms := []sdk.FlowMember{f.member("u1"), f.member("u2"), f.member("any"), f.member("after")}
	ms[2].Policy = sdk.DependencyPolicy{Kind: sdk.AnyOf}
	sub := f.submit(sdk.FlowSpec{Members: ms, Edges: []sdk.FlowEdge{{From: "u1", To: "any"}, {From: "u2", To: "any"}, {From: "any", To: "after"}}})
	id := sub.Members
	f.fail(id["u1"])
	f.requireState(id["any"], sdk.StateWaitingChildren, "any_of with one upstream failed, one running")
	_, err := f.b.CancelExecution(f.ctx, sdk.CancelExecutionArgs{ExecutionID: id["u2"], Reason: "no"})
	f.must("CancelExecution", err)
	f.requireState(id["any"], sdk.StateSkipped, "any_of once every upstream ended otherwise")
	f.requireState(id["after"], sdk.StateSkipped, "the dependant of a skipped member")
	if st := f.await(sub.ID, 5*time.Second); st != sdk.FlowFailed {
		t.Fatalf("AwaitFlow = %s, want failed", st)
	}
	if s := f.describe(sub.ID); s.Ended != 4 || s.NotOK != 4 || s.EndedAt.IsZero() {
		t.Fatalf("DescribeFlow = %+v, want 4 ended, 4 not ok, an end time", s)
	}
}

// Promise (sdk.Quorum "skipped when fewer than K can still complete";
// "K upstreams completing run it (once: later outcomes only count)"): a
// quorum(2) of 3 is skipped as soon as two upstreams failed, before the
// third ends; another quorum(2) that ran is not run again by a third
// completion, and its running attempt keeps its lease.
func TestFlowPromiseQuorum(t *testing.T) {
	f := newFP(t)
	ms := []sdk.FlowMember{f.member("u1"), f.member("u2"), f.member("u3"), f.member("q")}
	ms[3].Policy = sdk.DependencyPolicy{Kind: sdk.Quorum, K: 2}
	edges := []sdk.FlowEdge{{From: "u1", To: "q"}, {From: "u2", To: "q"}, {From: "u3", To: "q"}}
	sub := f.submit(sdk.FlowSpec{Members: ms, Edges: edges})
	f.fail(sub.Members["u1"])
	f.requireState(sub.Members["q"], sdk.StateWaitingChildren, "quorum(2) of 3 after one failure")
	f.fail(sub.Members["u2"])
	f.requireState(sub.Members["q"], sdk.StateSkipped, "quorum(2) of 3 after two failures, the third still waiting")
	f.requireState(sub.Members["u3"], sdk.StateWaiting, "the third upstream")

	ms2 := []sdk.FlowMember{f.member("u1"), f.member("u2"), f.member("u3"), f.member("q")}
	ms2[3].Policy = sdk.DependencyPolicy{Kind: sdk.Quorum, K: 2}
	sub2 := f.submit(sdk.FlowSpec{Members: ms2, Edges: edges})
	f.complete(sub2.Members["u1"], "")
	f.requireState(sub2.Members["q"], sdk.StateWaitingChildren, "quorum(2) after one completion")
	f.complete(sub2.Members["u2"], "")
	f.requireState(sub2.Members["q"], sdk.StateWaiting, "quorum(2) after two completions")
	h := f.claim(sub2.Members["q"])
	f.complete(sub2.Members["u3"], "")
	f.requireState(sub2.Members["q"], sdk.StateActive, "the running quorum member after a third completion")
	f.must("Complete q on its first lease", f.b.Complete(f.ctx, h, nil))
	if st := f.await(sub2.ID, 5*time.Second); st != sdk.FlowCompleted {
		t.Fatalf("AwaitFlow = %s, want completed", st)
	}
	if s := f.describe(sub2.ID); s.Ended != 4 || s.NotOK != 0 {
		t.Fatalf("DescribeFlow = %+v, want 4 ended, none not ok", s)
	}
}

// Promise (sdk.AnyOf "one upstream completing runs the member", the
// package comment: a policy fires once): after an any_of member ran and
// completed, its other upstream completing does not run it again.
func TestFlowPromiseAnyOfFiresOnce(t *testing.T) {
	f := newFP(t)
	ms := []sdk.FlowMember{f.member("u1"), f.member("u2"), f.member("any")}
	ms[2].Policy = sdk.DependencyPolicy{Kind: sdk.AnyOf}
	sub := f.submit(sdk.FlowSpec{Members: ms, Edges: []sdk.FlowEdge{{From: "u1", To: "any"}, {From: "u2", To: "any"}}})
	f.complete(sub.Members["u1"], "one")
	f.complete(sub.Members["any"], "ran")
	f.complete(sub.Members["u2"], "two")
	f.requireState(sub.Members["any"], sdk.StateCompleted, "the any_of member after its second upstream completed")
	s, err := f.b.DescribeExecution(f.ctx, sub.Members["any"])
	f.must("DescribeExecution", err)
	if s.TotalAttempts != 1 {
		t.Fatalf("the any_of member ran %d attempts, want 1", s.TotalAttempts)
	}
	if st := f.await(sub.ID, 5*time.Second); st != sdk.FlowCompleted {
		t.Fatalf("AwaitFlow = %s, want completed", st)
	}
}

// Promise (sdk/flows.go AllOf "every upstream must complete", FlowState
// "every member ended"): an upstream's failure that schedules a retry is
// not its end: its dependant keeps waiting, the flow stays open; the
// retry's completion then runs the dependant.
func TestFlowPromiseRetryIsNotAnEnd(t *testing.T) {
	f := newFP(t)
	up := f.member("up")
	up.Args.Retry = sdk.RetryPolicy{MaxRetries: 1, Backoff: sdk.Backoff{Kind: sdk.BackoffFixed, ZeroDelay: true}}
	sub := f.submit(sdk.FlowSpec{Members: []sdk.FlowMember{up, f.member("down")}, Edges: []sdk.FlowEdge{{From: "up", To: "down"}}})
	out, err := f.b.Fail(f.ctx, f.claim(sub.Members["up"]), "transient", "test")
	f.must("Fail", err)
	if !out.RetryScheduled {
		t.Fatalf("Fail = %+v, want a retry", out)
	}
	f.requireState(sub.Members["down"], sdk.StateWaitingChildren, "the dependant while its upstream retries")
	if s := f.describe(sub.ID); s.State != sdk.FlowOpen || s.Ended != 0 {
		t.Fatalf("DescribeFlow = %+v, want open, none ended", s)
	}
	p, err := sub.ID.Partition()
	f.must("Partition", err)
	deadline := time.Now().Add(5 * time.Second)
	for f.state(sub.Members["up"]) != sdk.StateWaiting {
		if time.Now().After(deadline) {
			t.Fatalf("the retry never became waiting: %s", f.state(sub.Members["up"]))
		}
		_, err := f.b.PromoteDelayed(f.ctx, sdk.PromoteDelayedArgs{Lane: f.lane, Partition: p})
		f.must("PromoteDelayed", err)
		time.Sleep(10 * time.Millisecond)
	}
	f.complete(sub.Members["up"], "")
	f.requireState(sub.Members["down"], sdk.StateWaiting, "the dependant once the retry completed")
}

// Promise (exactly-once completion; sdk/flows.go AllOf): a completion
// repeated with the same handle resolves the member's edges once: an
// all_of dependant of two upstreams does not run on one upstream's
// completion sent twice, and the flow counts that member once.
func TestFlowPromiseRepeatedCompleteCountsOnce(t *testing.T) {
	f := newFP(t)
	sub := f.submit(sdk.FlowSpec{Members: []sdk.FlowMember{f.member("u1"), f.member("u2"), f.member("down")},
		Edges: []sdk.FlowEdge{{From: "u1", To: "down"}, {From: "u2", To: "down"}}})
	h := f.complete(sub.Members["u1"], "r")
	_ = f.b.Complete(f.ctx, h, []byte("r")) // a retried completion: its answer is the fencing's business
	f.requireState(sub.Members["down"], sdk.StateWaitingChildren, "all_of after one upstream's completion sent twice")
	if s := f.describe(sub.ID); s.Ended != 1 || s.State != sdk.FlowOpen {
		t.Fatalf("DescribeFlow = %+v, want 1 ended, open", s)
	}
}

// Promise (README "A member replayed after its end runs alone: its
// dependants do not run again"; FlowCompleted "every member completed"):
// replaying a completed member and completing it again must not count it
// a second time: a dependant still waiting for another upstream keeps
// waiting, and the flow does not end while a member has not run.
func TestFlowPromiseReplayedMemberRunsAlone(t *testing.T) {
	f := newFP(t)
	sub := f.submit(sdk.FlowSpec{Members: []sdk.FlowMember{f.member("u1"), f.member("u2"), f.member("down"), f.member("solo")},
		Edges: []sdk.FlowEdge{{From: "u1", To: "down"}, {From: "u2", To: "down"}}})
	id := sub.Members
	f.complete(id["u1"], "first")
	_, err := f.b.ReplayExecution(f.ctx, sdk.ReplayExecutionArgs{ExecutionID: id["u1"]})
	f.must("ReplayExecution", err)
	f.complete(id["u1"], "second")
	if st := f.state(id["down"]); st != sdk.StateWaitingChildren {
		t.Errorf("all_of child of a replayed upstream, its other upstream not run, is %s; want waiting_children", st)
	}
	if s := f.describe(sub.ID); s.Ended != 1 {
		t.Errorf("DescribeFlow: %d ended, want 1 (u1 once)", s.Ended)
	}
	// A flow of two independent members: one completed, replayed and
	// completed again; the other never ran. The flow must stay open.
	pair := f.submit(sdk.FlowSpec{Members: []sdk.FlowMember{f.member("a"), f.member("b")}})
	f.complete(pair.Members["a"], "")
	_, err = f.b.ReplayExecution(f.ctx, sdk.ReplayExecutionArgs{ExecutionID: pair.Members["a"]})
	f.must("ReplayExecution", err)
	f.complete(pair.Members["a"], "")
	if s := f.describe(pair.ID); s.State != sdk.FlowOpen {
		t.Fatalf("flow of a (replayed) and b (never run) is %s with %d of %d ended; want open", s.State, s.Ended, s.Nodes)
	}
}

// Promise (sdk.CancelAll "cancels every member still live, running ones
// included", CancelFlowArgs.Policy "default CancelAll", README "the first
// 100 members are cancelled in that call, the rest wait in the flow's
// cancel backlog", FlowSnapshot.CancelPolicy/CancelReason): a default
// cancel cancels a running member (its holder is fenced), reports
// cancel_all, cancels exactly 100 inline, and the snapshot records the
// policy and reason.
func TestFlowPromiseCancelAll(t *testing.T) {
	f := newFP(t)
	ms := make([]sdk.FlowMember, 130)
	for i := range ms {
		ms[i] = f.member(fmt.Sprintf("m%d", i))
	}
	sub := f.submit(sdk.FlowSpec{Members: ms})
	running := sub.Members["m0"]
	h := f.claim(running)
	hdr, err := f.b.CancelFlowHeader(f.ctx, sdk.CancelFlowArgs{Flow: sub.ID, Reason: "enough"})
	f.must("CancelFlowHeader", err)
	if hdr.AlreadyTerminal || hdr.State != sdk.FlowCancelled || hdr.Policy != sdk.CancelAll || hdr.Cancelled != 100 || hdr.Pending != 30 {
		t.Fatalf("CancelFlowHeader = %+v, want cancelled, cancel_all, 100 cancelled, 30 pending", hdr)
	}
	_, _, err = f.b.CancelFlowMembers(f.ctx, sub.ID, 1000)
	f.must("CancelFlowMembers", err)
	f.requireState(running, sdk.StateCancelled, "the running member under cancel_all")
	if err := f.b.Complete(f.ctx, h, nil); err == nil {
		t.Fatalf("Complete by the holder of a member its flow's cancel_all cancelled succeeded")
	}
	f.requireState(running, sdk.StateCancelled, "the cancelled member after its holder's Complete")
	s := f.describe(sub.ID)
	if s.State != sdk.FlowCancelled || s.CancelPolicy != sdk.CancelAll || s.CancelReason != "enough" || s.EndedAt.IsZero() ||
		s.PendingCancels != 0 || s.Ended != 130 {
		t.Fatalf("DescribeFlow = %+v, want cancelled (cancel_all, \"enough\"), ended, no backlog, 130 ended", s)
	}
}

// Promise (sdk/client_flows.go CancelFlow "With wait, it also cancels every
// member the first call left in the flow's backlog before it returns
// (Pending 0)"): Cancelled counts every member, Pending is 0, all are
// cancelled; a second cancel is AlreadyTerminal and writes nothing.
func TestFlowPromiseClientCancelFlowWait(t *testing.T) {
	f := newFP(t)
	client := sdk.NewClient(f.b)
	ms := make([]sdk.FlowMember, 250)
	for i := range ms {
		ms[i] = f.member(fmt.Sprintf("m%d", i))
	}
	sub, err := client.SubmitFlow(f.ctx, sdk.FlowSpec{Members: ms})
	f.must("Client.SubmitFlow", err)
	h, err := client.CancelFlow(f.ctx, sdk.CancelFlowArgs{Flow: sub.ID, Policy: sdk.CancelPending, Reason: "r"}, true)
	f.must("Client.CancelFlow", err)
	if h.Pending != 0 || h.Cancelled != 250 || h.Policy != sdk.CancelPending {
		t.Fatalf("CancelFlow(wait) = %+v, want 250 cancelled, none pending", h)
	}
	for name, id := range sub.Members {
		if st := f.state(id); st != sdk.StateCancelled {
			t.Fatalf("member %s is %s after CancelFlow(wait), want cancelled", name, st)
		}
	}
	if s := f.describe(sub.ID); s.PendingCancels != 0 || s.Ended != 250 {
		t.Fatalf("DescribeFlow = %+v, want no backlog, 250 ended", s)
	}
	before := keyspace(t, f.addrs)
	again, err := client.CancelFlow(f.ctx, sdk.CancelFlowArgs{Flow: sub.ID, Reason: "again"}, true)
	f.must("CancelFlow again", err)
	if !again.AlreadyTerminal || again.State != sdk.FlowCancelled || again.Cancelled != 0 {
		t.Fatalf("CancelFlow again = %+v, want already terminal, cancelled", again)
	}
	requireUnchanged(t, "CancelFlow of a cancelled flow", before, keyspace(t, f.addrs))
	// A flow that completed: cancel changes nothing, reports completed.
	done := f.submit(sdk.FlowSpec{Members: []sdk.FlowMember{f.member("a")}})
	f.complete(done.Members["a"], "")
	before = keyspace(t, f.addrs)
	got, err := client.CancelFlow(f.ctx, sdk.CancelFlowArgs{Flow: done.ID, Reason: "late"}, false)
	f.must("CancelFlow of a completed flow", err)
	if !got.AlreadyTerminal || got.State != sdk.FlowCompleted {
		t.Fatalf("CancelFlow of a completed flow = %+v, want already terminal, completed", got)
	}
	requireUnchanged(t, "CancelFlow of a completed flow", before, keyspace(t, f.addrs))
	if st := f.await(done.ID, time.Second); st != sdk.FlowCompleted {
		t.Fatalf("AwaitFlow after the late cancel = %s, want completed", st)
	}
}

// Promise (README "typed and writing nothing"; CancelFlowArgs): bad cancel
// arguments are refused, typed, writing nothing.
func TestFlowPromiseCancelBadInput(t *testing.T) {
	f := newFP(t)
	sub := f.submit(sdk.FlowSpec{Members: []sdk.FlowMember{f.member("a")}})
	for _, c := range []struct {
		what string
		args sdk.CancelFlowArgs
		want error
		code string
	}{
		{"an unknown policy", sdk.CancelFlowArgs{Flow: sub.ID, Policy: "cancel_some"}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"a reason over the limit", sdk.CancelFlowArgs{Flow: sub.ID, Reason: strings.Repeat("x", sdk.MaxReasonBytes+1)}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"a malformed flow id", sdk.CancelFlowArgs{Flow: "nope"}, sdk.ErrValidation, ""},
		{"an unknown flow", sdk.CancelFlowArgs{Flow: sdk.NewFlowID(1)}, sdk.ErrNotFound, sdk.CodeFlowNotFound},
		{"the zero args", sdk.CancelFlowArgs{}, sdk.ErrValidation, ""},
	} {
		f.refuses("CancelFlowHeader with "+c.what, c.want, c.code, func() error {
			_, err := f.b.CancelFlowHeader(f.ctx, c.args)
			return err
		})
	}
	f.refuses("CancelFlowMembers with max 1001", sdk.ErrValidation, sdk.CodeInvalidInput, func() error {
		_, _, err := f.b.CancelFlowMembers(f.ctx, sub.ID, 1001)
		return err
	})
	f.refuses("AckCancelMember of a member on another partition", sdk.ErrValidation, sdk.CodeInvalidInput, func() error {
		p, _ := sub.ID.Partition()
		return f.b.AckCancelMember(f.ctx, sub.ID, sdk.NewExecutionID((p+1)%8))
	})
	f.requireState(sub.Members["a"], sdk.StateWaiting, "the member after refused cancels")
}

// Promise (Flower.AddExecutionToFlow "one that has ended counts as an
// ended member at once; false when it was one already"; codes
// flow_member_elsewhere, flow_not_found, flow_terminal): an ended
// execution added counts at once; a member of another flow is refused,
// typed, writing nothing.
func TestFlowPromiseAddExecutionToFlow(t *testing.T) {
	f := newFP(t)
	fl := sdk.NewFlowID(2)
	created, err := f.b.CreateFlow(f.ctx, fl)
	f.must("CreateFlow", err)
	if !created {
		t.Fatal("CreateFlow of a new id = false")
	}
	mk := func(flow sdk.FlowID) sdk.ExecutionID {
		r, err := f.b.CreateExecution(f.ctx, sdk.CreateExecutionArgs{ID: flow.NewMemberID(), Lane: f.lane, Kind: "fp.job"})
		f.must("CreateExecution", err)
		return r.ID
	}
	live, ended := mk(fl), mk(fl)
	f.complete(ended, "")
	for _, id := range []sdk.ExecutionID{live, ended} {
		added, err := f.b.AddExecutionToFlow(f.ctx, fl, id)
		if err != nil || !added {
			t.Fatalf("AddExecutionToFlow(%s) = %v, %v", id, added, err)
		}
	}
	if s := f.describe(fl); s.Nodes != 2 || s.Ended != 1 || s.NotOK != 0 || s.State != sdk.FlowOpen {
		t.Fatalf("DescribeFlow = %+v, want 2 members, 1 ended, open", s)
	}
	other := sdk.NewFlowID(2)
	_, err = f.b.CreateFlow(f.ctx, other)
	f.must("CreateFlow other", err)
	f.refuses("AddExecutionToFlow of another flow's member", sdk.ErrConflict, sdk.CodeFlowMemberElsewhere, func() error {
		_, err := f.b.AddExecutionToFlow(f.ctx, other, live)
		return err
	})
	f.refuses("AddExecutionToFlow of an unknown execution", sdk.ErrNotFound, sdk.CodeExecutionNotFound, func() error {
		_, err := f.b.AddExecutionToFlow(f.ctx, fl, fl.NewMemberID())
		return err
	})
	f.refuses("AddExecutionToFlow to an unknown flow", sdk.ErrNotFound, sdk.CodeFlowNotFound, func() error {
		_, err := f.b.AddExecutionToFlow(f.ctx, sdk.FlowID(live), live)
		return err
	})
	f.complete(live, "")
	if st := f.await(fl, 5*time.Second); st != sdk.FlowCompleted {
		t.Fatalf("AwaitFlow = %s, want completed", st)
	}
}

// Promise (README "invalid_dependency (an edge to a delayed or ended
// member)", "typed and writing nothing"; ApplyDependencyToChild): applying
// an edge whose downstream has ended or is delayed is refused with
// invalid_dependency (state kind), writing nothing.
func TestFlowPromiseInvalidDependency(t *testing.T) {
	f := newFP(t)
	fl := sdk.NewFlowID(6)
	_, err := f.b.CreateFlow(f.ctx, fl)
	f.must("CreateFlow", err)
	mk := func(delay bool) sdk.ExecutionID {
		a := sdk.CreateExecutionArgs{ID: fl.NewMemberID(), Lane: f.lane, Kind: "fp.job"}
		if delay {
			a.DelayUntil = time.Now().Add(time.Hour)
		}
		r, err := f.b.CreateExecution(f.ctx, a)
		f.must("CreateExecution", err)
		_, err = f.b.AddExecutionToFlow(f.ctx, fl, r.ID)
		f.must("AddExecutionToFlow", err)
		return r.ID
	}
	up, delayed, ended := mk(false), mk(true), mk(false)
	f.complete(ended, "")
	rev, err := f.b.StageDependencyEdge(f.ctx, sdk.StageEdgeArgs{Flow: fl, Edge: "to-ended", Upstream: up, Downstream: ended})
	f.must("stage to-ended", err)
	_, err = f.b.StageDependencyEdge(f.ctx, sdk.StageEdgeArgs{Flow: fl, Edge: "to-delayed", Upstream: up, Downstream: delayed, ExpectedRevision: rev})
	f.must("stage to-delayed", err)
	for _, e := range []sdk.EdgeID{"to-ended", "to-delayed"} {
		f.refuses("ApplyDependencyToChild("+string(e)+")", sdk.ErrState, sdk.CodeInvalidDependency, func() error {
			_, err := f.b.ApplyDependencyToChild(f.ctx, fl, e)
			return err
		})
	}
	edge, err := f.b.DescribeEdge(f.ctx, fl, "to-delayed")
	f.must("DescribeEdge", err)
	if edge == nil || edge.State != "staged" {
		t.Fatalf("DescribeEdge(to-delayed) = %+v, want staged", edge)
	}
}

// Promise (README "flow_terminal, flow_not_found ... typed and writing
// nothing"; SetEdgeGroupPolicy, StageDependencyEdge, ApplyDependencyToChild,
// WaitChildren): calls on an ended or unknown flow, or naming a stranger,
// are refused, typed, writing nothing.
func TestFlowPromiseBuildCallsRefused(t *testing.T) {
	f := newFP(t)
	fl := sdk.NewFlowID(7)
	_, err := f.b.CreateFlow(f.ctx, fl)
	f.must("CreateFlow", err)
	mk := func() sdk.ExecutionID {
		r, err := f.b.CreateExecution(f.ctx, sdk.CreateExecutionArgs{ID: fl.NewMemberID(), Lane: f.lane, Kind: "fp.job"})
		f.must("CreateExecution", err)
		return r.ID
	}
	a, b, stranger := mk(), mk(), mk()
	for _, id := range []sdk.ExecutionID{a, b} {
		_, err := f.b.AddExecutionToFlow(f.ctx, fl, id)
		f.must("AddExecutionToFlow", err)
	}
	_, err = f.b.StageDependencyEdge(f.ctx, sdk.StageEdgeArgs{Flow: fl, Edge: "ab", Upstream: a, Downstream: b})
	f.must("stage ab", err)
	f.refuses("SetEdgeGroupPolicy of a stranger", sdk.ErrValidation, sdk.CodeNotFlowMember, func() error {
		return f.b.SetEdgeGroupPolicy(f.ctx, fl, stranger, sdk.DependencyPolicy{Kind: sdk.AnyOf})
	})
	f.refuses("SetEdgeGroupPolicy with a quorum of 0", sdk.ErrValidation, sdk.CodeInvalidInput, func() error {
		return f.b.SetEdgeGroupPolicy(f.ctx, fl, a, sdk.DependencyPolicy{Kind: sdk.Quorum})
	})
	f.refuses("SetEdgeGroupPolicy with an unknown kind", sdk.ErrValidation, sdk.CodeInvalidInput, func() error {
		return f.b.SetEdgeGroupPolicy(f.ctx, fl, a, sdk.DependencyPolicy{Kind: "most"})
	})
	f.refuses("StageDependencyEdge on an unknown flow", sdk.ErrNotFound, sdk.CodeFlowNotFound, func() error {
		_, err := f.b.StageDependencyEdge(f.ctx, sdk.StageEdgeArgs{Flow: sdk.FlowID(stranger), Edge: "x", Upstream: a, Downstream: b})
		return err
	})
	f.refuses("StageDependencyEdge with a bad edge id", sdk.ErrValidation, "", func() error {
		_, err := f.b.StageDependencyEdge(f.ctx, sdk.StageEdgeArgs{Flow: fl, Edge: "a b", Upstream: a, Downstream: b, ExpectedRevision: 1})
		return err
	})
	f.refuses("StageDependencyEdge of a self edge", sdk.ErrValidation, "", func() error {
		_, err := f.b.StageDependencyEdge(f.ctx, sdk.StageEdgeArgs{Flow: fl, Edge: "aa", Upstream: a, Downstream: a, ExpectedRevision: 1})
		return err
	})
	f.refuses("SetEdgeGroupPolicy on an unknown flow", sdk.ErrNotFound, sdk.CodeFlowNotFound, func() error {
		return f.b.SetEdgeGroupPolicy(f.ctx, sdk.FlowID(stranger), a, sdk.DependencyPolicy{Kind: sdk.AnyOf})
	})
	// WaitChildren of an execution outside flows: not_flow_member.
	solo, err := f.b.CreateExecution(f.ctx, sdk.CreateExecutionArgs{Lane: f.lane, Kind: "fp.job"})
	f.must("CreateExecution", err)
	h := f.claim(solo.ID)
	f.refuses("WaitChildren outside flows", sdk.ErrValidation, sdk.CodeNotFlowMember, func() error {
		_, err := f.b.WaitChildren(f.ctx, h)
		return err
	})
	f.requireState(solo.ID, sdk.StateActive, "the execution after a refused WaitChildren")
	// The flow ends (cancelled): every build call is flow_terminal.
	_, err = f.b.CancelFlowHeader(f.ctx, sdk.CancelFlowArgs{Flow: fl})
	f.must("CancelFlowHeader", err)
	f.refuses("StageDependencyEdge on an ended flow", sdk.ErrState, sdk.CodeFlowTerminal, func() error {
		_, err := f.b.StageDependencyEdge(f.ctx, sdk.StageEdgeArgs{Flow: fl, Edge: "ba2", Upstream: b, Downstream: a, ExpectedRevision: 1})
		return err
	})
	f.refuses("ApplyDependencyToChild on an ended flow", sdk.ErrState, sdk.CodeFlowTerminal, func() error {
		_, err := f.b.ApplyDependencyToChild(f.ctx, fl, "ab")
		return err
	})
	f.refuses("SetEdgeGroupPolicy on an ended flow", sdk.ErrState, sdk.CodeFlowTerminal, func() error {
		return f.b.SetEdgeGroupPolicy(f.ctx, fl, stranger, sdk.DependencyPolicy{})
	})
	f.refuses("AddExecutionToFlow on an ended flow", sdk.ErrState, sdk.CodeFlowTerminal, func() error {
		_, err := f.b.AddExecutionToFlow(f.ctx, fl, stranger)
		return err
	})
}

// Promise (Flower.ListFlows, ListFlowsPage "one page of a partition's
// flows, in id order; NextCursor "" on the last page"): pages cover every
// flow of the partition once, in id order, and only those.
func TestFlowPromiseListFlowsPages(t *testing.T) {
	f := newFP(t)
	var want []string
	for range 5 {
		sub := f.submit(sdk.FlowSpec{ID: sdk.NewFlowID(4), Members: []sdk.FlowMember{f.member("a")}})
		want = append(want, string(sub.ID))
	}
	f.submit(sdk.FlowSpec{ID: sdk.NewFlowID(5), Members: []sdk.FlowMember{f.member("a")}})
	sort.Strings(want)
	for _, limit := range []int{1, 2, 5, 6} {
		var got []string
		cursor := sdk.FlowID("")
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatalf("limit %d: too many pages", limit)
			}
			page, err := f.b.ListFlows(f.ctx, 4, cursor, limit)
			f.must("ListFlows", err)
			if len(page.Flows) > limit {
				t.Fatalf("limit %d: a page of %d", limit, len(page.Flows))
			}
			for _, s := range page.Flows {
				if s.State != sdk.FlowOpen || s.Nodes != 1 || s.CreatedAt.IsZero() {
					t.Fatalf("ListFlows row %+v", s)
				}
				got = append(got, string(s.ID))
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("limit %d: listed %v, want %v", limit, got, want)
		}
	}
	for _, bad := range []int{0, -1, 1001} {
		f.refuses(fmt.Sprintf("ListFlows with limit %d", bad), sdk.ErrValidation, sdk.CodeInvalidInput, func() error {
			_, err := f.b.ListFlows(f.ctx, 4, "", bad)
			return err
		})
	}
	f.refuses("ListFlows of a partition the backend lacks", sdk.ErrValidation, "", func() error {
		_, err := f.b.ListFlows(f.ctx, 8, "", 10)
		return err
	})
}

// Promise (Flower.ListEdges "none for an execution outside flows, sorted
// by edge id"; ResolveExecutionFlowID "" outside flows or for an unknown
// execution; UpstreamResults "results for the completed ones; nil
// otherwise"; DescribeFlow Members sorted, EndedAt zero while open): the
// reads of a flow say what the docs say.
func TestFlowPromiseReads(t *testing.T) {
	f := newFP(t)
	ms := []sdk.FlowMember{f.member("u1"), f.member("u2"), f.member("u3"), f.member("any")}
	ms[3].Policy = sdk.DependencyPolicy{Kind: sdk.AnyOf}
	sub := f.submit(sdk.FlowSpec{Members: ms,
		Edges: []sdk.FlowEdge{{ID: "z", From: "u1", To: "any"}, {ID: "a", From: "u2", To: "any"}, {ID: "m", From: "u3", To: "any"}}})
	id := sub.Members
	f.complete(id["u1"], "one")
	f.fail(id["u2"])
	in, err := f.b.ListEdges(f.ctx, id["any"], sdk.Incoming)
	f.must("ListEdges", err)
	if len(in) != 3 || in[0].ID != "a" || in[1].ID != "m" || in[2].ID != "z" {
		t.Fatalf("ListEdges(any, incoming) = %+v, want a, m, z", in)
	}
	res := map[sdk.EdgeID]string{}
	for _, e := range in {
		res[e.ID] = e.Resolution
		if e.Flow != sub.ID || e.Downstream != id["any"] || e.State != "applied" {
			t.Fatalf("edge %+v", e)
		}
	}
	if res["z"] != "satisfied" || res["a"] != "unsatisfied" || res["m"] != "" {
		t.Fatalf("resolutions %v, want z satisfied, a unsatisfied, m none", res)
	}
	ups, err := f.b.UpstreamResults(f.ctx, id["any"])
	f.must("UpstreamResults", err)
	byID := map[sdk.ExecutionID]sdk.UpstreamResult{}
	for _, u := range ups {
		byID[u.ID] = u
	}
	if len(ups) != 3 || string(byID[id["u1"]].Result) != "one" || byID[id["u1"]].State != sdk.StateCompleted ||
		byID[id["u2"]].State != sdk.StateFailed || byID[id["u2"]].Result != nil ||
		byID[id["u3"]].State != sdk.StateWaiting || byID[id["u3"]].Result != nil {
		t.Fatalf("UpstreamResults(any) = %+v", ups)
	}
	s := f.describe(sub.ID)
	if !sort.SliceIsSorted(s.Members, func(i, j int) bool { return s.Members[i] < s.Members[j] }) || len(s.Members) != 4 ||
		!s.EndedAt.IsZero() || s.CreatedAt.IsZero() || s.Revision != 3 || s.Ended != 2 || s.NotOK != 1 {
		t.Fatalf("DescribeFlow = %+v", s)
	}
	solo, err := f.b.CreateExecution(f.ctx, sdk.CreateExecutionArgs{Lane: f.lane, Kind: "fp.job"})
	f.must("CreateExecution", err)
	for _, x := range []sdk.ExecutionID{solo.ID, sdk.NewExecutionID(3)} {
		if es, err := f.b.ListEdges(f.ctx, x, sdk.Outgoing); err != nil || len(es) != 0 {
			t.Fatalf("ListEdges(%s) outside flows = %+v, %v; want none", x, es, err)
		}
		if fl, err := f.b.ResolveExecutionFlowID(f.ctx, x); err != nil || fl != "" {
			t.Fatalf("ResolveExecutionFlowID(%s) = %q, %v; want \"\"", x, fl, err)
		}
		if us, err := f.b.UpstreamResults(f.ctx, x); err != nil || len(us) != 0 {
			t.Fatalf("UpstreamResults(%s) outside flows = %+v, %v", x, us, err)
		}
	}
	if es, err := f.b.ListEdges(f.ctx, id["u1"], sdk.Incoming); err != nil || len(es) != 0 {
		t.Fatalf("ListEdges(u1, incoming) = %+v, %v; want none", es, err)
	}
	f.refuses("ResolveExecutionFlowID of a malformed id", sdk.ErrValidation, "", func() error {
		_, err := f.b.ResolveExecutionFlowID(f.ctx, "nope")
		return err
	})
}

// Promise (README "flows spread over partitions (a flow id is minted on
// the next partition in turn)"; sdk/flows.go "A flow and all its members
// live on the flow's partition"): flows submitted without an id land on
// every partition in turn, each with its members on its own partition.
func TestFlowPromiseFlowsSpreadOverPartitions(t *testing.T) {
	f := newFP(t)
	seen := map[int]bool{}
	for range 8 {
		sub := f.submit(sdk.FlowSpec{Members: []sdk.FlowMember{f.member("a"), f.member("b")}})
		p, err := sub.ID.Partition()
		f.must("Partition", err)
		seen[p] = true
		for name, id := range sub.Members {
			if id.Tag() != sdk.PartitionTag(p) {
				t.Fatalf("member %s (%s) is not on its flow's partition %d", name, id, p)
			}
		}
	}
	if len(seen) != 8 {
		t.Fatalf("8 flows without ids landed on %d of 8 partitions: %v", len(seen), seen)
	}
}

// Promise (sdk.MaxFlowMembers "bounds the members of one flow
// (AddExecutionToFlow)", README "10,000 members per flow
// (flow_too_large)"): the 10,001st member is refused, typed, writing
// nothing.
func TestFlowPromiseMaxFlowMembers(t *testing.T) {
	f := newFP(t)
	fl := sdk.NewFlowID(0)
	_, err := f.b.CreateFlow(f.ctx, fl)
	f.must("CreateFlow", err)
	args := make([]sdk.CreateExecutionArgs, sdk.MaxFlowMembers+1)
	for i := range args {
		args[i] = sdk.CreateExecutionArgs{ID: fl.NewMemberID(), Lane: f.lane, Kind: "fp.job"}
	}
	ids := make([]sdk.ExecutionID, 0, len(args))
	for i := 0; i < len(args); i += 1000 {
		res, err := f.b.CreateExecutions(f.ctx, args[i:min(i+1000, len(args))])
		f.must("CreateExecutions", err)
		for _, r := range res {
			ids = append(ids, r.ID)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	next := make(chan sdk.ExecutionID)
	for range 32 {
		wg.Go(func() {
			for id := range next {
				if added, err := f.b.AddExecutionToFlow(f.ctx, fl, id); err != nil || !added {
					errs <- fmt.Errorf("AddExecutionToFlow(%s) = %v, %v", id, added, err)
					return
				}
			}
		})
	}
	for _, id := range ids[:sdk.MaxFlowMembers] {
		next <- id
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The whole keyspace is too large to compare here: the refused add must
	// leave the flow's record, its member set and the execution alone.
	last := ids[sdk.MaxFlowMembers]
	before := f.describe(fl)
	added, err := f.b.AddExecutionToFlow(f.ctx, fl, last)
	if added || !errors.Is(err, sdk.ErrValidation) || sdk.CodeOf(err) != sdk.CodeFlowTooLarge {
		t.Fatalf("AddExecutionToFlow of member 10,001 = %v, %v; want flow_too_large (validation)", added, err)
	}
	after := f.describe(fl)
	if after.Nodes != sdk.MaxFlowMembers || len(after.Members) != sdk.MaxFlowMembers || after.Revision != before.Revision {
		t.Fatalf("DescribeFlow after the refused add: %d members (%d listed), want %d", after.Nodes, len(after.Members), sdk.MaxFlowMembers)
	}
	if got, err := f.b.ResolveExecutionFlowID(f.ctx, last); err != nil || got != "" {
		t.Fatalf("ResolveExecutionFlowID of the refused member = %q, %v; want none", got, err)
	}
}

// Promise (sdk.Quorum "skipped when fewer than K can still complete";
// SetEdgeGroupPolicy "before any edge to it is staged"; StageEdgeArgs /
// ApplyDependencyToChild: a flow built call by call): a quorum(2) member
// with two staged edges, one applied, is not skipped by that upstream's
// completion: the other upstream can still complete (its edge, applied
// later, counts its outcome at once). A completion never makes a quorum
// less reachable.
func TestFlowPromiseQuorumBuiltCallByCall(t *testing.T) {
	f := newFP(t)
	fl := sdk.NewFlowID(3)
	_, err := f.b.CreateFlow(f.ctx, fl)
	f.must("CreateFlow", err)
	mk := func() sdk.ExecutionID {
		r, err := f.b.CreateExecution(f.ctx, sdk.CreateExecutionArgs{ID: fl.NewMemberID(), Lane: f.lane, Kind: "fp.job"})
		f.must("CreateExecution", err)
		_, err = f.b.AddExecutionToFlow(f.ctx, fl, r.ID)
		f.must("AddExecutionToFlow", err)
		return r.ID
	}
	a, b, q := mk(), mk(), mk()
	f.must("SetEdgeGroupPolicy", f.b.SetEdgeGroupPolicy(f.ctx, fl, q, sdk.DependencyPolicy{Kind: sdk.Quorum, K: 2}))
	rev, err := f.b.StageDependencyEdge(f.ctx, sdk.StageEdgeArgs{Flow: fl, Edge: "aq", Upstream: a, Downstream: q})
	f.must("stage aq", err)
	_, err = f.b.StageDependencyEdge(f.ctx, sdk.StageEdgeArgs{Flow: fl, Edge: "bq", Upstream: b, Downstream: q, ExpectedRevision: rev})
	f.must("stage bq", err)
	st, err := f.b.ApplyDependencyToChild(f.ctx, fl, "aq")
	f.must("apply aq", err)
	if st != sdk.StateWaitingChildren {
		t.Fatalf("apply aq = %s, want waiting_children", st)
	}
	f.complete(a, "")
	f.requireState(q, sdk.StateWaitingChildren, "quorum(2) after one completion, the other upstream staged and waiting")
	_, err = f.b.ApplyDependencyToChild(f.ctx, fl, "bq")
	f.must("apply bq", err)
	f.complete(b, "")
	f.requireState(q, sdk.StateWaiting, "quorum(2) after both upstreams completed")
}

// Promise (behaviour on cancellation; README "typed and writing
// nothing"): flow calls made with a context already cancelled fail with a
// typed error wrapping the context's, and write nothing.
func TestFlowPromiseCancelledContext(t *testing.T) {
	f := newFP(t)
	open := f.submit(sdk.FlowSpec{Members: []sdk.FlowMember{f.member("a")}})
	dead, cancel := context.WithCancel(f.ctx)
	cancel()
	for _, c := range []struct {
		what string
		call func() error
	}{
		{"SubmitFlow", func() error {
			_, err := f.b.SubmitFlow(dead, sdk.FlowSpec{ID: sdk.NewFlowID(1), Members: []sdk.FlowMember{f.member("x")}})
			return err
		}},
		{"AwaitFlow", func() error { _, err := f.b.AwaitFlow(dead, open.ID); return err }},
		{"CancelFlowHeader", func() error {
			_, err := f.b.CancelFlowHeader(dead, sdk.CancelFlowArgs{Flow: open.ID})
			return err
		}},
		{"Client.CancelFlow", func() error {
			_, err := sdk.NewClient(f.b).CancelFlow(dead, sdk.CancelFlowArgs{Flow: open.ID}, true)
			return err
		}},
	} {
		f.refuses(c.what+" with a cancelled context", sdk.ErrTimeout, "", c.call)
		if err := c.call(); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a cancelled context = %v, want it to wrap context.Canceled", c.what, err)
		}
	}
	if s := f.describe(open.ID); s.State != sdk.FlowOpen {
		t.Fatalf("the flow is %s after calls with a cancelled context, want open", s.State)
	}
}

// Promise (sdk.CancelAll "cancels every member still live";
// CancelFlowHeader.Cancelled "counts members this call cancelled"): every
// member of a chain that was live when the flow was cancelled ends
// cancelled (with the cancel's reason), and Cancelled counts them all.
func TestFlowPromiseCancelAllCancelsDependants(t *testing.T) {
	f := newFP(t)
	const n = 20
	spec := sdk.FlowSpec{}
	for i := range n {
		spec.Members = append(spec.Members, f.member(fmt.Sprintf("m%d", i)))
		if i > 0 {
			spec.Edges = append(spec.Edges, sdk.FlowEdge{From: fmt.Sprintf("m%d", i-1), To: fmt.Sprintf("m%d", i)})
		}
	}
	sub := f.submit(spec)
	h, err := f.b.CancelFlowHeader(f.ctx, sdk.CancelFlowArgs{Flow: sub.ID, Policy: sdk.CancelAll, Reason: "stop"})
	f.must("CancelFlowHeader", err)
	var notCancelled []string
	for name, id := range sub.Members {
		s, err := f.b.DescribeExecution(f.ctx, id)
		f.must("DescribeExecution", err)
		if s.State != sdk.StateCancelled || s.CancellationReason != "stop" {
			notCancelled = append(notCancelled, fmt.Sprintf("%s=%s(%q)", name, s.State, s.FailureReason))
		}
	}
	sort.Strings(notCancelled)
	if h.Cancelled != n || h.Pending != 0 || len(notCancelled) > 0 {
		t.Fatalf("cancel_all of a live chain of %d: header %+v; not cancelled: %v", n, h, notCancelled)
	}
}

// Promise (valkeybackend SubmitFlow: "a retry whose first try failed to
// register them does"): a repeated submit of the same spec puts the
// flow's lanes back in the lane registry when they are missing from it
// (the first submit's SADD lost to a transport error), so the scanners
// find the members' lane.
func TestFlowPromiseExistedRegistersItsLanes(t *testing.T) {
	f := newFP(t)
	spec := sdk.FlowSpec{ID: sdk.NewFlowID(3), Members: []sdk.FlowMember{f.member("a")}}
	f.submit(spec)
	c := nodeClients(t, f.addrs)[0]
	defer c.Close()
	// As if the first submit's registration had not landed.
	f.must("SREM", c.Do(f.ctx, c.B().Srem().Key("ff:lanes").Member(string(f.lane)).Build()).Error())
	again, err := connectOpts(t, valkeybackend.Options{Addrs: f.addrs}, 8).SubmitFlow(f.ctx, spec)
	f.must("SubmitFlow again", err)
	if !again.Existed {
		t.Fatalf("SubmitFlow again = %+v, want Existed", again)
	}
	in, err := c.Do(f.ctx, c.B().Sismember().Key("ff:lanes").Member(string(f.lane)).Build()).AsBool()
	f.must("SISMEMBER", err)
	if !in {
		t.Fatalf("lane %s is not in the registry after the repeated submit", f.lane)
	}
}

// Promise (sdk.CancelPending "cancels members not running; running ones
// finish"; the README: the members past the first 100 wait in the cancel
// backlog): a running member that completes while its dependants wait in
// the backlog does not run them; every one of them ends cancelled once
// the backlog is drained, and the running member stays completed.
func TestFlowPromiseCancelPendingBacklogNotRun(t *testing.T) {
	f := newFP(t)
	const n = 150
	spec := sdk.FlowSpec{Members: []sdk.FlowMember{f.member("root")}}
	for i := range n {
		name := fmt.Sprintf("c%d", i)
		spec.Members = append(spec.Members, f.member(name))
		spec.Edges = append(spec.Edges, sdk.FlowEdge{From: "root", To: name})
	}
	sub := f.submit(spec)
	h := f.claim(sub.Members["root"])
	head, err := f.b.CancelFlowHeader(f.ctx, sdk.CancelFlowArgs{Flow: sub.ID, Policy: sdk.CancelPending, Reason: "stop"})
	f.must("CancelFlowHeader", err)
	if head.Cancelled != 100 || head.Pending != n-100 {
		t.Fatalf("cancel_pending of %d waiting members: header %+v, want 100 cancelled and %d pending", n, head, n-100)
	}
	f.must("Complete root", f.b.Complete(f.ctx, h, []byte("done")))
	for i := range n {
		if s := f.state(sub.Members[fmt.Sprintf("c%d", i)]); s != sdk.StateCancelled && s != sdk.StateWaitingChildren {
			t.Fatalf("c%d is %s after its running upstream completed in a cancelled flow: it must wait for the cancel", i, s)
		}
	}
	done, left, err := f.b.CancelFlowMembers(f.ctx, sub.ID, 1000)
	f.must("CancelFlowMembers", err)
	if done != n-100 || left != 0 {
		t.Fatalf("CancelFlowMembers = %d cancelled, %d left; want %d, 0", done, left, n-100)
	}
	for i := range n {
		f.requireState(sub.Members[fmt.Sprintf("c%d", i)], sdk.StateCancelled, fmt.Sprintf("c%d after the backlog drained", i))
	}
	f.requireState(sub.Members["root"], sdk.StateCompleted, "root")
	if s := f.describe(sub.ID); s.State != sdk.FlowCancelled || s.Ended != n+1 {
		t.Fatalf("flow after the drain: %+v, want cancelled with %d members ended", s, n+1)
	}
}
