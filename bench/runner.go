package bench

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Runner runs scenarios against a Target and assembles the Report.
type Runner struct {
	cfg  Config
	t    *Target
	prog *Progress
	// capacity is e2e's closed-loop jobs/s at cfg.Partitions, measured once
	// per run; open-loop rates default to a fraction of it.
	capacity float64
	// pipelinedRate is the raw pipelined FCALL rate (anchor).
	pipelinedRate float64
	anchors       Anchors
	// peerInfo is set by the peers scenario: each system's version, or
	// why it was skipped.
	peerInfo map[string]peerInfo
	// sizing is filled from e2e's closed loop (sizing.go).
	sizing *Sizing
}

// NewRunner returns a Runner; prog may be nil.
func NewRunner(cfg Config, t *Target, prog *Progress) *Runner {
	if prog == nil {
		prog = NewProgress(nil)
	}
	t.noArrivals = cfg.NoArrivals
	return &Runner{cfg: cfg, t: t, prog: prog}
}

// Run measures the anchors, then every scenario of the config, and returns
// the report. A correctness failure (lost or duplicated work) is recorded in
// the report (Report.OK is false), not returned as an error.
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	if err := r.cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	rep, err := r.anchoredReport(ctx)
	if err != nil {
		return nil, fmt.Errorf("anchors: %w", err)
	}
	for _, s := range r.scenarios() {
		res, err := r.RunScenario(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		rep.Results = append(rep.Results, res...)
	}
	r.finish(rep)
	rep.ElapsedS = round3(time.Since(start).Seconds())
	return rep, nil
}

