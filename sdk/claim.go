package sdk

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// claimLoop claims until ctx ends. Each pass ("round") visits every lane,
// starting one lane further each time, and on each lane the partitions that
// may hold work, starting after the partition it last claimed from: lanes and
// partitions rotate independently, so every lane sees every partition.
//
// Between rounds: at capacity it waits for a free slot (no scanning); after a
// round that claimed something it goes again at once; after one that found
// candidates but lost them all to other workers it backs off briefly; after
// one that found nothing it is idle and waits for a readiness push or the
// IdlePoll timer. Transport errors back off exponentially (capped at 1s) and
// never stop the loop. With a ClaimOfferer, an idle worker first offers its
// free slots (offers.go) and waits with them offered: a slot freed meanwhile
// is offered too, and a push that shows work waiting takes them back to
// claim it.
func (w *Worker) claimLoop(ctx context.Context) {
	var watch <-chan struct{}
	var watchRetryAt time.Time
	subscribe := func() {
		if w.watcher == nil || watch != nil || time.Now().Before(watchRetryAt) {
			return
		}
		ch, err := w.watcher.WatchReadiness(ctx, w.cfg.Lanes)
		if errors.Is(err, ErrUnavailable) {
			w.dropWatcher(err)
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				w.reportError(err)
			}
			watchRetryAt = time.Now().Add(watchRetryEvery)
			return
		}
		watch = ch
	}
	subscribe()
	arrive := w.watchArrivals(ctx)

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// wait returns on ctx's end, the timer, or (wakeOnPush) a readiness push
	// or an arrival: arrived tells which execution, when there is one; with
	// offers open, also on a freed slot.
	wait := func(d time.Duration, wakeOnPush bool) (push, poll bool, arrived *Arrival, freed bool) {
		timer.Reset(d)
		defer func() {
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}()
		var pushCh <-chan struct{}
		var arriveCh <-chan Arrival
		var freedCh <-chan struct{}
		if wakeOnPush {
			pushCh, arriveCh = watch, arrive
			if w.offers.openCount() > 0 {
				freedCh = w.slotFreed
			}
		}
		select {
		case <-ctx.Done():
		case _, ok := <-pushCh:
			if !ok {
				watch = nil // the subscription ended; resubscribe on the next idle wait
				return false, false, nil, false
			}
			return true, false, nil, false
		case a, ok := <-arriveCh:
			if !ok {
				arrive = nil
				return false, false, nil, false
			}
			return true, false, &a, false
		case <-freedCh:
			return false, false, nil, true
		case <-timer.C:
			return false, true, nil, false
		}
		return false, false, nil, false
	}

	errAttempt, contendAttempt := 0, 0
	for ctx.Err() == nil {
		offered := w.offers.openCount() > 0
		if w.freeSlots() == 0 && !offered {
			w.waitForSlot(ctx)
			continue
		}
		if w.freeSlots() > 0 {
			claimed, saw, err := w.claimRound(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				w.claimFailed(ctx, err)
				wait(backoffDelay(errAttempt, claimErrBackoffMin, claimErrBackoffMax), false)
				errAttempt++
				continue
			}
			errAttempt = 0
			if claimed > 0 || saw {
				w.offers.idle.Store(false) // work in sight: completes free their slots for it
			}
			if claimed > 0 {
				contendAttempt = 0
				continue
			}
			if saw {
				// Work exists but others won it (or its grant is held): look again
				// soon, or at once when readiness changes.
				_, _, arrived, _ := wait(min(backoffDelay(contendAttempt, contendBackoffMin, contendBackoffMax), w.idlePoll()), true)
				w.claimArrival(ctx, arrived)
				contendAttempt++
				continue
			}
			contendAttempt = 0
			if w.claimLatePending(ctx) {
				continue
			}
			w.offerFree(ctx)
		}
		if w.offersBeforeIdle(ctx) {
			continue
		}
		subscribe()
		poll := w.idlePoll()
		if w.watcher != nil && watch == nil {
			poll = min(poll, IdlePollDefault) // no pushes: poll as a backend without them would
		}
		push, polled, arrived, freed := wait(poll, true)
		if freed || ctx.Err() != nil {
			continue
		}
		if push {
			w.stats.idlePush.Add(1)
		} else if polled {
			w.stats.idlePoll.Add(1)
		}
		if w.offers.openCount() > 0 {
			w.settleIdleOffers(ctx, arrived, polled)
		}
		w.claimArrival(ctx, arrived)
	}
}

