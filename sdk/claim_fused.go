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
	head        RankedID
	tasks       []ClaimedTask
	err         error
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

// fusedPlan says how many to ask of each partition, best head first: its
// head's length when the backend scans windows (served by the readiness
// cache, so usually free), else an even share of the free slots (in
// partition order: without ranks there is no better one). Asking an empty
// partition is a wasted call.
func (w *Worker) fusedPlan(ctx context.Context, lane LaneID, parts []int) ([]fusedCall, error) {
	plan := make([]fusedCall, 0, len(parts))
	if w.roles.WindowScanner == nil {
		for _, p := range parts {
			plan = append(plan, fusedCall{p: p, want: max(w.slots.free()/len(parts), 1)})
		}
		return plan, nil
	}
	heads, err := w.scanHeads(ctx, lane, parts, maxScanLimit)
	if err != nil {
		return nil, err
	}
	for i, ids := range heads {
		if len(ids) > 0 {
			plan = append(plan, fusedCall{p: parts[i], want: len(ids), head: ids[0]})
		}
	}
	// A cut head may hide more: ask it for an even share of the free slots
	// (at least what it shows). Asking every cut head for a whole
	// ClaimBatch would spend the slots on the first few partitions and
	// leave the rest to later rounds.
	if len(plan) > 0 {
		share := min(w.cfg.ClaimBatch, w.slots.free()/len(plan))
		for i := range plan {
			if plan[i].want >= maxScanLimit {
				plan[i].want = max(plan[i].want, share)
			}
		}
	}
	slices.SortStableFunc(plan, func(a, b fusedCall) int {
		switch {
		case a.head.Before(b.head):
			return -1
		case b.head.Before(a.head):
			return 1
		}
		return 0
	})
	return plan, nil
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
			w.startTask(t, sent)
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
