package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// The peers comparison in the reports: headlines and cards (numbers and
// fixed names only), a Markdown section, and an HTML section with its bar
// charts. Every string taken from the report is cleaned (HTML, text) or
// escaped (Markdown) where it lands.

// peerName is a system's display name; a name the harness does not know
// (a report from elsewhere) is shown cleaned.
func peerName(sys string) string {
	switch sys {
	case PeerFlowFabric:
		return "FlowFabric"
	case PeerAsynq:
		return "asynq"
	case PeerBullMQ:
		return "BullMQ"
	}
	return clean(sys, maxNameRunes)
}

// peerKnownName is peerName for the fixed-text lines (headlines, cards),
// which carry no string from the report.
func peerKnownName(sys string) string {
	switch sys {
	case PeerFlowFabric, PeerAsynq, PeerBullMQ:
		return peerName(sys)
	}
	return "?"
}

// fastest returns the system's fastest idle run, nil when none ran.
func (s *PeerSummary) fastest() *PeerIdle {
	if s.FastestIdle < 0 || s.FastestIdle >= len(s.Idle) || s.Idle[s.FastestIdle].Samples == 0 {
		return nil
	}
	return &s.Idle[s.FastestIdle]
}

// peerHeadlines are the comparison's lines for Headlines.
func peerHeadlines(c *PeerComparison) []string {
	if c == nil {
		return nil
	}
	var capac, cpu, cmds, idle, skipped []string
	for i := range c.Systems {
		s := &c.Systems[i]
		n := peerKnownName(s.System)
		if s.Best == nil && s.fastest() == nil {
			if s.Skipped != "" {
				skipped = append(skipped, n)
			}
			continue
		}
		if b := s.Best; b != nil {
			capac = append(capac, fmt.Sprintf("%s %s (in-flight %d)", n, fmtRate(b.Throughput), b.InFlight))
			cpu = append(cpu, fmt.Sprintf("%s %.1f", n, b.ValkeyCPUPerJobUS))
			cmds = append(cmds, fmt.Sprintf("%s %.1f commands, %.2f scripts", n, b.CommandsPerJob, b.ScriptsPerJob))
		}
		for j, r := range s.Idle {
			if r.Samples == 0 {
				continue
			}
			what := n
			if len(s.Idle) > 1 {
				what = fmt.Sprintf("%s (run %d of %d)", n, j+1, len(s.Idle))
				if s.System == PeerAsynq {
					what = fmt.Sprintf("%s (%s)", n, peerIdleLabel(r.Key))
				}
			}
			idle = append(idle, fmt.Sprintf("%s %s / %s", what, fmtUS(r.P50US), fmtUS(r.P99US)))
		}
	}
	var out []string
	if len(capac) > 0 {
		out = append(out,
			fmt.Sprintf("peers, capacity (closed loop, best in-flight, median of %d interleaved rounds): %s%s", c.Rounds,
				strings.Join(capac, " · "), ffRatios(c.CapacityVsBullMQ, c.CapacityVsAsynq)+peerTags(c)),
			fmt.Sprintf("peers, Valkey CPU µs per job at that setting: %s%s; per job: %s", strings.Join(cpu, " · "),
				ffRatios(c.CPUVsBullMQ, c.CPUVsAsynq), strings.Join(cmds, " · ")))
	}
	if len(idle) > 0 {
		out = append(out, fmt.Sprintf("peers, idle pickup at %s jobs/s (intended arrival → handler start) p50 / p99: %s",
			fmtRate(c.IdleRate), strings.Join(idle, " · ")))
	}
	if len(skipped) > 0 {
		out = append(out, "peers: "+strings.Join(skipped, ", ")+" skipped (see notes)")
	}
	return out
}

// peerTags are the capacity targets' verdicts, " [÷ BullMQ target ≥ 2×:
// PASS] …", for the ratios measured.
func peerTags(c *PeerComparison) string {
	var s string
	for _, p := range []struct {
		peer          string
		ratio, target float64
	}{{"BullMQ", c.CapacityVsBullMQ, bullmqTarget}, {"asynq", c.CapacityVsAsynq, asynqTarget}} {
		if p.ratio > 0 {
			s += fmt.Sprintf(" [÷ %s target ≥ %s×: %s]", p.peer, trimFloat(p.target), passMiss(p.ratio >= p.target))
		}
	}
	return s
}

// ffRatios is "; FlowFabric ÷ BullMQ a×, ÷ asynq b×" for the ratios that
// were measured (not 0).
func ffRatios(bullmq, asynq float64) string {
	var rs []string
	if bullmq > 0 {
		rs = append(rs, fmt.Sprintf("÷ BullMQ %.2f×", bullmq))
	}
	if asynq > 0 {
		rs = append(rs, fmt.Sprintf("÷ asynq %.2f×", asynq))
	}
	if len(rs) == 0 {
		return ""
	}
	return "; FlowFabric " + strings.Join(rs, ", ")
}