// waitForSlot waits, at capacity, for a slot to free up; while offers are
// found taken but their hand-offs have not come, it gives up on them at the
// first one's deadline (when the lease it would carry has expired).
func (w *Worker) waitForSlot(ctx context.Context) {
	var overdue <-chan time.Time
	if at, ok := w.offers.firstGiveUp(); ok {
		t := time.NewTimer(time.Until(at))
		defer t.Stop()
		overdue = t.C
	}
	select {
	case <-ctx.Done():
	case <-w.slotFreed:
	case <-overdue:
		w.expireTaken()
	}
}

// watchArrivals subscribes to the backend's arrivals, if it has them; nil
// (no arrivals, a channel that never delivers) otherwise.
func (w *Worker) watchArrivals(ctx context.Context) <-chan Arrival {
	if w.arrivals == nil {
		return nil
	}
	ch, err := w.arrivals.WatchArrivals(ctx, w.cfg.Lanes)
	if err != nil {
		if !errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
			w.reportError(err)
		}
		return nil
	}
	return ch
}

// claimPending claims the arrivals on lane li that came while this
// process's workers were busy (see claimArrivals).
func (w *Worker) claimPending(ctx context.Context, li int) (claimed int, err error) {
	free := w.freeSlots()
	if free == 0 {
		return 0, nil
	}
	return w.claimArrivals(ctx, li, w.arrivals.TakeArrivals(w.cfg.Lanes[li], free))
}

// claimLatePending claims, before an idle wait, the arrivals that came
// while the last round was under way (after it took the pending ones); it
// reports whether it claimed any.
func (w *Worker) claimLatePending(ctx context.Context) bool {
	if w.arrivals == nil {
		return false
	}
	claimed := 0
	for li := range w.cfg.Lanes {
		c, err := w.claimPending(ctx, li)
		claimed += c
		w.claimFailed(ctx, err)
	}
	return claimed > 0
}

// claimArrival claims the execution an idle wait's arrival named.
func (w *Worker) claimArrival(ctx context.Context, a *Arrival) {
	if a == nil || ctx.Err() != nil {
		return
	}
	li := slices.Index(w.cfg.Lanes, a.Lane)
	if li < 0 {
		return
	}
	_, err := w.claimArrivals(ctx, li, []Arrival{*a})
	w.claimFailed(ctx, err)
}

// claimFailed counts and reports err from a claim attempt, unless there is
// none or the worker is stopping.
func (w *Worker) claimFailed(ctx context.Context, err error) {
	if err != nil && ctx.Err() == nil {
		w.stats.claimErrors.Add(1)
		w.reportError(err)
	}
}

// claimArrivals claims the executions arrivals on lane li named, straight
// away: the push already said where they are, so no read comes first.
// Losing one to another worker is fine; the next round scans as usual.
func (w *Worker) claimArrivals(ctx context.Context, li int, arrs []Arrival) (claimed int, err error) {
	if len(arrs) > 0 {
		w.offers.sawCreate()
	}
	parts := make([]int, 0, len(arrs))
	cands := make([][]ExecutionID, 0, len(arrs))
	for _, a := range arrs {
		p, err := a.ID.Partition()
		if err != nil || p >= len(w.partitions) {
			continue
		}
		parts = append(parts, p)
		cands = append(cands, []ExecutionID{a.ID})
	}
	if len(cands) == 0 {
		return 0, nil
	}
	w.stats.arrivals.Add(uint64(len(cands)))
	claimed, _, err = w.claimCandidates(ctx, li, parts, cands)
	return claimed, err
}

