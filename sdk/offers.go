package sdk

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Claim offers (ClaimOfferer): an idle worker offers its free slots, and a
// create into an empty eligible set claims the new execution for one of
// them and hands it over, so the worker holds the lease one submit round
// trip after the submit, with no claim call of its own. While the worker
// idles with offers, a task that completes offers its slot in the same
// round trip (CompleteOfferer).
//
// Every offer reserves a slot from before its call goes out (its lease id
// is known then, so a hand-off that overtakes the call's reply still finds
// it). An offer ends one of four ways:
//   - its hand-off arrives (takeHandoff): the slot runs the task;
//   - its call fails: the slot is released (an offer that landed anyway is
//     a stray: its hand-off runs if a slot is free, else goes back);
//   - it is withdrawn or refreshed and found still open: the slot is
//     released, or stays offered;
//   - it is found gone (taken, its hand-off still on the way, or expired):
//     the slot stays reserved until the hand-off arrives or the lease it
//     would carry has expired (a lost hand-off is recovered by the reclaim
//     scanner, like a crashed worker's lease).

// offerTTLFactor sets how long an offer stands: this many idle polls (the
// idle poll refreshes it), so a worker that died idle stops being handed
// work after at most that.
const offerTTLFactor = 4

// handoffShutdownWait bounds how long shutdown waits for the hand-offs of
// offers found taken when it withdrew them.
const handoffShutdownWait = time.Second

// createFlowWindow is how long a sign of creates coming counts: while it
// does, completes offer their slots up to offerCap even with no offer
// left open.
const createFlowWindow = time.Second

// handoffWindow is the window over which a worker counts the hand-offs its
// offers received, its measure of how fast creates take them (offerCap).
const handoffWindow = 100 * time.Millisecond

// offerTakenWithin is how soon, at the measured hand-off rate, creates
// must be expected to take an offer for it to stay open while work is in
// sight: one taken that soon costs its slot little, one that would wait
// longer idles the slot while work waits.
const offerTakenWithin = 50 * time.Millisecond

// offerBook is a worker's offers: open ones (Ref empty while the call that
// posts them is under way) and taken ones whose hand-off has not come. It
// owns its lock; every change to its state is one of its methods. It does
// not count slots: the methods return how many slots their change freed,
// for the caller to release.
type offerBook struct {
	mu     sync.Mutex
	open   map[string]ClaimOffer // lease id → offer (slot reserved)
	taken  map[string]time.Time  // lease id → when to give up on its hand-off
	closed bool                  // shutdown: hand-offs go back
	// arrived is signalled (non-blocking) when a taken offer's hand-off
	// arrives, for shutdown's wait.
	arrived chan struct{}
	// idle is set by the claim loop while it waits with offers open and no
	// work in sight: then a completing task offers its slot too.
	idle atomic.Bool
	// refreshed is when the claim loop last refreshed the offers (only the
	// claim loop reads or writes it).
	refreshed time.Time
	// lastCreate is when (unix ns) the worker last saw a sign that creates
	// are coming: a hand-off, or an arrival (a create into an empty set
	// that found no live offer).
	lastCreate atomic.Int64
	// The hand-offs of the current handoffWindow (begun at winStart) and
	// of the window before it (zero when it saw none or is older), under
	// mu.
	winStart            time.Time
	winCount, lastCount int
}

func newOfferBook() offerBook {
	return offerBook{open: make(map[string]ClaimOffer), taken: make(map[string]time.Time), arrived: make(chan struct{}, 1)}
}

// sawCreate records a sign that creates are coming.
func (b *offerBook) sawCreate() { b.lastCreate.Store(time.Now().UnixNano()) }

// createsFlowing reports whether creates were seen coming within
// createFlowWindow.
func (b *offerBook) createsFlowing() bool {
	return time.Since(time.Unix(0, b.lastCreate.Load())) < createFlowWindow
}

func (b *offerBook) openCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.open)
}

// counts returns how many offers are open and how many taken.
func (b *offerBook) counts() (open, taken int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.open), len(b.taken)
}

// firstGiveUp returns the earliest deadline of the taken offers' hand-offs;
// false when none is awaited.
func (b *offerBook) firstGiveUp() (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var first time.Time
	for _, at := range b.taken {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	return first, !first.IsZero()
}

// posted returns up to max open offers whose call has returned.
func (b *offerBook) posted(max int) []ClaimOffer {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]ClaimOffer, 0, min(len(b.open), max))
	for _, o := range b.open {
		if len(out) == max {
			break
		}
		if o.Ref != "" {
			out = append(out, o)
		}
	}
	return out
}