// peerIdleLabel names an asynq idle run by its key's variant: "default
// 1s" or the short check interval.
func peerIdleLabel(key string) string {
	if strings.Contains(key, "/idle/") {
		return "TaskCheckInterval 1s, default"
	}
	if _, rest, ok := strings.Cut(key, "/idle-check-"); ok {
		if d, _, ok := strings.Cut(rest, "/"); ok && len(d) < 16 && strings.Trim(d, "0123456789.nµums") == "" {
			return "TaskCheckInterval " + d
		}
	}
	return "short TaskCheckInterval"
}

// peerCards are the comparison's cards: FlowFabric's capacity against each
// peer's best, with the targets.
func peerCards(c *PeerComparison) []card {
	if c == nil {
		return nil
	}
	ff := c.system(PeerFlowFabric)
	var out []card
	for _, p := range []struct {
		sys    string
		ratio  float64
		target float64
	}{{PeerBullMQ, c.CapacityVsBullMQ, bullmqTarget}, {PeerAsynq, c.CapacityVsAsynq, asynqTarget}} {
		o := c.system(p.sys)
		if p.ratio <= 0 || ff == nil || o == nil || ff.Best == nil || o.Best == nil {
			continue
		}
		cls := "miss"
		if p.ratio >= p.target {
			cls = "good"
		}
		out = append(out, card{fmt.Sprintf("%.2f×", p.ratio), "FlowFabric capacity / " + peerKnownName(p.sys) + " best",
			fmt.Sprintf("%s vs %s jobs/s · Valkey CPU %.0f vs %.0f µs/job · target ≥ %.0f×", fmtRate(ff.Best.Throughput),
				fmtRate(o.Best.Throughput), ff.Best.ValkeyCPUPerJobUS, o.Best.ValkeyCPUPerJobUS, p.target), cls})
	}
	return out
}

// peerMarkdown writes the comparison's Markdown section.
func peerMarkdown(b *strings.Builder, c *PeerComparison) {
	if c == nil {
		return
	}
	name := func(s string) string { return md(s, maxNameRunes) }
	fmt.Fprintf(b, "## Peers on the same server\n\n%d interleaved rounds per setting; every system had %s worker slots; capacity is the median of the rounds at the system's best in-flight setting.\n\n",
		c.Rounds, name(c.Slots))
	b.WriteString("| system | version | best in-flight | capacity jobs/s (min–max) | Valkey CPU µs/job | commands/job | scripts/job | idle p50 | idle p99 | idle setting |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for i := range c.Systems {
		s := &c.Systems[i]
		cells := []string{name(peerName(s.System)), dash(name(s.Version)), "-", "-", "-", "-", "-", "-", "-", "-"}
		if bp := s.Best; bp != nil {
			cells[2], cells[3] = strconv.Itoa(bp.InFlight), fmt.Sprintf("%s (%s–%s)", fmtRate(bp.Throughput), fmtRate(bp.ThroughputMin), fmtRate(bp.ThroughputMax))
			cells[4], cells[5], cells[6] = fmt.Sprintf("%.1f", bp.ValkeyCPUPerJobUS), fmt.Sprintf("%.1f", bp.CommandsPerJob), fmt.Sprintf("%.2f", bp.ScriptsPerJob)
		}
		if f := s.fastest(); f != nil {
			cells[7], cells[8], cells[9] = fmtUS(f.P50US), fmtUS(f.P99US), md(f.Setting, maxTextRunes)
		}
		if s.Skipped != "" {
			cells[9] = "skipped: " + md(s.Skipped, maxTextRunes)
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
	}
	if c.CapacityVsBullMQ > 0 || c.CapacityVsAsynq > 0 {
		fmt.Fprintf(b, "\nFlowFabric capacity ÷ BullMQ best: %s; ÷ asynq best: %s. FlowFabric Valkey CPU per job ÷ BullMQ's: %s; ÷ asynq's: %s.\n",
			fmtRatio(c.CapacityVsBullMQ), fmtRatio(c.CapacityVsAsynq), fmtRatio(c.CPUVsBullMQ), fmtRatio(c.CPUVsAsynq))
	}
	b.WriteString("\n| system | in-flight | jobs/s (median) | min | max | Valkey CPU µs/job | commands/job | scripts/job |\n|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for i := range c.Systems {
		for _, p := range c.Systems[i].Sweep {
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %.1f | %.1f | %.2f |\n", name(peerName(c.Systems[i].System)), p.InFlight,
				fmtRate(p.Throughput), fmtRate(p.ThroughputMin), fmtRate(p.ThroughputMax), p.ValkeyCPUPerJobUS, p.CommandsPerJob, p.ScriptsPerJob)
		}
	}
	fmt.Fprintf(b, "\nIdle pickup at %s jobs/s, open loop (intended arrival → handler start):\n\n| system | setting | samples | p50 | p99 | Valkey CPU µs/job | commands/job |\n|---|---|--:|--:|--:|--:|--:|\n",
		fmtRate(c.IdleRate))
	for i := range c.Systems {
		for _, r := range c.Systems[i].Idle {
			fmt.Fprintf(b, "| %s | %s | %d | %s | %s | %.1f | %.1f |\n", name(peerName(c.Systems[i].System)), md(r.Setting, maxTextRunes),
				r.Samples, fmtUS(r.P50US), fmtUS(r.P99US), r.ValkeyCPUPerJobUS, r.CommandsPerJob)
		}
	}
	b.WriteString("\n")
}

