package sdk

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGroupCommitAnswersEachCallItsOwn: many callers at once, some whose
// context ends while they wait, through a group commit that recycles its
// pending calls and batch slices. Every call gets the answer to its own
// item, or a timeout error when its item was withdrawn before any batch
// took it (never sent); every item sent is answered exactly once; no batch
// is larger than max or sent while another is in flight.
func TestGroupCommitAnswersEachCallItsOwn(t *testing.T) {
	type out struct {
		v   int
		err error
	}
	var (
		sent     sync.Map // item -> true once a batch carried it
		inFlight atomic.Int32
		overlaps atomic.Int32
		oversize atomic.Int32
	)
	const maxBatch = 8
	g := &groupCommit[int, out]{
		op: "test", timeout: time.Second, max: maxBatch,
		failed: func(err error) out { return out{err: err} },
		send: func(_ context.Context, items []int) []out {
			if inFlight.Add(1) != 1 {
				overlaps.Add(1)
			}
			defer inFlight.Add(-1)
			if len(items) > maxBatch {
				oversize.Add(1)
			}
			res := make([]out, len(items))
			for i, it := range items {
				if _, dup := sent.LoadOrStore(it, true); dup {
					t.Errorf("item %d sent twice", it)
				}
				res[i] = out{v: 2 * it}
			}
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
			return res
		},
	}
	const callers, calls = 32, 300
	var answered, withdrawn atomic.Int64
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range calls {
				item := c*calls + i + 1
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if rand.IntN(4) == 0 {
					// Some end while they wait (or before they are queued).
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(100))*time.Microsecond)
				}
				o := g.call(ctx, item)
				cancel()
				switch {
				case o.err == nil:
					if o.v != 2*item {
						t.Errorf("item %d got the answer %d, want %d", item, o.v, 2*item)
					}
					answered.Add(1)
				default:
					var e *Error
					if !errors.As(o.err, &e) || e.Code != CodeTimeout {
						t.Errorf("item %d: error %v, want a timeout", item, o.err)
					}
					if _, ok := sent.Load(item); ok {
						t.Errorf("item %d was sent but its call reported a timeout", item)
					}
					withdrawn.Add(1)
				}
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(time.Minute):
		t.Fatal("calls still waiting after a minute: an answer went to the wrong call, or none came")
	}
	nSent := 0
	sent.Range(func(any, any) bool { nSent++; return true })
	if int64(nSent) != answered.Load() {
		t.Errorf("%d items sent, %d answered", nSent, answered.Load())
	}
	if answered.Load()+withdrawn.Load() != callers*calls {
		t.Errorf("%d answered + %d withdrawn, want %d calls", answered.Load(), withdrawn.Load(), callers*calls)
	}
	if overlaps.Load() != 0 || oversize.Load() != 0 {
		t.Errorf("%d batches overlapped another, %d were over %d items", overlaps.Load(), oversize.Load(), maxBatch)
	}
	batches, items, largest, _, _ := g.waitStats()
	if batches == 0 || items != uint64(nSent) || largest > maxBatch {
		t.Errorf("stats: %d batches, %d items (sent %d), largest %d", batches, items, nSent, largest)
	}
	t.Logf("%d answered, %d withdrawn, %d batches (largest %d)", answered.Load(), withdrawn.Load(), batches, largest)
}