// register records lease ids about to be offered on lane (slots already
// reserved); false after shutdown began.
func (b *offerBook) register(lane LaneID, ids []string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	for _, id := range ids {
		b.open[id] = ClaimOffer{Lane: lane, LeaseID: id}
	}
	return true
}

// settle records the outcome of the call that posted ids: the offers it
// returned become withdrawable; on failure (offers nil) the ones whose
// hand-off has not come are dropped. It returns how many were dropped
// (their slots to release).
func (b *offerBook) settle(ids []string, offers []ClaimOffer) (dropped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if offers == nil {
		for _, id := range ids {
			if _, ok := b.open[id]; ok {
				delete(b.open, id)
				dropped++
			}
		}
		return dropped
	}
	for _, o := range offers {
		if _, ok := b.open[o.LeaseID]; ok { // else its hand-off came first
			b.open[o.LeaseID] = o
		}
	}
	return 0
}

// resolve records what a withdraw or refresh found: an offer found gone
// becomes taken (its hand-off awaited until giveUp); one found open is
// dropped when withdrawn, kept when refreshed. It returns how many were
// dropped (their slots to release).
func (b *offerBook) resolve(offers []ClaimOffer, taken []bool, withdraw bool, giveUp time.Time) (dropped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, o := range offers {
		if _, still := b.open[o.LeaseID]; !still {
			continue // its hand-off arrived meanwhile
		}
		switch {
		case taken[i]:
			delete(b.open, o.LeaseID)
			b.taken[o.LeaseID] = giveUp
		case withdraw:
			delete(b.open, o.LeaseID)
			dropped++
		}
	}
	return dropped
}

// expireTaken gives up on the taken offers whose hand-off is overdue at now
// and returns how many (their slots to release).
func (b *offerBook) expireTaken(now time.Time) (n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, at := range b.taken {
		if now.After(at) {
			delete(b.taken, id)
			n++
		}
	}
	return n
}

// handoff resolves the offer a hand-off names (lease id). Unless the book
// is closed, or no offer matches and reserve finds no free slot, it runs
// start under the book's lock (so close cannot come in between) and
// reports started. When it did not start, slotHeld says the matching offer
// had a slot reserved, for the caller to release.
func (b *offerBook) handoff(id string, reserve func() bool, start func()) (started, slotHeld bool) {
	b.mu.Lock()
	_, open := b.open[id]
	_, taken := b.taken[id]
	delete(b.open, id)
	delete(b.taken, id)
	reserved := open || taken
	if b.closed || (!reserved && !reserve()) {
		b.mu.Unlock()
		return false, reserved
	}
	b.sawCreate()
	b.rollWindow(time.Now())
	b.winCount++
	start()
	b.mu.Unlock()
	if taken {
		select {
		case b.arrived <- struct{}{}:
		default:
		}
	}
	return true, false
}

// rollWindow starts a new hand-off window when the current one is over
// at now (b.mu held).
func (b *offerBook) rollWindow(now time.Time) {
	switch d := now.Sub(b.winStart); {
	case d >= 2*handoffWindow:
		b.winStart, b.winCount, b.lastCount = now, 0, 0
	case d >= handoffWindow:
		b.winStart, b.winCount, b.lastCount = b.winStart.Add(handoffWindow), 0, b.winCount
	}
}

// handoffRate returns the hand-offs of the last full handoffWindow, or of
// the current one when it already saw more.
func (b *offerBook) handoffRate() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rollWindow(time.Now())
	return max(b.winCount, b.lastCount)
}

// takenCount returns how many taken offers still await their hand-off.
func (b *offerBook) takenCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.taken)
}

// close ends the book at shutdown: later hand-offs go back. It returns how
// many offers were still open or taken (their slots to release).
func (b *offerBook) close() (n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	n = len(b.open) + len(b.taken)
	clear(b.open)
	clear(b.taken)
	return n
}

// startOffers subscribes to the worker's hand-offs when the backend has
// claim offers; when that fails the worker runs without offers (claiming
// after arrival pushes only).
func (w *Worker) startOffers(ctx context.Context) {
	if w.roles.ClaimOfferer == nil {
		return
	}
	if err := w.roles.ClaimOfferer.WatchHandoffs(ctx, w.cfg.InstanceID, w.takeHandoff); err != nil {
		w.reportError(err)
		w.roles.ClaimOfferer, w.roles.CompleteOfferer = nil, nil
	}
}