// claimRound makes one pass over the lanes. It reports how many executions
// it claimed and whether it saw any candidate at all.
func (w *Worker) claimRound(ctx context.Context) (claimed int, saw bool, err error) {
	w.stats.claimRounds.Add(1)
	nl := len(w.cfg.Lanes)
	start := w.laneCursor
	w.laneCursor = (start + 1) % nl
	for i := range nl {
		if w.freeSlots() == 0 || ctx.Err() != nil {
			return claimed, saw, nil
		}
		li := (start + i) % nl
		if w.arrivals != nil {
			// What pending arrivals name may be gone already: only a claim
			// of one counts, not having seen it.
			c, err := w.claimPending(ctx, li)
			claimed += c
			if err != nil {
				return claimed, saw, err
			}
		}
		parts, err := w.lanePartitions(ctx, li)
		if err != nil {
			return claimed, saw, err
		}
		if len(parts) == 0 {
			continue
		}
		var c int
		var s bool
		if w.cfg.ClaimMode == ClaimFused {
			c, s, err = w.claimFusedLane(ctx, li, parts)
		} else {
			c, s, err = w.claimDirectLane(ctx, li, parts)
		}
		claimed += c
		saw = saw || s
		if err != nil {
			return claimed, saw, err
		}
	}
	return claimed, saw, nil
}

// lanePartitions returns the partitions of lane li worth scanning, rotated
// to start at the lane's cursor: the ready ones when the backend tracks
// readiness (answered from memory while nothing changes), else all.
func (w *Worker) lanePartitions(ctx context.Context, li int) ([]int, error) {
	parts := w.partitions
	if w.watcher != nil {
		w.stats.readiness.Add(1)
		ready, err := w.watcher.ReadyPartitions(ctx, w.cfg.Lanes[li], w.partitions)
		switch {
		case errors.Is(err, ErrUnavailable):
			w.dropWatcher(err)
		case err != nil:
			return nil, err
		default:
			parts = ready
		}
	}
	return rotateFrom(parts, w.partCursor[li]), nil
}

// rotateFrom returns parts (ascending) rotated to start at the first element
// >= cursor.
func rotateFrom(parts []int, cursor int) []int {
	k := 0
	for k < len(parts) && parts[k] < cursor {
		k++
	}
	if k == 0 || k == len(parts) {
		return parts
	}
	out := make([]int, 0, len(parts))
	out = append(out, parts[k:]...)
	return append(out, parts[:k]...)
}

// advance moves lane li's cursor past partition p, so the next round starts
// with the partition after the last one this worker claimed from.
func (w *Worker) advance(li, p int) {
	w.partCursor[li] = (p + 1) % len(w.partitions)
}

// claimDirectLane scans lane li window by window and claims candidates until
// the slots run out.
func (w *Worker) claimDirectLane(ctx context.Context, li int, parts []int) (claimed int, saw bool, err error) {
	lane := w.cfg.Lanes[li]
	for off := 0; off < len(parts); off += w.cfg.ScanWindow {
		free := w.freeSlots()
		if free == 0 {
			return claimed, saw, nil
		}
		win := parts[off:min(off+w.cfg.ScanWindow, len(parts))]
		// More than one candidate per partition, so a head granted to another
		// worker (and maybe never claimed) does not block the partition.
		limit := min(free+1, maxScanLimit)
		cands, err := w.scanWindow(ctx, lane, win, limit)
		if err != nil {
			return claimed, saw, err
		}
		c, s, err := w.claimCandidates(ctx, li, win, cands)
		claimed += c
		saw = saw || s
		if err != nil {
			return claimed, saw, err
		}
	}
	return claimed, saw, nil
}

