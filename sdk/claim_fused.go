package sdk

import (
	"context"
	"sync"
	"time"
)

// fusedCall is one fused claim of a round: k slots reserved on partition p.
type fusedCall struct {
	p, k  int
	tasks []ClaimedTask
	err   error
}

// claimFusedLane claims on lane li with one fused call per non-empty
// partition, a window of partitions at a time, concurrently (a pipelining
// client sends a window's calls together); each call asks for what the
// partition holds, at most ClaimBatch, while free slots last.
func (w *Worker) claimFusedLane(ctx context.Context, li int, parts []int) (claimed int, saw bool, err error) {
	lane := w.cfg.Lanes[li]
	for off := 0; off < len(parts) && ctx.Err() == nil; off += w.cfg.ScanWindow {
		win := parts[off:min(off+w.cfg.ScanWindow, len(parts))]
		want, err := w.fusedWants(ctx, lane, win)
		if err != nil {
			return claimed, saw, err
		}
		calls := w.reserveFused(win, want)
		if len(calls) == 0 {
			if w.slots.free() == 0 {
				break
			}
			continue // nothing in this window
		}
		// Heads were non-empty: if nothing is claimed (granted to others,
		// blocked on the way), back off briefly instead of idling.
		saw = true
		c, err := w.runFused(ctx, li, calls)
		claimed += c
		if err != nil {
			return claimed, saw, err
		}
	}
	return claimed, saw, nil
}

// fusedWants says how many to ask of each partition of win: its head's
// length when the backend scans windows (served by the readiness cache, so
// usually free), else an even share of the free slots. Asking an empty
// partition is a wasted call.
func (w *Worker) fusedWants(ctx context.Context, lane LaneID, win []int) ([]int, error) {
	want := make([]int, len(win))
	if w.roles.WindowScanner == nil {
		for i := range want {
			want[i] = max(w.slots.free()/len(win), 1)
		}
		return want, nil
	}
	heads, err := w.scanWindow(ctx, lane, win, maxScanLimit)
	if err != nil {
		return nil, err
	}
	nonEmpty := 0
	for _, ids := range heads {
		if len(ids) > 0 {
			nonEmpty++
		}
	}
	// A cut head may hide more: ask it for an even share of the free slots
	// (at least what it shows). Asking every cut head for a whole
	// ClaimBatch would spend the slots on the first few partitions and
	// leave the rest to later rounds.
	share := 0
	if nonEmpty > 0 {
		share = min(w.cfg.ClaimBatch, w.slots.free()/nonEmpty)
	}
	for i, ids := range heads {
		want[i] = len(ids)
		if len(ids) >= maxScanLimit {
			want[i] = max(len(ids), share)
		}
	}
	return want, nil
}

// reserveFused reserves slots for the partitions of win that want some,
// at most ClaimBatch each, while slots last.
func (w *Worker) reserveFused(win, want []int) []fusedCall {
	calls := make([]fusedCall, 0, len(win))
	for i, p := range win {
		if want[i] == 0 {
			continue
		}
		k := w.slots.reserve(min(want[i], w.cfg.ClaimBatch))
		if k == 0 {
			break
		}
		calls = append(calls, fusedCall{p: p, k: k})
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
