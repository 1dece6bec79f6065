package valkeybackend_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// TestListExecutionsEveryStateOnce: ListExecutions pages every execution of
// a partition exactly once, in id order, whatever state it is in (waiting,
// delayed, active, blocked, completed, failed, cancelled), and does so
// while executions move between states under it.
func TestListExecutionsEveryStateOnce(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			b := freshBackend(t, topo.addrs(t), valkeybackend.Options{})
			lanes := []sdk.LaneID{"list-a", "list-b"}
			var all []sdk.ExecutionID
			create := func(lane sdk.LaneID, delay time.Duration) sdk.ExecutionID {
				a := sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}
				if delay > 0 {
					a.DelayUntil = time.Now().Add(delay)
				}
				r, err := b.CreateExecution(ctx, a)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, r.ID)
				return r.ID
			}
			for range 30 {
				create(lanes[0], 0)
				create(lanes[1], 0)
			}
			for range 5 {
				create(lanes[0], time.Hour)
			}
			claim := func(lane sdk.LaneID) sdk.Handle {
				c, err := b.Claim(ctx, sdk.ClaimArgs{Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1", LeaseTTL: time.Minute})
				if err != nil || c == nil {
					t.Fatalf("claim: %v, %v", c, err)
				}
				return c.Handle
			}
			for range 5 {
				claim(lanes[0]) // stays active
				if err := b.Complete(ctx, claim(lanes[0]), nil); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Fail(ctx, claim(lanes[0]), "boom", "handler_error"); err != nil {
					t.Fatal(err)
				}
			}
			h := claim(lanes[0])
			if err := b.Delay(ctx, h, time.Now()); err != nil { // back to waiting, then blocked
				t.Fatal(err)
			}
			if out, err := b.BlockRoute(ctx, sdk.BlockRouteArgs{ExecutionID: h.ExecutionID, Lane: lanes[0]}); err != nil || !out.Blocked {
				t.Fatalf("block: %v, %v", out, err)
			}
			if _, err := b.CancelExecution(ctx, sdk.CancelExecutionArgs{ExecutionID: all[1], Reason: "r"}); err != nil {
				t.Fatal(err)
			}

			states := map[sdk.PublicState]int{}
			for _, id := range all {
				s, err := b.DescribeExecution(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				st := s.State
				if s.BlockedReason != "" {
					st = "blocked"
				}
				states[st]++
			}
			for _, st := range []sdk.PublicState{sdk.StateWaiting, sdk.StateDelayed, sdk.StateActive, "blocked",
				sdk.StateCompleted, sdk.StateFailed, sdk.StateCancelled} {
				if states[st] == 0 {
					t.Fatalf("no execution %s to list: %v", st, states)
				}
			}
			requireListedOnce(t, b, all)

			// Lane b's executions move (claimed, completed) while pages are read.
			var wg sync.WaitGroup
			stop := make(chan struct{})
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := b.Claim(ctx, sdk.ClaimArgs{Lane: lanes[1], WorkerID: "w", WorkerInstanceID: "w-2", LeaseTTL: time.Minute})
					if err != nil || c == nil {
						return
					}
					if err := b.Complete(ctx, c.Handle, nil); err != nil {
						t.Error(err)
						return
					}
				}
			})
			for range 5 {
				requireListedOnce(t, b, all)
			}
			close(stop)
			wg.Wait()
		})
	}
}

// requireListedOnce pages every partition three ids at a time and requires
// want, each exactly once, in id order within its partition.
func requireListedOnce(t *testing.T, b *valkeybackend.Backend, want []sdk.ExecutionID) {
	t.Helper()
	ctx := context.Background()
	seen := map[sdk.ExecutionID]int{}
	for p := range b.Partitions() {
		var cursor sdk.ExecutionID
		var last sdk.ExecutionID
		for {
			page, err := b.ListExecutions(ctx, p, cursor, 3)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range page.IDs {
				if last != "" && id <= last {
					t.Fatalf("partition %d: %s listed after %s", p, id, last)
				}
				last = id
				seen[id]++
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
	}
	for _, id := range want {
		if seen[id] != 1 {
			t.Fatalf("%s listed %d times, want once", id, seen[id])
		}
	}
	if len(seen) != len(want) {
		extra := []sdk.ExecutionID{}
		for id := range seen {
			if !slices.Contains(want, id) {
				extra = append(extra, id)
			}
		}
		t.Fatalf("listed %d executions, want %d (extra: %v)", len(seen), len(want), extra)
	}
}
