package sdk

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Claim offers (ClaimOfferer): an idle worker offers its free slots, and a
// create into an empty eligible set claims the new execution for one of
// them and hands it over, so the worker holds the lease one submit round
// trip after the submit, with no claim call of its own.
//
// Every offer reserves a slot. An offer ends one of three ways:
//   - its hand-off arrives (takeHandoff): the slot runs the task;
//   - it is withdrawn or refreshed and found still open: the slot is
//     released, or stays offered;
//   - it is found gone (taken, its hand-off still on the way, or expired):
//     the slot stays reserved until the hand-off arrives or the lease it
//     would carry has expired (a lost hand-off is recovered by the reclaim
//     scanner, like a crashed worker's lease).

// offerTTLFactor sets how long an offer stands: this many idle polls (the
// idle poll refreshes it), so a worker that died idle stops being handed
// work after at most that.
const offerTTLFactor = 2

// handoffShutdownWait bounds how long shutdown waits for the hand-offs of
// offers found taken when it withdrew them.
const handoffShutdownWait = time.Second

// offerBook is a worker's open and taken offers.
type offerBook struct {
	mu     sync.Mutex
	open   map[string]ClaimOffer // lease id → offer (slot reserved)
	taken  map[string]time.Time  // lease id → when to give up on its hand-off
	closed bool                  // shutdown: hand-offs go back
	// arrived is signalled (non-blocking) when a taken offer's hand-off
	// arrives, for shutdown's wait.
	arrived chan struct{}
}

func (b *offerBook) openCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.open)
}

func (b *offerBook) openOffers() []ClaimOffer {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]ClaimOffer, 0, len(b.open))
	for _, o := range b.open {
		out = append(out, o)
	}
	return out
}

// startOffers detects the ClaimOfferer role and subscribes to the worker's
// hand-offs; without the role (or when it answers unavailable) the worker
// claims after arrival pushes only.
func (w *Worker) startOffers(ctx context.Context) {
	if w.offerer == nil {
		return
	}
	if err := w.offerer.WatchHandoffs(ctx, w.cfg.InstanceID, w.takeHandoff); err != nil {
		if !errors.Is(err, ErrUnavailable) {
			w.reportError(err)
		}
		w.offerer = nil
	}
}

// offerTTL is how long each offer stands between refreshes.
func (w *Worker) offerTTL() time.Duration { return offerTTLFactor * w.idlePoll() }

// offerFree offers every free slot, spread over the lanes. A failure
// releases the slots it could not offer; "unavailable" drops the role.
func (w *Worker) offerFree(ctx context.Context) {
	if w.offerer == nil {
		return
	}
	k := w.reserve(w.freeSlots())
	if k == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), minCallTimeout)
	defer cancel()
	nl := len(w.cfg.Lanes)
	start := w.laneCursor
	for i := range nl {
		n := k / nl
		if i < k%nl {
			n++
		}
		if n == 0 {
			continue
		}
		offers, err := w.offerer.OfferClaims(cctx, OfferArgs{
			Lane: w.cfg.Lanes[(start+i)%nl], N: n, WorkerID: w.cfg.WorkerID, WorkerInstanceID: w.cfg.InstanceID,
			Capabilities: w.cfg.Capabilities, LeaseTTL: w.cfg.LeaseTTL, TTL: w.offerTTL(),
		})
		if err != nil {
			w.release(n)
			if errors.Is(err, ErrUnavailable) {
				w.log.Warn("claim offers unavailable; waiting for arrivals instead", "err", err)
				w.offerer = nil
			} else {
				w.claimFailed(ctx, err)
			}
			continue
		}
		w.stats.offers.Add(uint64(len(offers)))
		w.offers.mu.Lock()
		for _, o := range offers {
			w.offers.open[o.LeaseID] = o
		}
		w.offers.mu.Unlock()
		if len(offers) < n {
			w.release(n - len(offers))
		}
	}
}

