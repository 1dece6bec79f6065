package valkeybackend_test

import (
	"context"
	"errors"
	"testing"

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
