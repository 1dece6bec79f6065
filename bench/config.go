package bench

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scenario names.
const (
	ScenarioClaimLatency   = "claim-latency"
	ScenarioRenew          = "renew-throughput"
	ScenarioE2E            = "e2e"
	ScenarioPartitionSweep = "partition-sweep"
	ScenarioClaimPath      = "claim-path"
	ScenarioClaimHandoff   = "claim-handoff"
	ScenarioRecovery       = "recovery"
)

// ScenarioNames lists the scenarios in report order.
var ScenarioNames = []string{ScenarioE2E, ScenarioClaimLatency, ScenarioRenew, ScenarioPartitionSweep,
	ScenarioClaimPath, ScenarioClaimHandoff, ScenarioRecovery}

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
	// of the capacity e2e measured (closed loop) in the same run.
	Rate         float64 `json:"rate"`
	RateFraction float64 `json:"rate_fraction"`
	// Arrivals: "poisson" or "constant".
	Arrivals string `json:"arrivals"`
	Seed     uint64 `json:"seed"`
	// InFlight is the closed loop's outstanding submissions.
	InFlight     int `json:"in_flight"`
	PayloadBytes int `json:"payload_bytes"`
	// Leases is renew-throughput's L; RenewWorkers the fleet holding them.
	Leases       int `json:"leases"`
	RenewWorkers int `json:"renew_workers"`
	// RecoveryJobs are abandoned by crashed workers; LeaseTTL and
	// ScanInterval set how fast they come back.
	RecoveryJobs int           `json:"recovery_jobs"`
	LeaseTTL     time.Duration `json:"lease_ttl"`
	ScanInterval time.Duration `json:"scan_interval"`
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
}

// Profiles are the named starting configs.
var Profiles = map[string]Config{
	// smoke: seconds per scenario; CI runs it for correctness and counters.
	"smoke": {
		Scenarios:  slices.Clone(ScenarioNames),
		Partitions: 16, SweepPartitions: []int{1, 16}, Workers: 2, Concurrency: 32, ClaimMode: "direct",
		Warmup: 300 * time.Millisecond, Duration: time.Second, Drain: 5 * time.Second,
		RateFraction: 0.5, Arrivals: "poisson", Seed: 1, InFlight: 64, PayloadBytes: 64,
		Leases: 2000, RenewWorkers: 2, RecoveryJobs: 40, LeaseTTL: 600 * time.Millisecond,
		ScanInterval: 100 * time.Millisecond, ABRounds: 1, PipelineDepth: 16, PipelineConns: 4,
	},
	// quick: make bench; under 90 s on 2 cores.
	"quick": {
		Scenarios:  []string{ScenarioE2E, ScenarioPartitionSweep, ScenarioClaimPath, ScenarioRecovery},
		Partitions: 16, SweepPartitions: []int{1, 4, 16, 64, 256, 1024}, Workers: 2, Concurrency: 32,
		ClaimMode: "direct", Warmup: 300 * time.Millisecond, Duration: 1200 * time.Millisecond, Drain: 5 * time.Second,
		RateFraction: 0.5, Arrivals: "poisson", Seed: 1, InFlight: 64, PayloadBytes: 64,
		Leases: 10000, RenewWorkers: 4, RecoveryJobs: 200, LeaseTTL: time.Second,
		ScanInterval: 250 * time.Millisecond, ABRounds: 2, PipelineDepth: 16, PipelineConns: 4,
	},
	// gate: what make perf-gate measures: every gated figure at P=16.
	"gate": {
		Scenarios:  []string{ScenarioE2E, ScenarioClaimLatency, ScenarioRenew, ScenarioClaimPath, ScenarioClaimHandoff, ScenarioRecovery},
		Partitions: 16, SweepPartitions: []int{16}, Workers: 2, Concurrency: 32, ClaimMode: "direct",
		Warmup: 500 * time.Millisecond, Duration: 2 * time.Second, Drain: 5 * time.Second,
		RateFraction: 0.5, Arrivals: "poisson", Seed: 1, InFlight: 64, PayloadBytes: 64,
		Leases: 10000, RenewWorkers: 4, RecoveryJobs: 200, LeaseTTL: time.Second,
		ScanInterval: 250 * time.Millisecond, ABRounds: 2, PipelineDepth: 16, PipelineConns: 4,
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
	case c.Duration <= 0 || c.Warmup < 0 || c.Drain < 0:
		return fmt.Errorf("duration must be positive, warmup and drain not negative")
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
