package bench

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowfabric/flowfabric-go/loadgen"
	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// admission defaults and names.
const (
	// AdmissionRateDefault is Config.AdmissionRate's default: the A/B's
	// open-loop arrivals per second. Fixed, as signal-resume's and
	// flow-dag's rates, so the per-job counters compare between runs and
	// profiles; well within what a quota'd lane (claimed one execution per
	// ClaimForWorker call, serially per worker: about 1,000-1,700 jobs/s
	// closed loop on 2 shared vCPUs) sustains, so its claim latency is not
	// queueing.
	AdmissionRateDefault = 200
	// AdmissionLimitDefault and AdmissionWindowDefault are the rate
	// check's quota: AdmissionLimitDefault admissions per
	// AdmissionWindowDefault (250/s).
	AdmissionLimitDefault  = 50
	AdmissionWindowDefault = 200 * time.Millisecond
	// AdmissionOverloadDefault is the rate check's offered load as a
	// multiple of the quota's rate.
	AdmissionOverloadDefault = 4
	// admissionCapFactor sets the A/B quota's concurrency cap: this many
	// times the fleet's slots, so it never binds and the A/B measures
	// admission's cost, not throttling.
	admissionCapFactor = 10
	// The result variants: the A/B's two lanes and the rate check.
	admQuota = "quota"
	admPlain = "plain"
	admRate  = "rate"
	// The quotas' names.
	admABQuota   sdk.QuotaID = "ffbench-ab"
	admRateQuota sdk.QuotaID = "ffbench-rate"
)

// admissionRate, admissionLimit, admissionWindow and admissionOverload
// are the config's values or their defaults.
func (c *Config) admissionRate() float64 {
	if c.AdmissionRate > 0 {
		return c.AdmissionRate
	}
	return AdmissionRateDefault
}

func (c *Config) admissionLimit() int {
	if c.AdmissionLimit > 0 {
		return c.AdmissionLimit
	}
	return AdmissionLimitDefault
}

func (c *Config) admissionWindow() time.Duration {
	if c.AdmissionWindow > 0 {
		return c.AdmissionWindow
	}
	return AdmissionWindowDefault
}

func (c *Config) admissionOverload() float64 {
	if c.AdmissionOverload > 0 {
		return c.AdmissionOverload
	}
	return AdmissionOverloadDefault
}

// validateAdmission checks the admission fields (0 is the default).
func (c *Config) validateAdmission() error {
	switch {
	case c.AdmissionRate < 0 || c.AdmissionLimit < 0 || c.AdmissionOverload < 0:
		return fmt.Errorf("admission rate, limit and overload must not be negative")
	case c.AdmissionWindow < 0 || (c.AdmissionWindow > 0 && (c.AdmissionWindow < 10*time.Millisecond || c.AdmissionWindow%time.Millisecond != 0)):
		return fmt.Errorf("admission window %v: a whole number of milliseconds, at least 10ms", c.AdmissionWindow)
	case c.AdmissionOverload > 0 && c.AdmissionOverload <= 1:
		return fmt.Errorf("admission overload %g: must be above 1 (the check needs more work offered than the quota admits)", c.AdmissionOverload)
	}
	return nil
}

