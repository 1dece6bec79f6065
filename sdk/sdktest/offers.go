package sdktest

import (
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// inbox collects what WatchHandoffs delivers to the suite's worker
// instance. deliver must not block, so it only buffers; a hand-off that
// finds the buffer full is counted and fails the subtest.
type inbox struct {
	ch      chan sdk.ClaimedTask
	dropped atomic.Int64
}

// watchHandoffs starts watching the hand-offs of workerInstance until the
// subtest ends.
func (e *env) watchHandoffs(co sdk.ClaimOfferer) *inbox {
	e.t.Helper()
	in := &inbox{ch: make(chan sdk.ClaimedTask, 64)}
	e.must("WatchHandoffs", co.WatchHandoffs(e.ctx, workerInstance, func(t sdk.ClaimedTask) {
		select {
		case in.ch <- t:
		default:
			in.dropped.Add(1)
		}
	}))
	e.t.Cleanup(func() {
		if n := in.dropped.Load(); n > 0 {
			e.t.Errorf("%d hand-offs overflowed the suite's buffer of %d", n, cap(in.ch))
		}
	})
	return in
}

// next waits (settleDeadline at most) for the next hand-off.
func (in *inbox) next(e *env, what string) sdk.ClaimedTask {
	e.t.Helper()
	select {
	case t := <-in.ch:
		return t
	case <-time.After(settleDeadline):
		e.t.Fatalf("%s: no hand-off delivered within %v", what, settleDeadline)
	case <-e.ctx.Done():
		e.t.Fatalf("%s: subtest deadline passed waiting for a hand-off", what)
	}
	return sdk.ClaimedTask{}
}

// none fails if a hand-off was delivered that the subtest did not expect
// (callers first prove by state that nothing was handed off).
func (in *inbox) none(e *env, when string) {
	e.t.Helper()
	select {
	case t := <-in.ch:
		e.t.Fatalf("%s: unexpected hand-off of %s (lease %s)", when, t.Handle.ExecutionID, t.Handle.LeaseID)
	default:
	}
}

// offerArgs asks for n offers on lane by the suite's worker.
func offerArgs(lane sdk.LaneID, n int) sdk.OfferArgs {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = sdk.NewToken()
	}
	return sdk.OfferArgs{Lane: lane, LeaseIDs: ids, WorkerID: workerID, WorkerInstanceID: workerInstance,
		LeaseTTL: leaseTTL, TTL: time.Minute}
}

// offer posts args and checks one offer came back per lease id, in order.
func (e *env) offer(co sdk.ClaimOfferer, args sdk.OfferArgs) []sdk.ClaimOffer {
	e.t.Helper()
	offers, err := co.OfferClaims(e.ctx, args)
	if err != nil {
		e.t.Fatalf("OfferClaims(%q, %d) = %v", args.Lane, len(args.LeaseIDs), err)
	}
	e.requireOffers("OfferClaims", offers, args)
	return offers
}

func (e *env) requireOffers(what string, offers []sdk.ClaimOffer, args sdk.OfferArgs) {
	e.t.Helper()
	if len(offers) != len(args.LeaseIDs) {
		e.t.Fatalf("%s: %d offers for %d lease ids", what, len(offers), len(args.LeaseIDs))
	}
	for i, o := range offers {
		if o.Lane != args.Lane || o.LeaseID != args.LeaseIDs[i] {
			e.t.Fatalf("%s: offer %d is lease %s on %q, want %s on %q", what, i, o.LeaseID, o.Lane, args.LeaseIDs[i], args.Lane)
		}
	}
}

// requireTaken checks what RefreshOffers or WithdrawOffers says was gone.
func (e *env) requireTaken(what string, taken []bool, err error, want ...bool) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s = %v", what, err)
	}
	if fmt.Sprint(taken) != fmt.Sprint(want) {
		e.t.Fatalf("%s: taken %v, want %v", what, taken, want)
	}
}

// nearOffer places args where offer serves creates: on its partition when
// the backend keeps offers per partition (ClaimOffer.Partition), anywhere
// otherwise.
func nearOffer(args sdk.CreateExecutionArgs, offer sdk.ClaimOffer) sdk.CreateExecutionArgs {
	if offer.Partition >= 0 {
		return onPartition(args, offer.Partition)
	}
	return args
}

// createHandedOff creates args into an empty eligible set, where the first
// of open (offers of the suite's worker) serves creates, and checks the
// create claimed it for an offer: the create answers active, and the
// hand-off carries a lease of one of open with the context inline.
func (e *env) createHandedOff(in *inbox, args sdk.CreateExecutionArgs, open ...sdk.ClaimOffer) sdk.ClaimedTask {
	e.t.Helper()
	args = nearOffer(args, open[0])
	before := time.Now()
	res, err := e.b.CreateExecution(e.ctx, args)
	after := time.Now()
	if err != nil || res.Duplicate {
		e.t.Fatalf("CreateExecution(lane %q) = %+v, %v", args.Lane, res, err)
	}
	if res.State != sdk.StateActive {
		e.t.Fatalf("CreateExecution with an offer open: state %q, want active (claimed for the offer)", res.State)
	}
	t := in.next(e, "create with an offer open")
	e.checkTask("hand-off", t, res.ID, leaseTTL, before, after, sdk.AttemptInitial, contextOf(args))
	for _, o := range open {
		if t.Handle.LeaseID == o.LeaseID {
			e.requireScannable(args.Lane, res.ID, false, "handed off")
			return t
		}
	}
	e.t.Fatalf("hand-off of %s carries lease %s, not one of the open offers %v", res.ID, t.Handle.LeaseID, open)
	return t
}