// scanWindow reads up to limit eligible ids of each partition in win: one
// round trip with a WindowScanner, else one concurrent scan per partition
// (which a pipelining client still sends together).
func (w *Worker) scanWindow(ctx context.Context, lane LaneID, win []int, limit int) ([][]ExecutionID, error) {
	if w.windowScanner != nil {
		w.stats.scans.Add(1)
		res, err := w.windowScanner.ScanEligibleWindow(ctx, lane, win, limit)
		if err == nil && len(res) != len(win) {
			err = &Error{Kind: KindBug, Code: CodeBug, Op: "scan_eligible_window", Msg: "result count differs from partition count"}
		}
		if !errors.Is(err, ErrUnavailable) {
			return res, err
		}
		w.log.Warn("window scans unavailable; scanning partition by partition", "err", err)
		w.windowScanner = nil
	}
	w.stats.scans.Add(uint64(len(win)))
	res := make([][]ExecutionID, len(win))
	errs := make([]error, len(win))
	var wg sync.WaitGroup
	for i, p := range win {
		wg.Go(func() {
			res[i], errs[i] = w.backend.ScanEligibleExecutions(ctx, ScanEligibleArgs{Lane: lane, Partition: p, Limit: limit})
		})
	}
	wg.Wait()
	return res, errors.Join(errs...)
}

type candidate struct {
	partition int
	id        ExecutionID
}

// claimCandidates claims from a scanned window: candidates are interleaved
// across partitions (every partition's first, then every second, …) and
// claimed concurrently, as many at a time as there are free slots.
func (w *Worker) claimCandidates(ctx context.Context, li int, win []int, cands [][]ExecutionID) (claimed int, saw bool, err error) {
	var queue []candidate
	// A scan right after a claim can still find the claimed id in a cached
	// head (the server's invalidation trails the claim's reply): claiming
	// what this worker runs would be a wasted round trip that can only fail.
	w.tasksMu.Lock()
	for depth := 0; ; depth++ {
		added := false
		for i, ids := range cands {
			if depth < len(ids) {
				added = true
				saw = true
				if _, running := w.runningIDs[ids[depth]]; !running {
					queue = append(queue, candidate{win[i], ids[depth]})
				}
			}
		}
		if !added {
			break
		}
	}
	w.tasksMu.Unlock()
	// Start at a random point of the queue (and wrap): workers that scanned
	// the same heads then try different candidates first instead of all
	// racing for the same ones. Every candidate is still tried in this round
	// while slots last, so priority order holds across rounds; within the
	// scanned top of a window it is approximate.
	if len(queue) > 1 {
		r := rand.IntN(len(queue))
		queue = append(queue[r:], queue[:r]...)
	}
	lane := w.cfg.Lanes[li]
	for len(queue) > 0 && ctx.Err() == nil {
		k := w.reserve(len(queue))
		if k == 0 {
			return claimed, saw, nil
		}
		batch := queue[:k]
		queue = queue[k:]
		results := make([]ClaimedTask, k)
		errs := make([]error, k)
		// The lease clock starts when the claims were sent, not when the
		// slowest of them returned: the server's expiry is later than that.
		sent := time.Now()
		if len(batch) == 1 { // the common idle case (an arrival): no goroutine to wait for
			results[0], errs[0] = w.claimOne(ctx, lane, batch[0].id)
		} else {
			var wg sync.WaitGroup
			for i, c := range batch {
				wg.Go(func() { results[i], errs[i] = w.claimOne(ctx, lane, c.id) })
			}
			wg.Wait()
		}
		var transport error
		for i, c := range batch {
			if errs[i] == nil {
				w.startTask(results[i], sent)
				claimed++
				w.advance(li, c.partition)
				continue
			}
			w.release(1)
			switch {
			case isTransient(errs[i]):
				transport = errs[i]
			case errors.Is(errs[i], context.Canceled) || errors.Is(errs[i], context.DeadlineExceeded):
				transport = errs[i]
			case KindOf(errs[i]) == KindValidation || KindOf(errs[i]) == KindBug || KindOf(errs[i]) == KindUnavailable:
				w.reportError(errs[i])
			default: // lost the race, or the execution moved on: next candidate
				w.stats.conflicts.Add(1)
			}
		}
		if transport != nil {
			return claimed, saw, transport
		}
	}
	return claimed, saw, nil
}

