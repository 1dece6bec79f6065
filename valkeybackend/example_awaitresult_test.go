package valkeybackend_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// A caller waits for an execution's result without polling: AwaitResult
// sleeps until the server pushes the change of the execution's record,
// and returns the state and the result together.
func ExampleBackend_AwaitResult() {
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

	created, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "reports", Kind: "render"})
	if err != nil {
		log.Fatal(err)
	}
	task, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{
		ExecutionID: created.ID, Lane: "reports", WorkerID: "renderer", WorkerInstanceID: "renderer-1",
	}, 0)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond) // the work
		if err := b.Complete(ctx, task.Handle, []byte("report.pdf")); err != nil {
			log.Print(err)
		}
	}()

	state, result, err := b.AwaitResult(ctx, created.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(state, string(result))
	// Output: completed report.pdf
}
