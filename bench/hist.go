package bench

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range: 1 µs to 60 s, 3 significant digits.
const (
	histLowestUS  = 1
	histHighestUS = 60_000_000
	histSigFigs   = 3
)

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowestUS, histHighestUS, histSigFigs)
}

// Window is the measured interval [From, To): samples stamped outside it
// (warm-up, drain) are dropped. The zero Window takes everything.
type Window struct{ From, To time.Time }

// Contains reports whether t falls in the window.
func (w Window) Contains(t time.Time) bool {
	if !w.From.IsZero() && t.Before(w.From) {
		return false
	}
	return w.To.IsZero() || t.Before(w.To)
}

// Seconds is the window's length.
func (w Window) Seconds() float64 { return w.To.Sub(w.From).Seconds() }

// Recorder is one HdrHistogram (µs) with its own lock, used by one goroutine
// or a small group (a worker's handlers), so recording never contends on a
// shared histogram. Latency merges them at the end.
type Recorder struct {
	mu  sync.Mutex
	h   *hdrhistogram.Histogram
	win Window
	out int64 // samples over the histogram's range, clamped to its max
}

// Record adds d when at (the sample's stamp, e.g. its intended arrival
// time) falls in the window.
func (r *Recorder) Record(at time.Time, d time.Duration) {
	if !r.win.Contains(at) {
		return
	}
	us := d.Microseconds()
	if us < histLowestUS {
		us = histLowestUS
	}
	r.mu.Lock()
	if us > histHighestUS {
		us = histHighestUS
		r.out++
	}
	_ = r.h.RecordValue(us)
	r.mu.Unlock()
}

// Latency is one measured quantity (e.g. "claim"): a Recorder per shard,
// merged when the run ends.
type Latency struct {
	shards []*Recorder
}

// NewLatency returns a Latency with n shards recording in win.
func NewLatency(n int, win Window) *Latency {
	l := &Latency{shards: make([]*Recorder, max(n, 1))}
	for i := range l.shards {
		l.shards[i] = &Recorder{h: newHist(), win: win}
	}
	return l
}

// Shard returns recorder i (modulo the shard count).
func (l *Latency) Shard(i int) *Recorder { return l.shards[i%len(l.shards)] }

// Merge returns the shards merged into one histogram.
func (l *Latency) Merge() *hdrhistogram.Histogram {
	h := newHist()
	for _, r := range l.shards {
		r.mu.Lock()
		h.Merge(r.h)
		r.mu.Unlock()
	}
	return h
}

// Summary is a latency distribution in microseconds, with the encoded
// histogram (HdrHistogram V2, compressed, base64) so a report can be
// re-analysed or merged later.
type Summary struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
	Hist  string  `json:"hist,omitempty"`
}

// Summarize computes the percentiles of h and encodes it.
func Summarize(h *hdrhistogram.Histogram) *Summary {
	s := &Summary{Count: h.TotalCount()}
	if s.Count == 0 {
		return s
	}
	v := h.ValueAtPercentiles([]float64{50, 90, 99, 99.9})
	s.Mean = math.Round(h.Mean()*10) / 10
	s.P50, s.P90, s.P99, s.P999 = float64(v[50]), float64(v[90]), float64(v[99]), float64(v[99.9])
	s.Max = float64(h.Max())
	if enc, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase); err == nil {
		s.Hist = string(enc)
	}
	return s
}

// Histogram decodes the summary's encoded histogram.
func (s *Summary) Histogram() (*hdrhistogram.Histogram, error) {
	if s == nil || s.Hist == "" {
		return nil, fmt.Errorf("bench: summary has no encoded histogram")
	}
	return hdrhistogram.Decode([]byte(s.Hist))
}

// PercentileCurve returns (percentile, µs) points of h for a percentile
// plot: dense near the median, then each "nine" (90, 99, 99.9, …) up to
// what the sample count supports, and the max.
func PercentileCurve(h *hdrhistogram.Histogram) [][2]float64 {
	n := h.TotalCount()
	if n == 0 {
		return nil
	}
	var qs []float64
	for q := 0.0; q < 90; q += 10 {
		qs = append(qs, q)
	}
	maxNines := math.Log10(float64(n))
	for nines := 1.0; nines <= maxNines; nines += 0.25 {
		qs = append(qs, 100*(1-math.Pow(10, -nines)))
	}
	out := make([][2]float64, 0, len(qs)+1)
	for _, q := range qs {
		out = append(out, [2]float64{q, float64(h.ValueAtPercentile(q))})
	}
	return append(out, [2]float64{100, float64(h.Max())})
}

// summarizeInto adds to into the summary of each latency of lat that
// recorded anything.
func summarizeInto(into map[string]*Summary, lat map[string]*Latency) {
	for name, l := range lat {
		if s := Summarize(l.Merge()); s.Count > 0 {
			into[name] = s
		}
	}
}

// openLoopResult starts an open-loop scenario's result: its latencies
// summarized, the rate achieved over the window (done of them ended in
// it), the ops intended in it with the server's cost of them (m), and
// the tracker's lost and duplicated completions.
func openLoopResult(scenario string, cfg Config, win Window, unit string, rate float64, lat map[string]*Latency,
	done, ops int64, m measured, track *tracker) *Result {
	res := &Result{Scenario: scenario, Partitions: cfg.Partitions, Workers: cfg.Workers,
		DurationS: win.Seconds(), Unit: unit, OfferedRate: round3(rate), Latency: map[string]*Summary{}}
	summarizeInto(res.Latency, lat)
	res.AchievedRate = round3(float64(done) / win.Seconds())
	res.Throughput = res.AchievedRate
	res.Ops = ops
	res.efficiency(m.server, m.mallocs, res.Ops)
	res.Lost, res.Duplicated = track.outcome()
	return res
}
