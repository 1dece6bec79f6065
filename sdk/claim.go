package sdk

import (
	"context"
	"errors"
	"hash/fnv"
	"math"
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
// one that found nothing it is idle and waits (idleWait). Transport errors
// back off exponentially (capped at 1s) and never stop the loop. With claim
// offers, an idle worker first offers its free slots (offers.go) and waits
// with them offered: a slot freed meanwhile is offered too, and a push that
// shows work waiting takes them back to claim it.
func (w *Worker) claimLoop(ctx context.Context) {
	idle := newIdleWait(ctx, w)
	var retry claimBackoff
	for ctx.Err() == nil {
		if w.slots.free() == 0 && w.offers.openCount() == 0 {
			w.waitForSlot(ctx)
			continue
		}
		if w.slots.free() > 0 {
			if w.claimStep(ctx, idle, &retry) {
				continue
			}
			w.offerFree(ctx)
		}
		if w.offersBeforeIdle(ctx) {
			continue
		}
		w.idleStep(ctx, idle)
	}
}

// claimBackoff counts the claim loop's consecutive transport errors and
// contended rounds.
type claimBackoff struct{ errs, contended int }

// claimStep runs one claim round and reacts to what it found. It reports
// whether the worker has work in hand or in sight (go round again); false
// means it found nothing and is idle.
func (w *Worker) claimStep(ctx context.Context, idle *idleWait, b *claimBackoff) bool {
	claimed, saw, err := w.claimRound(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.claimFailed(ctx, err)
			idle.wait(ctx, backoffDelay(b.errs, claimErrBackoffMin, claimErrBackoffMax), false, false)
			b.errs++
		}
		return true
	}
	b.errs = 0
	if claimed > 0 || saw {
		w.offers.idle.Store(false) // work in sight: completes free their slots for it
	}
	if claimed > 0 {
		b.contended = 0
		return true
	}
	if saw {
		// Work exists but others won it (or its grant is held): look again
		// soon, or at once when readiness changes.
		d := min(backoffDelay(b.contended, contendBackoffMin, contendBackoffMax), w.cfg.IdlePoll)
		wk := idle.wait(ctx, d, true, w.offers.openCount() > 0)
		w.claimArrival(ctx, wk.arrival)
		b.contended++
		return true
	}
	b.contended = 0
	return w.claimLatePending(ctx)
}

// idleStep waits idle for a push, an arrival, a freed slot or the poll, and
// acts on what woke it.
func (w *Worker) idleStep(ctx context.Context, idle *idleWait) {
	idle.subscribe(ctx)
	wk := idle.wait(ctx, idle.poll(w.cfg.IdlePoll), true, w.offers.openCount() > 0)
	if wk.freed || ctx.Err() != nil {
		return
	}
	if wk.push {
		w.stats.idlePush.Add(1)
	} else if wk.poll {
		w.stats.idlePoll.Add(1)
	}
	if w.offers.openCount() > 0 {
		w.settleIdleOffers(ctx, wk.arrival, wk.poll)
	}
	w.claimArrival(ctx, wk.arrival)
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
	case <-w.slots.freed:
	case <-overdue:
		w.expireTaken()
	}
}

// claimCursor is where the claim loop starts: the lane it visits first in
// the next round, and per lane the partition after the one it last claimed
// from. It is owned by the claim loop.
type claimCursor struct {
	partitions []int // 0..n-1
	lane       int
	part       []int // per lane
}

// newClaimCursor spreads workers' starting partitions by instance id, so
// two workers do not scan (and contend on) the same heads in the same order.
func newClaimCursor(partitions int, instance WorkerInstanceID, lanes []LaneID) claimCursor {
	c := claimCursor{partitions: make([]int, partitions), part: make([]int, len(lanes))}
	for i := range c.partitions {
		c.partitions[i] = i
	}
	for i, l := range lanes {
		f := fnv.New64a()
		f.Write([]byte(instance))
		f.Write([]byte{0})
		f.Write([]byte(l))
		c.part[i] = int(f.Sum64() % uint64(partitions))
	}
	return c
}

// nextLane returns the lane a round starts with and moves the cursor on.
func (c *claimCursor) nextLane() int {
	start := c.lane
	c.lane = (start + 1) % len(c.part)
	return start
}

// advance moves lane li's cursor past partition p, so the next round starts
// with the partition after the last one this worker claimed from.
func (c *claimCursor) advance(li, p int) { c.part[li] = (p + 1) % len(c.partitions) }

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

