package valkeybackend_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// Acknowledged writes and reads from a replica: a primary and one replica
// of it; the backend waits for the replica on every create and completion
// (WaitReplicas) and reads snapshots from it (ReadFromReplicas). With the
// replica gone, a create still lands on the primary but says it was not
// replicated.
func ExampleOptions_waitReplicas() {
	ctx := context.Background()
	primary, err := valkeytest.Start(ctx, valkeytest.Options{ExtraArgs: []string{"--repl-diskless-sync-delay", "0"}})
	if err != nil {
		log.Fatal(err)
	}
	defer primary.Close()
	host, port, _ := strings.Cut(primary.Addr(), ":")
	replica, err := valkeytest.Start(ctx, valkeytest.Options{ExtraArgs: []string{"--replicaof", host, port}})
	if err != nil {
		log.Fatal(err)
	}
	defer replica.Close()

	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{
		Addrs:        []string{primary.Addr()},
		WaitReplicas: 1, WaitTimeout: 2 * time.Second,
		ReadFromReplicas: true, ReplicaAddrs: []string{replica.Addr()},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	// The replica's first sync may still be running: the first create
	// waits for it, or reports not_replicated and is repeated (its
	// idempotency key finds the first).
	args := sdk.CreateExecutionArgs{Lane: "emails", Kind: "send_welcome", IdempotencyKey: "welcome-ada"}
	var created sdk.CreateExecutionResult
	for {
		if created, err = b.CreateExecution(ctx, args); sdk.CodeOf(err) != sdk.CodeNotReplicated {
			break
		}
	}
	if err != nil {
		log.Fatal(err)
	}
	task, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{
		ExecutionID: created.ID, Lane: "emails", WorkerID: "mailer", WorkerInstanceID: "mailer-1",
	}, time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Complete(ctx, task.Handle, nil); err != nil {
		log.Fatal(err)
	}
	snap, err := b.DescribeExecution(ctx, created.ID) // served by the replica, which has the completion
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(snap.State)

	// Without the replica, a create lands on the primary but is not
	// acknowledged: an unknown outcome, worth repeating.
	replica.Close()
	_, err = b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "emails", Kind: "send_welcome", IdempotencyKey: "welcome-bob"})
	fmt.Println(sdk.CodeOf(err), sdk.KindOf(err), sdk.Retryable(err))
	// Output:
	// completed
	// not_replicated timeout true
}