// runAdmission runs the A/B (a lane claimed through a quota that never
// binds against the same lane without a policy), then the rate check.
//
// A/B: rounds alternate A B, B A, … (cfg.ABRounds of each variant); each
// round is a fresh deployment with the same fleet config, first the open
// loop at the fixed admission rate (the same Poisson schedule, seed and
// all, in every round: claim latency and the per-job counters), then a
// closed loop (capacity). Each variant's open rounds are merged; its
// capacity is the median of its closed rounds. The fleets run the SDK's
// workers on the backend itself (directFleet): loadgen's fleets wrap the
// backend without its admission role, so their workers would not see the
// quota at all.
func (r *Runner) runAdmission(ctx context.Context) ([]*Result, error) {
	cfg := r.cfg
	rate := cfg.admissionRate()
	open, closed := map[string][]*Result{}, map[string][]*Result{}
	for i := range cfg.ABRounds {
		for _, v := range abba(i, admQuota, admPlain) {
			var setup func(context.Context, *valkeybackend.Backend) error
			if v == admQuota {
				setup = r.admissionSetup(sdk.QuotaPolicy{ID: admABQuota, Concurrency: admissionCapFactor * cfg.Workers * cfg.Concurrency})
			}
			r.prog.Stage(fmt.Sprintf("%s %s round %d/%d (open loop, %g/s)", ScenarioAdmission, v, i+1, cfg.ABRounds, rate))
			o, err := r.runPipeline(ctx, pipelineSpec{scenario: ScenarioAdmission, variant: v, partitions: cfg.Partitions,
				mode: r.mode(), open: true, rate: rate, setup: setup, direct: true})
			if err != nil {
				return nil, fmt.Errorf("%s open loop: %w", v, err)
			}
			r.prog.Stage(fmt.Sprintf("%s %s round %d/%d (closed loop)", ScenarioAdmission, v, i+1, cfg.ABRounds))
			c, err := r.runPipeline(ctx, pipelineSpec{scenario: ScenarioAdmission, variant: v + "-closed", partitions: cfg.Partitions,
				mode: r.mode(), inFlight: cfg.InFlight, setup: setup, direct: true})
			if err != nil {
				return nil, fmt.Errorf("%s closed loop: %w", v, err)
			}
			open[v], closed[v] = append(open[v], o), append(closed[v], c)
		}
	}
	out := map[string]*Result{}
	for _, v := range []string{admQuota, admPlain} {
		m := mergeRounds(open[v])
		var claimed, handed float64
		for _, res := range open[v] {
			claimed += res.Extra["claimed"]
			handed += res.Extra["handoffs"]
			for _, k := range []string{"worker_errors", "lost_leases", "claim_errors", "handler_errors", "failed", "submitted", "completed", "offers",
				"claim_attempts", "claim_conflicts", "idle_wakeups_push", "idle_wakeups_poll"} {
				m.Extra[k] += res.Extra[k]
			}
			if res.Note != "" {
				m.Note = strings.TrimPrefix(m.Note+"; "+res.Note, "; ")
			}
		}
		m.Extra["claimed"], m.Extra["handoffs"] = claimed, handed
		// Each round's claim p50 and p99: a stall in one round shows here
		// (the merged histograms blend it in).
		var p50s, p99s []float64
		for _, res := range open[v] {
			if c := res.Latency["claim"]; c != nil && c.Count > 0 {
				p50s, p99s = append(p50s, c.P50), append(p99s, c.P99)
			}
		}
		if len(p50s) > 0 {
			m.Extra["claim_p50_round_min"], m.Extra["claim_p50_round_max"] = slices.Min(p50s), slices.Max(p50s)
			m.Extra["claim_p99_round_min"], m.Extra["claim_p99_round_max"] = slices.Min(p99s), slices.Max(p99s)
		}
		setHandoffShare(m, handed, claimed)
		var caps []float64
		var lost, dup int64
		for _, res := range closed[v] {
			caps = append(caps, res.Throughput)
			lost += res.Lost
			dup += res.Duplicated
			if res.Note != "" {
				m.Note = strings.TrimPrefix(m.Note+"; closed loop: "+res.Note, "; ")
			}
		}
		// The closed loops' work counts in the correctness totals too.
		m.Lost += lost
		m.Duplicated += dup
		m.Extra["capacity"] = round3(median(caps))
		m.Extra["capacity_min"], m.Extra["capacity_max"] = caps[0], caps[len(caps)-1]
		c := mergeRounds(closed[v])
		m.Extra["capacity_fcalls_per_op"], m.Extra["capacity_commands_per_op"] = c.FcallsPerOp, c.CommandsPerOp
		if v == admQuota {
			m.Extra["quota_concurrency"] = float64(admissionCapFactor * cfg.Workers * cfg.Concurrency)
		}
		out[v] = m
	}
	q, p := out[admQuota], out[admPlain]
	if qs, ps := q.Latency["claim"], p.Latency["claim"]; qs != nil && ps != nil && ps.P50 > 0 && ps.P99 > 0 {
		q.Extra["claim_p50_vs_plain"] = round3(qs.P50 / ps.P50)
		q.Extra["claim_p99_vs_plain"] = round3(qs.P99 / ps.P99)
	}
	if p.Extra["capacity"] > 0 {
		q.Extra["capacity_vs_plain"] = round3(q.Extra["capacity"] / p.Extra["capacity"])
	}
	r.prog.Stage(fmt.Sprintf("%s rate check (%d per %v)", ScenarioAdmission, cfg.admissionLimit(), cfg.admissionWindow()))
	rc, err := r.runAdmissionRate(ctx)
	if err != nil {
		return nil, fmt.Errorf("rate check: %w", err)
	}
	return []*Result{q, p, rc}, nil
}

