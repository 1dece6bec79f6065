package valkeybackend_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// An offer is taken by the next create into its lane's empty eligible set:
// the create answers "active", the offering instance receives the lease and
// the context, and the lease is a real one (renewable, completable). A
// create behind a backlog, one needing capabilities the offer lacks and a
// delayed one are not handed off; a withdrawn offer takes nothing.
func TestHandoff(t *testing.T) {
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 4})
	producer, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const lane sdk.LaneID = "ho"
	inst := sdk.WorkerInstanceID("w-1")
	offerArgs := func() sdk.OfferArgs {
		return sdk.OfferArgs{Lane: lane, LeaseIDs: []string{sdk.NewToken()}, WorkerID: "w", WorkerInstanceID: inst,
			Capabilities: []string{"gpu"}, LeaseTTL: 10 * time.Second, TTL: time.Minute}
	}
	offer := offerArgs()

	if _, err := b.OfferClaims(ctx, offer); sdk.CodeOf(err) != sdk.CodeInvalidInput {
		t.Fatalf("offer before watching: got %v, want invalid_input", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan sdk.ClaimedTask, 4)
	if err := b.WatchHandoffs(wctx, inst, func(t sdk.ClaimedTask) { ch <- t }); err != nil {
		t.Fatal(err)
	}
	if err := b.WatchHandoffs(wctx, inst, func(sdk.ClaimedTask) {}); sdk.CodeOf(err) != sdk.CodeInvalidInput {
		t.Fatalf("a second watch of one instance: got %v, want invalid_input", err)
	}
	offers, err := b.OfferClaims(ctx, offer)
	if err != nil || len(offers) != 1 {
		t.Fatalf("offer: %v %v", offers, err)
	}
	res, err := producer.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k",
		Payload: []byte("p\x00:1"), Tags: map[string]string{"a": "b"}, RequiredCapabilities: []string{"gpu"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.State != sdk.StateActive {
		t.Fatalf("create state %q, want active (handed off)", res.State)
	}
	var got sdk.ClaimedTask
	select {
	case got = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no hand-off")
	}
	h := got.Handle
	if h.ExecutionID != res.ID || h.LeaseID != offers[0].LeaseID || h.Epoch != 1 || h.Lane != lane ||
		h.WorkerInstanceID != inst || h.LeaseTTL != 10*time.Second || got.AttemptType != sdk.AttemptInitial {
		t.Fatalf("hand-off handle %+v (type %q)", h, got.AttemptType)
	}
	if string(got.Context.Payload) != "p\x00:1" || got.Context.Kind != "k" || got.Context.Tags["a"] != "b" {
		t.Fatalf("hand-off context %+v", got.Context)
	}
	if until := time.Until(got.ExpiresAt); until < 8*time.Second || until > 11*time.Second {
		t.Fatalf("lease expires in %v, want ~10s", until)
	}
	if _, err := b.Renew(ctx, h); err != nil {
		t.Fatalf("renewing the handed-off lease: %v", err)
	}
	// The offer is spent: withdrawing or refreshing it finds it taken.
	if taken, err := b.WithdrawOffers(ctx, offers); err != nil || !taken[0] {
		t.Fatalf("withdraw of a taken offer: %v %v", taken, err)
	}
	if taken, err := b.RefreshOffers(ctx, offers, time.Minute); err != nil || !taken[0] {
		t.Fatalf("refresh of a taken offer: %v %v", taken, err)
	}
	// Completing with an offer in the same round trip: the next create
	// is handed to that offer.
	next := offerArgs()
	posted, offerErr, err := b.CompleteAndOffer(ctx, h, []byte("r"), next)
	if err != nil || offerErr != nil || len(posted) != 1 || posted[0].LeaseID != next.LeaseIDs[0] {
		t.Fatalf("complete and offer: %v %v %v", posted, offerErr, err)
	}
	if st, err := b.ReadExecutionState(ctx, h.ExecutionID); err != nil || st != sdk.StateCompleted {
		t.Fatalf("completed execution is %q (%v)", st, err)
	}
	if res, err = producer.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}); err != nil || res.State != sdk.StateActive {
		t.Fatalf("create after complete-and-offer: %+v %v", res, err)
	}
	select {
	case got = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no hand-off for the offer made with the complete")
	}
	if got.Handle.LeaseID != next.LeaseIDs[0] || got.Handle.ExecutionID != res.ID {
		t.Fatalf("hand-off %+v, want lease %s on %s", got.Handle, next.LeaseIDs[0], res.ID)
	}
	if err := b.Complete(ctx, got.Handle, nil); err != nil {
		t.Fatal(err)
	}

	// Not handed off: capabilities the offer lacks; then behind that
	// backlog; a delayed one.
	offers, err = b.OfferClaims(ctx, offerArgs())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []sdk.CreateExecutionArgs{
		{Lane: lane, Kind: "k", RequiredCapabilities: []string{"tpu"}},
		{Lane: lane, Kind: "k"},
		{Lane: lane, Kind: "k", DelayUntil: time.Now().Add(time.Hour)},
	} {
		a.ID = sdk.NewExecutionID(0)     // one partition: the first fills its eligible set
		time.Sleep(2 * time.Millisecond) // FIFO is by creation millisecond: the first stays the head
		r, err := producer.CreateExecution(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if r.State == sdk.StateActive {
			t.Fatalf("%+v was handed off", a)
		}
	}
	if taken, err := b.RefreshOffers(ctx, offers, time.Minute); err != nil || taken[0] {
		t.Fatalf("refresh of an open offer: %v %v", taken, err)
	}
	if taken, err := b.WithdrawOffers(ctx, offers); err != nil || taken[0] {
		t.Fatalf("withdraw of an open offer: %v %v", taken, err)
	}
	select {
	case g := <-ch:
		t.Fatalf("unexpected hand-off %+v", g)
	case <-time.After(50 * time.Millisecond):
	}

	// An expired offer is never taken.
	short := offerArgs()
	short.TTL = 5 * time.Millisecond
	short.Capabilities = nil
	if _, err := b.OfferClaims(ctx, short); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	r, err := producer.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", ID: sdk.NewExecutionID(1)})
	if err != nil || r.State == sdk.StateActive {
		t.Fatalf("create against an expired offer: %+v %v", r, err)
	}

	// Behind a backlog, an offer takes the head of the eligible set (it
	// ranks first), and the new execution waits; one of higher priority
	// than the head is handed over itself.
	backlog, err := producer.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "old", ID: sdk.NewExecutionID(2)})
	if err != nil || backlog.State != sdk.StateWaiting {
		t.Fatalf("backlog: %+v %v", backlog, err)
	}
	for _, c := range []struct {
		priority int
		wantHead bool
	}{{0, true}, {5, false}} {
		if _, err := b.OfferClaims(ctx, offerArgs()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // FIFO is by creation millisecond
		r, err := producer.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "new", Priority: c.priority, ID: sdk.NewExecutionID(2)})
		if err != nil {
			t.Fatal(err)
		}
		var g sdk.ClaimedTask
		select {
		case g = <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("priority %d: no hand-off", c.priority)
		}
		want, kind, state := r.ID, "new", sdk.StateActive
		if c.wantHead {
			want, kind, state = backlog.ID, "old", sdk.StateWaiting
		}
		if g.Handle.ExecutionID != want || g.Context.Kind != kind || r.State != state {
			t.Fatalf("priority %d: handed %s (%s), create state %s; want %s (%s), %s", c.priority,
				g.Handle.ExecutionID, g.Context.Kind, r.State, want, kind, state)
		}
		if err := b.Complete(ctx, g.Handle, nil); err != nil {
			t.Fatal(err)
		}
	}

	// Bad input writes nothing and says so.
	for _, bad := range []sdk.OfferArgs{
		{Lane: lane, WorkerID: "w", WorkerInstanceID: inst, TTL: time.Second},
		{Lane: lane, LeaseIDs: []string{"a b"}, WorkerID: "w", WorkerInstanceID: inst, TTL: time.Second},
		{Lane: lane, LeaseIDs: []string{"x"}, WorkerID: "w", WorkerInstanceID: inst},
		{Lane: "a b", LeaseIDs: []string{"x"}, WorkerID: "w", WorkerInstanceID: inst, TTL: time.Second},
	} {
		if _, err := b.OfferClaims(ctx, bad); sdk.KindOf(err) != sdk.KindValidation {
			t.Fatalf("offer %+v: got %v, want a validation error", bad, err)
		}
	}
	if _, err := b.WithdrawOffers(ctx, []sdk.ClaimOffer{{Lane: lane, LeaseID: "x", Ref: "y"}}); sdk.KindOf(err) != sdk.KindValidation {
		t.Fatalf("withdraw of a forged offer: %v", err)
	}
}

