package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// flow-dag in the reports: headlines, the Markdown section, the HTML card
// and charts.

// flowResults are flow-dag's results at the config's partition count, in
// report order (fan-out / fan-in, then chains); only those that measured
// edges.
func flowResults(rep *Report) []*Result {
	var out []*Result
	for _, v := range []string{flowFanout, flowChain} {
		if r := rep.Find(ScenarioFlowDAG + "/" + v + "/P=" + strconv.Itoa(rep.Config.Partitions)); r != nil {
			if s := r.Latency["edge"]; s != nil && s.Count > 0 {
				out = append(out, r)
			}
		}
	}
	return out
}

// flowChainRes is the chains' result at the config's partition count, when
// it measured edges: the one the edge target judges.
func flowChainRes(rep *Report) *Result {
	for _, r := range flowResults(rep) {
		if r.Variant == flowChain {
			return r
		}
	}
	return nil
}

// flowShapeLabel names a result's DAG shape: "1 → 100 → 1" or "chains of 20".
func flowShapeLabel(r *Result) string {
	if r.Variant == flowFanout {
		return fmt.Sprintf("fan-out 1 → %.0f → 1", r.Extra["members_per_dag"]-2)
	}
	return fmt.Sprintf("chains of %.0f", r.Extra["members_per_dag"])
}

// flowHeadlines are flow-dag's lines, one per shape: DAG completion, the
// edge latency against one loaded FCALL round trip, and the cost per edge
// and per DAG.
func flowHeadlines(rep *Report) []string {
	var out []string
	for _, r := range flowResults(rep) {
		e, d := r.Latency["edge"], r.Latency["dag_completion"]
		line := fmt.Sprintf("flow DAGs, %s at P=%d, %g DAGs/s:", flowShapeLabel(r), r.Partitions, r.Extra["dag_rate"])
		if d != nil && d.Count > 0 {
			line += fmt.Sprintf(" DAG completion (intended submit → AwaitFlow returns) p50 %s, p99 %s;", fmtUS(d.P50), fmtUS(d.P99))
		}
		line += fmt.Sprintf(" edge (last parent's handler returned → child's handler started) p50 %s, p99 %s", fmtUS(e.P50), fmtUS(e.P99))
		if lr := r.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 {
			line += fmt.Sprintf("; one FCALL round trip under this load p50 %s, so the edge p50 is %.2f× it", fmtUS(lr.P50), r.Extra["edge_p50_over_loaded_rtt"])
			if r.Variant == flowChain && r.Extra["edge_p50_over_loaded_rtt"] > 0 {
				line += " " + flowEdgeGoal(r).Tag()
			} else if r.Variant == flowFanout {
				line += " (its siblings' queueing included; the target judges the chains)"
			}
		}
		out = append(out, line+fmt.Sprintf("; per edge %.3f FCALLs, %.2f Valkey commands (per DAG %.1f, %.0f); %.0f DAGs measured, all completed, %.0f order violations",
			r.FcallsPerOp, r.CommandsPerOp, r.Extra["fcalls_per_dag"], r.Extra["commands_per_dag"], r.Extra["dags"], r.Extra["order_violations"]))
	}
	return out
}

