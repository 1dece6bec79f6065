package valkeybackend_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// Flows through a Valkey crash and restart (append-only file, appendfsync
// always), a Sentinel failover (a replica promoted, WaitReplicas 1) and a
// connection cut in the middle of a call (the command ran, its reply is
// lost). Each test checks a promise of the README's Flows and Durability
// sections: an acknowledged flow and its members' ends survive, a retried
// call recognises the first that landed (SubmitFlow: the same flow,
// Existed; a completion: execution_not_active of its own epoch, its edges
// resolved once; CancelFlow: already terminal), dependants run once, and
// AwaitFlow still returns the flow's outcome.

const flowRestartLane sdk.LaneID = "flowrestart"

// flowRestartServer starts a server whose every acknowledged write
// survives a SIGKILL (AOF, appendfsync always).
func flowRestartServer(t *testing.T) *valkeytest.Server {
	t.Helper()
	srv, err := valkeytest.Start(t.Context(), valkeytest.Options{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// flowRestartConnect connects to addr (4 partitions).
func flowRestartConnect(t *testing.T, addr string, opts valkeybackend.Options) *valkeybackend.Backend {
	t.Helper()
	opts.Addrs = []string{addr}
	return connectOpts(t, opts, 4)
}

// crashFor SIGKILLs srv and restarts it from its append-only file after down.
func crashFor(t *testing.T, srv *valkeytest.Server, down time.Duration) {
	t.Helper()
	if err := srv.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	time.Sleep(down)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
}

// retrying repeats call while it returns a retryable error (the backend
// reconnecting after a restart or failover), for at most 15s.
func retrying(t *testing.T, what string, call func() error) error {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := call()
		if err == nil || !sdk.Retryable(err) {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 15s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// claimMember claims waiting member id for a new attempt.
func claimMember(t *testing.T, b *valkeybackend.Backend, id sdk.ExecutionID, ttl time.Duration) sdk.ClaimedTask {
	t.Helper()
	var c sdk.ClaimedTask
	err := retrying(t, "claim "+string(id), func() (err error) {
		c, err = b.GrantAndClaim(context.Background(), sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: flowRestartLane,
			WorkerID: "w", WorkerInstanceID: "w-1"}, ttl)
		return err
	})
	if err != nil {
		t.Fatalf("claim %s: %v", id, err)
	}
	return c
}

// completeMember claims member id and completes it.
func completeMember(t *testing.T, b *valkeybackend.Backend, id sdk.ExecutionID) {
	t.Helper()
	c := claimMember(t, b, id, time.Minute)
	if err := retrying(t, "complete "+string(id), func() error {
		return b.Complete(context.Background(), c.Handle, []byte("r"))
	}); err != nil {
		t.Fatalf("complete %s: %v", id, err)
	}
}

// notClaimable checks member id cannot be claimed again (it ran once).
func notClaimable(t *testing.T, b *valkeybackend.Backend, id sdk.ExecutionID, what string) {
	t.Helper()
	_, err := b.GrantAndClaim(context.Background(), sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: flowRestartLane,
		WorkerID: "w2", WorkerInstanceID: "w2-1"}, time.Minute)
	if err == nil {
		t.Fatalf("%s: %s could be claimed a second time", what, id)
	}
}

// requireStates checks each member's state.
func requireStates(t *testing.T, b *valkeybackend.Backend, ids map[string]sdk.ExecutionID, want map[string]sdk.PublicState, what string) {
	t.Helper()
	for name, st := range want {
		var got sdk.PublicState
		if err := retrying(t, "read "+name, func() (err error) {
			got, err = b.ReadExecutionState(context.Background(), ids[name])
			return err
		}); err != nil || got != st {
			t.Fatalf("%s: member %s is %q (%v), want %q", what, name, got, err, st)
		}
	}
}

func describeFlow(t *testing.T, b *valkeybackend.Backend, id sdk.FlowID) sdk.FlowSnapshot {
	t.Helper()
	var s sdk.FlowSnapshot
	if err := retrying(t, "describe flow", func() (err error) {
		s, err = b.DescribeFlow(context.Background(), id)
		return err
	}); err != nil {
		t.Fatalf("DescribeFlow(%s): %v", id, err)
	}
	return s
}

func flowMember(name string) sdk.FlowMember {
	return sdk.FlowMember{Name: name, Args: sdk.CreateExecutionArgs{Lane: flowRestartLane, Kind: "k"}}
}

// policyFlow is three upstreams u1..u3 feeding an all_of, an any_of and a
// quorum(2) member; any_of and quorum each have one dependant.
func policyFlow(partition int) sdk.FlowSpec {
	ms := []sdk.FlowMember{flowMember("u1"), flowMember("u2"), flowMember("u3"),
		flowMember("all"), flowMember("any"), flowMember("q2"), flowMember("after-any"), flowMember("after-q2")}
	ms[4].Policy = sdk.DependencyPolicy{Kind: sdk.AnyOf}
	ms[5].Policy = sdk.DependencyPolicy{Kind: sdk.Quorum, K: 2}
	var edges []sdk.FlowEdge
	for _, u := range []string{"u1", "u2", "u3"} {
		for _, d := range []string{"all", "any", "q2"} {
			edges = append(edges, sdk.FlowEdge{From: u, To: d})
		}
	}
	edges = append(edges, sdk.FlowEdge{From: "any", To: "after-any"}, sdk.FlowEdge{From: "q2", To: "after-q2"})
	return sdk.FlowSpec{ID: sdk.NewFlowID(partition), Members: ms, Edges: edges}
}

// awaitFlowAsync runs AwaitFlow in the background; the channel gets its
// result.
type awaitResult struct {
	st  sdk.FlowState
	err error
}

func awaitFlowAsync(ctx context.Context, b *valkeybackend.Backend, id sdk.FlowID) <-chan awaitResult {
	ch := make(chan awaitResult, 1)
	go func() {
		st, err := b.AwaitFlow(ctx, id)
		ch <- awaitResult{st, err}
	}()
	return ch
}

func requireAwait(t *testing.T, ch <-chan awaitResult, want sdk.FlowState, what string) {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil || r.st != want {
			t.Fatalf("%s: AwaitFlow = %q, %v; want %q", what, r.st, r.err, want)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: AwaitFlow did not return within 15s", what)
	}
}

// cutProxy forwards TCP connections to a Valkey server. Armed with a
// marker (a library function's name), it lets the next command carrying
// it through to the server and, when the server's reply comes back on
// that connection, drops the reply and closes the connection both ways:
// the call ran, its caller sees a broken connection.
type cutProxy struct {
	l      net.Listener
	target string

	mu     sync.Mutex
	marker []byte
	fired  chan struct{}
	links  map[net.Conn]bool
	closed bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{l: l, target: target, links: map[net.Conn]bool{}}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *cutProxy) addr() string { return p.l.Addr().String() }

// arm makes the next call whose command holds marker lose its reply; the
// channel closes once it did.
func (p *cutProxy) arm(marker string) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.marker, p.fired = []byte(marker), make(chan struct{})
	return p.fired
}

// cutAll closes every connection through the proxy (the clients
// reconnect through it).
func (p *cutProxy) cutAll() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.links) / 2
	for c := range p.links {
		c.Close()
	}
	return n
}

