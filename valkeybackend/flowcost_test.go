package valkeybackend_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// A chain's edge costs one FCALL: the completion of a member that offers
// its slot (a worker's CompleteBatch) resolves the edge and hands the next
// member to that very offer. The commands it runs are pinned, so an added
// one fails here: per edge, TIME; the member's HMGET (fence), HSET; the
// flow's HMGET and HSET and the member's HMGET of out and flow_counted;
// the child's HMGET (its
// dependency and claim fields in one), ZREM dep_blocked, ZCARD of its
// eligible set, EXISTS of its grant, one HSET (its count and its lease),
// ZADD leases, HGETALL ctx; the member's ZREM leases and ZADD terminal.
// No ZPOPMAX and no offer ZADD: the child takes the offer the completion
// makes. No push (RPUSH, PEXPIRE, SPUBLISH) and no inbox read: the
// child's hand-off comes back in the completion's reply, on the
// completion's offer. The eligible set is not written.
// watchOffers watches instance's hand-offs (until the test ends) into a
// channel of room n, and returns it with a maker of offers on lane by
// that instance (fresh lease ids, a minute's TTL and lease).
func watchOffers(tb testing.TB, b *valkeybackend.Backend, lane sdk.LaneID, instance sdk.WorkerInstanceID, n int) (chan sdk.ClaimedTask, func(int) *sdk.OfferArgs) {
	tb.Helper()
	got := make(chan sdk.ClaimedTask, n)
	wctx, stop := context.WithCancel(context.Background())
	tb.Cleanup(stop)
	if err := b.WatchHandoffs(wctx, instance, func(t sdk.ClaimedTask) { got <- t }); err != nil {
		tb.Fatal(err)
	}
	return got, func(k int) *sdk.OfferArgs {
		a := &sdk.OfferArgs{Lane: lane, WorkerID: "w", WorkerInstanceID: instance, LeaseTTL: time.Minute, TTL: time.Minute}
		for range k {
			a.LeaseIDs = append(a.LeaseIDs, sdk.NewToken())
		}
		return a
	}
}

func TestFlowEdgeCommands(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{})
			const lane sdk.LaneID = "edge-cost"
			const depth = 11
			got, offer := watchOffers(t, b, lane, "edge-1", depth)
			spec := sdk.FlowSpec{ID: sdk.NewFlowID(b.Partitions() - 1)}
			for i := range depth {
				spec.Members = append(spec.Members, sdk.FlowMember{Name: fmt.Sprintf("m%d", i), Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}})
				if i > 0 {
					spec.Edges = append(spec.Edges, sdk.FlowEdge{From: fmt.Sprintf("m%d", i-1), To: fmt.Sprintf("m%d", i)})
				}
			}
			// The root goes to an offer posted before the submit (one on
			// every partition: a cluster keeps offers per partition).
			if _, err := b.OfferClaims(ctx, *offer(b.Partitions())); err != nil {
				t.Fatal(err)
			}
			sub, err := sdk.NewClient(b).SubmitFlow(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			next := func() sdk.ClaimedTask {
				select {
				case h := <-got:
					return h
				case <-time.After(5 * time.Second):
					t.Fatal("no hand-off")
				}
				return sdk.ClaimedTask{}
			}
			h := next()
			// Only the root comes through the inbox: the rest come inline.
			const edges = depth - 2 // the last edge is measured; the last member's complete is not
			resetStats(t, addrs)
			for i := range edges {
				out := b.CompleteBatch(ctx, []sdk.CompleteItem{{Handle: h.Handle, Offer: offer(1)}})
				if out[0].Err != nil || out[0].OfferErr != nil {
					t.Fatal(out[0].Err, out[0].OfferErr)
				}
				if len(out[0].Handoffs) != 1 || out[0].Handoffs[0].Handle.LeaseID != out[0].Offers[0].LeaseID {
					t.Fatalf("edge %d: inline hand-offs %+v, want the next member on the completion's offer %s", i, out[0].Handoffs, out[0].Offers[0].LeaseID)
				}
				h = out[0].Handoffs[0]
				if want := sub.Members[spec.Members[i+1].Name]; h.Handle.ExecutionID != want || h.Context.Lane != lane ||
					h.Handle.WorkerInstanceID != "edge-1" {
					t.Fatalf("edge %d: inline hand-off %+v, want member %s on the offer's instance", i, h.Handle, want)
				}
			}
			select {
			case h := <-got:
				t.Fatalf("a hand-off through the inbox: %+v", h.Handle)
			default:
			}
			c := commandCounts(t, addrs)
			delete(c, "blmpop") // the hand-off reader's
			per := func(name string) float64 { return float64(c[name]) / edges }
			want := map[string]float64{"fcall": 1, "time": 1, "hmget": 4, "hset": 3, "zrem": 2, "zcard": 1,
				"exists": 1, "zadd": 2, "hgetall": 1}
			inner := 0.0
			for name, n := range want {
				if got := per(name); got != n {
					t.Errorf("%s per edge = %.2f, want %v (all counts %v)", name, got, n, c)
				}
				if name != "fcall" {
					inner += n
				}
			}
			if all := float64(sum(c)-setup(c)) / edges; all != inner+1 {
				t.Errorf("commands per edge = %.2f, want %v: 1 FCALL and %v inside it (all counts %v)", all, inner+1, inner, c)
			}
		})
	}
}

