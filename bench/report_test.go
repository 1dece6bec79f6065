package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeReport is a report with every chart's data, made without a server.
func fakeReport() *Report {
	lat := func(scale int64) *Summary {
		h := newHist()
		for v := int64(1); v <= 2000; v++ {
			_ = h.RecordValue(scale + v*scale/100)
		}
		return Summarize(h)
	}
	rep := &Report{Schema: SchemaName, SchemaVersion: SchemaVersion, CreatedAt: time.Unix(1700000000, 0).UTC(),
		GitSHA: "0123456789abcdef", GoVersion: "go1.26", OS: "linux", Arch: "amd64", Cores: 2, GOMAXPROCS: 2,
		Valkey: Valkey{Version: "8.0.1", Topology: "standalone", Primaries: 1, Embedded: true}, Profile: "quick",
		Anchors: Anchors{SerialFCALL: lat(30), SerialRate: 30000, PipelinedRate: 200000, PipelineConns: 4, PipelineDepth: 16}}
	rep.Config, _ = Profile("quick")
	mix := map[string]float64{"fcall": 4, "zrange": 1, "hset": 5}
	for _, p := range []int{1, 4, 16, 64} {
		rep.Results = append(rep.Results,
			&Result{Scenario: ScenarioClaimLatency, Partitions: p, Workers: 2, DurationS: 2, OfferedRate: 1000,
				AchievedRate: 1000, Throughput: 1000, Ops: 2000, Unit: "jobs", CommandsPerOp: 10, FcallsPerOp: 4,
				CommandMix: mix, Latency: map[string]*Summary{"claim": lat(int64(100 * p)), "claim_call": lat(50), "fcall_rtt": lat(400)},
				Extra: map[string]float64{"claim_p50_over_loaded_rtt": float64(p) / 4}},
			&Result{Scenario: ScenarioRenew, Variant: "sdk", Partitions: p, Workers: 4, DurationS: 2, Ops: 100000,
				Unit: "renewals", Throughput: 50000 - float64(p*100), RawCeiling: 52000, RatioToCeiling: (50000 - float64(p*100)) / 52000,
				CommandsPerOp: 3, Latency: map[string]*Summary{"renew_round": lat(20000)}},
			&Result{Scenario: ScenarioRenew, Variant: "raw", Partitions: p, Workers: 4, DurationS: 2, Ops: 104000,
				Unit: "renewals", Throughput: 52000, CommandsPerOp: 3})
	}
	rep.Results = append(rep.Results,
		&Result{Scenario: ScenarioE2E, Variant: "closed", Partitions: 16, Workers: 2, DurationS: 2, Throughput: 4000,
			Ops: 8000, Unit: "jobs", RawCeiling: 200000, RatioToCeiling: 0.02, CommandsPerOp: 37, FcallsPerOp: 5, CommandMix: mix,
			Extra: map[string]float64{"fcall_utilisation": 0.1}},
		&Result{Scenario: ScenarioE2E, Variant: "open", Partitions: 16, Workers: 2, DurationS: 2, OfferedRate: 2000,
			Throughput: 2000, Ops: 4000, Unit: "jobs", CommandsPerOp: 38, CommandMix: mix,
			Latency: map[string]*Summary{"e2e": lat(900), "claim": lat(500), "submit": lat(100), "claim_call": lat(80)}},
		&Result{Scenario: ScenarioClaimPath, Variant: "direct", Partitions: 16, Workers: 2, Throughput: 4000, Ops: 8000,
			Unit: "jobs", CommandsPerOp: 38, CommandMix: mix, Latency: map[string]*Summary{"claim_call": lat(400)}, Extra: map[string]float64{}},
		&Result{Scenario: ScenarioClaimPath, Variant: "fused", Partitions: 16, Workers: 2, Throughput: 4400, Ops: 8800,
			Unit: "jobs", CommandsPerOp: 25, CommandMix: mix, Latency: map[string]*Summary{"claim_call": lat(300)},
			Extra: map[string]float64{"throughput_vs_direct": 1.1}},
		&Result{Scenario: ScenarioRecovery, Partitions: 16, Workers: 2, Throughput: 60, Ops: 200, Unit: "jobs",
			Latency: map[string]*Summary{"crash_to_completion": lat(700000)}},
		&Result{Scenario: ScenarioSignalResume, Partitions: 16, Workers: 2, DurationS: 2, OfferedRate: 100, Throughput: 100,
			Ops: 200, Unit: "cycles", CommandsPerOp: 60, FcallsPerOp: 5, CommandMix: mix,
			Latency: map[string]*Summary{"resume": lat(800), "signal": lat(600), "signal_lag": lat(80), "suspend": lat(1000), "fcall_rtt": lat(150)},
			Extra:   map[string]float64{"signal_wait_ms": 20, "resume_p50_over_loaded_rtt": 5.3, "signals_delivered": 200}},
		&Result{Scenario: ScenarioStreamAppend, Variant: "sdk", Partitions: 16, Workers: 2, DurationS: 2, Throughput: 300000,
			RawCeiling: 450000, RatioToCeiling: 0.667, Ops: 600000, Unit: "frames", CommandsPerOp: 1.012, FcallsPerOp: 0.004,
			ValkeyCPUPerOpUS: 2.3, CommandMix: map[string]float64{"fcall": 0.004, "xadd": 1}, Latency: map[string]*Summary{"append_round": lat(1400)},
			Extra: map[string]float64{"streams": 2, "payload_bytes": 64, "slices": 10, "slice_s": 0.2, "fcall_us_per_frame": 2.1,
				"xadd_us_per_frame": 0.8, "xadd_us_per_call": 0.8, "frames_per_append": 254, "client_cpu_us_per_frame": 1.3,
				"ratio_slice_min": 0.62, "ratio_slice_max": 0.71}},
		&Result{Scenario: ScenarioStreamAppend, Variant: "raw", Partitions: 16, Workers: 2, DurationS: 2, Throughput: 450000,
			Ops: 900000, Unit: "frames", CommandsPerOp: 1, ValkeyCPUPerOpUS: 1.5, CommandMix: map[string]float64{"xadd": 1},
			Latency: map[string]*Summary{"append_round": lat(1000)},
			Extra:   map[string]float64{"streams": 2, "xadd_us_per_frame": 0.77, "xadd_us_per_call": 0.77, "client_cpu_us_per_frame": 1.2}},
		&Result{Scenario: ScenarioStreamAppend, Variant: "tail", Partitions: 16, Workers: 2, DurationS: 2, OfferedRate: 1000, Throughput: 1000,
			Ops: 2000, Unit: "frames", CommandsPerOp: 4.4, FcallsPerOp: 0.86, CommandMix: map[string]float64{"fcall": 0.86, "xadd": 1, "xread": 0.86},
			Latency: map[string]*Summary{"append_tail": lat(400), "emit_lag": lat(90), "append_round": lat(220), "fcall_rtt": lat(120)},
			Extra:   map[string]float64{"frames_emitted": 2500, "frames_seen": 2500, "tail_p50_over_loaded_rtt": 3.3, "frames_per_append": 1.2}},
		&Result{Scenario: ScenarioCompletionNotify, Partitions: 16, Workers: 2, DurationS: 2, OfferedRate: 200, Throughput: 200,
			Ops: 400, Unit: "jobs", CommandsPerOp: 28, FcallsPerOp: 2, CommandMix: mix,
			Latency: map[string]*Summary{"notify": lat(600), "complete_start_to_return": lat(1000), "complete_call": lat(400),
				"wait_call": lat(3500), "fcall_rtt": lat(140)},
			Extra: map[string]float64{"work_ms": 2, "notify_p50_over_loaded_rtt": 4.3, "waiter_commands_per_wait": 9, "submitted": 400, "waits_returned": 400}},
		&Result{Scenario: ScenarioFlowDAG, Variant: "fanout", Partitions: 16, Workers: 2, DurationS: 2, OfferedRate: 2000, Throughput: 1400,
			Ops: 2800, Unit: "edges", CommandsPerOp: 13.5, FcallsPerOp: 0.1, CommandMix: mix,
			Latency: map[string]*Summary{"edge": lat(6000), "dag_completion": lat(20000), "flow_notify": lat(800), "submit": lat(5000), "fcall_rtt": lat(140)},
			Extra: map[string]float64{"dag_rate": 10, "members_per_dag": 102, "edges_per_dag": 200, "dags": 14, "edge_p50_over_loaded_rtt": 42,
				"fcalls_per_dag": 20, "commands_per_dag": 2700, "dags_submitted": 18, "dags_ended": 18, "members_submitted": 1836, "members_returned": 1836}},
		&Result{Scenario: ScenarioFlowDAG, Variant: "chain", Partitions: 16, Workers: 2, DurationS: 2, OfferedRate: 190, Throughput: 133,
			Ops: 266, Unit: "edges", CommandsPerOp: 35.3, FcallsPerOp: 1.08, CommandMix: mix,
			Latency: map[string]*Summary{"edge": lat(380), "dag_completion": lat(10000), "flow_notify": lat(450), "submit": lat(1200), "fcall_rtt": lat(130)},
			Extra: map[string]float64{"dag_rate": 10, "members_per_dag": 20, "edges_per_dag": 19, "dags": 14, "edge_p50_over_loaded_rtt": 2.9,
				"fcalls_per_dag": 20.5, "commands_per_dag": 670, "dags_submitted": 18, "dags_ended": 18, "members_submitted": 360, "members_returned": 360}},
		&Result{Scenario: ScenarioAdmission, Variant: admQuota, Partitions: 16, Workers: 2, DurationS: 2.4, OfferedRate: 200, Throughput: 200,
			Ops: 480, Unit: "jobs", CommandsPerOp: 45, FcallsPerOp: 6.7, CommandMix: map[string]float64{"fcall": 6.7, "zremrangebyscore": 1.02},
			Latency: map[string]*Summary{"claim": lat(2000), "e2e": lat(2600), "fcall_rtt": lat(150)},
			Extra: map[string]float64{"rounds": 2, "capacity": 1500, "capacity_min": 1400, "capacity_max": 1600, "capacity_vs_plain": 0.2,
				"claim_p50_vs_plain": 2.5, "claim_p99_vs_plain": 3, "quota_concurrency": 640, "submitted": 600, "completed": 600}},
		&Result{Scenario: ScenarioAdmission, Variant: admPlain, Partitions: 16, Workers: 2, DurationS: 2.4, OfferedRate: 200, Throughput: 200,
			Ops: 480, Unit: "jobs", CommandsPerOp: 18, FcallsPerOp: 2, CommandMix: mix,
			Latency: map[string]*Summary{"claim": lat(800), "e2e": lat(1200), "fcall_rtt": lat(140)},
			Extra: map[string]float64{"rounds": 2, "capacity": 7500, "capacity_min": 7000, "capacity_max": 8000, "handoffs": 480, "handoff_share": 1,
				"submitted": 600, "completed": 600}},
		&Result{Scenario: ScenarioAdmission, Variant: admRate, Partitions: 16, Workers: 2, DurationS: 3, OfferedRate: 1000, Throughput: 200,
			Ops: 600, Unit: "jobs", CommandsPerOp: 50, FcallsPerOp: 8, CommandMix: mix, Latency: map[string]*Summary{"wait": lat(1500000)},
			Extra: map[string]float64{"limit": 50, "window_ms": 200, "limit_rate": 250, "overload": 4, "admissions": 780, "admitted_executions": 600,
				"admissions_spent_twice": 180, "executions_admitted_twice": 170, "max_per_window": 50, "mean_per_window": 40, "whole_windows": 14,
				"achieved_vs_limit": 0.8, "starts": 600, "starts_max_per_window": 47, "submitted": 600, "completed": 600, "scan_interval_ms": 250}})
	// The peers scenario: each system's closed-loop settings and idle runs.
	for _, p := range []struct {
		sys   string
		parts int
		tputs []float64 // at in-flight 64, 256
		cpu   float64
		idle  []string
	}{
		{PeerFlowFabric, 16, []float64{7800, 7400}, 118, []string{"idle"}},
		{PeerAsynq, 1, []float64{5000, 8500}, 72, []string{"idle", "idle-check-1ms"}},
		{PeerBullMQ, 1, []float64{9000, 15500}, 50, []string{"idle"}},
	} {
		for i, n := range []int{64, 256} {
			rep.Results = append(rep.Results, &Result{Scenario: ScenarioPeers, Variant: fmt.Sprintf("%s/closed-%d", p.sys, n),
				Partitions: p.parts, Workers: 2, DurationS: 2, Throughput: p.tputs[i], Ops: int64(2 * p.tputs[i]), Unit: "jobs",
				CommandsPerOp: 25, FcallsPerOp: 2, ValkeyCPUPerOpUS: p.cpu, CommandMix: mix,
				Extra: map[string]float64{"rounds": 3, "throughput_min": p.tputs[i] * 0.9, "throughput_max": p.tputs[i] * 1.1, "scripts_per_op": 2}})
		}
		for i, v := range p.idle {
			rep.Results = append(rep.Results, &Result{Scenario: ScenarioPeers, Variant: p.sys + "/" + v, Partitions: p.parts,
				Workers: 2, DurationS: 3, OfferedRate: 100, Throughput: 100, Ops: 300, Unit: "jobs", CommandsPerOp: 30,
				ValkeyCPUPerOpUS: 400, CommandMix: mix, Latency: map[string]*Summary{"handler_start": lat(int64(600 * (i + 1)))}})
		}
	}
	r := &Runner{cfg: rep.Config, anchors: rep.Anchors, capacity: 4000, peerInfo: map[string]peerInfo{
		PeerFlowFabric: {version: "0123456789ab"}, PeerAsynq: {version: "v0.26.0"}, PeerBullMQ: {version: BullMQVersion + " (Node v20.20.2)"}}}
	r.finish(rep)
	// A copy: a test may change the report (hostileReport poisons every
	// string in it).
	raw, _ := json.Marshal(fakeCapacity())
	if err := json.Unmarshal(raw, &rep.Capacity); err != nil {
		panic(err)
	}
	return rep
}