// offerTTL is how long each offer stands between refreshes.
func (w *Worker) offerTTL() time.Duration { return offerTTLFactor * w.cfg.IdlePoll }

// offerArgs describes offers of lane named ids (quota: the lane's, when
// its claims are admitted under one).
func (w *Worker) offerArgs(lane LaneID, quota QuotaID, ids []string) OfferArgs {
	return OfferArgs{Lane: lane, LeaseIDs: ids, WorkerID: w.cfg.WorkerID, WorkerInstanceID: w.cfg.InstanceID,
		Capabilities: w.cfg.Capabilities, LeaseTTL: w.cfg.HandoffLeaseTTL, TTL: w.offerTTL(), Quota: quota}
}

func newTokens(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = NewToken()
	}
	return ids
}

// offerFree offers every free slot, spread over the lanes. A failure
// releases the slots it could not offer.
func (w *Worker) offerFree(ctx context.Context) {
	if w.roles.ClaimOfferer == nil {
		return
	}
	k := w.slots.reserve(w.slots.free())
	if k == 0 {
		return
	}
	if w.offers.openCount() == 0 {
		w.offers.refreshed = time.Now() // every offer open from here on is this fresh or fresher
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), minCallTimeout)
	defer cancel()
	nl := len(w.cfg.Lanes)
	start := w.cursor.lane
	for i := range nl {
		n := k / nl
		if i < k%nl {
			n++
		}
		if n > 0 {
			w.offerLane(ctx, cctx, w.cfg.Lanes[(start+i)%nl], n)
		}
	}
}

// offerLane posts n offers on lane, their slots reserved (none on a lane
// with a policy: paused, or claimed through admission).
func (w *Worker) offerLane(ctx, cctx context.Context, lane LaneID, n int) {
	ok, quota := w.laneOffers(cctx, lane)
	if !ok {
		w.slots.release(n)
		return
	}
	ids := newTokens(n)
	if !w.offers.register(lane, ids) {
		w.slots.release(n)
		return
	}
	offers, err := w.roles.ClaimOfferer.OfferClaims(cctx, w.offerArgs(lane, quota, ids))
	if err != nil {
		offers = nil
	}
	w.slots.release(w.offers.settle(ids, offers))
	if w.quotaOffersRefused(quota, err) {
		return
	}
	if err != nil {
		w.claimFailed(ctx, err)
		return
	}
	w.stats.offers.Add(uint64(len(offers)))
}

// offerCap is how many slots a worker keeps offered while work waits in an
// eligible set: as many as creates take within offerTakenWithin at the
// rate its offers were handed work in the last handoffWindow, and at least
// one while creates are seen coming. With a fast create stream that is
// every slot but one (a burst that outran the offers drains through them,
// up to two of the backlog's head per create, at a create's cost rather
// than a claim's); behind a trickle of creates it is the few the trickle
// takes, and with no create (a batch submitted, then nothing) none: an
// offer no create comes to take would only keep its slot from the backlog.
// The one offer kept while creates come measures their rate: as its
// hand-offs come faster the cap grows again, so a worker does not stay
// claiming a backlog that creates could drain.
//
// It never keeps every slot offered: on a cluster an offer serves only its
// own partition's creates, and on one server a create hands over the head
// of its own partition only, so a worker whose only slot stays offered
// would never claim a backlog where creates do not come (a worker of one
// slot offers none while work is in sight).
func (w *Worker) offerCap() int {
	if !w.offers.createsFlowing() {
		return 0
	}
	n := w.offers.handoffRate() * int(offerTakenWithin) / int(handoffWindow)
	return min(max(n, 1), w.cfg.MaxConcurrency-1)
}

// trimOffers runs when work is in sight: completes stop offering beyond
// offerCap, and the offers beyond it go back. It reports whether there
// were any beyond it.
func (w *Worker) trimOffers(ctx context.Context) bool {
	w.offers.idle.Store(false)
	n := w.offers.openCount() - w.offerCap()
	if n <= 0 {
		return false
	}
	w.settleOffers(ctx, true, n)
	return true
}

