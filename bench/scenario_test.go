package bench

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// tinyConfig is a config for tests: every scenario in well under a second
// of measurement.
func tinyConfig() Config {
	c, _ := Profile("smoke")
	c.Partitions, c.SweepPartitions = 4, []int{1, 4}
	c.Warmup, c.Duration, c.Drain = 100*time.Millisecond, 400*time.Millisecond, 10*time.Second
	c.Leases, c.RenewWorkers, c.RecoveryJobs = 400, 2, 20
	c.LeaseTTL, c.ScanInterval = 300*time.Millisecond, 50*time.Millisecond
	c.InFlight = 16
	// One WorkerID per worker: with a shared one, concurrent grants of one
	// execution can strand it (see the ff_claim grant check); the harness
	// tests here are about the harness.
	c.DistinctWorkerIDs = true
	return c
}

func openTestTarget(t *testing.T) *Target {
	t.Helper()
	srv := valkeytest.NewServer(t)
	tg, err := OpenTarget(context.Background(), TargetOptions{Addrs: []string{srv.Addr()}, Flush: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.Close)
	return tg
}

// runEmbedded runs cfg against a throwaway target started with o and
// fails the test when the run errs or lost or duplicated work.
func runEmbedded(t *testing.T, cfg Config, o TargetOptions) *Report {
	t.Helper()
	ctx := context.Background()
	tg, err := OpenTarget(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.Close)
	rep, err := NewRunner(cfg, tg, nil).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("correctness: %v\n%s", rep.Failures, SummaryTable(rep))
	}
	return rep
}

