package loadgen

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSchedules(t *testing.T) {
	t.Parallel()
	if g := (Constant{PerSecond: 1000}).Gap(0); g != time.Millisecond {
		t.Fatalf("constant gap %v", g)
	}
	p := NewPoisson(1000, 7)
	var sum time.Duration
	const n = 20000
	for range n {
		sum += p.Gap(0)
	}
	if mean := sum / n; mean < 950*time.Microsecond || mean > 1050*time.Microsecond {
		t.Fatalf("poisson mean gap %v, want ~1ms", mean)
	}
	r := Ramp{From: 100, To: 300, Over: 2 * time.Second}
	if r.Rate(0) != 100 || r.Rate(time.Second) != 200 || r.Rate(5*time.Second) != 300 {
		t.Fatalf("ramp %v %v %v", r.Rate(0), r.Rate(time.Second), r.Rate(5*time.Second))
	}
	if (Constant{}).Gap(0) != time.Hour {
		t.Fatal("zero rate should not spin")
	}
}

// The producer keeps its schedule when Submit is slow: intended times stay
// on the grid, so a slow system shows as latency, not as fewer arrivals.
func TestProducerKeepsScheduleWhenSubmitIsSlow(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []Arrival
	p := &Producer{Schedule: Constant{PerSecond: 500}, Duration: 400 * time.Millisecond, Senders: 2,
		Submit: func(ctx context.Context, a Arrival) error {
			time.Sleep(10 * time.Millisecond) // 2 senders × 100/s: far below 500/s
			mu.Lock()
			got = append(got, a)
			mu.Unlock()
			return nil
		}}
	st, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Offered != 200 || st.Sent != 200 || len(got) != 200 {
		t.Fatalf("offered %d sent %d got %d, want 200", st.Offered, st.Sent, len(got))
	}
	for _, a := range got {
		want := st.Start.Add(time.Duration(a.Seq) * 2 * time.Millisecond)
		if d := a.Intended.Sub(want); d < -time.Microsecond || d > time.Microsecond {
			t.Fatalf("arrival %d intended %v off the schedule by %v", a.Seq, a.Intended, d)
		}
	}
}

func TestClosedLoopBoundsInFlight(t *testing.T) {
	t.Parallel()
	var inFlight, peak atomic.Int64
	c := &ClosedLoop{InFlight: 4, Duration: 200 * time.Millisecond}
	c.Submit = func(ctx context.Context, a Arrival) error {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		go func() {
			time.Sleep(time.Millisecond)
			inFlight.Add(-1)
			c.Done()
		}()
		return nil
	}
	st, err := c.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if peak.Load() > 4 || st.Sent < 50 {
		t.Fatalf("peak %d in flight (max 4), %d sent", peak.Load(), st.Sent)
	}
}

func TestRenewStormCounts(t *testing.T) {
	t.Parallel()
	var rounds atomic.Int64
	s := &RenewStorm{Concurrency: 3, Duration: 100 * time.Millisecond,
		Round: func(ctx context.Context, g int) (int, error) {
			rounds.Add(1)
			time.Sleep(time.Millisecond)
			return 10, nil
		}}
	st, err := s.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Rounds != uint64(rounds.Load()) || st.Renewed != 10*st.Rounds || st.Rounds < 30 {
		t.Fatalf("%+v", st)
	}
	if math.Abs(st.Elapsed.Seconds()-0.1) > 0.1 {
		t.Fatalf("elapsed %v", st.Elapsed)
	}
}
