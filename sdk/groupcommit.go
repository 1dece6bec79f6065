package sdk

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// groupCommit sends calls of one kind in batches: a call that finds no
// batch in flight is sent at once, alone, by its own goroutine; calls that
// come while a batch is in flight queue, and go together in the next batch
// as soon as it returns. So a call never waits for company: it waits at
// most for the one batch ahead of it, and under load each round trip
// carries many. The Worker's completions and the Client's submits use it.
type groupCommit[I, O any] struct {
	// send makes one batch call; it returns one outcome per item, in order.
	// items is reused for the next batch once send returns: send does not
	// keep it (the roles it calls, BatchSubmitter and CompleteBatcher, say
	// the same of theirs).
	send    func(ctx context.Context, items []I) []O
	failed  func(err error) O // the outcome of an item the batch could not answer
	op      string
	timeout time.Duration // of one batch call
	max     int           // items per batch at most

	mu    sync.Mutex
	queue []*pendingCall[I, O]
	busy  bool // a batch is in flight, or about to be

	// pool recycles pendingCalls; sendCalls and sendItems are the one batch in
	// flight's (only one is: busy), reused so a call allocates nothing
	// of its own on the way (garbage per job is what sets how often the
	// collector runs, and its mark phases make the claim tail).
	pool      sync.Pool
	sendCalls []*pendingCall[I, O]
	sendItems []I

	batches, items atomic.Uint64
	largest        atomic.Uint64
	// waited sums, and waitedMax bounds, how long calls waited in the
	// queue before their batch went out (ns): the price of company.
	waited, waitedMax atomic.Int64
}

// pendingCall is one call waiting for (or riding in) a batch.
type pendingCall[I, O any] struct {
	item   I
	out    O
	sent   bool // taken into a batch (guarded by groupCommit.mu)
	queued time.Time
	// done gets one value when out is set; buffered, so the sender never
	// waits and the call can be recycled once its caller has read it.
	done chan struct{}
}

// get returns a pendingCall for item, recycled when one is free.
func (g *groupCommit[I, O]) get(item I) *pendingCall[I, O] {
	p, _ := g.pool.Get().(*pendingCall[I, O])
	if p == nil {
		p = &pendingCall[I, O]{done: make(chan struct{}, 1)}
	}
	p.item, p.queued = item, time.Now()
	return p
}

// put recycles p once nobody will touch it again: its outcome was read,
// or it was withdrawn before it was sent.
func (g *groupCommit[I, O]) put(p *pendingCall[I, O]) {
	var zi I
	var zo O
	p.item, p.out, p.sent = zi, zo, false
	g.pool.Put(p)
}

// groupCommitMax bounds a batch: more rarely gather in one round trip,
// and a backend splits what it cannot send in one call anyway.
const groupCommitMax = 128

// call sends item in the next batch and returns its outcome. When ctx ends
// before the item was taken into a batch, the item is withdrawn (nothing
// was sent) and the outcome is a timeout error; once taken, its batch's
// answer is waited for (at most the batch timeout), so the outcome is
// never unknown for a reason of this side's.
func (g *groupCommit[I, O]) call(ctx context.Context, item I) O {
	p := g.get(item)
	g.mu.Lock()
	g.queue = append(g.queue, p)
	lead := !g.busy
	g.busy = true
	g.mu.Unlock()
	if lead && g.sendBatch() {
		go g.drain() // what came meanwhile; the caller returns with its batch
	}
	select {
	case <-p.done:
		return g.answer(p)
	case <-ctx.Done():
	}
	g.mu.Lock()
	if !p.sent {
		for i, q := range g.queue {
			if q == p {
				g.queue = append(g.queue[:i], g.queue[i+1:]...)
				break
			}
		}
		g.mu.Unlock()
		g.put(p)
		return g.failed(&Error{Kind: KindTimeout, Code: CodeTimeout, Op: g.op, Err: ctx.Err()})
	}
	g.mu.Unlock()
	<-p.done
	return g.answer(p)
}

// answer returns p's outcome and recycles p.
func (g *groupCommit[I, O]) answer(p *pendingCall[I, O]) O {
	out := p.out
	g.put(p)
	return out
}

// drain sends batches until the queue is empty.
func (g *groupCommit[I, O]) drain() {
	for g.sendBatch() {
	}
}

// sendBatch sends one batch from the head of the queue and reports whether
// more is queued; with none, the group commit is idle again.
func (g *groupCommit[I, O]) sendBatch() bool {
	g.mu.Lock()
	n := min(len(g.queue), g.max)
	if n == 0 {
		g.busy = false
		g.mu.Unlock()
		return false
	}
	batch := append(g.sendCalls[:0], g.queue[:n]...)
	g.queue = append(g.queue[:0], g.queue[n:]...)
	for _, p := range batch {
		p.sent = true
	}
	g.mu.Unlock()

	items := slices.Grow(g.sendItems[:0], n)[:n]
	now := time.Now()
	for i, p := range batch {
		items[i] = p.item
		w := int64(now.Sub(p.queued))
		g.waited.Add(w)
		atomicMax(&g.waitedMax, w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	out := g.send(ctx, items)
	cancel()
	for i, p := range batch {
		if len(out) == n {
			p.out = out[i]
		} else {
			p.out = g.failed(&Error{Kind: KindBug, Code: CodeBug, Op: g.op,
				Msg: "the batch call returned a different number of outcomes than items"})
		}
		p.done <- struct{}{}
	}
	// Keep the slices for the next batch, holding no item or call.
	clear(items)
	clear(batch)
	g.sendItems, g.sendCalls = items, batch
	g.batches.Add(1)
	g.items.Add(uint64(n))
	for {
		l := g.largest.Load()
		if uint64(n) <= l || g.largest.CompareAndSwap(l, uint64(n)) {
			break
		}
	}
	g.mu.Lock()
	more := len(g.queue) > 0
	if !more {
		g.busy = false
	}
	g.mu.Unlock()
	return more
}

// waitStats returns the batches sent, the items they carried, the largest
// batch, and the average and longest queue wait.
func (g *groupCommit[I, O]) waitStats() (batches, items, largest uint64, avg, longest time.Duration) {
	batches, items, largest = g.batches.Load(), g.items.Load(), g.largest.Load()
	if items > 0 {
		avg = time.Duration(g.waited.Load() / int64(items))
	}
	return batches, items, largest, avg, time.Duration(g.waitedMax.Load())
}

// atomicMax raises m to v when v is larger.
func atomicMax(m *atomic.Int64, v int64) {
	for {
		cur := m.Load()
		if v <= cur || m.CompareAndSwap(cur, v) {
			return
		}
	}
}
