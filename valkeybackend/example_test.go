package valkeybackend_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// The direct path by hand: create an execution, scan its lane's partition,
// grant and claim it in one round trip, complete it, read the result.
func Example() {
	ctx := context.Background()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Partitions: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	created, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{
		Lane: "emails", Kind: "send_welcome", Payload: []byte(`{"to":"ada@example.com"}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	p, _ := created.ID.Partition()
	heads, _ := b.ScanEligibleExecutions(ctx, sdk.ScanEligibleArgs{Lane: "emails", Partition: p})
	task, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{
		ExecutionID: heads[0], Lane: "emails", WorkerID: "mailer", WorkerInstanceID: "mailer-1",
	}, 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(task.Context.Kind, string(task.Context.Payload), task.AttemptType)

	if err := b.Complete(ctx, task.Handle, []byte("sent")); err != nil {
		log.Fatal(err)
	}
	state, _ := b.ReadExecutionState(ctx, created.ID)
	result, _ := b.GetExecutionResult(ctx, created.ID)
	fmt.Println(state, string(result))

	// A second complete with the same handle is recognisably a replay.
	err = b.Complete(ctx, task.Handle, nil)
	var e *sdk.Error
	if errors.As(err, &e) {
		d, _ := e.NotActive()
		fmt.Println(e.Code, d.State)
	}
	// Output:
	// send_welcome {"to":"ada@example.com"} initial
	// completed sent
	// execution_not_active completed
}

// Two deployments on one server, each under its own namespace: the same
// lane in each holds only that deployment's work.
func ExampleOptions_namespace() {
	ctx := context.Background()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	billing, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Namespace: "billing", Partitions: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer billing.Close()
	search, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Namespace: "search", Partitions: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer search.Close()

	if _, err := billing.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "jobs", Kind: "invoice"}); err != nil {
		log.Fatal(err)
	}
	inSearch, _ := search.ScanEligibleExecutions(ctx, sdk.ScanEligibleArgs{Lane: "jobs", Partition: 0})
	inBilling, _ := billing.ScanEligibleExecutions(ctx, sdk.ScanEligibleArgs{Lane: "jobs", Partition: 0})
	fmt.Println(len(inSearch), len(inBilling))
	fmt.Println(billing.LaneIndexKeys(0, "jobs").Eligible, search.FunctionName("ff_create"))

	_, err = valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Namespace: "Not:OK"})
	fmt.Println(sdk.CodeOf(err))
	// Output:
	// 0 1
	// billing:i:{p:0}:jobs:eligible search_create
	// invalid_input
}