func (p *cutProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.links {
		c.Close()
	}
	p.mu.Unlock()
	p.l.Close()
}

func (p *cutProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.links[c], p.links[up] = true, true
		p.mu.Unlock()
		var doomed atomic.Pointer[chan struct{}]
		shut := func() {
			c.Close()
			up.Close()
			p.mu.Lock()
			delete(p.links, c)
			delete(p.links, up)
			p.mu.Unlock()
		}
		go func() { // client to server
			defer shut()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					p.mu.Lock()
					if p.marker != nil && bytes.Contains(buf[:n], p.marker) {
						fired := p.fired
						doomed.Store(&fired)
						p.marker = nil
					}
					p.mu.Unlock()
					if _, werr := up.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() { // server to client
			defer shut()
			buf := make([]byte, 64<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 {
					if d := doomed.Load(); d != nil {
						shut()
						close(*d)
						return
					}
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// replyLost runs call with the proxy armed for marker and checks the call
// returned an error (its reply was lost) that is not a validation or
// engine error: a transport error, the caller's to retry.
func replyLost(t *testing.T, p *cutProxy, marker string, call func() error) {
	t.Helper()
	fired := p.arm(marker)
	err := call()
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatalf("the proxy never saw a reply to %s (call returned %v)", marker, err)
	}
	if err == nil {
		t.Fatalf("%s returned nil although its reply was dropped", marker)
	}
	if !sdk.Retryable(err) {
		t.Fatalf("%s with its reply lost: %v; want a retryable transport error", marker, err)
	}
	t.Logf("%s with its reply lost: %v", marker, err)
}

// viaProxy connects a backend through p without client-side caching (no
// invalidation pushes on its connections: the only replies are its own).
func viaProxy(t *testing.T, p *cutProxy) *valkeybackend.Backend {
	t.Helper()
	return flowRestartConnect(t, p.addr(), valkeybackend.Options{CacheSizeEachConn: -1})
}

// TestFlowRestartSubmitReplyLost: a SubmitFlow whose reply is lost (the
// connection breaks after the server ran ff_flow_submit) returns a
// retryable error; the flow exists; the caller's retry with the same spec
// returns the same flow and member ids, Existed, open, and writes
// nothing: the members exist once (each claimable once), the graph's
// revision and counts are those of one submit.
func TestFlowRestartSubmitReplyLost(t *testing.T) {
	direct, p := cutSetup(t)
	b := viaProxy(t, p)
	ctx := context.Background()
	spec := policyFlow(1)
	replyLost(t, p, "ff_flow_submit", func() error { _, err := b.SubmitFlow(ctx, spec); return err })
	s := describeFlow(t, direct, spec.ID)
	if s.State != sdk.FlowOpen || s.Nodes != 8 || s.Edges != 11 || s.Revision != 11 {
		t.Fatalf("after the lost reply: %+v; want the flow created once (open, 8 members, 11 edges, revision 11)", s)
	}
	again, err := b.SubmitFlow(ctx, spec)
	if err != nil {
		t.Fatalf("SubmitFlow retried: %v", err)
	}
	if !again.Existed || again.ID != spec.ID || again.FlowState != sdk.FlowOpen || len(again.Members) != 8 {
		t.Fatalf("SubmitFlow retried = %+v; want the same flow, Existed, open, 8 members", again)
	}
	resolved, _, err := spec.Resolve(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range resolved.Members {
		if again.Members[m.Name] != m.Args.ID {
			t.Fatalf("member %s: retry names %s, the spec derives %s", m.Name, again.Members[m.Name], m.Args.ID)
		}
	}
	if s2 := describeFlow(t, direct, spec.ID); s2.Nodes != 8 || s2.Edges != 11 || s2.Revision != 11 || len(s2.Members) != 8 {
		t.Fatalf("after the retry: %+v; want nothing written", s2)
	}
	requireStates(t, direct, again.Members, map[string]sdk.PublicState{"u1": sdk.StateWaiting, "u2": sdk.StateWaiting,
		"u3": sdk.StateWaiting, "all": sdk.StateWaitingChildren, "q2": sdk.StateWaitingChildren}, "after the retry")
	// Each upstream was created once: it runs once.
	for _, u := range []string{"u1", "u2", "u3"} {
		completeMember(t, direct, again.Members[u])
		notClaimable(t, direct, again.Members[u], "after its completion")
	}
	if s3 := describeFlow(t, direct, spec.ID); s3.State != sdk.FlowOpen || s3.Ended != 3 {
		t.Fatalf("after the upstreams completed: %+v; want open, 3 ended", s3)
	}
}

// TestFlowRestartCompletionReplyLost: a member's completion whose reply is
// lost (the server ran ff_complete, resolving its edges) is retried with
// the same handle; the retry meets its own landed completion
// (execution_not_active, its epoch, completed) and resolves nothing again:
// the any_of member fires once on the first completion, the quorum(2)
// member once on the second, their counts and the flow's count each
// completion once, and each dependant runs once. The flow ends completed.
func TestFlowRestartCompletionReplyLost(t *testing.T) {
	direct, p := cutSetup(t)
	b := viaProxy(t, p)
	ctx := context.Background()
	sub, err := direct.SubmitFlow(ctx, policyFlow(2))
	if err != nil {
		t.Fatal(err)
	}
	ids := sub.Members
	done := make(chan awaitResult, 1)
	awaitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	go func() { st, err := direct.AwaitFlow(awaitCtx, sub.ID); done <- awaitResult{st, err} }()

	lostCompletion := func(name string) {
		t.Helper()
		c := claimMember(t, b, ids[name], time.Minute)
		replyLost(t, p, "ff_complete", func() error { return b.Complete(ctx, c.Handle, []byte("r")) })
		err := b.Complete(ctx, c.Handle, []byte("r"))
		if d, ok := notActive(err); !ok || d.Epoch != c.Handle.Epoch || d.State != sdk.StateCompleted {
			t.Fatalf("Complete(%s) retried: %v; want execution_not_active of its own completion", name, err)
		}
	}
	lostCompletion("u1")
	requireStates(t, direct, ids, map[string]sdk.PublicState{"u1": sdk.StateCompleted, "any": sdk.StateWaiting,
		"q2": sdk.StateWaitingChildren, "all": sdk.StateWaitingChildren}, "after u1's completion and its retry")
	if s := describeFlow(t, direct, sub.ID); s.Ended != 1 || s.NotOK != 0 {
		t.Fatalf("after u1: %+v; want 1 member ended", s)
	}
	lostCompletion("u2")
	requireStates(t, direct, ids, map[string]sdk.PublicState{"u2": sdk.StateCompleted, "q2": sdk.StateWaiting,
		"all": sdk.StateWaitingChildren}, "after u2's completion and its retry")
	for _, name := range []string{"any", "q2", "all"} {
		info, err := direct.ReadExecutionInfo(ctx, ids[name])
		if err != nil || info == nil || info.Fields["dep_ok"] != "2" {
			t.Fatalf("%s after two completions: %v, %v; want dep_ok 2 (each completion counted once)", name, info, err)
		}
	}
	if s := describeFlow(t, direct, sub.ID); s.Ended != 2 || s.NotOK != 0 {
		t.Fatalf("after u2: %+v; want 2 members ended", s)
	}
	// any and q2 run once each; their dependants once each.
	for _, name := range []string{"any", "q2"} {
		completeMember(t, direct, ids[name])
		notClaimable(t, direct, ids[name], "after its completion")
	}
	for _, name := range []string{"u3", "all", "after-any", "after-q2"} {
		completeMember(t, direct, ids[name])
	}
	requireAwait(t, done, sdk.FlowCompleted, "the flow")
	if s := describeFlow(t, direct, sub.ID); s.Ended != 8 || s.NotOK != 0 {
		t.Fatalf("at the end: %+v; want 8 ended, none otherwise", s)
	}
	requireOneAttempt(t, direct, ids)
}

// TestFlowRestartCrashKeepsFlow: with appendfsync always, a flow
// submitted and a member completion acknowledged before a SIGKILL are
// there after the restart: the flow (a SubmitFlow of the same spec says
// Existed, same ids), the completed upstream, its dependants released
// (waiting) and the fan-in still waiting; then every member runs once and
// AwaitFlow returns completed.
func TestFlowRestartCrashKeepsFlow(t *testing.T) {
	srv := flowRestartServer(t)
	b := flowRestartConnect(t, srv.Addr(), valkeybackend.Options{})
	ctx := context.Background()
	spec := sdk.FlowSpec{ID: sdk.NewFlowID(3), Members: []sdk.FlowMember{flowMember("a"), flowMember("b"), flowMember("c"), flowMember("d")},
		Edges: []sdk.FlowEdge{{From: "a", To: "b"}, {From: "a", To: "c"}, {From: "b", To: "d"}, {From: "c", To: "d"}}}
	sub, err := b.SubmitFlow(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	ids := sub.Members
	completeMember(t, b, ids["a"])
	crashFor(t, srv, 200*time.Millisecond)
	var again sdk.FlowSubmission
	if err := retrying(t, "SubmitFlow after the restart", func() (err error) {
		again, err = b.SubmitFlow(ctx, spec)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !again.Existed || again.FlowState != sdk.FlowOpen || again.Members["d"] != ids["d"] {
		t.Fatalf("SubmitFlow after the restart = %+v; want the same flow, Existed, open", again)
	}
	requireStates(t, b, ids, map[string]sdk.PublicState{"a": sdk.StateCompleted, "b": sdk.StateWaiting,
		"c": sdk.StateWaiting, "d": sdk.StateWaitingChildren}, "after the restart")
	if s := describeFlow(t, b, sub.ID); s.State != sdk.FlowOpen || s.Ended != 1 || s.Nodes != 4 || s.Edges != 4 {
		t.Fatalf("after the restart: %+v; want open, 4 members, 4 edges, 1 ended", s)
	}
	awaitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	done := awaitFlowAsync(awaitCtx, b, sub.ID)
	completeMember(t, b, ids["b"])
	requireStates(t, b, ids, map[string]sdk.PublicState{"d": sdk.StateWaitingChildren}, "after b only")
	completeMember(t, b, ids["c"])
	requireStates(t, b, ids, map[string]sdk.PublicState{"d": sdk.StateWaiting}, "after b and c")
	completeMember(t, b, ids["d"])
	requireAwait(t, done, sdk.FlowCompleted, "after the restart")
	requireOneAttempt(t, b, ids)
}

// TestFlowRestartAwaitFlowAcrossRestart: AwaitFlow returns the flow's
// outcome, or its context's error (sdk.Flower). A waiter started before
// a crash of 3s (the outage range the README's outage tests use), and one
// that starts while the server is down, both return completed once the
// last member completes after the restart.
func TestFlowRestartAwaitFlowAcrossRestart(t *testing.T) {
	srv := flowRestartServer(t)
	b := flowRestartConnect(t, srv.Addr(), valkeybackend.Options{})
	waiter := flowRestartConnect(t, srv.Addr(), valkeybackend.Options{})
	ctx := context.Background()
	sub, err := b.SubmitFlow(ctx, sdk.FlowSpec{ID: sdk.NewFlowID(0), Members: []sdk.FlowMember{flowMember("a"), flowMember("b")},
		Edges: []sdk.FlowEdge{{From: "a", To: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	completeMember(t, b, sub.Members["a"])
	awaitCtx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	before := awaitFlowAsync(awaitCtx, waiter, sub.ID)
	time.Sleep(100 * time.Millisecond) // let it read the outcome (none yet) and wait
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	during := awaitFlowAsync(awaitCtx, waiter, sub.ID)
	time.Sleep(3 * time.Second)
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	if err := srv.Restart(rctx); err != nil {
		t.Fatal(err)
	}
	completeMember(t, b, sub.Members["b"])
	requireAwait(t, before, sdk.FlowCompleted, "AwaitFlow started before the crash")
	requireAwait(t, during, sdk.FlowCompleted, "AwaitFlow started while the server was down")
}

// TestFlowRestartCancelReplyLost: CancelFlow with wait returns once every
// member the first call left in the backlog is cancelled (Pending 0;
// sdk.Client.CancelFlow). Its call whose reply is lost (ff_flow_cancel
// ran: the flow is cancelled, 100 members cancelled inline, 50 in the
// backlog) is retried by the caller: the retry is idempotent (no second
// cancel, the flow stays cancelled with its first reason) and, with wait,
// must still leave no member live and no backlog when it returns.
func TestFlowRestartCancelReplyLost(t *testing.T) {
	direct, p := cutSetup(t)
	b := viaProxy(t, p)
	client := sdk.NewClient(b)
	ctx := context.Background()
	const n = 150
	ms := make([]sdk.FlowMember, n)
	for i := range ms {
		ms[i] = flowMember(fmt.Sprintf("m%d", i))
	}
	sub, err := direct.SubmitFlow(ctx, sdk.FlowSpec{ID: sdk.NewFlowID(1), Members: ms})
	if err != nil {
		t.Fatal(err)
	}
	args := sdk.CancelFlowArgs{Flow: sub.ID, Policy: sdk.CancelAll, Reason: "first"}
	replyLost(t, p, "ff_flow_cancel", func() error { _, err := client.CancelFlow(ctx, args, true); return err })
	if s := describeFlow(t, direct, sub.ID); s.State != sdk.FlowCancelled || s.PendingCancels != n-100 {
		t.Fatalf("after the lost reply: %+v; want cancelled with %d members in the backlog", s, n-100)
	}
	args.Reason = "retry"
	h, err := client.CancelFlow(ctx, args, true)
	if err != nil {
		t.Fatalf("CancelFlow retried: %v", err)
	}
	if h.State != sdk.FlowCancelled || h.Pending != 0 {
		t.Fatalf("CancelFlow retried = %+v; want cancelled, Pending 0", h)
	}
	s := describeFlow(t, direct, sub.ID)
	live := 0
	for _, id := range s.Members {
		if st, err := direct.ReadExecutionState(ctx, id); err != nil || !st.Terminal() {
			live++
		}
	}
	if s.State != sdk.FlowCancelled || s.CancelReason != "first" || s.PendingCancels != 0 || s.Ended != n || live != 0 {
		t.Fatalf("after CancelFlow(wait) retried returned: state %s reason %q, %d pending cancels, %d ended, %d members live; "+
			"want cancelled (first), 0 pending, %d ended, none live", s.State, s.CancelReason, s.PendingCancels, s.Ended, live, n)
	}
}

// TestFlowRestartCancelBacklogSurvivesCrash: a cancel acknowledged before
// a crash stays (the flow cancelled, its inline cancels cancelled), a
// retried CancelFlow says already terminal, and the backlog it left is
// still on the partition's index after the restart: the flow scanner's
// pass (ReconcileFlows) drains it, each member cancelled once.
func TestFlowRestartCancelBacklogSurvivesCrash(t *testing.T) {
	srv := flowRestartServer(t)
	b := flowRestartConnect(t, srv.Addr(), valkeybackend.Options{})
	ctx := context.Background()
	const n = 130
	ms := make([]sdk.FlowMember, n)
	for i := range ms {
		ms[i] = flowMember(fmt.Sprintf("m%d", i))
	}
	sub, err := b.SubmitFlow(ctx, sdk.FlowSpec{ID: sdk.NewFlowID(2), Members: ms})
	if err != nil {
		t.Fatal(err)
	}
	awaitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h, err := sdk.NewClient(b).CancelFlow(ctx, sdk.CancelFlowArgs{Flow: sub.ID, Reason: "stop"}, false)
	if err != nil || h.State != sdk.FlowCancelled || h.Cancelled != 100 || h.Pending != n-100 {
		t.Fatalf("CancelFlow = %+v, %v; want 100 cancelled, %d pending", h, err, n-100)
	}
	crashFor(t, srv, 200*time.Millisecond)
	var again sdk.CancelFlowHeader
	if err := retrying(t, "CancelFlow after the restart", func() (err error) {
		again, err = b.CancelFlowHeader(ctx, sdk.CancelFlowArgs{Flow: sub.ID, Reason: "again"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !again.AlreadyTerminal || again.State != sdk.FlowCancelled {
		t.Fatalf("CancelFlow after the restart = %+v; want already terminal, cancelled", again)
	}
	if s := describeFlow(t, b, sub.ID); s.PendingCancels != n-100 || s.Ended != 100 || s.CancelReason != "stop" {
		t.Fatalf("after the restart: %+v; want %d pending cancels, 100 ended, reason stop", s, n-100)
	}
	settled, cancelled, err := b.ReconcileFlows(ctx, 2, 0, 100)
	if err != nil || cancelled != n-100 || settled != 0 {
		t.Fatalf("ReconcileFlows = %d settled, %d cancelled, %v; want 0, %d", settled, cancelled, err, n-100)
	}
	if s := describeFlow(t, b, sub.ID); s.PendingCancels != 0 || s.Ended != n || s.State != sdk.FlowCancelled {
		t.Fatalf("after the scanner's pass: %+v; want none pending, %d ended", s, n)
	}
	if _, cancelled, err := b.ReconcileFlows(ctx, 2, 0, 100); err != nil || cancelled != 0 {
		t.Fatalf("a second pass cancelled %d (%v); want 0", cancelled, err)
	}
	if st, err := b.AwaitFlow(awaitCtx, sub.ID); err != nil || st != sdk.FlowCancelled {
		t.Fatalf("AwaitFlow = %s, %v; want cancelled", st, err)
	}
}

// TestFlowFailoverKeepsAcknowledgedFlow: with WaitReplicas 1 (two
// replicas), a SubmitFlow and a member's completion that returned are on a
// replica; after the
// primary is SIGKILLed and the Sentinel promotes the replica, the flow is
// there (a SubmitFlow of the same spec: Existed, same ids), the completed
// member stays completed, its dependant is released once, and an
// AwaitFlow started before the kill returns completed.
func TestFlowFailoverKeepsAcknowledgedFlow(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r := valkeytest.NewReplicated(t, valkeytest.ReplicatedOptions{Replicas: 2}) // one left to acknowledge after the failover
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{r.SentinelAddr()}, Partitions: 4,
		WaitReplicas: 1, WaitTimeout: 5 * time.Second,
		ConfigureClient: func(co *valkey.ClientOption) { co.Sentinel = valkey.SentinelOption{MasterSet: r.MasterName()} }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	spec := sdk.FlowSpec{ID: sdk.NewFlowID(1), Members: []sdk.FlowMember{flowMember("a"), flowMember("b"), flowMember("c")},
		Edges: []sdk.FlowEdge{{From: "a", To: "b"}, {From: "b", To: "c"}}}
	sub, err := b.SubmitFlow(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	ids := sub.Members
	completeMember(t, b, ids["a"])
	done := awaitFlowAsync(ctx, b, sub.ID)
	if _, err := r.KillPrimary(ctx); err != nil {
		t.Fatal(err)
	}
	var again sdk.FlowSubmission
	if err := retrying(t, "SubmitFlow after the failover", func() (err error) {
		again, err = b.SubmitFlow(ctx, spec)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !again.Existed || again.FlowState != sdk.FlowOpen || again.Members["c"] != ids["c"] {
		t.Fatalf("SubmitFlow after the failover = %+v; want the same flow, Existed, open", again)
	}
	requireStates(t, b, ids, map[string]sdk.PublicState{"a": sdk.StateCompleted, "b": sdk.StateWaiting,
		"c": sdk.StateWaitingChildren}, "after the failover")
	completeMember(t, b, ids["b"])
	completeMember(t, b, ids["c"])
	requireAwait(t, done, sdk.FlowCompleted, "AwaitFlow started before the failover")
	if s := describeFlow(t, b, sub.ID); s.Ended != 3 || s.NotOK != 0 || s.State != sdk.FlowCompleted {
		t.Fatalf("after the failover: %+v; want completed, 3 ended", s)
	}
	requireOneAttempt(t, b, ids)
}

// TestFlowRestartAwaitFlowConnectionCut: an AwaitFlow waiting through the
// client-side cache (the server's invalidation of the outcome key wakes
// it) whose connections are all cut: the tracking that would have pushed
// the invalidation is gone with them, yet it returns completed once the
// last member completes (a lost connection wakes every waiter to read
// again, on a new connection).
func TestFlowRestartAwaitFlowConnectionCut(t *testing.T) {
	direct, p := cutSetup(t)
	waiter := flowRestartConnect(t, p.addr(), valkeybackend.Options{}) // client-side caching on
	ctx := context.Background()
	sub, err := direct.SubmitFlow(ctx, sdk.FlowSpec{ID: sdk.NewFlowID(3), Members: []sdk.FlowMember{flowMember("a"), flowMember("b")},
		Edges: []sdk.FlowEdge{{From: "a", To: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	awaitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	done := awaitFlowAsync(awaitCtx, waiter, sub.ID)
	completeMember(t, direct, sub.Members["a"])
	time.Sleep(100 * time.Millisecond) // let it read the outcome (none yet) and wait
	if n := p.cutAll(); n == 0 {
		t.Fatal("no connection through the proxy to cut")
	}
	completeMember(t, direct, sub.Members["b"])
	requireAwait(t, done, sdk.FlowCompleted, "AwaitFlow whose connections were cut")
}

// TestFlowRestartInlineHandoffReplyLost: a member's completion that
// offers its slot takes the ready child on that offer and returns the
// child's hand-off in its reply (CompleteOutcome.Handoffs). When that
// reply is lost, the completion's retry meets its own landed completion
// and hands nothing out again; the child, active on a lease nobody holds,
// is requeued once that lease expires (ff_reclaim_expired, the lease
// scanner's call), as the README says, and runs once; the flow completes.
func TestFlowRestartInlineHandoffReplyLost(t *testing.T) {
	direct, p := cutSetup(t)
	b := viaProxy(t, p)
	ctx := context.Background()
	sub, err := direct.SubmitFlow(ctx, sdk.FlowSpec{ID: sdk.NewFlowID(0), Members: []sdk.FlowMember{flowMember("a"), flowMember("b")},
		Edges: []sdk.FlowEdge{{From: "a", To: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	a, child := sub.Members["a"], sub.Members["b"]
	inbox := make(chan sdk.ClaimedTask, 4)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := b.WatchHandoffs(wctx, "w-inline", func(ct sdk.ClaimedTask) { inbox <- ct }); err != nil {
		t.Fatal(err)
	}
	c := claimMember(t, b, a, time.Minute)
	offer := &sdk.OfferArgs{Lane: flowRestartLane, WorkerID: "w", WorkerInstanceID: "w-inline", LeaseTTL: 300 * time.Millisecond,
		TTL: time.Minute, LeaseIDs: []string{sdk.NewToken()}}
	item := []sdk.CompleteItem{{Handle: c.Handle, Result: []byte("r"), Offer: offer}}
	replyLost(t, p, "ff_complete_batch", func() error { return b.CompleteBatch(ctx, item)[0].Err })
	if st, err := direct.ReadExecutionState(ctx, child); err != nil || st != sdk.StateActive {
		t.Fatalf("child after the lost reply: %s, %v; want active (handed to the completion's offer)", st, err)
	}
	out := b.CompleteBatch(ctx, item)
	if d, ok := notActive(out[0].Err); !ok || d.Epoch != c.Handle.Epoch || d.State != sdk.StateCompleted || len(out[0].Handoffs) != 0 {
		t.Fatalf("completion retried: %v, hand-offs %d; want execution_not_active of its own completion, none", out[0].Err, len(out[0].Handoffs))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		counts, err := direct.ReclaimExpired(ctx, []sdk.ExecutionID{child}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := direct.ReadExecutionState(ctx, child); st == sdk.StateWaiting {
			t.Logf("reclaim: %v", counts)
			break
		}
		if time.Now().After(deadline) {
			st, _ := direct.ReadExecutionState(ctx, child)
			t.Fatalf("child still %s 10s after its 300ms hand-off lease (last reclaim %v); want requeued", st, counts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if info, err := direct.ReadExecutionInfo(ctx, child); err != nil || info == nil || info.Fields["retry_count"] != "0" {
		t.Fatalf("child after the reclaim: %v, %v; want no retry consumed (retry_count 0)", info, err)
	}
	completeMember(t, direct, child)
	notClaimable(t, direct, child, "after its completion")
	if st, err := direct.AwaitFlow(ctx, sub.ID); err != nil || st != sdk.FlowCompleted {
		t.Fatalf("AwaitFlow = %s, %v; want completed", st, err)
	}
	if s := describeFlow(t, direct, sub.ID); s.Ended != 2 || s.NotOK != 0 {
		t.Fatalf("flow: %+v; want 2 ended", s)
	}
	select {
	case h := <-inbox:
		t.Fatalf("the child also came through the inbox (%s): it would run twice", h.Handle.ExecutionID)
	default:
	}
}

// requireOneAttempt fails t unless every member in ids ran exactly one
// attempt (no retry, no second run).
func requireOneAttempt(t *testing.T, b *valkeybackend.Backend, ids map[string]sdk.ExecutionID) {
	t.Helper()
	for name, id := range ids {
		if n, err := b.ReadTotalAttemptCount(context.Background(), id); err != nil || n != 1 {
			t.Fatalf("%s: %d attempts (%v), want 1", name, n, err)
		}
	}
}

// cutSetup starts an empty server and returns a backend connected to it
// directly and a cutProxy in front of it (viaProxy connects through it).
func cutSetup(t *testing.T) (*valkeybackend.Backend, *cutProxy) {
	t.Helper()
	srv := valkeytest.NewServer(t)
	flushAll(t, []string{srv.Addr()})
	return flowRestartConnect(t, srv.Addr(), valkeybackend.Options{}), newCutProxy(t, srv.Addr())
}
