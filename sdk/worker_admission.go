package sdk

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// The Worker's side of admission (Admitter, RoleAdmission). Before it
// claims on a lane it reads the lane's policy through the backend's cache
// (an in-memory hit while the policy is unchanged; the server's
// invalidation of it wakes idle workers): a paused lane is skipped, a lane
// with a quota or budgets is claimed through ClaimForWorker, one at a time,
// and every other lane exactly as without admission. Claims admitted under
// a quota hold a slot of it while they run: the worker extends the holds
// with its renewals and releases each when its task ends.

// admissionState is the Worker's admission bookkeeping.
type admissionState struct {
	mu     sync.Mutex
	closed map[LaneID]closedLane // lanes refused for now
	held   map[ExecutionID]QuotaID
	// noQuotaOffers: the backend refused an offer under a quota
	// (Unavailable: it cannot admit inside its hand-offs, e.g. a cluster),
	// so quota lanes are claimed through admission only.
	noQuotaOffers atomic.Bool
}

// closedLane is a lane refused until a time, and why.
type closedLane struct {
	until  time.Time
	reason string
}

// laneOpen reports whether lane may be claimed now (no refusal pending),
// and when not, whether the claim loop should look again soon: a full cap
// frees, and a rate window moves, with no push to announce it (work held
// back by a budget waits for its parked head's return instead).
func (a *admissionState) laneOpen(lane LaneID) (open, poll bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.closed[lane]
	if ok && time.Now().After(c.until) {
		delete(a.closed, lane)
		return true, false
	}
	return !ok, ok && c.reason != "budget"
}

func (a *admissionState) closeLane(lane LaneID, d time.Duration, reason string) {
	a.mu.Lock()
	if a.closed == nil {
		a.closed = map[LaneID]closedLane{}
	}
	a.closed[lane] = closedLane{until: time.Now().Add(d), reason: reason}
	a.mu.Unlock()
}

func (a *admissionState) hold(id ExecutionID, q QuotaID) {
	a.mu.Lock()
	if a.held == nil {
		a.held = map[ExecutionID]QuotaID{}
	}
	a.held[id] = q
	a.mu.Unlock()
}

// release forgets id's hold and returns its quota ("" when it had none).
func (a *admissionState) release(id ExecutionID) QuotaID {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.held[id]
	delete(a.held, id)
	return q
}

// byQuota returns the held executions grouped by quota.
func (a *admissionState) byQuota() map[QuotaID][]ExecutionID {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[QuotaID][]ExecutionID{}
	for id, q := range a.held {
		out[q] = append(out[q], id)
	}
	return out
}

// concurrencyRecheck is how long a lane whose quota was full waits before
// its next admission try (a slot frees when a running task ends, which no
// push announces).
const concurrencyRecheck = 20 * time.Millisecond

// lanePolicy reads lane's policy; the zero policy without admission.
func (w *Worker) lanePolicy(ctx context.Context, lane LaneID) (LanePolicy, error) {
	if w.roles.Admission == nil {
		return LanePolicy{}, nil
	}
	return w.roles.Admission.LanePolicy(ctx, lane)
}

// claimAdmitted claims on lane li through admission (ClaimForWorker), one
// slot at a time, until the slots or the admitted work run out.
func (w *Worker) claimAdmitted(ctx context.Context, li int, p LanePolicy) (claimed int, saw bool, err error) {
	lane := w.cfg.Lanes[li]
	parts, err := w.lanePartitions(ctx, li)
	if err != nil || len(parts) == 0 {
		return 0, false, err
	}
	adm := w.roles.Admission
	for w.slots.free() > 0 && ctx.Err() == nil {
		if open, _ := w.adm.laneOpen(lane); !open {
			break
		}
		if w.slots.reserve(1) == 0 {
			break
		}
		w.stats.attempts.Add(1)
		sent := time.Now()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(w.cfg.GrantTTL, minCallTimeout))
		ct, ad, err := adm.ClaimForWorker(cctx, ClaimForWorkerArgs{Lane: lane, WorkerID: w.cfg.WorkerID,
			WorkerInstanceID: w.cfg.InstanceID, Capabilities: w.cfg.Capabilities, LeaseTTL: w.cfg.LeaseTTL, Partitions: parts})
		cancel()
		if err != nil || ct == nil {
			w.slots.release(1)
			switch {
			case err != nil:
				return claimed, true, err
			case ad.Reason == "concurrency":
				w.adm.closeLane(lane, min(ad.RetryAfter, concurrencyRecheck), ad.Reason)
			case ad.Reason != "":
				w.adm.closeLane(lane, ad.RetryAfter, ad.Reason)
			}
			return claimed, ad.Reason != "", nil
		}
		if p.Quota != "" {
			w.adm.hold(ct.Handle.ExecutionID, p.Quota)
		}
		w.startTask(*ct, sent, false)
		claimed++
		saw = true
	}
	return claimed, saw, nil
}