// completeCall ends t successfully: Complete, or, while the claim loop
// idles with its slots offered, CompleteAndOffer, whose offer takes over
// t's slot in the same round trip; with work in sight, up to offerCap
// offers (none unless creates are seen coming): offers drain a backlog
// too, at a create's cost. Offering again once a burst took every offer
// matters: claims cost more than hand-offs, so at a rate between the two
// paths' capacities a worker left claiming would never clear the backlog
// that formed.
//
// With a CompleteBatcher the call rides in the worker's next completion
// batch (completer, a group commit), its offer with it.
func (w *Worker) completeCall(ctx context.Context, t *Task, result []byte) error {
	co := w.roles.CompleteOfferer
	offerSlot := w.offers.idle.Load() || w.offers.openCount() < w.offerCap()
	var ids []string
	var quota QuotaID
	// The slot is the task's until the offer is registered: a hand-off for
	// it (it can overtake the reply) then finds the offer and uses the slot
	// the task is about to give up.
	if co != nil && !t.slot.heldByOffer() && offerSlot {
		var ok bool
		if ok, quota = w.laneOffers(ctx, t.h.Lane); ok {
			ids = newTokens(1)
			if !w.offers.register(t.h.Lane, ids) {
				ids = nil
			}
		}
	}
	if ids == nil {
		if w.completer != nil {
			return w.completer.call(ctx, CompleteItem{Handle: t.h, Result: result}).Err
		}
		return w.backend.Complete(ctx, t.h, result)
	}
	t.slot.handOver()
	var offers []ClaimOffer
	var offerErr, err error
	if w.completer != nil {
		args := w.offerArgs(t.h.Lane, quota, ids)
		o := w.completer.call(ctx, CompleteItem{Handle: t.h, Result: result, Offer: &args})
		offers, offerErr, err = o.Offers, o.OfferErr, o.Err
		// A ready flow child handed to this offer in the same call: it
		// runs on the slot the offer holds (the offer leaves the book
		// here, so settle below finds it gone), or goes back.
		for _, ct := range o.Handoffs {
			w.takeHandoff(ct)
		}
	} else {
		offers, offerErr, err = co.CompleteAndOffer(ctx, t.h, result, w.offerArgs(t.h.Lane, quota, ids))
	}
	if offerErr != nil {
		offers = nil
	}
	if w.offers.settle(ids, offers) > 0 {
		t.slot.takeBack() // no offer (the complete did not land, or it was refused): the task keeps its slot
	}
	w.stats.offers.Add(uint64(len(offers)))
	w.quotaOffersRefused(quota, offerErr)
	if offerErr != nil && !errors.Is(offerErr, ErrUnavailable) {
		w.reportError(offerErr)
	}
	return err
}

// settleOffers takes up to max posted offers back (withdraw) or extends
// them (refresh): an offer found open is released (withdraw) or stays
// open (refresh); one found gone becomes taken. It also gives up on taken
// offers whose hand-off is overdue.
func (w *Worker) settleOffers(ctx context.Context, withdraw bool, max int) {
	w.expireTaken()
	offers := w.offers.posted(max)
	if len(offers) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), minCallTimeout)
	defer cancel()
	var taken []bool
	var err error
	if withdraw {
		taken, err = w.roles.ClaimOfferer.WithdrawOffers(cctx, offers)
	} else {
		taken, err = w.roles.ClaimOfferer.RefreshOffers(cctx, offers, w.offerTTL())
	}
	if err == nil && len(taken) != len(offers) {
		err = &Error{Kind: KindBug, Code: CodeBug, Op: "settle_offers", Msg: "result count differs from offer count"}
	}
	if err != nil {
		// Unknown outcome: keep them open; the next settle (or their
		// expiry, then the taken deadline) resolves them.
		w.claimFailed(ctx, err)
		return
	}
	if !withdraw {
		w.offers.refreshed = time.Now()
	}
	w.slots.release(w.offers.resolve(offers, taken, withdraw, time.Now().Add(w.cfg.HandoffLeaseTTL)))
}

// offersBeforeIdle runs as the claim loop is about to wait: with offers
// open and work in sight (no create may come to hand it over) it keeps at
// most offerCap of them and reports whether slots came free to claim with
// at once; otherwise the wait is an idle one (completes then offer their
// slots), and offers due a refresh get it.
func (w *Worker) offersBeforeIdle(ctx context.Context) (claimNow bool) {
	open := w.offers.openCount() > 0
	if open && w.backlogInSight(ctx, false) {
		if w.trimOffers(ctx) && w.slots.free() > 0 {
			return true
		}
	} else {
		w.offers.idle.Store(open)
	}
	w.refreshDue(ctx)
	return false
}