// claimRound makes one pass over the lanes. It reports how many executions
// it claimed and whether it saw any candidate at all.
func (w *Worker) claimRound(ctx context.Context) (claimed int, saw bool, err error) {
	w.stats.claimRounds.Add(1)
	nl := len(w.cfg.Lanes)
	start := w.cursor.nextLane()
	for i := range nl {
		if w.slots.free() == 0 || ctx.Err() != nil {
			break
		}
		li := (start + i) % nl
		c, s, err := w.claimLaneByPolicy(ctx, li, nil)
		claimed += c
		saw = saw || s
		if err != nil {
			return claimed, saw, err
		}
	}
	return claimed, saw, nil
}

// claimLaneByPolicy claims on lane li as its policy says: not at all while
// paused (a resume wakes the idle wait), through admission when it has a
// quota or budgets, else claimLane (with the arrivals taken for it, or
// pending when given).
func (w *Worker) claimLaneByPolicy(ctx context.Context, li int, pending []candidate) (claimed int, saw bool, err error) {
	p, err := w.lanePolicy(ctx, w.cfg.Lanes[li])
	if err != nil {
		return 0, false, err
	}
	return w.claimWithPolicy(ctx, li, p, pending)
}

// claimWithPolicy is claimLaneByPolicy with lane li's policy p read.
func (w *Worker) claimWithPolicy(ctx context.Context, li int, p LanePolicy, pending []candidate) (claimed int, saw bool, err error) {
	switch {
	case p.Paused:
		return 0, false, nil
	case p.Admits():
		if open, poll := w.adm.laneOpen(w.cfg.Lanes[li]); !open {
			// Refused for a moment: a full cap frees with no push to say
			// so, so that work is in sight and the loop looks again soon.
			return 0, poll, nil
		}
		return w.claimAdmitted(ctx, li, p)
	}
	if pending == nil {
		pending = w.pendingArrivals(li)
	}
	return w.claimLane(ctx, li, pending)
}

// claimLane claims on lane li from the partitions that may hold work, best
// first. pending are arrivals taken for the lane (pendingArrivals): hints
// whose partitions are looked at too; what they name may be gone already,
// so only a claim of one counts, not having seen it.
func (w *Worker) claimLane(ctx context.Context, li int, pending []candidate) (claimed int, saw bool, err error) {
	parts, err := w.lanePartitions(ctx, li)
	if err != nil {
		return 0, false, err
	}
	if w.cfg.ClaimMode == ClaimFused {
		for _, c := range pending {
			if !slices.Contains(parts, c.partition) {
				parts = append(parts, c.partition)
			}
		}
		if len(parts) == 0 {
			return 0, false, nil
		}
		return w.claimFusedLane(ctx, li, parts)
	}
	return w.claimDirectLane(ctx, li, parts, pending)
}

// lanePartitions returns the partitions of lane li worth scanning, rotated
// to start at the lane's cursor: the ready ones when the backend tracks
// readiness (answered from memory while nothing changes), else all.
func (w *Worker) lanePartitions(ctx context.Context, li int) ([]int, error) {
	parts := w.cursor.partitions
	if rw := w.roles.ReadinessWatcher; rw != nil {
		w.stats.readiness.Add(1)
		ready, err := rw.ReadyPartitions(ctx, w.cfg.Lanes[li], parts)
		if err != nil {
			return nil, err
		}
		parts = ready
	}
	return rotateFrom(parts, w.cursor.part[li]), nil
}

// pendingArrivals takes, up to the free slots, the arrivals on lane li that
// came while this process's workers were busy (ArrivalWatcher.TakeArrivals),
// as candidates that rank after every scanned head: the scan that follows
// shows them with their rank when its heads are fresh, and an arrival the
// heads do not show yet is still claimed, last.
func (w *Worker) pendingArrivals(li int) []candidate {
	aw := w.roles.ArrivalWatcher
	free := w.slots.free()
	if aw == nil || free == 0 {
		return nil
	}
	return w.arrivalCandidates(aw.TakeArrivals(w.cfg.Lanes[li], free))
}

// arrivalCandidates turns arrivals into candidates ranked last, and notes
// that creates are coming.
func (w *Worker) arrivalCandidates(arrs []Arrival) []candidate {
	if len(arrs) == 0 {
		return nil
	}
	w.offers.sawCreate()
	cands := make([]candidate, 0, len(arrs))
	for _, a := range arrs {
		p, err := a.ID.Partition()
		if err != nil || p >= len(w.cursor.partitions) {
			continue
		}
		cands = append(cands, candidate{partition: p, RankedID: RankedID{ID: a.ID, Rank: math.Inf(1)}})
	}
	w.stats.arrivals.Add(uint64(len(cands)))
	return cands
}

// claimLatePending claims, before an idle wait, the arrivals that came
// while the last round was under way (after it took the pending ones),
// among the heads of their lane; it reports whether it claimed any.
func (w *Worker) claimLatePending(ctx context.Context) bool {
	claimed := 0
	for li := range w.cfg.Lanes {
		if pending := w.pendingArrivals(li); len(pending) > 0 {
			c, _, err := w.claimLaneByPolicy(ctx, li, pending)
			claimed += c
			w.claimFailed(ctx, err)
		}
	}
	return claimed > 0
}

