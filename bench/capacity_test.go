package bench

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// syntheticCurve is a server whose claim latency is exponential with mean
// base/(1 - rate/capacity) (a single-server queue), blurred by a random
// factor of up to ±jitter per step; past capacity it is a backlog of
// seconds. Its p99 is mean·ln(100), so the rate where it meets bound is
// known exactly: capacity·(1 - base·ln(100)/bound).
type syntheticCurve struct {
	base, capacity, jitter float64
	rng                    *rand.Rand
	steps                  int
}

func (c *syntheticCurve) truth(boundUS float64) float64 {
	return c.capacity * (1 - c.base*math.Log(100)/boundUS)
}

func (c *syntheticCurve) measure(_ context.Context, rate float64, window time.Duration) (CapacityStep, error) {
	c.steps++
	mean := 5e6 // past capacity: seconds of backlog
	if rate < c.capacity {
		mean = c.base / (1 - rate/c.capacity)
	}
	mean *= 1 + c.jitter*(2*c.rng.Float64()-1)
	n := int(rate * window.Seconds())
	claim, e2e := newHist(), newHist()
	for range n {
		v := c.rng.ExpFloat64() * mean
		_ = claim.RecordValue(int64(math.Max(1, v)))
		_ = e2e.RecordValue(int64(math.Max(1, v+c.base)))
	}
	return CapacityStep{AchievedRate: rate, WindowS: window.Seconds(),
		Latency: map[string]*Summary{"claim": Summarize(claim), "e2e": Summarize(e2e)}}, nil
}

