package sdk

import (
	"container/heap"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// renewConcurrency bounds per-lease Renew calls in flight when the backend
// has no BatchRenewer.
const renewConcurrency = 32

// leaseEntry is one held lease in the renewer's heap.
type leaseEntry struct {
	task    *Task
	handle  *Handle   // the task's (never changed once it runs): not a copy
	due     time.Time // next renewal
	expires time.Time // when the lease runs out, as far as the worker knows (no server clock needed)
	index   int       // position in the heap; -1 when out of it
	removed bool      // the task released the lease; never reinsert
	recheck bool      // a lease event came while its renewal was in flight: renew again at once
}

// leaseHeap orders entries by due time, earliest first.
type leaseHeap []*leaseEntry

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h leaseHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *leaseHeap) Push(x any) {
	e := x.(*leaseEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *leaseHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	e.index = -1
	*h = old[:n-1]
	return e
}

// renewStats are the renewer's counters, read by Worker.Stats.
type renewStats struct {
	renewals atomic.Uint64 // successful renewals
	failures atomic.Uint64 // renewals that failed without losing the lease (transport)
	lost     atomic.Uint64 // leases found lost (fencing error or local expiry)
	batches  atomic.Uint64 // renewal rounds (calls to RenewBatch, or rounds of Renew)
	lagSum   atomic.Int64  // total lag in ns over renewals sent
	lagCount atomic.Uint64
	lagMax   atomic.Int64
}

// renewer renews every lease the worker holds from one goroutine: a min-heap
// by due time; each tick takes every due lease and renews them together
// (BatchRenewer: one call; else concurrent Renew calls).
type renewer struct {
	backend  LeaseHolder
	batch    BatchRenewer // nil: per-lease Renew
	every    time.Duration
	leaseTTL time.Duration
	coalesce time.Duration           // leases due within this of the earliest go out together
	onLost   func(*Task, error) bool // cancels the task; false when the loss is not news
	onError  func(error)
	obs      WorkerObserver // nil: none
	now      func() time.Time

	mu   sync.Mutex
	heap leaseHeap
	// byID finds a held lease by execution (in the heap or being renewed)
	// for lease events.
	byID  map[ExecutionID]*leaseEntry
	wake  chan struct{}
	stats renewStats
}

// newRenewer renews through batch when it is not nil, else lease by lease
// through backend.
func newRenewer(backend LeaseHolder, batch BatchRenewer, every, leaseTTL time.Duration) *renewer {
	return &renewer{
		backend:  backend,
		batch:    batch,
		every:    every,
		leaseTTL: leaseTTL,
		coalesce: min(every/20, 50*time.Millisecond),
		wake:     make(chan struct{}, 1),
		byID:     make(map[ExecutionID]*leaseEntry),
		now:      time.Now,
		onLost:   func(t *Task, err error) bool { return t.leaseLost(err) },
		onError:  func(error) {},
	}
}

// add starts renewing t's lease, which began at claimedAt and lasts ttl
// (LeaseTTL, or a hand-off's shorter first lease). The first renewal is
// due RenewEvery after claimedAt, or the same share of a shorter ttl;
// every renewal extends it by LeaseTTL (the handle's, as startTask set it).
func (r *renewer) add(t *Task, claimedAt time.Time, ttl time.Duration) *leaseEntry {
	firstDue := r.every
	if ttl < r.leaseTTL {
		firstDue = time.Duration(float64(r.every) * float64(ttl) / float64(r.leaseTTL))
	}
	e := &t.renewal // in the Task: one allocation less per task
	*e = leaseEntry{task: t, handle: &t.h, due: claimedAt.Add(firstDue), expires: claimedAt.Add(ttl)}
	r.mu.Lock()
	heap.Push(&r.heap, e)
	r.byID[e.handle.ExecutionID] = e
	first := e.index == 0
	r.mu.Unlock()
	if first {
		r.poke()
	}
	return e
}

// remove stops renewing e (idempotent; nil is ignored).
func (r *renewer) remove(e *leaseEntry) {
	if e == nil {
		return
	}
	r.mu.Lock()
	r.forgetLocked(e)
	if e.index >= 0 {
		heap.Remove(&r.heap, e.index)
	}
	r.mu.Unlock()
}

// expiry returns when e's lease runs out as far as the worker knows (it
// moves later with every renewal); the zero time for nil.
func (r *renewer) expiry(e *leaseEntry) time.Time {
	if e == nil {
		return time.Time{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return e.expires
}

// held returns how many leases the renewer holds (in the heap or in flight
// is not distinguished: in-flight entries are out of the heap).
func (r *renewer) held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.heap)
}

// renewNow makes the lease of execution id (if this renewer holds it) due
// at once and wakes the renewer: a lease event said it may be gone, and the
// renewal is how the worker finds out for sure. It reports whether the
// lease is held here.
func (r *renewer) renewNow(id ExecutionID) bool {
	r.mu.Lock()
	e := r.byID[id]
	switch {
	case e == nil:
	case e.index >= 0:
		e.due = r.now()
		heap.Fix(&r.heap, e.index)
	default:
		// Being renewed right now: that renewal may have run before the
		// lease was taken, so renew it again when it comes back.
		e.recheck = true
	}
	r.mu.Unlock()
	if e != nil {
		r.poke()
	}
	return e != nil
}

// forgetLocked marks e released and drops it from byID (r.mu held).
func (r *renewer) forgetLocked(e *leaseEntry) {
	e.removed = true
	if r.byID[e.handle.ExecutionID] == e {
		delete(r.byID, e.handle.ExecutionID)
	}
}

func (r *renewer) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run renews until ctx ends.
func (r *renewer) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		batch, wait := r.takeDue()
		if len(batch) > 0 {
			r.renew(ctx, batch)
			continue
		}
		if wait < 0 {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// takeDue pops every entry due by now+coalesce. With none due it returns how
// long until the earliest is (negative when the heap is empty).
func (r *renewer) takeDue() ([]*leaseEntry, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.heap) == 0 {
		return nil, -1
	}
	now := r.now()
	if d := r.heap[0].due.Sub(now); d > r.coalesce {
		return nil, d - r.coalesce
	}
	limit := now.Add(r.coalesce)
	var batch []*leaseEntry
	for len(r.heap) > 0 && !r.heap[0].due.After(limit) {
		batch = append(batch, heap.Pop(&r.heap).(*leaseEntry))
	}
	return batch, 0
}

// renew renews a batch and puts the survivors back with their next due time.
func (r *renewer) renew(ctx context.Context, batch []*leaseEntry) {
	sent := r.now()
	for _, e := range batch {
		lag := sent.Sub(e.due)
		r.stats.recordLag(lag)
		if r.obs != nil && e.task != nil {
			r.obs.LeaseRenewing(e.task, max(lag, 0))
		}
	}
	r.stats.batches.Add(1)
	results := r.call(ctx, batch)
	done := r.now()

	var lost []*leaseEntry
	var lostErr []error
	r.mu.Lock()
	for i, e := range batch {
		if err := r.apply(e, results[i].Err, sent, done); err != nil {
			lost, lostErr = append(lost, e), append(lostErr, err)
			r.forgetLocked(e)
		} else if !e.removed {
			heap.Push(&r.heap, e)
		}
	}
	r.mu.Unlock()

	for i, e := range lost {
		if e.task == nil || r.onLost(e.task, lostErr[i]) {
			r.stats.lost.Add(1)
		}
	}
	for i := range results {
		if err := results[i].Err; err != nil && !isFencing(err) {
			r.onError(err)
			break // one report per round is enough
		}
	}
}

// apply sets e's next due time from its renewal's outcome (r.mu held). It
// returns the loss when the lease is gone: fenced off, or no renewal landed
// within its ttl.
func (r *renewer) apply(e *leaseEntry, err error, sent, done time.Time) (loss error) {
	switch {
	case err == nil:
		r.stats.renewals.Add(1)
		e.expires = sent.Add(r.leaseTTL)
		e.due = sent.Add(r.every)
	case isFencing(err):
		return err
	default:
		r.stats.failures.Add(1)
		if !done.Before(e.expires) {
			return &Error{Kind: KindState, Code: CodeLeaseExpired, Op: "renew",
				Msg: "no successful renewal within the lease ttl", Err: err}
		}
		// Retry soon, and never after the lease would have run out.
		e.due = done.Add(min(max(r.every/4, 10*time.Millisecond), time.Second))
		if e.due.After(e.expires) {
			e.due = e.expires
		}
	}
	if e.recheck {
		e.recheck = false
		e.due = done
	}
	return nil
}

// minRenewCallTimeout is the shortest time a renewal call is given.
const minRenewCallTimeout = 20 * time.Millisecond

// call renews the batch's handles: one BatchRenewer call, or concurrent Renew
// calls. A whole-batch failure becomes every entry's error. The call may not
// outlive the earliest lease of the batch: a renewal stuck past it cannot
// save that lease, and its task must learn of the loss in time.
func (r *renewer) call(ctx context.Context, batch []*leaseEntry) []RenewResult {
	timeout := max(r.every, time.Second)
	for _, e := range batch {
		timeout = min(timeout, time.Until(e.expires))
	}
	cctx, cancel := context.WithTimeout(ctx, max(timeout, minRenewCallTimeout))
	defer cancel()
	if r.batch != nil {
		handles := make([]Handle, len(batch))
		for i, e := range batch {
			handles[i] = *e.handle
		}
		res, err := r.batch.RenewBatch(cctx, handles)
		if err == nil && len(res) != len(batch) {
			err = &Error{Kind: KindBug, Code: CodeBug, Op: "renew_batch", Msg: "result count differs from handle count"}
		}
		if err != nil {
			res = make([]RenewResult, len(batch))
			for i := range res {
				res[i].Err = err
			}
		}
		return res
	}
	res := make([]RenewResult, len(batch))
	sem := make(chan struct{}, renewConcurrency)
	var wg sync.WaitGroup
	for i, e := range batch {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			res[i].Renewal, res[i].Err = r.backend.Renew(cctx, *e.handle)
		}()
	}
	wg.Wait()
	return res
}

// recordLag adds one renewal's lag (how late it went out).
func (s *renewStats) recordLag(lag time.Duration) {
	lag = max(lag, 0)
	s.lagSum.Add(int64(lag))
	s.lagCount.Add(1)
	for {
		m := s.lagMax.Load()
		if int64(lag) <= m || s.lagMax.CompareAndSwap(m, int64(lag)) {
			return
		}
	}
}

// lag returns the average and maximum renewal lag.
func (s *renewStats) lag() (avg, maxLag time.Duration) {
	if n := s.lagCount.Load(); n > 0 {
		avg = time.Duration(s.lagSum.Load() / int64(n))
	}
	return avg, time.Duration(s.lagMax.Load())
}
