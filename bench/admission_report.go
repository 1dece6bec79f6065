package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// admission in the reports: headlines, the Markdown section, the HTML card
// and charts.

// admissionClaimTarget is the target for the quota lane's claim
// p50 over the plain lane's.
const admissionClaimTarget = 1.5

// admissionResults are admission's results at the config's partition
// count: the A/B's two variants (nil unless both measured claims) and the
// rate check (nil when absent).
func admissionResults(rep *Report) (quota, plain, rate *Result) {
	key := func(v string) string {
		return ScenarioAdmission + "/" + v + "/P=" + strconv.Itoa(rep.Config.Partitions)
	}
	quota, plain = rep.Find(key(admQuota)), rep.Find(key(admPlain))
	if quota == nil || plain == nil || quota.Latency["claim"] == nil || plain.Latency["claim"] == nil {
		quota, plain = nil, nil
	}
	return quota, plain, rep.Find(key(admRate))
}

// admissionHeadlines are admission's lines: the A/B (claim latency against
// the plain lane, capacity, cost per job) and the rate check.
func admissionHeadlines(rep *Report) []string {
	var out []string
	q, p, rc := admissionResults(rep)
	if q != nil {
		qs, ps := q.Latency["claim"], p.Latency["claim"]
		ratio := q.Extra["claim_p50_vs_plain"]
		out = append(out, fmt.Sprintf("admission A/B at P=%d, %s jobs/s open loop, %.0f interleaved rounds each: claim p50 quota %s vs plain %s = %.2f× "+
			"%s; p99 %s vs %s (%.2f×); capacity (closed loop) %s vs %s jobs/s (%.2f×); per job %.2f vs %.2f FCALLs, %.1f vs %.1f Valkey commands; "+
			"hand-offs: plain lane %.0f%%, quota lane %.0f%% (admitted in the create)",
			q.Partitions, fmtRate(q.OfferedRate), q.Extra["rounds"], fmtUS(qs.P50), fmtUS(ps.P50), ratio,
			admissionGoal(q).Tag(), fmtUS(qs.P99), fmtUS(ps.P99), q.Extra["claim_p99_vs_plain"],
			fmtRate(q.Extra["capacity"]), fmtRate(p.Extra["capacity"]), q.Extra["capacity_vs_plain"], q.FcallsPerOp, p.FcallsPerOp,
			q.CommandsPerOp, p.CommandsPerOp, 100*p.Extra["handoff_share"], 100*q.Extra["handoff_share"]))
	}
	if rc != nil && rc.Extra["admissions"] > 0 {
		x := rc.Extra
		verdict := "PASS"
		if x["windows_over_limit"] > 0 {
			verdict = "FAIL: over the limit"
		} else if x["unobserved_starts"] > 0 {
			verdict = "INCOMPLETE"
		}
		out = append(out, fmt.Sprintf("admission rate check: quota %.0f per %.0fms (%s/s) under %s arrivals/s: at most %.0f admissions in any %.0fms window "+
			"[limit %.0f: %s], mean %.1f per whole window, achieved %s/s = %.2f of the limit; %.0f admissions for %.0f executions (%.0f spent on executions admitted again)",
			x["limit"], x["window_ms"], fmtRate(x["limit_rate"]), fmtRate(rc.OfferedRate), x["max_per_window"], x["window_ms"], x["limit"], verdict,
			x["mean_per_window"], fmtRate(rc.Throughput), x["achieved_vs_limit"], x["admissions"], x["admitted_executions"], x["admissions_spent_twice"]))
	}
	return out
}

