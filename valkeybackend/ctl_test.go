package valkeybackend_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestLaneListingAndDepths: ListLaneExecutions lists a lane's executions
// in each state (rate_limited and waiting_children included) exactly
// once, pages across partitions, and LaneDepths counts the same;
// ListExecutions lists the waiting_children and rate_limited ones too.
func TestLaneListingAndDepths(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			b := freshBackend(t, topo.addrs(t), valkeybackend.Options{})
			const lane, other sdk.LaneID = "ctl-lane", "ctl-other"
			want := map[sdk.PublicState][]sdk.ExecutionID{}
			create := func(l sdk.LaneID, mod func(*sdk.CreateExecutionArgs)) sdk.ExecutionID {
				a := sdk.CreateExecutionArgs{Lane: l, Kind: "k"}
				if mod != nil {
					mod(&a)
				}
				r, err := b.CreateExecution(ctx, a)
				if err != nil {
					t.Fatal(err)
				}
				return r.ID
			}
			claim := func(id sdk.ExecutionID) sdk.Handle {
				g := sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1"}
				if _, err := b.IssueClaimGrant(ctx, g); err != nil {
					t.Fatal(err)
				}
				c, err := b.ClaimExecution(ctx, sdk.ClaimExecutionArgs{ExecutionID: id, Lane: lane, WorkerID: "w",
					WorkerInstanceID: "w-1", LeaseTTL: time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				return c.Handle
			}
			for range 5 {
				want[sdk.StateWaiting] = append(want[sdk.StateWaiting], create(lane, nil))
				create(other, nil)
			}
			want[sdk.StateDelayed] = []sdk.ExecutionID{create(lane, func(a *sdk.CreateExecutionArgs) { a.DelayUntil = time.Now().Add(time.Hour) })}
			parked := create(lane, nil)
			if ok, err := b.Park(ctx, parked, lane, time.Now().Add(time.Hour), "concurrency"); err != nil || !ok {
				t.Fatalf("park: %v %v", ok, err)
			}
			want[sdk.StateRateLimited] = []sdk.ExecutionID{parked}
			act := create(lane, nil)
			claim(act)
			want[sdk.StateActive] = []sdk.ExecutionID{act}
			fail := create(lane, nil)
			if _, err := b.Fail(ctx, claim(fail), "boom", "c"); err != nil {
				t.Fatal(err)
			}
			want[sdk.StateFailed] = []sdk.ExecutionID{fail}
			sub, err := b.SubmitFlow(ctx, sdk.FlowSpec{Members: []sdk.FlowMember{
				{Name: "a", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}},
				{Name: "b", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}}},
				Edges: []sdk.FlowEdge{{From: "a", To: "b"}}})
			if err != nil {
				t.Fatal(err)
			}
			want[sdk.StateWaiting] = append(want[sdk.StateWaiting], sub.Members["a"])
			want[sdk.StateWaitingChildren] = []sdk.ExecutionID{sub.Members["b"]}

			var all []sdk.ExecutionID
			for st, ids := range want {
				all = append(all, ids...)
				page, err := b.ListLaneExecutions(ctx, valkeybackend.ListLaneArgs{Lane: lane, State: st})
				if err != nil {
					t.Fatal(err)
				}
				var got []sdk.ExecutionID
				for _, r := range page.Executions {
					if r.State != st || r.Lane != lane || r.Kind != "k" {
						t.Errorf("%s: row %+v", st, r)
					}
					got = append(got, r.ID)
				}
				slices.Sort(got)
				exp := slices.Sorted(slices.Values(ids))
				if !slices.Equal(got, exp) || page.NextCursor != "" {
					t.Errorf("%s: %v (next %q), want %v", st, got, page.NextCursor, exp)
				}
			}
			// Pages of 3 over every state, in partition then id order.
			var seen []sdk.ExecutionID
			cursor := sdk.ExecutionID("")
			for range len(all) {
				page, err := b.ListLaneExecutions(ctx, valkeybackend.ListLaneArgs{Lane: lane, Cursor: cursor, Limit: 3})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range page.Executions {
					if len(seen) > 0 && !idBefore(seen[len(seen)-1], r.ID) {
						t.Fatalf("%s after %s", r.ID, seen[len(seen)-1])
					}
					seen = append(seen, r.ID)
				}
				if cursor = page.NextCursor; cursor == "" {
					break
				}
			}
			slices.Sort(seen)
			if exp := slices.Sorted(slices.Values(all)); !slices.Equal(seen, exp) {
				t.Fatalf("pages saw %v, want %v", seen, exp)
			}

			depths, err := b.LaneDepths(ctx, nil, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(depths) != 2 || depths[0].Lane != lane || depths[1].Lane != other {
				t.Fatalf("depths: %+v", depths)
			}
			for st, ids := range want {
				if depths[0].Counts[st] != len(ids) {
					t.Errorf("depth of %s: %d, want %d (%v)", st, depths[0].Counts[st], len(ids), depths[0].Counts)
				}
			}
			if depths[0].Ended != 1 || depths[1].Counts[sdk.StateWaiting] != 5 || len(depths[1].Counts) != 1 {
				t.Errorf("depths: %+v", depths)
			}

			// The partition listing has the waiting_children and rate_limited ones.
			for _, id := range []sdk.ExecutionID{sub.Members["b"], parked} {
				p, _ := id.Partition()
				pg, err := b.ListExecutions(ctx, p, "", 1000)
				if err != nil || !slices.Contains(pg.IDs, id) {
					t.Errorf("ListExecutions of partition %d lacks %s: %v", p, id, err)
				}
			}
		})
	}
}

