package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Report schema identifiers. SchemaVersion increases on an incompatible
// change; readers reject versions they do not know.
const (
	SchemaName    = "flowfabric.ffbench.report"
	SchemaVersion = 1
)

// Report is the outcome of one ffbench run: the environment, the same-run
// anchors, and one Result per scenario, variant and partition count.
type Report struct {
	Schema        string    `json:"schema"`
	SchemaVersion int       `json:"schema_version"`
	CreatedAt     time.Time `json:"created_at"`
	GitSHA        string    `json:"git_sha"`
	GoVersion     string    `json:"go_version"`
	OS            string    `json:"os"`
	Arch          string    `json:"arch"`
	Cores         int       `json:"cores"`
	GOMAXPROCS    int       `json:"gomaxprocs"`
	Valkey        Valkey    `json:"valkey"`
	Profile       string    `json:"profile"`
	Config        Config    `json:"config"`
	// Anchors are measured on the same server in the same run.
	Anchors     Anchors      `json:"anchors"`
	Results     []*Result    `json:"results"`
	Calibration *Calibration `json:"calibration,omitempty"`
	// Peers compares FlowFabric with asynq and BullMQ (the peers scenario).
	Peers *PeerComparison `json:"peers,omitempty"`
	// Capacity is ffbench capacity's search: the highest arrival rate
	// meeting an SLO, the report's headline when present.
	Capacity   *CapacityReport   `json:"capacity,omitempty"`
	Profiles   map[string]string `json:"profiles,omitempty"` // kind → file, relative to the report
	Lost       int64             `json:"lost"`
	Duplicated int64             `json:"duplicated"`
	Failures   []string          `json:"failures,omitempty"` // why the run failed (correctness)
	Notes      []string          `json:"notes,omitempty"`
	// Sizing is the sizing model's inputs and outputs from e2e's closed
	// loop (bench/sizing.go).
	Sizing   *Sizing `json:"sizing,omitempty"`
	ElapsedS float64 `json:"elapsed_s"`
}

// Valkey describes the server under test.
type Valkey struct {
	Version   string            `json:"version"`
	Topology  string            `json:"topology"` // "standalone" or "cluster"
	Primaries int               `json:"primaries"`
	Embedded  bool              `json:"embedded"` // started by ffbench (valkeytest)
	Settings  map[string]string `json:"settings,omitempty"`
}

// Anchors are the raw figures the SDK is compared with.
type Anchors struct {
	// SerialFCALL is the round trip of one ff_renew (one lease) sent
	// serially on one bare RESP connection: the floor of any FCALL.
	SerialFCALL *Summary `json:"serial_fcall"`
	// SerialFCALLValkeyGo is the same round trip through valkey-go (the
	// SDK's client) on its own connection: the client's share is the gap.
	SerialFCALLValkeyGo *Summary `json:"serial_fcall_valkey_go"`
	// SerialRate is 1/mean of SerialFCALL, calls per second.
	SerialRate float64 `json:"serial_rate"`
	// PipelinedRate is the same FCALL sent from PipelineConns connections,
	// PipelineDepth per pipelined batch: the raw ceiling of one FCALL.
	PipelinedRate float64 `json:"pipelined_rate"`
	PipelineConns int     `json:"pipeline_conns"`
	PipelineDepth int     `json:"pipeline_depth"`
}

// Result is one measured configuration.
type Result struct {
	Scenario   string  `json:"scenario"`
	Variant    string  `json:"variant,omitempty"`
	Partitions int     `json:"partitions"`
	Workers    int     `json:"workers"`
	DurationS  float64 `json:"duration_s"` // the measured window
	// OfferedRate is the schedule's arrival rate (open loop); AchievedRate
	// what completed per second in the window.
	OfferedRate  float64 `json:"offered_rate,omitempty"`
	AchievedRate float64 `json:"achieved_rate,omitempty"`
	Ops          int64   `json:"ops"` // operations in the window
	Unit         string  `json:"unit"`
	// Throughput is ops per second; RawCeiling the same operation sent raw
	// on the same server in the same run; Ratio their quotient.
	Throughput     float64 `json:"throughput"`
	RawCeiling     float64 `json:"raw_ceiling,omitempty"`
	RatioToCeiling float64 `json:"ratio_to_ceiling,omitempty"`
	// Latency by name: "claim" (intended arrival → lease), "handler_start",
	// "e2e" (intended arrival → completion landed), "claim_call" (a claim
	// call that claimed something), "send_lag" (intended arrival → its
	// submit sent: the producer's own delay), "submit" (the submit call),
	// "fcall_rtt" (one FCALL under the run's load), "crash_to_completion",
	// "renew_round".
	Latency          map[string]*Summary `json:"latency,omitempty"`
	CommandsPerOp    float64             `json:"commands_per_op"`
	FcallsPerOp      float64             `json:"fcalls_per_op"`
	ValkeyCPUPerOpUS float64             `json:"valkey_cpu_us_per_op"`
	// PrimaryCPUPerOpUS is ValkeyCPUPerOpUS per primary (Report.Sizing
	// names them), summing to it.
	PrimaryCPUPerOpUS []float64 `json:"primary_cpu_per_op_us,omitempty"`
	AllocsPerOp       float64   `json:"allocs_per_op"`
	// CommandMix is calls per op by command (script-internal included).
	CommandMix map[string]float64 `json:"command_mix,omitempty"`
	Lost       int64              `json:"lost"`
	Duplicated int64              `json:"duplicated"`
	Extra      map[string]float64 `json:"extra,omitempty"`
	Note       string             `json:"note,omitempty"`
}