// fakeCapacity is a capacity search on a synthetic curve (the knee of
// claim p99 <= 5ms near 8.2k/s), made once.
var fakeCapacity = sync.OnceValue(func() *CapacityReport {
	slo, _ := ParseSLO("claim p99 <= 5ms")
	c := &syntheticCurve{base: 200, capacity: 10000, jitter: 0.05, rng: rand.New(rand.NewPCG(9, 9))}
	o := CapacityOptions{SLO: slo, StartRate: 500, MaxRate: 20000, Step: time.Second}
	o.fill()
	cr, err := searchCapacity(context.Background(), o, c.measure, nil)
	if err != nil {
		panic(err) // the synthetic measure returns no error
	}
	cr.Partitions, cr.ClosedLoopCapacity = 16, 11000
	return cr
})

// roundTrip writes rep as report.json and reads it back as `ffbench report
// --in` does; it returns what was read and the file.
func roundTrip(t *testing.T, rep *Report) (*Report, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "report.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	return back, path
}

func TestReportJSONRoundTrip(t *testing.T) {
	t.Parallel()
	rep := fakeReport()
	back, path := roundTrip(t, rep)
	if len(back.Results) != len(rep.Results) || back.Find("claim-latency/P=4").Latency["claim"].Hist == "" {
		t.Fatalf("round trip lost results")
	}
	v, ok := back.Metric("claim-latency/P=16:claim.p50")
	if !ok || v != rep.Find("claim-latency/P=16").Latency["claim"].P50 {
		t.Fatalf("claim p50 %v %v", v, ok)
	}
	if v, ok := back.Metric("claim-latency/P=16:extra.claim_p50_over_serial_rtt"); !ok || v <= 0 {
		t.Fatalf("ratio to serial RTT missing: %v", v)
	}
	// A newer schema is refused, not misread.
	raw, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(raw), `"schema_version": 1`, `"schema_version": 99`, 1)), 0o644)
	if _, err := ReadReport(path); err == nil || !strings.Contains(err.Error(), "schema version 99") {
		t.Fatalf("schema version not checked: %v", err)
	}
}