// releaseAdmission gives back the quota hold of a task that ended. A
// task whose lease was lost leaves it: a hold is its execution's, not its
// attempt's, and another worker may run that execution under a hold of
// its own now, which a release would end (the cap would be exceeded). The
// lost task's own hold lapses by itself (no more refreshes).
func (w *Worker) releaseAdmission(t *Task) {
	q := w.adm.release(t.ID)
	if q == "" || w.roles.Admission == nil {
		return
	}
	t.mu.Lock()
	lost := t.lost
	t.mu.Unlock()
	if lost {
		return
	}
	ctx, cancel := context.WithTimeout(w.baseCtx, minCallTimeout)
	defer cancel()
	if err := w.roles.Admission.ReleaseAdmission(ctx, q, t.ID); err != nil {
		w.reportError(err) // the hold lapses by itself
	}
}

// refreshAdmissions extends the quota holds of running tasks by a lease
// TTL every third of the hand-off lease TTL (at most LeaseTTL): a hold
// admitted in a hand-off starts with that shorter deadline, so its first
// refresh must come before it. One call per quota per tick, not per task.
func (w *Worker) refreshAdmissions(ctx context.Context) {
	tick := time.NewTicker(max(min(w.cfg.LeaseTTL, w.cfg.HandoffLeaseTTL)/3, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for q, ids := range w.adm.byQuota() {
			cctx, cancel := context.WithTimeout(ctx, minCallTimeout)
			if err := w.roles.Admission.RefreshAdmissions(cctx, q, w.cfg.LeaseTTL, ids...); err != nil && ctx.Err() == nil {
				w.reportError(err)
			}
			cancel()
		}
	}
}

// quotaOffersRefused reports whether err is the backend refusing offers
// made under quota (Unavailable: it cannot admit inside its hand-offs),
// and if so stops the worker making them (laneOffers).
func (w *Worker) quotaOffersRefused(quota QuotaID, err error) bool {
	if quota == "" || !errors.Is(err, ErrUnavailable) {
		return false
	}
	w.adm.noQuotaOffers.Store(true)
	return true
}

// laneOffers reports whether the worker may offer slots on lane, and the
// quota the offers are made under: not on a paused lane, nor on one with
// budgets (a hand-off would skip their check); on a lane with a quota only,
// offers name the quota, so creates admit what they hand to them (unless
// the backend said it cannot: then not at all).
func (w *Worker) laneOffers(ctx context.Context, lane LaneID) (bool, QuotaID) {
	p, err := w.lanePolicy(ctx, lane)
	switch {
	case err != nil || p.Paused || len(p.Budgets) > 0:
		return false, ""
	case p.Quota != "":
		return !w.adm.noQuotaOffers.Load(), p.Quota
	}
	return true, ""
}

// admitHandoff decides whether a hand-off may run: one for a lane paused
// since its offer was posted is not, one admitted by its create under a
// quota runs holding that admission (unless the lane has budgets since),
// and one for a lane claimed through admission runs only once admitted
// (the caller hands back the rest, and gives back what they carried).
// The policy read is the cached one the claim paths make (an in-memory hit
// while the policy is unchanged), under the worker's context as theirs is:
// a hand-off on a plain lane pays no deadline context of its own.
func (w *Worker) admitHandoff(ct ClaimedTask) bool {
	p, err := w.lanePolicy(w.baseCtx, ct.Handle.Lane)
	if err != nil || p.Paused {
		return err == nil && !p.Paused
	}
	if a := ct.Admission; a != nil {
		if len(p.Budgets) > 0 {
			return false
		}
		w.adm.hold(ct.Handle.ExecutionID, a.Quota)
		return true
	}
	if !p.Admits() {
		return true
	}
	ctx, cancel := context.WithTimeout(w.baseCtx, minCallTimeout)
	defer cancel()
	ad, err := w.roles.Admission.Admit(ctx, p, ct.Handle.ExecutionID, w.cfg.LeaseTTL)
	if err != nil || !ad.Admitted {
		return false
	}
	if p.Quota != "" {
		w.adm.hold(ct.Handle.ExecutionID, p.Quota)
	}
	return true
}
