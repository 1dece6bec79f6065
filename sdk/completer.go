package sdk

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// completer sends a worker's completions in batches (CompleteBatcher), as
// a group commit: a completion that finds no batch in flight is sent at
// once, alone, by its own goroutine; completions that come while a batch
// is in flight queue, and go together in the next batch as soon as it
// returns. So a completion never waits for company: it waits at most for
// the one batch ahead of it, and under load each call carries many.
type completer struct {
	batcher CompleteBatcher
	timeout time.Duration // of one batch call
	max     int           // completions per batch at most

	mu    sync.Mutex
	queue []*pendingComplete
	busy  bool // a batch is in flight, or about to be

	batches, items atomic.Uint64
	largest        atomic.Uint64
	// waited sums, and waitedMax bounds, how long completions waited in
	// the queue before their batch went out (ns): the price of company.
	waited, waitedMax atomic.Int64
}

// pendingComplete is one completion waiting for (or riding in) a batch.
type pendingComplete struct {
	item   CompleteItem
	out    CompleteOutcome
	sent   bool // taken into a batch (guarded by completer.mu)
	queued time.Time
	done   chan struct{}
}

// completeBatchMax bounds a batch: more than a worker's completions in one
// round trip rarely are, and the backend splits what it cannot send in one
// call anyway.
const completeBatchMax = 128

func newCompleter(b CompleteBatcher, timeout time.Duration) *completer {
	return &completer{batcher: b, timeout: timeout, max: completeBatchMax}
}

// complete sends item in the next batch and returns its outcome. When ctx
// ends before the item was taken into a batch, the item is withdrawn
// (nothing was sent) and the outcome is ctx's error; once taken, its
// batch's answer is waited for (at most the batch timeout), so the outcome
// is never unknown for a reason of this side's.
func (c *completer) complete(ctx context.Context, item CompleteItem) CompleteOutcome {
	p := &pendingComplete{item: item, queued: time.Now(), done: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, p)
	lead := !c.busy
	c.busy = true
	c.mu.Unlock()
	if lead {
		c.sendOne() // the queue held only p: no wait at all
	}
	select {
	case <-p.done:
		return p.out
	case <-ctx.Done():
	}
	c.mu.Lock()
	if !p.sent {
		for i, q := range c.queue {
			if q == p {
				c.queue = append(c.queue[:i], c.queue[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
		return CompleteOutcome{Err: &Error{Kind: KindTimeout, Code: CodeTimeout, Op: "complete", Err: ctx.Err()}}
	}
	c.mu.Unlock()
	<-p.done
	return p.out
}

// sendOne sends the batch at the head of the queue, then leaves the rest
// (completions that came meanwhile) to drain, on another goroutine, so the
// caller's own completion returns with its batch.
func (c *completer) sendOne() {
	if c.send() {
		go c.drain()
	}
}

// drain sends batches until the queue is empty.
func (c *completer) drain() {
	for c.send() {
	}
}

// send sends one batch from the head of the queue and reports whether more
// is queued; with none, the completer is idle again.
func (c *completer) send() bool {
	c.mu.Lock()
	n := min(len(c.queue), c.max)
	if n == 0 {
		c.busy = false
		c.mu.Unlock()
		return false
	}
	batch := make([]*pendingComplete, n)
	copy(batch, c.queue)
	c.queue = append(c.queue[:0], c.queue[n:]...)
	for _, p := range batch {
		p.sent = true
	}
	c.mu.Unlock()

	items := make([]CompleteItem, n)
	now := time.Now()
	for i, p := range batch {
		items[i] = p.item
		w := int64(now.Sub(p.queued))
		c.waited.Add(w)
		for {
			m := c.waitedMax.Load()
			if w <= m || c.waitedMax.CompareAndSwap(m, w) {
				break
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	out := c.batcher.CompleteBatch(ctx, items)
	cancel()
	for i, p := range batch {
		if len(out) == n {
			p.out = out[i]
		} else {
			p.out = CompleteOutcome{Err: &Error{Kind: KindBug, Code: CodeBug, Op: "complete",
				Msg: "CompleteBatch returned a different number of outcomes than items"}}
		}
		close(p.done)
	}
	c.batches.Add(1)
	c.items.Add(uint64(n))
	for {
		l := c.largest.Load()
		if uint64(n) <= l || c.largest.CompareAndSwap(l, uint64(n)) {
			break
		}
	}
	c.mu.Lock()
	more := len(c.queue) > 0
	if !more {
		c.busy = false
	}
	c.mu.Unlock()
	return more
}
