package bench

import (
	"fmt"

	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
)

// fmtRate prints a rate with a k/M suffix.
func fmtRate(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.2fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// fmtUS prints microseconds as µs or ms.
func fmtUS(v float64) string {
	switch {
	case v <= 0:
		return "-"
	case v >= 1e6:
		return fmt.Sprintf("%.2fs", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fms", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.2fms", v/1e3)
	}
	return fmt.Sprintf("%.0fµs", v)
}

func fmtRatio(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", v)
}

// headline picks the latency a result is judged by.
func headline(r *Result) (string, *Summary) {
	names := []string{"resume", "claim", "e2e", "crash_to_completion", "renew_round", "append_tail", "append_round", "edge"}
	if r.Scenario == ScenarioPeers {
		names = []string{"handler_start"} // the one latency every system has: idle pickup
	}
	closed := r.Variant == "closed" || strings.Contains(r.Variant, "/closed-")
	for _, name := range names {
		if closed && name != "renew_round" {
			continue // a closed loop's latency hides queueing; its figure is throughput
		}
		if s := r.Latency[name]; s != nil && s.Count > 0 {
			return name, s
		}
	}
	return "", nil
}

// SummaryTable renders the results as an aligned text table.
func SummaryTable(rep *Report) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tvariant\tP\tthroughput\tceiling\tratio\tlatency\tp50\tp99\tp99.9\tcmds/op\tcpu µs/op\tallocs/op\tlost\tdup")
	for _, r := range rep.Results {
		name, s := headline(r)
		p50, p99, p999 := "-", "-", "-"
		if s != nil {
			p50, p99, p999 = fmtUS(s.P50), fmtUS(s.P99), fmtUS(s.P999)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s %s/s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.1f\t%.0f\t%d\t%d\n",
			clean(r.Scenario, maxNameRunes), dash(clean(r.Variant, maxNameRunes)), r.Partitions, fmtRate(r.Throughput),
			clean(r.Unit, maxNameRunes), fmtRate(r.RawCeiling),
			fmtRatio(r.RatioToCeiling), dash(name), p50, p99, p999, r.CommandsPerOp, r.ValkeyCPUPerOpUS,
			r.AllocsPerOp, r.Lost, r.Duplicated)
	}
	tw.Flush()
	if a := rep.Anchors.SerialFCALL; a != nil {
		fmt.Fprintf(&b, "\nanchors: serial FCALL round trip p50 %s (mean %s, %s calls/s); pipelined FCALL ceiling %s calls/s (%d conns × %d deep)\n",
			fmtUS(a.P50), fmtUS(a.Mean), fmtRate(rep.Anchors.SerialRate), fmtRate(rep.Anchors.PipelinedRate),
			rep.Anchors.PipelineConns, rep.Anchors.PipelineDepth)
	}
	if hs := Headlines(rep); len(hs) > 0 {
		b.WriteString("\nheadlines:\n")
		for _, h := range hs {
			fmt.Fprintln(&b, "  "+h)
		}
	}
	if ds := DetailLines(rep); len(ds) > 0 {
		b.WriteString("detail:\n")
		for _, d := range ds {
			fmt.Fprintln(&b, "  "+d)
		}
	}
	if rep.Capacity != nil {
		b.WriteString("\ncapacity search, every step by rate:\n" + CapacityTable(rep.Capacity))
	}
	if gs := Goals(rep); len(gs) > 0 {
		met := 0
		for _, g := range gs {
			if g.Met {
				met++
			}
		}
		fmt.Fprintf(&b, "\ntargets: %d met, %d missed\n", met, len(gs)-met)
		for _, g := range gs {
			fmt.Fprintln(&b, "  "+g.String())
		}
	}
	if rep.Calibration != nil {
		b.WriteString("\n" + CalibrationTable(rep.Calibration))
	}
	if rep.Sizing != nil {
		b.WriteString("\n" + SizingText(rep.Sizing))
	}
	if rep.OK() {
		fmt.Fprintf(&b, "\ncorrectness: no lost and no duplicated completions\n")
	} else {
		fmt.Fprintf(&b, "\ncorrectness FAILED: %d lost, %d duplicated\n", rep.Lost, rep.Duplicated)
		for _, f := range rep.Failures {
			fmt.Fprintln(&b, "  "+clean(f, maxTextRunes))
		}
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Headlines are the figures the issue asks for, one line each, a capacity
// search's first: each target's line carries its verdict ("[target ≥ 0.9:
// PASS]").
func Headlines(rep *Report) []string {
	var out []string
	if rep.Capacity != nil {
		out = append(out, capacityHeadline(rep))
	}
	if r := rep.Find(ScenarioRenew + "/sdk/P=16"); r != nil && r.RawCeiling > 0 {
		out = append(out, fmt.Sprintf("renew throughput at P=16: %s renewals/s = %.3f of the raw pipelined ceiling (%s/s) %s",
			fmtRate(r.Throughput), r.RatioToCeiling, fmtRate(r.RawCeiling), renewGoal(r).Tag()))
	}
	key := ScenarioClaimHandoff + "/%s/P=" + strconv.Itoa(rep.Config.Partitions)
	if h, p := rep.Find(fmt.Sprintf(key, "handoff")), rep.Find(fmt.Sprintf(key, "push")); h != nil && p != nil && h.Extra["claim_p50_vs_push"] > 0 {
		out = append(out, fmt.Sprintf("hand-off vs arrival push (%s arrivals/s, %.0f interleaved rounds each): claim p50 %s vs %s = %.2f×; %.2f vs %.2f FCALLs per job",
			fmtRate(h.OfferedRate), h.Extra["rounds"], fmtUS(h.Latency["claim"].P50), fmtUS(p.Latency["claim"].P50),
			h.Extra["claim_p50_vs_push"], h.FcallsPerOp, p.FcallsPerOp))
	}
	if l := clusterClaimHeadline(rep); l != "" {
		out = append(out, l)
	}
	if r := rep.Find(ScenarioE2E + "/closed/P=" + strconv.Itoa(rep.Config.Partitions)); r != nil && r.RawCeiling > 0 {
		out = append(out, fmt.Sprintf("e2e capacity: %s jobs/s = %.3f of the raw FCALL ceiling (%.2f FCALLs per job: %.0f%% of the ceiling's FCALLs)",
			fmtRate(r.Throughput), r.RatioToCeiling, r.FcallsPerOp, 100*r.Extra["fcall_utilisation"]))
	}
	if r := rep.Find(ScenarioRecovery + "/P=" + strconv.Itoa(rep.Config.Partitions)); r != nil {
		if s := r.Latency["crash_to_completion"]; s != nil && s.Count > 0 {
			line := fmt.Sprintf("recovery: crash → completion p50 %s, p99 %s (lease TTL %v, scan every %v)",
				fmtUS(s.P50), fmtUS(s.P99), rep.Config.LeaseTTL, rep.Config.ScanInterval)
			if r.Extra["p99_over_ttl_plus_scan"] > 0 {
				line += fmt.Sprintf("; p99 = %.2f of TTL + scan %s", r.Extra["p99_over_ttl_plus_scan"], recoveryGoal(r).Tag())
			}
			out = append(out, line)
		}
	}
	if l := signalHeadline(rep); l != "" {
		out = append(out, l)
	}
	out = append(out, streamHeadlines(rep)...)
	if l := notifyHeadline(rep); l != "" {
		out = append(out, l)
	}
	out = append(out, flowHeadlines(rep)...)
	out = append(out, admissionHeadlines(rep)...)
	if h := durabilityHeadline(rep); h != "" {
		out = append(out, h)
	}
	if h := sizingHeadline(rep.Sizing); h != "" {
		out = append(out, h)
	}
	return append(out, peerHeadlines(rep.Peers)...)
}

// DetailLines are the figures behind the headlines: the claim latency
// against the serial FCALL round trip of an idle server (the ratio the
// claim target is set against), and a capacity search's at its found
// rate.
func DetailLines(rep *Report) []string {
	var out []string
	if rep.Capacity != nil {
		if d := capacityDetail(rep); d != "" {
			out = append(out, d)
		}
	}
	if r := claimHeadline(rep); r != nil {
		s := r.Latency["claim"]
		line := fmt.Sprintf("claim latency at P=%d, %s arrivals/s: p50 %s = %.2f× the serial FCALL round trip",
			r.Partitions, fmtRate(r.OfferedRate), fmtUS(s.P50), r.Extra["claim_p50_over_serial_rtt"])
		if cc, calls := r.Extra["claim_call_p50_over_serial_rtt"], r.Latency["claim_call"]; cc > 0 && calls != nil {
			// How many claims it covers: with hand-offs a run has few
			// claim calls, and their p50 is not the claims'.
			line += fmt.Sprintf(" (claim call alone, %d of %d claims: %.2f×)", calls.Count, s.Count, cc)
		}
		if hs := r.Extra["handoff_share"]; hs > 0 {
			line += fmt.Sprintf("; %.0f%% handed over by the create (no claim call)", 100*hs)
		}
		if lr := r.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 {
			line += fmt.Sprintf("; under this load one FCALL round trip takes p50 %s (%.2f× serial), so the claim is %.2f× a loaded round trip %s",
				fmtUS(lr.P50), r.Extra["loaded_rtt_p50_over_serial_rtt"], r.Extra["claim_p50_over_loaded_rtt"], claimGoal(r).Tag())
		}
		if sl, sb := r.Latency["send_lag"], r.Latency["submit"]; sl != nil && sb != nil && sl.Count > 0 {
			line += fmt.Sprintf("; stages (p50): producer's lag %s, submit call %s", fmtUS(sl.P50), fmtUS(sb.P50))
			if cc := r.Latency["claim_call"]; cc != nil && cc.Count > 0 {
				line += ", claim call " + fmtUS(cc.P50)
			}
		}
		line += gcTail(r, s)
		out = append(out, line)
	}
	return out
}

// gcTail describes a latency tail s of run r beside what this process's
// collector did in r's window (runPipeline's gc_* extras): its mark
// phases are where an open loop's tail comes from on a small machine.
// Empty when r has no such figures.
func gcTail(r *Result, s *Summary) string {
	n, ok := r.Extra["gc_cycles"]
	if !ok || s == nil || s.P50 <= 0 {
		return ""
	}
	line := fmt.Sprintf("; tail: p99 %s = %.1f× p50, while this process's collector ran %.0f times", fmtUS(s.P99), s.P99/s.P50, n)
	if every := r.Extra["gc_every_ms"]; every > 0 {
		line += fmt.Sprintf(" (every %.0f ms", every)
		if share, ok := r.Extra["gc_cpu_share"]; ok {
			line += fmt.Sprintf(", %.1f%% of its CPU", 100*share)
		}
		line += ")"
	}
	return line
}

// signalResult is the signal-resume result at the config's partition
// count, or nil.
func signalResult(rep *Report) *Result {
	if r := rep.Find(ScenarioSignalResume + "/P=" + strconv.Itoa(rep.Config.Partitions)); r != nil {
		if s := r.Latency["resume"]; s != nil && s.Count > 0 {
			return r
		}
	}
	return nil
}

// signalHeadline is signal-resume's line: resume p50/p99 against one FCALL
// round trip under the same load, and the cycle's cost.
func signalHeadline(rep *Report) string {
	r := signalResult(rep)
	if r == nil {
		return ""
	}
	s := r.Latency["resume"]
	line := fmt.Sprintf("signal → resume at P=%d, %s cycles/s (each signal due %gms after its submit's intended time): p50 %s, p99 %s, p99.9 %s from the intended delivery",
		r.Partitions, fmtRate(r.OfferedRate), r.Extra["signal_wait_ms"], fmtUS(s.P50), fmtUS(s.P99), fmtUS(s.P999))
	if lr := r.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 {
		line += fmt.Sprintf("; one FCALL round trip under this load p50 %s, so the resume p50 is %.2f× it", fmtUS(lr.P50), r.Extra["resume_p50_over_loaded_rtt"])
	}
	if sc := r.Latency["signal"]; sc != nil && sc.Count > 0 {
		line += fmt.Sprintf(" (the DeliverSignal call alone: p50 %s)", fmtUS(sc.P50))
	}
	return line + fmt.Sprintf("; per cycle (submit → suspend → signal → resume → complete): %.2f FCALLs, %.1f Valkey commands", r.FcallsPerOp, r.CommandsPerOp)
}

// signalMarkdown writes signal-resume's section: how it is timed, its
// latencies and its cost per cycle.
func signalMarkdown(b *strings.Builder, rep *Report) {
	r := signalResult(rep)
	if r == nil {
		return
	}
	b.WriteString("## Signal → resume\n\n")
	fmt.Fprintf(b, "Open loop: executions arrive at %s/s (%s); a fresh attempt suspends (one waitpoint) and hands its token to a signaller, "+
		"which delivers the signal at the execution's intended submit time + %gms; the resumed attempt records its start, reads its signal and completes. "+
		"Resume latency runs from the signal's **intended** delivery time to the resumed handler's start. "+
		"One cycle is submit → suspend → signal → resume → complete.\n\n",
		fmtRate(r.OfferedRate), md(rep.Config.Arrivals, maxNameRunes), r.Extra["signal_wait_ms"])
	b.WriteString("| measure | what | count | p50 | p90 | p99 | p99.9 | max |\n|---|---|--:|--:|--:|--:|--:|--:|\n")
	for _, m := range []struct{ name, what string }{
		{"resume", "intended delivery → resumed handler start"},
		{"signal_lag", "intended delivery → signal sent (the signaller's own lag)"},
		{"signal", "the DeliverSignal call (ff_signal)"},
		{"suspend", "intended submit → token in the signaller's hands"},
		{"fcall_rtt", "one FCALL round trip under the same load"},
	} {
		if s := r.Latency[m.name]; s != nil && s.Count > 0 {
			fmt.Fprintf(b, "| %s | %s | %d | %s | %s | %s | %s | %s |\n", m.name, m.what, s.Count, fmtUS(s.P50), fmtUS(s.P90),
				fmtUS(s.P99), fmtUS(s.P999), fmtUS(s.Max))
		}
	}
	fmt.Fprintf(b, "\nresume p50 / loaded FCALL p50: **%.2f×**; per cycle: **%.2f FCALLs**, **%.1f Valkey commands**, %.0f µs of Valkey CPU (the load probe's included); "+
		"%.0f cycles in the window; over the whole run (warm-up included) %.0f executions suspended, %.0f signals delivered, %.0f lost, %.0f duplicated; "+
		"%.0f suspends landed after their signal was due.\n\n",
		r.Extra["resume_p50_over_loaded_rtt"], r.FcallsPerOp, r.CommandsPerOp, r.ValkeyCPUPerOpUS, float64(r.Ops),
		r.Extra["suspended"], r.Extra["signals_delivered"], r.Extra["signals_lost"], r.Extra["signals_duplicated"], r.Extra["late_tokens"])
}

// p50Mean shows a serial row's "p50 (mean)"; "-" for a pipelined row.
func p50Mean(p50, mean float64) string {
	if p50 == 0 && mean == 0 {
		return "-"
	}
	return fmtUS(p50) + " (" + fmtUS(mean) + ")"
}

// CalibrationTable renders a calibration.
func CalibrationTable(c *Calibration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "calibration against valkey-benchmark (tolerance ±%.0f%%):\n", 100*c.Tolerance)
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  command\tmode\tconns×depth\tffbench/s\tvalkey-benchmark/s\tffbench p50 (mean)\tvb p50 (mean)\tdiff\t")
	for _, r := range c.Rows {
		ok := "ok"
		if !r.Within {
			ok = "OUTSIDE"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d×%d\t%s\t%s\t%s\t%s\t%+.1f%%\t%s\n", clean(r.Command, maxNameRunes), clean(r.Mode, maxNameRunes), r.Conns, r.Depth,
			fmtRate(r.FFBench), fmtRate(r.ValkeyBenchmark), p50Mean(r.FFBenchP50US, r.FFBenchMeanUS),
			p50Mean(r.ValkeyBenchmarkP50US, r.ValkeyBenchmarkMeanUS), 100*r.Diff, ok)
	}
	tw.Flush()
	b.WriteString("  diff: serial rows compare the round trip's p50 (the anchor's figure, median of rounds), pipelined rows the best round's rate\n")
	if c.ServerPinned {
		b.WriteString("  the server's main thread was kept on another CPU than both tools' clients\n")
	}
	return b.String()
}

// Markdown renders the report as Markdown. Every string from the report is
// escaped (md): a name with | or a newline stays in its table cell, and no
// name becomes markup; a profile is a link only when its path is relative.
func Markdown(rep *Report) string {
	var b strings.Builder
	name := func(s string) string { return md(s, maxNameRunes) }
	fmt.Fprintf(&b, "# ffbench report: %s profile\n\n", name(rep.Profile))
	fmt.Fprintf(&b, "%s · git %s · Valkey %s (%s, %d primaries%s) · %d cores · %s %s/%s · %.0fs\n\n",
		rep.CreatedAt.Format("2006-01-02 15:04 MST"), name(short(rep.GitSHA)), name(rep.Valkey.Version), name(rep.Valkey.Topology),
		rep.Valkey.Primaries, embedded(rep), rep.Cores, name(rep.GoVersion), name(rep.OS), name(rep.Arch), rep.ElapsedS)
	if rep.OK() {
		b.WriteString("**Correctness: passed** (no lost, no duplicated completions).\n\n")
	} else {
		fmt.Fprintf(&b, "**Correctness: FAILED**: %d lost, %d duplicated.\n\n", rep.Lost, rep.Duplicated)
		for _, f := range rep.Failures {
			fmt.Fprintf(&b, "- %s\n", md(f, maxTextRunes))
		}
		b.WriteString("\n")
	}
	if h := Headlines(rep); len(h) > 0 {
		b.WriteString("## Headlines\n\n")
		for _, l := range h {
			fmt.Fprintf(&b, "- %s\n", l)
		}
		b.WriteString("\n")
	}
	capacityMarkdown(&b, rep)
	if d := DetailLines(rep); len(d) > 0 {
		b.WriteString("## Detail\n\n")
		for _, l := range d {
			fmt.Fprintf(&b, "- %s\n", l)
		}
		b.WriteString("\n")
	}
	if gs := Goals(rep); len(gs) > 0 {
		b.WriteString("## Targets\n\n")
		for _, g := range gs {
			fmt.Fprintf(&b, "- **%s** %s\n", g.Word(), md(g.judged(), maxTextRunes))
		}
		b.WriteString("\n")
	}
	if a := rep.Anchors.SerialFCALL; a != nil {
		fmt.Fprintf(&b, "## Anchors (same server, same run)\n\n| figure | value |\n|---|---|\n")
		fmt.Fprintf(&b, "| serial FCALL round trip p50 / p99 / mean | %s / %s / %s |\n", fmtUS(a.P50), fmtUS(a.P99), fmtUS(a.Mean))
		fmt.Fprintf(&b, "| serial FCALL rate | %s/s |\n", fmtRate(rep.Anchors.SerialRate))
		fmt.Fprintf(&b, "| pipelined FCALL ceiling (%d conns × %d deep) | %s/s |\n\n", rep.Anchors.PipelineConns,
			rep.Anchors.PipelineDepth, fmtRate(rep.Anchors.PipelinedRate))
	}
	peerMarkdown(&b, rep.Peers)
	signalMarkdown(&b, rep)
	streamMarkdown(&b, rep)
	notifyMarkdown(&b, rep)
	flowMarkdown(&b, rep)
	admissionMarkdown(&b, rep)
	durabilityMarkdown(&b, rep)
	sizingMarkdown(&b, rep.Sizing)
	b.WriteString("## Results\n\n")
	b.WriteString("| scenario | variant | P | workers | window | offered/s | throughput | raw ceiling | ratio | latency | p50 | p90 | p99 | p99.9 | max | cmds/op | FCALLs/op | Valkey CPU µs/op | allocs/op | lost | dup |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rep.Results {
		lname, s := headline(r)
		lat := []string{"-", "-", "-", "-", "-"}
		if s != nil {
			lat = []string{fmtUS(s.P50), fmtUS(s.P90), fmtUS(s.P99), fmtUS(s.P999), fmtUS(s.Max)}
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %.1fs | %s | %s %s/s | %s | %s | %s | %s | %.2f | %.2f | %.1f | %.0f | %d | %d |\n",
			name(r.Scenario), dash(name(r.Variant)), r.Partitions, r.Workers, r.DurationS, fmtRate(r.OfferedRate),
			fmtRate(r.Throughput), name(r.Unit), fmtRate(r.RawCeiling), fmtRatio(r.RatioToCeiling), dash(lname),
			strings.Join(lat, " | "), r.CommandsPerOp, r.FcallsPerOp, r.ValkeyCPUPerOpUS, r.AllocsPerOp, r.Lost, r.Duplicated)
	}
	b.WriteString("\n## Latency detail (µs)\n\n| result | measure | count | p50 | p90 | p99 | p99.9 | max |\n|---|---|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rep.Results {
		names := make([]string, 0, len(r.Latency))
		for n := range r.Latency {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			s := r.Latency[n]
			fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %.0f | %.0f | %.0f | %.0f |\n", name(r.Key()), name(n), s.Count, s.P50, s.P90, s.P99, s.P999, s.Max)
		}
	}
	if rep.Calibration != nil {
		b.WriteString("\n## Calibration\n\n" + codeBlock(CalibrationTable(rep.Calibration)))
	}
	if len(rep.Notes) > 0 || len(rep.Profiles) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range rep.Notes {
			fmt.Fprintf(&b, "- %s\n", md(n, maxTextRunes))
		}
		for _, k := range sortedKeys(rep.Profiles) {
			path := rep.Profiles[k]
			if href, ok := relLink(path); ok {
				fmt.Fprintf(&b, "- %s profile: [%s](%s)\n", name(k), md(path, maxTextRunes), href)
			} else {
				fmt.Fprintf(&b, "- %s profile: %s (not a path relative to the report: not linked)\n", name(k), md(path, maxTextRunes))
			}
		}
	}
	b.WriteString("\n## Go benchmark format\n\n" + codeBlock(BenchLines(rep)))
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func short(sha string) string {
	if len(sha) > 12 && !strings.HasSuffix(sha, "-dirty") {
		return sha[:12]
	}
	if i := strings.Index(sha, "-dirty"); i > 12 {
		return sha[:12] + "-dirty"
	}
	return sha
}

func embedded(rep *Report) string {
	if rep.Valkey.Embedded {
		return ", embedded"
	}
	return ""
}

// BenchLines renders the results in the Go benchmark format, one line per
// result (and one for a capacity search's found rate), so benchstat can
// compare two runs:
//
//	BenchmarkRenewThroughput/sdk/P=16-2  83412  11.99 us/op  83412 renewals/s  0.957 ratio ...
//
// The iteration count is the ops measured; ns/op-like units are per op.
func BenchLines(rep *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "goos: %s\ngoarch: %s\npkg: github.com/flowfabric/flowfabric-go/bench\n", token(rep.OS), token(rep.Arch))
	procs := rep.GOMAXPROCS
	for _, r := range rep.Results {
		name := "Benchmark" + camel(token(r.Scenario))
		if r.Variant != "" {
			name += "/" + token(r.Variant)
		}
		name += "/P=" + strconv.Itoa(r.Partitions)
		if procs > 1 {
			name += "-" + strconv.Itoa(procs)
		}
		fmt.Fprintf(&b, "%s\t%d", name, max(r.Ops, 1))
		unit := strings.TrimSuffix(token(r.Unit), "s")
		if r.Throughput > 0 {
			fmt.Fprintf(&b, "\t%.4g %s/s", r.Throughput, unit)
		}
		if r.RatioToCeiling > 0 {
			fmt.Fprintf(&b, "\t%.4g ratio", r.RatioToCeiling)
		}
		for _, name := range []string{"claim", "handler_start", "e2e", "claim_call", "crash_to_completion", "renew_round", "resume",
			"append_tail", "append_round", "edge", "dag_completion"} {
			if s := r.Latency[name]; s != nil && s.Count > 0 {
				fmt.Fprintf(&b, "\t%.4g %s-p50-us\t%.4g %s-p99-us", s.P50, name, s.P99, name)
			}
		}
		if r.Ops > 0 {
			fmt.Fprintf(&b, "\t%.4g cmds/%s\t%.4g valkey-cpu-us/%s", r.CommandsPerOp, unit, r.ValkeyCPUPerOpUS, unit)
			if r.AllocsPerOp > 0 {
				fmt.Fprintf(&b, "\t%.4g allocs/%s", r.AllocsPerOp, unit)
			}
		}
		b.WriteString("\n")
	}
	// A capacity search: the found rate (median) and its range; the
	// iteration count is the steps measured.
	if c := rep.Capacity; c != nil && c.Met() {
		name := "BenchmarkCapacity/P=" + strconv.Itoa(c.Partitions)
		if procs > 1 {
			name += "-" + strconv.Itoa(procs)
		}
		steps := 0
		for _, s := range c.Searches {
			steps += len(s.Steps)
		}
		fmt.Fprintf(&b, "%s\t%d\t%.4g jobs/s\t%.4g min-jobs/s\t%.4g max-jobs/s\n", name, max(steps, 1), c.Rate, c.RateMin, c.RateMax)
	}
	return b.String()
}

// camel turns "renew-throughput" into "RenewThroughput".
func camel(s string) string {
	var b strings.Builder
	up := true
	for _, c := range s {
		if c == '-' || c == '_' {
			up = true
			continue
		}
		if up {
			c = unicode.ToUpper(c)
			up = false
		}
		b.WriteRune(c)
	}
	return b.String()
}