// createEligible creates into lane, where offer (the one in question)
// served creates, and checks no offer took it: it waits in the eligible
// set (when says why no offer should have).
func (e *env) createEligible(lane sdk.LaneID, offer sdk.ClaimOffer, when string) sdk.ExecutionID {
	e.t.Helper()
	id := e.create(nearOffer(simple(lane), offer)) // fails unless it is waiting
	e.requireScannable(lane, id, true, when)
	return id
}

// testHandoff: a create into an empty lane is claimed for an open offer and
// handed to its worker; each offer is spent once.
func testHandoff(e *env) {
	co := need(e, e.roles.ClaimOfferer, sdk.RoleClaimOffers)
	const lane sdk.LaneID = "sdktest-offers"
	in := e.watchHandoffs(co)
	offers := e.offer(co, offerArgs(lane, 2))
	open := slices.Clone(offers)
	for i := range 2 {
		args := sdk.CreateExecutionArgs{Lane: lane, Kind: "sdktest.handoff", Payload: binaryPayload(),
			Tags: map[string]string{"n": fmt.Sprint(i)}}
		t := e.createHandedOff(in, args, open...)
		open = slices.DeleteFunc(open, func(o sdk.ClaimOffer) bool { return o.LeaseID == t.Handle.LeaseID })
		// The hand-off is a real lease.
		if _, err := e.b.Renew(e.ctx, t.Handle); err != nil {
			e.t.Fatalf("Renew of a handed-off lease = %v", err)
		}
		e.must("Complete of a handed-off lease", e.b.Complete(e.ctx, t.Handle, []byte("ok")))
	}
	taken, err := co.RefreshOffers(e.ctx, offers, time.Minute)
	e.requireTaken("RefreshOffers of spent offers", taken, err, true, true)
	taken, err = co.WithdrawOffers(e.ctx, offers)
	e.requireTaken("WithdrawOffers of spent offers", taken, err, true, true)

	// No offer left: the next create waits in the eligible set.
	e.createEligible(lane, offers[0], "created with every offer spent")
	e.createEligible(lane, offers[1], "created with every offer spent")
	in.none(e, "every offer spent")
}

// testWithdrawOffers: a withdrawn offer takes nothing; an open offer is
// passed over by work its worker cannot run and by delayed work.
func testWithdrawOffers(e *env) {
	co := need(e, e.roles.ClaimOfferer, sdk.RoleClaimOffers)
	const lane sdk.LaneID = "sdktest-offers-withdraw"
	in := e.watchHandoffs(co)
	offers := e.offer(co, offerArgs(lane, 1))
	taken, err := co.WithdrawOffers(e.ctx, offers)
	e.requireTaken("WithdrawOffers of an open offer", taken, err, false)
	id := e.createEligible(lane, offers[0], "created after the offer was withdrawn")
	e.claim(id, lane, leaseTTL)

	offers = e.offer(co, offerArgs(lane, 1)) // no capabilities
	args := nearOffer(simple(lane), offers[0])
	args.RequiredCapabilities = []string{"gpu"}
	gpu := e.create(args)
	e.requireScannable(lane, gpu, true, "needs a capability the open offer lacks")
	args = nearOffer(simple(lane), offers[0])
	args.DelayUntil = time.Now().Add(time.Hour)
	e.create(args)
	taken, err = co.WithdrawOffers(e.ctx, offers)
	e.requireTaken("WithdrawOffers of an offer passed over", taken, err, false)
	in.none(e, "offers withdrawn or passed over")
}

