package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// stream-append in the reports: headlines, the Markdown section, the HTML
// card and charts.

// streamResults are stream-append's results at the config's partition
// count: the SDK slices (with the raw ceiling set), the raw slices and the
// tailed stream; each nil when absent or empty.
func streamResults(rep *Report) (sdkRes, rawRes, tailRes *Result) {
	p := "/P=" + strconv.Itoa(rep.Config.Partitions)
	if r := rep.Find(ScenarioStreamAppend + "/sdk" + p); r != nil && r.Ops > 0 {
		sdkRes = r
	}
	if r := rep.Find(ScenarioStreamAppend + "/raw" + p); r != nil && r.Ops > 0 {
		rawRes = r
	}
	if r := rep.Find(ScenarioStreamAppend + "/tail" + p); r != nil {
		if s := r.Latency["append_tail"]; s != nil && s.Count > 0 {
			tailRes = r
		}
	}
	return sdkRes, rawRes, tailRes
}

// streamHeadlines are stream-append's lines: the SDK's append rate against
// raw pipelined XADDs with each side's cost per frame, and append → tail
// latency against one loaded FCALL round trip.
func streamHeadlines(rep *Report) []string {
	sdkRes, rawRes, tailRes := streamResults(rep)
	var out []string
	if sdkRes != nil && rawRes != nil && sdkRes.RawCeiling > 0 {
		out = append(out, fmt.Sprintf("stream append at P=%d, %.0f streams, %.0f-byte frames: SDK (Task.Emit) %s frames/s = %.3f of raw pipelined XADD (%s frames/s) %s, "+
			"slice pairs %.2f–%.2f; per frame: SDK %.4f FCALLs, %.3f commands, %.2f µs Valkey CPU (%.2f µs inside FCALL); raw %.3f commands, %.2f µs Valkey CPU (%.2f µs inside XADD)",
			sdkRes.Partitions, sdkRes.Extra["streams"], sdkRes.Extra["payload_bytes"], fmtRate(sdkRes.Throughput), sdkRes.RatioToCeiling, fmtRate(rawRes.Throughput), streamGoal(sdkRes).Tag(),
			sdkRes.Extra["ratio_slice_min"], sdkRes.Extra["ratio_slice_max"], sdkRes.FcallsPerOp, sdkRes.CommandsPerOp, sdkRes.ValkeyCPUPerOpUS,
			sdkRes.Extra["fcall_us_per_frame"], rawRes.CommandsPerOp, rawRes.ValkeyCPUPerOpUS, rawRes.Extra["xadd_us_per_frame"]))
	}
	if tailRes != nil {
		s := tailRes.Latency["append_tail"]
		line := fmt.Sprintf("append → tail at %s frames/s (one stream, open loop): p50 %s, p90 %s, p99 %s, p99.9 %s from Task.Emit to the tailer (p50 %s from the intended time)",
			fmtRate(tailRes.OfferedRate), fmtUS(s.P50), fmtUS(s.P90), fmtUS(s.P99), fmtUS(s.P999), fmtUS(schedP50(tailRes)))
		if lr := tailRes.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 {
			line += fmt.Sprintf("; one FCALL round trip under this load p50 %s, so the tail p50 is %.2f× it %s", fmtUS(lr.P50),
				tailRes.Extra["tail_p50_over_loaded_rtt"], tailGoal(tailRes).Tag())
		}
		out = append(out, line+fmt.Sprintf("; %.0f of %.0f frames tailed once, in order; %.3f FCALLs and %.2f commands per frame (the tailer's reads included)",
			tailRes.Extra["frames_seen"], tailRes.Extra["frames_emitted"], tailRes.FcallsPerOp, tailRes.CommandsPerOp))
	}
	return out
}

// schedP50 is the append → tail p50 from the intended time; 0 without it.
func schedP50(r *Result) float64 {
	if s := r.Latency["append_tail_sched"]; s != nil {
		return s.P50
	}
	return 0
}

