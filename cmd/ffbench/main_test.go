package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/flowfabric/flowfabric-go/bench"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// Every flag of every command is documented in --help, with its default,
// and the planted-regression flags are not.
func TestHelpDocumentsEveryFlag(t *testing.T) {
	for _, cmd := range []string{"run", "sweep", "capacity", "report", "gate", "calibrate"} {
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{cmd, "--help"}, &out, &errb)
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s --help: %v", cmd, err)
		}
		help := errb.String()
		if strings.Contains(help, "plant-") {
			t.Errorf("%s --help shows a hidden flag", cmd)
		}
		if !strings.Contains(help, "--version") {
			t.Errorf("%s --help lacks --version", cmd)
		}
		// --version prints the version and runs nothing.
		out.Reset()
		if err := run(context.Background(), []string{cmd, "--version"}, &out, &errb); err != nil ||
			!strings.HasPrefix(out.String(), "ffbench ") || !strings.Contains(out.String(), "Functions library v") {
			t.Errorf("%s --version: %v %q", cmd, err, out.String())
		}
		for _, want := range map[string][]string{
			"run":   {"--profile string", "(default quick)", "--scenario", "--addr", "--cluster", "--flush", "--profile-dir", "--pyroscope", "--rate", "0: 100/s", "--signal-wait", "(default 20ms)", "signal-resume", "stream-append", "0: 1000/s", "completion-notify", "0: 200/s", "flow-dag", "--dag-width", "(default 100)", "--dag-depth", "(default 20)", "--dag-rate", "(default 10)", "admission", "--admission-rate", "(default 200)", "--admission-limit", "(default 50)", "--admission-window", "(default 200ms)", "--admission-overload", "(default 4)", "--leases", "--lease-ttl", "--calibrate", "--out"},
			"sweep": {"--sweep-partitions", "--addr", "--fail-on-miss"},
			"capacity": {"--slo string", "SLO grammar", "handler-start", "p99.9", "--repetitions", "(default 3)", "--step-duration", "(default 3s)",
				"--step-warmup", "(default 1s)", "--max-step-duration", "(default 15s)", "--start-rate", "--max-rate", "--ramp-factor", "(default 2)",
				"--resolution", "(default 0.05)", "--addr", "--partitions", "--workers", "--fail-on-miss", "--out"},
			"report": {"--in", "--out", "--fail-on-miss"},
			"gate":   {"--baseline", "(default ci/baseline.json)", "--report", "--remeasure", "(default 2)", "--class", "--update", "--quiet"},
			// calibrate's flags are named as run's.
			"calibrate": {"--slice", "(default 250ms)", "--pipeline-conns", "(default 4)", "--pipeline-depth", "(default 16)", "--partitions",
				"--valkey-benchmark", "--quiet"},
		}[cmd] {
			if !strings.Contains(help, want) {
				t.Errorf("%s --help lacks %q:\n%s", cmd, want, help)
			}
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out, &out); err != nil || !strings.Contains(out.String(), "ffbench calibrate") ||
		!strings.Contains(out.String(), "ffbench capacity") || !strings.Contains(out.String(), "3 a target missed") {
		t.Fatalf("top-level help: %v\n%s", err, out.String())
	}
	for _, v := range []string{"--version", "version"} {
		out.Reset()
		if err := run(context.Background(), []string{v}, &out, &out); err != nil || !strings.HasPrefix(out.String(), "ffbench ") {
			t.Errorf("ffbench %s: %v %q", v, err, out.String())
		}
	}
	if err := run(context.Background(), []string{"nope"}, &out, &out); err == nil {
		t.Fatal("unknown command accepted")
	}
}

