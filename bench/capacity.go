package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Capacity at an SLO: the highest open-loop arrival rate whose latency
// meets a service-level objective, found by a ramp and a bisection, each
// step an open-loop run long enough to hold the objective's percentile,
// the whole search repeated to give a range.

// SLOGrammar documents what ParseSLO accepts (ffbench capacity --help).
const SLOGrammar = `SLO grammar: one or more clauses joined by "," or "and"; every clause must hold.
  clause     = latency percentile "<=" duration
  latency    = claim | handler-start | e2e
               (claim: intended arrival → lease held; handler-start: → handler
               running; e2e: → completion landed; all timed from the schedule)
  percentile = p50 | p90 | p99 | p99.9 | pN with 0 < N < 100 (p95, p99.99)
  duration   = a Go duration: 800us, 800µs, 5ms, 1.5s
  "≤" may stand for "<="; spaces around "<=" are optional.
  Examples: 'claim p99 <= 5ms'   'claim p99 <= 5ms, e2e p99.9 <= 20ms'`

// SLO is a parsed objective: every clause must hold at a rate.
type SLO struct {
	Clauses []SLOClause `json:"clauses"`
}

// SLOClause is one "latency percentile <= bound".
type SLOClause struct {
	// Latency is the measure: "claim", "handler_start" or "e2e".
	Latency string `json:"latency"`
	// Percentile is in (0, 100): 99 for p99.
	Percentile float64 `json:"percentile"`
	// BoundUS is the objective, microseconds.
	BoundUS float64 `json:"bound_us"`
}

var sloClause = regexp.MustCompile(`^(claim|handler[-_]start|e2e)\s+p([0-9]+(?:\.[0-9]+)?)\s*(?:<=|≤)\s*([0-9][0-9.]*(?:ns|us|µs|μs|ms|s|m))$`)

// ParseSLO parses an objective in SLOGrammar; an error names the clause
// that does not parse.
func ParseSLO(s string) (SLO, error) {
	var slo SLO
	norm := strings.Join(strings.Fields(s), " ")
	if norm == "" {
		return slo, errors.New("empty SLO (e.g. 'claim p99 <= 5ms')")
	}
	for _, part := range regexp.MustCompile(`\s*(?:,|\band\b)\s*`).Split(norm, -1) {
		part = strings.TrimSpace(part)
		m := sloClause.FindStringSubmatch(strings.ToLower(part))
		if m == nil {
			return SLO{}, fmt.Errorf("SLO clause %q: want LATENCY pN <= DURATION, LATENCY one of claim, handler-start, e2e (e.g. 'claim p99 <= 5ms')",
				clean(part, maxNameRunes))
		}
		q, err := strconv.ParseFloat(m[2], 64)
		if err != nil || q <= 0 || q >= 100 {
			return SLO{}, fmt.Errorf("SLO clause %q: percentile p%s must be above 0 and below 100", clean(part, maxNameRunes), m[2])
		}
		d, err := time.ParseDuration(m[3])
		if err != nil || d <= 0 {
			return SLO{}, fmt.Errorf("SLO clause %q: bound %q must be a positive duration", clean(part, maxNameRunes), m[3])
		}
		if d < time.Microsecond || d > histHighestUS*time.Microsecond {
			return SLO{}, fmt.Errorf("SLO clause %q: bound %v outside what is measured (1µs to 60s)", clean(part, maxNameRunes), d)
		}
		slo.Clauses = append(slo.Clauses, SLOClause{Latency: strings.ReplaceAll(m[1], "-", "_"), Percentile: q,
			BoundUS: float64(d.Microseconds())})
	}
	return slo, nil
}

// String writes the objective back in the grammar.
func (s SLO) String() string {
	parts := make([]string, len(s.Clauses))
	for i, c := range s.Clauses {
		parts[i] = c.String()
	}
	return strings.Join(parts, ", ")
}

// String writes the clause in the grammar ("claim p99 ≤ 5.00ms": ≤ keeps
// Markdown and HTML free of a "<").
func (c SLOClause) String() string {
	return fmt.Sprintf("%s %s ≤ %s", strings.ReplaceAll(c.Latency, "_", "-"), c.pct(), fmtUS(c.BoundUS))
}

func (c SLOClause) pct() string { return "p" + strconv.FormatFloat(c.Percentile, 'f', -1, 64) }

