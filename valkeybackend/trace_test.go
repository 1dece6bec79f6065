package valkeybackend_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

const testTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// A create's trace carrier is stored in the execution's context outside
// its tags and comes back on every claim path (fused, grant and claim,
// hand-off, batch create) and in ReadExecutionContext; a create without
// one stores nothing for it (its ctx hash holds kind, lane and payload
// only), so claims return nothing extra.
func TestTraceCarrier(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 2})
			raw := rawClient(t, addrs)
			const lane sdk.LaneID = "traced"
			id := sdk.NewExecutionID(0)
			if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: id, Lane: lane, Kind: "k",
				Payload: []byte("p"), Tags: map[string]string{"a": "b"}, TraceParent: testTraceParent}); err != nil {
				t.Fatal(err)
			}
			plain := sdk.NewExecutionID(0)
			if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: plain, Lane: lane, Kind: "k", Payload: []byte("p")}); err != nil {
				t.Fatal(err)
			}
			n, err := raw.Do(ctx, raw.B().Hlen().Key("ff:e:"+string(plain)+":ctx").Build()).AsInt64()
			if err != nil || n != 3 {
				t.Fatalf("plain ctx hash: %d fields (%v), want 3 (kind, lane, payload)", n, err)
			}
			c, err := b.ReadExecutionContext(ctx, id)
			if err != nil || c.TraceParent != testTraceParent || len(c.Tags) != 1 || c.Tags["a"] != "b" {
				t.Fatalf("read context: %+v %v", c, err)
			}
			got, err := b.ClaimFused(ctx, sdk.FusedClaimArgs{Lane: lane, Partition: 0, Max: 2, WorkerID: "w", WorkerInstanceID: "w-1"})
			if err != nil || len(got) != 2 {
				t.Fatalf("fused claim: %v %v", got, err)
			}
			for _, ct := range got {
				want := ""
				if ct.Handle.ExecutionID == id {
					want = testTraceParent
				}
				if ct.Context.TraceParent != want {
					t.Fatalf("fused claim of %s: trace parent %q, want %q", ct.Handle.ExecutionID, ct.Context.TraceParent, want)
				}
				if _, ok := ct.Context.Tags["tp"]; ok {
					t.Fatal("the carrier shows up as a tag")
				}
			}

			// Grant and claim (the direct path).
			id2 := sdk.NewExecutionID(1)
			if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: id2, Lane: lane, Kind: "k", TraceParent: testTraceParent}); err != nil {
				t.Fatal(err)
			}
			ct, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id2, Lane: lane, WorkerID: "w",
				WorkerInstanceID: "w-1"}, time.Minute)
			if err != nil || ct.Context.TraceParent != testTraceParent {
				t.Fatalf("grant and claim: %+v %v", ct, err)
			}

			// Batch create.
			ids := []sdk.ExecutionID{sdk.NewExecutionID(1), sdk.NewExecutionID(1)}
			if _, err := b.CreateExecutions(ctx, []sdk.CreateExecutionArgs{
				{ID: ids[0], Lane: lane, Kind: "k", TraceParent: testTraceParent},
				{ID: ids[1], Lane: lane, Kind: "k"}}); err != nil {
				t.Fatal(err)
			}
			for i, want := range []string{testTraceParent, ""} {
				c, err := b.ReadExecutionContext(ctx, ids[i])
				if err != nil || c.TraceParent != want {
					t.Fatalf("batch item %d: %+v %v, want carrier %q", i, c, err, want)
				}
			}

			// Hand-off: a create into an empty lane with an offer standing
			// (one offer reaches one partition's creates on a cluster:
			// TestHandoff covers that; the carrier rides the same message).
			if topo.name != "standalone" {
				return
			}
			const hlane sdk.LaneID = "traced-ho"
			inst := sdk.WorkerInstanceID("w-2")
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch := make(chan sdk.ClaimedTask, 1)
			if err := b.WatchHandoffs(wctx, inst, func(t sdk.ClaimedTask) { ch <- t }); err != nil {
				t.Fatal(err)
			}
			if _, err := b.OfferClaims(ctx, sdk.OfferArgs{Lane: hlane, LeaseIDs: []string{sdk.NewToken()}, WorkerID: "w",
				WorkerInstanceID: inst, LeaseTTL: 10 * time.Second, TTL: time.Minute}); err != nil {
				t.Fatal(err)
			}
			res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: hlane, Kind: "k", TraceParent: testTraceParent})
			if err != nil || res.State != sdk.StateActive {
				t.Fatalf("handed-off create: %+v %v", res, err)
			}
			select {
			case ct := <-ch:
				if ct.Context.TraceParent != testTraceParent {
					t.Fatalf("hand-off context: %+v", ct.Context)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no hand-off")
			}
		})
	}
}

