package valkeybackend_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// A create that lands in an empty eligible set reaches a waiting watcher
// of its lane as an arrival (on a cluster too: the channel shares the
// partition's slot); one into a set that already holds work, a delayed
// one, and one on another lane do not.
func TestArrivals(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 4})
			producer, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, Partitions: 4})
			if err != nil {
				t.Fatal(err)
			}
			defer producer.Close()
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch, err := b.WatchArrivals(wctx, []sdk.LaneID{"arr"})
			if err != nil {
				t.Fatal(err)
			}
			// An arrival goes only to a watcher receiving at that moment,
			// so the receive starts before the create.
			type got struct {
				a  sdk.Arrival
				ok bool
			}
			listen := func(wait time.Duration) <-chan got {
				out := make(chan got, 1)
				ready := make(chan struct{})
				go func() {
					t := time.NewTimer(wait)
					defer t.Stop()
					close(ready)
					select {
					case a := <-ch:
						out <- got{a, true}
					case <-t.C:
						out <- got{}
					}
				}()
				<-ready
				time.Sleep(time.Millisecond) // into the select
				return out
			}
			next := func(l <-chan got) (sdk.Arrival, bool) { g := <-l; return g.a, g.ok }
			// The subscription starts asynchronously: wait until the
			// channels have their subscriber.
			waitSubscribed(t, b, 0, 3)
			l := listen(5 * time.Second)
			r0, err := producer.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "arr", Kind: "k", ID: sdk.NewExecutionID(0)})
			if err != nil {
				t.Fatal(err)
			}
			if a, ok := next(l); !ok || a.ID != r0.ID || a.Lane != "arr" {
				t.Fatalf("arrival %+v (%v), want %s on arr", a, ok, r0.ID)
			}
			// Partition 0 now holds work: no arrival for another create there,
			// nor for a delayed one, nor for another lane.
			quiet := []sdk.CreateExecutionArgs{
				{Lane: "arr", Kind: "k", ID: sdk.NewExecutionID(0)},
				{Lane: "arr", Kind: "k", ID: sdk.NewExecutionID(1), DelayUntil: time.Now().Add(time.Hour)},
				{Lane: "other", Kind: "k", ID: sdk.NewExecutionID(2)},
			}
			l = listen(300 * time.Millisecond)
			for _, a := range quiet {
				if _, err := producer.CreateExecution(ctx, a); err != nil {
					t.Fatal(err)
				}
			}
			if a, ok := next(l); ok {
				t.Fatalf("unexpected arrival %+v", a)
			}
			// An empty partition: the arrival names the execution created.
			l = listen(5 * time.Second)
			r, err := producer.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "arr", Kind: "k", ID: sdk.NewExecutionID(3)})
			if err != nil {
				t.Fatal(err)
			}
			a, ok := next(l)
			if !ok || a.ID != r.ID || a.Lane != "arr" {
				t.Fatalf("arrival %+v (%v), want %s on arr", a, ok, r.ID)
			}
			// A failed attempt requeued at once into the (again empty) set is
			// an arrival too.
			ct, err := producer.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: "arr", WorkerID: "w",
				WorkerInstanceID: "w-1"}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			l = listen(5 * time.Second)
			out, err := producer.Fail(ctx, ct.Handle, "boom", "worker_shutdown") // an interruption: requeued at once
			if err != nil || !out.RetryScheduled {
				t.Fatalf("fail: %+v %v", out, err)
			}
			if a, ok := next(l); !ok || a.ID != r.ID {
				t.Fatalf("arrival after the requeue %+v (%v), want %s", a, ok, r.ID)
			}
			// Every other way back into the (emptied) eligible set announces
			// the execution too.
			claim := func(ttl time.Duration) sdk.Handle {
				t.Helper()
				ct, err := producer.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: "arr", WorkerID: "w",
					WorkerInstanceID: "w-1"}, ttl)
				if err != nil {
					t.Fatal(err)
				}
				return ct.Handle
			}
			expect := func(what string, requeue func()) {
				t.Helper()
				l := listen(5 * time.Second)
				requeue()
				if a, ok := next(l); !ok || a.ID != r.ID || a.Lane != "arr" {
					t.Fatalf("%s: arrival %+v (%v), want %s on arr", what, a, ok, r.ID)
				}
			}
			check := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			h := claim(time.Minute)
			expect("a delay already over", func() { check(producer.Delay(ctx, h, time.Now().Add(-time.Second))) })
			h = claim(time.Minute)
			check(producer.Delay(ctx, h, time.Now().Add(20*time.Millisecond)))
			time.Sleep(50 * time.Millisecond)
			expect("a promotion", func() {
				n, err := producer.PromoteDelayed(ctx, sdk.PromoteDelayedArgs{Lane: "arr", Partition: 3})
				check(err)
				if n != 1 {
					t.Fatalf("promoted %d, want 1", n)
				}
			})
			claim(100 * time.Millisecond)
			time.Sleep(150 * time.Millisecond)
			expect("a reclaim after the lease expired", func() {
				c, err := producer.ReclaimExpired(ctx, []sdk.ExecutionID{r.ID}, 0)
				check(err)
				if c["retry_scheduled"] != 1 {
					t.Fatalf("reclaim: %v", c)
				}
			})
			if _, err := producer.BlockRoute(ctx, sdk.BlockRouteArgs{ExecutionID: r.ID, Lane: "arr", Reason: "capability_mismatch"}); err != nil {
				t.Fatal(err)
			}
			blocked, err := producer.Blocked(ctx, "arr", 3, 0, 10)
			if err != nil || len(blocked) != 1 {
				t.Fatalf("blocked %+v %v", blocked, err)
			}
			expect("an unblock", func() {
				n, err := producer.Unblock(ctx, "arr", blocked)
				check(err)
				if n != 1 {
					t.Fatalf("unblocked %d, want 1", n)
				}
			})
			check(producer.Complete(ctx, claim(time.Minute), nil))
			expect("a replay", func() {
				_, err := producer.ReplayExecution(ctx, sdk.ReplayExecutionArgs{ExecutionID: r.ID})
				check(err)
			})
		})
	}
}

