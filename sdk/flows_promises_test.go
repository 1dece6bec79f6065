package sdk_test

// Tests of the flows feature's documented promises at the SDK level
// (Client and Task, with workers) that the existing tests leave
// unchecked. See valkeybackend/flows_promises_test.go for the backend's.

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// Promise (README Flows "Cancel": cancel_all "cancels every live member
// (running ones too: their holders are told at once)"): a handler running
// a member of a flow cancelled with cancel_all sees its context cancelled
// well before its next renewal (renewals 10 s apart, bound 3 s); the
// member is cancelled, so is a delayed one, and AwaitFlow returns
// cancelled.
func TestFlowPromiseCancelAllStopsRunningHandler(t *testing.T) {
	b := e2eConnect(t, []string{valkeytest.NewServer(t).Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lane := e2eLane(t, "flowcancel")
	started := make(chan sdk.ExecutionID, 1)
	stopped := make(chan time.Time, 1)
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		started <- task.ID
		<-ctx.Done()
		stopped <- time.Now()
		return ctx.Err()
	})
	e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "fp", Lanes: []sdk.LaneID{lane}, LeaseTTL: 30 * time.Second,
		RenewEvery: 10 * time.Second}, h)
	client := sdk.NewClient(b)
	sub, err := client.SubmitFlow(ctx, sdk.FlowSpec{Members: []sdk.FlowMember{
		{Name: "a", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "block"}},
		{Name: "b", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "block", DelayUntil: time.Now().Add(time.Hour)}}}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-started:
		if id != sub.Members["a"] {
			t.Fatalf("the handler started %s, want a %s", id, sub.Members["a"])
		}
	case <-ctx.Done():
		t.Fatal("a never started")
	}
	at := time.Now()
	hdr, err := client.CancelFlow(ctx, sdk.CancelFlowArgs{Flow: sub.ID, Policy: sdk.CancelAll, Reason: "stop"}, true)
	if err != nil || hdr.Cancelled != 2 || hdr.Pending != 0 {
		t.Fatalf("CancelFlow = %+v, %v; want 2 cancelled", hdr, err)
	}
	select {
	case end := <-stopped:
		if d := end.Sub(at); d > 3*time.Second {
			t.Fatalf("the running handler was told after %v, want at once (well before the 10s renewal)", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the running handler of a member cancelled by cancel_all was not told within 5s")
	}
	states := e2eStates(t, b, []sdk.ExecutionID{sub.Members["a"], sub.Members["b"]})
	if states[sub.Members["a"]] != sdk.StateCancelled || states[sub.Members["b"]] != sdk.StateCancelled {
		t.Fatalf("member states %v, want both cancelled", states)
	}
	if st, err := client.AwaitFlow(ctx, sub.ID); err != nil || st != sdk.FlowCancelled {
		t.Fatalf("AwaitFlow = %s, %v; want cancelled", st, err)
	}
}

// Promise (Task.UpstreamResults "returns this member's dependencies with
// their states and, for the completed ones, their results"; AnyOf "one
// upstream completing runs the member"; FlowFailed "one or more not
// completed"): the handler of an any_of member whose one upstream failed
// and the other completed sees both, the failed one without a result;
// the flow ends failed.
func TestFlowPromiseHandlerSeesFailedUpstream(t *testing.T) {
	b := e2eConnect(t, []string{valkeytest.NewServer(t).Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lane := e2eLane(t, "flowups")
	var mu sync.Mutex
	var seen []sdk.UpstreamResult
	var bad sdk.ExecutionID
	failed := make(chan struct{})
	mux := sdk.NewMux()
	mux.HandleFunc("bad", func(ctx context.Context, task *sdk.Task) error {
		return errors.New("boom")
	})
	mux.HandleFunc("good", func(ctx context.Context, task *sdk.Task) error {
		select { // complete only once "bad" has failed, so "join" sees both
		case <-failed:
		case <-ctx.Done():
			return ctx.Err()
		}
		return task.Complete(ctx, []byte("good result"))
	})
	mux.HandleFunc("join", func(ctx context.Context, task *sdk.Task) error {
		ups, err := task.UpstreamResults(ctx)
		if err != nil {
			return err
		}
		mu.Lock()
		seen = ups
		mu.Unlock()
		return task.Complete(ctx, nil)
	})
	e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "fp", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 4}, mux)
	client := sdk.NewClient(b)
	sub, err := client.SubmitFlow(ctx, sdk.FlowSpec{Members: []sdk.FlowMember{
		{Name: "bad", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "bad"}},
		{Name: "good", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "good"}},
		{Name: "join", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "join"}, Policy: sdk.DependencyPolicy{Kind: sdk.AnyOf}}},
		Edges: []sdk.FlowEdge{{From: "bad", To: "join"}, {From: "good", To: "join"}}})
	if err != nil {
		t.Fatal(err)
	}
	bad = sub.Members["bad"]
	e2eWaitFor(t, 10*time.Second, "bad to fail", func() bool {
		st, err := b.ReadExecutionState(ctx, bad)
		return err == nil && st == sdk.StateFailed
	})
	close(failed)
	if st, err := client.AwaitFlow(ctx, sub.ID); err != nil || st != sdk.FlowFailed {
		t.Fatalf("AwaitFlow = %s, %v; want failed (one member failed)", st, err)
	}
	mu.Lock()
	defer mu.Unlock()
	got := map[sdk.ExecutionID]sdk.UpstreamResult{}
	for _, u := range seen {
		got[u.ID] = u
	}
	if len(seen) != 2 || got[bad].State != sdk.StateFailed || got[bad].Result != nil ||
		got[sub.Members["good"]].State != sdk.StateCompleted || string(got[sub.Members["good"]].Result) != "good result" {
		t.Fatalf("the join's UpstreamResults = %+v, want bad failed (no result) and good completed with its result", seen)
	}
}

// flowless hides every optional role of a backend (only sdk.EngineBackend).
type flowless struct{ sdk.EngineBackend }

// Promise (sdk/client_flows.go: "needs a backend with RoleFlows; without
// one every call returns an Unavailable error"): the Client's flow calls
// on a backend without flows are Unavailable, typed, and do not panic.
func TestFlowPromiseClientWithoutFlows(t *testing.T) {
	b := e2eConnect(t, []string{valkeytest.NewServer(t).Addr()})
	client := sdk.NewClient(flowless{b})
	ctx := context.Background()
	spec := sdk.FlowSpec{Members: []sdk.FlowMember{{Name: "a", Args: sdk.CreateExecutionArgs{Lane: "l", Kind: "k"}}}}
	_, err1 := client.SubmitFlow(ctx, spec)
	_, err2 := client.AwaitFlow(ctx, sdk.NewFlowID(0))
	_, err3 := client.CancelFlow(ctx, sdk.CancelFlowArgs{Flow: sdk.NewFlowID(0)}, true)
	for i, err := range []error{err1, err2, err3} {
		if !errors.Is(err, sdk.ErrUnavailable) || sdk.CodeOf(err) != sdk.CodeUnavailable {
			t.Fatalf("call %d on a backend without flows = %v, want unavailable", i, err)
		}
	}
}