// A flow member's completion never hands a ready child to the offer it
// makes when that offer names a quota (a child is not admitted under it):
// the child waits in its eligible set for the admission path, no hand-off
// comes, and the offer stays posted.
func TestFlowChildSkipsQuotaOffer(t *testing.T) {
	e := newQuotaHandoffEnv(t, sdk.QuotaPolicy{ID: "flowq", Concurrency: 100})
	sub, err := sdk.NewClient(e.b).SubmitFlow(e.ctx, sdk.FlowSpec{
		Members: []sdk.FlowMember{{Name: "a", Args: sdk.CreateExecutionArgs{Lane: e.lane, Kind: "k"}},
			{Name: "b", Args: sdk.CreateExecutionArgs{Lane: e.lane, Kind: "k"}}},
		Edges: []sdk.FlowEdge{{From: "a", To: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := sub.Members["a"], sub.Members["b"]
	c, err := e.b.GrantAndClaim(e.ctx, sdk.IssueClaimGrantArgs{ExecutionID: a, Lane: e.lane, WorkerID: "qw", WorkerInstanceID: e.inst}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	args := sdk.OfferArgs{Lane: e.lane, LeaseIDs: []string{sdk.NewToken()}, WorkerID: "qw", WorkerInstanceID: e.inst,
		LeaseTTL: time.Minute, TTL: time.Minute, Quota: e.q}
	out := e.b.CompleteBatch(e.ctx, []sdk.CompleteItem{{Handle: c.Handle, Offer: &args}})
	if out[0].Err != nil || out[0].OfferErr != nil || len(out[0].Offers) != 1 {
		t.Fatalf("CompleteBatch = %+v", out[0])
	}
	if st := e.state(b); st != sdk.StateWaiting {
		t.Fatalf("b after a completed with a quota offer: %s, want waiting", st)
	}
	select {
	case ct := <-e.got:
		t.Fatalf("hand-off of %s to a quota offer, unadmitted", ct.Handle.ExecutionID)
	case <-time.After(100 * time.Millisecond):
	}
	taken, err := e.b.WithdrawOffers(e.ctx, out[0].Offers)
	if err != nil || len(taken) != 1 || taken[0] {
		t.Fatalf("WithdrawOffers = %v, %v; want the quota offer still posted", taken, err)
	}
}

// A client before library v36 calls ff_complete_batch with a bare offers
// scope ('global'): a ready child handed to the completion's own offer is
// pushed onto the instance's inbox as before, and the reply carries
// nothing after the items' fields, so that client still reads it.
func TestFlowChildPushedForOldClients(t *testing.T) {
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	const lane sdk.LaneID = "old-client"
	got := make(chan sdk.ClaimedTask, 2)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := b.WatchHandoffs(wctx, "old-1", func(t sdk.ClaimedTask) { got <- t }); err != nil {
		t.Fatal(err)
	}
	next := func(what string) sdk.ClaimedTask {
		select {
		case h := <-got:
			return h
		case <-time.After(5 * time.Second):
			t.Fatalf("no hand-off: %s", what)
		}
		return sdk.ClaimedTask{}
	}
	if _, err := b.OfferClaims(ctx, sdk.OfferArgs{Lane: lane, LeaseIDs: []string{sdk.NewToken()}, WorkerID: "w",
		WorkerInstanceID: "old-1", LeaseTTL: time.Minute, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	sub, err := sdk.NewClient(b).SubmitFlow(ctx, sdk.FlowSpec{
		Members: []sdk.FlowMember{{Name: "a", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}},
			{Name: "b", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}}},
		Edges: []sdk.FlowEdge{{From: "a", To: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	h := next("a, at the submit").Handle
	lease := sdk.NewToken()
	member := lease + " " + sdk.NewToken() + " 60000 w old-1 "
	c := rawClient(t, addrs)
	arr, err := c.Do(ctx, c.B().Fcall().Function("ff_complete_batch").Numkeys(1).Key("ff:e:"+string(h.ExecutionID)+":core").
		Arg("1", "60000", "global", string(h.ExecutionID), h.LeaseID, fmt.Sprint(h.Epoch), h.AttemptID, string(lane),
			"0", "", string(lane), "1", member).Build()).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	if len(arr) != 3+6 {
		t.Fatalf("reply of %d fields, want 9 (envelope, expiry, one item's six)", len(arr))
	}
	if code, _ := arr[3].ToString(); code != "" {
		t.Fatalf("complete a: %q", code)
	}
	hb := next("b, pushed for the old client")
	if hb.Handle.ExecutionID != sub.Members["b"] || hb.Handle.LeaseID != lease {
		t.Fatalf("hand-off %+v, want b on the completion's offer %s", hb.Handle, lease)
	}
}
