package bench

import (
	"context"
	"strings"
	"testing"
)

// TestClusterClaimScenario runs cluster-claim briefly: it starts its own
// 3-primary cluster beside the embedded server, measures each topology's
// capacity and claim latency, and reports both, their hand-off shares and
// the ratio with its verdict; every job completes once on both.
func TestClusterClaimScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("runs against valkey-server and a 3-primary cluster")
	}
	ctx := context.Background()
	cfg := tinyConfig()
	cfg.Scenarios, cfg.ABRounds = []string{ScenarioClusterClaim}, 1
	rep := runEmbedded(t, cfg, TargetOptions{})
	s, c := clusterClaimResults(rep)
	if s == nil || c == nil {
		t.Fatalf("no cluster-claim results:\n%s", SummaryTable(rep))
	}
	for _, r := range []*Result{s, c} {
		if r.Ops <= 0 || r.Extra["capacity"] <= 0 || r.Latency["claim"] == nil || r.Latency["claim"].Count == 0 ||
			r.Latency["fcall_rtt"] == nil || r.Extra["claim_p50_over_loaded_rtt"] <= 0 {
			t.Fatalf("%s: ops %d, extra %v", r.Variant, r.Ops, r.Extra)
		}
	}
	if c.Extra["claim_p50_vs_standalone"] <= 0 {
		t.Fatalf("no ratio: %v", c.Extra)
	}
	if h := clusterClaimHeadline(rep); !strings.Contains(h, "cluster/standalone p50") {
		t.Fatalf("headline: %q", h)
	}
	var judged bool
	for _, g := range Goals(rep) {
		judged = judged || strings.HasPrefix(g.Name, "cluster / standalone claim p50")
	}
	if !judged {
		t.Fatal("no goal for the cluster's claim")
	}
	// Pointed at a server it did not start, it refuses before measuring.
	if _, err := NewRunner(cfg, openTestTarget(t), nil).Run(ctx); err == nil || !strings.Contains(err.Error(), "without --addr") {
		t.Fatalf("against --addr: %v", err)
	}
}
