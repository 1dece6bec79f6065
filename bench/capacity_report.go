package bench

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// capacity in the reports: the headline line, the detail line (the claim
// against an idle server's round trip at the found rate), the summary's
// step table, the Markdown section, the HTML card and charts.

// fmtRateFine is fmtRate with three significant digits below 100/s,
// where a capacity search's steps can be a fraction apart.
func fmtRateFine(v float64) string {
	if v > 0 && v < 100 {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	return fmtRate(v)
}

// foundList is each search's found rate, "4.03/s, 7.16/s, none".
func (c *CapacityReport) foundList() string {
	parts := make([]string, len(c.Searches))
	for i, s := range c.Searches {
		parts[i] = "none"
		if s.Found > 0 {
			parts[i] = fmtRateFine(s.Found) + "/s"
		}
	}
	return strings.Join(parts, ", ")
}

// sloText is the SLO rebuilt from its clauses' numbers and known names
// (a report may come from anywhere: its SLO string is not shown).
func (c *CapacityReport) sloText() string {
	parts := make([]string, len(c.Clauses))
	for i, cl := range c.Clauses {
		if cl.Latency != "claim" && cl.Latency != "handler_start" && cl.Latency != "e2e" {
			cl.Latency = "unknown"
		}
		parts[i] = cl.String()
	}
	return strings.Join(parts, ", ")
}

// capacityHeadline is the report's first line: the found rate's range.
func capacityHeadline(rep *Report) string {
	c := rep.Capacity
	var rate string
	switch {
	case !c.Met():
		rate = "no rate tried met it in every search (found per search: " + c.foundList() + ")"
	case c.Capped:
		rate = fmt.Sprintf("at least %s jobs/s (met at the ramp's ceiling, --max-rate %s/s)", fmtRateFine(c.RateMin), fmtRateFine(c.MaxRate))
	default:
		rate = fmt.Sprintf("%s jobs/s (%s–%s over %d searches; each search ends within %.0f%%)", fmtRateFine(c.Rate), fmtRateFine(c.RateMin),
			fmtRateFine(c.RateMax), len(c.Searches), 100*c.Resolution)
	}
	arrivals := rep.Config.Arrivals // shown only when known: the line goes into Markdown unescaped
	if arrivals != "poisson" && arrivals != "constant" {
		arrivals = "unknown"
	}
	line := fmt.Sprintf("capacity at %s: %s, open loop (%s arrivals), P=%d, %d workers × %d slots", c.sloText(), rate,
		arrivals, c.Partitions, rep.Config.Workers, rep.Config.Concurrency)
	if c.ClosedLoopCapacity > 0 {
		line += fmt.Sprintf("; closed-loop capacity %s jobs/s", fmtRateFine(c.ClosedLoopCapacity))
	}
	return line + " [SLO: " + capacityGoal(c).Word() + "]"
}

// medianSearch is the search whose found rate is nearest the report's
// (the median; with an even count of searches, the mean of the middle
// two), or nil when no search found one.
func (c *CapacityReport) medianSearch() *CapacitySearch {
	var best *CapacitySearch
	for i := range c.Searches {
		s := &c.Searches[i]
		if s.Found > 0 && (best == nil || math.Abs(s.Found-c.Rate) < math.Abs(best.Found-c.Rate)) {
			best = s
		}
	}
	return best
}

// capacityDetail is the figure the headline used to be, at the found
// rate: the claim p50 against an idle server's serial round trip and
// against one FCALL under the same load.
func capacityDetail(rep *Report) string {
	s := rep.Capacity.medianSearch()
	if s == nil {
		return ""
	}
	st := s.atFound()
	a := rep.Anchors.SerialFCALL
	if st == nil || a == nil || a.P50 <= 0 {
		return ""
	}
	cl := st.Latency["claim"]
	if cl == nil || cl.Count == 0 {
		return ""
	}
	line := fmt.Sprintf("at the found rate (%s/s): claim p50 %s, p99 %s = %.2f× the serial FCALL round trip of the idle server (%s)",
		fmtRateFine(st.OfferedRate), fmtUS(cl.P50), fmtUS(cl.P99), cl.P50/a.P50, fmtUS(a.P50))
	if lr := st.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 && lr.P50 > 0 {
		line += fmt.Sprintf("; one FCALL under that load p50 %s, the claim %.2f× it", fmtUS(lr.P50), cl.P50/lr.P50)
	}
	return line
}

// stepCells are a step's cells: search, phase, offered, achieved, window,
// each clause's value, claim p50/p99/p99.9, e2e p99, verdict.
func stepCells(c *CapacityReport, st searchStep) []string {
	cells := []string{fmt.Sprint(st.Search), clean(st.Phase, maxNameRunes), fmtRateFine(st.OfferedRate), fmtRateFine(st.AchievedRate), fmt.Sprintf("%.1fs", st.WindowS)}
	for i := range c.Clauses {
		v := "-"
		if i < len(st.Values) {
			v = fmtUS(st.Values[i])
		}
		cells = append(cells, v)
	}
	cl := st.Latency["claim"]
	for _, f := range []func(*Summary) float64{
		func(s *Summary) float64 { return s.P50 }, func(s *Summary) float64 { return s.P99 }, func(s *Summary) float64 { return s.P999 }} {
		v := "-"
		if cl != nil && cl.Count > 0 {
			v = fmtUS(f(cl))
		}
		cells = append(cells, v)
	}
	e2e := "-"
	if s := st.Latency["e2e"]; s != nil && s.Count > 0 {
		e2e = fmtUS(s.P99)
	}
	verdict := "met"
	if !st.Met {
		verdict = "missed: " + clean(st.Why, maxTextRunes)
	}
	return append(cells, e2e, verdict)
}

// stepHeader names stepCells' columns.
func stepHeader(c *CapacityReport) []string {
	h := []string{"search", "phase", "offered/s", "achieved/s", "window"}
	for _, cl := range c.Clauses {
		h = append(h, clean("SLO: "+strings.ReplaceAll(cl.Latency, "_", "-")+" "+cl.pct(), maxNameRunes))
	}
	return append(h, "claim p50", "claim p99", "claim p99.9", "e2e p99", "verdict")
}

// CapacityTable is the summary's table of a capacity search: every step
// by rate.
func CapacityTable(c *CapacityReport) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(stepHeader(c), "\t"))
	for _, st := range c.steps() {
		fmt.Fprintln(tw, strings.Join(stepCells(c, st), "\t"))
	}
	tw.Flush()
	return b.String()
}