// admissionSetup creates quota q and gives it to the bench lane.
func (r *Runner) admissionSetup(q sdk.QuotaPolicy) func(context.Context, *valkeybackend.Backend) error {
	return func(ctx context.Context, be *valkeybackend.Backend) error {
		if err := be.CreateQuotaPolicy(ctx, q); err != nil {
			return err
		}
		if err := be.SetLanePolicy(ctx, benchLane, sdk.LanePolicy{Quota: q.ID}); err != nil {
			return err
		}
		// SetLanePolicy returns once this backend's cached read sees the
		// policy; the fleet reads through the same cache.
		p, err := be.LanePolicy(ctx, benchLane)
		if err != nil {
			return err
		}
		if p.Quota != q.ID {
			return fmt.Errorf("lane %s: policy %+v after SetLanePolicy, want quota %s", benchLane, p, q.ID)
		}
		return nil
	}
}

// rateStats are the rate check's figures over admission times (ms).
type rateStats struct {
	// maxIn is the most admissions in any window [t, t+W) starting at an
	// admission (the sliding maximum); over is how many such windows hold
	// more than the limit.
	maxIn, over int
	// windows is the count of whole back-to-back windows from the first
	// admission; meanIn their mean admissions; rate admissions per second
	// over them.
	windows int
	meanIn  float64
	rate    float64
}

// windowStats computes rateStats of sorted times (any unit) for window w
// and limit.
func windowStats(ts []int64, w int64, limit int) rateStats {
	var s rateStats
	if len(ts) == 0 || w <= 0 {
		return s
	}
	j := 0
	for i := range ts {
		for j < len(ts) && ts[j] < ts[i]+w {
			j++
		}
		n := j - i
		s.maxIn = max(s.maxIn, n)
		if n > limit {
			s.over++
		}
	}
	t0 := ts[0]
	s.windows = int((ts[len(ts)-1] - t0) / w)
	if s.windows > 0 {
		in := 0
		for _, t := range ts {
			if t < t0+int64(s.windows)*w {
				in++
			}
		}
		s.meanIn = float64(in) / float64(s.windows)
	}
	return s
}

// admissionObserver reads a quota's window set every gap and keeps every
// admission it has seen (an admission stays in the set for at least a
// window, so a gap under the window sees each one). An entry that leaves
// the set while still inside its window was given back (ff_quota_giveback:
// its claimer did not use it, a claim lost to a race or a stale head) and
// is no admission: it is dropped again.
type admissionObserver struct {
	mu        sync.Mutex
	window    int64            // the quota's window (ms)
	seen      map[string]int64 // member → admission time (ms, server clock)
	gapMax    time.Duration
	readErrs  int
	givenBack int
}

func (o *admissionObserver) poll(ctx context.Context, r *Runner, key string) error {
	c := r.t.raw
	res := c.DoMulti(ctx, c.B().Time().Build(), c.B().Zrange().Key(key).Min("0").Max("-1").Withscores().Build())
	tm, err := res[0].AsStrSlice()
	if err != nil || len(tm) != 2 {
		return fmt.Errorf("TIME: %v", err)
	}
	sec, _ := strconv.ParseInt(tm[0], 10, 64)
	usec, _ := strconv.ParseInt(tm[1], 10, 64)
	now := sec*1000 + usec/1000
	zs, err := res[1].AsZScores()
	if err != nil {
		return err
	}
	o.mu.Lock()
	present := make(map[string]bool, len(zs))
	for _, z := range zs {
		o.seen[z.Member] = int64(z.Score)
		present[z.Member] = true
	}
	for m, at := range o.seen {
		if !present[m] && at > now-o.window {
			delete(o.seen, m) // given back, not aged out
			o.givenBack++
		}
	}
	o.mu.Unlock()
	return nil
}