// Key names the result for gates and benchmark lines:
// "scenario[/variant]/P=n".
func (r *Result) Key() string {
	k := r.Scenario
	if r.Variant != "" {
		k += "/" + r.Variant
	}
	return k + "/P=" + strconv.Itoa(r.Partitions)
}

// Metric returns a named figure of the result: a field ("throughput",
// "ratio_to_ceiling", "commands_per_op", …), "<latency>.<p50|p90|p99|p999|max|mean>",
// "cmd.<name>" (calls per op) or "extra.<name>".
func (r *Result) Metric(name string) (float64, bool) {
	switch name {
	case "throughput":
		return r.Throughput, true
	case "raw_ceiling":
		return r.RawCeiling, r.RawCeiling > 0
	case "ratio_to_ceiling":
		return r.RatioToCeiling, r.RawCeiling > 0
	case "achieved_rate":
		return r.AchievedRate, true
	case "commands_per_op":
		return r.CommandsPerOp, r.Ops > 0
	case "fcalls_per_op":
		return r.FcallsPerOp, r.Ops > 0
	case "valkey_cpu_us_per_op":
		return r.ValkeyCPUPerOpUS, r.Ops > 0
	case "allocs_per_op":
		return r.AllocsPerOp, r.Ops > 0
	case "lost":
		return float64(r.Lost), true
	case "duplicated":
		return float64(r.Duplicated), true
	}
	if c, ok := strings.CutPrefix(name, "cmd."); ok {
		if r.Ops <= 0 {
			return 0, false
		}
		return r.CommandMix[c], true // absent: 0 calls per op
	}
	if e, ok := strings.CutPrefix(name, "extra."); ok {
		v, ok := r.Extra[e]
		return v, ok
	}
	lat, pct, ok := strings.Cut(name, ".")
	if !ok {
		return 0, false
	}
	s := r.Latency[lat]
	if s == nil || s.Count == 0 {
		return 0, false
	}
	switch pct {
	case "p50":
		return s.P50, true
	case "p90":
		return s.P90, true
	case "p99":
		return s.P99, true
	case "p999":
		return s.P999, true
	case "max":
		return s.Max, true
	case "mean":
		return s.Mean, true
	}
	return 0, false
}

// Find returns the result with key, or nil.
func (rep *Report) Find(key string) *Result {
	for _, r := range rep.Results {
		if r.Key() == key {
			return r
		}
	}
	return nil
}

// Metric resolves "key:metric" (e.g. "renew-throughput/P=16:ratio_to_ceiling"),
// or "anchors:serial_rtt_p50".
func (rep *Report) Metric(spec string) (float64, bool) {
	key, metric, ok := strings.Cut(spec, ":")
	if !ok {
		return 0, false
	}
	if key == "anchors" {
		s := rep.Anchors.SerialFCALL
		switch {
		case s == nil:
			return 0, false
		case metric == "serial_rtt_p50":
			return s.P50, true
		case metric == "serial_rate":
			return rep.Anchors.SerialRate, true
		case metric == "pipelined_rate":
			return rep.Anchors.PipelinedRate, true
		}
		return 0, false
	}
	r := rep.Find(key)
	if r == nil {
		return 0, false
	}
	return r.Metric(metric)
}

// OK reports whether the run passed its correctness checks.
func (rep *Report) OK() bool { return rep.Lost == 0 && rep.Duplicated == 0 && len(rep.Failures) == 0 }

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadReport reads and checks a JSON report.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if rep.Schema != SchemaName {
		return nil, fmt.Errorf("%s: schema %q, want %q", path, rep.Schema, SchemaName)
	}
	if rep.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("%s: schema version %d, this ffbench reads %d", path, rep.SchemaVersion, SchemaVersion)
	}
	return &rep, nil
}

// sortResults orders results by scenario, variant, then partitions.
func (rep *Report) sortResults() {
	order := map[string]int{}
	for i, s := range ScenarioNames {
		order[s] = i
	}
	sort.SliceStable(rep.Results, func(i, j int) bool {
		a, b := rep.Results[i], rep.Results[j]
		if a.Scenario != b.Scenario {
			return order[a.Scenario] < order[b.Scenario]
		}
		if a.Partitions != b.Partitions {
			return a.Partitions < b.Partitions
		}
		return a.Variant < b.Variant
	})
}