// capacityMethod says how the search ran (the Markdown's and the page's
// paragraph): numbers alone come from the report, so it needs no escaping.
func capacityMethod(c *CapacityReport) string {
	return fmt.Sprintf("Each search ramps the open-loop arrival rate from %s/s, ×%g per step while the SLO holds (up to %s/s), then bisects between the "+
		"last rate that met it and the first that missed until they are within %.0f%%. A step is a fresh deployment measured for %gs after %gs of warm-up "+
		"(longer at low rates, up to %gs, so the SLO's percentile rests on about ten samples above it); latency is timed from each arrival's intended time. "+
		"A step misses when a clause's percentile is above its bound, or when work is lost or still outstanding after the drain.",
		fmtRateFine(c.StartRate), c.RampFactor, fmtRateFine(c.MaxRate), 100*c.Resolution, c.StepS, c.WarmupS, c.MaxStepS)
}

// capacityMarkdown writes the capacity section: how the search ran and
// every step.
func capacityMarkdown(b *strings.Builder, rep *Report) {
	c := rep.Capacity
	if c == nil {
		return
	}
	b.WriteString("## Capacity at the SLO\n\n")
	fmt.Fprintf(b, "**%s**\n\n", md(capacityHeadline(rep), maxTextRunes))
	b.WriteString(capacityMethod(c) + "\n\n")
	if d := capacityDetail(rep); d != "" {
		fmt.Fprintf(b, "Detail: %s.\n\n", md(d, maxTextRunes))
	}
	h := stepHeader(c)
	for i := range h {
		h[i] = md(h[i], maxNameRunes)
	}
	b.WriteString("| " + strings.Join(h, " | ") + " |\n|" + strings.Repeat("--:|", len(h)-1) + "---|\n")
	for _, st := range c.steps() {
		cells := stepCells(c, st)
		for i := range cells {
			cells[i] = md(cells[i], maxTextRunes)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	b.WriteString("\n")
}

// capacityCard is the HTML's first card: the found rate.
func capacityCard(rep *Report) (card, bool) {
	c := rep.Capacity
	if c == nil {
		return card{}, false
	}
	g := capacityGoal(c)
	v := "none"
	switch {
	case c.Capped && c.Met():
		v = "≥ " + fmtRateFine(c.RateMin) + "/s"
	case c.Met():
		v = fmtRateFine(c.Rate) + "/s"
	}
	sub := fmt.Sprintf("found per search: %s · P=%d, %d workers × %d slots", c.foundList(), c.Partitions, rep.Config.Workers, rep.Config.Concurrency)
	return card{v, "capacity at " + c.sloText(), sub, g.class()}, true
}

// capacityCharts draw, per SLO clause, the clause's percentile against the
// offered rate at every step (one series per search), the SLO's bound and
// the found rate.
func capacityCharts(rep *Report) []chart {
	c := rep.Capacity
	if c == nil {
		return nil
	}
	var out []chart
	for i, cl := range c.Clauses {
		var ss []series
		hi := 0.0
		for si, s := range c.Searches {
			se := series{name: fmt.Sprintf("search %d", si+1)}
			for _, st := range s.Steps {
				if i < len(st.Values) && st.Values[i] > 0 {
					se.pts = append(se.pts, [2]float64{st.OfferedRate, st.Values[i]})
					hi = math.Max(hi, st.OfferedRate)
				}
			}
			slices.SortStableFunc(se.pts, func(a, b [2]float64) int { return cmp.Compare(a[0], b[0]) })
			if len(se.pts) > 0 {
				ss = append(ss, se)
			}
		}
		name := clean(strings.ReplaceAll(cl.Latency, "_", "-")+" "+cl.pct(), maxNameRunes)
		slo := []refLine{{cl.BoundUS, "SLO " + name + " ≤ " + fmtUS(cl.BoundUS)}}
		var found []refLine
		if c.Met() {
			found = []refLine{{c.Rate, "found " + fmtRateFine(c.Rate) + "/s"}}
		}
		x := axis{label: "offered arrivals / s (open loop)", format: fmtRate}
		if hi > 0 {
			x.max = niceCeil(hi * 1.05)
			x.min = 1e-12 // from 0: a linear axis's bounds
		}
		out = append(out, lineChartRefs(fmt.Sprintf("Capacity at %s: %s against the arrival rate", clean(cl.String(), maxNameRunes), name),
			x, usAxis(name+" (from the intended arrival)"), ss, chartRefs{slo: slo, x: found}))
	}
	return out
}