// value is the clause's percentile of the step's latency, µs; false when
// the step recorded none.
func (c SLOClause) value(lat map[string]*Summary) (float64, bool) {
	s := lat[c.Latency]
	if s == nil || s.Count == 0 {
		return 0, false
	}
	if h, err := s.Histogram(); err == nil {
		return float64(h.ValueAtPercentile(c.Percentile)), true
	}
	switch c.Percentile {
	case 50:
		return s.P50, true
	case 90:
		return s.P90, true
	case 99:
		return s.P99, true
	case 99.9:
		return s.P999, true
	}
	return 0, false
}

// minSamples is how many samples a step needs for the SLO's highest
// percentile to rest on about ten samples above it.
func (s SLO) minSamples() float64 {
	q := 0.0
	for _, c := range s.Clauses {
		q = math.Max(q, c.Percentile)
	}
	return math.Ceil(10/(1-q/100) - 1e-6) // 1e-6: 10/(1-0.999) is 10000.000000001
}

// CapacityOptions shape the search. Zero fields take the ...Default
// values below; the rates' defaults come from the closed-loop capacity
// measured first.
type CapacityOptions struct {
	SLO SLO
	// Repetitions is how many whole searches run; the found rates' range
	// is reported. Default 3.
	Repetitions int
	// Step is each step's measured window, at least; a step at a low rate
	// is lengthened until its window holds the SLO's percentile (about ten
	// samples above it), up to MaxStep. Defaults 3s and 15s.
	Step, MaxStep time.Duration
	// Warmup precedes each step's window. Default 1s.
	Warmup time.Duration
	// StartRate is the ramp's first rate; 0: CapacityStartFraction of the
	// closed-loop capacity. MaxRate ends the ramp: a search whose SLO still
	// holds there reports "at least MaxRate"; 0: CapacityMaxFactor times
	// the closed-loop capacity.
	StartRate, MaxRate float64
	// RampFactor multiplies the rate from one ramp step to the next.
	// Default 2.
	RampFactor float64
	// Resolution ends the bisection: it stops when the rate that missed is
	// within this fraction above the rate that met the SLO. Default 0.05.
	Resolution float64
}

// Capacity search defaults.
const (
	CapacityRepetitionsDefault  = 3
	CapacityStepDefault         = 3 * time.Second
	CapacityMaxStepDefault      = 15 * time.Second
	CapacityWarmupDefault       = time.Second
	CapacityRampFactorDefault   = 2.0
	CapacityResolutionDefault   = 0.05
	CapacityStartFraction       = 1.0 / 16
	CapacityMaxFactor           = 2.0
	capacityMaxBisect           = 20 // steps, a guard: a resolution of 1e-6 ends here
	capacityMinRate             = 1.0
	capacityRampDownSteps       = 6 // halvings below StartRate before a search gives up
	capacityStepDrainMultiplier = 2 // a step's drain is at least this many times its length
)

// fill sets the zero fields to their defaults (rates excepted: they need
// the capacity).
func (o *CapacityOptions) fill() {
	if o.Repetitions == 0 {
		o.Repetitions = CapacityRepetitionsDefault
	}
	if o.Step == 0 {
		o.Step = CapacityStepDefault
	}
	if o.MaxStep == 0 {
		o.MaxStep = max(CapacityMaxStepDefault, o.Step)
	}
	if o.Warmup == 0 {
		o.Warmup = CapacityWarmupDefault
	}
	if o.RampFactor == 0 {
		o.RampFactor = CapacityRampFactorDefault
	}
	if o.Resolution == 0 {
		o.Resolution = CapacityResolutionDefault
	}
}

// Validate checks the options (after fill).
func (o *CapacityOptions) Validate() error {
	switch {
	case len(o.SLO.Clauses) == 0:
		return errors.New("capacity: no SLO")
	case o.Repetitions < 1:
		return fmt.Errorf("capacity: repetitions %d: must be at least 1", o.Repetitions)
	case o.Step <= 0 || o.MaxStep < o.Step:
		return fmt.Errorf("capacity: step %v must be positive and max step %v not below it", o.Step, o.MaxStep)
	case o.Warmup < 0:
		return fmt.Errorf("capacity: warm-up %v must not be negative", o.Warmup)
	case o.StartRate < 0 || o.MaxRate < 0 || math.IsNaN(o.StartRate) || math.IsNaN(o.MaxRate) || math.IsInf(o.MaxRate, 0) || math.IsInf(o.StartRate, 0):
		return errors.New("capacity: start and max rate must be finite and not negative")
	case o.StartRate > 0 && o.MaxRate > 0 && o.MaxRate < o.StartRate:
		return fmt.Errorf("capacity: max rate %g below start rate %g", o.MaxRate, o.StartRate)
	case !(o.RampFactor > 1) || math.IsInf(o.RampFactor, 0):
		return fmt.Errorf("capacity: ramp factor %g must be above 1", o.RampFactor)
	case !(o.Resolution > 0) || o.Resolution >= 1:
		return fmt.Errorf("capacity: resolution %g must be in (0, 1)", o.Resolution)
	}
	return nil
}