// With DisableArrivals both roles riding the subscription answer
// unavailable and nothing subscribes.
func TestArrivalsDisabled(t *testing.T) {
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{DisableArrivals: true})
	if _, err := b.WatchArrivals(context.Background(), []sdk.LaneID{"arr"}); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("WatchArrivals with DisableArrivals: %v, want unavailable", err)
	}
	if _, err := b.WatchLeaseEvents(context.Background()); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("WatchLeaseEvents with DisableArrivals: %v, want unavailable", err)
	}
}

// waitSubscribed waits until the arrivals channels of partitions have a
// subscriber (PUBSUB SHARDNUMSUB, asked of the node owning each channel).
func waitSubscribed(t *testing.T, b *valkeybackend.Backend, partitions ...int) {
	t.Helper()
	c := b.Client()
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range partitions {
		ch := "ff:arrivals:" + sdk.PartitionTag(p)
		for {
			m, err := c.Do(context.Background(), c.B().PubsubShardnumsub().Channel(ch).Build()).AsIntMap()
			if err == nil && m[ch] > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has no subscriber after 10s (%v, %v)", ch, m, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// parseArrival and parseLeaseEvent read what arrives on a shard channel,
// which anyone with access to the server can publish to: they never panic,
// never both accept a message, and what they accept is a valid lane and
// execution id that print back to the input.
func FuzzParseArrival(f *testing.F) {
	f.Add("emails {p:3}:0b7e6c1e-2f4a-4c7e-9a51-3f1d2b9c8e10")
	f.Add("{p:3}:0b7e6c1e-2f4a-4c7e-9a51-3f1d2b9c8e10")
	f.Add("")
	f.Add(" ")
	f.Add("lane")
	f.Add("lane {p:99999999999}:x")
	f.Fuzz(func(t *testing.T, msg string) {
		id, lease := valkeybackend.ParseLeaseEventForTest(msg)
		if lease && string(id) != msg {
			t.Fatalf("lease event %q parsed as %q", msg, id)
		}
		a, ok := valkeybackend.ParseArrivalForTest(msg)
		if !ok {
			return
		}
		if lease {
			t.Fatalf("%q read both as an arrival and as a lease event", msg)
		}
		if err := a.Lane.Validate(); err != nil {
			t.Fatalf("accepted lane %q: %v", a.Lane, err)
		}
		if _, err := sdk.ParseExecutionID(string(a.ID)); err != nil {
			t.Fatalf("accepted id %q: %v", a.ID, err)
		}
		if got := string(a.Lane) + " " + string(a.ID); got != msg {
			t.Fatalf("%q parsed as %q", msg, got)
		}
	})
}

// An arrival no watcher is receiving waits for a busy worker's next round:
// TakeArrivals hands it out once, and not once it is stale.
func TestPendingArrivals(t *testing.T) {
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 4})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := b.WatchArrivals(wctx, []sdk.LaneID{"busy"}); err != nil { // registered, never receiving
		t.Fatal(err)
	}
	waitSubscribed(t, b, 0, 1, 2)
	take := func() []sdk.Arrival {
		var got []sdk.Arrival
		deadline := time.Now().Add(2 * time.Second)
		for len(got) == 0 && time.Now().Before(deadline) {
			got = b.TakeArrivals("busy", 8)
			time.Sleep(time.Millisecond)
		}
		return got
	}
	r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "busy", Kind: "k", ID: sdk.NewExecutionID(0)})
	if err != nil {
		t.Fatal(err)
	}
	if got := take(); len(got) != 1 || got[0].ID != r.ID {
		t.Fatalf("pending arrivals %v, want [%s]", got, r.ID)
	}
	if got := b.TakeArrivals("busy", 8); len(got) != 0 {
		t.Fatalf("taken twice: %v", got)
	}
	// Stale: older than the freshness window.
	if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "busy", Kind: "k", ID: sdk.NewExecutionID(2)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := b.TakeArrivals("busy", 8); len(got) != 0 {
		t.Fatalf("a stale arrival handed out: %v", got)
	}
	// Claimed by this client through the fused path or the separate
	// claim call: the pending arrival goes with it, so no idle worker is
	// sent after it. (Each pending arrival is looked at within the 10 ms it
	// stays fresh, claimed at once, and the queue checked again at once.)
	for _, fused := range []bool{true, false} {
		var r sdk.CreateExecutionResult
		pending := false
		for try := 0; try < 20 && !pending; try++ {
			if r, err = b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "busy", Kind: "k", ID: sdk.NewExecutionID(1)}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Millisecond)
			for !pending && time.Now().Before(deadline) {
				pending = b.PendingArrivalsForTest("busy") == 1
			}
			if !pending {
				// Too slow to see it fresh: claim it away and try again.
				if _, err := b.ClaimFused(ctx, sdk.FusedClaimArgs{Lane: "busy", Partition: 1, WorkerID: "w",
					WorkerInstanceID: "w-1", Max: 8}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
				b.TakeArrivals("busy", 8)
			}
		}
		if !pending {
			t.Fatal("never saw a fresh pending arrival in 20 tries")
		}
		if fused {
			got, err := b.ClaimFused(ctx, sdk.FusedClaimArgs{Lane: "busy", Partition: 1, WorkerID: "w", WorkerInstanceID: "w-1", Max: 1})
			if err != nil || len(got) != 1 || got[0].Handle.ExecutionID != r.ID {
				t.Fatalf("fused claim %+v %v", got, err)
			}
		} else {
			if _, err := b.IssueClaimGrant(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: "busy", WorkerID: "w",
				WorkerInstanceID: "w-1"}); err != nil {
				t.Fatal(err)
			}
			if _, err := b.ClaimExecution(ctx, sdk.ClaimExecutionArgs{ExecutionID: r.ID, Lane: "busy", WorkerID: "w",
				WorkerInstanceID: "w-1"}); err != nil {
				t.Fatal(err)
			}
		}
		if n := b.PendingArrivalsForTest("busy"); n != 0 {
			t.Fatalf("fused %v: %d arrivals still pending after the claim", fused, n)
		}
	}
}