// scenarios is the config's list without claim-latency and
// renew-throughput when the partition sweep already covers their
// partition count (one result per key).
func (r *Runner) scenarios() []string {
	sweep := slices.Contains(r.cfg.Scenarios, ScenarioPartitionSweep) &&
		slices.Contains(r.cfg.SweepPartitions, r.cfg.Partitions)
	var out []string
	for _, s := range r.cfg.Scenarios {
		if sweep && (s == ScenarioClaimLatency || s == ScenarioRenew) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// anchoredReport measures the anchors and returns a new report carrying
// them, the start of every report the runner makes.
func (r *Runner) anchoredReport(ctx context.Context) (*Report, error) {
	rep := &Report{Schema: SchemaName, SchemaVersion: SchemaVersion, CreatedAt: time.Now().UTC(),
		GitSHA: gitSHA(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Valkey: r.t.Info(), Profile: r.cfg.Profile,
		Config: r.cfg}
	if err := r.measureAnchors(ctx); err != nil {
		return nil, err
	}
	rep.Anchors = r.anchors
	return rep, nil
}

// finish sorts results, sums correctness and adds the ratios that need
// several results.
func (r *Runner) finish(rep *Report) {
	rep.sortResults()
	for _, res := range rep.Results {
		rep.Lost += res.Lost
		rep.Duplicated += res.Duplicated
		if res.Lost > 0 || res.Duplicated > 0 {
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %d lost, %d duplicated", res.Key(), res.Lost, res.Duplicated))
		}
		if res.Extra["unclaimed"] > 0 {
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %s", res.Key(), res.Note))
		}
		if f := signalFailure(res); f != "" {
			rep.Failures = append(rep.Failures, res.Key()+": "+f)
		}
		if f := streamFailure(res); f != "" {
			rep.Failures = append(rep.Failures, res.Key()+": "+f)
		}
		if f := notifyFailure(res); f != "" {
			rep.Failures = append(rep.Failures, res.Key()+": "+f)
		}
		if f := flowFailure(res); f != "" {
			rep.Failures = append(rep.Failures, res.Key()+": "+f)
		}
		if f := admissionFailure(res); f != "" {
			rep.Failures = append(rep.Failures, res.Key()+": "+f)
		}
		// Resume latency against the serial FCALL round trip (the loaded
		// one is set by the scenario: both figures are its own).
		if s := res.Latency["resume"]; s != nil && s.Count > 0 && r.anchors.SerialFCALL != nil && r.anchors.SerialFCALL.P50 > 0 {
			if res.Extra == nil {
				res.Extra = map[string]float64{}
			}
			res.Extra["resume_p50_over_serial_rtt"] = round3(s.P50 / r.anchors.SerialFCALL.P50)
			if lr := res.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 && lr.P50 > 0 {
				res.Extra["loaded_rtt_p50_over_serial_rtt"] = round3(lr.P50 / r.anchors.SerialFCALL.P50)
			}
		}
		// Claim latency against the serial FCALL round trip.
		if s := res.Latency["claim"]; s != nil && s.Count > 0 && r.anchors.SerialFCALL != nil && r.anchors.SerialFCALL.P50 > 0 {
			if res.Extra == nil {
				res.Extra = map[string]float64{}
			}
			res.Extra["claim_p50_over_serial_rtt"] = round3(s.P50 / r.anchors.SerialFCALL.P50)
			if cc := res.Latency["claim_call"]; cc != nil && cc.Count > 0 {
				res.Extra["claim_call_p50_over_serial_rtt"] = round3(cc.P50 / r.anchors.SerialFCALL.P50)
			}
			// The same against one FCALL round trip under the run's load.
			if lr := res.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 && lr.P50 > 0 {
				res.Extra["loaded_rtt_p50_over_serial_rtt"] = round3(lr.P50 / r.anchors.SerialFCALL.P50)
				res.Extra["claim_p50_over_loaded_rtt"] = round3(s.P50 / lr.P50)
			}
		}
	}
	if rep.Peers = r.peerComparison(rep); rep.Peers != nil {
		for _, s := range rep.Peers.Systems {
			if s.Skipped != "" {
				rep.Notes = append(rep.Notes, "peers: "+s.Skipped)
			}
		}
	}
	rep.Sizing = r.sizing
	if r.capacity > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("capacity (e2e closed loop, P=%d): %.0f jobs/s; open-loop rates are %.0f%% of it",
			r.cfg.Partitions, r.capacity, 100*r.cfg.RateFraction))
	}
}

// RunScenario runs one scenario (the anchors must have been measured, or
// are measured now).
func (r *Runner) RunScenario(ctx context.Context, name string) ([]*Result, error) {
	if r.anchors.SerialFCALL == nil {
		if err := r.measureAnchors(ctx); err != nil {
			return nil, fmt.Errorf("anchors: %w", err)
		}
	}
	r.prog.Stage(name)
	cfg := r.cfg
	switch name {
	case ScenarioE2E:
		closed, err := r.runPipeline(ctx, pipelineSpec{scenario: name, variant: "closed", partitions: cfg.Partitions,
			mode: r.mode(), inFlight: cfg.InFlight})
		if err != nil {
			return nil, err
		}
		r.capacity = closed.Throughput
		r.againstCeiling(closed)
		r.sizing = r.buildSizing(ctx, closed)
		open, err := r.runPipeline(ctx, pipelineSpec{scenario: name, variant: "open", partitions: cfg.Partitions,
			mode: r.mode(), open: true, rate: r.openRate(), pause: cfg.Pause})
		if err != nil {
			return nil, err
		}
		return []*Result{closed, open}, nil
	case ScenarioClaimLatency:
		rate, err := r.rate(ctx)
		if err != nil {
			return nil, err
		}
		res, err := r.runPipeline(ctx, pipelineSpec{scenario: name, partitions: cfg.Partitions, mode: r.mode(),
			open: true, rate: rate})
		return []*Result{res}, err
	case ScenarioRenew:
		return r.runRenew(ctx, name, cfg.Partitions)
	case ScenarioPartitionSweep:
		return r.runSweep(ctx)
	case ScenarioClaimPath:
		return r.runClaimPath(ctx)
	case ScenarioClaimHandoff:
		return r.runClaimHandoff(ctx)
	case ScenarioRecovery:
		res, err := r.runRecovery(ctx)
		return []*Result{res}, err
	case ScenarioSignalResume:
		res, err := r.runSignalResume(ctx)
		if err != nil {
			return nil, err
		}
		return []*Result{res}, nil
	case ScenarioStreamAppend:
		return r.runStreamAppend(ctx)
	case ScenarioCompletionNotify:
		res, err := r.runCompletionNotify(ctx)
		if err != nil {
			return nil, err
		}
		return []*Result{res}, nil
	case ScenarioFlowDAG:
		return r.runFlowDAG(ctx)
	case ScenarioAdmission:
		return r.runAdmission(ctx)
	case ScenarioDurability:
		return r.runDurability(ctx)
	case ScenarioPeers:
		return r.runPeers(ctx)
	case ScenarioClusterClaim:
		return r.runClusterClaim(ctx)
	}
	return nil, fmt.Errorf("unknown scenario %q", name)
}

func (r *Runner) mode() sdk.ClaimMode {
	if r.cfg.ClaimMode == "fused" {
		return sdk.ClaimFused
	}
	return sdk.ClaimDirect
}

// openRate is the open-loop rate: Config.Rate, else RateFraction of the
// measured capacity.
func (r *Runner) openRate() float64 {
	if r.cfg.Rate > 0 {
		return r.cfg.Rate
	}
	return r.cfg.RateFraction * r.capacity
}

// rate is openRate, measuring the capacity first when needed.
func (r *Runner) rate(ctx context.Context) (float64, error) {
	if r.cfg.Rate > 0 || r.capacity > 0 {
		return r.openRate(), nil
	}
	r.prog.Stage("capacity probe (e2e closed loop)")
	res, err := r.runPipeline(ctx, pipelineSpec{scenario: ScenarioE2E, variant: "closed", partitions: r.cfg.Partitions,
		mode: r.mode(), inFlight: r.cfg.InFlight})
	if err != nil {
		return 0, err
	}
	r.capacity = res.Throughput
	return r.openRate(), nil
}

// againstCeiling expresses a job rate against the raw pipelined FCALL rate.
func (r *Runner) againstCeiling(res *Result) {
	if r.pipelinedRate <= 0 {
		return
	}
	res.RawCeiling = round3(r.pipelinedRate)
	res.RatioToCeiling = round3(res.Throughput / r.pipelinedRate)
	if res.Extra == nil {
		res.Extra = map[string]float64{}
	}
	// A job is several FCALLs: how much of the FCALL ceiling the jobs use.
	res.Extra["fcall_utilisation"] = round3(res.Throughput * res.FcallsPerOp / r.pipelinedRate)
}

// runSweep runs claim-latency and renew-throughput per partition count:
// every claim-latency run first, then every renew run, reported in pairs
// per partition count. A renew run leaves its process slower for the
// open-loop latency runs after it (after one, the heap still held 13 MB of
// descriptors of its exited goroutines, which the Go runtime keeps, and
// each collection took about twice as long): claim p99 at P=16 at 8.5k/s
// measured 11-28 ms after a renew run against 4-6 ms before one, so with
// the runs in turn the P=16 row measured the P=1 and P=4 renew runs'
// leftovers more than the claim path.
func (r *Runner) runSweep(ctx context.Context) ([]*Result, error) {
	rate, err := r.rate(ctx)
	if err != nil {
		return nil, err
	}
	claims := make([]*Result, 0, len(r.cfg.SweepPartitions))
	for _, p := range r.cfg.SweepPartitions {
		r.prog.Stage(fmt.Sprintf("%s P=%d claim-latency", ScenarioPartitionSweep, p))
		cl, err := r.runPipeline(ctx, pipelineSpec{scenario: ScenarioClaimLatency, partitions: p, mode: r.mode(),
			open: true, rate: rate})
		if err != nil {
			return nil, fmt.Errorf("claim-latency at P=%d: %w", p, err)
		}
		claims = append(claims, cl)
	}
	var out []*Result
	for i, p := range r.cfg.SweepPartitions {
		r.prog.Stage(fmt.Sprintf("%s P=%d renew-throughput", ScenarioPartitionSweep, p))
		rn, err := r.runRenew(ctx, ScenarioRenew, p)
		if err != nil {
			return nil, fmt.Errorf("renew-throughput at P=%d: %w", p, err)
		}
		out = append(out, claims[i])
		out = append(out, rn...)
	}
	return out, nil
}

// runClaimPath interleaves the direct three-step path and the fused claim,
// A B A B …, each round a closed loop, and merges each path's rounds. Its
// workers make no offers: a hand-off would bypass both paths.
func (r *Runner) runClaimPath(ctx context.Context) ([]*Result, error) {
	rounds := map[string][]*Result{}
	for i := range r.cfg.ABRounds {
		for _, m := range []sdk.ClaimMode{sdk.ClaimDirect, sdk.ClaimFused} {
			r.prog.Stage(fmt.Sprintf("%s %s round %d/%d", ScenarioClaimPath, m, i+1, r.cfg.ABRounds))
			res, err := r.runPipeline(ctx, pipelineSpec{scenario: ScenarioClaimPath, variant: m.String(),
				partitions: r.cfg.Partitions, mode: m, inFlight: r.cfg.InFlight, noHandoff: true})
			if err != nil {
				return nil, err
			}
			rounds[m.String()] = append(rounds[m.String()], res)
		}
	}
	direct, fused := mergeRounds(rounds["direct"]), mergeRounds(rounds["fused"])
	if direct.Throughput > 0 {
		fused.Extra["throughput_vs_direct"] = round3(fused.Throughput / direct.Throughput)
	}
	r.againstCeiling(direct)
	r.againstCeiling(fused)
	return []*Result{direct, fused}, nil
}

// runClaimHandoff compares, in open loop at the claim-latency rate, idle
// workers that offer their slots (the create hands new work over) with
// workers that claim after the arrival push; rounds alternate A B, B A, …
// and each variant's rounds are merged.
func (r *Runner) runClaimHandoff(ctx context.Context) ([]*Result, error) {
	rate, err := r.rate(ctx)
	if err != nil {
		return nil, err
	}
	const on, off = "handoff", "push"
	rounds, err := r.interleave(on, off, func(i int, v string) (*Result, error) {
		r.prog.Stage(fmt.Sprintf("%s %s round %d/%d", ScenarioClaimHandoff, v, i+1, r.cfg.ABRounds))
		return r.runPipeline(ctx, pipelineSpec{scenario: ScenarioClaimHandoff, variant: v,
			partitions: r.cfg.Partitions, mode: r.mode(), open: true, rate: rate, noHandoff: v == off})
	})
	if err != nil {
		return nil, err
	}
	out := map[string]*Result{}
	for _, v := range []string{on, off} {
		out[v] = mergeHandoffRounds(rounds[v])
	}
	h, p := out[on].Latency["claim"], out[off].Latency["claim"]
	if h != nil && p != nil && p.P50 > 0 {
		out[on].Extra["claim_p50_vs_push"] = round3(h.P50 / p.P50)
	}
	return []*Result{out[on], out[off]}, nil
}

// mergeHandoffRounds merges rounds of one configuration (mergeRounds)
// and sets the merged result's hand-off share over all of them.
func mergeHandoffRounds(rs []*Result) *Result {
	m := mergeRounds(rs)
	var claimed, handed float64
	for _, r := range rs {
		claimed += r.Extra["claimed"]
		handed += r.Extra["handoffs"]
	}
	setHandoffShare(m, handed, claimed)
	return m
}

// abba returns a and b in the order round i takes them: a first on even
// rounds, b first on odd ones (A B, B A, …), so a drift over the run weighs
// on both alike.
func abba[T any](i int, a, b T) [2]T {
	if i%2 == 1 {
		return [2]T{b, a}
	}
	return [2]T{a, b}
}

// interleave runs ABRounds rounds of each of two variants, alternating
// A B, B A, … (abba), and returns each variant's results in round order.
// The first error stops it.
func (r *Runner) interleave(a, b string, run func(i int, v string) (*Result, error)) (map[string][]*Result, error) {
	rounds := map[string][]*Result{}
	for i := range r.cfg.ABRounds {
		for _, v := range abba(i, a, b) {
			res, err := run(i, v)
			if err != nil {
				return nil, err
			}
			rounds[v] = append(rounds[v], res)
		}
	}
	return rounds, nil
}

// mergeRounds combines rounds of one configuration: median throughput,
// merged histograms, summed counts, mean per-op counters.
func mergeRounds(rs []*Result) *Result {
	out := *rs[0]
	out.Latency = map[string]*Summary{}
	out.Extra = map[string]float64{"rounds": float64(len(rs))}
	var tputs []float64
	hists := map[string]*hdrhistogram.Histogram{}
	out.Ops, out.Lost, out.Duplicated, out.DurationS = 0, 0, 0, 0
	out.CommandsPerOp, out.FcallsPerOp, out.ValkeyCPUPerOpUS, out.AllocsPerOp = 0, 0, 0, 0
	out.CommandMix = map[string]float64{}
	n := float64(len(rs))
	for _, r := range rs {
		tputs = append(tputs, r.Throughput)
		out.Ops += r.Ops
		out.Lost += r.Lost
		out.Duplicated += r.Duplicated
		out.DurationS += r.DurationS
		out.CommandsPerOp += r.CommandsPerOp / n
		out.FcallsPerOp += r.FcallsPerOp / n
		out.ValkeyCPUPerOpUS += r.ValkeyCPUPerOpUS / n
		out.AllocsPerOp += r.AllocsPerOp / n
		for k, v := range r.CommandMix {
			out.CommandMix[k] += v / n
		}
		for name, s := range r.Latency {
			h, err := s.Histogram()
			if err != nil {
				continue
			}
			if hists[name] == nil {
				hists[name] = newHist()
			}
			hists[name].Merge(h)
		}
	}
	for k, v := range out.CommandMix {
		out.CommandMix[k] = round3(v)
	}
	out.CommandsPerOp, out.FcallsPerOp = round3(out.CommandsPerOp), round3(out.FcallsPerOp)
	out.ValkeyCPUPerOpUS, out.AllocsPerOp = round3(out.ValkeyCPUPerOpUS), round3(out.AllocsPerOp)
	for name, h := range hists {
		out.Latency[name] = Summarize(h)
	}
	out.Throughput = median(tputs) // sorts tputs
	out.AchievedRate = out.Throughput
	out.Extra["throughput_min"], out.Extra["throughput_max"] = tputs[0], tputs[len(tputs)-1]
	return &out
}

// measureAnchors measures, on a fresh deployment of cfg.Partitions, the
// serial round trip of one ff_renew (one lease) and the same FCALL's
// pipelined rate, on bare RESP connections (see probeConn; ffbench
// calibrate checks them against valkey-benchmark), and the serial round
// trip through valkey-go for comparison.
func (r *Runner) measureAnchors(ctx context.Context) error {
	r.prog.Stage("anchors: serial and pipelined FCALL")
	cmd, cleanup, err := r.anchorCommand(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	addr, err := r.nodeFor(ctx, cmd)
	if err != nil {
		return err
	}
	enc := encodeCommand(cmd.Commands())
	d := min(r.cfg.Duration, time.Second)
	if _, err := probeSerial(ctx, addr, enc, d/4, -1); err != nil { // warm-up
		return err
	}
	h, err := probeSerial(ctx, addr, enc, d, -1)
	if err != nil {
		return err
	}
	r.anchors.SerialFCALL = Summarize(h)
	if h.Mean() > 0 {
		r.anchors.SerialRate = round3(1e6 / h.Mean())
	}
	hv, err := measureSerial(ctx, r.t.serial, cmd, d/2)
	if err != nil {
		return err
	}
	r.anchors.SerialFCALLValkeyGo = Summarize(hv)
	rate, err := probePipelined(ctx, addr, enc, r.cfg.PipelineConns, r.cfg.PipelineDepth, d, -1)
	if err != nil {
		return err
	}
	r.pipelinedRate = rate
	r.anchors.PipelinedRate = round3(rate)
	r.anchors.PipelineConns, r.anchors.PipelineDepth = r.cfg.PipelineConns, r.cfg.PipelineDepth
	return nil
}

// anchorCommand deploys P partitions, holds one lease and returns its
// pinned ff_renew FCALL.
func (r *Runner) anchorCommand(ctx context.Context) (cmd valkey.Completed, cleanup func(), err error) {
	be, err := r.t.Deploy(ctx, r.cfg.Partitions)
	if err != nil {
		return cmd, nil, err
	}
	hs, err := holdLeases(ctx, be, benchLane, 1, renewLeaseTTL)
	if err != nil {
		be.Close()
		return cmd, nil, err
	}
	if cmd, err = renewCommand(r.t.raw, be, hs[:1]); err != nil {
		be.Close()
		return cmd, nil, err
	}
	if n, err := renewedIn(r.t.serial.Do(ctx, cmd)); err != nil || n != 1 {
		be.Close()
		return cmd, nil, fmt.Errorf("raw ff_renew did not renew (%d renewed): %v", n, err)
	}
	return cmd, be.Close, nil
}

// GitSHA is the commit ffbench was built from: the build's VCS stamp, or
// else git's HEAD in the working directory ("-dirty" when modified;
// "unknown" without either).
func GitSHA() string { return gitSHA() }

// gitSHA is the commit ffbench was built from (VCS stamp, or git).
func gitSHA() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return rev
		}
	}
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	sha := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		sha += "-dirty"
	}
	return sha
}