// claimOne grants and claims one execution: one round trip with a
// GrantClaimer, else grant, claim (or claim-resumed) and a context read. An
// execution this worker lacks capabilities for is blocked for routing. The
// calls do not follow ctx's cancellation, so a claim that landed is never
// abandoned half-way at shutdown (its task then runs through the drain).
func (w *Worker) claimOne(ctx context.Context, lane LaneID, id ExecutionID) (ClaimedTask, error) {
	w.stats.attempts.Add(1)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(w.cfg.GrantTTL, minCallTimeout))
	defer cancel()
	grant := IssueClaimGrantArgs{
		ExecutionID: id, Lane: lane, WorkerID: w.cfg.WorkerID, WorkerInstanceID: w.cfg.InstanceID,
		Capabilities: w.cfg.Capabilities, GrantTTL: w.cfg.GrantTTL,
	}
	if w.grantClaimer != nil && !w.grantClaimerOff.Load() {
		ct, err := w.grantClaimer.GrantAndClaim(cctx, grant, w.cfg.LeaseTTL)
		if err == nil {
			return ct, nil
		}
		if !errors.Is(err, ErrUnavailable) {
			w.blockIfMismatch(cctx, lane, id, err)
			return ClaimedTask{}, err
		}
		if !w.grantClaimerOff.Swap(true) {
			w.log.Warn("grant+claim unavailable; granting and claiming in separate calls", "err", err)
		}
	}
	if _, err := w.backend.IssueClaimGrant(cctx, grant); err != nil {
		w.blockIfMismatch(cctx, lane, id, err)
		return ClaimedTask{}, err
	}
	args := ClaimExecutionArgs{ExecutionID: id, Lane: lane, WorkerID: w.cfg.WorkerID,
		WorkerInstanceID: w.cfg.InstanceID, LeaseTTL: w.cfg.LeaseTTL}
	ce, err := w.backend.ClaimExecution(cctx, args)
	if errors.Is(err, ErrUseClaimResumed) {
		ce, err = w.backend.ClaimResumedExecution(cctx, args)
	}
	if err != nil {
		return ClaimedTask{}, err
	}
	var ec ExecutionContext
	for attempt := 0; ; attempt++ {
		ec, err = w.backend.ReadExecutionContext(cctx, id)
		if err == nil {
			return ClaimedTask{ClaimedExecution: ce, Context: ec}, nil
		}
		if !isTransient(err) || attempt >= 2 || !sleepCtx(cctx, backoffDelay(attempt, claimErrBackoffMin, claimErrBackoffMax)) {
			break
		}
	}
	// We hold a lease but cannot run the task: hand the attempt back
	// unchanged (Delay keeps the attempt) so another claim picks it up.
	if derr := w.backend.Delay(cctx, ce.Handle, time.Now()); derr != nil {
		w.reportError(derr) // the lease expires and the reclaim scanner recovers it
	}
	return ClaimedTask{}, err
}

func (w *Worker) blockIfMismatch(ctx context.Context, lane LaneID, id ExecutionID, err error) {
	if !errors.Is(err, ErrCapabilityMismatch) {
		return
	}
	w.stats.blocks.Add(1)
	if _, berr := w.backend.BlockRoute(ctx, BlockRouteArgs{ExecutionID: id, Lane: lane, Reason: "capability_mismatch"}); berr != nil {
		w.reportError(berr)
	}
}

