package bench

import (
	"fmt"
	"html/template"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// HTML renders the report as one self-contained page (inline CSS and SVG,
// no scripts, no external resources) with the charts people look at:
// latency percentile curves per partition count, renew throughput and claim
// latency against partitions, the ratio to the raw ceiling, e2e latency,
// claim-path A/B, recovery, signal → resume, stream append, completion → WaitResult,
// flow DAGs and admission.
//
// The report may come from anywhere (ffbench report --in): the page is an
// html/template, so every string is escaped where it lands (text,
// attributes, SVG), each is cleaned and bounded first (clean), and a
// profile is a link only when its path is relative (relLink).
func HTML(rep *Report) string {
	var b strings.Builder
	if err := pageTemplate.Execute(&b, newPage(rep)); err != nil {
		// The template is fixed and its data strings and numbers: only a bug
		// in this file gets here. Say so on the page rather than panic.
		return "<!doctype html><title>ffbench report</title><p>the report page could not be rendered: " +
			template.HTMLEscapeString(err.Error()) + "</p>"
	}
	return b.String()
}

// page is what the template shows: every field already cleaned text.
type page struct {
	Title, Profile, When, SHA, Env string
	OK                             bool
	Lost, Duplicated               int64
	Failures                       []string
	Cards                          []card
	Capacity                       *capacitySection
	Detail                         []string
	Targets                        []targetRow
	Sweep, Paths                   []figure
	Rows                           []row
	Peers                          *peerSection
	Anchors                        *anchors
	Calibration                    string
	Profiles                       []profileLink
	Notes                          []string
	BenchLines                     string
}

type card struct{ Value, Label, Sub, Class string }

// capacitySection is a capacity search on the page: its headline, how it
// ran, a chart per SLO clause and every step.
type capacitySection struct {
	Headline, Method string
	Figures          []figure
	Header           []string
	Rows             []row
}

// targetRow is a target's verdict: Word is PASS or MISS, Class good or
// miss.
type targetRow struct{ Word, Class, Text string }

type figure struct {
	Charts  []chart
	Caption string
}

type row struct {
	Class string
	Cells []string
}

type anchors struct {
	P50, P99, Mean, SerialRate, PipelinedRate string
	Conns, Depth                              int
}

// profileLink is a profile file; Href is empty when its path is not a
// relative one (then the page shows the path as text, not as a link).
type profileLink struct{ Kind, Path, Href string }

func newPage(rep *Report) *page {
	name := func(s string) string { return clean(s, maxNameRunes) }
	p := &page{
		Profile: name(rep.Profile),
		SHA:     name(short(rep.GitSHA)),
		When:    rep.CreatedAt.Format("2006-01-02 15:04 MST"),
		Env: fmt.Sprintf("Valkey %s, %s (%d primar%s%s) · %d cores · %s %s/%s · %.0fs",
			name(rep.Valkey.Version), name(rep.Valkey.Topology), rep.Valkey.Primaries, plural(rep.Valkey.Primaries, "y", "ies"),
			embedded(rep), rep.Cores, name(rep.GoVersion), name(rep.OS), name(rep.Arch), rep.ElapsedS),
		OK:         rep.OK(),
		Lost:       rep.Lost,
		Duplicated: rep.Duplicated,
		Cards:      cards(rep),
		Peers:      newPeerSection(rep.Peers),
		BenchLines: BenchLines(rep),
	}
	p.Title = "ffbench · " + p.Profile + " · " + p.SHA
	for _, f := range rep.Failures {
		p.Failures = append(p.Failures, clean(f, maxTextRunes))
	}
	if c := rep.Capacity; c != nil {
		cs := &capacitySection{Headline: capacityHeadline(rep), Header: stepHeader(c), Method: capacityMethod(c)}
		cs.Figures = []figure{{capacityCharts(rep), "The SLO's percentile at every step of every search against the offered arrival rate; " +
			"the red line is the SLO, the dashed vertical line the found rate (the searches' median)."}}
		for _, st := range c.steps() {
			cls := ""
			if !st.Met {
				cls = "missed"
			}
			cs.Rows = append(cs.Rows, row{cls, stepCells(c, st)})
		}
		p.Capacity = cs
	}
	p.Detail = DetailLines(rep)
	for _, g := range Goals(rep) {
		p.Targets = append(p.Targets, targetRow{g.Word(), g.class(), g.judged()})
	}
	p.Sweep = []figure{
		{[]chart{claimCurves(rep)}, "Each line is one partition count: the latency from an arrival's intended time to the worker holding its lease, at every percentile. Open loop, so stalls show in the tail."},
		{[]chart{renewVsPartitions(rep)}, "Renewals per second through the SDK's renewer against the same ff_renew FCALLs sent raw and pipelined, same leases, same batches."},
		{[]chart{claimVsPartitions(rep)}, "Claim latency p50 and p99 per partition count; the dashed line is the serial FCALL round trip of this server."},
		{[]chart{ratioVsPartitions(rep)}, "SDK renew throughput as a fraction of the raw ceiling measured in the same run; 0.9 is the target."},
	}
	p.Paths = []figure{
		{[]chart{e2eCurves(rep)}, "Open loop at a fraction of the measured capacity: claim, handler start and completion timed from the intended arrival; the producer's lag (intended → sent), the submit call and the claim call on their own."},
		{claimPathBars(rep), "Direct three-step path (scan, then grant+claim pipelined) against the fused claim, interleaved A/B rounds, closed loop."},
		{[]chart{recoveryCurve(rep)}, "Workers killed mid-task: time from the crash to each job's completion by a surviving worker (lease expiry + scan + claim)."},
		{[]chart{signalCurves(rep)}, "Durable waiting, open loop: each execution suspends, and its signal is due a fixed wait after the execution's intended submit time. " +
			"resume runs from that intended delivery time to the resumed handler's start (so a late signaller or a late suspend shows); signal_lag is the signaller's own delay, " +
			"signal the DeliverSignal call, fcall_rtt one FCALL round trip under the same load (its p50 is the dashed line)."},
		{streamCharts(rep), "Attempt streams: frames appended per second through the SDK (handlers calling Task.Emit flat out; frames emitted while an append is in flight ride on the next ff_append) " +
			"against the same frames sent as raw pipelined XADDs by as many goroutines, slices interleaved ABBA; each side's Valkey CPU, server time inside its commands and client CPU per frame; " +
			"then one stream emitted on an open-loop schedule and tailed (Client.Tail): append_tail runs from the handler's Task.Emit call to the tailer's receipt (append_tail_sched from the frame's intended time), fcall_rtt is one FCALL round trip under the same load (its p50 is the dashed line)."},
		{[]chart{notifyCurves(rep)}, "Waiting for a result, open loop: a waiter calls Client.WaitResult right after each submit, woken by the server's invalidation push of the execution record (no polling); " +
			"each handler works 2ms, then completes. notify runs from the worker's Complete call returning to WaitResult returning, complete_start_to_return from the call's start; " +
			"complete_call is the Complete call, fcall_rtt one FCALL round trip under the same load (its p50 is the dashed line)."},
		{flowCharts(rep), "Flow DAGs, open loop: whole DAGs submitted with SubmitFlow and awaited with AwaitFlow, one chart per shape (fan-out / fan-in 1 → N → 1, chains). " +
			"edge runs from a member's last parent's handler returning to its own handler's start (a fan-out's N siblings are released at once and queue for the fleet's slots, so its edges carry that queueing); " +
			"dag_completion from the DAG's intended submit time to AwaitFlow's return; flow_notify from the DAG's last handler return to AwaitFlow's return; " +
			"fcall_rtt is one FCALL round trip under the same load (its p50 is the dashed line)."},
		{admissionCharts(rep), "Admission: the same lane and open-loop schedule with a quota that never binds (claims go through admission: ClaimForWorker, ff_quota_admit pipelined with the grant and claim) " +
			"and without a policy (hand-offs and claims as before), interleaved rounds; claim runs from the intended arrival to the lease held, e2e to the completion " +
			"(dashed), the plain lane's loaded FCALL p50 is the reference line. Then the rate check: the most admissions in any window of the quota's length " +
			"(server times, read from the quota's window set), their mean per whole window and the handler starts' most (client clock), against the limit."},
		{[]chart{efficiencyBars(rep)}, "Valkey commands per operation (script-internal commands included): counters noise barely moves, gated in CI."},
	}
	// A report without a scenario's results (a capacity search, a run of
	// a few scenarios) leaves out its charts rather than show them empty.
	p.Sweep, p.Paths = withData(p.Sweep), withData(p.Paths)
	for _, r := range rep.Results {
		lname, s := headline(r)
		lat := []string{"-", "-", "-", "-", "-"}
		if s != nil {
			lat = []string{fmtUS(s.P50), fmtUS(s.P90), fmtUS(s.P99), fmtUS(s.P999), fmtUS(s.Max)}
		}
		cls := ""
		if r.Lost > 0 || r.Duplicated > 0 {
			cls = "fail"
		}
		// The correctness columns come first, beside the result's name:
		// they must be seen without scrolling a wide table.
		cells := []string{name(r.Scenario), dash(name(r.Variant)), strconv.Itoa(r.Partitions),
			strconv.FormatInt(r.Lost, 10), strconv.FormatInt(r.Duplicated, 10),
			fmtRate(r.Throughput) + " " + name(r.Unit) + "/s", fmtRate(r.RawCeiling), fmtRatio(r.RatioToCeiling), dash(lname)}
		cells = append(cells, lat...)
		cells = append(cells, fmt.Sprintf("%.2f", r.CommandsPerOp), fmt.Sprintf("%.2f", r.FcallsPerOp),
			fmt.Sprintf("%.1f", r.ValkeyCPUPerOpUS), fmt.Sprintf("%.0f", r.AllocsPerOp))
		p.Rows = append(p.Rows, row{cls, cells})
	}
	if a := rep.Anchors.SerialFCALL; a != nil {
		p.Anchors = &anchors{P50: fmtUS(a.P50), P99: fmtUS(a.P99), Mean: fmtUS(a.Mean), SerialRate: fmtRate(rep.Anchors.SerialRate),
			PipelinedRate: fmtRate(rep.Anchors.PipelinedRate), Conns: rep.Anchors.PipelineConns, Depth: rep.Anchors.PipelineDepth}
	}
	if rep.Calibration != nil {
		p.Calibration = CalibrationTable(rep.Calibration)
	}
	for _, k := range sortedKeys(rep.Profiles) {
		l := profileLink{Kind: name(k), Path: clean(rep.Profiles[k], maxTextRunes)}
		if href, ok := relLink(rep.Profiles[k]); ok {
			l.Href = href
		}
		p.Profiles = append(p.Profiles, l)
	}
	for _, n := range rep.Notes {
		p.Notes = append(p.Notes, clean(n, maxTextRunes))
	}
	return p
}

// pageTemplate is the page; html/template escapes every value by where it
// lands. The charts' SVG is written by the "chart" and "el" templates; an
// empty {{- /* */ -}} joins two source lines without a newline between.
var pageTemplate = template.Must(template.New("page").Parse(pageHTML))

const pageHTML = `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>` + css + `</style></head><body>
{{- /* */ -}}
<header><h1>FlowFabric benchmark <span class="prof">{{.Profile}} profile</span></h1><p class="env">{{.When}} · git <code>{{.SHA}}</code> · {{.Env}}</p></header>
{{- if .OK}}<div class="badge ok">Correctness passed: no lost and no duplicated completions</div>
{{- else}}<div class="badge bad">Correctness FAILED: {{.Lost}} lost, {{.Duplicated}} duplicated<ul>{{range .Failures}}<li>{{.}}</li>{{end}}</ul></div>
{{- end}}
{{- with .Cards}}<div class="cards">{{range .}}<div class="card {{.Class}}"><div class="v">{{.Value}}</div><div class="l">{{.Label}}</div><div class="s">{{.Sub}}</div></div>{{end}}</div>{{end -}}
{{- with .Capacity}}<div class="capacity"><h2>Capacity at the SLO</h2><p class="head">{{.Headline}}</p><p>{{.Method}}</p><div class="grid">{{range .Figures}}{{template "figure" .}}{{end}}</div>
<details><summary>Every step ({{len .Rows}}), by rate</summary><div class="tw"><table class="steps"><thead><tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr></thead><tbody>
{{- range .Rows}}<tr{{with .Class}} class="{{.}}"{{end}}>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>{{end -}}
</tbody></table></div></details></div>{{end -}}
{{- with .Targets}}<h2>Targets</h2><ul class="targets">{{range .}}<li><b class="{{.Class}}">{{.Word}}</b> {{.Text}}</li>{{end}}</ul>{{end -}}
{{- with .Detail}}<h2>Detail</h2><ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end -}}
{{- with .Peers}}<h2>Peers on the same server</h2><p>{{.Intro}}</p><div class="tw"><table class="peers"><thead><tr><th>system</th><th>version</th><th>best in-flight</th><th>capacity jobs/s (min–max)</th><th>Valkey CPU µs/job</th><th>commands/job</th><th>scripts/job</th><th>idle p50</th><th>idle p99</th><th>idle setting</th></tr></thead><tbody>
{{- range .Rows}}<tr>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>{{end -}}
</tbody></table></div><div class="grid peers">{{range .Figures}}{{template "figure" .}}{{end}}</div>{{end -}}
{{with .Sweep}}<h2>Partition sweep</h2><div class="grid">{{range .}}{{template "figure" .}}{{end}}</div>{{end}}
{{- /* */ -}}
{{with .Paths}}<h2>End to end, claim path, recovery, signal → resume, stream append, completion notify, flow DAGs and admission</h2><div class="grid">{{range .}}{{template "figure" .}}{{end}}</div>{{end}}
{{- /* */ -}}
<h2>All results</h2><div class="tw"><table class="results"><thead><tr><th>scenario</th><th>variant</th><th>P</th><th>lost</th><th>dup</th><th>throughput</th><th>raw ceiling</th><th>ratio</th><th>latency</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>cmds/op</th><th>FCALLs/op</th><th>Valkey CPU µs/op</th><th>allocs/op</th></tr></thead><tbody>
{{- range .Rows}}<tr{{with .Class}} class="{{.}}"{{end}}>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>{{end -}}
</tbody></table></div>
{{- with .Anchors}}<h2>Anchors</h2><p>Serial FCALL round trip (ff_renew, one lease, one connection): p50 <b>{{.P50}}</b>, p99 {{.P99}}, mean {{.Mean}} ({{.SerialRate}} calls/s). Pipelined FCALL ceiling: <b>{{.PipelinedRate}} calls/s</b> ({{.Conns}} connections × {{.Depth}} deep).</p>{{end}}
{{- with .Calibration}}<h2>Calibration against valkey-benchmark</h2><pre>{{.}}</pre>{{end}}
{{- with .Profiles}}<h2>Profiles</h2><ul>{{range .}}<li>{{.Kind}}: {{if .Href}}<a href="{{.Href}}">{{.Path}}</a> (<code>go tool pprof -http=: {{.Path}}</code>){{else}}{{.Path}} (not a path relative to the report: not linked){{end}}</li>{{end}}</ul>{{end}}
{{- with .Notes}}<h2>Notes</h2><ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end -}}
<details><summary>Go benchmark format (for benchstat)</summary><pre>{{.BenchLines}}</pre></details>
{{- /* */ -}}
<footer>Generated by ffbench. Latencies are HdrHistograms (µs, 3 significant digits), merged per goroutine; warm-up and drain are excluded by time window. The JSON report keeps every histogram encoded.</footer></body></html>
{{- define "figure"}}<figure>{{range .Charts}}{{template "chart" .}}{{end}}<figcaption>{{.Caption}}</figcaption></figure>{{end}}
{{- define "chart"}}<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="{{.Title}}">{{range .Els}}{{template "el" .}}{{end}}</svg>{{end}}
{{- define "el"}}
{{- if eq .Tag "text"}}<text x="{{.X}}" y="{{.Y}}" class="{{.Class}}"{{with .Anchor}} text-anchor="{{.}}"{{end}}{{with .Transform}} transform="{{.}}"{{end}}>{{.Text}}</text>
{{- else if eq .Tag "line"}}<line x1="{{.X}}" x2="{{.X2}}" y1="{{.Y}}" y2="{{.Y2}}" class="{{.Class}}"/>
{{- else if eq .Tag "rect"}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"{{with .Class}} class="{{.}}"{{end}}{{with .Fill}} fill="{{.}}"{{end}}{{with .Title}}><title>{{.}}</title></rect>{{else}}/>{{end}}
{{- else if eq .Tag "polyline"}}<polyline class="{{.Class}}" fill="none" stroke="{{.Stroke}}" stroke-width="2"{{with .Dash}} stroke-dasharray="{{.}}"{{end}} points="{{.Points}}"><title>{{.Title}}</title></polyline>
{{- else if eq .Tag "circle"}}<circle cx="{{.X}}" cy="{{.Y}}" r="{{.R}}" fill="{{.Fill}}"><title>{{.Title}}</title></circle>
{{- end}}
{{- end}}`

// withData drops the figures none of whose charts has data.
func withData(fs []figure) []figure {
	var out []figure
	for _, f := range fs {
		if slices.ContainsFunc(f.Charts, func(c chart) bool { return !c.Empty }) {
			out = append(out, f)
		}
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func cards(rep *Report) []card {
	var cards []card
	if c, ok := capacityCard(rep); ok {
		cards = append(cards, c)
	}
	if r := rep.Find(ScenarioRenew + "/sdk/P=16"); r != nil && r.RawCeiling > 0 {
		cards = append(cards, card{fmt.Sprintf("%.2f×", r.RatioToCeiling), "renew throughput / raw ceiling at P=16",
			fmt.Sprintf("%s vs %s renewals/s · target ≥ %g", fmtRate(r.Throughput), fmtRate(r.RawCeiling), renewTarget), renewGoal(r).class()})
	}
	// The claim p50 over an idle server's round trip is in the detail
	// (DetailLines), not a card.
	if r := rep.Find(ScenarioE2E + fmt.Sprintf("/closed/P=%d", rep.Config.Partitions)); r != nil {
		cards = append(cards, card{fmtRate(r.Throughput) + "/s", "e2e capacity (submit → complete)",
			fmt.Sprintf("%.3f of the raw FCALL ceiling · %.1f FCALLs per job", r.RatioToCeiling, r.FcallsPerOp), ""})
	}
	if r := rep.Find(ScenarioRecovery + fmt.Sprintf("/P=%d", rep.Config.Partitions)); r != nil {
		if s := r.Latency["crash_to_completion"]; s != nil && s.Count > 0 {
			cards = append(cards, card{fmtUS(s.P99), "crash → completion p99",
				fmt.Sprintf("p50 %s · lease TTL %v, scan every %v", fmtUS(s.P50), rep.Config.LeaseTTL, rep.Config.ScanInterval), ""})
		}
	}
	if r := signalResult(rep); r != nil {
		s := r.Latency["resume"]
		v := r.Extra["resume_p50_over_loaded_rtt"]
		cards = append(cards, card{fmtUS(s.P50), "signal → resume p50",
			fmt.Sprintf("p99 %s at %s cycles/s, P=%d · %.1f× one loaded FCALL round trip · %.2f FCALLs, %.1f commands per cycle",
				fmtUS(s.P99), fmtRate(r.OfferedRate), r.Partitions, v, r.FcallsPerOp, r.CommandsPerOp), ""})
	}
	if c, ok := streamCard(rep); ok {
		cards = append(cards, c)
	}
	if r := notifyRes(rep); r != nil {
		s := r.Latency["notify"]
		cards = append(cards, card{fmtUS(s.P50), "complete → WaitResult p50",
			fmt.Sprintf("p99 %s at %s jobs/s, P=%d · %.1f× one loaded FCALL round trip · %.1f waiter commands per wait",
				fmtUS(s.P99), fmtRate(r.OfferedRate), r.Partitions, r.Extra["notify_p50_over_loaded_rtt"], r.Extra["waiter_commands_per_wait"]), ""})
	}
	if c, ok := flowCard(rep); ok {
		cards = append(cards, c)
	}
	if c, ok := admissionCard(rep); ok {
		cards = append(cards, c)
	}
	return append(cards, peerCards(rep.Peers)...)
}

func claimHeadline(rep *Report) *Result {
	for _, k := range []string{ScenarioClaimLatency + "/P=16", ScenarioClaimLatency + fmt.Sprintf("/P=%d", rep.Config.Partitions)} {
		if r := rep.Find(k); r != nil && r.Extra["claim_p50_over_serial_rtt"] > 0 {
			return r
		}
	}
	return nil
}

// byScenario returns the results of a scenario/variant sorted by partitions.
func byScenario(rep *Report, scenario, variant string) []*Result {
	var out []*Result
	for _, r := range rep.Results {
		if r.Scenario == scenario && r.Variant == variant {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partitions < out[j].Partitions })
	return out
}

func usAxis(label string) axis { return axis{label: label, scale: logScale, format: fmtUS} }

func pctAxis() axis { return axis{label: "percentile", scale: nines} }

func curve(s *Summary) [][2]float64 {
	h, err := s.Histogram()
	if err != nil {
		return nil
	}
	return PercentileCurve(h)
}

func claimCurves(rep *Report) chart {
	var ss []series
	for _, r := range byScenario(rep, ScenarioClaimLatency, "") {
		if s := r.Latency["claim"]; s != nil && s.Count > 0 {
			ss = append(ss, series{name: fmt.Sprintf("P=%d", r.Partitions), pts: curve(s)})
		}
	}
	return lineChart("Claim latency percentiles by partition count", pctAxis(), usAxis("intended arrival → lease held"), ss, nil)
}

// partAxis is a log axis ticked at the partition counts measured.
func partAxis(rs []*Result) axis {
	var at []float64
	for _, r := range rs {
		if v := float64(r.Partitions); !slices.Contains(at, v) {
			at = append(at, v)
		}
	}
	sort.Float64s(at)
	a := axis{label: "partitions", scale: logScale, format: trimFloat, at: at}
	if len(at) > 0 {
		a.min, a.max = at[0]/1.4, at[len(at)-1]*1.4
	}
	return a
}

func renewVsPartitions(rep *Report) chart {
	var sdk, raw series
	sdk.name, raw.name, raw.dash = "SDK renewer", "raw pipelined ceiling", true
	for _, r := range byScenario(rep, ScenarioRenew, "sdk") {
		sdk.pts = append(sdk.pts, [2]float64{float64(r.Partitions), r.Throughput})
		if r.RawCeiling > 0 {
			raw.pts = append(raw.pts, [2]float64{float64(r.Partitions), r.RawCeiling})
		}
	}
	ss := []series{}
	if len(sdk.pts) > 0 {
		ss = append(ss, sdk, raw)
	}
	return lineChart("Renew throughput vs partitions", partAxis(byScenario(rep, ScenarioRenew, "sdk")),
		axis{label: "renewals / s", format: fmtRate}, ss, nil)
}

func claimVsPartitions(rep *Report) chart {
	p50 := series{name: "claim p50"}
	p99 := series{name: "claim p99"}
	for _, r := range byScenario(rep, ScenarioClaimLatency, "") {
		if s := r.Latency["claim"]; s != nil && s.Count > 0 {
			p50.pts = append(p50.pts, [2]float64{float64(r.Partitions), s.P50})
			p99.pts = append(p99.pts, [2]float64{float64(r.Partitions), s.P99})
		}
	}
	var refs []refLine
	if a := rep.Anchors.SerialFCALL; a != nil {
		refs = append(refs, refLine{a.P50, "serial FCALL RTT " + fmtUS(a.P50)})
	}
	var ss []series
	if len(p50.pts) > 0 {
		ss = []series{p50, p99}
	}
	return lineChart("Claim latency vs partitions", partAxis(byScenario(rep, ScenarioClaimLatency, "")), usAxis("latency"), ss, refs)
}

func ratioVsPartitions(rep *Report) chart {
	s := series{name: "renew: SDK / raw"}
	for _, r := range byScenario(rep, ScenarioRenew, "sdk") {
		if r.RawCeiling > 0 {
			s.pts = append(s.pts, [2]float64{float64(r.Partitions), r.RatioToCeiling})
		}
	}
	var ss []series
	hi := 1.1
	if len(s.pts) > 0 {
		ss = []series{s}
		for _, p := range s.pts {
			hi = math.Max(hi, p[1]*1.05)
		}
	}
	return lineChart("Ratio to the raw ceiling vs partitions", partAxis(byScenario(rep, ScenarioRenew, "sdk")),
		axis{label: "ratio", min: 1e-12, max: hi, format: func(v float64) string { return fmt.Sprintf("%.2f", v) }},
		ss, []refLine{{0.9, "target 0.9"}})
}

// e2eCurves draws the latency curves of the first open-loop e2e result.
func e2eCurves(rep *Report) chart {
	open := byScenario(rep, ScenarioE2E, "open")
	if len(open) == 0 {
		return lineChart("End-to-end latency (open loop)", pctAxis(), usAxis("latency"), nil, nil)
	}
	r := open[0]
	var ss []series
	for _, name := range []string{"send_lag", "submit", "claim_call", "claim", "handler_start", "e2e"} {
		if s := r.Latency[name]; s != nil && s.Count > 0 {
			ss = append(ss, series{name: name, pts: curve(s)})
		}
	}
	title := fmt.Sprintf("End-to-end latency, open loop at %s jobs/s", fmtRate(r.OfferedRate))
	return lineChart(title, pctAxis(), usAxis("latency"), ss, nil)
}

func claimPathBars(rep *Report) []chart {
	var bars []bar
	d, f := byScenario(rep, ScenarioClaimPath, "direct"), byScenario(rep, ScenarioClaimPath, "fused")
	if len(d) == 0 || len(f) == 0 {
		return []chart{barChart("Claim path: direct vs fused", nil, nil, fmtRate)}
	}
	bars = append(bars, bar{"throughput (jobs/s)", []float64{d[0].Throughput, f[0].Throughput}})
	var lat []bar
	for _, pct := range []string{"p50", "p99"} {
		dv, _ := d[0].Metric("claim_call." + pct)
		fv, _ := f[0].Metric("claim_call." + pct)
		lat = append(lat, bar{"claim call " + pct, []float64{dv, fv}})
	}
	names := []string{"direct", "fused"}
	return []chart{barChart("Claim path: direct vs fused", names, bars, fmtRate),
		barChart("Claim call latency: direct vs fused", names, lat, fmtUS)}
}

// recoveryCurve draws crash → completion with its bound, lease TTL + scan
// interval: the recovery target holds the p99 under it.
func recoveryCurve(rep *Report) chart {
	var ss []series
	for _, r := range byScenario(rep, ScenarioRecovery, "") {
		if s := r.Latency["crash_to_completion"]; s != nil && s.Count > 0 {
			ss = append(ss, series{name: fmt.Sprintf("TTL %v, scan %v", rep.Config.LeaseTTL, rep.Config.ScanInterval), pts: curve(s)})
		}
	}
	var bound []refLine
	if b := rep.Config.LeaseTTL + rep.Config.ScanInterval; len(ss) > 0 && b > 0 {
		bound = []refLine{{float64(b.Microseconds()), "bound (p99 target): lease TTL + scan = " + fmtUS(float64(b.Microseconds()))}}
	}
	return lineChartRefs("Crash → completion", pctAxis(), usAxis("latency"), ss, chartRefs{slo: bound})
}

// signalCurves draws signal-resume's latency curves, with the loaded
// FCALL round trip's p50 as a reference line.
func signalCurves(rep *Report) chart {
	const title = "Signal → resume latency (open loop)"
	r := signalResult(rep)
	if r == nil {
		return lineChart(title, pctAxis(), usAxis("latency"), nil, nil)
	}
	var ss []series
	for _, name := range []string{"signal_lag", "signal", "fcall_rtt", "resume"} {
		if s := r.Latency[name]; s != nil && s.Count > 0 {
			ss = append(ss, series{name: name, pts: curve(s)})
		}
	}
	var refs []refLine
	if lr := r.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 {
		refs = append(refs, refLine{lr.P50, "loaded FCALL p50 " + fmtUS(lr.P50)})
	}
	return lineChart(fmt.Sprintf("Signal → resume latency, open loop at %s cycles/s", fmtRate(r.OfferedRate)), pctAxis(), usAxis("from the intended time"), ss, refs)
}

func efficiencyBars(rep *Report) chart {
	var bars []bar
	for _, r := range rep.Results {
		if r.Scenario == ScenarioPartitionSweep || r.Scenario == ScenarioPeers || r.CommandsPerOp == 0 || (r.Scenario == ScenarioRenew && r.Partitions != 16) ||
			(r.Scenario == ScenarioClaimLatency && r.Partitions != 16) {
			continue
		}
		bars = append(bars, bar{r.Key(), []float64{r.CommandsPerOp, r.FcallsPerOp}})
	}
	return barChart("Valkey commands per operation", []string{"commands", "FCALLs"}, bars,
		func(v float64) string { return fmt.Sprintf("%.2f", v) })
}

const css = `
:root{--fg:#111827;--mute:#6b7280;--line:#e5e7eb;--bg:#fafafa}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);margin:0;padding:24px 32px;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h1 .prof{font-weight:400;color:var(--mute);font-size:16px}
h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}
.env{color:var(--mute);margin:0 0 12px}
.badge{display:inline-block;padding:6px 12px;border-radius:6px;font-weight:600;margin:6px 0 14px}
.badge.ok{background:#dcfce7;color:#166534}.badge.bad{background:#fee2e2;color:#991b1b}
.cards{display:flex;flex-wrap:wrap;gap:14px;margin:4px 0 8px}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px 16px;min-width:220px;flex:1}
.card .v{font-size:28px;font-weight:700}.card .l{font-weight:600}.card .s{color:var(--mute);font-size:12px}
.card.good{border-left:5px solid #16a34a}.card.miss{border-left:5px solid #dc2626}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px}.grid.peers{margin-top:16px}
figure{margin:0;background:#fff;border:1px solid var(--line);border-radius:10px;padding:10px}
figcaption{color:var(--mute);font-size:12px;margin-top:4px}
svg.chart{width:100%;height:auto;display:block}
svg .ct{font-size:14px;font-weight:600;fill:#111827}svg .tl{font-size:11px;fill:#4b5563}svg .al{font-size:12px;fill:#374151}
svg .lg{font-size:11px;fill:#111827}svg .plot{fill:#fff;stroke:#d1d5db}svg .grid{stroke:#f0f0f0}
svg .ref{stroke:#6b7280;stroke-dasharray:4 4}svg .rl{font-size:11px;fill:#6b7280}
svg .slo{stroke:#dc2626;stroke-width:1.5;stroke-dasharray:8 3}svg .sl{font-size:11px;fill:#b91c1c;font-weight:600}svg .empty{font-size:13px;fill:#9ca3af}
.tw{overflow-x:auto}table{border-collapse:collapse;background:#fff;font-size:12.5px}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f3f4f6}td:first-child,td:nth-child(2){text-align:left}table.results td:nth-child(9){text-align:left}
table.results td:nth-child(4),table.results td:nth-child(5){font-weight:600}table.steps td:last-child{text-align:left;white-space:normal}
tr.missed td{color:#6b7280}.targets{list-style:none;padding:0}.targets b.good{color:#166534}.targets b.miss{color:#b91c1c}
.capacity .head{font-size:17px;font-weight:600}
tr.fail td{background:#fef2f2}table.peers td:nth-child(7){text-align:right}table.peers td:last-child{text-align:left}
pre{background:#fff;border:1px solid var(--line);padding:10px;overflow-x:auto;font-size:12px}
footer{color:var(--mute);font-size:12px;margin-top:28px}
`
