package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Baseline schema identifiers.
const (
	BaselineSchemaName    = "flowfabric.ffbench.baseline"
	BaselineSchemaVersion = 1
)

// Metric classes: counters barely move with noise (commands per op,
// allocations per op); ratios compare two figures measured in the same run
// (SDK vs raw ceiling). Absolute times are never gated.
const (
	ClassCounter = "counter"
	ClassRatio   = "ratio"
)

// Baseline is the committed reference a report is gated against.
type Baseline struct {
	Schema        string           `json:"schema"`
	SchemaVersion int              `json:"schema_version"`
	Note          string           `json:"note,omitempty"`
	Source        string           `json:"source,omitempty"` // the report the values came from
	Metrics       []BaselineMetric `json:"metrics"`
}

// BaselineMetric is one gated figure. A metric fails when it is worse than
// the baseline by more than max(Abs, Rel×|baseline|).
type BaselineMetric struct {
	// Metric is "result-key:metric" (see Result.Metric and Report.Metric);
	// "key:cmd.*" gates the calls per op of every command, each against its
	// own baseline (a command absent from Values has baseline 0).
	Metric string `json:"metric"`
	Class  string `json:"class"`
	// Better is "higher" or "lower".
	Better string             `json:"better"`
	Value  float64            `json:"value,omitempty"`
	Values map[string]float64 `json:"values,omitempty"`
	Rel    float64            `json:"rel,omitempty"`
	Abs    float64            `json:"abs,omitempty"`
	Why    string             `json:"why,omitempty"`
}

// ReadBaseline reads and checks a baseline file.
func ReadBaseline(path string) (*Baseline, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var bl Baseline
	if err := json.Unmarshal(b, &bl); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if bl.Schema != BaselineSchemaName || bl.SchemaVersion != BaselineSchemaVersion {
		return nil, fmt.Errorf("%s: schema %q v%d, want %q v%d", path, bl.Schema, bl.SchemaVersion,
			BaselineSchemaName, BaselineSchemaVersion)
	}
	for _, m := range bl.Metrics {
		if m.Better != "higher" && m.Better != "lower" {
			return nil, fmt.Errorf("%s: %s: better must be higher or lower", path, m.Metric)
		}
		if m.Class != ClassCounter && m.Class != ClassRatio {
			return nil, fmt.Errorf("%s: %s: class must be %s or %s", path, m.Metric, ClassCounter, ClassRatio)
		}
	}
	return &bl, nil
}

// WriteJSON writes the baseline (indented, "<>&" left as they are: people
// read and edit this file).
func (bl *Baseline) WriteJSON(path string) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(bl); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// Check is the verdict on one metric.
type Check struct {
	Metric   string  `json:"metric"`
	Class    string  `json:"class"`
	Better   string  `json:"better"`
	Baseline float64 `json:"baseline"`
	Got      float64 `json:"got"`
	// Worse is by how much the figure is worse than the baseline (negative:
	// better); Allowed is the tolerance.
	Worse      float64   `json:"worse"`
	Allowed    float64   `json:"allowed"`
	Missing    bool      `json:"missing,omitempty"`
	Pass       bool      `json:"pass"`
	Remeasured []float64 `json:"remeasured,omitempty"`
}

