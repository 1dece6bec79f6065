package valkeybackend_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// batchCase is a mixed batch and what existed before it, built with fresh
// names each time (run says which run: single creates or the batch).
type batchCase struct {
	before []sdk.CreateExecutionArgs
	items  []sdk.CreateExecutionArgs
}

func mixedBatch(run string, partitions int) batchCase {
	key := func(s string) string { return run + "-" + s }
	taken := sdk.NewExecutionID(partitions - 1)
	fresh := sdk.NewExecutionID(1)
	later := time.Now().Add(time.Hour)
	c := batchCase{before: []sdk.CreateExecutionArgs{
		{Lane: "mix", Kind: "k", IdempotencyKey: key("old")},
		{ID: taken, Lane: "mix", Kind: "k"},
	}}
	c.items = []sdk.CreateExecutionArgs{
		{Lane: "mix", Kind: "k", Payload: []byte("plain")},
		{Lane: "mix", Kind: "k", DelayUntil: later},
		{Lane: "mix", Kind: "k", IdempotencyKey: key("new"), Payload: []byte("first")},
		{Lane: "mix", Kind: "k", IdempotencyKey: key("new"), Payload: []byte("repeat")},
		{Lane: "mix", Kind: "k", IdempotencyKey: key("old")},
		{ID: taken, Lane: "mix", Kind: "k"},
		{Lane: "mix", Kind: "bad kind"},
		{ID: fresh, Lane: "mix", Kind: "k", Priority: 5, Deadline: later, Tags: map[string]string{"a": "b"},
			Retry: sdk.RetryPolicy{MaxRetries: 3}, AttemptTimeout: time.Second},
		{ID: fresh, Lane: "mix", Kind: "k"},
		{Lane: "mix-2", Kind: "k2", RequiredCapabilities: []string{"gpu"}, Payload: []byte("other lane")},
		{Lane: "mix", Kind: "k", Payload: make([]byte, 2048)},
		{Lane: "mix-3", Kind: "k", IdempotencyKey: key("lane3")},
	}
	for i := range 12 {
		c.items = append(c.items, sdk.CreateExecutionArgs{Lane: "mix", Kind: "k", Payload: []byte(fmt.Sprint(i))})
	}
	return c
}

// itemView is what a create result says, independent of ids and times:
// the error code, the duplicate flag (and which item or prior execution it
// repeats), the state, and the execution as described and its context.
type itemView struct {
	Code      string
	Duplicate bool
	DupOf     string
	State     sdk.PublicState
	Snapshot  sdk.ExecutionSnapshot
	Context   sdk.ExecutionContext
}

func viewItems(t *testing.T, b *valkeybackend.Backend, prior []sdk.ExecutionID, items []sdk.CreateExecutionArgs,
	res []sdk.CreateExecutionResult, errs []error) []itemView {
	t.Helper()
	ctx := context.Background()
	out := make([]itemView, len(items))
	for i := range items {
		v := itemView{Code: sdk.CodeOf(errs[i])}
		if errs[i] != nil {
			out[i] = v
			continue
		}
		r := res[i]
		v.Duplicate, v.State = r.Duplicate, r.State
		if r.Duplicate {
			for j, id := range prior {
				if id == r.ID {
					v.DupOf = fmt.Sprint("before ", j)
				}
			}
			for j := range i {
				if errs[j] == nil && !res[j].Duplicate && res[j].ID == r.ID {
					v.DupOf = fmt.Sprint("item ", j)
				}
			}
			if v.DupOf == "" {
				t.Fatalf("item %d: duplicate of %s, an unknown execution", i, r.ID)
			}
		} else {
			if items[i].ID != "" && r.ID != items[i].ID {
				t.Fatalf("item %d: created %s, asked for %s", i, r.ID, items[i].ID)
			}
			s, err := b.DescribeExecution(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			s.ID, s.CreatedAt, s.DelayUntil, s.Deadline = "", time.Time{}, time.Time{}, time.Time{}
			v.Snapshot = *s
			if v.Context, err = b.ReadExecutionContext(ctx, r.ID); err != nil {
				t.Fatal(err)
			}
		}
		out[i] = v
	}
	return out
}

// A mixed batch (plain, delayed, idempotency keys repeated in the batch and
// from before, explicit ids taken before and inside the batch, invalid
// items, several lanes and partitions) gives exactly the per-item results
// that one CreateExecution per item gives, in order.
func TestCreateExecutionsMatchSingleCreates(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			b := freshBackend(t, topo.addrs(t), valkeybackend.Options{MaxPayloadBytes: 1024})
			prepare := func(c batchCase) []sdk.ExecutionID {
				var ids []sdk.ExecutionID
				for _, a := range c.before {
					r, err := b.CreateExecution(ctx, a)
					if err != nil {
						t.Fatal(err)
					}
					ids = append(ids, r.ID)
				}
				return ids
			}

			single := mixedBatch("single", b.Partitions())
			prior := prepare(single)
			res := make([]sdk.CreateExecutionResult, len(single.items))
			errs := make([]error, len(single.items))
			for i, a := range single.items {
				res[i], errs[i] = b.CreateExecution(ctx, a)
			}
			want := viewItems(t, b, prior, single.items, res, errs)

			batch := mixedBatch("batch", b.Partitions())
			prior = prepare(batch)
			got, err := sdk.NewClient(b).SubmitBatch(ctx, batch.items)
			var be *sdk.BatchError
			if !errors.As(err, &be) || len(be.Errs) != len(batch.items) || len(got) != len(batch.items) {
				t.Fatalf("SubmitBatch = %d results, %v; want %d results and a *sdk.BatchError", len(got), err, len(batch.items))
			}
			if !errors.Is(err, sdk.ErrExecutionIDInUse) {
				t.Fatalf("BatchError %v does not match ErrExecutionIDInUse", err)
			}
			have := viewItems(t, b, prior, batch.items, got, be.Errs)
			for i := range want {
				if !reflect.DeepEqual(have[i], want[i]) {
					t.Errorf("item %d: batch %+v\nsingle creates %+v", i, have[i], want[i])
				}
			}
			// Spot checks of what the two agree on.
			if want[3].DupOf != "item 2" || want[4].DupOf != "before 0" || want[5].Code != sdk.CodeExecutionIDInUse ||
				want[6].Code != sdk.CodeInvalidInput || want[8].Code != sdk.CodeExecutionIDInUse ||
				want[10].Code != sdk.CodePayloadTooLarge || want[1].State != sdk.StateDelayed || want[0].State != sdk.StateWaiting {
				t.Fatalf("single creates answered %+v", want)
			}
			page, err := b.ListLanes(ctx, "", 10)
			if err != nil || strings.Join(laneNames(page.Lanes), ",") != "mix,mix-2,mix-3" {
				t.Fatalf("lane registry %v, %v", page.Lanes, err)
			}
		})
	}
}