// run polls every gap until ctx ends, recording the longest time between
// two successful reads.
func (o *admissionObserver) run(ctx context.Context, r *Runner, key string, gap time.Duration) {
	tick := time.NewTicker(gap)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := o.poll(ctx, r, key); err != nil {
			if ctx.Err() == nil {
				o.mu.Lock()
				o.readErrs++
				o.mu.Unlock()
			}
			continue
		}
		now := time.Now()
		o.mu.Lock()
		o.gapMax = max(o.gapMax, now.Sub(last))
		o.mu.Unlock()
		last = now
	}
}

// runAdmissionRate is the rate check: a lane with a quota of
// admissionLimit per admissionWindow (sliding) under an open-loop load of
// admissionOverload times that rate for half of cfg.Duration (the backlog
// then keeps the lane saturated while it drains at the quota's rate, about
// overload/2 times as long), with the engine's
// scanners running in-process (the delayed scanner brings rate-parked work
// back, every cfg.ScanInterval). Every admission is read from the quota's
// window set while the run goes on (the server's own admission times); the
// most admissions in any window of the quota's length must not exceed its
// limit. Every job must complete exactly once.
func (r *Runner) runAdmissionRate(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	limit, window := cfg.admissionLimit(), cfg.admissionWindow()
	limitRate := float64(limit) / window.Seconds()
	offered := cfg.admissionOverload() * limitRate
	bes, closeAll, err := r.t.DeployConnected(ctx, cfg.Partitions, 2)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	be, prod, engine := bes[0], bes[1], bes[2]
	if err := r.admissionSetup(sdk.QuotaPolicy{ID: admRateQuota, Rate: limit, Window: window})(ctx, be); err != nil {
		return nil, err
	}
	hashKey, winKey := valkeybackend.QuotaKeys(admRateQuota)
	if n, err := r.t.raw.Do(ctx, r.t.raw.B().Exists().Key(hashKey).Build()).AsInt64(); err != nil || n != 1 {
		return nil, fmt.Errorf("quota %s is not at %s (%v): the check's key layout is out of date", admRateQuota, hashKey, err)
	}

	sctx, stopScan := context.WithCancel(ctx)
	defer stopScan()
	sup, err := scanner.Start(sctx, engine, scanner.Config{LeaseExpiryInterval: cfg.ScanInterval, DelayedInterval: cfg.ScanInterval,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer func() { stopScan(); <-sup.Done() }()
	if err := sup.WaitOwned(ctx, cfg.Partitions); err != nil {
		return nil, err
	}

	obs := &admissionObserver{seen: map[string]int64{}, window: window.Milliseconds()}
	octx, stopObs := context.WithCancel(ctx)
	defer stopObs()
	var obsWG sync.WaitGroup
	obsWG.Go(func() { obs.run(octx, r, winKey, max(window/5, time.Millisecond)) })

	track := newTracker()
	var startMu sync.Mutex
	var starts []int64                   // handler starts, unix ns
	started := map[sdk.ExecutionID]int{} // handler starts per execution
	wait := NewLatency(cfg.Workers, Window{})
	var foreign atomic.Int64
	fctx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	wc := sdk.WorkerConfig{MaxConcurrency: cfg.Concurrency, ClaimMode: r.mode(), Lanes: []sdk.LaneID{benchLane},
		ShutdownGrace: 2 * time.Second, DisableClaimOffers: cfg.NoHandoff}
	fleet, err := startDirectFleet(fctx, be, cfg, wc, func(i int) sdk.Handler {
		return sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
			now := time.Now()
			seq, intended, ok := decodePayload(t.Payload)
			if !ok {
				foreign.Add(1)
				return fmt.Errorf("bench: foreign payload")
			}
			startMu.Lock()
			starts = append(starts, now.UnixNano())
			started[t.ID]++
			startMu.Unlock()
			wait.Shard(i).Record(intended, t.ClaimedAt.Sub(intended))
			if err := t.Complete(ctx, nil); err != nil {
				return err
			}
			track.complete(seq)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	client := sdk.NewClient(prod)
	lat := map[string]*Latency{"send_lag": NewLatency(1, Window{}), "submit": NewLatency(1, Window{})}
	var windowOps atomic.Int64
	submit := timedSubmit(Window{}, false, &windowOps, lat, track, func(ctx context.Context, a loadgen.Arrival) error {
		_, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: benchLane, Kind: "noop",
			Payload: encodePayload(a.Seq, a.Intended, cfg.PayloadBytes)})
		return err
	})
	time.Sleep(100 * time.Millisecond) // the fleet registers and subscribes
	r.prog.Detail(func() string {
		return fmt.Sprintf("%s rate check: %d of %d completed, %d admissions seen", ScenarioAdmission, track.completed.Load(),
			track.submitted.Load(), obs.count())
	})
	defer r.prog.Detail(nil)
	m0, err := r.startCount(ctx)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	po := <-r.startProducer(ctx, true, offered, nil, admissionArrivals(cfg), submit)
	if po.err != nil {
		return nil, po.err
	}
	// The backlog drains at the quota's rate.
	backlog := time.Duration(float64(track.submitted.Load()) / limitRate * float64(time.Second))
	settled := track.waitSettled(backlog + cfg.Drain)
	elapsed := time.Since(t0)
	// A last read after the last admission (it stays in the set a window).
	stopObs()
	obsWG.Wait()
	if err := obs.poll(ctx, r, winKey); err != nil {
		obs.readErrs++
	}
	m, err := m0.stop(ctx)
	if err != nil {
		return nil, err
	}
	var diag string
	if !settled {
		diag = r.strandedDiagnosis(ctx, be, cfg.Partitions)
	}
	sctx2, cancel := context.WithTimeout(ctx, 15*time.Second)
	_ = fleet.Stop(sctx2)
	cancel()

	// The admissions: their server times, and which executions they were.
	obs.mu.Lock()
	adm := make([]int64, 0, len(obs.seen))
	admitted := map[sdk.ExecutionID][]int64{} // admission times per execution
	for member, ms := range obs.seen {
		adm = append(adm, ms)
		if id, _, ok := strings.Cut(member, " "); ok {
			admitted[sdk.ExecutionID(id)] = append(admitted[sdk.ExecutionID(id)], ms)
		}
	}
	// An execution admitted again spent a window slot on work that did not
	// run then: how long after its first admission (ms) says why (a race
	// of two claimers on one head, or a claim that failed and came back).
	admittedTwice, readmitSoon := 0, 0
	var readmitGaps []float64
	for _, ts := range admitted {
		if len(ts) > 1 {
			admittedTwice++
			slices.Sort(ts)
			for k := 1; k < len(ts); k++ {
				g := float64(ts[k] - ts[k-1])
				readmitGaps = append(readmitGaps, g)
				if g <= 2 {
					readmitSoon++
				}
			}
		}
	}
	gapMax, readErrs := obs.gapMax, obs.readErrs
	obs.mu.Unlock()
	slices.Sort(adm)
	startMu.Lock()
	slices.Sort(starts)
	unobserved, startedTwice := 0, 0
	for id, n := range started {
		if len(admitted[id]) == 0 {
			unobserved++
		}
		if n > 1 {
			startedTwice++
		}
	}
	nStarts := len(starts)
	ss := windowStats(starts, window.Nanoseconds(), limit)
	startMu.Unlock()
	as := windowStats(adm, window.Milliseconds(), limit)

	res := &Result{Scenario: ScenarioAdmission, Variant: admRate, Partitions: cfg.Partitions, Workers: cfg.Workers,
		DurationS: round3(elapsed.Seconds()), Unit: "jobs", OfferedRate: round3(offered), Latency: map[string]*Summary{}}
	summarizeInto(res.Latency, map[string]*Latency{"wait": wait, "send_lag": lat["send_lag"], "submit": lat["submit"]})
	res.Ops = track.completed.Load()
	res.Throughput = round3(as.rate)
	if as.windows > 0 {
		res.Throughput = round3(as.meanIn / window.Seconds())
	}
	res.AchievedRate = res.Throughput
	res.efficiency(m.server, m.mallocs, res.Ops)
	res.AllocsPerOp = 0 // the scanners and the observer share the process
	res.Lost, res.Duplicated = track.outcome()
	fs := fleet.Stats()
	res.Extra = map[string]float64{
		"limit": float64(limit), "window_ms": float64(window.Milliseconds()), "limit_rate": round3(limitRate),
		"overload": cfg.admissionOverload(), "admissions": float64(len(adm)), "admitted_executions": float64(len(admitted)),
		"admissions_spent_twice": float64(len(adm) - len(admitted)), "executions_admitted_twice": float64(admittedTwice),
		"readmissions_within_2ms": float64(readmitSoon), "readmit_gap_p50_ms": median(readmitGaps),
		"max_per_window": float64(as.maxIn), "windows_over_limit": float64(as.over), "mean_per_window": round3(as.meanIn),
		"whole_windows": float64(as.windows), "achieved_vs_limit": 0,
		"starts": float64(nStarts), "starts_max_per_window": float64(ss.maxIn), "starts_windows_over_limit": float64(ss.over),
		"unobserved_starts": float64(unobserved), "started_twice": float64(startedTwice), "observer_gap_max_ms": round3(float64(gapMax.Microseconds()) / 1e3),
		"observer_read_errors": float64(readErrs), "foreign_executions": float64(foreign.Load()),
		"submitted": float64(track.submitted.Load()), "completed": float64(track.completed.Load()),
		"claimed": float64(fs.Claimed), "handoffs": float64(fs.Handoffs), "handler_errors": float64(fs.HandlerErrors),
		"lost_leases": float64(fs.LostLeases), "worker_errors": float64(fleet.errors.Load()), "stalled_arrivals": float64(po.st.Stalled),
		"scan_interval_ms": float64(cfg.ScanInterval.Milliseconds()),
	}
	if limitRate > 0 {
		res.Extra["achieved_vs_limit"] = round3(res.Throughput / limitRate)
	}
	res.Note = fmt.Sprintf("quota of %d admissions per %v (%.0f/s) under %.0f arrivals/s (%s) for %v; admissions read from the quota's window set every %v; "+
		"delayed and lease-expiry scanners every %v", limit, window, limitRate, offered, cfg.Arrivals, admissionArrivals(cfg), max(window/5, time.Millisecond), cfg.ScanInterval)
	if po.st.Failed > 0 {
		res.Note += fmt.Sprintf("; %d submissions failed", po.st.Failed)
	}
	if !settled {
		res.Note += fmt.Sprintf("; not settled after %v (backlog at the quota's rate) + %v drain: %d of %d completed; %s", backlog, cfg.Drain,
			track.completed.Load(), track.submitted.Load(), diag)
	}
	return res, nil
}

// admissionArrivals is how long the rate check's arrivals run: half the
// measured window.
func admissionArrivals(cfg Config) time.Duration { return cfg.Duration / 2 }

func (o *admissionObserver) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.seen)
}