// admissionMarkdown writes admission's section: how it is run, the A/B
// table and the rate check.
func admissionMarkdown(b *strings.Builder, rep *Report) {
	q, p, rc := admissionResults(rep)
	if q == nil && rc == nil {
		return
	}
	b.WriteString("## Admission\n\n")
	if q != nil {
		fmt.Fprintf(b, "A/B, interleaved rounds (A B, B A, …; %.0f of each): the same fleet and the same open-loop schedule (%s, %s jobs/s) on a lane whose quota "+
			"never binds (concurrency cap %.0f, no rate: every claim is admitted, in the create's hand-off on one server, else by ClaimForWorker) and on the same lane without a policy "+
			"(claimed as before: hand-offs, arrivals, claims). Each round is a fresh deployment: an open loop (claim latency, the per-job counters), then a closed loop "+
			"(capacity, %d in flight). **claim** runs from the arrival's intended time to the worker holding the lease.\n\n",
			q.Extra["rounds"], md(rep.Config.Arrivals, maxNameRunes), fmtRate(q.OfferedRate), q.Extra["quota_concurrency"], rep.Config.InFlight)
		b.WriteString("| variant | claim p50 | claim p99 | claim p99.9 | e2e p50 | e2e p99 | throughput | capacity (min–max) | FCALLs/job | commands/job | hand-offs |\n" +
			"|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range []*Result{q, p} {
			c, e := r.Latency["claim"], r.Latency["e2e"]
			e50, e99 := "-", "-"
			if e != nil {
				e50, e99 = fmtUS(e.P50), fmtUS(e.P99)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s/s | %s/s (%s–%s) | %.3f | %.2f | %.0f%% |\n", r.Variant, fmtUS(c.P50), fmtUS(c.P99), fmtUS(c.P999),
				e50, e99, fmtRate(r.Throughput), fmtRate(r.Extra["capacity"]), fmtRate(r.Extra["capacity_min"]), fmtRate(r.Extra["capacity_max"]),
				r.FcallsPerOp, r.CommandsPerOp, 100*r.Extra["handoff_share"])
		}
		for _, r := range []*Result{q, p} {
			if r.Extra["rounds"] > 1 {
				fmt.Fprintf(b, "\n%s rounds: claim p50 %s–%s, p99 %s–%s.", r.Variant, fmtUS(r.Extra["claim_p50_round_min"]), fmtUS(r.Extra["claim_p50_round_max"]),
					fmtUS(r.Extra["claim_p99_round_min"]), fmtUS(r.Extra["claim_p99_round_max"]))
			}
		}
		ratio := q.Extra["claim_p50_vs_plain"]
		fmt.Fprintf(b, "\n\nquota / plain claim p50: **%.2f×** (target ≤ %g×: **%s**); p99 %.2f×; capacity %.2f×. Closed loop per job: quota %.2f FCALLs, %.1f commands; plain %.2f, %.1f.\n\n",
			ratio, admissionClaimTarget, admissionGoal(q).Word(), q.Extra["claim_p99_vs_plain"], q.Extra["capacity_vs_plain"],
			q.Extra["capacity_fcalls_per_op"], q.Extra["capacity_commands_per_op"], p.Extra["capacity_fcalls_per_op"], p.Extra["capacity_commands_per_op"])
	}
	if rc != nil {
		x := rc.Extra
		fmt.Fprintf(b, "Rate check: a lane with a quota of %.0f admissions per %.0fms (sliding) under %s arrivals/s (%g× its rate) for %v (the backlog then drains at the quota's rate: every window has work waiting), the engine's scanners "+
			"running in-process (rate-parked work comes back through the delayed scanner, every %.0fms). The admissions are the server's: read from the quota's "+
			"window set while the run goes on, every entry kept. A window over the limit fails the run.\n\n",
			x["limit"], x["window_ms"], fmtRate(rc.OfferedRate), x["overload"], admissionArrivals(rep.Config), x["scan_interval_ms"])
		b.WriteString("| figure | value |\n|---|--:|\n")
		for _, row := range [][2]string{
			{"limit per window", fmt.Sprintf("%.0f", x["limit"])},
			{"**max admissions in any window** (sliding, server times)", fmt.Sprintf("**%.0f**", x["max_per_window"])},
			{"windows over the limit", fmt.Sprintf("%.0f", x["windows_over_limit"])},
			{"mean admissions per whole window", fmt.Sprintf("%.1f (%.0f windows)", x["mean_per_window"], x["whole_windows"])},
			{"achieved admission rate vs the limit's", fmt.Sprintf("%s/s vs %s/s (%.2f)", fmtRate(rc.Throughput), fmtRate(x["limit_rate"]), x["achieved_vs_limit"])},
			{"admissions / executions admitted", fmt.Sprintf("%.0f / %.0f (%.0f admitted more than once)", x["admissions"], x["admitted_executions"], x["executions_admitted_twice"])},
			{"max handler starts in any window (client clock)", fmt.Sprintf("%.0f", x["starts_max_per_window"])},
			{"jobs submitted / completed, lost, duplicated", fmt.Sprintf("%.0f / %.0f, %d, %d", x["submitted"], x["completed"], rc.Lost, rc.Duplicated)},
		} {
			fmt.Fprintf(b, "| %s | %s |\n", row[0], row[1])
		}
		b.WriteString("\nHandler starts follow admissions after a claim round trip, so a window of starts can hold a few more than the limit " +
			"(starts delayed into the next window's admissions); the check is on the admissions.\n\n")
	}
}

