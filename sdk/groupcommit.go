package sdk

import (
	"context"
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
	send    func(ctx context.Context, items []I) []O
	failed  func(err error) O // the outcome of an item the batch could not answer
	op      string
	timeout time.Duration // of one batch call
	max     int           // items per batch at most

	mu    sync.Mutex
	queue []*pendingCall[I, O]
	busy  bool // a batch is in flight, or about to be

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
	done   chan struct{}
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
	p := &pendingCall[I, O]{item: item, queued: time.Now(), done: make(chan struct{})}
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
		return p.out
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
		return g.failed(&Error{Kind: KindTimeout, Code: CodeTimeout, Op: g.op, Err: ctx.Err()})
	}
	g.mu.Unlock()
	<-p.done
	return p.out
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
	batch := make([]*pendingCall[I, O], n)
	copy(batch, g.queue)
	g.queue = append(g.queue[:0], g.queue[n:]...)
	for _, p := range batch {
		p.sent = true
	}
	g.mu.Unlock()

	items := make([]I, n)
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
		close(p.done)
	}
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