// admissionFailure says why an admission result breaks its checks: the
// rate check's quota admitted more than its limit in some window (an
// engine bug), or its admissions could not all be seen (the check would
// be incomplete); a quota'd lane whose work was claimed without admission
// (fewer admissions than claims). "" when they hold or the result is
// another scenario's.
func admissionFailure(res *Result) string {
	if res.Scenario != ScenarioAdmission {
		return ""
	}
	e := res.Extra
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	if res.Ops == 0 {
		add("no job measured")
	}
	switch res.Variant {
	case admRate:
		if n := e["windows_over_limit"]; n > 0 {
			add("RATE LIMIT EXCEEDED: up to %.0f admissions within %.0fms, the quota's limit is %.0f (%.0f windows over it)",
				e["max_per_window"], e["window_ms"], e["limit"], n)
		}
		if e["admissions"] == 0 {
			add("no admission seen in the quota's window set")
		}
		if n := e["unobserved_starts"]; n > 0 {
			add("%.0f executions ran whose admission the check did not see (longest gap between reads %.1fms, window %.0fms): the check is incomplete",
				n, e["observer_gap_max_ms"], e["window_ms"])
		}
		if n := e["started_twice"] + e["foreign_executions"]; n > 0 {
			add("%.0f executions started twice, %.0f foreign", e["started_twice"], e["foreign_executions"])
		}
	case admQuota:
		// Hand-offs of the quota'd lane are admitted in the create (one
		// server: offers made under the quota take nothing unadmitted), and
		// claims by ClaimForWorker. Each admission of a cap-only quota that
		// admits, either way, runs one ZREMRANGEBYSCORE: at least about one
		// per job claimed in the window (under a backlog fewer jobs than
		// arrived are claimed).
		if claimedShare := res.Throughput / max(res.OfferedRate, 1); res.Ops > 0 && res.CommandMix["zremrangebyscore"] < 0.5*min(claimedShare, 1) {
			add("%.2f ZREMRANGEBYSCORE per job at %.0f%% of the arrivals claimed: ff_quota_admit did not run for every claim",
				res.CommandMix["zremrangebyscore"], 100*claimedShare)
		}
	}
	if len(probs) == 0 {
		return ""
	}
	return fmt.Sprintf("admission: %s (%s)", strings.Join(probs, "; "), res.Note)
}