func laneNames(ls []sdk.LaneID) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = string(l)
	}
	return out
}

// A batch of 100 minted executions over 16 partitions costs at most one
// FCALL per partition plus the lane registry's SADD; a larger group of one
// partition is cut into calls of MaxCreatesPerCall.
func TestCreateExecutionsCallsPerPartition(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 16})
			items := make([]sdk.CreateExecutionArgs, 100)
			for i := range items {
				items[i] = sdk.CreateExecutionArgs{Lane: "fan", Kind: "k", Payload: []byte("x")}
			}
			resetStats(t, addrs)
			res, err := b.CreateExecutions(ctx, items)
			if err != nil {
				t.Fatal(err)
			}
			c := commandCounts(t, addrs)
			if c["fcall"] > 16 || c["sadd"] != 1 {
				t.Fatalf("100 creates on 16 partitions: %d FCALLs, %d SADDs; want <= 16 and 1 (%v)", c["fcall"], c["sadd"], c)
			}
			t.Logf("100 creates: %d FCALLs, %.2f commands per create (script-internal included)",
				c["fcall"], float64(sum(c)-setup(c))/100)
			seen := map[sdk.ExecutionID]bool{}
			for i, r := range res {
				if r.ID == "" || seen[r.ID] || r.State != sdk.StateWaiting || r.Duplicate {
					t.Fatalf("item %d: %+v", i, r)
				}
				seen[r.ID] = true
			}

			const n = 2*valkeybackend.MaxCreatesPerCall + 1
			items = make([]sdk.CreateExecutionArgs, n)
			for i := range items {
				items[i] = sdk.CreateExecutionArgs{ID: sdk.NewExecutionID(3), Lane: "fan", Kind: "k"}
			}
			resetStats(t, addrs)
			if _, err := b.CreateExecutions(ctx, items); err != nil {
				t.Fatal(err)
			}
			if c := commandCounts(t, addrs); c["fcall"] != 3 || c["sadd"] != 0 {
				t.Fatalf("%d creates on one partition: %d FCALLs, %d SADDs; want 3 and 0", n, c["fcall"], c["sadd"])
			}
			page, err := b.ListExecutions(ctx, 3, "", 1000)
			if err != nil || len(page.IDs) != n+countOn(res, 3) {
				t.Fatalf("partition 3 lists %d executions, %v", len(page.IDs), err)
			}
		})
	}
}

func countOn(res []sdk.CreateExecutionResult, p int) int {
	n := 0
	for _, r := range res {
		if q, _ := r.ID.Partition(); q == p {
			n++
		}
	}
	return n
}