// streamMarkdown writes stream-append's section: the throughput A/B with
// both sides' costs, and the append → tail latencies.
func streamMarkdown(b *strings.Builder, rep *Report) {
	sdkRes, rawRes, tailRes := streamResults(rep)
	if (sdkRes == nil || rawRes == nil) && tailRes == nil {
		return
	}
	b.WriteString("## Stream append\n\n")
	if sdkRes != nil && rawRes != nil {
		fmt.Fprintf(b, "Throughput: in SDK slices, %.0f handlers (one execution each) call Task.Emit flat out with %.0f-byte frames for %gs, then Flush "+
			"(frames emitted while an append is in flight ride on the next ff_append); in raw slices as many goroutines send the same frames to fresh stream keys "+
			"as XADD key MAXLEN ~ %d * t … p …, %d per pipelined DoMulti through valkey-go. %.0f slices of each, interleaved ABBA; each slice is timed from its start to its last reply.\n\n",
			sdkRes.Extra["streams"], sdkRes.Extra["payload_bytes"], sdkRes.Extra["slice_s"], streamRawMaxLen, streamRawBatch, sdkRes.Extra["slices"])
		b.WriteString("| side | frames/s | frames | commands/frame | FCALLs/frame | Valkey CPU µs/frame | server µs/frame in FCALL | in XADD | XADD µs/call | frames per call | client CPU µs/frame | round p50 | round p99 |\n")
		b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range []*Result{sdkRes, rawRes} {
			p50, p99 := "-", "-"
			if s := r.Latency["append_round"]; s != nil && s.Count > 0 {
				p50, p99 = fmtUS(s.P50), fmtUS(s.P99)
			}
			perCall := float64(streamRawBatch)
			if r == sdkRes {
				perCall = r.Extra["frames_per_append"]
			}
			fmt.Fprintf(b, "| %s | %s | %d | %.3f | %.4f | %.2f | %.2f | %.2f | %.2f | %.1f | %.2f | %s | %s |\n", md(r.Variant, maxNameRunes), fmtRate(r.Throughput), r.Ops,
				r.CommandsPerOp, r.FcallsPerOp, r.ValkeyCPUPerOpUS, r.Extra["fcall_us_per_frame"], r.Extra["xadd_us_per_frame"], r.Extra["xadd_us_per_call"],
				perCall, r.Extra["client_cpu_us_per_frame"], p50, p99)
		}
		fmt.Fprintf(b, "\nSDK / raw: **%.3f** (target ≥ 0.8; per slice pair %.3f–%.3f). A round is one AppendFrames call (SDK) or one DoMulti (raw); "+
			"server time comes from INFO commandstats (an FCALL's includes the XADDs its function ran), client CPU from this process's rusage.\n\n",
			sdkRes.RatioToCeiling, sdkRes.Extra["ratio_slice_min"], sdkRes.Extra["ratio_slice_max"])
	}
	if tailRes != nil {
		fmt.Fprintf(b, "Latency: one handler emits a frame at each intended time of an open-loop schedule (%s, %s frames/s) while a tailer on its own client follows "+
			"the attempt's stream with Client.Tail; append_tail runs from the handler's Task.Emit call to the tailer's receipt, as fcall_rtt runs from the probe's send; "+
			"append_tail_sched from the frame's **intended** time (it adds emit_lag, the handler's lag behind the schedule).\n\n",
			md(rep.Config.Arrivals, maxNameRunes), fmtRate(tailRes.OfferedRate))
		b.WriteString("| measure | what | count | p50 | p90 | p99 | p99.9 | max |\n|---|---|--:|--:|--:|--:|--:|--:|\n")
		for _, m := range []struct{ name, what string }{
			{"append_tail", "Task.Emit called → the tailer has the frame"},
			{"append_tail_sched", "intended time → the tailer has the frame"},
			{"emit_lag", "intended time → Task.Emit called (the handler's own lag)"},
			{"append_round", "one AppendFrames call (ff_append)"},
			{"fcall_rtt", "one FCALL round trip under the same load"},
		} {
			if s := tailRes.Latency[m.name]; s != nil && s.Count > 0 {
				fmt.Fprintf(b, "| %s | %s | %d | %s | %s | %s | %s | %s |\n", m.name, m.what, s.Count, fmtUS(s.P50), fmtUS(s.P90),
					fmtUS(s.P99), fmtUS(s.P999), fmtUS(s.Max))
			}
		}
		e := tailRes.Extra
		fmt.Fprintf(b, "\nappend → tail p50 / loaded FCALL p50: **%.2f×**; over the whole run (warm-up included) %.0f frames emitted, %.0f tailed in order, "+
			"%.0f duplicated, %.0f missing; %.2f frames per append; per frame in the window: %.3f FCALLs, %.2f Valkey commands (the tailer's reads included).\n\n",
			e["tail_p50_over_loaded_rtt"], e["frames_emitted"], e["frames_seen"], e["frames_duplicated"], e["frames_missing"], e["frames_per_append"],
			tailRes.FcallsPerOp, tailRes.CommandsPerOp)
	}
}

