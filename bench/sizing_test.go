package bench

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
)

// TestSizingArithmetic: the model's outputs from given per-primary CPU
// figures: per-core rate from the sum, ceiling from the busiest primary,
// imbalance, and each primary's partitions and busy share.
func TestSizingArithmetic(t *testing.T) {
	closed := &Result{Scenario: ScenarioE2E, Variant: "closed", Partitions: 4, Throughput: 5000, Ops: 10000,
		PrimaryCPUPerOpUS: []float64{30, 10, 20}}
	s := sizingOf(closed, []string{"a:1", "b:2", "c:3"}, []int{0, 2, 0, 1})
	if s.CPUPerJobUS != 60 || s.JobsPerSPerCore != round3(1e6/60) || s.Ceiling != round3(1e6/30) || s.Imbalance != 1.5 {
		t.Fatalf("model: %+v", s)
	}
	if s.Source != "e2e/closed/P=4" || s.JobsPerS != 5000 {
		t.Fatalf("inputs: %+v", s)
	}
	want := [][]int{{0, 2}, {3}, {1}}
	for i, p := range s.Primaries {
		if !slices.Equal(p.Partitions, want[i]) {
			t.Errorf("primary %d partitions %v, want %v", i, p.Partitions, want[i])
		}
		if wantBusy := round3(closed.PrimaryCPUPerOpUS[i] * 5000 / 1e6); p.Busy != wantBusy {
			t.Errorf("primary %d busy %v, want %v", i, p.Busy, wantBusy)
		}
	}
	sp := spreadOf(6, []int{0, 0, 0, 1, 2, 2}, 3)
	if !slices.Equal(sp.PerPrimary, []int{3, 1, 2}) || sp.Imbalance != 1.5 {
		t.Fatalf("spread: %+v", sp)
	}
	if got := spreadCounts(16); got[0] != 8 || !slices.Contains(got, 16) || got[len(got)-1] != 1024 || len(got) != 8 {
		t.Fatalf("spread counts: %v", got)
	}
	if got := spreadCounts(24); !slices.Contains(got, 24) || len(got) != 9 {
		t.Fatalf("spread counts with an odd P: %v", got)
	}
}

// TestDurabilityScenario runs e2e and the durability A/B on a real server
// with one replica (as ffbench --durability wait1 starts it): the
// acknowledged variant sends WAITs, the plain one none, both complete
// every job; e2e's sizing names the one primary with every partition, its
// CPU per job matching the result's.
func TestDurabilityScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("runs against valkey-server and a replica")
	}
	ctx := context.Background()
	cfg := tinyConfig()
	cfg.Scenarios = []string{ScenarioE2E, ScenarioDurability}
	cfg.Durability = "wait1"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rep := runEmbedded(t, cfg, TargetOptions{Replicas: cfg.ReplicasWanted()})
	off, on := durabilityResults(rep)
	if off == nil {
		t.Fatalf("no durability results:\n%s", SummaryTable(rep))
	}
	if on.Variant != "wait1" || on.Extra["waits_per_op"] <= 0 || off.Extra["waits_per_op"] != 0 {
		t.Fatalf("WAITs per job: %s %v, %s %v", on.Variant, on.Extra["waits_per_op"], off.Variant, off.Extra["waits_per_op"])
	}
	for _, r := range []*Result{off, on} {
		if r.Extra["capacity"] <= 0 || r.Latency["claim"] == nil || r.Latency["claim"].Count == 0 || r.Ops <= 0 {
			t.Fatalf("%s: capacity %v, claim %+v, ops %d", r.Variant, r.Extra["capacity"], r.Latency["claim"], r.Ops)
		}
	}
	if on.Extra["capacity_vs_off"] <= 0 || on.Extra["claim_p50_vs_off"] <= 0 {
		t.Fatalf("ratios: %v", on.Extra)
	}
	if h := durabilityHeadline(rep); !strings.Contains(h, "wait1 vs off") {
		t.Fatalf("headline: %q", h)
	}
	if md := Markdown(rep); !strings.Contains(md, "## Durability") || !strings.Contains(md, "## Sizing") {
		t.Fatal("report sections missing")
	}

	s := rep.Sizing
	closed := rep.Find("e2e/closed/P=4")
	if s == nil || closed == nil || len(s.Primaries) != 1 {
		t.Fatalf("sizing: %+v", s)
	}
	if p := s.Primaries[0]; len(p.Partitions) != 4 || math.Abs(p.CPUPerJobUS-closed.ValkeyCPUPerOpUS) > 0.01 || p.CPUPerJobUS <= 0 {
		t.Fatalf("primary %+v vs closed loop's %v µs/job", p, closed.ValkeyCPUPerOpUS)
	}

	// Without replicas the scenario refuses to measure.
	plain := openTestTarget(t)
	r := NewRunner(cfg, plain, nil)
	if _, err := r.runDurability(ctx); err == nil || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("durability without replicas: %v", err)
	}
}
