package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
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
				CommandMix: mix, Latency: map[string]*Summary{"claim": lat(int64(100 * p)), "claim_call": lat(50)}},
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
	return rep
}

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
	if n != len(fakeReport().Results) || !strings.Contains(out, "BenchmarkRenewThroughput/sdk/P=16-2") {
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
