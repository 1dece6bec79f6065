package bench

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// payloadHeader is the part of every bench payload the harness reads back:
// the arrival's sequence number and its intended time (unix ns), so the
// handler can time the whole path from the schedule, not from the send.
const payloadHeader = 16

func encodePayload(seq uint64, intended time.Time, size int) []byte {
	b := make([]byte, max(size, payloadHeader))
	binary.BigEndian.PutUint64(b, seq)
	if !intended.IsZero() {
		binary.BigEndian.PutUint64(b[8:], uint64(intended.UnixNano()))
	}
	return b
}

func decodePayload(b []byte) (seq uint64, intended time.Time, ok bool) {
	if len(b) < payloadHeader {
		return 0, time.Time{}, false
	}
	seq = binary.BigEndian.Uint64(b)
	if ns := binary.BigEndian.Uint64(b[8:]); ns != 0 {
		intended = time.Unix(0, int64(ns))
	}
	return seq, intended, true
}

// tracker counts completions per submitted sequence number, so a run can
// tell lost work (submitted, never completed) from duplicated work
// (completed twice: the fencing failed).
type tracker struct {
	shards    [64]trackShard
	submitted atomic.Int64
	completed atomic.Int64 // distinct sequences completed
	dups      atomic.Int64 // completions beyond the first
}

type trackShard struct {
	mu   sync.Mutex
	subm map[uint64]bool
	done map[uint64]int32
}

func newTracker() *tracker {
	t := &tracker{}
	for i := range t.shards {
		t.shards[i] = trackShard{subm: map[uint64]bool{}, done: map[uint64]int32{}}
	}
	return t
}

// submit records a create that returned success.
func (t *tracker) submit(seq uint64) {
	s := &t.shards[seq%64]
	s.mu.Lock()
	s.subm[seq] = true
	s.mu.Unlock()
	t.submitted.Add(1)
}

// complete records a completion that landed.
func (t *tracker) complete(seq uint64) {
	s := &t.shards[seq%64]
	s.mu.Lock()
	s.done[seq]++
	n := s.done[seq]
	s.mu.Unlock()
	if n == 1 {
		t.completed.Add(1)
	} else {
		t.dups.Add(1)
	}
}

// settled reports whether every submitted sequence completed.
func (t *tracker) settled() bool { return t.completed.Load() >= t.submitted.Load() }

// outcome returns lost (submitted, never completed) and duplicated counts.
func (t *tracker) outcome() (lost, dup int64) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for seq := range s.subm {
			if s.done[seq] == 0 {
				lost++
			}
		}
		s.mu.Unlock()
	}
	return lost, t.dups.Load()
}

// waitSettled waits until every submission completed or d passes.
func (t *tracker) waitSettled(d time.Duration) bool {
	end := time.Now().Add(d)
	for !t.settled() {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// firstFault counts a scenario's failures (each on its own counter) and
// keeps the first one's message for the result's note.
type firstFault struct {
	mu  sync.Mutex
	msg string
}

// add counts a failure on counter and keeps its message if it is the first.
func (f *firstFault) add(counter *atomic.Int64, format string, args ...any) {
	counter.Add(1)
	f.mu.Lock()
	if f.msg == "" {
		f.msg = fmt.Sprintf(format, args...)
	}
	f.mu.Unlock()
}

// first returns the first failure's message, "" when none.
func (f *firstFault) first() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.msg
}
