// Command ffbench is FlowFabric's benchmark harness: it measures claim
// latency, lease-renew throughput and end-to-end throughput per partition
// count against a throwaway local Valkey (the default) or a real server,
// writes JSON, Markdown and HTML reports, and gates CI on regressions.
//
//	ffbench run                  quick profile on a throwaway Valkey
//	ffbench run --profile smoke  seconds per scenario (CI)
//	ffbench sweep                the partition sweep alone
//	ffbench capacity --slo 'claim p99 <= 5ms'   the highest arrival rate meeting an SLO
//	ffbench report --in r.json   re-render a JSON report
//	ffbench gate --baseline ci/baseline.json --report r.json
//	ffbench calibrate            ffbench's raw figures vs valkey-benchmark
//
// Exit status: 0 success, 1 a correctness failure (lost or duplicated
// work), a gate regression or a calibration outside tolerance, 2 a usage or
// setup error, 3 a target missed (only with --fail-on-miss).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flowfabric/flowfabric-go/bench"
	"github.com/flowfabric/flowfabric-go/lua"
	"github.com/flowfabric/flowfabric-go/profiles"
	// FF_VALKEY_CONTAINER=1 runs the throwaway Valkey in a container.
	_ "github.com/flowfabric/flowfabric-go/valkeytest/container"
)

// errFailed is a run that completed but failed its checks (exit 1).
var errFailed = errors.New("failed")

// errMissed is a run that passed its checks but missed a target, with
// --fail-on-miss (exit 3).
var errMissed = errors.New("target missed")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errFailed):
		os.Exit(1)
	case errors.Is(err, errMissed):
		os.Exit(3)
	case errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "ffbench:", err)
		os.Exit(2)
	}
}

