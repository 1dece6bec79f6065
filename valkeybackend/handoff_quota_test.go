package valkeybackend_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// quotaHandoffEnv is one server with a quota'd lane, an instance watching
// its hand-offs, and a producer on its own connection (its own cache of
// the lane's policy, as a submitting process has).
type quotaHandoffEnv struct {
	t        *testing.T
	ctx      context.Context
	b        *valkeybackend.Backend
	producer *valkeybackend.Backend
	lane     sdk.LaneID
	q        sdk.QuotaID
	inst     sdk.WorkerInstanceID
	got      chan sdk.ClaimedTask
}

func newQuotaHandoffEnv(t *testing.T, qp sdk.QuotaPolicy) *quotaHandoffEnv {
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	e := &quotaHandoffEnv{t: t, ctx: ctx, b: freshBackend(t, addrs, valkeybackend.Options{Partitions: 1}),
		lane: "qho", q: qp.ID, inst: "qw-1", got: make(chan sdk.ClaimedTask, 8)}
	var err error
	if e.producer, err = valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.producer.Close)
	if err := e.b.CreateQuotaPolicy(ctx, qp); err != nil {
		t.Fatal(err)
	}
	if err := e.b.SetLanePolicy(ctx, e.lane, sdk.LanePolicy{Quota: qp.ID}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if err := e.b.WatchHandoffs(wctx, e.inst, func(ct sdk.ClaimedTask) { e.got <- ct }); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *quotaHandoffEnv) offer(n int, ttl time.Duration) []sdk.ClaimOffer {
	e.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = sdk.NewToken()
	}
	offers, err := e.b.OfferClaims(e.ctx, sdk.OfferArgs{Lane: e.lane, LeaseIDs: ids, WorkerID: "qw",
		WorkerInstanceID: e.inst, LeaseTTL: ttl, TTL: time.Minute, Quota: e.q})
	if err != nil {
		e.t.Fatalf("offer under quota: %v", err)
	}
	return offers
}