// Creates of a batch that land in an empty eligible set are handed to live
// offers as single creates are: two offers take the first two items of a
// partition, the rest wait.
func TestCreateExecutionsHandOff(t *testing.T) {
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 4})
	const lane sdk.LaneID = "batch-ho"
	inst := sdk.WorkerInstanceID("w-batch")
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan sdk.ClaimedTask, 8)
	if err := b.WatchHandoffs(wctx, inst, func(t sdk.ClaimedTask) { ch <- t }); err != nil {
		t.Fatal(err)
	}
	offer := sdk.OfferArgs{Lane: lane, LeaseIDs: []string{sdk.NewToken(), sdk.NewToken()}, WorkerID: "w",
		WorkerInstanceID: inst, LeaseTTL: 10 * time.Second, TTL: time.Minute}
	if _, err := b.OfferClaims(ctx, offer); err != nil {
		t.Fatal(err)
	}
	items := make([]sdk.CreateExecutionArgs, 5)
	for i := range items {
		items[i] = sdk.CreateExecutionArgs{ID: sdk.NewExecutionID(2), Lane: lane, Kind: "k", Payload: []byte{byte('a' + i)}}
	}
	res, err := b.CreateExecutions(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		want := sdk.StateWaiting
		if i < 2 {
			want = sdk.StateActive
		}
		if r.State != want || r.ID != items[i].ID {
			t.Fatalf("item %d: %+v, want %s", i, r, want)
		}
	}
	got := map[sdk.ExecutionID]sdk.ClaimedTask{}
	for range 2 {
		select {
		case c := <-ch:
			got[c.Handle.ExecutionID] = c
		case <-time.After(5 * time.Second):
			t.Fatal("no hand-off")
		}
	}
	for i := range 2 {
		c, ok := got[items[i].ID]
		if !ok || string(c.Context.Payload) != string(items[i].Payload) || c.Handle.Lane != lane {
			t.Fatalf("hand-off of item %d: %+v (%v)", i, c, ok)
		}
		if err := b.Complete(ctx, c.Handle, nil); err != nil {
			t.Fatal(err)
		}
	}

	// Behind the backlog the batch left (items 2..4), three offers take
	// the backlog's head as single creates would: two for the first new
	// item, one for the second; the new items wait.
	offer.LeaseIDs = []string{sdk.NewToken(), sdk.NewToken(), sdk.NewToken()}
	if _, err := b.OfferClaims(ctx, offer); err != nil {
		t.Fatal(err)
	}
	more := []sdk.CreateExecutionArgs{{ID: sdk.NewExecutionID(2), Lane: lane, Kind: "k"}, {ID: sdk.NewExecutionID(2), Lane: lane, Kind: "k"}}
	if res, err = b.CreateExecutions(ctx, more); err != nil || res[0].State != sdk.StateWaiting || res[1].State != sdk.StateWaiting {
		t.Fatalf("batch behind a backlog: %+v, %v", res, err)
	}
	for i := 2; i < 5; i++ {
		select {
		case c := <-ch:
			if c.Handle.ExecutionID != items[i].ID {
				t.Fatalf("hand-off of %s, want item %d (%s) first", c.Handle.ExecutionID, i, items[i].ID)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no hand-off of item %d", i)
		}
	}
	if ids, err := b.ScanEligibleExecutions(ctx, sdk.ScanEligibleArgs{Lane: lane, Partition: 2, Limit: 10}); err != nil ||
		len(ids) != 2 || ids[0] != more[0].ID || ids[1] != more[1].ID {
		t.Fatalf("eligible after the backlog's hand-offs: %v, %v", ids, err)
	}
}

// A batch publishes the arrivals its items' creates would: one per
// (lane, partition) whose eligible set the batch fills from empty; none
// behind work, none for a delayed item.
func TestCreateExecutionsArrivals(t *testing.T) {
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 4})
	raw := rawClient(t, addrs)
	const channel = "ff:arrivals:{p:1}"
	msgs := make(chan string, 16)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = raw.Receive(rctx, raw.B().Ssubscribe().Channel(channel).Build(), func(m valkey.PubSubMessage) { msgs <- m.Message })
	}()
	waitUntil(t, 5*time.Second, "the subscription", func() bool {
		n, err := raw.Do(ctx, raw.B().PubsubShardnumsub().Channel(channel).Build()).AsIntMap()
		return err == nil && n[channel] == 1
	})
	items := []sdk.CreateExecutionArgs{
		{ID: sdk.NewExecutionID(1), Lane: "arr-a", Kind: "k"},
		{ID: sdk.NewExecutionID(1), Lane: "arr-a", Kind: "k"},
		{ID: sdk.NewExecutionID(1), Lane: "arr-b", Kind: "k"},
		{ID: sdk.NewExecutionID(1), Lane: "arr-c", Kind: "k", DelayUntil: time.Now().Add(time.Hour)},
	}
	if _, err := b.CreateExecutions(ctx, items); err != nil {
		t.Fatal(err)
	}
	want := []string{"arr-a " + string(items[0].ID), "arr-b " + string(items[2].ID)}
	for _, w := range want {
		select {
		case m := <-msgs:
			if m != w {
				t.Fatalf("arrival %q, want %q", m, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no arrival %q", w)
		}
	}
	select {
	case m := <-msgs:
		t.Fatalf("unexpected arrival %q", m)
	case <-time.After(200 * time.Millisecond):
	}
}
