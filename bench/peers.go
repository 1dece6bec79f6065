package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowfabric/flowfabric-go/loadgen"
)

// The peers scenario measures FlowFabric beside asynq (Go, in this process)
// and BullMQ (Node, a child process) on the same server, in rounds that
// rotate the systems' turns (A B C, B C A, C A B, …) so a drift of the
// machine weighs on all of them alike. Each system runs the same no-op
// jobs with the same worker slots (Config.Workers workers of
// Config.Concurrency), submit → claim → complete:
//
//   - closed loop at each of Peers.InFlight outstanding jobs, for capacity
//     and the server's cost per job (Valkey CPU µs, commands, scripts);
//   - open loop at Peers.IdleRate jobs/s, for idle pickup latency: from the
//     job's intended arrival to its handler's start.
//
// Every job is counted in its handler: a lost or duplicated job fails the
// run, and so does a job the server still holds (or did not count as done)
// once the system's workers stopped.

// peerRun is one measured run of one system.
type peerRun struct {
	system  string
	variant string // "<system>/closed-<in-flight>" or "<system>/idle[-…]"
	open    bool
	rate    float64
	// inFlight is the closed loop's outstanding jobs.
	inFlight int
	// window and warmup replace Config.Duration and Config.Warmup.
	window, warmup time.Duration
	// checkInterval is asynq's TaskCheckInterval (0: its default).
	checkInterval time.Duration
}

// peerInfo is what the report says of a system beside its figures.
type peerInfo struct {
	version string
	skipped string
}

// runPeers runs the peers scenario and returns one merged result per
// system and setting.
func (r *Runner) runPeers(ctx context.Context) ([]*Result, error) {
	pc := r.cfg.Peers
	if r.t.Cluster {
		return nil, errors.New("peers runs on a standalone server: asynq's and BullMQ's queues are measured on one node")
	}
	var systems []string
	for _, s := range PeerSystems { // report order, whatever the flag's
		if slices.Contains(pc.Systems, s) {
			systems = append(systems, s)
		}
	}
	r.peerInfo = map[string]peerInfo{}
	var bq *bullmqSetup
	for _, s := range systems {
		switch s {
		case PeerFlowFabric:
			r.peerInfo[s] = peerInfo{version: short(gitSHA())}
		case PeerAsynq:
			r.peerInfo[s] = peerInfo{version: asynqVersion()}
		case PeerBullMQ:
			var note string
			if bq, note = r.prepareBullMQ(ctx); bq == nil {
				r.peerInfo[s] = peerInfo{skipped: note}
				systems = slices.DeleteFunc(systems, func(x string) bool { return x == PeerBullMQ })
			} else {
				r.peerInfo[s] = peerInfo{version: BullMQVersion + " (Node " + bq.nodeVersion + ")"}
			}
		}
	}
	rounds := map[string][]*Result{}
	var order []string
	run := func(pr peerRun, round int) error {
		r.prog.Stage(fmt.Sprintf("%s %s round %d/%d", ScenarioPeers, pr.variant, round+1, pc.Rounds))
		var res *Result
		var err error
		switch pr.system {
		case PeerFlowFabric:
			res, err = r.runPipeline(ctx, pipelineSpec{scenario: ScenarioPeers, variant: pr.variant,
				partitions: r.cfg.Partitions, mode: r.mode(), open: pr.open, rate: pr.rate, inFlight: pr.inFlight,
				window: pr.window, warmup: pr.warmup, noProbe: true})
		case PeerAsynq:
			res, err = r.runAsynq(ctx, pr)
		case PeerBullMQ:
			res, err = r.runBullMQ(ctx, pr, bq)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", pr.variant, err)
		}
		if _, ok := rounds[pr.variant]; !ok {
			order = append(order, pr.variant)
		}
		rounds[pr.variant] = append(rounds[pr.variant], res)
		return nil
	}
	// Capacity: at each in-flight setting, every system in turn.
	for i := range pc.Rounds {
		for j, n := range pc.InFlight {
			for _, s := range rotate(systems, i+j) {
				pr := peerRun{system: s, variant: fmt.Sprintf("%s/closed-%d", s, n), inFlight: n,
					window: pc.Duration, warmup: pc.Warmup}
				if err := run(pr, i); err != nil {
					return nil, err
				}
			}
		}
	}
	// Idle pickup: each system with its fastest documented idle setting;
	// asynq also with its default.
	var idle []peerRun
	for _, s := range systems {
		pr := peerRun{system: s, variant: s + "/idle", open: true, rate: pc.IdleRate, window: pc.IdleDuration,
			warmup: pc.Warmup}
		idle = append(idle, pr)
		if s == PeerAsynq {
			pr.variant, pr.checkInterval = s+"/idle-check-"+pc.AsynqCheckInterval.String(), pc.AsynqCheckInterval
			idle = append(idle, pr)
		}
	}
	for i := range pc.Rounds {
		for _, pr := range rotate(idle, i) {
			if err := run(pr, i); err != nil {
				return nil, err
			}
		}
	}
	out := make([]*Result, 0, len(order))
	for _, v := range order {
		out = append(out, mergePeerRounds(rounds[v]))
	}
	return out, nil
}