func TestBenchLinesAreBenchstatFormat(t *testing.T) {
	t.Parallel()
	out := BenchLines(fakeReport())
	line := regexp.MustCompile(`^Benchmark[A-Za-z0-9]+(/[a-z]+(/[a-z]+(-[a-z0-9]+)*)?)?/P=\d+-2\t\d+(\t[-+0-9.e]+ [^\t ]+)+$`)
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, "Benchmark") {
			n++
			if !line.MatchString(l) {
				t.Errorf("not a benchmark line: %q", l)
			}
		}
	}
	if n != len(fakeReport().Results)+1 || !strings.Contains(out, "BenchmarkRenewThroughput/sdk/P=16-2") || !strings.Contains(out, "BenchmarkCapacity/P=16-2\t") {
		t.Fatalf("%d lines:\n%s", n, out)
	}
}

func TestMarkdownAndSummary(t *testing.T) {
	t.Parallel()
	rep := fakeReport()
	md := Markdown(rep)
	for _, want := range []string{"# ffbench report", "## Headlines", "renew throughput at P=16", "| claim-latency |", "## Go benchmark format", "Correctness: passed",
		"## Signal → resume", "signal → resume at P=16, 100 cycles/s", "| resume | intended delivery → resumed handler start | 2000 |",
		"## Flow DAGs", "**fan-out 1 → 100 → 1**: 10 DAGs/s", "flow DAGs, chains of 20 at P=16, 10 DAGs/s", "| edge | last parent's handler returned → child's handler started | 2000 |",
		"## Admission", "admission A/B at P=16, 200 jobs/s open loop, 2 interleaved rounds each", "= 2.50× [target ≤ 1.5×: MISS]",
		"admission rate check: quota 50 per 200ms (250/s)", "[limit 50: PASS]", "| **max admissions in any window** (sliding, server times) | **50** |",
		"| quota | 22.0ms |", "| plain | 8.81ms |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	rep.Results[0].Lost = 3
	rep.Lost = 3
	rep.Failures = []string{"claim-latency/P=1: 3 lost"}
	if s := SummaryTable(rep); !strings.Contains(s, "correctness FAILED: 3 lost") {
		t.Errorf("summary does not fail:\n%s", s)
	}
}

// TestHTMLHasCharts checks the page's structure in Go: every chart is an
// inline SVG with data, and nothing is loaded from elsewhere.
func TestHTMLHasCharts(t *testing.T) {
	t.Parallel()
	page := HTML(fakeReport())
	if n := strings.Count(page, "<svg"); n < 8 {
		t.Fatalf("%d svg charts, want at least 8", n)
	}
	if n := strings.Count(page, "<polyline"); n < 10 {
		t.Fatalf("%d plotted series", n)
	}
	for _, title := range []string{"Claim latency percentiles by partition count", "Renew throughput vs partitions",
		"Claim latency vs partitions", "Ratio to the raw ceiling vs partitions", "Crash → completion", "Claim path: direct vs fused",
		"Signal → resume latency, open loop at 100 cycles/s", "Complete → WaitResult latency, open loop at 200 jobs/s",
		"Flow DAGs, fan-out 1 → 100 → 1, open loop at 10 DAGs/s", "Flow DAGs, chains of 20, open loop at 10 DAGs/s",
		"Admission A/B: claim latency, quota lane vs plain lane, 200 jobs/s", "Rate check: admissions per 200ms window, limit 50", "quota lane / plain lane claim p50"} {
		if !strings.Contains(page, title) {
			t.Errorf("no chart %q", title)
		}
	}
	if strings.Contains(page, "no data in this run") {
		t.Error("a chart has no data")
	}
	for _, ext := range []string{"<script", "src=", "href=\"http", "url(", "@import"} {
		if strings.Contains(page, ext) {
			t.Errorf("page is not self-contained: has %q", ext)
		}
	}
}

func TestGateCompare(t *testing.T) {
	t.Parallel()
	rep := fakeReport()
	bl := &Baseline{Schema: BaselineSchemaName, SchemaVersion: BaselineSchemaVersion, Metrics: []BaselineMetric{
		{Metric: "renew-throughput/sdk/P=16:ratio_to_ceiling", Class: ClassRatio, Better: "higher", Rel: 0.15},
		{Metric: "e2e/closed/P=16:cmd.*", Class: ClassCounter, Better: "lower", Abs: 0.5},
		{Metric: "e2e/closed/P=16:commands_per_op", Class: ClassCounter, Better: "lower", Rel: 0.05},
	}}
	nb, err := NewBaseline(bl, rep)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := Gate(context.Background(), nb, rep, GateOptions{})
	if !g.Pass() || len(g.Checks) != 5 { // ratio, 3 commands, commands_per_op
		t.Fatalf("A/A did not pass: %+v", g)
	}

	// An extra round trip per op: a new command at 1/op, 1 more command/op.
	worse := fakeReport()
	e := worse.Find("e2e/closed/P=16")
	e.CommandMix = map[string]float64{"fcall": 4, "zrange": 1, "hset": 5, "ping": 1}
	e.CommandsPerOp = 39
	g, _ = Gate(context.Background(), nb, worse, GateOptions{Classes: []string{ClassCounter}})
	regs := g.Regressions()
	if g.Pass() || len(regs) != 2 || regs[0].Metric != "e2e/closed/P=16:cmd.ping" {
		t.Fatalf("extra round trip not caught: %+v", regs)
	}
	if s := regs[0].String(); !strings.Contains(s, "FAIL") || !strings.Contains(s, "new") {
		t.Errorf("regression line %q", s)
	}

	// A slower renewer: the ratio drops 20%.
	worse.Find("renew-throughput/sdk/P=16").RatioToCeiling *= 0.8
	g, _ = Gate(context.Background(), nb, worse, GateOptions{Classes: []string{ClassRatio}})
	if regs := g.Regressions(); g.Pass() || len(regs) != 1 || !strings.Contains(regs[0].String(), "-20.0%") {
		t.Fatalf("ratio drop not caught: %+v", regs)
	}
	// Within tolerance: -10% passes.
	ok := fakeReport()
	ok.Find("renew-throughput/sdk/P=16").RatioToCeiling *= 0.9
	if g, _ := Gate(context.Background(), nb, ok, GateOptions{}); !g.Pass() {
		t.Fatalf("-10%% failed: %+v", g.Regressions())
	}
	// Lost work fails the gate whatever the metrics.
	ok.Lost = 1
	if g, _ := Gate(context.Background(), nb, ok, GateOptions{}); g.Pass() || len(g.Correctness) == 0 {
		t.Fatal("lost work passed the gate")
	}
	// A metric the report lacks fails.
	delete(ok.Find("e2e/closed/P=16").CommandMix, "fcall")
	ok.Lost = 0
	ok.Results = slices.DeleteFunc(ok.Results, func(r *Result) bool {
		return r.Scenario == ScenarioPeers || r.Scenario == ScenarioSignalResume || r.Scenario == ScenarioStreamAppend ||
			r.Scenario == ScenarioCompletionNotify || r.Scenario == ScenarioFlowDAG || r.Scenario == ScenarioAdmission
	})
	ok.Results = ok.Results[:len(ok.Results)-6] // renew-throughput/sdk/P=16 among them
	if g, _ := Gate(context.Background(), nb, ok, GateOptions{}); g.Pass() {
		t.Fatal("missing results passed")
	}
}

func TestBaselineFileChecks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"schema":"flowfabric.ffbench.baseline","schema_version":1,"metrics":[{"metric":"a:b","class":"ratio","better":"sideways"}]}`), 0o644)
	if _, err := ReadBaseline(bad); err == nil {
		t.Fatal("bad direction accepted")
	}
	// The committed baseline parses and names metrics a quick report has.
	bl, err := ReadBaseline("../ci/baseline.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(bl.Metrics) == 0 {
		t.Fatal("empty baseline")
	}
}

// The capacity search is the report's headline (its first line and card),
// with its section and chart; the claim p50 over an idle server's round
// trip moved to the detail.
func TestCapacityIsTheHeadline(t *testing.T) {
	t.Parallel()
	rep := fakeReport()
	h := Headlines(rep)
	if len(h) == 0 || !strings.HasPrefix(h[0], "capacity at claim p99 ≤ 5.00ms: ") || !strings.HasSuffix(h[0], "[SLO: PASS]") {
		t.Fatalf("first headline %q", h[0])
	}
	for _, l := range h {
		if strings.Contains(l, "serial FCALL round trip") {
			t.Errorf("the claim / serial round trip ratio is still a headline: %q", l)
		}
	}
	d := strings.Join(DetailLines(rep), "\n")
	if !strings.Contains(d, "claim latency at P=16") || !strings.Contains(d, "a loaded round trip [target ≤ 2×: ") {
		t.Errorf("detail lacks the claim ratio: %q", d)
	}
	md := Markdown(rep)
	if i, j := strings.Index(md, "## Headlines"), strings.Index(md, "## Capacity at the SLO"); i < 0 || j < i || !strings.Contains(md, "## Detail") {
		t.Errorf("markdown sections: headlines at %d, capacity at %d", i, j)
	}
	page := HTML(rep)
	cards := page[strings.Index(page, `<div class="cards">`):]
	if !strings.HasPrefix(cards, `<div class="cards"><div class="card good"><div class="v">`) ||
		!strings.Contains(cards[:400], "capacity at claim p99 ≤ 5.00ms") {
		t.Errorf("the first card is not the capacity: %.400s", cards)
	}
	if strings.Contains(page, "claim p50 / serial FCALL round trip</div>") {
		t.Error("the claim ratio is still a card")
	}
	for _, want := range []string{"Capacity at the SLO", "Capacity at claim p99 ≤ 5.00ms: claim p99 against the arrival rate",
		`class="slo"`, "found ", "<h2>Detail</h2>", "<h2>Targets</h2>"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The chart: every step of the three searches, and the SLO line at 5ms.
	ch := capacityCharts(rep)
	if len(ch) != 1 {
		t.Fatalf("%d capacity charts", len(ch))
	}
	pts := 0
	for _, e := range ch[0].Els {
		if e.Tag == "circle" {
			pts++
		}
	}
	if pts != countSteps(rep.Capacity) {
		t.Errorf("%d points for %d steps", pts, countSteps(rep.Capacity))
	}
}

// Every target in the summary carries its verdict, and the targets block
// counts them.
func TestSummaryTargetsSayPassOrMiss(t *testing.T) {
	t.Parallel()
	rep := fakeReport()
	s := SummaryTable(rep)
	tags := regexp.MustCompile(`\[[^\]]*target[^\]]*\]`).FindAllString(s, -1)
	if len(tags) < 5 {
		t.Fatalf("%d target tags in the summary:\n%s", len(tags), s)
	}
	for _, tag := range tags {
		if !strings.HasSuffix(tag, ": PASS]") && !strings.HasSuffix(tag, ": MISS]") {
			t.Errorf("target without a verdict: %q", tag)
		}
	}
	gs := Goals(rep)
	if !strings.Contains(s, fmt.Sprintf("targets: %d met, %d missed", len(gs)-len(rep.Missed()), len(rep.Missed()))) {
		t.Errorf("no targets block:\n%s", s)
	}
	// The fake report misses the admission target (2.5× vs 1.5×) and
	// meets renew's (0.98 ≥ 0.9).
	var words []string
	for _, g := range gs {
		words = append(words, g.Word()+" "+g.Name)
	}
	all := strings.Join(words, "\n")
	// The flow edge target judges the chains' edge (2.9×), never the
	// fan-out's (42×, its siblings' queueing).
	for _, want := range []string{"MISS admission: quota / plain claim p50 at P=16", "PASS renew throughput / raw ceiling at P=16",
		"PASS capacity at claim p99 ≤ 5.00ms", "MISS flow chain edge p50 / loaded FCALL round trip at P=16"} {
		if !strings.Contains(all, want) || !strings.Contains(s, strings.Replace(want, " ", "  ", 1)) {
			t.Errorf("goals lack %q:\n%s", want, all)
		}
	}
	for _, g := range gs {
		if strings.Contains(g.Name, "flow") && g.Value != 2.9 {
			t.Errorf("flow goal %q judges %v, not the chains' 2.9", g.Name, g.Value)
		}
	}
	if !strings.Contains(s, "so the edge p50 is 2.90× it [target ≤ 2×: MISS]") {
		t.Errorf("the chains' headline lacks its verdict:\n%s", s)
	}
	// A goal's verdict follows its figure.
	if g := newGoal("x", 2.1, true, 2, "×"); g.Met || g.Tag() != "[target ≤ 2×: MISS]" {
		t.Errorf("%+v %s", g, g.Tag())
	}
	if g := newGoal("x", 0.95, false, 0.9, ""); !g.Met || g.Tag() != "[target ≥ 0.9: PASS]" {
		t.Errorf("%+v %s", g, g.Tag())
	}
}

// The charts: a rate axis's 0 tick reads "0", the recovery chart draws its
// bound, and the correctness columns lead the results table.
func TestChartAndTableDetails(t *testing.T) {
	t.Parallel()
	rep := fakeReport()
	ticks := map[string]bool{}
	for _, e := range renewVsPartitions(rep).Els {
		if e.Tag == "text" && e.Class == "tl" && e.Anchor == "end" { // the y axis's tick labels
			ticks[e.Text] = true
		}
	}
	if !ticks["0"] || ticks["-"] {
		t.Errorf("renew chart's y ticks %v: want a 0, no -", ticks)
	}
	var bound bool
	for _, e := range recoveryCurve(rep).Els {
		if e.Tag == "text" && e.Class == "sl" && strings.Contains(e.Text, "lease TTL + scan = 1.25s") {
			bound = true
		}
	}
	if !bound {
		t.Error("the recovery chart draws no bound")
	}
	page := HTML(rep)
	head := regexp.MustCompile(`<table class="results"><thead><tr>((?:<th>[^<]*</th>){5})`).FindStringSubmatch(page)
	if head == nil || head[1] != "<th>scenario</th><th>variant</th><th>P</th><th>lost</th><th>dup</th>" {
		t.Errorf("results table starts %v", head)
	}
}

// The palette keeps series apart: any two of the first six colours (a
// partition sweep's) differ clearly, and no series colour is near the
// alarm red, so no variant (the better one included) is drawn in it.
func TestPaletteDistinguishable(t *testing.T) {
	t.Parallel()
	const alarm = "#dc2626"
	for i, a := range palette {
		if d := deltaE(a, alarm); d < 30 {
			t.Errorf("palette[%d] %s is %0.f from the alarm red", i, a, d)
		}
		for j := i + 1; j < 6; j++ {
			if i < 6 {
				if d := deltaE(a, palette[j]); d < 25 {
					t.Errorf("palette[%d] %s and [%d] %s differ by %.0f", i, a, j, palette[j], d)
				}
			}
		}
	}
	page := HTML(fakeReport())
	for _, m := range regexp.MustCompile(`(?:stroke|fill)="(#[0-9a-f]{6})"`).FindAllStringSubmatch(page, -1) {
		if deltaE(m[1], alarm) < 30 {
			t.Errorf("a series is drawn in %s, near the alarm red", m[1])
		}
	}
}

// deltaE is the CIE76 distance of two sRGB colours ("#rrggbb") in L*a*b*.
func deltaE(x, y string) float64 {
	lab := func(h string) [3]float64 {
		var rgb [3]float64
		for i := range rgb {
			var v int
			fmt.Sscanf(h[1+2*i:3+2*i], "%02x", &v)
			c := float64(v) / 255
			if c <= 0.04045 {
				c /= 12.92
			} else {
				c = math.Pow((c+0.055)/1.055, 2.4)
			}
			rgb[i] = c
		}
		X := (0.4124*rgb[0] + 0.3576*rgb[1] + 0.1805*rgb[2]) / 0.95047
		Y := 0.2126*rgb[0] + 0.7152*rgb[1] + 0.0722*rgb[2]
		Z := (0.0193*rgb[0] + 0.1192*rgb[1] + 0.9505*rgb[2]) / 1.08883
		f := func(t float64) float64 {
			if t > 0.008856 {
				return math.Cbrt(t)
			}
			return 7.787*t + 16.0/116
		}
		return [3]float64{116*f(Y) - 16, 500 * (f(X) - f(Y)), 200 * (f(Y) - f(Z))}
	}
	a, b := lab(x), lab(y)
	return math.Sqrt((a[0]-b[0])*(a[0]-b[0]) + (a[1]-b[1])*(a[1]-b[1]) + (a[2]-b[2])*(a[2]-b[2]))
}

// A capacity search's report (no scenario results but e2e's closed loop)
// shows its capacity and leaves out the empty charts; a search that met
// nothing says what each search found.
func TestCapacityOnlyPage(t *testing.T) {
	t.Parallel()
	full := fakeReport()
	rep := &Report{Schema: SchemaName, SchemaVersion: SchemaVersion, Config: full.Config, Anchors: full.Anchors,
		Results: []*Result{full.Find("e2e/closed/P=16")}, Capacity: full.Capacity}
	page := HTML(rep)
	if strings.Contains(page, "no data in this run") || strings.Contains(page, "<h2>Partition sweep</h2>") {
		t.Error("the capacity page shows empty charts")
	}
	if !strings.Contains(page, "<h2>Capacity at the SLO</h2>") || strings.Count(page, "<svg") != 2 { // capacity and commands per op
		t.Errorf("capacity page: %d charts", strings.Count(page, "<svg"))
	}
	rep.Capacity.Searches[1].Found = 0
	rep.Capacity.RateMin = 0
	if h := Headlines(rep)[0]; !strings.Contains(h, "no rate tried met it in every search (found per search: ") ||
		!strings.Contains(h, ", none, ") || !strings.HasSuffix(h, "[SLO: MISS]") {
		t.Errorf("missed capacity headline %q", h)
	}
	if c, _ := capacityCard(rep); c.Value != "none" || c.Class != "miss" || strings.Contains(c.Sub, "--") {
		t.Errorf("missed capacity card %+v", c)
	}
}
