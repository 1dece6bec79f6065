package bench

import (
	"fmt"
	"strconv"
)

// Goal is one target a report's figure is judged against (the issue's
// targets, and a capacity search's SLO). The summary prints PASS or MISS
// beside each, and ffbench --fail-on-miss exits 3 when one is missed.
type Goal struct {
	// Name says what is judged ("renew throughput / raw ceiling at P=16").
	Name string `json:"name"`
	// Value is the figure, Bound the target; AtMost: Value must be ≤ Bound
	// (else ≥). Unit follows both numbers when shown ("×", "").
	Value  float64 `json:"value"`
	Bound  float64 `json:"bound"`
	AtMost bool    `json:"at_most,omitempty"`
	Unit   string  `json:"unit,omitempty"`
	// Text replaces "value op bound" when the figures are not numbers
	// (a capacity search: "met at 3.4k/s").
	Text string `json:"text,omitempty"`
	// Met is the verdict (set by the goal's maker when Text is used).
	Met bool `json:"met"`
}

func newGoal(name string, value float64, atMost bool, bound float64, unit string) Goal {
	g := Goal{Name: name, Value: value, Bound: bound, AtMost: atMost, Unit: unit}
	if atMost {
		g.Met = value > 0 && value <= bound // 0: not measured
	} else {
		g.Met = value >= bound
	}
	return g
}

// Word is PASS or MISS.
func (g Goal) Word() string { return passMiss(g.Met) }

// class is the verdict's HTML class: good or miss.
func (g Goal) class() string { return verdictClass(g.Met) }

// verdictClass is a verdict's HTML class: good or miss.
func verdictClass(ok bool) string {
	if ok {
		return "good"
	}
	return "miss"
}

// op is ≤ or ≥.
func (g Goal) op() string {
	if g.AtMost {
		return "≤"
	}
	return "≥"
}

// Tag is the bracket a headline carries: "[target ≥ 0.9: PASS]".
func (g Goal) Tag() string {
	if g.Text != "" {
		return fmt.Sprintf("[%s: %s]", g.Text, g.Word())
	}
	return fmt.Sprintf("[target %s %s%s: %s]", g.op(), trimFloat(g.Bound), g.Unit, g.Word())
}

// String is the summary's line: "PASS  name: 0.957 (target ≥ 0.9)".
func (g Goal) String() string { return g.Word() + "  " + g.judged() }

// judged is String without the verdict word: "name: 0.957 (target ≥ 0.9)".
func (g Goal) judged() string {
	if g.Text != "" {
		return fmt.Sprintf("%s: %s", g.Name, g.Text)
	}
	return fmt.Sprintf("%s: %s%s (target %s %s%s)", g.Name, strconv.FormatFloat(g.Value, 'f', 3, 64), g.Unit,
		g.op(), trimFloat(g.Bound), g.Unit)
}

// passMiss words a verdict.
func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// Targets of the issue, each figure a ratio of two measured in one run.
const (
	renewTarget    = 0.9 // SDK renew throughput / raw pipelined ceiling, at least
	claimTarget    = 2.0 // claim p50 / one FCALL round trip under the same load, at most
	streamTarget   = 0.8 // SDK frames/s / raw pipelined XADD, at least
	tailTarget     = 2.0 // append → tail p50 / loaded FCALL p50, at most
	notifyTarget   = 2.0 // complete → WaitResult p50 / loaded FCALL p50, at most
	flowEdgeTarget = 2.0 // a chain's edge p50 / loaded FCALL p50, at most
	recoveryTarget = 1.0 // crash → completion p99 / (lease TTL + scan interval), at most
	bullmqTarget   = 2.0 // capacity / BullMQ's best, at least
	asynqTarget    = 3.0 // capacity / asynq's best, at least
)

func renewGoal(r *Result) Goal {
	return newGoal(fmt.Sprintf("renew throughput / raw ceiling at P=%d", r.Partitions), r.RatioToCeiling, false, renewTarget, "")
}

func claimGoal(r *Result) Goal {
	return newGoal(fmt.Sprintf("claim p50 / loaded FCALL round trip at P=%d", r.Partitions), r.Extra["claim_p50_over_loaded_rtt"], true, claimTarget, "×")
}

func streamGoal(r *Result) Goal {
	return newGoal(fmt.Sprintf("stream append SDK / raw XADD at P=%d", r.Partitions), r.RatioToCeiling, false, streamTarget, "")
}

func tailGoal(r *Result) Goal {
	return newGoal(fmt.Sprintf("append → tail p50 / loaded FCALL p50 at P=%d", r.Partitions), r.Extra["tail_p50_over_loaded_rtt"], true, tailTarget, "×")
}

