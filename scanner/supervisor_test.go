package scanner_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/scanner"
)

// fakeScanner records its calls and can panic or fail on demand.
type fakeScanner struct {
	interval   time.Duration
	cycles     atomic.Int64
	calls      atomic.Int64
	inFlight   atomic.Int64
	panicAt    int64 // panic on this call (1-based); 0 never
	failEvery  int64 // fail every n-th call; 0 never
	block      bool  // block until ctx ends
	mu         sync.Mutex
	partitions map[int]int
}

func (f *fakeScanner) Name() string            { return "fake" }
func (f *fakeScanner) Interval() time.Duration { return f.interval }
func (f *fakeScanner) StartCycle(context.Context) error {
	f.cycles.Add(1)
	return nil
}

func (f *fakeScanner) ScanPartition(ctx context.Context, p int) (scanner.Counts, error) {
	f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	n := f.calls.Add(1)
	f.mu.Lock()
	if f.partitions == nil {
		f.partitions = map[int]int{}
	}
	f.partitions[p]++
	f.mu.Unlock()
	if n == f.panicAt {
		panic("boom")
	}
	if f.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if f.failEvery > 0 && n%f.failEvery == 0 {
		return nil, errors.New("injected")
	}
	return scanner.Counts{"touched": 1}, nil
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// syncBuffer is a bytes.Buffer safe for concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSupervisorRestartsAfterPanic(t *testing.T) {
	var logs syncBuffer
	f := &fakeScanner{interval: 10 * time.Millisecond, panicAt: 3}
	s := scanner.NewSupervisor(scanner.StaticPartitions{0, 1, 2, 3}, scanner.SupervisorOptions{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), PanicBackoff: 50 * time.Millisecond}, f)
	ctx, cancel := context.WithCancel(context.Background())
	go s.Run(ctx)
	eventually(t, 5*time.Second, "cycles after the panic", func() bool { return s.Stats().Scanners[0].Cycles >= 3 })
	cancel()
	<-s.Done()
	st := s.Stats().Scanners[0]
	if st.Panics != 1 {
		t.Fatalf("panics %d, want 1", st.Panics)
	}
	if !bytes.Contains([]byte(logs.String()), []byte("scanner panicked")) || !bytes.Contains([]byte(logs.String()), []byte("boom")) {
		t.Fatalf("panic not logged: %s", logs.String())
	}
	if st.Acted["touched"] < 8 || st.LastPartitions != 4 || st.LastCycle <= 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Run returns only once every scanner loop exited, even one blocked in a
// call, and does so promptly after cancel.
func TestSupervisorStopsCleanly(t *testing.T) {
	blocked := &fakeScanner{interval: time.Hour, block: true}
	busy := &fakeScanner{interval: time.Millisecond}
	s := scanner.NewSupervisor(scanner.StaticPartitions{0, 1, 2, 3, 4, 5, 6, 7}, scanner.SupervisorOptions{Concurrency: 3, Logger: discard}, blocked, busy)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	eventually(t, 5*time.Second, "blocked calls", func() bool { return blocked.inFlight.Load() == 3 })
	if err := s.Run(ctx); err == nil {
		t.Fatal("a second Run was allowed")
	}
	start := time.Now()
	cancel()
	if err := <-ran; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Run took %v to stop", d)
	}
	if n := blocked.inFlight.Load() + busy.inFlight.Load(); n != 0 {
		t.Fatalf("%d calls still in flight after Run returned", n)
	}
	if got := s.Stats().Scanners[0].Cycles; got != 0 {
		t.Fatalf("an interrupted cycle was counted (%d)", got)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed")
	}
}

// Every partition is visited once per cycle, errors are counted, and a
// failing pass does not stop the cycle.
func TestSupervisorVisitsEveryPartition(t *testing.T) {
	f := &fakeScanner{interval: 5 * time.Millisecond, failEvery: 5}
	parts := scanner.StaticPartitions{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	s := scanner.NewSupervisor(parts, scanner.SupervisorOptions{Concurrency: 4, Logger: discard}, f)
	ctx, cancel := context.WithCancel(context.Background())
	go s.Run(ctx)
	eventually(t, 5*time.Second, "5 cycles", func() bool { return s.Stats().Scanners[0].Cycles >= 5 })
	cancel()
	<-s.Done()
	st := s.Stats().Scanners[0]
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range parts {
		if f.partitions[p] < 5 {
			t.Fatalf("partition %d visited %d times in %d cycles", p, f.partitions[p], st.Cycles)
		}
	}
	// Every call of a completed cycle is counted, as an error or as acted;
	// a cycle the cancel interrupted counts its errors (recorded at once)
	// but not its actions (an interrupted cycle is not a cycle), so the sum
	// lies between the completed cycles' calls and all calls.
	sum, done := st.Errors+st.Acted["touched"], st.Cycles*uint64(len(parts))
	if st.Errors == 0 || sum < done || sum > uint64(f.calls.Load()) {
		t.Fatalf("errors %d + touched %d outside [%d calls in %d completed cycles, %d calls]",
			st.Errors, st.Acted["touched"], done, st.Cycles, f.calls.Load())
	}
}

func TestNextWaitJitter(t *testing.T) {
	const iv = 100 * time.Millisecond
	lo, hi := time.Hour, time.Duration(0)
	for range 2000 {
		w := scanner.NextWait(iv, 0)
		lo, hi = min(lo, w), max(hi, w)
	}
	if lo < 90*time.Millisecond || hi > 110*time.Millisecond || hi-lo < 15*time.Millisecond {
		t.Fatalf("waits span [%v, %v], want ±10%% around %v", lo, hi, iv)
	}
	if w := scanner.NextWait(iv, 30*time.Millisecond); w < 60*time.Millisecond || w > 80*time.Millisecond {
		t.Fatalf("after a 30ms cycle the wait is %v", w)
	}
	if w := scanner.NextWait(iv, time.Second); w != 10*time.Millisecond {
		t.Fatalf("an overrunning cycle waits %v, want a tenth of the interval", w)
	}
}
