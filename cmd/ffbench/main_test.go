package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
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
			"run":       {"--profile string", "(default quick)", "--scenario", "--addr", "--cluster", "--flush", "--profile-dir", "--pyroscope", "--rate", "--leases", "--lease-ttl", "--calibrate", "--out"},
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