// refreshDue extends the open offers when the last refresh is half their
// TTL old (an idle worker: every other poll): a worker woken often (freed
// slots, pushes) never sees its idle poll fire, and an offer that expired
// unseen would read as taken and hold its slot for a lease TTL.
func (w *Worker) refreshDue(ctx context.Context) {
	if w.offers.openCount() > 0 && time.Since(w.offers.refreshed) > w.offerTTL()/2 {
		w.settleOffers(ctx, false, math.MaxInt)
	}
}

// expireTaken releases the slots of taken offers whose hand-off never came
// within the lease it would have carried.
func (w *Worker) expireTaken() { w.slots.release(w.offers.expireTaken(time.Now())) }

// takeHandoff starts the task handed to one of this worker's offers. One
// that matches no offer (given up on, or a stray) runs if a slot is free;
// after shutdown began, or with no slot, it goes back to the eligible set
// at once.
func (w *Worker) takeHandoff(ct ClaimedTask) {
	// The lease began at the create, before the push came: count from then
	// when the server's clock says so, else from now.
	started := time.Now()
	if s := ct.ExpiresAt.Add(-ct.Handle.LeaseTTL); s.Before(started) {
		started = s
	}
	ok, slotHeld := w.offers.handoff(ct.Handle.LeaseID,
		func() bool { return w.slots.reserve(1) == 1 },
		func() {
			if !w.admitHandoff(ct) {
				w.slots.release(1)
				go w.handBack(ct)
				return
			}
			w.stats.handoffs.Add(1)
			w.startTask(ct, started, true)
		})
	if ok {
		return
	}
	if slotHeld {
		w.slots.release(1)
	}
	w.handBack(ct)
}

// handBack returns a handed-off execution this worker will not run to the
// eligible set, its attempt unchanged, having given back the admission the
// hand-off carried (its quota slot and window entry) first, so the next
// claimer's admission does not find it held.
func (w *Worker) handBack(ct ClaimedTask) {
	ctx, cancel := context.WithTimeout(w.baseCtx, minCallTimeout)
	defer cancel()
	if a := ct.Admission; a != nil && w.roles.Admission != nil {
		if err := w.roles.Admission.GiveBackAdmission(ctx, a.Quota, ct.Handle.ExecutionID, a.Member); err != nil {
			w.reportError(err) // the hold lapses by itself; the window entry ages out
		}
	}
	if err := w.backend.Delay(ctx, ct.Handle, time.Now()); err != nil {
		w.reportError(err) // the lease expires and the reclaim scanner recovers it
	}
}

// closeOffers, at shutdown, withdraws the open offers, waits a moment for
// the hand-offs of those already taken, and from then on hands back what
// still comes.
func (w *Worker) closeOffers() {
	w.offers.idle.Store(false)
	if w.roles.ClaimOfferer == nil {
		return
	}
	w.settleOffers(w.baseCtx, true, math.MaxInt)
	deadline := time.NewTimer(handoffShutdownWait)
	defer deadline.Stop()
wait:
	for w.offers.takenCount() > 0 {
		select {
		case <-w.offers.arrived:
		case <-deadline.C:
			break wait
		}
	}
	w.slots.release(w.offers.close())
}

// settleIdleOffers runs when an idle wait with offers open ends: an arrival
// (one execution no offer took: it came just before an offer was posted, or
// asked for capabilities) takes one offer back when no slot is free for
// it; readiness showing work waiting (a backlog) takes back the offers
// beyond offerCap to claim it, while the rest keep taking the backlog's
// head as creates come; the idle poll refreshes them when due.
func (w *Worker) settleIdleOffers(ctx context.Context, arrived *Arrival, polled bool) {
	if arrived != nil {
		if w.slots.free() == 0 {
			w.settleOffers(ctx, true, 1)
		}
		return
	}
	if w.backlogInSight(ctx, polled) {
		w.trimOffers(ctx)
	}
	if polled {
		w.refreshDue(ctx)
	}
}

// backlogInSight reports whether readiness shows work waiting on a lane;
// without readiness tracking, whether this wake was the idle poll.
func (w *Worker) backlogInSight(ctx context.Context, polled bool) bool {
	if w.roles.ReadinessWatcher == nil {
		// Blind: only the poll looks (a claim round scans every partition),
		// else an idle worker would withdraw and re-offer in a loop.
		return polled
	}
	for li := range w.cfg.Lanes {
		parts, err := w.lanePartitions(ctx, li)
		if err != nil || len(parts) > 0 {
			return true
		}
	}
	return false
}