// TestScenariosSmoke runs every scenario briefly against a real server and
// checks each produced its figures and no work was lost or duplicated.
func TestScenariosSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every scenario against valkey-server")
	}
	tg := openTestTarget(t)
	cfg := tinyConfig()
	rep, err := NewRunner(cfg, tg, nil).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("correctness: %d lost, %d duplicated: %v\n%s", rep.Lost, rep.Duplicated, rep.Failures, SummaryTable(rep))
	}
	if rep.Anchors.SerialFCALL == nil || rep.Anchors.SerialFCALL.P50 <= 0 || rep.Anchors.PipelinedRate <= 0 {
		t.Fatalf("anchors: %+v", rep.Anchors)
	}
	for _, key := range []string{"e2e/closed/P=4", "e2e/open/P=4", "claim-latency/P=1", "claim-latency/P=4",
		"renew-throughput/sdk/P=1", "renew-throughput/raw/P=4", "renew-throughput/sdk/P=4", "claim-path/direct/P=4",
		"claim-path/fused/P=4", "claim-handoff/handoff/P=4", "claim-handoff/push/P=4", "recovery/P=4", "signal-resume/P=4",
		"stream-append/sdk/P=4", "stream-append/raw/P=4", "stream-append/tail/P=4", "completion-notify/P=4",
		"flow-dag/fanout/P=4", "flow-dag/chain/P=4", "admission/quota/P=4", "admission/plain/P=4"} {
		r := rep.Find(key)
		if r == nil {
			t.Errorf("no result %s", key)
			continue
		}
		if r.Throughput <= 0 || r.Ops <= 0 || r.CommandsPerOp <= 0 {
			t.Errorf("%s: throughput %v ops %d cmds/op %v", key, r.Throughput, r.Ops, r.CommandsPerOp)
		}
	}
	if r := rep.Find("renew-throughput/sdk/P=4"); r != nil && (r.RawCeiling <= 0 || r.RatioToCeiling <= 0) {
		t.Errorf("renew: no ratio to the raw ceiling: %+v", r)
	}
	if r := rep.Find("claim-latency/P=4"); r != nil {
		// claim_call records the calls that claimed something inside the
		// window: none when hand-offs took every execution there (the
		// fleet's counts of claims by call cover the whole run, warm-up
		// included), so it is required of claim-handoff's push arm below,
		// where every claim is a call's.
		for _, name := range []string{"claim", "handler_start", "e2e", "send_lag", "submit"} {
			if s := r.Latency[name]; s == nil || s.Count == 0 || s.Hist == "" {
				t.Errorf("claim-latency: no %s histogram", name)
			}
		}
		// The collector's part in the window, beside the tail it makes.
		if n, ok := r.Extra["gc_cycles"]; !ok || (n > 0 && (r.Extra["gc_every_ms"] <= 0 || r.Extra["gc_cpu_share"] < 0 || r.Extra["gc_cpu_share"] > 1)) {
			t.Errorf("claim-latency: collector figures %v", r.Extra)
		}
	}
	if r := rep.Find("recovery/P=4"); r != nil {
		s := r.Latency["crash_to_completion"]
		// Nothing can come back before its lease expires: a lease renewed
		// every TTL/3 has at least 2/3 of the TTL left at the crash.
		if s == nil || s.Count != int64(cfg.RecoveryJobs) || s.P50 < 0.6*float64(cfg.LeaseTTL.Microseconds()) {
			t.Errorf("recovery: %+v", s)
		}
	}
	checkSignalResume(t, rep.Find("signal-resume/P=4"))
	checkStreamAppend(t, rep.Find("stream-append/sdk/P=4"), rep.Find("stream-append/raw/P=4"), rep.Find("stream-append/tail/P=4"))
	checkCompletionNotify(t, rep.Find("completion-notify/P=4"))
	checkFlowDAG(t, rep.Find("flow-dag/fanout/P=4"), cfg.dagWidth()+2, 2*cfg.dagWidth())
	checkFlowDAG(t, rep.Find("flow-dag/chain/P=4"), cfg.dagDepth(), cfg.dagDepth()-1)
	checkAdmission(t, cfg, rep.Find("admission/quota/P=4"), rep.Find("admission/plain/P=4"), rep.Find("admission/rate/P=4"))
	// Hand-offs replace the claim call: fewer FCALLs per job than claiming
	// after the push, and a claim p50 set against the push variant's.
	if p := rep.Find("claim-handoff/push/P=4"); p != nil {
		if s := p.Latency["claim_call"]; s == nil || s.Count == 0 || s.Hist == "" {
			t.Errorf("claim-handoff push arm: no claim_call histogram: %+v", s)
		}
	}
	if h, p := rep.Find("claim-handoff/handoff/P=4"), rep.Find("claim-handoff/push/P=4"); h != nil && p != nil {
		if h.FcallsPerOp >= p.FcallsPerOp || h.Extra["claim_p50_vs_push"] <= 0 || h.Extra["handoff_share"] <= 0 || p.Extra["handoff_share"] != 0 {
			t.Errorf("claim-handoff: hand-off %.2f FCALLs/job (share %v, vs push %v), push %.2f (share %v)", h.FcallsPerOp,
				h.Extra["handoff_share"], h.Extra["claim_p50_vs_push"], p.FcallsPerOp, p.Extra["handoff_share"])
		}
	}
	// The fused claim is one FCALL per claim: fewer commands than direct.
	if d, f := rep.Find("claim-path/direct/P=4"), rep.Find("claim-path/fused/P=4"); d != nil && f != nil && f.FcallsPerOp >= d.FcallsPerOp {
		t.Errorf("fused %.2f FCALLs/job, direct %.2f", f.FcallsPerOp, d.FcallsPerOp)
	}
}

// TestOpenLoopShowsServerStall pauses the server mid-window: an open-loop
// generator keeps its schedule, so the stall lands in the tail instead of
// vanishing (no coordinated omission).
func TestOpenLoopShowsServerStall(t *testing.T) {
	if testing.Short() {
		t.Skip("needs valkey-server")
	}
	tg := openTestTarget(t)
	cfg := tinyConfig()
	cfg.Duration = time.Second
	r := NewRunner(cfg, tg, nil)
	const pause = 300 * time.Millisecond
	res, err := r.runPipeline(context.Background(), pipelineSpec{scenario: ScenarioE2E, variant: "open", partitions: 4,
		open: true, rate: 300, pause: pause})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Latency["e2e"]
	if res.Lost != 0 || s == nil {
		t.Fatalf("lost %d, e2e %+v", res.Lost, s)
	}
	// About 30% of arrivals fall in the pause: p90 and above must carry it.
	if s.P99 < float64((pause / 2).Microseconds()) {
		t.Fatalf("e2e p99 %.0fµs after a %v pause: the stall was hidden", s.P99, pause)
	}
}

func TestCalibrateRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("needs valkey-server")
	}
	if _, err := exec.LookPath("valkey-benchmark"); err != nil {
		t.Skip("valkey-benchmark not installed (valkey-tools)")
	}
	tg := openTestTarget(t)
	cal, err := NewRunner(tinyConfig(), tg, nil).Calibrate(context.Background(), "", 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// The agreement itself is judged by `ffbench calibrate` on a quiet
	// machine; here, every row must have both figures.
	if len(cal.Rows) != 4 {
		t.Fatalf("%d rows", len(cal.Rows))
	}
	for _, row := range cal.Rows {
		if row.FFBench <= 0 || row.ValkeyBenchmark <= 0 {
			t.Errorf("%+v", row)
		}
	}
}

// checkSignalResume checks a signal-resume result: every cycle of the
// window resumed (a latency sample each), every suspension got exactly one
// signal that resumed it, every execution completed once, and the loaded
// FCALL round trip was measured beside it.
func checkSignalResume(t *testing.T, r *Result) {
	t.Helper()
	if r == nil {
		t.Error("no signal-resume result")
		return
	}
	s := r.Latency["resume"]
	if s == nil || s.Count == 0 || s.Count != r.Ops || s.P50 <= 0 || s.Hist == "" {
		t.Errorf("signal-resume: resume %+v for %d cycles in the window", s, r.Ops)
	}
	for _, name := range []string{"signal", "signal_lag", "suspend", "fcall_rtt"} {
		if l := r.Latency[name]; l == nil || l.Count == 0 {
			t.Errorf("signal-resume: no %s histogram", name)
		}
	}
	e := r.Extra
	if r.Lost != 0 || r.Duplicated != 0 || e["submitted"] == 0 || e["suspended"] != e["submitted"] ||
		e["signals_delivered"] != e["submitted"] || e["worker_suspended"] != e["submitted"] || e["completed"] != e["submitted"] ||
		signalFailure(r) != "" {
		t.Errorf("signal-resume: not exactly once: lost %d, duplicated %d, extra %v, note %s", r.Lost, r.Duplicated, e, r.Note)
	}
	if r.FcallsPerOp <= 0 || r.CommandsPerOp <= r.FcallsPerOp || e["resume_p50_over_loaded_rtt"] <= 0 || r.OfferedRate != SignalRateDefault {
		t.Errorf("signal-resume: %.2f FCALLs and %.2f commands per cycle, resume/loaded RTT %v, rate %v",
			r.FcallsPerOp, r.CommandsPerOp, e["resume_p50_over_loaded_rtt"], r.OfferedRate)
	}
}

// TestSignalFailureFailsTheRun: a signal lost, repeated or not resuming
// fails the report like a lost completion does.
func TestSignalFailureFailsTheRun(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"signals_lost", "signals_duplicated", "signal_errors", "signal_mismatches", "suspend_duplicates"} {
		rep := &Report{Results: []*Result{{Scenario: ScenarioSignalResume, Partitions: 16, Ops: 10, Extra: map[string]float64{k: 1}}}}
		(&Runner{}).finish(rep)
		if rep.OK() || len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0], "signal-resume/P=16: signals:") {
			t.Errorf("%s: report OK %v, failures %q", k, rep.OK(), rep.Failures)
		}
	}
	rep := &Report{Results: []*Result{{Scenario: ScenarioSignalResume, Partitions: 16, Ops: 10, Extra: map[string]float64{"signals_delivered": 10}}}}
	if (&Runner{}).finish(rep); !rep.OK() {
		t.Errorf("a clean run failed: %q", rep.Failures)
	}
}

