package sdk_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// A handler waits for an approval without holding its lease: it suspends
// and hands the waitpoint's token to whoever approves; the approver's
// signal resumes the same attempt, on any worker, which reads it.
func ExampleTask_Suspend() {
	ctx := context.Background()
	backend, done := exampleBackend(ctx)
	defer done()
	// Once per deployment: the secret tokens are signed with.
	if _, err := backend.SeedWaitpointSecret(ctx, "k1", []byte("a-long-random-deployment-secret")); err != nil {
		log.Fatal(err)
	}

	approvals := make(chan string, 1) // stands in for an email or a ticket
	mux := sdk.NewMux()
	mux.HandleFunc("publish", func(ctx context.Context, t *sdk.Task) error {
		if t.AttemptType != sdk.AttemptResumed {
			out, err := t.Suspend(ctx, sdk.SuspendArgs{Reason: "needs approval",
				Condition: sdk.ResumeCondition{Names: []string{"approved", "rejected"}},
				Timeout:   24 * time.Hour, OnTimeout: sdk.TimeoutCancel})
			if err != nil {
				return err
			}
			approvals <- out.Waitpoints[0].Token
			return nil // the lease is released; the execution waits
		}
		s, err := t.Signals(ctx)
		if err != nil {
			return err
		}
		return t.Complete(ctx, []byte(s.Signals[0].Name+" by "+string(s.Signals[0].Payload)))
	})
	w, err := sdk.NewWorker(backend, sdk.WorkerConfig{WorkerID: "publisher", Lanes: []sdk.LaneID{"posts"}})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = w.Run(runCtx, mux) }()

	client := sdk.NewClient(backend)
	sub, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: "posts", Kind: "publish"})
	if err != nil {
		log.Fatal(err)
	}
	token := <-approvals
	state, _ := backend.ReadExecutionState(ctx, sub.ID)
	fmt.Println("while waiting:", state)
	r, err := client.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: token, Name: "approved", Payload: []byte("carol")})
	fmt.Println("signal:", r.Effect, err)
	result, err := client.WaitResult(ctx, sub.ID, 5*time.Millisecond)
	fmt.Println(string(result), err)
	// Output:
	// while waiting: suspended
	// signal: resumed <nil>
	// approved by carol <nil>
}