// settleOffers takes the open offers back (withdraw) or extends them
// (refresh): an offer found open is released (withdraw) or stays open
// (refresh); one found gone becomes taken. It also gives up on taken
// offers whose hand-off is overdue.
func (w *Worker) settleOffers(ctx context.Context, withdraw bool) {
	w.expireTaken()
	offers := w.offers.openOffers()
	if len(offers) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), minCallTimeout)
	defer cancel()
	var taken []bool
	var err error
	if withdraw {
		taken, err = w.offerer.WithdrawOffers(cctx, offers)
	} else {
		taken, err = w.offerer.RefreshOffers(cctx, offers, w.offerTTL())
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
	giveUp := time.Now().Add(w.cfg.LeaseTTL)
	released := 0
	w.offers.mu.Lock()
	for i, o := range offers {
		if _, still := w.offers.open[o.LeaseID]; !still {
			continue // its hand-off arrived meanwhile
		}
		switch {
		case taken[i]:
			delete(w.offers.open, o.LeaseID)
			w.offers.taken[o.LeaseID] = giveUp
		case withdraw:
			delete(w.offers.open, o.LeaseID)
			released++
		}
	}
	w.offers.mu.Unlock()
	w.release(released)
}

// expireTaken releases the slots of taken offers whose hand-off never came
// within the lease it would have carried.
func (w *Worker) expireTaken() {
	now := time.Now()
	n := 0
	w.offers.mu.Lock()
	for id, at := range w.offers.taken {
		if now.After(at) {
			delete(w.offers.taken, id)
			n++
		}
	}
	w.offers.mu.Unlock()
	w.release(n)
}

// takeHandoff starts the task handed to one of this worker's offers. One
// that matches no offer (given up on, or posted by a call whose reply was
// lost) runs if a slot is free; after shutdown began, or with no slot, it
// goes back to the eligible set at once.
func (w *Worker) takeHandoff(ct ClaimedTask) {
	// The lease began at the create, before the push came: count from then
	// when the server's clock says so, else from now.
	started := time.Now()
	if s := ct.ExpiresAt.Add(-ct.Handle.LeaseTTL); s.Before(started) {
		started = s
	}
	id := ct.Handle.LeaseID
	b := &w.offers
	b.mu.Lock()
	_, open := b.open[id]
	_, taken := b.taken[id]
	delete(b.open, id)
	delete(b.taken, id)
	reserved := open || taken
	if b.closed || (!reserved && w.reserve(1) == 0) {
		b.mu.Unlock()
		if reserved {
			w.release(1)
		}
		w.handBack(ct)
		return
	}
	w.stats.handoffs.Add(1)
	w.startTask(ct, started) // under b.mu: shutdown's drain cannot start in between
	b.mu.Unlock()
	if taken {
		select {
		case b.arrived <- struct{}{}:
		default:
		}
	}
}

// handBack returns a handed-off execution this worker will not run to the
// eligible set, its attempt unchanged.
func (w *Worker) handBack(ct ClaimedTask) {
	ctx, cancel := context.WithTimeout(w.baseCtx, minCallTimeout)
	defer cancel()
	if err := w.backend.Delay(ctx, ct.Handle, time.Now()); err != nil {
		w.reportError(err) // the lease expires and the reclaim scanner recovers it
	}
}

// closeOffers, at shutdown, withdraws the open offers, waits a moment for
// the hand-offs of those already taken, and from then on hands back what
// still comes.
func (w *Worker) closeOffers() {
	if w.offerer == nil {
		return
	}
	w.settleOffers(w.baseCtx, true)
	deadline := time.NewTimer(handoffShutdownWait)
	defer deadline.Stop()
	for {
		w.offers.mu.Lock()
		left := len(w.offers.taken)
		w.offers.mu.Unlock()
		if left == 0 {
			break
		}
		select {
		case <-w.offers.arrived:
			continue
		case <-deadline.C:
		}
		break
	}
	w.offers.mu.Lock()
	w.offers.closed = true
	n := len(w.offers.open) + len(w.offers.taken)
	clear(w.offers.open)
	clear(w.offers.taken)
	w.offers.mu.Unlock()
	w.release(n)
}

// offersWantClaims reports whether the worker, idle with open offers, should
// take them back to claim: an arrival named work, or readiness shows work
// waiting in an eligible set (a backlog, which creates never hand off past).
func (w *Worker) offersWantClaims(ctx context.Context, arrived *Arrival) bool {
	if arrived != nil {
		return true
	}
	for li := range w.cfg.Lanes {
		parts, err := w.lanePartitions(ctx, li)
		if err != nil || len(parts) > 0 {
			return true
		}
	}
	return false
}