// CapacityReport is the outcome of ffbench capacity: the found rate's
// range over the searches and every step measured.
type CapacityReport struct {
	SLO string `json:"slo"`
	// Clauses is the parsed SLO.
	Clauses     []SLOClause `json:"clauses"`
	Partitions  int         `json:"partitions"`
	Repetitions int         `json:"repetitions"`
	Resolution  float64     `json:"resolution"`
	RampFactor  float64     `json:"ramp_factor"`
	StepS       float64     `json:"step_s"`
	MaxStepS    float64     `json:"max_step_s"`
	WarmupS     float64     `json:"warmup_s"`
	StartRate   float64     `json:"start_rate"`
	MaxRate     float64     `json:"max_rate"`
	// ClosedLoopCapacity is e2e's closed-loop jobs/s measured first: the
	// default start and max rates are fractions of it.
	ClosedLoopCapacity float64 `json:"closed_loop_capacity,omitempty"`
	// Rate is the median of the searches' found rates, RateMin and
	// RateMax their range; 0 when no rate met the SLO.
	Rate    float64 `json:"rate"`
	RateMin float64 `json:"rate_min"`
	RateMax float64 `json:"rate_max"`
	// Capped: some search met the SLO at MaxRate, so the capacity is at
	// least its found rate.
	Capped   bool             `json:"capped,omitempty"`
	Searches []CapacitySearch `json:"searches"`
}

// CapacitySearch is one repetition: its steps in the order run and the
// bracket it ended with.
type CapacitySearch struct {
	// Found is the highest rate that met the SLO (0: none did); Missed the
	// lowest above it that did not (0: none missed, the search was capped).
	Found  float64        `json:"found"`
	Missed float64        `json:"missed,omitempty"`
	Capped bool           `json:"capped,omitempty"`
	Steps  []CapacityStep `json:"steps"`
}

// CapacityStep is one open-loop run at one rate.
type CapacityStep struct {
	// Phase is "ramp", "ramp-down" or "bisect".
	Phase        string  `json:"phase"`
	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	WindowS      float64 `json:"window_s"`
	// Latency holds claim, handler_start and e2e (encoded histograms),
	// and what tells the client's share from the server's: send_lag (the
	// producer's own delay), submit (its call) and fcall_rtt (one FCALL
	// under the same load).
	Latency map[string]*Summary `json:"latency"`
	// Values are the SLO clauses' measured percentiles, µs, in clause
	// order.
	Values []float64 `json:"values"`
	Met    bool      `json:"met"`
	// Why says why a step missed.
	Why        string `json:"why,omitempty"`
	Lost       int64  `json:"lost,omitempty"`
	Duplicated int64  `json:"duplicated,omitempty"`
	// Unsettled: outstanding work was still running when the step's drain
	// ended (its latencies are then incomplete, so the step misses).
	Unsettled bool `json:"unsettled,omitempty"`
}

// capacityMeasure runs one step at rate for window and returns its
// latencies, achieved rate and outcome (Phase, Values, Met and Why are
// the search's to set).
type capacityMeasure func(ctx context.Context, rate float64, window time.Duration) (CapacityStep, error)

// judge sets the step's SLO values, Met and Why.
func (s SLO) judge(st *CapacityStep) {
	st.Values = make([]float64, len(s.Clauses))
	st.Met = true
	var why []string
	for i, c := range s.Clauses {
		v, ok := c.value(st.Latency)
		st.Values[i] = v
		switch {
		case !ok:
			st.Met = false
			why = append(why, c.Latency+": no samples")
		case v > c.BoundUS:
			st.Met = false
			why = append(why, fmt.Sprintf("%s %s %s > %s", strings.ReplaceAll(c.Latency, "_", "-"), c.pct(), fmtUS(v), fmtUS(c.BoundUS)))
		}
	}
	if st.Unsettled {
		st.Met = false
		why = append(why, "work still outstanding after the drain")
	}
	if st.Lost > 0 || st.Duplicated > 0 {
		st.Met = false
		why = append(why, fmt.Sprintf("%d lost, %d duplicated", st.Lost, st.Duplicated))
	}
	st.Why = strings.Join(why, "; ")
}