var usage = `ffbench: FlowFabric's benchmark harness.

Usage:
  ffbench run       [flags]   run a profile, or the scenarios given by --scenario
  ffbench sweep     [flags]   the partition sweep (claim-latency and renew-throughput per P)
  ffbench capacity  --slo SLO [flags]   the highest arrival rate meeting an SLO ('claim p99 <= 5ms')
  ffbench report    --in FILE re-render report.md, report.html and bench.txt from a report.json
  ffbench gate      --baseline FILE --report FILE   compare a report with the committed baseline
  ffbench calibrate [flags]   compare ffbench's raw FCALL figures with valkey-benchmark
  ffbench version             print the version (also --version on every command)

With no --addr, ffbench starts a throwaway local Valkey (valkey-server on a
free loopback port) and stops it at the end. "ffbench COMMAND --help" lists
the command's flags and defaults.

Exit status: 0 success; 1 a correctness failure (lost or duplicated work),
a gate regression or a calibration outside tolerance; 2 a usage or setup
error; 3 a target missed, with --fail-on-miss (run, sweep, capacity, report).

Scenarios: ` + strings.Join(bench.ScenarioNames, ", ") + `
Profiles:  smoke (seconds per scenario; CI), quick (under 90 s on 2 cores; make bench),
           gate (every gated figure at P=16; make perf-gate), full (long windows)
           (peers, which measures asynq and BullMQ beside FlowFabric, is in none:
           ffbench run --scenario peers)
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return errors.New("no command")
		}
		return nil
	}
	switch args[0] {
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionLine())
		return nil
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr, false)
	case "sweep":
		return cmdRun(ctx, args[1:], stdout, stderr, true)
	case "capacity":
		return cmdCapacity(ctx, args[1:], stdout, stderr)
	case "report":
		return cmdReport(args[1:], stdout, stderr)
	case "gate":
		return cmdGate(ctx, args[1:], stdout, stderr)
	case "calibrate":
		return cmdCalibrate(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// versionLine is what --version prints: the commit ffbench was built from,
// the Go version and the Functions library version it loads.
func versionLine() string {
	return fmt.Sprintf("ffbench %s (%s, %s/%s, Functions library v%s)", bench.GitSHA(), runtime.Version(), runtime.GOOS, runtime.GOARCH, lua.Version)
}

// newFlagSet returns a flag set whose usage lists every flag but the hidden
// (planted-regression) ones; every command has --version.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Bool("version", false, "print ffbench's version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ffbench %s\n\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			if strings.HasPrefix(f.Name, "plant-") {
				return
			}
			name, usage := flag.UnquoteUsage(f)
			line := "  --" + f.Name
			if name != "" {
				line += " " + name
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "[]" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(stderr, "%s\n    \t%s%s\n", line, strings.ReplaceAll(usage, "\n", "\n    \t"), def)
		})
	}
	return fs
}

// positiveFlags are the numeric flags whose zero means nothing (a zero
// window measures nothing, a fleet of no workers claims nothing); the
// others may be 0, which picks their documented default. No numeric flag
// may be negative, NaN or infinite.
var positiveFlags = map[string]bool{
	"duration": true, "workers": true, "concurrency": true, "in-flight": true, "payload": true, "leases": true,
	"renew-workers": true, "recovery-jobs": true, "lease-ttl": true, "scan-interval": true, "rate-fraction": true,
	"ab-rounds": true, "pipeline-depth": true, "pipeline-conns": true, "partitions": true, "slice": true,
	"peer-rounds": true, "peer-duration": true, "peer-idle-rate": true, "peer-idle-duration": true, "peer-asynq-check-interval": true,
	"repetitions": true, "step-duration": true, "max-step-duration": true, "resolution": true, "ramp-factor": true,
}

// parseFlags parses args; done is true when --version was printed. It
// refuses positional arguments and bad numeric values with a message
// naming the flag.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (done bool, err error) {
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	if v := fs.Lookup("version"); v != nil && v.Value.String() == "true" {
		fmt.Fprintln(stdout, versionLine())
		return true, nil
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) {
		if err != nil {
			return
		}
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		var v float64
		switch x := g.Get().(type) {
		case int:
			v = float64(x)
		case int64:
			v = float64(x)
		case uint64:
			v = float64(x)
		case float64:
			v = x
		case time.Duration:
			v = float64(x)
		default:
			return
		}
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			err = fmt.Errorf("--%s %s: not a number ffbench can use", f.Name, f.Value)
		case v < 0:
			err = fmt.Errorf("--%s %s: must not be negative", f.Name, f.Value)
		case v == 0 && positiveFlags[f.Name]:
			err = fmt.Errorf("--%s %s: must be above zero", f.Name, f.Value)
		}
	})
	return false, err
}

// targetFlags are the flags naming the server under test.
type targetFlags struct {
	addr    string
	cluster bool
	flush   bool
	// replicas of the throwaway server to start (the durability scenario's).
	replicas int
}

func (t *targetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.addr, "addr", "", "Valkey address(es), comma separated (host:port); a cluster is detected.\nEmpty: start a throwaway local valkey-server (the embedded default)")
	fs.BoolVar(&t.cluster, "cluster", false, "with no --addr, start a throwaway 3-primary Valkey Cluster instead of one server")
	fs.BoolVar(&t.flush, "flush", false, "allow FLUSHALL on --addr between runs (ffbench empties the server it measures;\nit refuses to touch a server it did not start without this)")
}

// stage is the progress line while open runs.
func (t *targetFlags) stage() string {
	switch {
	case t.addr != "":
		return "connecting to " + t.addr
	case t.cluster:
		return "starting a throwaway 3-primary Valkey Cluster"
	}
	return "starting a throwaway Valkey"
}

func (t *targetFlags) open(ctx context.Context) (*bench.Target, error) {
	if t.cluster && t.addr != "" {
		return nil, errors.New("--cluster starts a throwaway cluster; with --addr ffbench detects the server's topology: give one of them")
	}
	var addrs []string
	for _, a := range strings.Split(t.addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return bench.OpenTarget(ctx, bench.TargetOptions{Addrs: addrs, Cluster: t.cluster, Flush: t.flush, Replicas: t.replicas})
}

// openWithProgress starts the progress line on stderr (none when quiet),
// says what it opens and opens the target; the caller closes both.
func (t *targetFlags) openWithProgress(ctx context.Context, stderr io.Writer, quiet bool) (*bench.Target, *bench.Progress, error) {
	if quiet {
		stderr = nil
	}
	prog := bench.NewProgress(stderr)
	prog.Stage(t.stage())
	tg, err := t.open(ctx)
	if err != nil {
		prog.Close()
		return nil, nil, err
	}
	return tg, prog, nil
}

// runFlags binds the run configuration.
type runFlags struct {
	profile, scenarios, partitions, sweep string
	peerSystems, peerInFlight             string
	out, profileDir, pyroscope            string
	calibrate, quiet, failOnMiss          bool
	valkeyBenchmark, otel                 string
	slice                                 time.Duration
	cfg                                   bench.Config
}

func (f *runFlags) register(fs *flag.FlagSet, sweep bool) {
	def, _ := bench.Profile("quick")
	fs.StringVar(&f.profile, "profile", "quick", "run profile: smoke (seconds per scenario), quick (under 90s on 2 cores), gate (make perf-gate),\nfull (long windows); the flags below override its values")
	if !sweep {
		fs.StringVar(&f.scenarios, "scenario", "", "comma-separated scenarios instead of the profile's: e2e, claim-latency,\nrenew-throughput, partition-sweep, claim-path, claim-handoff, recovery, signal-resume, stream-append,\ncompletion-notify, flow-dag, admission, durability, cluster-claim, peers (quick: "+strings.Join(def.Scenarios, ",")+")")
		p := def.Peers
		fs.StringVar(&f.peerSystems, "peer-systems", "", "peers: systems to run, of "+strings.Join(bench.PeerSystems, ", ")+" (default all)")
		fs.IntVar(&f.cfg.Peers.Rounds, "peer-rounds", 0, fmt.Sprintf("peers: rounds of each system and setting, turns rotating (default %d)", p.Rounds))
		fs.StringVar(&f.peerInFlight, "peer-in-flight", "", "peers: closed-loop in-flight settings swept per system; the best is reported\n(default "+joinInts(p.InFlight)+")")
		fs.DurationVar(&f.cfg.Peers.Warmup, "peer-warmup", 0, fmt.Sprintf("peers: warm-up before every peers run's window (default %v: a fresh Node process needs it)", p.Warmup))
		fs.DurationVar(&f.cfg.Peers.Duration, "peer-duration", 0, fmt.Sprintf("peers: measured window of each closed-loop run (default %v)", p.Duration))
		fs.Float64Var(&f.cfg.Peers.IdleRate, "peer-idle-rate", 0, fmt.Sprintf("peers: open-loop jobs/s of the idle pickup runs (default %g)", p.IdleRate))
		fs.DurationVar(&f.cfg.Peers.IdleDuration, "peer-idle-duration", 0, fmt.Sprintf("peers: measured window of each idle pickup run (default %v)", p.IdleDuration))
		fs.DurationVar(&f.cfg.Peers.AsynqCheckInterval, "peer-asynq-check-interval", 0, fmt.Sprintf("peers: asynq TaskCheckInterval of its second idle run (default %v; the first keeps 1s)", p.AsynqCheckInterval))
		fs.StringVar(&f.cfg.Peers.Dir, "peers-dir", "", "peers: directory of the pinned BullMQ "+bench.BullMQVersion+" install (npm, once) and its Node script\n(default "+p.Dir+")")
		fs.StringVar(&f.cfg.Peers.Node, "peer-node", "", "peers: node binary; without it (or npm) BullMQ is skipped with a note (default "+p.Node+")")
	}
	f.registerFleet(fs)
	fs.DurationVar(&f.cfg.Warmup, "warmup", 0, fmt.Sprintf("excluded from measurement at the start of each run (quick: %v)", def.Warmup))
	fs.DurationVar(&f.cfg.Duration, "duration", 0, fmt.Sprintf("measured window of each run (quick: %v)", def.Duration))
	fs.DurationVar(&f.cfg.Drain, "drain", 0, fmt.Sprintf("how long a run waits for outstanding work after the window; not measured (quick: %v)", def.Drain))
	fs.Float64Var(&f.cfg.Rate, "rate", 0, fmt.Sprintf("open-loop arrivals per second; 0: --rate-fraction of the e2e capacity measured in the same run\n(signal-resume: cycles per second; 0: %d/s. stream-append: frames per second its latency part\nemits on one tailed stream; 0: %d/s, fixed so its per-frame counters compare between runs.\ncompletion-notify: executions per second, each waited for with WaitResult; 0: %d/s)",
		bench.SignalRateDefault, bench.StreamRateDefault, bench.NotifyRateDefault))
	fs.Float64Var(&f.cfg.RateFraction, "rate-fraction", 0, "open-loop rate as a fraction of measured capacity (quick: 0.5)")
	fs.IntVar(&f.cfg.Leases, "leases", 0, "renew-throughput: leases held by the fleet (quick: 10000)")
	fs.IntVar(&f.cfg.RenewWorkers, "renew-workers", 0, "renew-throughput: workers holding the leases (quick: 4)")
	fs.IntVar(&f.cfg.RecoveryJobs, "recovery-jobs", 0, "recovery: jobs abandoned by the crashed workers (quick: 200)")
	fs.DurationVar(&f.cfg.LeaseTTL, "lease-ttl", 0, "recovery: lease TTL of the workers (quick: 1s)")
	fs.DurationVar(&f.cfg.ScanInterval, "scan-interval", 0, "recovery: lease-expiry scanner interval; admission's rate check: its scanners' (delayed\nand lease-expiry) interval (quick: 250ms)")
	fs.DurationVar(&f.cfg.SignalWait, "signal-wait", 0, fmt.Sprintf("signal-resume: each signal is due this long after its execution's intended submit time;\nresume latency is timed from then (default %v)", bench.SignalWaitDefault))
	fs.IntVar(&f.cfg.DagWidth, "dag-width", 0, fmt.Sprintf("flow-dag: N of its fan-out / fan-in DAGs, 1 → N → 1 (N+2 members, 2N edges; at most %d)\n(default %d)",
		bench.FlowWidthMax, bench.FlowWidthDefault))
	fs.IntVar(&f.cfg.DagDepth, "dag-depth", 0, fmt.Sprintf("flow-dag: members of its chains (D-1 edges; 2..%d) (default %d)", bench.FlowDepthMax, bench.FlowDepthDefault))
	fs.Float64Var(&f.cfg.DagRate, "dag-rate", 0, fmt.Sprintf("flow-dag: DAGs submitted per second of each shape, open loop (--arrivals); --rate does not apply\n(default %d)",
		bench.FlowRateDefault))
	fs.Float64Var(&f.cfg.AdmissionRate, "admission-rate", 0, fmt.Sprintf("admission: open-loop jobs/s of its A/B (a lane claimed through a quota that never binds\nvs the same lane without a policy); --rate does not apply (default %d)", bench.AdmissionRateDefault))
	fs.IntVar(&f.cfg.AdmissionLimit, "admission-limit", 0, fmt.Sprintf("admission: the rate check's quota, admissions per --admission-window (default %d)", bench.AdmissionLimitDefault))
	fs.DurationVar(&f.cfg.AdmissionWindow, "admission-window", 0, fmt.Sprintf("admission: the rate check's sliding window, whole milliseconds, at least 10ms (default %v)", bench.AdmissionWindowDefault))
	fs.Float64Var(&f.cfg.AdmissionOverload, "admission-overload", 0, fmt.Sprintf("admission: the rate check's offered load as a multiple of the quota's rate, above 1, for half of\n--duration; the backlog then drains at the quota's rate (default %d)", bench.AdmissionOverloadDefault))
	fs.StringVar(&f.cfg.Durability, "durability", "", "durability: the acknowledged-write setting its e2e A/B compares with none, waitN (each\nacknowledged write waits for N replicas: valkeybackend Options.WaitReplicas). With no --addr, ffbench\nstarts N replicas of its server (of each primary with --cluster); without --scenario, runs e2e\nand durability (default wait1)")
	fs.IntVar(&f.cfg.ABRounds, "ab-rounds", 0, "claim-path, claim-handoff, admission and cluster-claim: interleaved rounds of each variant (quick: 2)")
	fs.DurationVar(&f.cfg.Pause, "pause", 0, "freeze the server (CLIENT PAUSE) this long mid-window in e2e's open loop")
	fs.BoolVar(&f.calibrate, "calibrate", false, "also compare the raw anchors with valkey-benchmark (adds ~30s)")
	fs.DurationVar(&f.slice, "slice", 250*time.Millisecond, "with --calibrate: each turn's length (ffbench and valkey-benchmark take 15 turns each per figure)")
	fs.StringVar(&f.valkeyBenchmark, "valkey-benchmark", "valkey-benchmark", "with --calibrate: the valkey-benchmark binary")
	fs.StringVar(&f.sweep, "sweep-partitions", "", "partition counts of partition-sweep (quick: 1,4,16,64,256,1024)")
	// Planted regressions, for testing the gate; not listed in --help.
	fs.DurationVar(&f.cfg.PlantRenewDelay, "plant-renew-delay", 0, "planted regression: delay added to every RenewBatch call")
	fs.BoolVar(&f.cfg.PlantClaimPing, "plant-claim-ping", false, "planted regression: one extra round trip (PING) per claim call")
}

// registerFleet binds the flags run, sweep and capacity share: the
// fleet, the schedule, the deployment and the output.
func (f *runFlags) registerFleet(fs *flag.FlagSet) {
	fs.StringVar(&f.out, "out", "", "directory for report.json, report.md, report.html and bench.txt\n(default bench-results/<timestamp>)")
	fs.StringVar(&f.partitions, "partitions", "", "partition count of every scenario but the sweep (quick: 16)")
	fs.IntVar(&f.cfg.Workers, "workers", 0, "workers in a fleet (stream-append: streams appended at once, one per worker) (quick: 2)")
	fs.IntVar(&f.cfg.Concurrency, "concurrency", 0, "each worker's MaxConcurrency (quick: 32)")
	fs.StringVar(&f.cfg.ClaimMode, "claim-mode", "", "claim path outside claim-path: direct or fused (quick: direct)")
	fs.BoolVar(&f.cfg.DistinctWorkerIDs, "distinct-worker-ids", false, "give each fleet worker its own WorkerID instead of one shared by the fleet")
	fs.BoolVar(&f.cfg.NoArrivals, "no-arrivals", false, "connect the workers with arrivals off (readiness pushes alone wake idle workers), to compare")
	fs.StringVar(&f.otel, "otel", "off", otelHelp)
	fs.BoolVar(&f.cfg.NoHandoff, "no-handoff", false, "idle workers do not offer their slots: new work is claimed after its arrival push\ninstead of being handed over by the create, to compare")
	fs.StringVar(&f.cfg.Arrivals, "arrivals", "", "open-loop schedule: poisson or constant (quick: poisson)")
	fs.Uint64Var(&f.cfg.Seed, "seed", 0, "Poisson schedule seed (quick: 1)")
	fs.IntVar(&f.cfg.InFlight, "in-flight", 0, "closed loop: submissions kept outstanding (quick: 64)")
	fs.IntVar(&f.cfg.PayloadBytes, "payload", 0, "payload bytes per execution, at least 16 (stream-append: per frame) (quick: 64)")
	fs.IntVar(&f.cfg.PipelineDepth, "pipeline-depth", 0, "raw pipelined anchor: commands per pipelined batch (quick: 16)")
	fs.IntVar(&f.cfg.PipelineConns, "pipeline-conns", 0, "raw pipelined anchor: connections (quick: 4)")
	fs.StringVar(&f.profileDir, "profile-dir", "", "write cpu, heap, mutex and block pprof files of the run here\n(relative paths are inside --out); the report links them")
	fs.StringVar(&f.pyroscope, "pyroscope", "", "push continuous profiles of the run to this Pyroscope server URL")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress line")
	fs.BoolVar(&f.failOnMiss, "fail-on-miss", false, "exit 3 when the report misses a target (the summary's MISS lines); without it a miss\nis reported, not an error")
}

// config merges the profile with the flags that were set.
func (f *runFlags) config(fs *flag.FlagSet, sweep bool) (bench.Config, error) {
	cfg, err := bench.Profile(f.profile)
	if err != nil {
		return cfg, err
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	o := f.cfg
	pick := func(name string, apply func()) {
		if set[name] {
			apply()
		}
	}
	pick("workers", func() { cfg.Workers = o.Workers })
	pick("concurrency", func() { cfg.Concurrency = o.Concurrency })
	pick("claim-mode", func() { cfg.ClaimMode = o.ClaimMode })
	pick("distinct-worker-ids", func() { cfg.DistinctWorkerIDs = o.DistinctWorkerIDs })
	pick("no-arrivals", func() { cfg.NoArrivals = o.NoArrivals })
	pick("no-handoff", func() { cfg.NoHandoff = o.NoHandoff })
	if set["otel"] {
		if err := applyOtel(&cfg, f.otel); err != nil {
			return cfg, err
		}
	}
	pick("warmup", func() { cfg.Warmup = o.Warmup })
	pick("duration", func() { cfg.Duration = o.Duration })
	pick("drain", func() { cfg.Drain = o.Drain })
	pick("rate", func() { cfg.Rate = o.Rate })
	pick("rate-fraction", func() { cfg.RateFraction = o.RateFraction })
	pick("arrivals", func() { cfg.Arrivals = o.Arrivals })
	pick("seed", func() { cfg.Seed = o.Seed })
	pick("in-flight", func() { cfg.InFlight = o.InFlight })
	pick("payload", func() { cfg.PayloadBytes = o.PayloadBytes })
	pick("leases", func() { cfg.Leases = o.Leases })
	pick("renew-workers", func() { cfg.RenewWorkers = o.RenewWorkers })
	pick("recovery-jobs", func() { cfg.RecoveryJobs = o.RecoveryJobs })
	pick("lease-ttl", func() { cfg.LeaseTTL = o.LeaseTTL })
	pick("scan-interval", func() { cfg.ScanInterval = o.ScanInterval })
	pick("signal-wait", func() { cfg.SignalWait = o.SignalWait })
	pick("dag-width", func() { cfg.DagWidth = o.DagWidth })
	pick("dag-depth", func() { cfg.DagDepth = o.DagDepth })
	pick("dag-rate", func() { cfg.DagRate = o.DagRate })
	pick("admission-rate", func() { cfg.AdmissionRate = o.AdmissionRate })
	pick("admission-limit", func() { cfg.AdmissionLimit = o.AdmissionLimit })
	pick("admission-window", func() { cfg.AdmissionWindow = o.AdmissionWindow })
	pick("admission-overload", func() { cfg.AdmissionOverload = o.AdmissionOverload })
	pick("ab-rounds", func() { cfg.ABRounds = o.ABRounds })
	pick("durability", func() { cfg.Durability = o.Durability })
	pick("pipeline-depth", func() { cfg.PipelineDepth = o.PipelineDepth })
	pick("pipeline-conns", func() { cfg.PipelineConns = o.PipelineConns })
	pick("pause", func() { cfg.Pause = o.Pause })
	pick("plant-renew-delay", func() { cfg.PlantRenewDelay = o.PlantRenewDelay })
	pick("plant-claim-ping", func() { cfg.PlantClaimPing = o.PlantClaimPing })
	pick("peer-rounds", func() { cfg.Peers.Rounds = o.Peers.Rounds })
	pick("peer-warmup", func() { cfg.Peers.Warmup = o.Peers.Warmup })
	pick("peer-duration", func() { cfg.Peers.Duration = o.Peers.Duration })
	pick("peer-idle-rate", func() { cfg.Peers.IdleRate = o.Peers.IdleRate })
	pick("peer-idle-duration", func() { cfg.Peers.IdleDuration = o.Peers.IdleDuration })
	pick("peer-asynq-check-interval", func() { cfg.Peers.AsynqCheckInterval = o.Peers.AsynqCheckInterval })
	pick("peers-dir", func() { cfg.Peers.Dir = o.Peers.Dir })
	pick("peer-node", func() { cfg.Peers.Node = o.Peers.Node })
	if set["peer-systems"] {
		cfg.Peers.Systems = nil
		for _, s := range strings.Split(f.peerSystems, ",") {
			if s = strings.TrimSpace(s); s != "" {
				cfg.Peers.Systems = append(cfg.Peers.Systems, s)
			}
		}
		if len(cfg.Peers.Systems) == 0 {
			return cfg, fmt.Errorf("--peer-systems: none given")
		}
	}
	if set["peer-in-flight"] {
		ns, err := bench.ParseInts(f.peerInFlight)
		if err != nil || len(ns) == 0 {
			return cfg, fmt.Errorf("--peer-in-flight: %q: want comma-separated integers", f.peerInFlight)
		}
		cfg.Peers.InFlight = ns
	}
	if set["partitions"] {
		ps, err := bench.ParseInts(f.partitions)
		if err != nil || len(ps) != 1 {
			return cfg, fmt.Errorf("--partitions: one integer, got %q", f.partitions)
		}
		cfg.Partitions = ps[0]
	}
	if set["sweep-partitions"] {
		ps, err := bench.ParseInts(f.sweep)
		if err != nil || len(ps) == 0 {
			return cfg, fmt.Errorf("--sweep-partitions: %v", err)
		}
		cfg.SweepPartitions = ps
	}
	switch {
	case sweep:
		cfg.Scenarios = []string{bench.ScenarioPartitionSweep}
	case f.scenarios != "":
		cfg.Scenarios = nil
		for _, s := range strings.Split(f.scenarios, ",") {
			if s = strings.TrimSpace(s); s != "" {
				cfg.Scenarios = append(cfg.Scenarios, s)
			}
		}
	case set["durability"]:
		cfg.Scenarios = []string{bench.ScenarioE2E, bench.ScenarioDurability}
	}
	return cfg, cfg.Validate()
}

func joinInts(ns []int) string {
	ss := make([]string, len(ns))
	for i, n := range ns {
		ss[i] = strconv.Itoa(n)
	}
	return strings.Join(ss, ",")
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer, sweep bool) error {
	name, syn := "run", "run [flags]"
	if sweep {
		name, syn = "sweep", "sweep [flags]"
	}
	fs := newFlagSet(name, syn, stderr)
	var rf runFlags
	var tf targetFlags
	rf.register(fs, sweep)
	tf.register(fs)
	if done, err := parseFlags(fs, args, stdout); done || err != nil {
		return err
	}
	cfg, err := rf.config(fs, sweep)
	if err != nil {
		return err
	}
	return rf.measure(ctx, cfg, &tf, stdout, stderr, func(ctx context.Context, runner *bench.Runner) (*bench.Report, error) {
		rep, err := runner.Run(ctx)
		if err == nil && rf.calibrate {
			rep.Calibration, err = runner.Calibrate(ctx, rf.valkeyBenchmark, rf.slice)
		}
		return rep, err
	})
}

// measure is run's, sweep's and capacity's common part: the output
// directory, profiles, the target and a runner for body, then the reports,
// the summary and the exit status.
func (rf *runFlags) measure(ctx context.Context, cfg bench.Config, tf *targetFlags, stdout, stderr io.Writer,
	body func(context.Context, *bench.Runner) (*bench.Report, error)) error {
	out := rf.out
	if out == "" {
		out = filepath.Join("bench-results", time.Now().Format("20060102-150405"))
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	profDir := rf.profileDir
	if profDir != "" && !filepath.IsAbs(profDir) {
		profDir = filepath.Join(out, profDir)
	}
	prof, err := profiles.Start(profiles.Config{Dir: profDir, PyroscopeURL: rf.pyroscope, AppName: "ffbench",
		Tags: map[string]string{"profile": cfg.Profile}})
	if err != nil {
		return err
	}
	defer prof.Stop()

	tf.replicas = cfg.ReplicasWanted()
	t, prog, err := tf.openWithProgress(ctx, stderr, rf.quiet)
	if err != nil {
		return err
	}
	defer t.Close()
	rep, err := body(ctx, bench.NewRunner(cfg, t, prog))
	prog.Close()
	if err != nil {
		return err
	}
	files, perr := prof.Stop()
	if perr != nil {
		fmt.Fprintln(stderr, "ffbench: profiles:", perr)
	}
	for kind, path := range files {
		if rep.Profiles == nil {
			rep.Profiles = map[string]string{}
		}
		rep.Profiles[kind] = relativeTo(out, path)
	}
	if err := writeReports(rep, out); err != nil {
		return err
	}
	fmt.Fprint(stdout, bench.SummaryTable(rep))
	fmt.Fprintf(stdout, "\nreports: %s/report.{json,md,html}, %s/bench.txt\n", out, out)
	if !rep.OK() {
		return fmt.Errorf("%w: correctness", errFailed)
	}
	if rep.Calibration != nil && !rep.Calibration.OK {
		fmt.Fprintln(stdout, "calibration outside tolerance")
		return fmt.Errorf("%w: calibration", errFailed)
	}
	return missed(rep, rf.failOnMiss)
}

// missed is errMissed when failOnMiss is set and rep missed a target.
func missed(rep *bench.Report, failOnMiss bool) error {
	if m := rep.Missed(); failOnMiss && len(m) > 0 {
		return fmt.Errorf("%w: %d of %d targets missed (--fail-on-miss)", errMissed, len(m), len(bench.Goals(rep)))
	}
	return nil
}

// relativeTo returns path relative to dir, with slashes: the report links a
// profile only by a path relative to the report (an absolute --profile-dir
// under a relative --out included); path as it is when there is none.
func relativeTo(dir, path string) string {
	absDir, err1 := filepath.Abs(dir)
	abs, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return path
	}
	rel, err := filepath.Rel(absDir, abs)
	if err != nil {
		return path
	}
	return filepath.ToSlash(rel)
}

func writeReports(rep *bench.Report, dir string) error {
	if err := rep.WriteJSON(filepath.Join(dir, "report.json")); err != nil {
		return err
	}
	for name, body := range map[string]string{"report.md": bench.Markdown(rep), "report.html": bench.HTML(rep),
		"bench.txt": bench.BenchLines(rep)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func cmdReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("report", "report --in report.json [--out DIR]", stderr)
	in := fs.String("in", "", "the report.json to re-render (required)")
	out := fs.String("out", "", "directory for report.md, report.html and bench.txt (default: next to --in)")
	failOnMiss := fs.Bool("fail-on-miss", false, "exit 3 when the report misses a target (the summary's MISS lines)")
	if done, err := parseFlags(fs, args, stdout); done || err != nil {
		return err
	}
	if *in == "" {
		fs.Usage()
		return errors.New("report: --in is required")
	}
	rep, err := bench.ReadReport(*in)
	if err != nil {
		return err
	}
	dir := *out
	if dir == "" {
		dir = filepath.Dir(*in)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, body := range map[string]string{"report.md": bench.Markdown(rep), "report.html": bench.HTML(rep),
		"bench.txt": bench.BenchLines(rep)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprint(stdout, bench.SummaryTable(rep))
	fmt.Fprintf(stdout, "\nreports: %s/report.{md,html}, %s/bench.txt\n", dir, dir)
	return missed(rep, *failOnMiss)
}

func cmdGate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gate", "gate --baseline ci/baseline.json --report report.json [flags]", stderr)
	baseline := fs.String("baseline", "ci/baseline.json", "the committed baseline")
	report := fs.String("report", "", "the report.json to judge (required)")
	classes := fs.String("class", "", "gate only these metric classes, comma separated: counter, ratio (default all)")
	remeasure := fs.Int("remeasure", 2, "re-measure a failing metric up to this many times before failing\n(the scenario runs again on --addr or a throwaway server); 0: judge the report alone")
	update := fs.String("update", "", "write a new baseline to this file: the baseline's metrics and tolerances\nwith the report's values; no gating")
	quiet := fs.Bool("quiet", false, "no progress line while re-measuring")
	var tf targetFlags
	tf.register(fs)
	if done, err := parseFlags(fs, args, stdout); done || err != nil {
		return err
	}
	if *report == "" {
		fs.Usage()
		return errors.New("gate: --report is required")
	}
	bl, err := bench.ReadBaseline(*baseline)
	if err != nil {
		return err
	}
	rep, err := bench.ReadReport(*report)
	if err != nil {
		return err
	}
	if *update != "" {
		nb, err := bench.NewBaseline(bl, rep)
		if err != nil {
			return err
		}
		if err := nb.WriteJSON(*update); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s from %s (%s)\n", *update, *report, nb.Source)
		return nil
	}
	var cls []string
	for _, c := range strings.Split(*classes, ",") {
		if c = strings.TrimSpace(c); c != "" {
			if c != bench.ClassCounter && c != bench.ClassRatio {
				return fmt.Errorf("--class %q: want counter or ratio", c)
			}
			cls = append(cls, c)
		}
	}
	opts := bench.GateOptions{Classes: cls, Remeasure: *remeasure}
	first := bench.Compare(bl, rep, cls)
	needRemeasure := false
	for _, c := range first {
		if !c.Pass && !c.Missing {
			needRemeasure = true
		}
	}
	if needRemeasure && *remeasure > 0 {
		t, prog, err := tf.openWithProgress(ctx, stderr, *quiet)
		if err != nil {
			return err
		}
		defer t.Close()
		opts.Runner = bench.NewRunner(rep.Config, t, prog)
		defer prog.Close()
	}
	g, err := bench.Gate(ctx, bl, rep, opts)
	if err != nil {
		return err
	}
	if opts.Runner != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	fmt.Fprintf(stdout, "gate: %s against %s (%s)\n", *report, *baseline, bl.Source)
	for _, c := range g.Checks {
		fmt.Fprintln(stdout, "  "+c.String())
	}
	for _, c := range g.Correctness {
		fmt.Fprintln(stdout, "  FAIL correctness: "+c)
	}
	if !g.Pass() {
		regs := g.Regressions()
		fmt.Fprintf(stdout, "gate FAILED: %d regression(s)", len(regs))
		if len(g.Correctness) > 0 {
			fmt.Fprint(stdout, " and a correctness failure")
		}
		fmt.Fprintln(stdout)
		for _, c := range regs {
			fmt.Fprintln(stdout, "  regressed: "+c.String())
		}
		return fmt.Errorf("%w: gate", errFailed)
	}
	fmt.Fprintf(stdout, "gate passed: %d checks\n", len(g.Checks))
	return nil
}

func cmdCalibrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The flags run has are named as in run: --pipeline-conns,
	// --pipeline-depth, --partitions, and run --calibrate's --slice and
	// --valkey-benchmark.
	fs := newFlagSet("calibrate", "calibrate [flags]", stderr)
	d := fs.Duration("slice", 250*time.Millisecond, "length of each turn: per figure, ffbench and valkey-benchmark take 15 turns of this length each")
	conns := fs.Int("pipeline-conns", 4, "pipelined mode: connections (valkey-benchmark -c)")
	depth := fs.Int("pipeline-depth", 16, "pipelined mode: commands per pipelined batch (valkey-benchmark -P)")
	partitions := fs.Int("partitions", 16, "partition count of the deployment holding the renewed lease")
	vb := fs.String("valkey-benchmark", "valkey-benchmark", "valkey-benchmark binary")
	quiet := fs.Bool("quiet", false, "no progress line")
	var tf targetFlags
	tf.register(fs)
	if done, err := parseFlags(fs, args, stdout); done || err != nil {
		return err
	}
	cfg, _ := bench.Profile("quick")
	cfg.PipelineConns, cfg.PipelineDepth, cfg.Partitions = *conns, *depth, *partitions
	if err := cfg.Validate(); err != nil {
		return err
	}
	t, prog, err := tf.openWithProgress(ctx, stderr, *quiet)
	if err != nil {
		return err
	}
	defer t.Close()
	cal, err := bench.NewRunner(cfg, t, prog).Calibrate(ctx, *vb, *d)
	prog.Close()
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, bench.CalibrationTable(cal))
	if !cal.OK {
		fmt.Fprintln(stdout, "calibration: some figures are outside tolerance")
		return fmt.Errorf("%w: calibration", errFailed)
	}
	fmt.Fprintln(stdout, "calibration: ffbench agrees with valkey-benchmark")
	return nil
}

func cmdCapacity(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("capacity", "capacity --slo 'claim p99 <= 5ms' [flags]\n\n"+
		"Searches the highest open-loop arrival rate meeting the SLO on the target: a ramp\n"+
		"(×--ramp-factor per step while the SLO holds), then bisection until --resolution,\n"+
		"each step a fresh deployment measured for --step-duration after --step-warmup;\n"+
		"the whole search runs --repetitions times and the report gives the found rates'\n"+
		"median and range, with every step and a chart of rate against the SLO's percentile.\n"+
		"The fleet is the quick profile's unless the flags below say otherwise.\n\n"+
		indent(bench.SLOGrammar)+"\n\nFlags:", stderr)
	var rf runFlags
	var tf targetFlags
	rf.registerFleet(fs)
	tf.register(fs)
	sloText := fs.String("slo", "", "the objective, e.g. 'claim p99 <= 5ms' (required; grammar above)")
	var o bench.CapacityOptions
	fs.IntVar(&o.Repetitions, "repetitions", bench.CapacityRepetitionsDefault, "whole searches; the report gives the found rates' median and range")
	fs.DurationVar(&o.Step, "step-duration", bench.CapacityStepDefault, "each step's measured window, at least (lengthened at low rates until the SLO's percentile\nrests on about ten samples above it, up to --max-step-duration)")
	fs.DurationVar(&o.MaxStep, "max-step-duration", bench.CapacityMaxStepDefault, "the longest a step's window is lengthened to")
	fs.DurationVar(&o.Warmup, "step-warmup", bench.CapacityWarmupDefault, "warm-up before each step's window; not measured")
	fs.Float64Var(&o.StartRate, "start-rate", 0, fmt.Sprintf("the ramp's first arrival rate per second; 0: %g of the closed-loop e2e capacity measured first", bench.CapacityStartFraction))
	fs.Float64Var(&o.MaxRate, "max-rate", 0, fmt.Sprintf("the ramp's ceiling; a search meeting the SLO there reports \"at least\" it;\n0: %g× the closed-loop e2e capacity", bench.CapacityMaxFactor))
	fs.Float64Var(&o.RampFactor, "ramp-factor", bench.CapacityRampFactorDefault, "the ramp multiplies the rate by this per step, above 1")
	fs.Float64Var(&o.Resolution, "resolution", bench.CapacityResolutionDefault, "bisection ends when the rate that missed is within this fraction above the rate that met\nthe SLO, in (0, 1)")
	if done, err := parseFlags(fs, args, stdout); done || err != nil {
		return err
	}
	if *sloText == "" {
		fs.Usage()
		return errors.New("capacity: --slo is required (e.g. --slo 'claim p99 <= 5ms')")
	}
	slo, err := bench.ParseSLO(*sloText)
	if err != nil {
		return fmt.Errorf("--slo: %w", err)
	}
	o.SLO = slo
	if o.MaxStep < o.Step && fs.Lookup("max-step-duration").Value.String() == fs.Lookup("max-step-duration").DefValue {
		o.MaxStep = o.Step // a long --step-duration alone raises the ceiling with it
	}
	if err := o.Validate(); err != nil {
		return err
	}
	rf.profile = "quick"
	cfg, err := rf.config(fs, false)
	if err != nil {
		return err
	}
	cfg.Profile = "capacity"
	cfg.Scenarios = nil
	return rf.measure(ctx, cfg, &tf, stdout, stderr, func(ctx context.Context, runner *bench.Runner) (*bench.Report, error) {
		return runner.Capacity(ctx, o)
	})
}

// indent indents every line of s by two spaces.
func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
