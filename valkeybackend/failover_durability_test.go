package valkeybackend_test

import (
	"context"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestFailoverLosesUnreplicatedCompletion: a completion the primary
// acknowledged but had not sent to its replicas when it died. The replicas replicate through a
// proxy the test holds (a stalled network), so the kill lands in that
// window every time instead of by chance. Without Options.WaitReplicas,
// Complete returns nil and after the Sentinel's failover the execution is
// active again under the same lease: the acknowledged completion is gone
// and the execution would run again once its lease lapses. With
// WaitReplicas 1, Complete reports the unconfirmed write as
// not_replicated (an unknown outcome); its retry with the same handle
// after the failover completes the execution, once.
func TestFailoverLosesUnreplicatedCompletion(t *testing.T) {
	for _, tc := range []struct {
		name string
		wait int
	}{{"without WAIT", 0}, {"WaitReplicas 1", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			r := valkeytest.NewReplicated(t, valkeytest.ReplicatedOptions{Replicas: 2, HoldableLinks: true})
			b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{r.SentinelAddr()}, Partitions: 4,
				WaitReplicas: tc.wait, WaitTimeout: 300 * time.Millisecond,
				ConfigureClient: func(co *valkey.ClientOption) { co.Sentinel = valkey.SentinelOption{MasterSet: r.MasterName()} }})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "durable", Kind: "k", LeaseHistory: true})
			if err != nil {
				t.Fatal(err)
			}
			c, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: res.ID, Lane: "durable", WorkerID: "w",
				WorkerInstanceID: "w-1"}, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			// The create and the claim reached the replicas; the completion will not.
			raw := b.Client()
			if n, err := raw.Do(ctx, raw.B().Wait().Numreplicas(2).Timeout(5000).Build()).AsInt64(); err != nil || n != 2 {
				t.Fatalf("WAIT 2 before the hold: %d, %v", n, err)
			}
			r.HoldReplication()
			completeErr := b.Complete(ctx, c.Handle, []byte("ok"))
			if s, err := b.ReadExecutionState(ctx, res.ID); err != nil || s != sdk.StateCompleted {
				t.Fatalf("on the primary before the kill: %s, %v; want completed", s, err)
			}
			start := time.Now()
			old, err := r.Primary(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := old.Kill(); err != nil {
				t.Fatal(err)
			}
			r.CutReplication()
			if _, err := r.WaitFailover(ctx, old); err != nil {
				t.Fatal(err)
			}
			t.Logf("Complete before the kill: %v; failover took %v", completeErr, time.Since(start).Round(time.Millisecond))
			var state sdk.PublicState
			for { // the client follows the Sentinel to the new primary
				if state, err = b.ReadExecutionState(ctx, res.ID); err == nil || ctx.Err() != nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wait == 0 {
				if completeErr != nil {
					t.Fatalf("Complete without WAIT: %v, want nil (acknowledged)", completeErr)
				}
				if state != sdk.StateActive {
					t.Fatalf("after the failover: %s; want active (the acknowledged completion lost)", state)
				}
				t.Logf("an acknowledged completion was lost: the execution is %s again on the new primary", state)
				return
			}
			if sdk.CodeOf(completeErr) != sdk.CodeNotReplicated {
				t.Fatalf("Complete with WaitReplicas 1 and no replica reachable: %v, want not_replicated", completeErr)
			}
			if state != sdk.StateActive {
				t.Fatalf("after the failover: %s; want active (the unconfirmed completion lost)", state)
			}
			var retryErr error
			for try := 0; try < 50; try++ { // the other replica is joining the new primary
				if retryErr = b.Complete(ctx, c.Handle, []byte("ok")); retryErr == nil || !sdk.Retryable(retryErr) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if retryErr != nil {
				t.Fatalf("Complete retried after the failover: %v", retryErr)
			}
			if s, err := b.ReadExecutionState(ctx, res.ID); err != nil || s != sdk.StateCompleted {
				t.Fatalf("after the retry: %s, %v; want completed", s, err)
			}
		})
	}
}