func TestRunWritesReportsAndGate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ffbench against valkey-server")
	}
	srv := valkeytest.NewServer(t)
	dir := t.TempDir()
	var out, errb bytes.Buffer
	args := []string{"run", "--profile", "smoke", "--scenario", "e2e", "--addr", srv.Addr(), "--flush", "--quiet",
		"--duration", "400ms", "--warmup", "100ms", "--distinct-worker-ids", "--out", dir, "--profile-dir", "prof"}
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("run: %v\n%s\n%s", err, out.String(), errb.String())
	}
	for _, f := range []string{"report.json", "report.md", "report.html", "bench.txt", "prof/cpu.pprof", "prof/heap.pprof"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !strings.Contains(out.String(), "e2e") || !strings.Contains(out.String(), "correctness: no lost") {
		t.Errorf("summary:\n%s", out.String())
	}
	rep, err := bench.ReadReport(filepath.Join(dir, "report.json"))
	if err != nil || rep.Profiles["cpu"] != "prof/cpu.pprof" {
		t.Fatalf("report: %v %v", err, rep.Profiles)
	}
	// report re-renders.
	if err := run(context.Background(), []string{"report", "--in", filepath.Join(dir, "report.json"), "--out", filepath.Join(dir, "again")}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	// gate: a baseline taken from this report passes it; a stricter one fails with exit status 1.
	tmpl := &bench.Baseline{Schema: bench.BaselineSchemaName, SchemaVersion: bench.BaselineSchemaVersion,
		Metrics: []bench.BaselineMetric{{Metric: "e2e/closed/P=16:cmd.*", Class: bench.ClassCounter, Better: "lower", Abs: 0.5}}}
	tp := filepath.Join(dir, "tmpl.json")
	if err := tmpl.WriteJSON(tp); err != nil {
		t.Fatal(err)
	}
	bp := filepath.Join(dir, "baseline.json")
	if err := run(context.Background(), []string{"gate", "--baseline", tp, "--report", filepath.Join(dir, "report.json"), "--update", bp}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"gate", "--baseline", bp, "--report", filepath.Join(dir, "report.json"), "--remeasure", "0"}, &out, &errb); err != nil {
		t.Fatalf("gate against its own baseline: %v\n%s", err, out.String())
	}
	bl, _ := bench.ReadBaseline(bp)
	for k := range bl.Metrics[0].Values {
		bl.Metrics[0].Values[k] -= 1 // every command now costs one more than the baseline
	}
	bl.WriteJSON(bp)
	out.Reset()
	err = run(context.Background(), []string{"gate", "--baseline", bp, "--report", filepath.Join(dir, "report.json"), "--remeasure", "0"}, &out, &errb)
	if !errors.Is(err, errFailed) || !strings.Contains(out.String(), "gate FAILED") || !strings.Contains(out.String(), "regressed:") {
		t.Fatalf("gate did not fail: %v\n%s", err, out.String())
	}
}

// A crafted report.json run through `ffbench report --in` renders inert: its
// names are text in report.html, its links are relative or not links, and
// its names with | or newlines stay in their Markdown cells.
func TestReportOfHostileJSON(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "report.json")
	js := `{"schema":"` + bench.SchemaName + `","schema_version":` + strconv.Itoa(bench.SchemaVersion) + `,
	 "profile":"<script>alert(1)</script>","git_sha":"\"><img src=x onerror=alert(2)>","go_version":"</title><script>alert(3)</script>",
	 "valkey":{"version":"8\u0000\u001b[2J","topology":"</svg><script>alert(4)</script>"},
	 "results":[{"scenario":"a|b\n| x | y |","variant":"<script>alert(5)</script>","partitions":16,"unit":"j\"obs","throughput":10,"ops":10,
	   "latency":{"<b>claim</b>":{"count":1,"p50_us":1}}}],
	 "profiles":{"cpu":"prof/cpu.pprof","x":"javascript:alert(6)","y":"//evil.example/p","z":"data:text/html,<script>alert(7)</script>"},
	 "notes":["<iframe src=javascript:alert(8)>"],"failures":["\u202e<script>alert(9)</script>"]}`
	if err := os.WriteFile(in, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"report", "--in", in}, &out, &errb); err != nil {
		t.Fatalf("report: %v\n%s", err, errb.String())
	}
	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	p := strings.ToLower(string(page))
	for _, bad := range []string{"<script", "<img", "<iframe", "<b>claim", "javascript:alert(6)\"", `href="//`, `href="data:`, `href="javascript:`, "\x1b", "\u202e"} {
		if strings.Contains(p, bad) {
			t.Errorf("report.html has %q", bad)
		}
	}
	if n := strings.Count(p, "<a "); n != 1 || !strings.Contains(p, `<a href="prof/cpu.pprof">`) {
		t.Errorf("report.html has %d links, want only prof/cpu.pprof", n)
	}
	if !strings.Contains(p, "&lt;script&gt;alert(1)&lt;/script&gt; profile") {
		t.Error("report.html does not show the profile name as text")
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The result's row in the results table (21 cells) and in the latency
	// detail (8 cells): the name's | is escaped, its newline gone.
	cells := map[int]bool{}
	for _, line := range strings.Split(string(md), "\n") {
		if strings.HasPrefix(line, `| a\|b`) {
			cells[len(regexp.MustCompile(`(^|[^\\])\|`).FindAllString(line, -1))-1] = true
		}
	}
	if len(cells) != 2 || !cells[21] || !cells[8] {
		t.Errorf("report.md rows of the result have %v cells, want 21 and 8:\n%s", cells, md)
	}
	if strings.Contains(out.String(), "\x1b") {
		t.Error("the summary printed an escape sequence")
	}
}