// peerSection is the comparison on the HTML page.
type peerSection struct {
	Intro   string
	Figures []figure
	Rows    []row
}

func newPeerSection(c *PeerComparison) *peerSection {
	if c == nil {
		return nil
	}
	ps := &peerSection{Intro: fmt.Sprintf("FlowFabric, asynq and BullMQ on the same Valkey: no-op jobs, submit → claim → complete, %d interleaved rounds per setting, %s worker slots each. Capacity is each system's best closed-loop in-flight setting (median of its rounds); the server's cost per job is measured there (INFO cpu and commandstats deltas over the window, script-internal commands included).",
		c.Rounds, clean(c.Slots, maxNameRunes))}
	var capac, cpu, cmds, idle []bar
	for i := range c.Systems {
		s := &c.Systems[i]
		n := peerName(s.System)
		cells := []string{n, dash(clean(s.Version, maxNameRunes)), "-", "-", "-", "-", "-", "-", "-", "-"}
		if bp := s.Best; bp != nil {
			label := fmt.Sprintf("%s · in-flight %d", n, bp.InFlight)
			capac = append(capac, bar{label, []float64{bp.Throughput}})
			cpu = append(cpu, bar{label, []float64{bp.ValkeyCPUPerJobUS}})
			cmds = append(cmds, bar{label, []float64{bp.CommandsPerJob, bp.ScriptsPerJob}})
			cells[2], cells[3] = strconv.Itoa(bp.InFlight), fmt.Sprintf("%s (%s–%s)", fmtRate(bp.Throughput), fmtRate(bp.ThroughputMin), fmtRate(bp.ThroughputMax))
			cells[4], cells[5], cells[6] = fmt.Sprintf("%.1f", bp.ValkeyCPUPerJobUS), fmt.Sprintf("%.1f", bp.CommandsPerJob), fmt.Sprintf("%.2f", bp.ScriptsPerJob)
		}
		for j, r := range s.Idle {
			if r.Samples == 0 {
				continue
			}
			label := n // the settings are in the table: a bar's label stays short
			switch {
			case s.System == PeerAsynq:
				label += " · " + strings.Replace(peerIdleLabel(r.Key), "TaskCheckInterval ", "check ", 1)
			case len(s.Idle) > 1:
				label += " · " + strconv.Itoa(j+1)
			}
			idle = append(idle, bar{label, []float64{r.P50US, r.P99US}})
		}
		if f := s.fastest(); f != nil {
			cells[7], cells[8], cells[9] = fmtUS(f.P50US), fmtUS(f.P99US), clean(f.Setting, maxTextRunes)
		}
		if s.Skipped != "" {
			cells[9] = "skipped: " + clean(s.Skipped, maxTextRunes)
		}
		ps.Rows = append(ps.Rows, row{Cells: cells})
	}
	two := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	one := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	ps.Figures = []figure{
		{[]chart{barChart("Capacity at each system's best in-flight", []string{"jobs/s"}, capac, fmtRate)},
			"Closed loop, no-op jobs; the median of the interleaved rounds at the in-flight setting that did best for that system."},
		{[]chart{barChart("Valkey CPU per job", []string{"µs/job"}, cpu, one)},
			"The server's CPU (user + sys) over the window divided by the jobs completed in it, at each system's best setting: the single thread's budget a job spends."},
		{[]chart{barChart("Valkey commands and scripts per job", []string{"commands", "scripts"}, cmds, two)},
			"Commands per job including the commands scripts run inside; scripts are FCALLs (FlowFabric) or EVALSHAs (asynq, BullMQ)."},
		{[]chart{barChart(fmt.Sprintf("Idle pickup at %s jobs/s", fmtRate(c.IdleRate)), []string{"p50", "p99"}, idle, fmtUS)},
			"Open loop at a low rate: from the job's intended arrival to its handler's start, each system with its fastest documented idle setting (asynq also with its default)."},
	}
	return ps
}
