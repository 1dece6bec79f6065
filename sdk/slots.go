package sdk

import "sync/atomic"

// slotLedger counts a worker's MaxConcurrency slots. A slot is free, or
// reserved by a claim under way, a running task or a claim offer. A task's
// Complete may hand its slot to the offer it posts in the same call; the
// task's end then leaves the slot to the offer (taskSlot).
type slotLedger struct {
	max   int64
	used  atomic.Int64
	freed chan struct{} // signalled, without blocking, when a slot frees or a task's slot becomes an offer
}

func newSlotLedger(max int) *slotLedger {
	return &slotLedger{max: int64(max), freed: make(chan struct{}, 1)}
}

// reserve takes up to n free slots and returns how many it took.
func (l *slotLedger) reserve(n int) int {
	for {
		cur := l.used.Load()
		free := l.max - cur
		if free <= 0 || n <= 0 {
			return 0
		}
		k := min(int64(n), free)
		if l.used.CompareAndSwap(cur, cur+k) {
			return int(k)
		}
	}
}

// release frees n reserved slots and signals freed.
func (l *slotLedger) release(n int) {
	if n <= 0 {
		return
	}
	l.used.Add(-int64(n))
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

// free returns how many slots are free now.
func (l *slotLedger) free() int { return max(int(l.max-l.used.Load()), 0) }

// inUse returns how many slots are reserved now.
func (l *slotLedger) inUse() int { return int(l.used.Load()) }

// taskSlot is the slot a running task holds. Complete may hand it to the
// claim offer it posts (handOver), and take it back when that offer was
// not posted (takeBack); the task's end releases it only if the task still
// holds it.
type taskSlot struct{ handedOver atomic.Bool }

func (s *taskSlot) handOver()         { s.handedOver.Store(true) }
func (s *taskSlot) takeBack()         { s.handedOver.Store(false) }
func (s *taskSlot) heldByOffer() bool { return s.handedOver.Load() }

// endTask releases a finished task's slot unless an offer holds it now.
// Either way freed is signalled: a claim loop waiting at capacity for a
// slot (waitForSlot) must wake when the slot becomes an open offer too, to
// idle with it (arrivals, polls) instead of waiting for a hand-off that a
// create on another partition of a cluster never makes.
func (l *slotLedger) endTask(s *taskSlot) {
	if !s.heldByOffer() {
		l.release(1)
		return
	}
	select {
	case l.freed <- struct{}{}:
	default:
	}
}