// directFleet runs cfg.Workers sdk.Workers on the backend itself: every
// role it has reaches the workers (admission among them). WorkerIDs and
// instance ids as loadgen's fleets name them.
type directFleet struct {
	workers []*sdk.Worker
	cancel  []context.CancelFunc
	wg      sync.WaitGroup
	errors  atomic.Int64 // errors the workers handled themselves (OnError)
}

func startDirectFleet(ctx context.Context, be *valkeybackend.Backend, cfg Config, wc sdk.WorkerConfig, handler func(int) sdk.Handler) (*directFleet, error) {
	f := &directFleet{}
	if wc.WorkerID == "" {
		wc.WorkerID = "ffbench"
	}
	wc.OnError = func(error) { f.errors.Add(1) }
	stamp := time.Now().UnixNano()
	for i := range max(cfg.Workers, 1) {
		c := wc
		if cfg.DistinctWorkerIDs {
			c.WorkerID = sdk.WorkerID(fmt.Sprintf("%s-%d", wc.WorkerID, i))
		}
		c.InstanceID = sdk.WorkerInstanceID(fmt.Sprintf("%s-%d-%d", c.WorkerID, i, stamp))
		w, err := sdk.NewWorker(be, c)
		if err != nil {
			return nil, err
		}
		f.workers = append(f.workers, w)
	}
	for i, w := range f.workers {
		wctx, cancel := context.WithCancel(ctx)
		f.cancel = append(f.cancel, cancel)
		h := handler(i)
		f.wg.Go(func() { _ = w.Run(wctx, h) })
	}
	return f, nil
}