// With DisableHandoff, offers are unavailable and creates never hand off.
func TestHandoffUnavailable(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		topo topology
		opts valkeybackend.Options
	}{
		{"standalone", topologies()[0], valkeybackend.Options{DisableHandoff: true}},
		{"cluster", topologies()[1], valkeybackend.Options{DisableHandoff: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := freshBackend(t, c.topo.addrs(t), c.opts)
			if err := b.WatchHandoffs(ctx, "w-1", func(sdk.ClaimedTask) {}); !errors.Is(err, sdk.ErrUnavailable) {
				t.Fatalf("WatchHandoffs: %v, want unavailable", err)
			}
			if _, err := b.OfferClaims(ctx, sdk.OfferArgs{Lane: "l", LeaseIDs: []string{"x"}, WorkerID: "w", WorkerInstanceID: "w-1", TTL: time.Second}); !errors.Is(err, sdk.ErrUnavailable) {
				t.Fatalf("OfferClaims: %v, want unavailable", err)
			}
		})
	}
}

// frame builds a hand-off message as ff_create does.
func frame(fields ...string) string {
	var s string
	for _, f := range fields {
		s += strconv.Itoa(len(f)) + ":" + f
	}
	return s
}

// parseHandoff accepts only well-formed messages, and what it accepts
// re-frames to the same fields.
func FuzzParseHandoff(f *testing.F) {
	eid := "{p:3}:0b7e6c1e-2f4a-4c7e-9a51-3f1d2b9c8e10"
	f.Add(frame("w-1", eid, "30000", "lease", "1", "1700000000000", "att", "0", "initial", "kind", "k", "lane", "l", "payload", "x:y"))
	f.Add(frame("w-1", eid, "30000", "lease", "1", "1700000000000", "att", "0", "initial"))
	f.Add("")
	f.Add("3:abc")
	f.Add("99999999999:x")
	f.Add("-1:")
	f.Fuzz(func(t *testing.T, msg string) {
		inst, ct, ok := valkeybackend.ParseHandoffForTest(msg)
		if !ok {
			return
		}
		if err := inst.Validate(); err != nil {
			t.Fatalf("accepted instance %q: %v", inst, err)
		}
		h := ct.Handle
		if err := h.Lane.Validate(); err != nil {
			t.Fatalf("accepted lane %q: %v", h.Lane, err)
		}
		if _, err := sdk.ParseExecutionID(string(h.ExecutionID)); err != nil {
			t.Fatalf("accepted id %q: %v", h.ExecutionID, err)
		}
		if h.LeaseID == "" || h.AttemptID == "" || h.LeaseTTL <= 0 || h.WorkerInstanceID != inst {
			t.Fatalf("accepted handle %+v", h)
		}
	})
}