// claimArrival claims the execution an idle wait's arrival named: it filled
// an empty eligible set while the worker saw no work, so no read comes
// first.
func (w *Worker) claimArrival(ctx context.Context, a *Arrival) {
	if a == nil || ctx.Err() != nil {
		return
	}
	li := slices.Index(w.cfg.Lanes, a.Lane)
	if li < 0 {
		return
	}
	if p, err := w.lanePolicy(ctx, a.Lane); err != nil || p.Paused || p.Admits() {
		// Not claimed as it came: the policy decides (claimWithPolicy).
		if err == nil {
			_, _, err = w.claimWithPolicy(ctx, li, p, nil)
		}
		w.claimFailed(ctx, err)
		return
	}
	_, err := w.claimCandidates(ctx, li, w.arrivalCandidates([]Arrival{*a}))
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

// claimDirectLane reads the heads of lane li's partitions (a window of
// partitions per round trip, served from the readiness cache while nothing
// changes), puts every candidate, pending arrivals included, in
// priority-then-FIFO order across the partitions, and claims them in that
// order while slots last. saw reports scanned candidates only.
func (w *Worker) claimDirectLane(ctx context.Context, li int, parts []int, pending []candidate) (claimed int, saw bool, err error) {
	free := w.slots.free()
	if free == 0 {
		return 0, false, nil
	}
	cands := pending
	if len(parts) > 0 {
		// More than one candidate per partition, so a head granted to
		// another worker (and maybe never claimed) does not block it.
		heads, err := w.scanHeads(ctx, w.cfg.Lanes[li], parts, min(free+1, maxScanLimit))
		if err != nil {
			return 0, false, err
		}
		for i, ids := range heads {
			for _, r := range ids {
				cands = append(cands, candidate{partition: parts[i], RankedID: r})
			}
		}
		saw = len(cands) > len(pending)
	}
	claimed, err = w.claimCandidates(ctx, li, cands)
	return claimed, saw, err
}

// scanHeads reads up to limit eligible ids of each partition of parts, a
// window of ScanWindow partitions per scan.
func (w *Worker) scanHeads(ctx context.Context, lane LaneID, parts []int, limit int) ([][]RankedID, error) {
	heads := make([][]RankedID, 0, len(parts))
	for off := 0; off < len(parts); off += w.cfg.ScanWindow {
		win := parts[off:min(off+w.cfg.ScanWindow, len(parts))]
		res, err := w.scanWindow(ctx, lane, win, limit)
		if err != nil {
			return nil, err
		}
		heads = append(heads, res...)
	}
	return heads, nil
}

// scanWindow reads up to limit eligible ids of each partition in win: one
// round trip with a WindowScanner, else one concurrent scan per partition
// (which a pipelining client still sends together), ranked by position
// (without ranks, partitions' heads interleave).
func (w *Worker) scanWindow(ctx context.Context, lane LaneID, win []int, limit int) ([][]RankedID, error) {
	if ws := w.roles.WindowScanner; ws != nil {
		w.stats.scans.Add(1)
		res, err := ws.ScanEligibleWindow(ctx, lane, win, limit)
		if err == nil && len(res) != len(win) {
			err = &Error{Kind: KindBug, Code: CodeBug, Op: "scan_eligible_window", Msg: "result count differs from partition count"}
		}
		return res, err
	}
	w.stats.scans.Add(uint64(len(win)))
	res := make([][]RankedID, len(win))
	errs := make([]error, len(win))
	var wg sync.WaitGroup
	for i, p := range win {
		wg.Go(func() {
			var ids []ExecutionID
			ids, errs[i] = w.backend.ScanEligibleExecutions(ctx, ScanEligibleArgs{Lane: lane, Partition: p, Limit: limit})
			for k, id := range ids {
				res[i] = append(res[i], RankedID{ID: id, Rank: float64(k)})
			}
		})
	}
	wg.Wait()
	return res, errors.Join(errs...)
}

// candidate is an eligible execution and its partition.
type candidate struct {
	partition int
	RankedID
}

// candidateQueue orders candidates best first (RankedID.Before), each id
// once (a ranked sighting beats an arrival's), leaving out what this worker
// runs already: a scan right after a claim can still find the claimed id
// in a cached head (the server's invalidation trails the claim's reply),
// and claiming it would be a wasted round trip. An id whose task ended here
// a moment ago may be such a stale sighting too: it ranks last instead of
// by its head's rank, so a stale head neither jumps the order (a fused
// claim takes the partition's real head) nor is lost (it is still tried,
// last). It keeps the best 2×free+16: enough to fill the free slots after
// some are lost to other workers; the next round scans again.
func (w *Worker) candidateQueue(cands []candidate, free int) []candidate {
	sorted := make([]candidate, 0, len(cands))
	w.running.withIDs(func(running map[ExecutionID]struct{}, endedRecently func(ExecutionID) bool) {
		for _, c := range cands {
			if _, busy := running[c.ID]; busy {
				continue
			}
			if endedRecently(c.ID) {
				c.Rank = math.Inf(1)
			}
			sorted = append(sorted, c)
		}
	})
	slices.SortStableFunc(sorted, func(a, b candidate) int {
		switch {
		case a.Before(b.RankedID):
			return -1
		case b.Before(a.RankedID):
			return 1
		}
		return 0
	})
	limit := 2*free + 16
	queue := sorted[:0]
	dup := containsID // a few dozen at most: a scan beats a map
	if limit > 64 {
		seen := make(map[ExecutionID]struct{}, limit)
		dup = func(_ []candidate, id ExecutionID) bool {
			_, ok := seen[id]
			seen[id] = struct{}{}
			return ok
		}
	}
	for _, c := range sorted {
		if len(queue) == limit {
			break
		}
		if !dup(queue, c.ID) {
			queue = append(queue, c)
		}
	}
	return queue
}

// containsID reports whether id is among cands.
func containsID(cands []candidate, id ExecutionID) bool {
	for _, c := range cands {
		if c.ID == id {
			return true
		}
	}
	return false
}

// claimCandidates claims candidates best first, as many at a time as there
// are free slots (concurrently), so with one free slot executions start in
// exactly the order candidateQueue gives.
func (w *Worker) claimCandidates(ctx context.Context, li int, cands []candidate) (claimed int, err error) {
	queue := w.candidateQueue(cands, w.slots.free())
	for len(queue) > 0 && ctx.Err() == nil {
		k := w.slots.reserve(len(queue))
		if k == 0 {
			break
		}
		c, err := w.claimBatch(ctx, li, queue[:k])
		claimed += c
		if err != nil {
			return claimed, err
		}
		queue = queue[k:]
	}
	return claimed, nil
}

// claimBatch claims a batch of candidates, one slot reserved for each, and
// starts what it claimed. It returns a transport error after trying all.
func (w *Worker) claimBatch(ctx context.Context, li int, batch []candidate) (claimed int, transport error) {
	lane := w.cfg.Lanes[li]
	results := make([]ClaimedTask, len(batch))
	errs := make([]error, len(batch))
	// The lease clock starts when the claims were sent, not when the
	// slowest of them returned: the server's expiry is later than that.
	sent := time.Now()
	if len(batch) == 1 { // the common idle case (an arrival): no goroutine to wait for
		results[0], errs[0] = w.claimOne(ctx, lane, batch[0].ID)
	} else {
		var wg sync.WaitGroup
		for i, c := range batch {
			wg.Go(func() { results[i], errs[i] = w.claimOne(ctx, lane, c.ID) })
		}
		wg.Wait()
	}
	for i, c := range batch {
		if errs[i] == nil {
			w.startTask(results[i], sent, false)
			claimed++
			w.cursor.advance(li, c.partition)
			continue
		}
		w.slots.release(1)
		switch err := errs[i]; {
		case isTransient(err), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			transport = err
		case KindOf(err) == KindValidation || KindOf(err) == KindBug || KindOf(err) == KindUnavailable:
			w.reportError(err)
		default: // lost the race, or the execution moved on: next candidate
			w.stats.conflicts.Add(1)
		}
	}
	return claimed, transport
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
	if gc := w.roles.GrantClaimer; gc != nil {
		ct, err := gc.GrantAndClaim(cctx, grant, w.cfg.LeaseTTL)
		if err != nil {
			w.blockIfMismatch(cctx, lane, id, err)
		}
		return ct, err
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
	return w.withContext(cctx, ce)
}

// withContext reads a claimed execution's context (retrying transport
// errors twice). When it cannot be read, the lease is handed back with the
// attempt unchanged (Delay keeps the attempt) so another claim picks it up.
func (w *Worker) withContext(ctx context.Context, ce ClaimedExecution) (ClaimedTask, error) {
	var ec ExecutionContext
	var err error
	for attempt := 0; ; attempt++ {
		ec, err = w.backend.ReadExecutionContext(ctx, ce.Handle.ExecutionID)
		if err == nil {
			return ClaimedTask{ClaimedExecution: ce, Context: ec}, nil
		}
		if !isTransient(err) || attempt >= 2 || !sleepCtx(ctx, backoffDelay(attempt, claimErrBackoffMin, claimErrBackoffMax)) {
			break
		}
	}
	if derr := w.backend.Delay(ctx, ce.Handle, time.Now()); derr != nil {
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
