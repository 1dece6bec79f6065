package sdk_test

import (
	"context"
	"fmt"
	"log"
	"sort"
	"strings"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// A fan-out/fan-in DAG submitted in one call: "split" runs first, the two
// "part" members run once it completed, and "join" once both did, reading
// their results. Each member starts the moment its inputs are ready; the
// client waits for the flow's outcome without polling.
func ExampleClient_SubmitFlow() {
	ctx := context.Background()
	backend, done := exampleBackend(ctx)
	defer done()

	mux := sdk.NewMux()
	mux.HandleFunc("step", func(ctx context.Context, t *sdk.Task) error {
		ups, err := t.UpstreamResults(ctx)
		if err != nil {
			return err
		}
		var in []string
		for _, u := range ups {
			in = append(in, string(u.Result))
		}
		sort.Strings(in)
		return t.Complete(ctx, []byte(string(t.Payload)+"("+strings.Join(in, ",")+")"))
	})
	w, err := sdk.NewWorker(backend, sdk.WorkerConfig{WorkerID: "dag", Lanes: []sdk.LaneID{"dag"}})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = w.Run(runCtx, mux) }()

	step := func(name string) sdk.FlowMember {
		return sdk.FlowMember{Name: name, Args: sdk.CreateExecutionArgs{Lane: "dag", Kind: "step", Payload: []byte(name)}}
	}
	client := sdk.NewClient(backend)
	sub, err := client.SubmitFlow(ctx, sdk.FlowSpec{
		Members: []sdk.FlowMember{step("split"), step("a"), step("b"), step("join")},
		Edges: []sdk.FlowEdge{{From: "split", To: "a"}, {From: "split", To: "b"},
			{From: "a", To: "join"}, {From: "b", To: "join"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("join starts as", sub.States["join"])
	outcome, err := client.AwaitFlow(ctx, sub.ID)
	fmt.Println("flow:", outcome, err)
	result, err := backend.GetExecutionResult(ctx, sub.Members["join"])
	fmt.Println(string(result), err)
	// Output:
	// join starts as waiting_children
	// flow: completed <nil>
	// join(a(split()),b(split())) <nil>
}

// An operator pauses a lane: its work waits (running work finishes) until
// the policy is cleared, and caps the lane with a quota: no more than two
// of its executions run at once, and no more than 100 start per second.
func ExampleLanePolicy() {
	ctx := context.Background()
	backend, done := exampleBackend(ctx)
	defer done()

	if err := backend.SetLanePolicy(ctx, "exports", sdk.LanePolicy{Paused: true}); err != nil {
		log.Fatal(err)
	}
	p, _ := backend.LanePolicy(ctx, "exports")
	fmt.Println("paused:", p.Paused)

	if err := backend.CreateQuotaPolicy(ctx, sdk.QuotaPolicy{ID: "partner-api", Rate: 100, Window: 1e9, Concurrency: 2}); err != nil {
		log.Fatal(err)
	}
	if err := backend.SetLanePolicy(ctx, "exports", sdk.LanePolicy{Quota: "partner-api"}); err != nil {
		log.Fatal(err)
	}
	p, _ = backend.LanePolicy(ctx, "exports")
	fmt.Println("paused:", p.Paused, "quota:", p.Quota)
	// Output:
	// paused: true
	// paused: false quota: partner-api
}