func TestRelativeTo(t *testing.T) {
	wd, _ := os.Getwd()
	for _, c := range [][3]string{
		{"out", filepath.Join(wd, "out", "prof", "cpu.pprof"), "prof/cpu.pprof"},
		{filepath.Join(wd, "out"), "out/prof/cpu.pprof", "prof/cpu.pprof"},
		{"out", filepath.Join(wd, "elsewhere", "cpu.pprof"), "../elsewhere/cpu.pprof"},
	} {
		if got := relativeTo(c[0], c[1]); got != c[2] {
			t.Errorf("relativeTo(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}

// Bad flag values are refused before anything runs, with a message naming
// the flag (exit status 2: not errFailed, not errMissed).
func TestBadFlagValuesRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--rate", "-5"}, "--rate -5: must not be negative"},
		{[]string{"run", "--duration", "0s"}, "--duration 0s: must be above zero"},
		{[]string{"run", "--warmup", "-1s"}, "--warmup -1s: must not be negative"},
		{[]string{"run", "--workers", "0"}, "--workers 0: must be above zero"},
		{[]string{"run", "--rate", "NaN"}, "--rate NaN"},
		{[]string{"run", "--rate-fraction", "0"}, "--rate-fraction 0"},
		{[]string{"sweep", "--dag-rate", "-1"}, "--dag-rate -1"},
		{[]string{"run", "extra"}, "unexpected arguments"},
		{[]string{"run", "--cluster", "--addr", "127.0.0.1:1"}, "--cluster"},
		{[]string{"calibrate", "--slice", "0s"}, "--slice 0s: must be above zero"},
		{[]string{"calibrate", "--pipeline-conns", "-2"}, "--pipeline-conns -2"},
		{[]string{"capacity"}, "--slo is required"},
		{[]string{"capacity", "--slo", "claim p99 >= 5ms"}, "--slo: SLO clause"},
		{[]string{"capacity", "--slo", "claim p99 <= 5ms", "--repetitions", "0"}, "--repetitions 0: must be above zero"},
		{[]string{"capacity", "--slo", "claim p99 <= 5ms", "--step-duration", "0s"}, "--step-duration 0s"},
		{[]string{"capacity", "--slo", "claim p99 <= 5ms", "--max-rate", "-3"}, "--max-rate -3"},
		{[]string{"capacity", "--slo", "claim p99 <= 5ms", "--resolution", "1.5"}, "resolution"},
		{[]string{"capacity", "--slo", "claim p99 <= 5ms", "--ramp-factor", "1"}, "ramp factor"},
		{[]string{"capacity", "--slo", "claim p99 <= 5ms", "--start-rate", "100", "--max-rate", "50"}, "below start rate"},
		{[]string{"gate", "--report", "x.json", "--remeasure", "-1"}, "--remeasure -1"},
		{[]string{"run", "--otel", "spans"}, "--otel \"spans\""},
		{[]string{"run", "--otel", "traces=0"}, "trace ratio"},
		{[]string{"run", "--otel", "traces=1.5"}, "trace ratio"},
	} {
		var out, errb bytes.Buffer
		dir := t.TempDir()
		args := c.args
		if c.args[0] == "run" || c.args[0] == "sweep" || c.args[0] == "capacity" {
			args = append(args, "--out", dir)
		}
		err := run(context.Background(), args, &out, &errb)
		if err == nil || errors.Is(err, errFailed) || errors.Is(err, errMissed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error saying %q", c.args, err, c.want)
		}
		if ents, _ := os.ReadDir(dir); len(ents) > 0 {
			t.Errorf("%v wrote %d files", c.args, len(ents))
		}
	}
}

// ffbench capacity against a real server: a lax SLO is met up to the
// ramp's ceiling (the report's headline says "at least"), an impossible one
// nowhere, which --fail-on-miss turns into exit status 3. Progress names
// the server it connects to, not "starting Valkey".
func TestCapacityWritesHeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ffbench against valkey-server")
	}
	srv := valkeytest.NewServer(t)
	dir := t.TempDir()
	short := []string{"--addr", srv.Addr(), "--flush", "--repetitions", "1", "--step-duration", "300ms", "--step-warmup", "100ms",
		"--max-step-duration", "300ms", "--resolution", "0.5", "--out", dir}
	var out, errb bytes.Buffer
	args := append([]string{"capacity", "--slo", "e2e p50 <= 10s", "--start-rate", "100", "--max-rate", "300", "--fail-on-miss"}, short...)
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("capacity: %v\n%s\n%s", err, out.String(), errb.String())
	}
	if p := errb.String(); !strings.Contains(p, "connecting to "+srv.Addr()) || strings.Contains(p, "starting") {
		t.Errorf("progress with --addr:\n%s", p)
	}
	rep, err := bench.ReadReport(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Capacity
	if c == nil || !c.Met() || !c.Capped || c.Rate != 300 || len(c.Searches) != 1 || len(c.Searches[0].Steps) != 3 { // 100, 200, 300
		t.Fatalf("capacity %+v", c)
	}
	for _, st := range c.Searches[0].Steps {
		if st.Latency["claim"] == nil || st.Latency["claim"].Count == 0 || st.Latency["claim"].Hist == "" || !st.Met {
			t.Errorf("step %+v", st)
		}
	}
	if h := bench.Headlines(rep); len(h) == 0 || !strings.HasPrefix(h[0], "capacity at e2e p50 ≤ 10.00s: at least 300 jobs/s") {
		t.Errorf("headlines %q", h)
	}
	if !strings.Contains(out.String(), "PASS  capacity at e2e p50 ≤ 10.00s") || !strings.Contains(out.String(), "capacity search, every step") {
		t.Errorf("summary:\n%s", out.String())
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	page, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	if !strings.Contains(string(md), "## Capacity at the SLO") || !strings.Contains(string(page), "Capacity at e2e p50 ≤ 10.00s") {
		t.Errorf("reports lack the capacity section")
	}

	out.Reset()
	errb.Reset()
	args = append([]string{"capacity", "--slo", "claim p50 <= 1us", "--start-rate", "4", "--quiet", "--fail-on-miss"}, short...)
	err = run(context.Background(), args, &out, &errb)
	if !errors.Is(err, errMissed) || !strings.Contains(out.String(), "MISS  capacity at claim p50 ≤ 1µs") {
		t.Fatalf("impossible SLO with --fail-on-miss: %v\n%s", err, out.String())
	}
	if errb.Len() > 0 {
		t.Errorf("--quiet printed progress: %q", errb.String())
	}
	// Without --fail-on-miss the miss is reported, not an exit status.
	if err := run(context.Background(), []string{"report", "--in", filepath.Join(dir, "report.json")}, &out, &errb); err != nil {
		t.Errorf("report of a missed capacity: %v", err)
	}
	if err := run(context.Background(), []string{"report", "--in", filepath.Join(dir, "report.json"), "--fail-on-miss"}, &out, &errb); !errors.Is(err, errMissed) {
		t.Errorf("report --fail-on-miss of a missed capacity: %v", err)
	}
}
