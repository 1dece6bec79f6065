package bench

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestLatencyMergeEqualsOneHistogram(t *testing.T) {
	t.Parallel()
	l := NewLatency(4, Window{})
	one := newHist()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 1; i <= 2500; i++ {
				l.Shard(g).Record(time.Now(), time.Duration(g*2500+i)*time.Microsecond)
			}
		})
	}
	wg.Wait()
	for v := int64(1); v <= 10000; v++ {
		_ = one.RecordValue(v)
	}
	m := l.Merge()
	if m.TotalCount() != 10000 || !m.Equals(one) {
		t.Fatalf("merged %d samples; equal to one histogram: %v", m.TotalCount(), m.Equals(one))
	}
}

func TestSummaryPercentiles(t *testing.T) {
	t.Parallel()
	h := newHist()
	for v := int64(1); v <= 100000; v++ {
		_ = h.RecordValue(v)
	}
	s := Summarize(h)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", s.P50, 50000}, {"p90", s.P90, 90000}, {"p99", s.P99, 99000}, {"p99.9", s.P999, 99900}, {"max", s.Max, 100000}} {
		// 3 significant digits: within 0.1%.
		if math.Abs(c.got-c.want)/c.want > 0.001 {
			t.Errorf("%s = %v, want %v ±0.1%%", c.name, c.got, c.want)
		}
	}
	back, err := s.Histogram()
	if err != nil || !back.Equals(h) {
		t.Fatalf("encoded histogram does not round-trip: %v", err)
	}
}

func TestWindowExcludesWarmupAndDrain(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	win := Window{From: t0.Add(time.Second), To: t0.Add(2 * time.Second)}
	l := NewLatency(1, win)
	l.Shard(0).Record(t0, time.Millisecond)                              // warm-up
	l.Shard(0).Record(t0.Add(1500*time.Millisecond), 2*time.Millisecond) // measured
	l.Shard(0).Record(t0.Add(2*time.Second), 3*time.Millisecond)         // drain (To is exclusive)
	h := l.Merge()
	if h.TotalCount() != 1 || h.Max() < 1999 || h.Max() > 2001 {
		t.Fatalf("window kept %d samples (max %d µs), want only the 2ms one", h.TotalCount(), h.Max())
	}
}

func TestRecordClampsOutOfRange(t *testing.T) {
	t.Parallel()
	l := NewLatency(1, Window{})
	l.Shard(0).Record(time.Now(), 0)
	l.Shard(0).Record(time.Now(), 2*time.Minute)
	h := l.Merge()
	if h.TotalCount() != 2 || h.Min() != 1 || h.Max() < histHighestUS*999/1000 {
		t.Fatalf("count %d min %d max %d", h.TotalCount(), h.Min(), h.Max())
	}
}

func TestPercentileCurveIsMonotonic(t *testing.T) {
	t.Parallel()
	h := newHist()
	for v := int64(1); v <= 5000; v++ {
		_ = h.RecordValue(v * v % 9973)
	}
	pts := PercentileCurve(h)
	if len(pts) < 10 || pts[len(pts)-1][0] != 100 {
		t.Fatalf("curve %v", pts)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i][0] < pts[i-1][0] || pts[i][1] < pts[i-1][1] {
			t.Fatalf("not monotonic at %d: %v then %v", i, pts[i-1], pts[i])
		}
	}
	if PercentileCurve(newHist()) != nil {
		t.Fatal("empty histogram has a curve")
	}
}

func TestTrackerLostAndDuplicated(t *testing.T) {
	t.Parallel()
	tr := newTracker()
	for seq := range uint64(10) {
		tr.submit(seq)
	}
	for seq := range uint64(8) {
		tr.complete(seq)
	}
	tr.complete(3)
	lost, dup := tr.outcome()
	if lost != 2 || dup != 1 || tr.settled() {
		t.Fatalf("lost %d dup %d settled %v, want 2 1 false", lost, dup, tr.settled())
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Unix(1700000000, 123456789)
	seq, got, ok := decodePayload(encodePayload(42, at, 64))
	if !ok || seq != 42 || !got.Equal(at) {
		t.Fatalf("%v %v %v", seq, got, ok)
	}
	if _, _, ok := decodePayload([]byte("short")); ok {
		t.Fatal("short payload decoded")
	}
}

func TestParseCommandStats(t *testing.T) {
	t.Parallel()
	info := "# Commandstats\r\ncmdstat_fcall:calls=12,usec=40,usec_per_call=3.33,rejected_calls=0,failed_calls=0\r\ncmdstat_client|setinfo:calls=2,usec=1\r\n"
	got := parseCommandStats(info)
	if got["fcall"] != 12 || got["client|setinfo"] != 2 || len(got) != 2 {
		t.Fatalf("%v", got)
	}
	if us := parseCommandUsec(info); us["fcall"] != 40 || us["client|setinfo"] != 1 || len(us) != 2 {
		t.Fatalf("usec %v", us)
	}
	a := serverSnapshot{calls: map[string]int64{"fcall": 10, "info": 1}, usec: map[string]int64{"fcall": 100}, cpu: 1.0}
	b := serverSnapshot{calls: map[string]int64{"fcall": 30, "info": 5, "ping": 4}, usec: map[string]int64{"fcall": 250, "info": 9}, cpu: 1.5}
	d := a.to(b)
	if d.calls["fcall"] != 20 || d.calls["ping"] != 4 || d.calls["info"] != 0 || d.total() != 24 || d.cpuSeconds != 0.5 ||
		d.usec["fcall"] != 150 || d.usec["info"] != 0 {
		t.Fatalf("%+v", d)
	}
	var r Result
	r.efficiency(d, 100, 10)
	if r.CommandsPerOp != 2.4 || r.FcallsPerOp != 2 || r.ValkeyCPUPerOpUS != 50000 || r.AllocsPerOp != 10 || r.CommandMix["ping"] != 0.4 {
		t.Fatalf("%+v", r)
	}
}

func TestParseBenchmarkCSV(t *testing.T) {
	t.Parallel()
	out := "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\"\n\"FCALL ff_version 0\",\"51234.50\",\"0.019\",\"0.008\",\"0.015\"\n"
	x, err := parseBenchmarkCSV(out)
	if err != nil || x.rate != 51234.5 || math.Abs(x.meanUS-19) > 1e-9 || math.Abs(x.p50US-15) > 1e-9 {
		t.Fatalf("%+v %v", x, err)
	}
	if _, err := parseBenchmarkCSV("garbage"); err == nil {
		t.Fatal("no error for garbage")
	}
}
