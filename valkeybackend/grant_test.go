package valkeybackend_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// Workers of one deployment share a worker id: a grant must still belong to
// one instance, or B's pipelined claim would consume A's grant while B's own
// grant was refused, and the execution would be leased to nobody running it.
func TestGrantBelongsToOneInstance(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{})
	r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "g", Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	grant := func(inst sdk.WorkerInstanceID) sdk.IssueClaimGrantArgs {
		return sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: "g", WorkerID: "fleet", WorkerInstanceID: inst}
	}
	if _, err := b.IssueClaimGrant(ctx, grant("fleet-a")); err != nil {
		t.Fatal(err)
	}
	// B: its grant is refused and its claim must not take A's grant.
	if _, err := b.GrantAndClaim(ctx, grant("fleet-b"), 0); !errors.Is(err, sdk.ErrGrantAlreadyExists) {
		t.Fatalf("B's grant and claim: %v, want grant_already_exists", err)
	}
	_, err = b.ClaimExecution(ctx, sdk.ClaimExecutionArgs{ExecutionID: r.ID, Lane: "g", WorkerID: "fleet", WorkerInstanceID: "fleet-b"})
	if !errors.Is(err, sdk.ErrInvalidClaimGrant) {
		t.Fatalf("B's claim with A's grant: %v, want invalid_claim_grant", err)
	}
	if s, _ := b.ReadExecutionState(ctx, r.ID); s != sdk.StateWaiting {
		t.Fatalf("state %s after B's attempts, want waiting", s)
	}
	// A retrying its grant-and-claim (its first grant stands) gets the lease.
	task, err := b.GrantAndClaim(ctx, grant("fleet-a"), 0)
	if err != nil || task.Handle.WorkerInstanceID != "fleet-a" {
		t.Fatalf("A's retried grant and claim: %+v %v", task, err)
	}
}

// A handle carrying another lane (persisted and rebuilt wrongly) is refused
// before anything moves: its lane decides which indexes the call touches.
func TestHandleLaneMustMatch(t *testing.T) {
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "real", Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	task, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: "real", WorkerID: "w", WorkerInstanceID: "w-1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	wrong := task.Handle
	wrong.Lane = "other"
	before := keyspace(t, addrs)
	if err := b.Complete(ctx, wrong, nil); !errors.Is(err, sdk.ErrValidation) {
		t.Fatalf("complete with another lane: %v, want a validation error", err)
	}
	if _, err := b.Fail(ctx, wrong, "x", "y"); !errors.Is(err, sdk.ErrValidation) {
		t.Fatalf("fail with another lane: %v", err)
	}
	if err := b.Delay(ctx, wrong, time.Now().Add(time.Minute)); !errors.Is(err, sdk.ErrValidation) {
		t.Fatalf("delay with another lane: %v", err)
	}
	if err := b.Cancel(ctx, wrong, "x"); !errors.Is(err, sdk.ErrValidation) {
		t.Fatalf("cancel with another lane: %v", err)
	}
	after := keyspace(t, addrs)
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("key %s changed", k)
		}
	}
	if len(after) != len(before) {
		t.Fatalf("keyspace grew from %d to %d keys", len(before), len(after))
	}
	if err := b.Complete(ctx, task.Handle, nil); err != nil {
		t.Fatal(err)
	}
}