// testRefreshOffers: RefreshOffers and WithdrawOffers answer per offer,
// in order, across lanes; RefreshOffers keeps an offer open past its TTL;
// an offer left unrefreshed expires, takes nothing, and is reported gone.
func testRefreshOffers(e *env) {
	co := need(e, e.roles.ClaimOfferer, sdk.RoleClaimOffers)
	const lane, other sdk.LaneID = "sdktest-offers-refresh", "sdktest-offers-refresh-other"
	in := e.watchHandoffs(co)

	mixed := append(e.offer(co, offerArgs(lane, 1)), e.offer(co, offerArgs(other, 1))...)
	mixed = append(mixed, e.offer(co, offerArgs(lane, 1))...)
	t := e.createHandedOff(in, simple(other), mixed[1])
	taken, err := co.RefreshOffers(e.ctx, mixed, time.Minute)
	e.requireTaken("RefreshOffers of offers on two lanes, the middle one spent", taken, err, false, true, false)
	taken, err = co.WithdrawOffers(e.ctx, mixed)
	e.requireTaken("WithdrawOffers of offers on two lanes, the middle one spent", taken, err, false, true, false)
	e.must("Complete of a handed-off lease", e.b.Complete(e.ctx, t.Handle, nil))

	args := offerArgs(lane, 1)
	args.TTL = 200 * time.Millisecond
	posted := time.Now()
	offers := e.offer(co, args)
	taken, err = co.RefreshOffers(e.ctx, offers, time.Minute)
	e.requireTaken("RefreshOffers of an open offer", taken, err, false)
	e.sleepUntil(posted.Add(args.TTL + 100*time.Millisecond))
	t = e.createHandedOff(in, simple(lane), offers[0])
	e.must("Complete of a handed-off lease", e.b.Complete(e.ctx, t.Handle, nil))

	args = offerArgs(lane, 1)
	args.TTL = 100 * time.Millisecond
	posted = time.Now()
	offers = e.offer(co, args)
	e.sleepUntil(posted.Add(args.TTL + 100*time.Millisecond))
	e.createEligible(lane, offers[0], "created after the offer expired")
	taken, err = co.RefreshOffers(e.ctx, offers, time.Minute)
	e.requireTaken("RefreshOffers of an expired offer", taken, err, true)
	in.none(e, "offer expired")
}

// testCompleteAndOffer: CompleteAndOffer completes and posts its offer in
// one call; when the complete does not land nothing is posted (or
// written), and when the offer is refused the complete goes ahead alone.
func testCompleteAndOffer(e *env) {
	co := need(e, e.roles.ClaimOfferer, sdk.RoleClaimOffers)
	cof := need(e, e.roles.CompleteOfferer, sdk.RoleCompleteOffer)
	const lane sdk.LaneID = "sdktest-complete-offer"
	in := e.watchHandoffs(co)
	completeAndOffer := func(h sdk.Handle, result string, args sdk.OfferArgs) ([]sdk.ClaimOffer, error, error) {
		return cof.CompleteAndOffer(e.ctx, h, []byte(result), args)
	}
	requireResult := func(id sdk.ExecutionID, want string) {
		e.t.Helper()
		e.requireState(id, sdk.StateCompleted, "CompleteAndOffer")
		if r, err := e.b.GetExecutionResult(e.ctx, id); err != nil || string(r) != want {
			e.t.Fatalf("GetExecutionResult after CompleteAndOffer = %q, %v; want %q", r, err, want)
		}
	}

	id := e.create(simple(lane))
	c := e.claim(id, lane, leaseTTL)
	args := offerArgs(lane, 1)
	offers, offerErr, err := completeAndOffer(c.Handle, "done", args)
	if err != nil || offerErr != nil {
		e.t.Fatalf("CompleteAndOffer = %v, %v (offer error, complete error)", offerErr, err)
	}
	e.requireOffers("CompleteAndOffer", offers, args)
	requireResult(id, "done")
	t := e.createHandedOff(in, simple(lane), offers...)
	e.must("Complete of a handed-off lease", e.b.Complete(e.ctx, t.Handle, nil))
	// Where an offer made with h's complete would serve creates: h's
	// partition when offers are kept per partition.
	perPartition := offers[0].Partition >= 0
	offerOf := func(h sdk.Handle) sdk.ClaimOffer {
		if !perPartition {
			return sdk.ClaimOffer{Partition: -1}
		}
		p, _ := h.ExecutionID.Partition()
		return sdk.ClaimOffer{Partition: p}
	}

	// The complete does not land: no offer, nothing written.
	e.rejects("CompleteAndOffer with a completed execution's handle", func() error {
		offers, offerErr, err := completeAndOffer(c.Handle, "again", offerArgs(lane, 1))
		if offers != nil || offerErr != nil {
			e.t.Fatalf("CompleteAndOffer whose complete failed posted offers %v (offer error %v)", offers, offerErr)
		}
		return err
	}, sdk.ErrExecutionNotActive)
	id = e.createEligible(lane, offerOf(c.Handle), "created after a CompleteAndOffer that did not land")

	// The offer is refused (no TTL): the complete goes ahead alone.
	c = e.claim(id, lane, leaseTTL)
	args = offerArgs(lane, 1)
	args.TTL = 0
	offers, offerErr, err = completeAndOffer(c.Handle, "alone", args)
	if err != nil || offers != nil {
		e.t.Fatalf("CompleteAndOffer with a refused offer = %v, %v; want the complete alone", offers, err)
	}
	requireErr(e.t, "CompleteAndOffer's offer error for an offer without a TTL", offerErr, sdk.ErrValidation)
	requireResult(id, "alone")
	e.createEligible(lane, offerOf(c.Handle), "created after a CompleteAndOffer whose offer was refused")
	in.none(e, "no offer open")
}