// stepWindow is a step's window at rate: o.Step, lengthened until it holds
// the SLO's samples, at most o.MaxStep.
func (o *CapacityOptions) stepWindow(rate float64) time.Duration {
	need := time.Duration(o.SLO.minSamples() / rate * float64(time.Second))
	return min(max(o.Step, need.Round(time.Millisecond)), o.MaxStep)
}

// search runs one repetition: the ramp from o.StartRate (× o.RampFactor
// while the SLO holds, up to o.MaxRate; halving below StartRate when the
// first step misses), then bisection between the last rate met and the
// first missed until they are within o.Resolution. o's rates must be set.
func (o *CapacityOptions) search(ctx context.Context, measure capacityMeasure, progress func(string)) (CapacitySearch, error) {
	var out CapacitySearch
	step := func(phase string, rate float64) (bool, error) {
		if progress != nil {
			progress(fmt.Sprintf("%s %s/s", phase, fmtRateFine(rate)))
		}
		st, err := measure(ctx, rate, o.stepWindow(rate))
		if err != nil {
			return false, err
		}
		st.Phase, st.OfferedRate = phase, round3(rate)
		o.SLO.judge(&st)
		out.Steps = append(out.Steps, st)
		return st.Met, nil
	}
	lo, hi := 0.0, 0.0
	for rate := o.StartRate; ; rate = math.Min(rate*o.RampFactor, o.MaxRate) {
		met, err := step("ramp", rate)
		if err != nil {
			return out, err
		}
		if !met {
			hi = rate
			break
		}
		lo = rate
		if rate >= o.MaxRate {
			out.Found, out.Capped = lo, true
			return out, nil
		}
	}
	if lo == 0 { // the first rate missed: look below it
		for i, rate := 0, o.StartRate/2; i < capacityRampDownSteps && rate >= capacityMinRate; i, rate = i+1, rate/2 {
			met, err := step("ramp-down", rate)
			if err != nil {
				return out, err
			}
			if met {
				lo = rate
				break
			}
			hi = rate
		}
		if lo == 0 {
			out.Missed = hi
			return out, nil // no rate tried met the SLO
		}
	}
	for i := 0; i < capacityMaxBisect && hi-lo > o.Resolution*lo; i++ {
		mid := (lo + hi) / 2
		met, err := step("bisect", mid)
		if err != nil {
			return out, err
		}
		if met {
			lo = mid
		} else {
			hi = mid
		}
	}
	out.Found, out.Missed = lo, hi
	return out, nil
}

// searchCapacity runs o.Repetitions searches and sums them up. o must be
// filled and its rates set.
func searchCapacity(ctx context.Context, o CapacityOptions, measure capacityMeasure, progress func(string)) (*CapacityReport, error) {
	cr := &CapacityReport{SLO: o.SLO.String(), Clauses: o.SLO.Clauses, Repetitions: o.Repetitions, Resolution: o.Resolution,
		RampFactor: o.RampFactor, StepS: o.Step.Seconds(), MaxStepS: o.MaxStep.Seconds(), WarmupS: o.Warmup.Seconds(),
		StartRate: round3(o.StartRate), MaxRate: round3(o.MaxRate)}
	var found []float64
	for i := range o.Repetitions {
		s, err := o.search(ctx, measure, func(st string) {
			if progress != nil {
				progress(fmt.Sprintf("search %d/%d: %s", i+1, o.Repetitions, st))
			}
		})
		if err != nil {
			return nil, fmt.Errorf("search %d: %w", i+1, err)
		}
		s.Found, s.Missed = round3(s.Found), round3(s.Missed)
		cr.Searches = append(cr.Searches, s)
		found = append(found, s.Found)
		cr.Capped = cr.Capped || s.Capped
	}
	cr.Rate = round3(median(found)) // sorts found
	cr.RateMin, cr.RateMax = found[0], found[len(found)-1]
	return cr, nil
}

// Met reports whether some rate met the SLO in every search.
func (c *CapacityReport) Met() bool { return c != nil && c.RateMin > 0 }