// checkStreamAppend checks stream-append's results: both throughput sides
// appended frames (batched on the SDK's side: far fewer FCALLs than frames)
// and every stream held what its side counted, the SDK's rate has a ratio
// to the raw one, and the tailer saw every emitted frame once, in order,
// with its latency and the loaded FCALL round trip measured beside it.
func checkStreamAppend(t *testing.T, sdkRes, rawRes, tail *Result) {
	t.Helper()
	if sdkRes == nil || rawRes == nil || tail == nil {
		t.Errorf("stream-append: results sdk %v, raw %v, tail %v", sdkRes != nil, rawRes != nil, tail != nil)
		return
	}
	for _, r := range []*Result{sdkRes, rawRes, tail} {
		if f := streamFailure(r); f != "" {
			t.Errorf("%s: %s", r.Key(), f)
		}
	}
	if sdkRes.RawCeiling != rawRes.Throughput || sdkRes.RatioToCeiling <= 0 || sdkRes.Extra["ratio_slice_min"] <= 0 {
		t.Errorf("stream-append: SDK %v frames/s, ceiling %v, raw %v, ratio %v", sdkRes.Throughput, sdkRes.RawCeiling, rawRes.Throughput, sdkRes.RatioToCeiling)
	}
	if sdkRes.FcallsPerOp <= 0 || sdkRes.FcallsPerOp > 0.1 || sdkRes.CommandsPerOp < 1 || sdkRes.Extra["frames_per_fcall"] < 10 ||
		rawRes.FcallsPerOp != 0 || rawRes.CommandMix["xadd"] != 1 || sdkRes.ValkeyCPUPerOpUS <= 0 || rawRes.ValkeyCPUPerOpUS <= 0 {
		t.Errorf("stream-append: SDK %.4f FCALLs and %.3f commands per frame (%v frames per FCALL), raw %v; CPU %v / %v µs",
			sdkRes.FcallsPerOp, sdkRes.CommandsPerOp, sdkRes.Extra["frames_per_fcall"], rawRes.CommandMix, sdkRes.ValkeyCPUPerOpUS, rawRes.ValkeyCPUPerOpUS)
	}
	e := tail.Extra
	if s := tail.Latency["append_tail"]; s == nil || s.Count == 0 || s.Count != tail.Ops || s.P50 <= 0 || s.Hist == "" {
		t.Errorf("stream-append: append_tail %+v for %d frames in the window", s, tail.Ops)
	}
	for _, name := range []string{"emit_lag", "append_round", "fcall_rtt"} {
		if l := tail.Latency[name]; l == nil || l.Count == 0 {
			t.Errorf("stream-append: no %s histogram", name)
		}
	}
	if e["frames_emitted"] == 0 || e["frames_seen"] != e["frames_emitted"] || e["frames_duplicated"] != 0 || e["frames_missing"] != 0 ||
		tail.Lost != 0 || tail.Duplicated != 0 || sdkRes.Lost != 0 || sdkRes.Duplicated != 0 {
		t.Errorf("stream-append: not exactly once: extra %v, lost %d/%d, duplicated %d/%d", e, sdkRes.Lost, tail.Lost, sdkRes.Duplicated, tail.Duplicated)
	}
	if e["tail_p50_over_loaded_rtt"] <= 0 || tail.OfferedRate != StreamRateDefault || tail.FcallsPerOp <= 0 {
		t.Errorf("stream-append: tail/loaded RTT %v, rate %v, %v FCALLs per frame", e["tail_p50_over_loaded_rtt"], tail.OfferedRate, tail.FcallsPerOp)
	}
}