// Stop shuts the workers down gracefully and waits, at most until ctx ends.
func (f *directFleet) Stop(ctx context.Context) error {
	for _, c := range f.cancel {
		c()
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats sums the counters runPipeline reports (…Max the maxima, the
// complete wait a weighted average).
func (f *directFleet) Stats() sdk.WorkerStats {
	var t sdk.WorkerStats
	for _, w := range f.workers {
		s := w.Stats()
		t.Claimed += s.Claimed
		t.Completed += s.Completed
		t.Failed += s.Failed
		t.Retried += s.Retried
		t.HandlerErrors += s.HandlerErrors
		t.LostLeases += s.LostLeases
		t.ClaimAttempts += s.ClaimAttempts
		t.ClaimConflicts += s.ClaimConflicts
		t.ClaimErrors += s.ClaimErrors
		t.IdleWakeupsPush += s.IdleWakeupsPush
		t.IdleWakeupsPoll += s.IdleWakeupsPoll
		t.Offers += s.Offers
		t.Handoffs += s.Handoffs
		t.CompleteBatches += s.CompleteBatches
		t.BatchedCompletes += s.BatchedCompletes
		t.CompleteBatchMax = max(t.CompleteBatchMax, s.CompleteBatchMax)
		t.CompleteWaitAvg += s.CompleteWaitAvg * time.Duration(s.BatchedCompletes)
		t.CompleteWaitMax = max(t.CompleteWaitMax, s.CompleteWaitMax)
	}
	if t.BatchedCompletes > 0 {
		t.CompleteWaitAvg /= time.Duration(t.BatchedCompletes)
	}
	return t
}
