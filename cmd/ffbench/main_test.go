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
	for _, cmd := range []string{"run", "sweep", "report", "gate", "calibrate"} {
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{cmd, "--help"}, &out, &errb)
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s --help: %v", cmd, err)
		}
		help := errb.String()
		if strings.Contains(help, "plant-") {
			t.Errorf("%s --help shows a hidden flag", cmd)
		}
		for _, want := range map[string][]string{
			"run":       {"--profile string", "(default quick)", "--scenario", "--addr", "--cluster", "--flush", "--profile-dir", "--pyroscope", "--rate", "0: 100/s", "--signal-wait", "(default 20ms)", "signal-resume", "stream-append", "0: 1000/s", "completion-notify", "0: 200/s", "flow-dag", "--dag-width", "(default 100)", "--dag-depth", "(default 20)", "--dag-rate", "(default 10)", "admission", "--admission-rate", "(default 200)", "--admission-limit", "(default 50)", "--admission-window", "(default 200ms)", "--admission-overload", "(default 4)", "--leases", "--lease-ttl", "--calibrate", "--out"},
			"sweep":     {"--sweep-partitions", "--addr"},
			"report":    {"--in", "--out"},
			"gate":      {"--baseline", "(default ci/baseline.json)", "--report", "--remeasure", "(default 2)", "--class", "--update"},
			"calibrate": {"--duration", "(default 250ms)", "--conns", "(default 4)", "--depth", "(default 16)", "--valkey-benchmark"},
		}[cmd] {
			if !strings.Contains(help, want) {
				t.Errorf("%s --help lacks %q:\n%s", cmd, want, help)
			}
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out, &out); err != nil || !strings.Contains(out.String(), "ffbench calibrate") {
		t.Fatalf("top-level help: %v\n%s", err, out.String())
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
