package bench

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Scenario names.
const (
	ScenarioClaimLatency     = "claim-latency"
	ScenarioRenew            = "renew-throughput"
	ScenarioE2E              = "e2e"
	ScenarioPartitionSweep   = "partition-sweep"
	ScenarioClaimPath        = "claim-path"
	ScenarioClaimHandoff     = "claim-handoff"
	ScenarioRecovery         = "recovery"
	ScenarioSignalResume     = "signal-resume"
	ScenarioStreamAppend     = "stream-append"
	ScenarioCompletionNotify = "completion-notify"
	ScenarioFlowDAG          = "flow-dag"
	ScenarioAdmission        = "admission"
	ScenarioPeers            = "peers"
	ScenarioDurability       = "durability"
	ScenarioClusterClaim     = "cluster-claim"
)

// ScenarioNames lists the scenarios in report order.
var ScenarioNames = []string{ScenarioE2E, ScenarioClaimLatency, ScenarioRenew, ScenarioPartitionSweep,
	ScenarioClaimPath, ScenarioClaimHandoff, ScenarioRecovery, ScenarioSignalResume, ScenarioStreamAppend,
	ScenarioCompletionNotify, ScenarioFlowDAG, ScenarioAdmission, ScenarioDurability, ScenarioClusterClaim, ScenarioPeers}

// ownScenarios are the scenarios that measure FlowFabric alone on any
// server: all but peers, which runs other systems (and Node), durability,
// which needs replicas, and cluster-claim, which starts its own cluster;
// none is in a profile.
func ownScenarios() []string {
	return slices.DeleteFunc(slices.Clone(ScenarioNames), func(s string) bool {
		return s == ScenarioPeers || s == ScenarioDurability || s == ScenarioClusterClaim
	})
}