// TestStreamFailureFailsTheRun: a frame missing, repeated or miscounted
// fails the report like a lost completion does.
func TestStreamFailureFailsTheRun(t *testing.T) {
	t.Parallel()
	ok := map[string]map[string]float64{
		"sdk":  {"count_mismatches": 0},
		"raw":  {"count_mismatches": 0},
		"tail": {"frames_emitted": 10, "frames_seen": 10},
	}
	for variant, bad := range map[string][]map[string]float64{
		"sdk": {{"count_mismatches": 1}, {"append_errors": 1}, {"foreign_executions": 1}},
		"raw": {{"count_mismatches": 1}, {"xadd_errors": 2}},
		"tail": {{"frames_emitted": 10, "frames_seen": 9, "frames_missing": 1}, {"frames_emitted": 10, "frames_seen": 10, "frames_duplicated": 1},
			{"frames_emitted": 0, "frames_seen": 0}, {"frames_emitted": 10, "frames_seen": 10, "tail_unfinished": 1},
			{"frames_emitted": 10, "frames_seen": 10, "tail_errors": 1}},
	} {
		for _, extra := range bad {
			rep := &Report{Results: []*Result{{Scenario: ScenarioStreamAppend, Variant: variant, Partitions: 16, Ops: 10, Extra: extra}}}
			(&Runner{}).finish(rep)
			if rep.OK() || len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0], "stream-append/"+variant+"/P=16: streams:") {
				t.Errorf("%s %v: report OK %v, failures %q", variant, extra, rep.OK(), rep.Failures)
			}
		}
		rep := &Report{Results: []*Result{{Scenario: ScenarioStreamAppend, Variant: variant, Partitions: 16, Ops: 10, Extra: ok[variant]}}}
		if (&Runner{}).finish(rep); !rep.OK() {
			t.Errorf("%s: a clean result failed: %q", variant, rep.Failures)
		}
		rep = &Report{Results: []*Result{{Scenario: ScenarioStreamAppend, Variant: variant, Partitions: 16, Extra: ok[variant]}}}
		if (&Runner{}).finish(rep); variant != "tail" && rep.OK() {
			t.Errorf("%s: a result with no frames passed", variant)
		}
	}
}

// checkCompletionNotify checks a completion-notify result: every execution
// completed once and every WaitResult returned its result, the latencies
// and the loaded round trip were recorded, and the waiters read a handful
// of times per wait (pushed, not polled).
func checkCompletionNotify(t *testing.T, r *Result) {
	t.Helper()
	if r == nil {
		t.Error("no completion-notify result")
		return
	}
	for _, name := range []string{"notify", "complete_start_to_return", "complete_call", "wait_call", "fcall_rtt"} {
		if s := r.Latency[name]; s == nil || s.Count == 0 || s.Hist == "" {
			t.Errorf("completion-notify: no %s histogram", name)
		}
	}
	if s := r.Latency["notify"]; s != nil && s.Count > r.Ops {
		t.Errorf("completion-notify: %d notify samples for %d jobs in the window", s.Count, r.Ops)
	}
	e := r.Extra
	if r.Lost != 0 || r.Duplicated != 0 || e["submitted"] == 0 || e["waits_returned"] != e["submitted"] || e["completed"] != e["submitted"] ||
		notifyFailure(r) != "" {
		t.Errorf("completion-notify: not exactly once: lost %d, duplicated %d, extra %v, note %s", r.Lost, r.Duplicated, e, r.Note)
	}
	if r.FcallsPerOp <= 0 || r.CommandsPerOp <= r.FcallsPerOp || e["notify_p50_over_loaded_rtt"] <= 0 || r.OfferedRate != NotifyRateDefault {
		t.Errorf("completion-notify: %.2f FCALLs and %.2f commands per job, notify/loaded RTT %v, rate %v",
			r.FcallsPerOp, r.CommandsPerOp, e["notify_p50_over_loaded_rtt"], r.OfferedRate)
	}
	// A state read per change of the record (created, claimed, completed:
	// CLIENT CACHING + HGET each), then Describe's HGETALL and the result's
	// HGET + GET: 9; polling would read far more.
	if c := e["waiter_commands_per_wait"]; c < 3 || c > 16 {
		t.Errorf("completion-notify: %v waiter commands per wait (%v connections)", c, e["waiter_connections"])
	}
}

// TestNotifyFailureFailsTheRun: a wait that never returns, fails or
// returns another result fails the run.
func TestNotifyFailureFailsTheRun(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"waits_lost", "waits_duplicated", "wait_errors", "result_mismatches"} {
		rep := &Report{Results: []*Result{{Scenario: ScenarioCompletionNotify, Partitions: 16, Ops: 10, Extra: map[string]float64{k: 1}}}}
		(&Runner{}).finish(rep)
		if rep.OK() || len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0], "completion-notify/P=16: waits:") {
			t.Errorf("%s: failures %v", k, rep.Failures)
		}
	}
	rep := &Report{Results: []*Result{{Scenario: ScenarioCompletionNotify, Partitions: 16, Ops: 10, Extra: map[string]float64{"waits_returned": 10}}}}
	(&Runner{}).finish(rep)
	if !rep.OK() {
		t.Errorf("a clean run fails: %v", rep.Failures)
	}
}