// streamCard is the HTML card: SDK / raw append throughput.
func streamCard(rep *Report) (card, bool) {
	sdkRes, rawRes, tailRes := streamResults(rep)
	if sdkRes == nil || rawRes == nil || sdkRes.RawCeiling <= 0 {
		return card{}, false
	}
	sub := fmt.Sprintf("%s vs %s frames/s (raw pipelined XADD) · target ≥ 0.8 · %.4f FCALLs, %.2f µs Valkey CPU per frame (raw %.2f)",
		fmtRate(sdkRes.Throughput), fmtRate(rawRes.Throughput), sdkRes.FcallsPerOp, sdkRes.ValkeyCPUPerOpUS, rawRes.ValkeyCPUPerOpUS)
	if tailRes != nil {
		sub += fmt.Sprintf(" · append → tail p50 %s at %s frames/s", fmtUS(tailRes.Latency["append_tail"].P50), fmtRate(tailRes.OfferedRate))
	}
	cls := "miss"
	if sdkRes.RatioToCeiling >= 0.8 {
		cls = "good"
	}
	return card{fmt.Sprintf("%.2f×", sdkRes.RatioToCeiling), "stream append: SDK / raw XADD", sub, cls}, true
}

// streamCharts are stream-append's charts: frames/s and Valkey CPU per
// frame of both sides, and the append → tail latency curves with the
// loaded FCALL round trip's p50.
func streamCharts(rep *Report) []chart {
	sdkRes, rawRes, tailRes := streamResults(rep)
	var rate, cost []bar
	names := []string{"SDK (Task.Emit)", "raw XADD"}
	if sdkRes != nil && rawRes != nil {
		rate = []bar{{"frames/s", []float64{sdkRes.Throughput, rawRes.Throughput}}}
		cost = []bar{
			{"Valkey CPU µs/frame", []float64{sdkRes.ValkeyCPUPerOpUS, rawRes.ValkeyCPUPerOpUS}},
			{"server µs/frame in commands", []float64{sdkRes.Extra["fcall_us_per_frame"], rawRes.Extra["xadd_us_per_frame"]}},
			{"client CPU µs/frame", []float64{sdkRes.Extra["client_cpu_us_per_frame"], rawRes.Extra["client_cpu_us_per_frame"]}},
		}
	}
	const latTitle = "Append → tail latency (open loop)"
	lat := lineChart(latTitle, pctAxis(), usAxis("latency"), nil, nil)
	if tailRes != nil {
		var ss []series
		for _, name := range []string{"emit_lag", "fcall_rtt", "append_round", "append_tail", "append_tail_sched"} {
			if s := tailRes.Latency[name]; s != nil && s.Count > 0 {
				ss = append(ss, series{name: name, pts: curve(s)})
			}
		}
		var refs []refLine
		if lr := tailRes.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 {
			refs = append(refs, refLine{lr.P50, "loaded FCALL p50 " + fmtUS(lr.P50)})
		}
		lat = lineChart(fmt.Sprintf("Append → tail latency, open loop at %s frames/s", fmtRate(tailRes.OfferedRate)), pctAxis(),
			usAxis("latency"), ss, refs)
	}
	return []chart{
		barChart("Stream append: SDK vs raw XADD", names, rate, fmtRate),
		barChart("Cost per frame", names, cost, func(v float64) string { return fmt.Sprintf("%.2f", v) }),
		lat,
	}
}