// claimFusedLane claims on lane li with one fused call per non-empty
// partition, a window of partitions at a time, concurrently (a pipelining
// client sends a window's calls together); each call asks for what the
// partition holds, at most ClaimBatch, while free slots last.
func (w *Worker) claimFusedLane(ctx context.Context, li int, parts []int) (claimed int, saw bool, err error) {
	lane := w.cfg.Lanes[li]
	for off := 0; off < len(parts) && ctx.Err() == nil; off += w.cfg.ScanWindow {
		win := parts[off:min(off+w.cfg.ScanWindow, len(parts))]
		// How many to ask of each partition: its head's length when the
		// backend scans windows (served by the readiness cache, so usually
		// free), else an even share of the free slots. Asking an empty
		// partition is a wasted call.
		want := make([]int, len(win))
		if w.windowScanner != nil {
			heads, err := w.scanWindow(ctx, lane, win, maxScanLimit)
			if err != nil {
				return claimed, saw, err
			}
			nonEmpty := 0
			for _, ids := range heads {
				if len(ids) > 0 {
					nonEmpty++
				}
			}
			// A cut head may hide more: ask it for an even share of the free
			// slots (at least what it shows). Asking every cut head for a
			// whole ClaimBatch would spend the slots on the first few
			// partitions and leave the rest to later rounds.
			share := 0
			if nonEmpty > 0 {
				share = min(w.cfg.ClaimBatch, w.freeSlots()/nonEmpty)
			}
			for i, ids := range heads {
				want[i] = len(ids)
				if len(ids) >= maxScanLimit {
					want[i] = max(len(ids), share)
				}
			}
		} else {
			for i := range want {
				want[i] = max(w.freeSlots()/len(win), 1)
			}
		}
		type call struct {
			p, k  int
			tasks []ClaimedTask
			err   error
		}
		calls := make([]call, 0, len(win))
		for i, p := range win {
			if want[i] == 0 {
				continue
			}
			k := w.reserve(min(want[i], w.cfg.ClaimBatch))
			if k == 0 {
				break
			}
			calls = append(calls, call{p: p, k: k})
		}
		if len(calls) == 0 {
			if w.freeSlots() == 0 {
				break
			}
			continue // nothing in this window
		}
		// Heads were non-empty: if nothing is claimed (granted to others,
		// blocked on the way), back off briefly instead of idling.
		saw = true
		sent := time.Now() // the lease clock starts here (see claimCandidates)
		var wg sync.WaitGroup
		for i := range calls {
			c := &calls[i]
			w.stats.attempts.Add(1)
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(w.cfg.GrantTTL, minCallTimeout))
				defer cancel()
				c.tasks, c.err = w.fused.ClaimFused(cctx, FusedClaimArgs{
					Lane: lane, Partition: c.p, Max: c.k, WorkerID: w.cfg.WorkerID, WorkerInstanceID: w.cfg.InstanceID,
					Capabilities: w.cfg.Capabilities, LeaseTTL: w.cfg.LeaseTTL,
				})
			})
		}
		wg.Wait()
		var transient error
		for _, c := range calls {
			if len(c.tasks) > c.k { // a backend bug; never run more than we reserved
				w.reportError(&Error{Kind: KindBug, Code: CodeBug, Op: "claim_fused", Msg: "returned more executions than Max"})
			}
			n := min(len(c.tasks), c.k)
			for _, t := range c.tasks[:n] {
				w.startTask(t, sent)
			}
			w.release(c.k - n)
			if n > 0 {
				claimed += n
				saw = true
				w.advance(li, c.p)
			}
			if c.err != nil {
				if isTransient(c.err) {
					transient = c.err
				} else {
					w.reportError(c.err)
				}
			}
		}
		if transient != nil {
			return claimed, saw, transient
		}
	}
	return claimed, saw, nil
}