func (e *quotaHandoffEnv) create() sdk.CreateExecutionResult {
	e.t.Helper()
	res, err := e.producer.CreateExecution(e.ctx, sdk.CreateExecutionArgs{Lane: e.lane, Kind: "k"})
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func (e *quotaHandoffEnv) handoff() sdk.ClaimedTask {
	e.t.Helper()
	select {
	case ct := <-e.got:
		return ct
	case <-time.After(5 * time.Second):
		e.t.Fatal("no hand-off")
	}
	return sdk.ClaimedTask{}
}

func (e *quotaHandoffEnv) holds() map[sdk.ExecutionID]time.Time {
	e.t.Helper()
	h, err := e.b.QuotaHolds(e.ctx, e.q)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

func (e *quotaHandoffEnv) state(id sdk.ExecutionID) sdk.PublicState {
	e.t.Helper()
	st, err := e.b.ReadExecutionState(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// TestHandoffUnderQuota: an offer made under a quota takes a create's new
// execution once the create admitted it under that quota: the hand-off
// carries the admission (the hold, the window entry), and a full cap
// leaves the execution waiting and the offer open, for the admission path;
// a giveback frees the slot and the window entry.
func TestHandoffUnderQuota(t *testing.T) {
	e := newQuotaHandoffEnv(t, sdk.QuotaPolicy{ID: "qh", Concurrency: 1, Rate: 100, Window: time.Minute})
	offers := e.offer(2, 10*time.Second)
	first := e.create()
	if first.State != sdk.StateActive {
		t.Fatalf("create on a quota lane with an offer: %q, want active (handed off)", first.State)
	}
	ct := e.handoff()
	if ct.Handle.ExecutionID != first.ID || ct.Admission == nil || ct.Admission.Quota != e.q ||
		!strings.HasPrefix(ct.Admission.Member, string(first.ID)+" ") {
		t.Fatalf("hand-off %+v admission %+v, want %s admitted under %s", ct.Handle, ct.Admission, first.ID, e.q)
	}
	h := e.holds()
	if until := time.Until(h[first.ID]); len(h) != 1 || until < 8*time.Second || until > 11*time.Second {
		t.Fatalf("holds %v: want %s's only, for about the lease TTL (10s)", h, first.ID)
	}
	_, win := e.b.QuotaKeys(e.q)
	if n, err := e.b.Client().Do(e.ctx, e.b.Client().B().Zcard().Key(win).Build()).AsInt64(); err != nil || n != 1 {
		t.Fatalf("window holds %d entries (%v), want the hand-off's one", n, err)
	}

	// The cap (1) is full: the next create is not handed off; it waits
	// eligible, and the other offer stays open.
	second := e.create()
	if second.State != sdk.StateWaiting || e.state(second.ID) != sdk.StateWaiting {
		t.Fatalf("create under a full cap: %q, want waiting", second.State)
	}
	if h := e.holds(); len(h) != 1 {
		t.Fatalf("a refused hand-off changed the holds: %v", h)
	}
	left := 0
	for _, o := range offers {
		if o.LeaseID != ct.Handle.LeaseID {
			taken, err := e.b.RefreshOffers(e.ctx, []sdk.ClaimOffer{o}, time.Minute)
			if err != nil || taken[0] {
				t.Fatalf("the offer a refused admission skipped: taken %v (%v), want open", taken, err)
			}
			left++
		}
	}
	if left != 1 {
		t.Fatalf("%d offers besides the taken one", left)
	}
	// The hold goes (the worker gives the hand-off back): the waiting one
	// is admitted by the claim path.
	if err := e.b.GiveBackAdmission(e.ctx, e.q, first.ID, ct.Admission.Member); err != nil {
		t.Fatal(err)
	}
	if h := e.holds(); len(h) != 0 {
		t.Fatalf("holds after the giveback: %v", h)
	}
	if n, _ := e.b.Client().Do(e.ctx, e.b.Client().B().Zcard().Key(win).Build()).AsInt64(); n != 0 {
		t.Fatalf("window after the giveback: %d entries, want 0", n)
	}
	got, ad, err := e.b.ClaimForWorker(e.ctx, sdk.ClaimForWorkerArgs{Lane: e.lane, WorkerID: "c", WorkerInstanceID: "c-1", LeaseTTL: time.Minute})
	if err != nil || got == nil || got.Handle.ExecutionID != second.ID || !ad.Admitted {
		t.Fatalf("claim of the refused hand-off's execution: %v %+v %v", got, ad, err)
	}
	// A giveback of a member that is not the execution's is refused.
	if err := e.b.GiveBackAdmission(e.ctx, e.q, first.ID, string(second.ID)+" x"); sdk.CodeOf(err) != sdk.CodeInvalidInput {
		t.Fatalf("giveback of another execution's member: %v, want invalid_input", err)
	}
}

// TestHandoffUnderQuotaRate: a create the rate refuses is not handed off;
// the admission path then parks it (rate_limited) until the window allows.
func TestHandoffUnderQuotaRate(t *testing.T) {
	e := newQuotaHandoffEnv(t, sdk.QuotaPolicy{ID: "qr", Rate: 1, Window: time.Minute})
	e.offer(2, 10*time.Second)
	if first := e.create(); first.State != sdk.StateActive {
		t.Fatalf("first create: %q, want active", first.State)
	}
	e.handoff()
	second := e.create()
	if second.State != sdk.StateWaiting {
		t.Fatalf("create over the rate: %q, want waiting", second.State)
	}
	got, ad, err := e.b.ClaimForWorker(e.ctx, sdk.ClaimForWorkerArgs{Lane: e.lane, WorkerID: "c", WorkerInstanceID: "c-1", LeaseTTL: time.Minute})
	if err != nil || got != nil || ad.Reason != "rate_limited" {
		t.Fatalf("claim over the rate: %v %+v %v, want a rate_limited refusal", got, ad, err)
	}
	if st := e.state(second.ID); st != sdk.StateRateLimited {
		t.Fatalf("refused execution is %q, want rate_limited (parked)", st)
	}
}

// TestHandoffUnderQuotaLapses: a hand-off's hold whose holder never renews
// (a crash) lapses with the lease; once the lease is reclaimed the
// execution is admitted again by the claim path.
func TestHandoffUnderQuotaLapses(t *testing.T) {
	e := newQuotaHandoffEnv(t, sdk.QuotaPolicy{ID: "ql", Concurrency: 1})
	e.offer(1, 300*time.Millisecond)
	res := e.create()
	if res.State != sdk.StateActive {
		t.Fatalf("create: %q, want active", res.State)
	}
	e.handoff()
	time.Sleep(400 * time.Millisecond)
	if _, err := e.b.ReclaimExpired(e.ctx, []sdk.ExecutionID{res.ID}, 10); err != nil {
		t.Fatal(err)
	}
	got, ad, err := e.b.ClaimForWorker(e.ctx, sdk.ClaimForWorkerArgs{Lane: e.lane, WorkerID: "c", WorkerInstanceID: "c-1", LeaseTTL: time.Minute})
	if err != nil || got == nil || got.Handle.ExecutionID != res.ID || !ad.Admitted || ad.Held {
		t.Fatalf("claim after the holder's crash: %v %+v %v, want it admitted anew", got, ad, err)
	}
}

// TestHandoffUnderQuotaNeedsAdmission: an offer made under a quota takes
// nothing from a create that passes no quota keys (a producer without the
// client-side cache, so without the lane's policy), nor from a complete
// batch's backlog hand-off; a cluster refuses such offers (Unavailable) and
// its creates keep the claim path.
func TestHandoffUnderQuotaNeedsAdmission(t *testing.T) {
	e := newQuotaHandoffEnv(t, sdk.QuotaPolicy{ID: "qn", Concurrency: 5})
	plain, err := valkeybackend.Connect(e.ctx, valkeybackend.Options{Addrs: topologies()[0].addrs(t), Partitions: 1, CacheSizeEachConn: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	offers := e.offer(1, 10*time.Second)
	res, err := plain.CreateExecution(e.ctx, sdk.CreateExecutionArgs{Lane: e.lane, Kind: "k"})
	if err != nil || res.State != sdk.StateWaiting {
		t.Fatalf("create without quota keys: %+v %v, want waiting (not handed off)", res, err)
	}
	if taken, err := e.b.RefreshOffers(e.ctx, offers, time.Minute); err != nil || taken[0] {
		t.Fatalf("the quota offer after an unadmitted create: taken %v (%v), want open", taken, err)
	}
	if h := e.holds(); len(h) != 0 {
		t.Fatalf("holds without an admission: %v", h)
	}
	// A producer with the policy admits the backlog's head (the waiting
	// one) and hands it off, its own execution waiting behind it; a
	// complete with an offer under the quota leaves that one to the claim
	// path.
	r := e.create()
	ct := e.handoff()
	if r.State != sdk.StateWaiting || ct.Handle.ExecutionID != res.ID || ct.Admission == nil {
		t.Fatalf("create with the policy behind a backlog: %q, hand-off of %s (admission %+v), want waiting and the head %s admitted",
			r.State, ct.Handle.ExecutionID, ct.Admission, res.ID)
	}
	res = r
	out := e.b.CompleteBatch(e.ctx, []sdk.CompleteItem{{Handle: ct.Handle, Offer: &sdk.OfferArgs{Lane: e.lane,
		LeaseIDs: []string{sdk.NewToken()}, WorkerID: "qw", WorkerInstanceID: e.inst, LeaseTTL: 10 * time.Second, TTL: time.Minute, Quota: e.q}}})
	if out[0].Err != nil || out[0].OfferErr != nil {
		t.Fatalf("complete with an offer under the quota: %+v", out[0])
	}
	if st := e.state(res.ID); st != sdk.StateWaiting {
		t.Fatalf("the backlog after a complete with a quota offer: %q, want waiting (not handed off unadmitted)", st)
	}

	c := freshBackend(t, topologies()[1].addrs(t), valkeybackend.Options{Partitions: 1})
	wctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	if err := c.WatchHandoffs(wctx, "cw-1", func(sdk.ClaimedTask) {}); err != nil {
		t.Fatal(err)
	}
	_, err = c.OfferClaims(e.ctx, sdk.OfferArgs{Lane: e.lane, LeaseIDs: []string{sdk.NewToken()}, WorkerID: "cw",
		WorkerInstanceID: "cw-1", TTL: time.Minute, Quota: e.q})
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("offer under a quota on a cluster: %v, want Unavailable", err)
	}
}

// TestHandoffUnderQuotaBatch: a batch submit (CreateExecutions, one
// ff_create_batch) admits what it hands to offers made under the lane's
// quota, as a single create does: the first item of the quota'd lane is
// handed off carrying its admission, the next one (the cap of 1 full)
// waits eligible with the other offer left open, and an item of a lane
// without a quota in the same call is handed off with no admission.
func TestHandoffUnderQuotaBatch(t *testing.T) {
	e := newQuotaHandoffEnv(t, sdk.QuotaPolicy{ID: "qb", Concurrency: 1, Rate: 100, Window: time.Minute})
	offers := e.offer(2, 10*time.Second)
	const plainLane = sdk.LaneID("qho-plain")
	if _, err := e.b.OfferClaims(e.ctx, sdk.OfferArgs{Lane: plainLane, LeaseIDs: []string{sdk.NewToken()}, WorkerID: "qw",
		WorkerInstanceID: e.inst, LeaseTTL: 10 * time.Second, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	res, err := e.producer.CreateExecutions(e.ctx, []sdk.CreateExecutionArgs{
		{Lane: e.lane, Kind: "k"}, {Lane: plainLane, Kind: "k"}, {Lane: e.lane, Kind: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	admitted, plain, refused := res[0], res[1], res[2]
	if admitted.State != sdk.StateActive || plain.State != sdk.StateActive || refused.State != sdk.StateWaiting {
		t.Fatalf("batch states %q %q %q, want active (admitted hand-off), active (plain hand-off), waiting (cap full)",
			admitted.State, plain.State, refused.State)
	}
	got := map[sdk.ExecutionID]sdk.ClaimedTask{}
	for range 2 {
		ct := e.handoff()
		got[ct.Handle.ExecutionID] = ct
	}
	ct, ok := got[admitted.ID]
	if !ok || ct.Admission == nil || ct.Admission.Quota != e.q || !strings.HasPrefix(ct.Admission.Member, string(admitted.ID)+" ") {
		t.Fatalf("hand-offs %+v: want %s handed off admitted under %s", got, admitted.ID, e.q)
	}
	if pt, ok := got[plain.ID]; !ok || pt.Admission != nil {
		t.Fatalf("hand-offs %+v: want %s handed off without an admission", got, plain.ID)
	}
	select {
	case extra := <-e.got:
		t.Fatalf("a third hand-off (%s): the refused item must wait", extra.Handle.ExecutionID)
	default:
	}
	if h := e.holds(); len(h) != 1 || h[admitted.ID].IsZero() {
		t.Fatalf("holds %v: want the admitted hand-off's only", h)
	}
	_, win := e.b.QuotaKeys(e.q)
	if n, err := e.b.Client().Do(e.ctx, e.b.Client().B().Zcard().Key(win).Build()).AsInt64(); err != nil || n != 1 {
		t.Fatalf("window holds %d entries (%v), want the hand-off's one", n, err)
	}
	if st := e.state(refused.ID); st != sdk.StateWaiting {
		t.Fatalf("refused item is %q, want waiting", st)
	}
	for _, o := range offers {
		if o.LeaseID == ct.Handle.LeaseID {
			continue
		}
		taken, err := e.b.RefreshOffers(e.ctx, []sdk.ClaimOffer{o}, time.Minute)
		if err != nil || taken[0] {
			t.Fatalf("the offer a refused admission skipped: taken %v (%v), want open", taken, err)
		}
	}
	// The admission path takes the refused item once the hold is released.
	if err := e.b.GiveBackAdmission(e.ctx, e.q, admitted.ID, ct.Admission.Member); err != nil {
		t.Fatal(err)
	}
	c, ad, err := e.b.ClaimForWorker(e.ctx, sdk.ClaimForWorkerArgs{Lane: e.lane, WorkerID: "c", WorkerInstanceID: "c-1", LeaseTTL: time.Minute})
	if err != nil || c == nil || c.Handle.ExecutionID != refused.ID || !ad.Admitted {
		t.Fatalf("claim of the refused item: %v %+v %v", c, ad, err)
	}
}

// TestHandoffUnderQuotaClusterCompleteOffer: on a cluster, an offer under
// a quota riding on a completion (CompleteAndOffer, CompleteBatch) is
// refused as OfferClaims refuses it (Unavailable, in the offer's error),
// and the completion still lands alone.
func TestHandoffUnderQuotaClusterCompleteOffer(t *testing.T) {
	ctx := context.Background()
	c := freshBackend(t, topologies()[1].addrs(t), valkeybackend.Options{})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := c.WatchHandoffs(wctx, "cw-1", func(sdk.ClaimedTask) {}); err != nil {
		t.Fatal(err)
	}
	offer := sdk.OfferArgs{Lane: "rec", LeaseIDs: []string{sdk.NewToken()}, WorkerID: "cw", WorkerInstanceID: "cw-1",
		LeaseTTL: 10 * time.Second, TTL: time.Minute, Quota: "cq"}
	id, task := claimOne(t, c, sdk.CreateExecutionArgs{}, time.Minute)
	offers, offerErr, err := c.CompleteAndOffer(ctx, task.Handle, []byte("r"), offer)
	if err != nil || !errors.Is(offerErr, sdk.ErrUnavailable) || len(offers) != 0 {
		t.Fatalf("CompleteAndOffer under a quota on a cluster: offers %v, offer error %v, error %v; want Unavailable and the complete",
			offers, offerErr, err)
	}
	if st, err := c.ReadExecutionState(ctx, id); err != nil || st != sdk.StateCompleted {
		t.Fatalf("state after the refused offer: %q %v, want completed", st, err)
	}
	id, task = claimOne(t, c, sdk.CreateExecutionArgs{}, time.Minute)
	out := c.CompleteBatch(ctx, []sdk.CompleteItem{{Handle: task.Handle, Offer: &offer}})
	if out[0].Err != nil || !errors.Is(out[0].OfferErr, sdk.ErrUnavailable) || len(out[0].Offers) != 0 {
		t.Fatalf("CompleteBatch with an offer under a quota on a cluster: %+v; want Unavailable and the complete", out[0])
	}
	if st, err := c.ReadExecutionState(ctx, id); err != nil || st != sdk.StateCompleted {
		t.Fatalf("state after the refused batch offer: %q %v, want completed", st, err)
	}
	// The refusal is the quota's: the same offer without one is posted.
	offer.Quota = ""
	_, task = claimOne(t, c, sdk.CreateExecutionArgs{}, time.Minute)
	if offers, offerErr, err = c.CompleteAndOffer(ctx, task.Handle, nil, offer); err != nil || offerErr != nil || len(offers) != 1 {
		t.Fatalf("CompleteAndOffer without a quota on a cluster: offers %v, offer error %v, error %v; want the offer posted",
			offers, offerErr, err)
	}
}