// Change is the relative change from the baseline (+0.12 = 12% higher).
func (c Check) Change() float64 {
	if c.Baseline == 0 {
		if c.Got == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return c.Got/c.Baseline - 1
}

// String prints the check, e.g. "FAIL ratio renew-throughput/sdk/P=16:ratio_to_ceiling
// 0.712 vs baseline 0.952 (-25.2%, allowed -15.0%)".
func (c Check) String() string {
	verdict := "ok  "
	if !c.Pass {
		verdict = "FAIL"
	}
	if c.Missing {
		return fmt.Sprintf("%s %-7s %s: missing from the report", verdict, c.Class, c.Metric)
	}
	s := fmt.Sprintf("%s %-7s %s: %s vs baseline %s (%s; worse by %s, allowed %s)", verdict, c.Class, c.Metric,
		trimFloat(c.Got), trimFloat(c.Baseline), pctChange(c.Change()), trimFloat(c.Worse), trimFloat(c.Allowed))
	if len(c.Remeasured) > 0 {
		var rs []string
		for _, v := range c.Remeasured {
			rs = append(rs, trimFloat(v))
		}
		s += "; re-measured " + strings.Join(rs, ", ")
	}
	return s
}

func pctChange(v float64) string {
	if math.IsInf(v, 0) {
		return "new"
	}
	return fmt.Sprintf("%+.1f%%", 100*v)
}

// evaluate judges got against one baseline value.
func evaluate(m BaselineMetric, name string, base, got float64) Check {
	c := Check{Metric: name, Class: m.Class, Better: m.Better, Baseline: base, Got: got}
	c.Worse = got - base
	if m.Better == "higher" {
		c.Worse = base - got
	}
	c.Allowed = math.Max(m.Abs, m.Rel*math.Abs(base))
	c.Pass = c.Worse <= c.Allowed+1e-9
	return c
}

// Compare checks every baseline metric of the given classes (all when
// empty) against the report.
func Compare(bl *Baseline, rep *Report, classes []string) []Check {
	var out []Check
	for _, m := range bl.Metrics {
		if len(classes) > 0 && !slices.Contains(classes, m.Class) {
			continue
		}
		out = append(out, compareOne(m, rep)...)
	}
	return out
}

func compareOne(m BaselineMetric, rep *Report) []Check {
	key, metric, _ := strings.Cut(m.Metric, ":")
	if metric == "cmd.*" {
		r := rep.Find(key)
		if r == nil || r.Ops == 0 {
			return []Check{{Metric: m.Metric, Class: m.Class, Missing: true}}
		}
		names := map[string]bool{}
		for k := range m.Values {
			names[k] = true
		}
		for k := range r.CommandMix {
			names[k] = true
		}
		sorted := make([]string, 0, len(names))
		for k := range names {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		var out []Check
		for _, k := range sorted {
			out = append(out, evaluate(m, key+":cmd."+k, m.Values[k], r.CommandMix[k]))
		}
		return out
	}
	got, ok := rep.Metric(m.Metric)
	if !ok {
		return []Check{{Metric: m.Metric, Class: m.Class, Missing: true}}
	}
	return []Check{evaluate(m, m.Metric, m.Value, got)}
}

// GateOptions configures Gate.
type GateOptions struct {
	// Classes limits the gate to these metric classes; empty gates all.
	Classes []string
	// Remeasure is how many times a failing metric is measured again before
	// the gate fails; it fails only if every measurement fails. Default 0.
	Remeasure int
	// Runner re-measures; required when Remeasure > 0.
	Runner *Runner
}

// GateResult is the gate's verdict.
type GateResult struct {
	Checks []Check
	// Correctness failures of the report (lost or duplicated work) fail the
	// gate whatever the metrics say.
	Correctness []string
}

// Pass reports whether every check passed and the report was correct.
func (g GateResult) Pass() bool {
	if len(g.Correctness) > 0 {
		return false
	}
	for _, c := range g.Checks {
		if !c.Pass {
			return false
		}
	}
	return true
}

// Regressions returns the failed checks.
func (g GateResult) Regressions() []Check {
	var out []Check
	for _, c := range g.Checks {
		if !c.Pass {
			out = append(out, c)
		}
	}
	return out
}

// Gate compares rep with bl, re-measuring failing metrics when asked.
func Gate(ctx context.Context, bl *Baseline, rep *Report, o GateOptions) (GateResult, error) {
	g := GateResult{Checks: Compare(bl, rep, o.Classes)}
	if !rep.OK() {
		g.Correctness = append([]string{fmt.Sprintf("the report has %d lost and %d duplicated completions", rep.Lost, rep.Duplicated)}, rep.Failures...)
	}
	if o.Remeasure <= 0 || o.Runner == nil {
		return g, nil
	}
	metrics := map[string]BaselineMetric{}
	for _, m := range bl.Metrics {
		metrics[m.Metric] = m
	}
	cache := map[string][]*Report{} // result key → re-measured reports
	for i, c := range g.Checks {
		if c.Pass || c.Missing {
			continue
		}
		key, metric, _ := strings.Cut(c.Metric, ":")
		m, ok := metrics[c.Metric]
		if !ok && strings.HasPrefix(metric, "cmd.") {
			m = metrics[key+":cmd.*"]
		}
		for n := 0; n < o.Remeasure; n++ {
			if n >= len(cache[key]) {
				again, err := o.Runner.Remeasure(ctx, key, rep)
				if err != nil {
					return g, fmt.Errorf("re-measuring %s: %w", key, err)
				}
				cache[key] = append(cache[key], again)
			}
			got, ok := cache[key][n].Metric(c.Metric)
			if !ok {
				continue
			}
			g.Checks[i].Remeasured = append(g.Checks[i].Remeasured, got)
			if evaluate(m, c.Metric, c.Baseline, got).Pass {
				g.Checks[i].Pass = true
				break
			}
		}
	}
	return g, nil
}

// Remeasure runs the scenario that produced result key again, with the
// configuration recorded in rep, and returns a report holding it.
func (r *Runner) Remeasure(ctx context.Context, key string, rep *Report) (*Report, error) {
	out, err := r.anchoredReport(ctx)
	if err != nil {
		return nil, err
	}
	if key == "anchors" {
		return out, nil
	}
	parts := strings.Split(key, "/")
	p, err := strconv.Atoi(strings.TrimPrefix(parts[len(parts)-1], "P="))
	if err != nil {
		return nil, fmt.Errorf("result key %q has no partition count", key)
	}
	r.cfg.Partitions = p
	if old := rep.Find(key); old != nil && old.OfferedRate > 0 {
		r.cfg.Rate = old.OfferedRate // the same open-loop rate as the gated run
	}
	scenario := parts[0]
	var res []*Result
	switch scenario {
	case ScenarioRenew:
		res, err = r.runRenew(ctx, ScenarioRenew, p)
	default:
		res, err = r.RunScenario(ctx, scenario)
	}
	if err != nil {
		return nil, err
	}
	out.Results = res
	r.finish(out)
	return out, nil
}

// NewBaseline takes the current values of tmpl's metrics from rep, keeping
// tmpl's classes and tolerances.
func NewBaseline(tmpl *Baseline, rep *Report) (*Baseline, error) {
	out := &Baseline{Schema: BaselineSchemaName, SchemaVersion: BaselineSchemaVersion, Note: tmpl.Note,
		Source: fmt.Sprintf("%s profile, git %s, %s, %d cores, Valkey %s %s", rep.Profile, short(rep.GitSHA),
			rep.CreatedAt.Format(time.DateOnly), rep.Cores, rep.Valkey.Version, rep.Valkey.Topology)}
	for _, m := range tmpl.Metrics {
		key, metric, _ := strings.Cut(m.Metric, ":")
		if metric == "cmd.*" {
			r := rep.Find(key)
			if r == nil {
				return nil, fmt.Errorf("%s: no result %s in the report", m.Metric, key)
			}
			m.Values = map[string]float64{}
			for k, v := range r.CommandMix {
				m.Values[k] = v
			}
		} else {
			v, ok := rep.Metric(m.Metric)
			if !ok {
				return nil, fmt.Errorf("%s: not in the report", m.Metric)
			}
			m.Value = v
		}
		out.Metrics = append(out.Metrics, m)
	}
	return out, nil
}