func TestCapacitySearchFindsTheSyntheticKnee(t *testing.T) {
	t.Parallel()
	slo, err := ParseSLO("claim p99 <= 5ms")
	if err != nil {
		t.Fatal(err)
	}
	for _, seed := range []uint64{1, 2, 3} {
		c := &syntheticCurve{base: 200, capacity: 10000, jitter: 0.05, rng: rand.New(rand.NewPCG(seed, 7))}
		want := c.truth(5000)
		o := CapacityOptions{SLO: slo, StartRate: 500, MaxRate: 20000, Step: 2 * time.Second}
		o.fill()
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		cr, err := searchCapacity(context.Background(), o, c.measure, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(cr.Searches) != CapacityRepetitionsDefault || !cr.Met() || cr.Capped {
			t.Fatalf("seed %d: %d searches, met %v, capped %v", seed, len(cr.Searches), cr.Met(), cr.Capped)
		}
		// Each search ends with a bracket no wider than the resolution, and
		// the knee inside it but for the measurement's noise (the p99 of a
		// few thousand samples, ±5% jitter: about 2% of the rate here).
		const noise = 0.03
		for i, s := range cr.Searches {
			if s.Missed <= s.Found || s.Missed-s.Found > o.Resolution*s.Found*1.001 {
				t.Errorf("seed %d search %d: bracket %g..%g wider than %g", seed, i, s.Found, s.Missed, o.Resolution)
			}
			if s.Found > want*(1+noise) || s.Missed < want*(1-noise) {
				t.Errorf("seed %d search %d: bracket %g..%g misses the knee %g", seed, i, s.Found, s.Missed, want)
			}
			if n := len(s.Steps); n > 12 {
				t.Errorf("seed %d search %d: %d steps", seed, i, n)
			}
			for _, st := range s.Steps {
				if st.Met != (st.Values[0] <= 5000) || (st.Met != (st.Why == "")) {
					t.Errorf("step %+v judged wrong", st)
				}
			}
		}
		if !(cr.RateMin <= cr.Rate && cr.Rate <= cr.RateMax) || cr.RateMax > want*(1+noise) || cr.RateMin < want*(1-o.Resolution-noise) {
			t.Errorf("seed %d: range %g..%g (median %g), knee %g", seed, cr.RateMin, cr.RateMax, cr.Rate, want)
		}
		if c.steps != countSteps(cr) {
			t.Errorf("seed %d: %d steps measured, %d recorded", seed, c.steps, countSteps(cr))
		}
	}
}

func countSteps(cr *CapacityReport) int {
	n := 0
	for _, s := range cr.Searches {
		n += len(s.Steps)
	}
	return n
}

// A lax SLO is met at the ramp's ceiling (capped: at least that rate); an
// impossible one nowhere (ramped down, no rate found); a p99.9 clause
// lengthens a slow step to hold its samples.
func TestCapacitySearchEnds(t *testing.T) {
	t.Parallel()
	c := &syntheticCurve{base: 200, capacity: 10000, rng: rand.New(rand.NewPCG(4, 4))}
	lax, _ := ParseSLO("e2e p50 <= 30s")
	o := CapacityOptions{SLO: lax, Repetitions: 1, StartRate: 1000, MaxRate: 6000, Step: 100 * time.Millisecond}
	o.fill()
	cr, err := searchCapacity(context.Background(), o, c.measure, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cr.Capped || cr.Rate != 6000 || len(cr.Searches[0].Steps) != 4 { // 1000, 2000, 4000, 6000
		t.Fatalf("lax SLO: capped %v, rate %g, %d steps", cr.Capped, cr.Rate, len(cr.Searches[0].Steps))
	}

	hard, _ := ParseSLO("claim p50 <= 1us")
	o = CapacityOptions{SLO: hard, Repetitions: 2, StartRate: 640, MaxRate: 6000, Step: 100 * time.Millisecond}
	o.fill()
	cr, err = searchCapacity(context.Background(), o, c.measure, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Met() || cr.Rate != 0 || cr.Searches[0].Steps[1].Phase != "ramp-down" {
		t.Fatalf("impossible SLO: met %v, rate %g, steps %+v", cr.Met(), cr.Rate, cr.Searches[0].Steps)
	}

	tail, _ := ParseSLO("claim p99.9 <= 5ms")
	o = CapacityOptions{SLO: tail, Step: time.Second}
	o.fill()
	if w := o.stepWindow(1000); w != 10*time.Second { // 10,000 samples at 1000/s
		t.Errorf("p99.9 at 1000/s: window %v, want 10s", w)
	}
	if w := o.stepWindow(10); w != o.MaxStep {
		t.Errorf("p99.9 at 10/s: window %v, want the max %v", w, o.MaxStep)
	}
	if w := o.stepWindow(1e6); w != time.Second {
		t.Errorf("p99.9 at 1M/s: window %v, want the step 1s", w)
	}
}

func TestParseSLO(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"claim p99 <= 5ms":                              "claim p99 ≤ 5.00ms",
		"  claim   p99<=5ms ":                           "claim p99 ≤ 5.00ms",
		"claim p99 ≤ 500µs":                             "claim p99 ≤ 500µs",
		"e2e p99.9 <= 20ms, handler-start p50 <= 800us": "e2e p99.9 ≤ 20.0ms, handler-start p50 ≤ 800µs",
		"claim p50 <= 1ms and e2e p95 <= 1.5s":          "claim p50 ≤ 1.00ms, e2e p95 ≤ 1.50s",
		"handler_start p99.99 <= 2ms":                   "handler-start p99.99 ≤ 2.00ms",
	} {
		slo, err := ParseSLO(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := slo.String(); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
	slo, _ := ParseSLO("e2e p99.9 <= 20ms")
	if c := slo.Clauses[0]; c.Latency != "e2e" || c.Percentile != 99.9 || c.BoundUS != 20000 {
		t.Errorf("parsed %+v", c)
	}
	for _, bad := range []string{"", "claim", "claim p99", "claim p99 <= 5", "claim p99 >= 5ms", "claim p100 <= 5ms", "claim p0 <= 5ms",
		"submit p99 <= 5ms", "claim p99 <= -5ms", "claim p99 <= 0ms", "claim p99 <= 2m", "claim p99 <= 5ms,", "claim p99 <= 5ms; rm -rf /",
		"claim p99 <= 100ns"} {
		if _, err := ParseSLO(bad); err == nil {
			t.Errorf("%q accepted", bad)
		} else if !strings.Contains(err.Error(), "SLO") {
			t.Errorf("%q: error %q does not say SLO", bad, err)
		}
	}
}

func TestCapacityOptionsValidate(t *testing.T) {
	t.Parallel()
	slo, _ := ParseSLO("claim p99 <= 5ms")
	for name, o := range map[string]CapacityOptions{
		"no SLO":         {},
		"negative reps":  {SLO: slo, Repetitions: -1},
		"negative step":  {SLO: slo, Step: -time.Second},
		"negative rate":  {SLO: slo, StartRate: -1},
		"max below":      {SLO: slo, StartRate: 100, MaxRate: 50},
		"ramp factor 1":  {SLO: slo, RampFactor: 1},
		"resolution 1":   {SLO: slo, Resolution: 1},
		"negative warm":  {SLO: slo, Warmup: -time.Second},
		"max step below": {SLO: slo, Step: 5 * time.Second, MaxStep: time.Second},
	} {
		o.fill()
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// ParseSLO never panics, and what it accepts prints back as an SLO it
// accepts again, with the same latencies and percentiles.
func FuzzParseSLO(f *testing.F) {
	for _, s := range []string{"claim p99 <= 5ms", "e2e p99.9 ≤ 20ms, handler-start p50 <= 800us", "claim p50 <= 1ms and e2e p95 <= 1.5s",
		"claim p99.99999 <= 59s", "claim p1e2 <= 5ms", "claim p99 <= 5ms,,", "and and", "claim p99<=1us"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		slo, err := ParseSLO(s)
		if err != nil {
			return
		}
		back, err := ParseSLO(slo.String())
		if err != nil {
			t.Fatalf("%q printed as %q, which does not parse: %v", s, slo.String(), err)
		}
		if len(back.Clauses) != len(slo.Clauses) {
			t.Fatalf("%q: %d clauses, back %d", s, len(slo.Clauses), len(back.Clauses))
		}
		for i, c := range slo.Clauses {
			if b := back.Clauses[i]; b.Latency != c.Latency || b.Percentile != c.Percentile || b.BoundUS <= 0 {
				t.Fatalf("%q: clause %d %+v printed back as %+v", s, i, c, b)
			}
		}
	})
}
