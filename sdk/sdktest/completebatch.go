package sdktest

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// testCompleteBatch: CompleteBatch answers, per item and in order, what
// Complete would: completions on several partitions and lanes, with and
// without a result, beside a stale handle, an execution completed before,
// and a malformed handle, none of which changes anything; a batch of
// rejected items alone writes nothing. With hand-offs, an item's offer is
// posted when its complete lands, and a new execution is handed to it.
func testCompleteBatch(e *env) {
	cb := need(e, e.roles.CompleteBatcher, sdk.RoleCompleteBatch)
	lanes := []sdk.LaneID{"sdktest-complete-batch-a", "sdktest-complete-batch-b"}
	if out := cb.CompleteBatch(e.ctx, nil); len(out) != 0 {
		e.t.Fatalf("CompleteBatch(no items) = %v; want no outcomes", out)
	}
	parts := e.somePartitions(3)
	var hs []sdk.Handle
	for i := range 6 {
		lane := lanes[i%2]
		id := e.create(onPartition(simple(lane), parts[i%len(parts)]))
		hs = append(hs, e.claim(id, lane, leaseTTL).Handle)
	}
	e.must("Complete before the batch", e.b.Complete(e.ctx, hs[3], []byte("before")))
	stale := hs[2]
	stale.Epoch++
	malformed := hs[4]
	malformed.ExecutionID = "not an id"
	items := []sdk.CompleteItem{
		{Handle: hs[0], Result: []byte("r0")},
		{Handle: hs[1]},
		{Handle: stale, Result: []byte("stale")},
		{Handle: hs[3], Result: []byte("again")},
		{Handle: malformed},
		{Handle: hs[5], Result: []byte("r5")},
	}
	out := cb.CompleteBatch(e.ctx, items)
	if len(out) != len(items) {
		e.t.Fatalf("CompleteBatch(%d items) = %d outcomes", len(items), len(out))
	}
	wantErr := map[int]error{2: sdk.ErrStaleLease, 3: sdk.ErrExecutionNotActive, 4: sdk.ErrValidation}
	for i, o := range out {
		if o.Offers != nil || o.OfferErr != nil {
			e.t.Fatalf("item %d without an offer has offers %v, %v", i, o.Offers, o.OfferErr)
		}
		if want := wantErr[i]; want != nil {
			requireErr(e.t, "batch item "+strconv.Itoa(i), o.Err, want)
			continue
		}
		if o.Err != nil {
			e.t.Fatalf("batch item %d: %v", i, o.Err)
		}
		e.requireState(items[i].Handle.ExecutionID, sdk.StateCompleted, "after the batch")
	}
	var se *sdk.Error
	if !errors.As(out[3].Err, &se) {
		e.t.Fatalf("item completed before: %v is not an *sdk.Error", out[3].Err)
	}
	if d, ok := se.NotActive(); !ok || d.State != sdk.StateCompleted || d.Epoch != hs[3].Epoch || d.AttemptID != hs[3].AttemptID {
		e.t.Fatalf("item completed before: detail %+v (%v), want completed under its own epoch and attempt", d, ok)
	}
	for i, want := range map[int]string{0: "r0", 3: "before", 5: "r5"} {
		if r, err := e.b.GetExecutionResult(e.ctx, hs[i].ExecutionID); err != nil || string(r) != want {
			e.t.Fatalf("result of item %d = %q, %v; want %q", i, r, err, want)
		}
	}
	if r, err := e.b.GetExecutionResult(e.ctx, hs[1].ExecutionID); err != nil || r != nil {
		e.t.Fatalf("result of item 1 (none sent) = %q, %v; want none", r, err)
	}
	e.requireState(hs[2].ExecutionID, sdk.StateActive, "after a stale item")
	e.rejects("CompleteBatch of rejected items", func() error {
		return cb.CompleteBatch(e.ctx, []sdk.CompleteItem{{Handle: stale}, {Handle: hs[0]}})[0].Err
	}, sdk.ErrStaleLease)
	e.must("Complete after the batch, with the live handle", e.b.Complete(e.ctx, hs[2], nil))

	co := e.roles.ClaimOfferer
	if co == nil {
		return
	}
	in := e.watchHandoffs(co)
	id := e.create(simple(lanes[0]))
	h := e.claim(id, lanes[0], leaseTTL).Handle
	args := offerArgs(lanes[1], 1)
	refused := offerArgs(lanes[1], 1)
	refused.TTL = 0
	id2 := e.create(simple(lanes[0]))
	h2 := e.claim(id2, lanes[0], leaseTTL).Handle
	out = cb.CompleteBatch(e.ctx, []sdk.CompleteItem{{Handle: h, Offer: &args}, {Handle: h2, Offer: &refused}})
	if out[0].Err != nil || out[0].OfferErr != nil {
		e.t.Fatalf("item with an offer = %v, %v (complete error, offer error)", out[0].Err, out[0].OfferErr)
	}
	e.requireOffers("CompleteBatch", out[0].Offers, args)
	if out[1].Err != nil || out[1].Offers != nil {
		e.t.Fatalf("item with a refused offer = %v, %v; want the complete alone", out[1].Offers, out[1].Err)
	}
	requireErr(e.t, "a batch item's offer error for an offer without a TTL", out[1].OfferErr, sdk.ErrValidation)
	e.requireState(id2, sdk.StateCompleted, "after its offer was refused")
	t := e.createHandedOff(in, simple(lanes[1]), out[0].Offers...)
	e.must("Complete of a handed-off lease", e.b.Complete(e.ctx, t.Handle, nil))
	in.none(e, "no offer open")
}

