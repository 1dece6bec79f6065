package sdk

import (
	"context"
	"slices"
	"sync"
	"time"
)

// fusedCall is one fused claim: up to want executions asked of partition p
// (head is its best one), k slots reserved for it.
type fusedCall struct {
	p, want, k int
	head       RankedID
	tasks      []ClaimedTask
	err        error
}

// claimFusedLane claims on lane li with one fused call per non-empty
// partition, the partitions whose head runs first first (RankedID.Before),
// a window of calls at a time, concurrently (a pipelining client sends a
// window's calls together); each call asks for what the partition holds,
// at most ClaimBatch, while free slots last.
func (w *Worker) claimFusedLane(ctx context.Context, li int, parts []int) (claimed int, saw bool, err error) {
	plan, err := w.fusedPlan(ctx, w.cfg.Lanes[li], parts)
	if err != nil || len(plan) == 0 {
		return 0, false, err
	}
	// Heads were non-empty: if nothing is claimed (granted to others,
	// blocked on the way), back off briefly instead of idling.
	for off := 0; off < len(plan) && ctx.Err() == nil; off += w.cfg.ScanWindow {
		calls := w.reserveFused(plan[off:min(off+w.cfg.ScanWindow, len(plan))])
		if len(calls) == 0 {
			break
		}
		c, err := w.runFused(ctx, li, calls)
		claimed += c
		if err != nil {
			return claimed, true, err
		}
	}
	return claimed, true, nil
}

// fusedPlan says how many to ask of each partition, best first. With a
// WindowScanner (its heads come from the readiness cache, so usually
// free), it ranks every partition's head together and asks each partition
// for its share of the best free ones, the partition with the best of them
// first: the fused calls then claim what the direct path would, in the
// same priority-then-FIFO order. Without one, every partition is asked for
// an even share of the free slots, in partition order.
func (w *Worker) fusedPlan(ctx context.Context, lane LaneID, parts []int) ([]fusedCall, error) {
	free := w.slots.free()
	if w.roles.WindowScanner == nil {
		plan := make([]fusedCall, 0, len(parts))
		for _, p := range parts {
			plan = append(plan, fusedCall{p: p, want: max(free/len(parts), 1)})
		}
		return plan, nil
	}
	heads, err := w.scanHeads(ctx, lane, parts, maxScanLimit)
	if err != nil {
		return nil, err
	}
	var cands []candidate
	for i, ids := range heads {
		for _, r := range ids {
			cands = append(cands, candidate{partition: parts[i], RankedID: r})
		}
	}
	queue := w.candidateQueue(cands, free)
	queue = queue[:min(free, len(queue))]
	var plan []fusedCall
	for _, c := range queue {
		i := slices.IndexFunc(plan, func(f fusedCall) bool { return f.p == c.partition })
		if i < 0 {
			plan = append(plan, fusedCall{p: c.partition, head: c.RankedID})
			i = len(plan) - 1
		}
		plan[i].want++
	}
	spreadOverCutHeads(plan, heads, parts, free-len(queue))
	return plan, nil
}

// spreadOverCutHeads gives slots left after every visible candidate was
// planned to the partitions whose head was cut at maxScanLimit: only they
// may hold more (after what they showed).
func spreadOverCutHeads(plan []fusedCall, heads [][]RankedID, parts []int, left int) {
	var cut []int
	for i := range plan {
		k := slices.Index(parts, plan[i].p)
		if len(heads[k]) >= maxScanLimit {
			cut = append(cut, i)
		}
	}
	for n, i := range cut {
		plan[i].want += left / len(cut)
		if n < left%len(cut) {
			plan[i].want++
		}
	}
}

// reserveFused reserves slots for the planned calls, at most ClaimBatch
// each, while slots last.
func (w *Worker) reserveFused(plan []fusedCall) []fusedCall {
	calls := make([]fusedCall, 0, len(plan))
	for _, c := range plan {
		c.k = w.slots.reserve(min(c.want, w.cfg.ClaimBatch))
		if c.k == 0 {
			break
		}
		calls = append(calls, c)
	}
	return calls
}

// runFused makes the fused calls concurrently, starts what they claimed and
// releases the slots they did not fill. It returns the last transport error.
func (w *Worker) runFused(ctx context.Context, li int, calls []fusedCall) (claimed int, transient error) {
	lane := w.cfg.Lanes[li]
	sent := time.Now() // the lease clock starts here (see claimBatch)
	var wg sync.WaitGroup
	for i := range calls {
		c := &calls[i]
		w.stats.attempts.Add(1)
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(w.cfg.GrantTTL, minCallTimeout))
			defer cancel()
			c.tasks, c.err = w.roles.FusedClaimer.ClaimFused(cctx, FusedClaimArgs{
				Lane: lane, Partition: c.p, Max: c.k, WorkerID: w.cfg.WorkerID, WorkerInstanceID: w.cfg.InstanceID,
				Capabilities: w.cfg.Capabilities, LeaseTTL: w.cfg.LeaseTTL,
			})
		})
	}
	wg.Wait()
	for _, c := range calls {
		if len(c.tasks) > c.k { // a backend bug; never run more than we reserved
			w.reportError(&Error{Kind: KindBug, Code: CodeBug, Op: "claim_fused", Msg: "returned more executions than Max"})
		}
		n := min(len(c.tasks), c.k)
		for _, t := range c.tasks[:n] {
			w.startTask(t, sent, false)
		}
		w.slots.release(c.k - n)
		if n > 0 {
			claimed += n
			w.cursor.advance(li, c.p)
		}
		switch {
		case c.err == nil:
		case isTransient(c.err):
			transient = c.err
		default:
			w.reportError(c.err)
		}
	}
	return claimed, transient
}