// flowMarkdown writes flow-dag's section: how it is timed, each shape's
// latencies and costs.
func flowMarkdown(b *strings.Builder, rep *Report) {
	rs := flowResults(rep)
	if len(rs) == 0 {
		return
	}
	b.WriteString("## Flow DAGs\n\n")
	fmt.Fprintf(b, "Open loop (%s): whole DAGs are submitted with Client.SubmitFlow (one FCALL each) and awaited with Client.AwaitFlow right after the submit "+
		"(woken by the server's invalidation push). Every member's handler records when it starts and, as the last thing before it returns nil "+
		"(the worker then completes the member, and that call releases its dependants), when it returns. "+
		"**edge** runs from a member's last parent's return to its own handler's start (one sample per member with inbound edges: a fan-in's from its last parent); "+
		"**dag_completion** from the DAG's intended submit time to AwaitFlow's return; flow_notify from the DAG's last handler return to AwaitFlow's return. "+
		"The counters run from the measured phase's first arrival until every one of its DAGs has ended (no warm-up DAG in flight), "+
		"so they are the measured DAGs' whole cost, the idle fleet's and AwaitFlow's commands included, the load probe's left out.\n\n",
		md(rep.Config.Arrivals, maxNameRunes))
	for _, r := range rs {
		fmt.Fprintf(b, "**%s**: %g DAGs/s, %.0f members and %.0f edges each; %.0f DAGs measured (%d edges).\n\n", flowShapeLabel(r), r.Extra["dag_rate"],
			r.Extra["members_per_dag"], r.Extra["edges_per_dag"], r.Extra["dags"], r.Ops)
		b.WriteString("| measure | what | count | p50 | p90 | p99 | p99.9 | max |\n|---|---|--:|--:|--:|--:|--:|--:|\n")
		for _, m := range []struct{ name, what string }{
			{"dag_completion", "intended submit → AwaitFlow returned"},
			{"edge", "last parent's handler returned → child's handler started"},
			{"flow_notify", "the DAG's last handler returned → AwaitFlow returned"},
			{"submit", "the SubmitFlow call (ff_flow_submit)"},
			{"send_lag", "intended submit → SubmitFlow sent (the producer's own lag)"},
			{"fcall_rtt", "one FCALL round trip under the same load"},
		} {
			if s := r.Latency[m.name]; s != nil && s.Count > 0 {
				fmt.Fprintf(b, "| %s | %s | %d | %s | %s | %s | %s | %s |\n", m.name, m.what, s.Count, fmtUS(s.P50), fmtUS(s.P90),
					fmtUS(s.P99), fmtUS(s.P999), fmtUS(s.Max))
			}
		}
		x := r.Extra
		fmt.Fprintf(b, "\nedge p50 / loaded FCALL p50: **%.2f×**; per edge: **%.3f FCALLs**, **%.2f Valkey commands**, %.1f µs of Valkey CPU (the load probe's included); "+
			"per DAG: %.1f FCALLs, %.0f commands, %.0f µs of server time inside FCALLs; %.0f%% of the claims were hand-offs; over the whole run (warm-up included) %.0f DAGs submitted, %.0f ended, "+
			"%.0f not completed; %.0f of %.0f member handlers returned, %d lost, %d duplicated; **%.0f order violations** (a handler that started before all its parents' had returned).\n\n",
			x["edge_p50_over_loaded_rtt"], r.FcallsPerOp, r.CommandsPerOp, r.ValkeyCPUPerOpUS, x["fcalls_per_dag"], x["commands_per_dag"],
			x["fcall_us_per_dag"], 100*x["handoff_share"], x["dags_submitted"], x["dags_ended"], x["dags_not_completed"], x["members_returned"], x["members_submitted"],
			r.Lost, r.Duplicated, x["order_violations"])
	}
}

// flowCard is the HTML card: the chains' edge latency (the fan-out's edges
// include their siblings' queueing) against the loaded round trip.
func flowCard(rep *Report) (card, bool) {
	rs := flowResults(rep)
	if len(rs) == 0 {
		return card{}, false
	}
	r := rs[len(rs)-1] // chains when measured
	var sub []string
	for _, x := range rs {
		sub = append(sub, fmt.Sprintf("%s: edge p50 %s (%.1f× one loaded FCALL), DAG p50 %s, %.2f FCALLs and %.1f commands per edge",
			flowShapeLabel(x), fmtUS(x.Latency["edge"].P50), x.Extra["edge_p50_over_loaded_rtt"], fmtUS(x.Latency["dag_completion"].P50),
			x.FcallsPerOp, x.CommandsPerOp))
	}
	return card{fmtUS(r.Latency["edge"].P50), "flow DAG edge p50, " + flowShapeLabel(r), strings.Join(sub, " · "), ""}, true
}

// flowCharts are flow-dag's latency curves, one chart per shape:
// dag_completion, edge and fcall_rtt, with the loaded round trip's p50 as
// a reference line.
func flowCharts(rep *Report) []chart {
	rs := flowResults(rep)
	if len(rs) == 0 {
		return []chart{lineChart("Flow DAG latency (open loop)", pctAxis(), usAxis("latency"), nil, nil)}
	}
	var out []chart
	for _, r := range rs {
		var ss []series
		for _, name := range []string{"fcall_rtt", "edge", "flow_notify", "dag_completion"} {
			if s := r.Latency[name]; s != nil && s.Count > 0 {
				ss = append(ss, series{name: name, pts: curve(s)})
			}
		}
		var refs []refLine
		if lr := r.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 {
			refs = append(refs, refLine{lr.P50, "loaded FCALL p50 " + fmtUS(lr.P50)})
		}
		out = append(out, lineChart(fmt.Sprintf("Flow DAGs, %s, open loop at %g DAGs/s", flowShapeLabel(r), r.Extra["dag_rate"]),
			pctAxis(), usAxis("latency"), ss, refs))
	}
	return out
}
