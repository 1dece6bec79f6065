package sdk_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// TestFlowOutageAtCompletion: the README's outage promise ("a server
// restart ... never turns finished work into a failure") for flows run by
// a Worker. Four flows, each root -> m1..m4 -> {join (all_of), any
// (any_of), q3 (quorum 3)}, run with no retry allowed; the server (AOF,
// appendfsync always) is SIGKILLed the moment the 16 middle members'
// handlers complete, and restarted after the outage. Checks: every flow's
// AwaitFlow, started before the crash, returns completed; every member
// completed, no retry consumed, no handler failure, each explicit Complete
// landed once; each middle member's completion was counted once by each
// of its three dependants (dep_ok 4: an edge resolved twice would count
// 5, a lost one 3); every dependant's handler saw its upstreams completed
// as its policy needs; the flows' counts are 8 ended, none otherwise. The
// scanners run, as in a deployment: a claim or an inline hand-off whose
// reply died with the server is requeued when its hand-off lease (5s by
// default, longer than the outages here, so a hand-off that did reach the
// worker is renewed in time) lapses.
func TestFlowOutageAtCompletion(t *testing.T) {
	if testing.Short() {
		t.Skip("crashes a server")
	}
	for _, down := range []time.Duration{200 * time.Millisecond, time.Second} {
		t.Run(down.String(), func(t *testing.T) { testFlowOutageAtCompletion(t, down) })
	}
}

func testFlowOutageAtCompletion(t *testing.T, down time.Duration) {
	const flows, mids = 4, 4
	srv := outageServer(t)
	addrs := []string{srv.Addr()}
	client := e2eConnect(t, addrs)
	lane := e2eLane(t, "flowoutage")
	ctx := context.Background()
	if _, err := scanner.Start(t.Context(), e2eConnect(t, addrs), scanner.Config{LeaseExpiryInterval: 100 * time.Millisecond,
		OwnershipTTL: time.Second, LaneRefresh: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	c := &outageCompletions{ok: map[sdk.ExecutionID]int{}}
	var reached atomic.Int64
	gate := make(chan struct{})
	var mu sync.Mutex
	var upstreamErrs []error
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		if task.Kind != "root" {
			ups, err := task.UpstreamResults(ctx)
			if err != nil {
				return err
			}
			ok := 0
			for _, u := range ups {
				if u.State == sdk.StateCompleted {
					ok++
				}
			}
			need := map[string]int{"mid": 1, "join": mids, "any": 1, "q3": 3}[task.Kind]
			if ok < need {
				mu.Lock()
				upstreamErrs = append(upstreamErrs, fmt.Errorf("%s %s ran with %d of %d upstreams completed, its policy needs %d",
					task.Kind, task.ID, ok, len(ups), need))
				mu.Unlock()
			}
		}
		if task.Kind == "mid" {
			reached.Add(1)
			<-gate
		}
		err := task.Complete(ctx, []byte(task.Kind))
		c.record(task.ID, err)
		return err
	})
	w, stop := e2eRunWorker(t, e2eConnect(t, addrs), sdk.WorkerConfig{WorkerID: "flowoutage", Lanes: []sdk.LaneID{lane},
		MaxConcurrency: 32, LeaseTTL: 15 * time.Second}, h)

	sdkClient := sdk.NewClient(client)
	member := func(name, kind string) sdk.FlowMember {
		return sdk.FlowMember{Name: name, Args: sdk.CreateExecutionArgs{Lane: lane, Kind: kind}}
	}
	var subs []sdk.FlowSubmission
	var ids []sdk.ExecutionID
	for range flows {
		spec := sdk.FlowSpec{Members: []sdk.FlowMember{member("root", "root"), member("join", "join"), member("any", "any"), member("q3", "q3")}}
		spec.Members[2].Policy = sdk.DependencyPolicy{Kind: sdk.AnyOf}
		spec.Members[3].Policy = sdk.DependencyPolicy{Kind: sdk.Quorum, K: 3}
		for i := range mids {
			m := fmt.Sprintf("m%d", i)
			spec.Members = append(spec.Members, member(m, "mid"))
			spec.Edges = append(spec.Edges, sdk.FlowEdge{From: "root", To: m})
			for _, d := range []string{"join", "any", "q3"} {
				spec.Edges = append(spec.Edges, sdk.FlowEdge{From: m, To: d})
			}
		}
		sub, err := sdkClient.SubmitFlow(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
		for _, id := range sub.Members {
			ids = append(ids, id)
		}
	}
	awaitCtx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	outcomes := make(chan error, flows)
	for _, sub := range subs {
		go func() {
			st, err := sdkClient.AwaitFlow(awaitCtx, sub.ID)
			if err == nil && st != sdk.FlowCompleted {
				err = fmt.Errorf("flow %s ended %s", sub.ID, st)
			}
			outcomes <- err
		}()
	}
	e2eWaitFor(t, 20*time.Second, "every middle member's handler to start", func() bool { return reached.Load() == flows*mids })
	close(gate) // the middle members complete now, and the server dies as they do
	crash(t, srv, down)
	for range flows {
		select {
		case err := <-outcomes:
			if err != nil {
				t.Fatalf("AwaitFlow across the crash: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("AwaitFlow did not return within 30s of the restart")
		}
	}
	explicit := map[sdk.ExecutionID]bool{}
	for _, id := range ids {
		explicit[id] = true
	}
	requireAllCompletedOnce(t, client, ids, explicit, c, false, w)
	for _, sub := range subs {
		s, err := client.DescribeFlow(ctx, sub.ID)
		if err != nil || s.State != sdk.FlowCompleted || s.Ended != 4+mids || s.NotOK != 0 {
			t.Errorf("flow %s: %+v, %v; want completed, %d ended, none otherwise", sub.ID, s, err, 4+mids)
		}
		for _, d := range []string{"join", "any", "q3"} {
			info, err := client.ReadExecutionInfo(ctx, sub.Members[d])
			if err != nil || info == nil || info.Fields["dep_ok"] != fmt.Sprint(mids) || info.Fields["dep_bad"] != "" && info.Fields["dep_bad"] != "0" {
				t.Errorf("%s of flow %s: dep_ok %q dep_bad %q (%v); want each of its %d upstreams' completions counted once",
					d, sub.ID, info.Fields["dep_ok"], info.Fields["dep_bad"], err, mids)
			}
		}
	}
	mu.Lock()
	for _, err := range upstreamErrs {
		t.Error(err)
	}
	mu.Unlock()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