// rotate returns s starting at its k-th element (mod len(s)).
func rotate[T any](s []T, k int) []T {
	if len(s) == 0 {
		return nil
	}
	k %= len(s)
	return append(slices.Clone(s[k:]), s[:k]...)
}

// mergePeerRounds merges one setting's rounds (median throughput, merged
// histograms, mean per-job counters) and keeps what mergeRounds leaves
// out: work the server still held, notes, FlowFabric's hand-off share,
// scripts per job.
func mergePeerRounds(rs []*Result) *Result {
	m := mergeRounds(rs)
	var notes []string
	var claimed, handed float64
	for _, r := range rs {
		m.Extra["unclaimed"] += r.Extra["unclaimed"]
		m.Extra["submitted"] += r.Extra["submitted"]
		claimed += r.Extra["claimed"]
		handed += r.Extra["handoffs"]
		if r.Note != "" {
			notes = append(notes, r.Note)
		}
	}
	if m.Extra["unclaimed"] == 0 {
		delete(m.Extra, "unclaimed")
	}
	m.Note = strings.Join(notes, "; ")
	setHandoffShare(m, handed, claimed)
	var scripts float64
	for _, c := range []string{"fcall", "fcall_ro", "evalsha", "evalsha_ro", "eval", "eval_ro"} {
		scripts += m.CommandMix[c]
	}
	m.Extra["scripts_per_op"] = round3(scripts)
	return m
}

// prodOut is how a producer ended.
type prodOut struct {
	st  loadgen.ProducerStats
	err error
}

// startProducer runs a run's producer in the background for d: an open
// loop at rate on the config's schedule, or closed (Submit set to submit).
func (r *Runner) startProducer(ctx context.Context, open bool, rate float64, closed *loadgen.ClosedLoop, d time.Duration,
	submit func(context.Context, loadgen.Arrival) error) <-chan prodOut {
	pdone := make(chan prodOut, 1)
	if open {
		var sched loadgen.Schedule = loadgen.Constant{PerSecond: rate}
		if r.cfg.Arrivals == "poisson" {
			sched = loadgen.NewPoisson(rate, r.cfg.Seed)
		}
		p := &loadgen.Producer{Schedule: sched, Duration: d, Submit: submit}
		go func() { st, err := p.Run(ctx); pdone <- prodOut{st, err} }()
	} else {
		closed.Submit = submit
		go func() { st, err := closed.Run(ctx); pdone <- prodOut{st, err} }()
	}
	return pdone
}

// peerCounts is what a peer run counted of its jobs.
type peerCounts struct {
	submitted, completed, lost, dups, failed int64
	// windowDone: handlers started in the window; windowOps: arrivals
	// intended in it (open loop).
	windowDone, windowOps int64
	settled               bool
}

