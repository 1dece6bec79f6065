package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestGateCatchesPlantedRegressions is the gate's own acceptance test, on a
// real server: two A/A runs pass; one extra round trip per claim fails the
// counter gate; a fixed delay per renewal fails the ratio gate, even after
// re-measuring.
func TestGateCatchesPlantedRegressions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the harness four times against valkey-server")
	}
	tg := openTestTarget(t)
	ctx := context.Background()
	cfg := tinyConfig()
	cfg.Scenarios = []string{ScenarioE2E, ScenarioRenew}
	cfg.Duration, cfg.Leases = 700*time.Millisecond, 1000
	run := func(c Config) *Report {
		t.Helper()
		rep, err := NewRunner(c, tg, nil).Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			t.Fatalf("correctness: %v", rep.Failures)
		}
		return rep
	}
	gate := func(bl *Baseline, rep *Report, classes ...string) GateResult {
		t.Helper()
		g, err := Gate(ctx, bl, rep, GateOptions{Classes: classes, Remeasure: 2, Runner: NewRunner(rep.Config, tg, nil)})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	tmpl := &Baseline{Metrics: []BaselineMetric{
		{Metric: "e2e/closed/P=4:cmd.*", Class: ClassCounter, Better: "lower", Abs: 0.5},
		{Metric: "renew-throughput/sdk/P=4:ratio_to_ceiling", Class: ClassRatio, Better: "higher", Rel: 0.25},
	}}
	bl, err := NewBaseline(tmpl, run(cfg))
	if err != nil {
		t.Fatal(err)
	}
	// The renew ratio's expected value is 1 (the SDK renewer costs nothing
	// measurable next to the raw FCALLs); one run's figure swings ±30% on a
	// shared 2-core machine, so the baseline is the expectation, not a run.
	bl.Metrics[1].Value, bl.Metrics[1].Rel = 1, 0.5

	if g := gate(bl, run(cfg)); !g.Pass() {
		t.Fatalf("A/A run failed the gate: %v", g.Regressions())
	}

	ping := cfg
	ping.PlantClaimPing = true
	g := gate(bl, run(ping), ClassCounter)
	if g.Pass() || !hasRegression(g, "cmd.ping") {
		t.Fatalf("an extra PING per claim passed the counter gate: %+v", g.Checks)
	}

	delay := cfg
	delay.PlantRenewDelay = 100 * time.Millisecond
	g = gate(bl, run(delay), ClassRatio)
	if g.Pass() || !hasRegression(g, "ratio_to_ceiling") {
		t.Fatalf("a 100ms delay per renewal round passed the ratio gate: %+v", g.Checks)
	}
	for _, c := range g.Regressions() {
		if len(c.Remeasured) != 2 {
			t.Errorf("%s failed without re-measuring: %v", c.Metric, c.Remeasured)
		}
	}
}

func hasRegression(g GateResult, metric string) bool {
	for _, c := range g.Regressions() {
		if strings.Contains(c.Metric, metric) {
			return true
		}
	}
	return false
}