// testCompleteBatchBacklog: with hand-offs, an item's offer first takes the
// work waiting in its lane on the item's partition, oldest first, in the
// same call: the head is handed to the offer's worker (no claim call), the
// rest keeps waiting, and an offer the backlog did not use stays open.
func testCompleteBatchBacklog(e *env) {
	cb := need(e, e.roles.CompleteBatcher, sdk.RoleCompleteBatch)
	co := need(e, e.roles.ClaimOfferer, sdk.RoleClaimOffers)
	const lane sdk.LaneID = "sdktest-complete-backlog"
	p := e.somePartitions(1)[0]
	in := e.watchHandoffs(co)
	done := e.claim(e.create(onPartition(simple(lane), p)), lane, leaseTTL).Handle
	oldest := onPartition(simple(lane), p)
	oldest.Kind = "sdktest.backlog.oldest"
	first := e.create(oldest)
	second := e.create(onPartition(simple(lane), p))
	e.requireScannable(lane, first, true, "waiting behind the claimed one")
	args := offerArgs(lane, 2)
	before := time.Now()
	out := cb.CompleteBatch(e.ctx, []sdk.CompleteItem{{Handle: done, Offer: &args}})
	after := time.Now()
	if out[0].Err != nil || out[0].OfferErr != nil {
		e.t.Fatalf("complete with offers over a backlog = %v, %v (complete error, offer error)", out[0].Err, out[0].OfferErr)
	}
	e.requireState(done.ExecutionID, sdk.StateCompleted, "after the batch")
	got := map[sdk.ExecutionID]sdk.ClaimedTask{}
	for range 2 {
		t := in.next(e, "complete whose offers met a backlog")
		got[t.Handle.ExecutionID] = t
	}
	t, ok := got[first]
	if !ok || got[second].Handle.ExecutionID != second {
		e.t.Fatalf("the backlog's hand-offs went to %v; want %s then %s", slices.Collect(maps.Keys(got)), first, second)
	}
	e.checkTask("backlog head handed to a completing worker's offer", t, first, leaseTTL, before, after,
		sdk.AttemptInitial, contextOf(oldest))
	if t.Handle.LeaseID != args.LeaseIDs[0] || got[second].Handle.LeaseID != args.LeaseIDs[1] {
		e.t.Fatalf("hand-off leases %s, %s; want the offers' %v in order", t.Handle.LeaseID,
			got[second].Handle.LeaseID, args.LeaseIDs)
	}
	for _, id := range []sdk.ExecutionID{first, second} {
		e.requireState(id, sdk.StateActive, "handed off by the complete")
		e.requireScannable(lane, id, false, "handed off by the complete")
	}
	// One offer more than the backlog: it stays open, and a create takes it.
	h3 := e.claim(e.create(onPartition(simple(lane), p)), lane, leaseTTL).Handle
	waiting := e.create(onPartition(simple(lane), p))
	more := offerArgs(lane, 2)
	out = cb.CompleteBatch(e.ctx, []sdk.CompleteItem{{Handle: h3, Offer: &more}})
	if out[0].Err != nil || out[0].OfferErr != nil {
		e.t.Fatalf("complete with two offers over one waiting = %v, %v", out[0].Err, out[0].OfferErr)
	}
	if t := in.next(e, "complete whose offers met one waiting"); t.Handle.ExecutionID != waiting || t.Handle.LeaseID != more.LeaseIDs[0] {
		e.t.Fatalf("hand-off of %s under lease %s; want %s under %s", t.Handle.ExecutionID, t.Handle.LeaseID, waiting, more.LeaseIDs[0])
	}
	left := out[0].Offers[1]
	e.createHandedOff(in, simple(lane), left)
	for _, tk := range got {
		e.must("Complete of a backlog hand-off", e.b.Complete(e.ctx, tk.Handle, nil))
	}
	in.none(e, "every offer spent")
}