// checkFlowDAG checks a flow-dag result of DAGs with members and edges
// each: every measured DAG completed and was awaited once, every member's
// handler returned once and none started before its parents' returned,
// one edge sample per member with inbound edges and one completion per
// DAG were recorded beside the loaded round trip, and the per-edge
// counters are the measured DAGs'.
func checkFlowDAG(t *testing.T, r *Result, members, edges int) {
	t.Helper()
	if r == nil {
		t.Error("no flow-dag result")
		return
	}
	e := r.Extra
	if f := flowFailure(r); f != "" || r.Lost != 0 || r.Duplicated != 0 {
		t.Errorf("%s: %s (lost %d, duplicated %d)", r.Key(), f, r.Lost, r.Duplicated)
	}
	dags := int64(e["dags"])
	if dags == 0 || e["members_per_dag"] != float64(members) || e["edges_per_dag"] != float64(edges) || r.Ops != dags*int64(edges) {
		t.Errorf("%s: %d DAGs of %v members and %v edges, %d edges measured", r.Key(), dags, e["members_per_dag"], e["edges_per_dag"], r.Ops)
	}
	if s := r.Latency["dag_completion"]; s == nil || s.Count != dags || s.P50 <= 0 || s.Hist == "" {
		t.Errorf("%s: dag_completion %+v for %d DAGs", r.Key(), s, dags)
	}
	if s := r.Latency["edge"]; s == nil || s.Count != dags*int64(e["dependants_per_dag"]) || s.P50 <= 0 || s.Hist == "" {
		t.Errorf("%s: edge %+v for %d DAGs of %v dependants", r.Key(), s, dags, e["dependants_per_dag"])
	}
	for _, name := range []string{"fcall_rtt", "flow_notify", "submit"} {
		if s := r.Latency[name]; s == nil || s.Count == 0 {
			t.Errorf("%s: no %s histogram", r.Key(), name)
		}
	}
	if e["order_violations"] != 0 || e["dags_ended"] != e["dags_submitted"] || e["members_returned"] != e["members_submitted"] ||
		e["completed"] != e["members_submitted"] || e["members_submitted"] != e["dags_submitted"]*float64(members) {
		t.Errorf("%s: not exactly once, or out of order: %v", r.Key(), e)
	}
	// At least the submit per DAG; commands beyond the FCALLs (the
	// functions' own, the workers' and AwaitFlow's reads).
	if r.FcallsPerOp <= 0 || e["fcalls_per_dag"] < 1 || r.CommandsPerOp <= r.FcallsPerOp || e["edge_p50_over_loaded_rtt"] <= 0 ||
		e["dag_rate"] != FlowRateDefault || r.OfferedRate != FlowRateDefault*float64(edges) {
		t.Errorf("%s: %.3f FCALLs (%v per DAG) and %.2f commands per edge, edge/loaded RTT %v, rate %v (%v edges/s)", r.Key(),
			r.FcallsPerOp, e["fcalls_per_dag"], r.CommandsPerOp, e["edge_p50_over_loaded_rtt"], e["dag_rate"], r.OfferedRate)
	}
}

// TestFlowFailureFailsTheRun: a DAG that does not complete, a handler that
// starts before its parents returned, or no DAG measured fails the run.
func TestFlowFailureFailsTheRun(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"order_violations", "early_flow_ends", "dags_unfinished", "dags_awaited_twice", "dags_not_completed",
		"await_errors", "submit_errors", "foreign_executions"} {
		rep := &Report{Results: []*Result{{Scenario: ScenarioFlowDAG, Variant: "chain", Partitions: 16, Ops: 190, Extra: map[string]float64{k: 1}}}}
		(&Runner{}).finish(rep)
		if rep.OK() || len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0], "flow-dag/chain/P=16: flows:") {
			t.Errorf("%s: report OK %v, failures %q", k, rep.OK(), rep.Failures)
		}
	}
	rep := &Report{Results: []*Result{{Scenario: ScenarioFlowDAG, Variant: "fanout", Partitions: 16, Ops: 2000, Extra: map[string]float64{"dags": 10}}}}
	if (&Runner{}).finish(rep); !rep.OK() {
		t.Errorf("a clean result failed: %q", rep.Failures)
	}
	rep = &Report{Results: []*Result{{Scenario: ScenarioFlowDAG, Variant: "fanout", Partitions: 16, Extra: map[string]float64{}}}}
	if (&Runner{}).finish(rep); rep.OK() {
		t.Error("a result with no DAG measured passed")
	}
	// A lost or duplicated member handler fails as any lost work does.
	rep = &Report{Results: []*Result{{Scenario: ScenarioFlowDAG, Variant: "fanout", Partitions: 16, Ops: 2000, Lost: 1, Extra: map[string]float64{}}}}
	if (&Runner{}).finish(rep); rep.OK() {
		t.Error("a lost member passed")
	}
}