// orDefault is v when it is positive, else def: a Config field's value,
// its zero (unset) taking the scenario's default.
func orDefault[T int | float64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Config is one run's parameters. Profiles fill it; flags override fields.
// It is recorded in the report, so a gate can re-measure with the same one.
type Config struct {
	Profile   string   `json:"profile"`
	Scenarios []string `json:"scenarios"`
	// Partitions is the partition count of every scenario but the sweep.
	Partitions int `json:"partitions"`
	// SweepPartitions are the partition counts of partition-sweep.
	SweepPartitions []int `json:"sweep_partitions"`
	// Workers is the fleet size; Concurrency each worker's MaxConcurrency.
	Workers     int `json:"workers"`
	Concurrency int `json:"concurrency"`
	// DistinctWorkerIDs gives each fleet worker its own WorkerID instead of
	// one shared by the fleet (a deployment's workers share one).
	DistinctWorkerIDs bool `json:"distinct_worker_ids,omitempty"`
	// NoArrivals connects the fleets' backends with arrivals off
	// (valkeybackend.Options.DisableArrivals): idle workers learn of new
	// work from readiness pushes alone. Default false.
	NoArrivals bool `json:"no_arrivals,omitempty"`
	// Otel names the instrumentation the e2e and claim-latency pipelines
	// run under ("" = none), for the report; the
	// observers are WorkerObserver and ClientObserver (cmd/ffbench --otel
	// builds them with ffotel).
	Otel string `json:"otel,omitempty"`
	// WorkerObserver and ClientObserver, when set, watch the e2e and
	// claim-latency pipelines' workers and producers
	// (sdk.WorkerConfig.Observer, sdk.ClientOptions.Observer). Default nil.
	WorkerObserver sdk.WorkerObserver `json:"-"`
	ClientObserver sdk.ClientObserver `json:"-"`
	// NoHandoff stops the fleets' idle workers from offering their slots
	// (sdk.WorkerConfig.DisableClaimOffers): a new execution is claimed
	// after its arrival push instead of being handed over by its create.
	// Default false.
	NoHandoff bool `json:"no_handoff,omitempty"`
	// ClaimMode of the workers outside claim-path: "direct" or "fused".
	ClaimMode string `json:"claim_mode"`
	// Warmup and Drain are excluded from every measurement; Duration is the
	// measured window.
	Warmup   time.Duration `json:"warmup"`
	Duration time.Duration `json:"duration"`
	Drain    time.Duration `json:"drain"`
	// Rate is the open-loop arrival rate per second; 0 means RateFraction
	// of the capacity e2e measured (closed loop) in the same run
	// (signal-resume: SignalRateDefault; stream-append, frames per second
	// of its latency part: StreamRateDefault; completion-notify:
	// NotifyRateDefault; flow-dag does not use it: see DagRate).
	Rate         float64 `json:"rate"`
	RateFraction float64 `json:"rate_fraction"`
	// Arrivals: "poisson" or "constant".
	Arrivals string `json:"arrivals"`
	Seed     uint64 `json:"seed"`
	// InFlight is the closed loop's outstanding submissions.
	InFlight int `json:"in_flight"`
	// PayloadBytes is each execution's payload (stream-append: each
	// frame's).
	PayloadBytes int `json:"payload_bytes"`
	// Leases is renew-throughput's L; RenewWorkers the fleet holding them.
	Leases       int `json:"leases"`
	RenewWorkers int `json:"renew_workers"`
	// RecoveryJobs are abandoned by crashed workers; LeaseTTL and
	// ScanInterval set how fast they come back.
	RecoveryJobs int           `json:"recovery_jobs"`
	LeaseTTL     time.Duration `json:"lease_ttl"`
	ScanInterval time.Duration `json:"scan_interval"`
	// SignalWait is signal-resume's fixed wait: each execution's signal is
	// due this long after the execution's intended submit time, and its
	// resume latency is timed from then. 0: SignalWaitDefault.
	SignalWait time.Duration `json:"signal_wait,omitempty"`
	// DagWidth is flow-dag's fan-out N (its 1 → N → 1 DAGs), DagDepth the
	// members of its chains, DagRate the DAGs per second of each shape
	// (open loop). 0: FlowWidthDefault, FlowDepthDefault, FlowRateDefault.
	DagWidth int     `json:"dag_width,omitempty"`
	DagDepth int     `json:"dag_depth,omitempty"`
	DagRate  float64 `json:"dag_rate,omitempty"`
	// AdmissionRate is admission's A/B open-loop arrivals per second (a
	// lane claimed through a quota that never binds vs the same lane
	// without a policy). AdmissionLimit per AdmissionWindow is its rate
	// check's quota, under AdmissionOverload times that rate offered.
	// 0: AdmissionRateDefault, AdmissionLimitDefault,
	// AdmissionWindowDefault, AdmissionOverloadDefault.
	AdmissionRate     float64       `json:"admission_rate,omitempty"`
	AdmissionLimit    int           `json:"admission_limit,omitempty"`
	AdmissionWindow   time.Duration `json:"admission_window,omitempty"`
	AdmissionOverload float64       `json:"admission_overload,omitempty"`
	// Durability is the acknowledged-write setting the durability
	// scenario compares with none: "waitN" (valkeybackend
	// Options.WaitReplicas N). An embedded target starts N replicas of its
	// server for it. Empty: "wait1" when the durability scenario runs.
	Durability string `json:"durability,omitempty"`
	// ABRounds is how many direct/fused rounds claim-path interleaves.
	ABRounds int `json:"ab_rounds"`
	// PipelineDepth and PipelineConns shape the raw pipelined anchor.
	PipelineDepth int `json:"pipeline_depth"`
	PipelineConns int `json:"pipeline_conns"`
	// Pause, when set, freezes the server (CLIENT PAUSE) for this long in
	// the middle of e2e's open-loop window: the stall must show in its tail.
	Pause time.Duration `json:"pause,omitempty"`
	// Planted regressions (hidden flags) for testing the gate.
	PlantRenewDelay time.Duration `json:"plant_renew_delay,omitempty"`
	PlantClaimPing  bool          `json:"plant_claim_ping,omitempty"`
	// Peers configures the peers scenario (asynq and BullMQ beside
	// FlowFabric on the same server).
	Peers PeersConfig `json:"peers"`
}

// PeersConfig is the peers scenario's part of a Config. Profile fills the
// zero fields with the ...Default values below.
type PeersConfig struct {
	// Systems to run, of flowfabric, asynq and bullmq. Default all three.
	Systems []string `json:"systems"`
	// Rounds each system runs at each in-flight setting and idle, the
	// systems' turns rotating from round to round (A B C, B C A, …).
	// Default 3.
	Rounds int `json:"rounds"`
	// InFlight are the closed-loop settings swept per system for
	// capacity; the best is reported. Default 64, 256, 1024.
	InFlight []int `json:"in_flight"`
	// Warmup precedes every peers run's window (a fresh Node process needs
	// about two seconds before its JIT has settled); Duration is the
	// closed-loop runs' window. Defaults 2s and 2s.
	Warmup   time.Duration `json:"warmup"`
	Duration time.Duration `json:"duration"`
	// IdleRate is the open-loop arrival rate of the idle pickup
	// measurement, jobs per second; IdleDuration its window. Defaults 100
	// and 3s.
	IdleRate     float64       `json:"idle_rate"`
	IdleDuration time.Duration `json:"idle_duration"`
	// AsynqCheckInterval is the short asynq Config.TaskCheckInterval its
	// second idle variant runs with (the first keeps asynq's default, 1s).
	// Default 1ms.
	AsynqCheckInterval time.Duration `json:"asynq_check_interval"`
	// Dir holds the pinned BullMQ install (npm, once, reused) and the
	// Node script. Default bench-results/.peers.
	Dir string `json:"dir"`
	// Node is the node binary. Default "node" (on PATH); BullMQ is
	// skipped with a note when it, or npm, is missing.
	Node string `json:"node"`
}

// Peer systems and the defaults of PeersConfig.
const (
	PeerFlowFabric = "flowfabric"
	PeerAsynq      = "asynq"
	PeerBullMQ     = "bullmq"

	PeerRoundsDefault             = 3
	PeerWarmupDefault             = 2 * time.Second
	PeerDurationDefault           = 2 * time.Second
	PeerIdleRateDefault           = 100
	PeerIdleDurationDefault       = 3 * time.Second
	PeerAsynqCheckIntervalDefault = time.Millisecond
	PeerDirDefault                = "bench-results/.peers"
	PeerNodeDefault               = "node"
)

// PeerSystems lists the peers scenario's systems in report order.
var PeerSystems = []string{PeerFlowFabric, PeerAsynq, PeerBullMQ}

// PeerInFlightDefault are the closed-loop settings swept per system.
var PeerInFlightDefault = []int{64, 256, 1024}

// fill sets the zero fields to their defaults.
func (p *PeersConfig) fill() {
	if len(p.Systems) == 0 {
		p.Systems = slices.Clone(PeerSystems)
	}
	if p.Rounds == 0 {
		p.Rounds = PeerRoundsDefault
	}
	if len(p.InFlight) == 0 {
		p.InFlight = slices.Clone(PeerInFlightDefault)
	}
	if p.Warmup == 0 {
		p.Warmup = PeerWarmupDefault
	}
	if p.Duration == 0 {
		p.Duration = PeerDurationDefault
	}
	if p.IdleRate == 0 {
		p.IdleRate = PeerIdleRateDefault
	}
	if p.IdleDuration == 0 {
		p.IdleDuration = PeerIdleDurationDefault
	}
	if p.AsynqCheckInterval == 0 {
		p.AsynqCheckInterval = PeerAsynqCheckIntervalDefault
	}
	if p.Dir == "" {
		p.Dir = PeerDirDefault
	}
	if p.Node == "" {
		p.Node = PeerNodeDefault
	}
}

func (p *PeersConfig) validate() error {
	for _, s := range p.Systems {
		if !slices.Contains(PeerSystems, s) {
			return fmt.Errorf("unknown peer system %q (have %s)", s, strings.Join(PeerSystems, ", "))
		}
	}
	for _, n := range p.InFlight {
		if n < 1 {
			return fmt.Errorf("peer in-flight %d: must be at least 1", n)
		}
	}
	switch {
	case p.Rounds < 1:
		return fmt.Errorf("peer rounds must be at least 1")
	case p.Warmup < 0 || p.Duration <= 0:
		return fmt.Errorf("peer warm-up must not be negative, peer duration positive")
	case p.IdleRate <= 0 || p.IdleDuration <= 0 || p.AsynqCheckInterval <= 0:
		return fmt.Errorf("peer idle rate, idle duration and asynq check interval must be positive")
	}
	return nil
}

// Profiles are the named starting configs.
var Profiles = map[string]Config{
	// smoke: seconds per scenario; CI runs it for correctness and counters.
	"smoke": {
		Scenarios:  ownScenarios(),
		Partitions: 16, SweepPartitions: []int{1, 16}, Workers: 2, Concurrency: 32, ClaimMode: "direct",
		Warmup: 300 * time.Millisecond, Duration: time.Second, Drain: 5 * time.Second,
		RateFraction: 0.5, Arrivals: "poisson", Seed: 1, InFlight: 64, PayloadBytes: 64,
		Leases: 2000, RenewWorkers: 2, RecoveryJobs: 40, LeaseTTL: 600 * time.Millisecond,
		ScanInterval: 100 * time.Millisecond, ABRounds: 1, PipelineDepth: 16, PipelineConns: 4,
		DagWidth: FlowWidthDefault, DagDepth: FlowDepthDefault, DagRate: FlowRateDefault,
	},
	// quick: make bench; under 90 s on 2 cores.
	"quick": {
		Scenarios:  []string{ScenarioE2E, ScenarioPartitionSweep, ScenarioClaimPath, ScenarioRecovery, ScenarioFlowDAG},
		Partitions: 16, SweepPartitions: []int{1, 4, 16, 64, 256, 1024}, Workers: 2, Concurrency: 32,
		ClaimMode: "direct", Warmup: 300 * time.Millisecond, Duration: 1200 * time.Millisecond, Drain: 5 * time.Second,
		RateFraction: 0.5, Arrivals: "poisson", Seed: 1, InFlight: 64, PayloadBytes: 64,
		Leases: 10000, RenewWorkers: 4, RecoveryJobs: 200, LeaseTTL: time.Second,
		ScanInterval: 250 * time.Millisecond, ABRounds: 2, PipelineDepth: 16, PipelineConns: 4,
		DagWidth: FlowWidthDefault, DagDepth: FlowDepthDefault, DagRate: FlowRateDefault,
	},
	// gate: what make perf-gate measures: every gated figure at P=16.
	"gate": {
		Scenarios: []string{ScenarioE2E, ScenarioClaimLatency, ScenarioRenew, ScenarioClaimPath, ScenarioClaimHandoff, ScenarioRecovery,
			ScenarioSignalResume, ScenarioStreamAppend, ScenarioCompletionNotify, ScenarioFlowDAG, ScenarioAdmission},
		Partitions: 16, SweepPartitions: []int{16}, Workers: 2, Concurrency: 32, ClaimMode: "direct",
		Warmup: 500 * time.Millisecond, Duration: 2 * time.Second, Drain: 5 * time.Second,
		RateFraction: 0.5, Arrivals: "poisson", Seed: 1, InFlight: 64, PayloadBytes: 64,
		Leases: 10000, RenewWorkers: 4, RecoveryJobs: 200, LeaseTTL: time.Second,
		ScanInterval: 250 * time.Millisecond, ABRounds: 2, PipelineDepth: 16, PipelineConns: 4,
		DagWidth: FlowWidthDefault, DagDepth: FlowDepthDefault, DagRate: FlowRateDefault,
	},
	// full: longer windows, more A/B rounds.
	"full": {
		Scenarios:  []string{ScenarioE2E, ScenarioPartitionSweep, ScenarioClaimPath, ScenarioClaimHandoff, ScenarioRecovery},
		Partitions: 16, SweepPartitions: []int{1, 4, 16, 64, 256, 1024}, Workers: 2, Concurrency: 32,
		ClaimMode: "direct", Warmup: 2 * time.Second, Duration: 10 * time.Second, Drain: 10 * time.Second,
		RateFraction: 0.5, Arrivals: "poisson", Seed: 1, InFlight: 64, PayloadBytes: 64,
		Leases: 10000, RenewWorkers: 4, RecoveryJobs: 1000, LeaseTTL: 2 * time.Second,
		ScanInterval: 250 * time.Millisecond, ABRounds: 5, PipelineDepth: 16, PipelineConns: 4,
	},
}

// ProfileNames lists the profiles.
var ProfileNames = []string{"smoke", "quick", "gate", "full"}

// Profile returns a copy of the named profile.
func Profile(name string) (Config, error) {
	c, ok := Profiles[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown profile %q (have %s)", name, strings.Join(ProfileNames, ", "))
	}
	c.Profile = name
	c.Scenarios = slices.Clone(c.Scenarios)
	c.SweepPartitions = slices.Clone(c.SweepPartitions)
	c.Peers.fill()
	return c, nil
}

// Validate checks the config.
func (c *Config) Validate() error {
	for _, s := range c.Scenarios {
		if !slices.Contains(ScenarioNames, s) {
			return fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(ScenarioNames, ", "))
		}
	}
	if c.ClaimMode != "direct" && c.ClaimMode != "fused" {
		return fmt.Errorf("claim mode %q: want direct or fused", c.ClaimMode)
	}
	if c.Arrivals != "poisson" && c.Arrivals != "constant" {
		return fmt.Errorf("arrivals %q: want poisson or constant", c.Arrivals)
	}
	for _, p := range append([]int{c.Partitions}, c.SweepPartitions...) {
		if p < 1 || p > 16384 {
			return fmt.Errorf("partition count %d out of range 1..16384", p)
		}
	}
	switch {
	case c.Workers < 1 || c.Concurrency < 1 || c.RenewWorkers < 1:
		return fmt.Errorf("workers, concurrency and renew workers must be at least 1")
	case c.Duration <= 0 || c.Warmup < 0 || c.Drain < 0 || c.SignalWait < 0:
		return fmt.Errorf("duration must be positive; warmup, drain and signal wait not negative")
	case c.Leases < c.RenewWorkers:
		return fmt.Errorf("leases (%d) below renew workers (%d)", c.Leases, c.RenewWorkers)
	case c.PayloadBytes < payloadHeader:
		return fmt.Errorf("payload must be at least %d bytes (sequence and intended time)", payloadHeader)
	case c.LeaseTTL < 10*time.Millisecond || c.ScanInterval <= 0:
		return fmt.Errorf("lease ttl must be at least 10ms and scan interval positive")
	case c.RateFraction <= 0 || c.RateFraction > 1:
		return fmt.Errorf("rate fraction must be in (0, 1]")
	case c.InFlight < 1 || c.ABRounds < 1 || c.RecoveryJobs < 1 || c.PipelineDepth < 1 || c.PipelineConns < 1:
		return fmt.Errorf("in-flight, A/B rounds, recovery jobs, pipeline depth and conns must be at least 1")
	}
	if err := c.validateFlows(); err != nil {
		return err
	}
	if err := c.validateAdmission(); err != nil {
		return err
	}
	if err := c.validateDurability(); err != nil {
		return err
	}
	if slices.Contains(c.Scenarios, ScenarioPeers) {
		return c.Peers.validate()
	}
	return nil
}

// ParseInts parses "1,4,16".
func ParseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}
