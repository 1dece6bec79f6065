package bench

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPeersScenario runs the peers scenario briefly against a real server:
// FlowFabric and asynq always, BullMQ when node (and npm, for its first
// install) is present; without them BullMQ must be skipped with a note.
func TestPeersScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("runs FlowFabric, asynq and (with node) BullMQ against valkey-server")
	}
	tg := openTestTarget(t)
	cfg := tinyConfig()
	cfg.Scenarios = []string{ScenarioPeers}
	cfg.Peers.Rounds, cfg.Peers.InFlight = 1, []int{16}
	cfg.Peers.Warmup, cfg.Peers.Duration, cfg.Peers.IdleDuration = time.Second, time.Second, 500*time.Millisecond
	// The install ffbench makes from the repository's root, reused here.
	cfg.Peers.Dir = filepath.Join("..", PeerDirDefault)
	rep, err := NewRunner(cfg, tg, nil).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("correctness: %v\n%s", rep.Failures, SummaryTable(rep))
	}
	systems := []string{PeerFlowFabric, PeerAsynq}
	c := rep.Peers
	if c == nil || len(c.Systems) != 3 {
		t.Fatalf("comparison: %+v", c)
	}
	if bq := c.Systems[2]; bq.Skipped != "" {
		_, noNode := exec.LookPath("node")
		t.Logf("BullMQ skipped (node on PATH: %v): %s", noNode == nil, bq.Skipped)
		if !strings.Contains(strings.Join(rep.Notes, "\n"), bq.Skipped) {
			t.Errorf("the skip is not in the notes: %v", rep.Notes)
		}
	} else {
		systems = append(systems, PeerBullMQ)
	}
	for _, sys := range systems {
		p := rep.Peers.system(sys)
		if p == nil || p.Best == nil || p.Best.InFlight != 16 || p.Best.Throughput <= 0 || p.Best.ValkeyCPUPerJobUS <= 0 ||
			p.Best.CommandsPerJob <= 0 || p.Best.ScriptsPerJob <= 0 { // FlowFabric batches: below 1 per job
			t.Errorf("%s: best %+v", sys, p)
			continue
		}
		if f := p.fastest(); f == nil || f.Samples == 0 || f.P50US <= 0 {
			t.Errorf("%s: no idle pickup: %+v", sys, p.Idle)
		}
		closed := rep.Find(p.Best.Key)
		if closed == nil || closed.Ops <= 0 || closed.Extra["submitted"] <= 0 || closed.Extra["rounds"] != 1 {
			t.Errorf("%s: closed-loop result %+v", sys, closed)
		}
	}
	if a := rep.Peers.system(PeerAsynq); a != nil && len(a.Idle) != 2 {
		t.Errorf("asynq: %d idle runs, want its default and the short check interval", len(a.Idle))
	}
	if rep.Peers.CapacityVsAsynq <= 0 || rep.Peers.CPUVsAsynq <= 0 {
		t.Errorf("ratios: %+v", rep.Peers)
	}
	for _, want := range []string{"Peers on the same server", "Capacity at each system", "Valkey CPU per job"} {
		if !strings.Contains(HTML(rep), want) {
			t.Errorf("page: no %q", want)
		}
	}
}

// TestPeersSkipBullMQWithoutNode: no node, no BullMQ, a note and no error.
func TestPeersSkipBullMQWithoutNode(t *testing.T) {
	t.Parallel()
	cfg := tinyConfig()
	cfg.Scenarios = []string{ScenarioPeers}
	cfg.Peers.Systems = []string{PeerBullMQ}
	cfg.Peers.Node = filepath.Join(t.TempDir(), "no-node-here")
	cfg.Peers.Dir = t.TempDir()
	r := NewRunner(cfg, &Target{}, nil)
	res, err := r.runPeers(context.Background())
	if err != nil || len(res) != 0 {
		t.Fatalf("%d results, %v", len(res), err)
	}
	rep := &Report{Results: res}
	r.finish(rep)
	if rep.Peers == nil || len(rep.Peers.Systems) != 1 || !strings.Contains(rep.Peers.Systems[0].Skipped, "node not found") ||
		len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "BullMQ skipped") {
		t.Fatalf("comparison %+v, notes %v", rep.Peers, rep.Notes)
	}
	if h := strings.Join(Headlines(rep), "\n"); !strings.Contains(h, "BullMQ skipped") {
		t.Errorf("headlines: %q", h)
	}
}

// TestPeerComparison checks the summary of fakeReport's peers results: the
// best setting per system, the fastest idle run and FlowFabric's ratios, in
// the headlines, the Markdown and the page.
func TestPeerComparison(t *testing.T) {
	t.Parallel()
	rep := fakeReport()
	c := rep.Peers
	ff, aq, bq := c.system(PeerFlowFabric), c.system(PeerAsynq), c.system(PeerBullMQ)
	if ff.Best.InFlight != 64 || aq.Best.InFlight != 256 || bq.Best.InFlight != 256 {
		t.Fatalf("best: %+v %+v %+v", ff.Best, aq.Best, bq.Best)
	}
	if c.CapacityVsBullMQ != round3(7800.0/15500) || c.CapacityVsAsynq != round3(7800.0/8500) ||
		c.CPUVsBullMQ != round3(118.0/50) || c.CPUVsAsynq != round3(118.0/72) {
		t.Fatalf("ratios: %+v", c)
	}
	if len(aq.Idle) != 2 || aq.FastestIdle != 0 || aq.Idle[1].Setting != "TaskCheckInterval 1ms" {
		t.Fatalf("asynq idle: %+v", aq.Idle)
	}
	h := strings.Join(Headlines(rep), "\n")
	for _, want := range []string{"FlowFabric ÷ BullMQ 0.50×, ÷ asynq 0.92×", "BullMQ 15.5k (in-flight 256)",
		"asynq (TaskCheckInterval 1ms)", "FlowFabric ÷ BullMQ 2.36×"} {
		if !strings.Contains(h, want) {
			t.Errorf("headlines: no %q in\n%s", want, h)
		}
	}
	if m := Markdown(rep); !strings.Contains(m, "## Peers on the same server") || !strings.Contains(m, "| BullMQ | 5.81.5 (Node v20.20.2) | 256 | 15.5k (13.9k–17.1k) | 50.0 |") {
		t.Errorf("markdown:\n%s", m)
	}
	page := HTML(rep)
	for _, want := range []string{"Idle pickup at 100 jobs/s", "FlowFabric · in-flight 64", "0.50×"} {
		if !strings.Contains(page, want) {
			t.Errorf("page: no %q", want)
		}
	}
}