// A malformed trace carrier is a validation error and writes nothing.
func TestTraceCarrierRefused(t *testing.T) {
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 2})
	raw := rawClient(t, addrs)
	for _, tp := range []string{strings.Repeat("0", sdk.MaxTraceParentBytes+1), "00-ab\n", "\x00", "é"} {
		_, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "l", Kind: "k", TraceParent: tp})
		if sdk.KindOf(err) != sdk.KindValidation || sdk.CodeOf(err) != sdk.CodeInvalidInput {
			t.Fatalf("carrier %q: got %v, want a validation error", tp, err)
		}
		_, err = b.CreateExecutions(ctx, []sdk.CreateExecutionArgs{{Lane: "l", Kind: "k", TraceParent: tp}})
		if sdk.KindOf(err) != sdk.KindValidation {
			t.Fatalf("batch carrier %q: got %v, want a validation error", tp, err)
		}
	}
	n, err := raw.Do(ctx, raw.B().Dbsize().Build()).AsInt64()
	if err != nil || n != 1 { // ff:config
		keys, _ := raw.Do(ctx, raw.B().Keys().Pattern("*").Build()).AsStrSlice()
		t.Fatalf("after refused creates: %d keys %v (%v), want only ff:config", n, keys, err)
	}
}

// Gauges counts each lane's eligible, delayed and blocked executions over
// the partitions, the deployment's active ones, and the age of the
// oldest eligible head.
func TestGauges(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			b := freshBackend(t, topo.addrs(t), valkeybackend.Options{Partitions: 4, DisableArrivals: true})
			g, err := b.Gauges(ctx)
			if err != nil || len(g.Lanes) != 0 || g.Active != 0 || g.Suspended != 0 {
				t.Fatalf("empty deployment: %+v %v", g, err)
			}
			for i := range 6 {
				if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "ga", Kind: "k", Priority: i % 2}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "gb", Kind: "k", DelayUntil: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(30 * time.Millisecond)
			claimed, err := b.ClaimFused(ctx, sdk.FusedClaimArgs{Lane: "ga", Partition: 0, Max: 1, WorkerID: "w", WorkerInstanceID: "w-1"})
			if err != nil || len(claimed) != 1 {
				t.Fatalf("claim: %v %v", claimed, err)
			}
			g, err = b.Gauges(ctx)
			if err != nil || len(g.Lanes) != 2 {
				t.Fatalf("gauges: %+v %v", g, err)
			}
			ga, gb := g.Lanes[0], g.Lanes[1]
			if ga.Lane != "ga" || ga.Eligible != 5 || ga.Delayed != 0 || ga.Blocked != 0 || g.Active != 1 {
				t.Fatalf("lane ga: %+v, active %d; want 5 eligible, 1 active", ga, g.Active)
			}
			if ga.OldestWaiting < 30*time.Millisecond || ga.OldestWaiting > time.Minute {
				t.Fatalf("lane ga oldest waiting %v, want 30ms..1m", ga.OldestWaiting)
			}
			if gb.Lane != "gb" || gb.Eligible != 0 || gb.Delayed != 1 || gb.OldestWaiting != 0 {
				t.Fatalf("lane gb: %+v; want 1 delayed", gb)
			}
		})
	}
}