// checkAdmission checks admission's results: both A/B variants measured
// claim latency and capacity, every job completed once, the quota lane's
// claims went through admission (a ZREMRANGEBYSCORE per admission, in the
// create's hand-off or ff_quota_admit) and cost more FCALLs than the plain
// lane's (the hold's release), the ratio was computed; the rate check saw
// every admission, none over the limit in any window, and ran at a fair
// share of the quota's rate.
func checkAdmission(t *testing.T, cfg Config, q, p, rc *Result) {
	t.Helper()
	if q == nil || p == nil || rc == nil {
		t.Errorf("admission: results quota %v, plain %v, rate %v", q != nil, p != nil, rc != nil)
		return
	}
	for _, r := range []*Result{q, p, rc} {
		if f := admissionFailure(r); f != "" || r.Lost != 0 || r.Duplicated != 0 {
			t.Errorf("%s: %s (lost %d, duplicated %d)", r.Key(), f, r.Lost, r.Duplicated)
		}
	}
	for _, r := range []*Result{q, p} {
		for _, name := range []string{"claim", "e2e", "fcall_rtt"} {
			if s := r.Latency[name]; s == nil || s.Count == 0 || s.Hist == "" {
				t.Errorf("%s: no %s histogram", r.Key(), name)
			}
		}
		if r.OfferedRate != AdmissionRateDefault || r.Extra["capacity"] <= 0 || r.Extra["rounds"] != float64(cfg.ABRounds) ||
			r.Extra["completed"] != r.Extra["submitted"] || r.Extra["submitted"] == 0 {
			t.Errorf("%s: rate %v, capacity %v, rounds %v, %v of %v completed", r.Key(), r.OfferedRate, r.Extra["capacity"],
				r.Extra["rounds"], r.Extra["completed"], r.Extra["submitted"])
		}
	}
	if q.Extra["claim_p50_vs_plain"] <= 0 || q.Extra["capacity_vs_plain"] <= 0 || q.FcallsPerOp <= p.FcallsPerOp ||
		q.CommandMix["zremrangebyscore"] == 0 {
		t.Errorf("admission: quota (%v hand-offs) claim p50 vs plain %v, capacity vs plain %v, %.2f vs %.2f FCALLs per job, %v ZREMRANGEBYSCORE",
			q.Extra["handoffs"], q.Extra["claim_p50_vs_plain"], q.Extra["capacity_vs_plain"], q.FcallsPerOp, p.FcallsPerOp, q.CommandMix["zremrangebyscore"])
	}
	e := rc.Extra
	if e["admissions"] == 0 || e["max_per_window"] > e["limit"] || e["windows_over_limit"] != 0 || e["unobserved_starts"] != 0 ||
		e["starts"] != e["submitted"] || e["completed"] != e["submitted"] || e["admissions"] < e["starts"] {
		t.Errorf("admission rate check: %v", e)
	}
	// The quota admits about its rate while work waits (stale cached heads
	// spend some of its slots; the fleet claims after each refusal's retry
	// time): well above nothing, never above the limit.
	if e["achieved_vs_limit"] < 0.3 || e["achieved_vs_limit"] > 1.05 || e["limit"] != AdmissionLimitDefault || rc.OfferedRate != AdmissionOverloadDefault*e["limit_rate"] {
		t.Errorf("admission rate check: achieved %v of the limit (%v per %vms), offered %v", e["achieved_vs_limit"], e["limit"], e["window_ms"], rc.OfferedRate)
	}
}
