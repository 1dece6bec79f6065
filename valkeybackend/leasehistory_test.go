package valkeybackend_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// TestLeaseHistoryEngineEvents: the lease events the engine's own calls log
// (the conformance suite covers the holder's and the operator's): a lease
// the scanner finds expired, an attempt timeout, a retry, a delay; and a
// deadline that ends an active execution.
func TestLeaseHistoryEngineEvents(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b := freshBackend(t, topo.addrs(t), valkeybackend.Options{})
			const lane sdk.LaneID = "lease-history-engine"
			events := make(chan sdk.LeaseEvent, 64)
			sctx, stop := context.WithCancel(ctx)
			defer stop()
			go func() {
				_ = b.SubscribeLeaseHistory(sctx, sdk.LeaseHistoryFilter{}, "", func(ev sdk.LeaseEvent) error {
					events <- ev
					return nil
				})
			}()
			time.Sleep(200 * time.Millisecond)
			claim := func(args sdk.CreateExecutionArgs, ttl time.Duration) sdk.ClaimedTask {
				t.Helper()
				args.Lane, args.Kind, args.LeaseHistory = lane, "k", true
				r, err := b.CreateExecution(ctx, args)
				if err != nil {
					t.Fatal(err)
				}
				c, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1"}, ttl)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			expect := func(want ...string) {
				t.Helper()
				for _, w := range want {
					select {
					case ev := <-events:
						if got := fmt.Sprintf("%s %s", ev.Kind, ev.Reason); got != w {
							t.Fatalf("lease event %q of %s, want %q", got, ev.ExecutionID, w)
						}
					case <-time.After(3 * time.Second):
						t.Fatalf("no lease event, want %q", w)
					}
				}
			}
			// An expired lease, found by the scanner's action.
			c := claim(sdk.CreateExecutionArgs{}, 100*time.Millisecond)
			time.Sleep(150 * time.Millisecond)
			if _, err := b.ReclaimExpired(ctx, []sdk.ExecutionID{c.Handle.ExecutionID}, 0); err != nil {
				t.Fatal(err)
			}
			expect("acquired ", "expired lease expired")
			// An attempt timeout, then a retry by the holder's fail, then a delay.
			c = claim(sdk.CreateExecutionArgs{AttemptTimeout: 50 * time.Millisecond,
				Retry: sdk.RetryPolicy{MaxRetries: 3, Backoff: sdk.Backoff{Kind: sdk.BackoffFixed, Initial: time.Millisecond}}}, time.Minute)
			time.Sleep(80 * time.Millisecond)
			if _, err := b.Expire(ctx, []sdk.ExecutionID{c.Handle.ExecutionID}, valkeybackend.DueTimeouts); err != nil {
				t.Fatal(err)
			}
			expect("acquired ", "released attempt_timeout")
			c = claim(sdk.CreateExecutionArgs{Retry: sdk.RetryPolicy{MaxRetries: 1, Backoff: sdk.Backoff{Kind: sdk.BackoffFixed, Initial: time.Millisecond}}}, time.Minute)
			if _, err := b.Fail(ctx, c.Handle, "boom", "x"); err != nil {
				t.Fatal(err)
			}
			expect("acquired ", "released retry")
			c = claim(sdk.CreateExecutionArgs{}, time.Minute)
			if err := b.Delay(ctx, c.Handle, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			expect("acquired ", "released delayed")
			// A deadline that passes while the execution runs.
			c = claim(sdk.CreateExecutionArgs{Deadline: time.Now().Add(100 * time.Millisecond)}, time.Minute)
			time.Sleep(150 * time.Millisecond)
			if _, err := b.Expire(ctx, []sdk.ExecutionID{c.Handle.ExecutionID}, valkeybackend.DueDeadlines); err != nil {
				t.Fatal(err)
			}
			expect("acquired ", "released deadline")
			select {
			case ev := <-events:
				t.Fatalf("unexpected lease event %s %s", ev.Kind, ev.Reason)
			case <-time.After(200 * time.Millisecond):
			}
		})
	}
}