// Capacity measures the anchors and e2e's closed-loop capacity on the
// target, then searches the highest arrival rate meeting o.SLO with the
// runner's fleet (Config: partitions, workers, concurrency, claim mode,
// arrivals, payload), and returns a report whose Capacity is the headline.
// Steps that lose or duplicate work are recorded as correctness failures.
func (r *Runner) Capacity(ctx context.Context, o CapacityOptions) (*Report, error) {
	o.fill()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := r.cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	rep, err := r.anchoredReport(ctx)
	if err != nil {
		return nil, fmt.Errorf("anchors: %w", err)
	}
	r.prog.Stage("capacity: closed-loop e2e capacity (sets the ramp)")
	closed, err := r.runPipeline(ctx, pipelineSpec{scenario: ScenarioE2E, variant: "closed", partitions: r.cfg.Partitions,
		mode: r.mode(), inFlight: r.cfg.InFlight})
	if err != nil {
		return nil, err
	}
	r.capacity = closed.Throughput
	r.againstCeiling(closed)
	rep.Results = append(rep.Results, closed)
	if o.StartRate == 0 {
		o.StartRate = math.Max(capacityMinRate, math.Round(CapacityStartFraction*r.capacity))
	}
	if o.MaxRate == 0 {
		o.MaxRate = math.Max(o.StartRate, math.Round(CapacityMaxFactor*r.capacity))
	}
	if o.MaxRate < o.StartRate {
		return nil, fmt.Errorf("capacity: max rate %g below start rate %g", o.MaxRate, o.StartRate)
	}
	n := 0
	measure := func(ctx context.Context, rate float64, window time.Duration) (CapacityStep, error) {
		n++
		// The step runs on a copy of the runner whose config is the step's.
		step := *r
		step.cfg.Seed += uint64(n) // each step its own arrivals
		// Past the capacity a backlog builds up for the whole step; the
		// drain must outlast it, or the late samples would be left out.
		step.cfg.Drain = max(r.cfg.Drain, capacityStepDrainMultiplier*(window+o.Warmup))
		res, err := step.runPipeline(ctx, pipelineSpec{scenario: "capacity", variant: fmt.Sprintf("%s/s", fmtRateFine(rate)),
			partitions: r.cfg.Partitions, mode: r.mode(), open: true, rate: rate, window: window, warmup: o.Warmup})
		if err != nil {
			return CapacityStep{}, err
		}
		st := CapacityStep{AchievedRate: res.AchievedRate, WindowS: round3(window.Seconds()), Latency: map[string]*Summary{},
			Lost: res.Lost, Duplicated: res.Duplicated, Unsettled: strings.HasPrefix(res.Note, "not settled")}
		for _, name := range []string{"claim", "handler_start", "e2e", "fcall_rtt", "send_lag", "submit"} {
			if s := res.Latency[name]; s != nil {
				st.Latency[name] = s
			}
		}
		return st, nil
	}
	cr, err := searchCapacity(ctx, o, measure, func(s string) { r.prog.Stage("capacity " + s) })
	if err != nil {
		return nil, err
	}
	cr.Partitions, cr.ClosedLoopCapacity = r.cfg.Partitions, closed.Throughput
	rep.Capacity = cr
	r.capacity = 0 // no open-loop rate of this report is a fraction of it: no note saying so
	r.finish(rep)
	for i, s := range cr.Searches {
		for _, st := range s.Steps {
			rep.Lost += st.Lost
			rep.Duplicated += st.Duplicated
			if st.Lost > 0 || st.Duplicated > 0 {
				rep.Failures = append(rep.Failures, fmt.Sprintf("capacity search %d at %s/s: %d lost, %d duplicated",
					i+1, fmtRateFine(st.OfferedRate), st.Lost, st.Duplicated))
			}
		}
	}
	rep.ElapsedS = round3(time.Since(start).Seconds())
	return rep, nil
}

// atFound is the step of search s at its found rate (the last one that met
// the SLO at that rate), or nil.
func (s *CapacitySearch) atFound() *CapacityStep {
	for i := len(s.Steps) - 1; i >= 0; i-- {
		if st := &s.Steps[i]; st.Met && round3(st.OfferedRate) == s.Found {
			return st
		}
	}
	return nil
}

// searchStep is a step with its search's number (from 1).
type searchStep struct {
	Search int
	*CapacityStep
}

// steps returns every step of every search sorted by rate.
func (c *CapacityReport) steps() []searchStep {
	var out []searchStep
	for i := range c.Searches {
		for j := range c.Searches[i].Steps {
			out = append(out, searchStep{i + 1, &c.Searches[i].Steps[j]})
		}
	}
	slices.SortStableFunc(out, func(a, b searchStep) int {
		return cmp.Or(cmp.Compare(a.OfferedRate, b.OfferedRate), a.Search-b.Search)
	})
	return out
}