// idBefore reports whether a lists before b: partition, then id.
func idBefore(a, b sdk.ExecutionID) bool {
	pa, _ := a.Partition()
	pb, _ := b.Partition()
	if pa != pb {
		return pa < pb
	}
	return a < b
}

func TestLaneListingRefusesBadInput(t *testing.T) {
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{Partitions: 4})
	ctx := context.Background()
	for _, a := range []valkeybackend.ListLaneArgs{{State: "bogus"}, {Limit: -1}, {Lane: "a b"},
		{Cursor: "nope"}, {Cursor: sdk.NewExecutionID(9)}} {
		if _, err := b.ListLaneExecutions(ctx, a); !errors.Is(err, sdk.ErrValidation) {
			t.Errorf("%+v: %v, want a validation error", a, err)
		}
	}
	if _, err := b.LaneDepths(ctx, []sdk.LaneID{"a,b"}, false); !errors.Is(err, sdk.ErrValidation) {
		t.Errorf("LaneDepths of a bad lane: %v", err)
	}
}

// An operator's view of a lane: its failed executions (the dead letters)
// and how many of its executions are in each state.
func ExampleBackend_ListLaneExecutions() {
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

	for range 2 {
		if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "emails", Kind: "send"}); err != nil {
			log.Fatal(err)
		}
	}
	c, err := b.Claim(ctx, sdk.ClaimArgs{Lane: "emails", WorkerID: "mailer", WorkerInstanceID: "mailer-1"})
	if err != nil || c == nil {
		log.Fatal(c, err)
	}
	if _, err := b.Fail(ctx, c.Handle, "smtp said no", "smtp"); err != nil { // no retries: it fails
		log.Fatal(err)
	}

	page, err := b.ListLaneExecutions(ctx, valkeybackend.ListLaneArgs{Lane: "emails", State: sdk.StateFailed})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range page.Executions {
		fmt.Println(r.ID == c.Handle.ExecutionID, r.State, r.FailureCategory, r.FailureReason)
	}
	depths, err := b.LaneDepths(ctx, []sdk.LaneID{"emails"}, true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(depths[0].Counts[sdk.StateWaiting], depths[0].Counts[sdk.StateFailed], depths[0].Ended)
	// Output:
	// true failed smtp smtp said no
	// 1 1 1
}