func notifyGoal(r *Result) Goal {
	return newGoal(fmt.Sprintf("complete → WaitResult p50 / loaded FCALL p50 at P=%d", r.Partitions), r.Extra["notify_p50_over_loaded_rtt"], true, notifyTarget, "×")
}

// flowEdgeGoal judges a chain's edge: one hop, parent's return → child's
// handler start. A fan-out's edges carry their siblings' queueing onto
// the fleet's slots and are reported, not judged.
func flowEdgeGoal(r *Result) Goal {
	return newGoal(fmt.Sprintf("flow chain edge p50 / loaded FCALL round trip at P=%d", r.Partitions), r.Extra["edge_p50_over_loaded_rtt"], true, flowEdgeTarget, "×")
}

func admissionGoal(q *Result) Goal {
	return newGoal(fmt.Sprintf("admission: quota / plain claim p50 at P=%d", q.Partitions), q.Extra["claim_p50_vs_plain"], true, admissionClaimTarget, "×")
}

func recoveryGoal(r *Result) Goal {
	return newGoal(fmt.Sprintf("recovery p99 / (lease TTL + scan interval) at P=%d", r.Partitions), r.Extra["p99_over_ttl_plus_scan"], true, recoveryTarget, "")
}

func capacityGoal(c *CapacityReport) Goal {
	g := Goal{Name: "capacity at " + c.sloText(), Met: c.Met()}
	switch {
	case !g.Met:
		g.Text = "no rate tried met the SLO in every search"
	case c.Capped:
		g.Text = fmt.Sprintf("met up to the ramp's ceiling, at least %s/s", fmtRateFine(c.RateMin))
	default:
		g.Text = fmt.Sprintf("met up to %s/s (%s–%s/s over %d searches)", fmtRateFine(c.Rate), fmtRateFine(c.RateMin), fmtRateFine(c.RateMax), len(c.Searches))
	}
	return g
}

// Goals are the report's targets with their verdicts, in headline order.
func Goals(rep *Report) []Goal {
	var out []Goal
	if c := rep.Capacity; c != nil {
		out = append(out, capacityGoal(c))
	}
	if r := rep.Find(ScenarioRenew + "/sdk/P=16"); r != nil && r.RawCeiling > 0 {
		out = append(out, renewGoal(r))
	}
	if r := claimHeadline(rep); r != nil && r.Extra["claim_p50_over_loaded_rtt"] > 0 {
		// Against one FCALL under the same load in the same run: on shared
		// vCPUs the idle round trip is several times smaller, and not fair.
		out = append(out, claimGoal(r))
	}
	if r := rep.Find(ScenarioRecovery + "/P=" + strconv.Itoa(rep.Config.Partitions)); r != nil && r.Extra["p99_over_ttl_plus_scan"] > 0 {
		out = append(out, recoveryGoal(r))
	}
	s, raw, tail := streamResults(rep)
	if s != nil && raw != nil && s.RawCeiling > 0 {
		out = append(out, streamGoal(s))
	}
	if tail != nil && tail.Extra["tail_p50_over_loaded_rtt"] > 0 {
		out = append(out, tailGoal(tail))
	}
	if r := notifyRes(rep); r != nil && r.Extra["notify_p50_over_loaded_rtt"] > 0 {
		out = append(out, notifyGoal(r))
	}
	if r := flowChainRes(rep); r != nil && r.Extra["edge_p50_over_loaded_rtt"] > 0 {
		out = append(out, flowEdgeGoal(r))
	}
	if q, _, _ := admissionResults(rep); q != nil {
		out = append(out, admissionGoal(q))
	}
	if _, c := clusterClaimResults(rep); c != nil {
		out = append(out, clusterClaimGoal(c))
	}
	return append(out, peerGoals(rep.Peers)...)
}

// peerGoals are FlowFabric's capacity against each peer's best.
func peerGoals(c *PeerComparison) []Goal {
	if c == nil {
		return nil
	}
	var out []Goal
	if c.CapacityVsBullMQ > 0 {
		out = append(out, newGoal("peers: FlowFabric capacity / BullMQ best", c.CapacityVsBullMQ, false, bullmqTarget, "×"))
	}
	if c.CapacityVsAsynq > 0 {
		out = append(out, newGoal("peers: FlowFabric capacity / asynq best", c.CapacityVsAsynq, false, asynqTarget, "×"))
	}
	return out
}

// Missed returns the goals the report missed.
func (rep *Report) Missed() []Goal {
	var out []Goal
	for _, g := range Goals(rep) {
		if !g.Met {
			out = append(out, g)
		}
	}
	return out
}