// admissionCard is the HTML card: the quota lane's claim p50 over the
// plain lane's, against the target.
func admissionCard(rep *Report) (card, bool) {
	q, p, rc := admissionResults(rep)
	if q == nil {
		return card{}, false
	}
	ratio := q.Extra["claim_p50_vs_plain"]
	cls := "miss"
	if ratio > 0 && ratio <= admissionClaimTarget {
		cls = "good"
	}
	sub := fmt.Sprintf("claim p50 %s vs %s at %s jobs/s · target ≤ %g× · %.2f vs %.2f FCALLs per job · capacity %.2f×",
		fmtUS(q.Latency["claim"].P50), fmtUS(p.Latency["claim"].P50), fmtRate(q.OfferedRate), admissionClaimTarget, q.FcallsPerOp, p.FcallsPerOp,
		q.Extra["capacity_vs_plain"])
	if rc != nil && rc.Extra["admissions"] > 0 {
		sub += fmt.Sprintf(" · rate check: max %.0f per window, limit %.0f", rc.Extra["max_per_window"], rc.Extra["limit"])
	}
	return card{fmt.Sprintf("%.2f×", ratio), "quota lane / plain lane claim p50", sub, cls}, true
}

// admissionCharts are the A/B's claim latency curves (both variants, with
// the plain lane's loaded FCALL p50 as a reference) and the rate check's
// admissions per window against the limit.
func admissionCharts(rep *Report) []chart {
	q, p, rc := admissionResults(rep)
	var out []chart
	if q == nil {
		out = append(out, lineChart("Admission A/B: claim latency", pctAxis(), usAxis("latency"), nil, nil))
	} else {
		var ss []series
		for _, v := range []struct {
			r    *Result
			name string
			dash bool
		}{{q, "claim", false}, {p, "claim", false}, {q, "e2e", true}, {p, "e2e", true}} {
			if s := v.r.Latency[v.name]; s != nil && s.Count > 0 {
				ss = append(ss, series{name: v.r.Variant + " " + v.name, pts: curve(s), dash: v.dash})
			}
		}
		var refs []refLine
		if lr := p.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 {
			refs = append(refs, refLine{lr.P50, "loaded FCALL p50 " + fmtUS(lr.P50)})
		}
		out = append(out, lineChart(fmt.Sprintf("Admission A/B: claim latency, quota lane vs plain lane, %s jobs/s", fmtRate(q.OfferedRate)),
			pctAxis(), usAxis("from the intended arrival"), ss, refs))
	}
	var bars []bar
	title := "Admission rate check"
	if rc != nil && rc.Extra["admissions"] > 0 {
		x := rc.Extra
		title = fmt.Sprintf("Rate check: admissions per %.0fms window, limit %.0f", x["window_ms"], x["limit"])
		bars = []bar{
			{"max in any window", []float64{x["max_per_window"], x["limit"]}},
			{"mean per whole window", []float64{x["mean_per_window"], x["limit"]}},
			{"handler starts, max", []float64{x["starts_max_per_window"], x["limit"]}},
		}
	}
	return append(out, barChart(title, []string{"measured", "limit"}, bars, trimFloat))
}