// newPeerResult starts a peer system's result (one queue: P=1).
func newPeerResult(pr peerRun, cfg Config, win Window, lat map[string]*Latency) *Result {
	res := &Result{Scenario: ScenarioPeers, Variant: pr.variant, Partitions: 1, Workers: cfg.Workers,
		DurationS: win.Seconds(), Unit: "jobs", Latency: map[string]*Summary{}, Extra: map[string]float64{}}
	summarizeInto(res.Latency, lat)
	return res
}

// finishPeer fills a peer result's rate, per-job counters and correctness.
func (res *Result) finishPeer(c peerCounts, pr peerRun, m measured, drain time.Duration) {
	res.AchievedRate = round3(float64(c.windowDone) / res.DurationS)
	res.Throughput = res.AchievedRate
	ops := c.windowDone
	if pr.open {
		res.OfferedRate = round3(pr.rate)
		ops = c.windowOps
	}
	res.Ops = ops
	res.efficiency(m.server, m.mallocs, ops)
	res.Lost, res.Duplicated = c.lost, c.dups
	res.Extra["submitted"] = float64(c.submitted)
	if c.failed > 0 {
		res.Note = joinNote(res.Note, fmt.Sprintf("%d submissions failed", c.failed))
	}
	if !c.settled {
		res.Note = joinNote(res.Note, fmt.Sprintf("not settled after %v drain: %d of %d completed", drain, c.completed, c.submitted))
	}
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// PeerComparison is the peers scenario's summary: each system's best
// closed-loop capacity and its cost per job there, its idle pickup, and
// FlowFabric's ratios to the others.
type PeerComparison struct {
	// Rounds each setting ran (interleaved); IdleRate the idle runs' jobs/s.
	Rounds   int           `json:"rounds"`
	IdleRate float64       `json:"idle_rate"`
	Slots    string        `json:"slots"` // worker slots every system had
	Systems  []PeerSummary `json:"systems"`
	// FlowFabric's best capacity over each peer's best (0: one of them did
	// not run), and its Valkey CPU per job over each peer's (each at its
	// best setting).
	CapacityVsBullMQ float64 `json:"capacity_vs_bullmq,omitempty"`
	CapacityVsAsynq  float64 `json:"capacity_vs_asynq,omitempty"`
	CPUVsBullMQ      float64 `json:"cpu_per_job_vs_bullmq,omitempty"`
	CPUVsAsynq       float64 `json:"cpu_per_job_vs_asynq,omitempty"`
}

// PeerSummary is one system's figures in the comparison.
type PeerSummary struct {
	System  string `json:"system"`
	Version string `json:"version,omitempty"`
	// Skipped says why the system did not run (its figures are zero).
	Skipped string `json:"skipped,omitempty"`
	// Best is the closed-loop setting with the highest median capacity;
	// Sweep every setting.
	Best  *PeerPoint  `json:"best,omitempty"`
	Sweep []PeerPoint `json:"sweep,omitempty"`
	// Idle are the idle pickup runs; FastestIdle indexes the one with the
	// lowest p50.
	Idle        []PeerIdle `json:"idle,omitempty"`
	FastestIdle int        `json:"fastest_idle"`
}

// PeerPoint is one closed-loop setting of a system.
type PeerPoint struct {
	Key               string  `json:"key"` // the result's key
	InFlight          int     `json:"in_flight"`
	Throughput        float64 `json:"throughput"` // jobs/s, median of the rounds
	ThroughputMin     float64 `json:"throughput_min"`
	ThroughputMax     float64 `json:"throughput_max"`
	ValkeyCPUPerJobUS float64 `json:"valkey_cpu_us_per_job"`
	CommandsPerJob    float64 `json:"commands_per_job"`
	ScriptsPerJob     float64 `json:"scripts_per_job"`
}

// PeerIdle is one idle pickup run of a system.
type PeerIdle struct {
	Key     string `json:"key"`
	Setting string `json:"setting"`
	// Pickup: intended arrival → handler start.
	Samples           int64   `json:"samples"`
	P50US             float64 `json:"p50_us"`
	P99US             float64 `json:"p99_us"`
	ValkeyCPUPerJobUS float64 `json:"valkey_cpu_us_per_job"`
	CommandsPerJob    float64 `json:"commands_per_job"`
}

// peerComparison builds the comparison from the peers results of rep;
// nil when the scenario did not run.
func (r *Runner) peerComparison(rep *Report) *PeerComparison {
	if len(r.peerInfo) == 0 {
		return nil
	}
	pc := r.cfg.Peers
	cmp := &PeerComparison{Rounds: pc.Rounds, IdleRate: pc.IdleRate,
		Slots: fmt.Sprintf("%d workers × %d concurrency", r.cfg.Workers, r.cfg.Concurrency)}
	for _, sys := range PeerSystems {
		in, ok := r.peerInfo[sys]
		if !ok {
			continue
		}
		s := PeerSummary{System: sys, Version: in.version, Skipped: in.skipped}
		for _, res := range rep.Results {
			rsys, rest, _ := strings.Cut(res.Variant, "/")
			if res.Scenario != ScenarioPeers || rsys != sys {
				continue
			}
			if n, ok := strings.CutPrefix(rest, "closed-"); ok {
				inFlight, _ := strconv.Atoi(n)
				s.Sweep = append(s.Sweep, PeerPoint{Key: res.Key(), InFlight: inFlight, Throughput: res.Throughput,
					ThroughputMin: res.Extra["throughput_min"], ThroughputMax: res.Extra["throughput_max"],
					ValkeyCPUPerJobUS: res.ValkeyCPUPerOpUS, CommandsPerJob: res.CommandsPerOp,
					ScriptsPerJob: res.Extra["scripts_per_op"]})
				continue
			}
			idle := PeerIdle{Key: res.Key(), Setting: idleSetting(sys, rest), ValkeyCPUPerJobUS: res.ValkeyCPUPerOpUS,
				CommandsPerJob: res.CommandsPerOp}
			if l := res.Latency["handler_start"]; l != nil {
				idle.Samples, idle.P50US, idle.P99US = l.Count, l.P50, l.P99
			}
			s.Idle = append(s.Idle, idle)
		}
		for i := range s.Sweep {
			if s.Best == nil || s.Sweep[i].Throughput > s.Best.Throughput {
				s.Best = &s.Sweep[i]
			}
		}
		for i, idle := range s.Idle {
			if idle.Samples > 0 && (s.Idle[s.FastestIdle].Samples == 0 || idle.P50US < s.Idle[s.FastestIdle].P50US) {
				s.FastestIdle = i
			}
		}
		cmp.Systems = append(cmp.Systems, s)
	}
	ff := cmp.system(PeerFlowFabric)
	for _, p := range []struct {
		sys      string
		cap, cpu *float64
	}{{PeerBullMQ, &cmp.CapacityVsBullMQ, &cmp.CPUVsBullMQ}, {PeerAsynq, &cmp.CapacityVsAsynq, &cmp.CPUVsAsynq}} {
		o := cmp.system(p.sys)
		if ff == nil || o == nil || ff.Best == nil || o.Best == nil || o.Best.Throughput <= 0 {
			continue
		}
		*p.cap = round3(ff.Best.Throughput / o.Best.Throughput)
		if o.Best.ValkeyCPUPerJobUS > 0 {
			*p.cpu = round3(ff.Best.ValkeyCPUPerJobUS / o.Best.ValkeyCPUPerJobUS)
		}
	}
	return cmp
}

// system returns the summary of sys, nil when it did not run.
func (c *PeerComparison) system(sys string) *PeerSummary {
	for i := range c.Systems {
		if c.Systems[i].System == sys && c.Systems[i].Skipped == "" {
			return &c.Systems[i]
		}
	}
	return nil
}

// idleSetting describes what an idle variant ran with.
func idleSetting(sys, variant string) string {
	switch {
	case sys == PeerFlowFabric:
		return "defaults (hand-offs, arrival pushes)"
	case sys == PeerBullMQ:
		return "defaults (blocking BZPOPMIN)"
	case variant == "idle":
		return "TaskCheckInterval 1s (default)"
	}
	if d, ok := strings.CutPrefix(variant, "idle-check-"); ok {
		return "TaskCheckInterval " + d
	}
	return variant
}
