package bench

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// A small SVG chart writer for the self-contained HTML report: line charts
// with linear, log or "nines" (percentile) axes, and grouped bar charts.

var palette = []string{"#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"}

type series struct {
	name string
	pts  [][2]float64
	dash bool
}

type scale int

const (
	linear scale = iota
	logScale
	nines // x is a percentile in [0,100]; plotted as -log10(1-q)
)

type axis struct {
	label  string
	scale  scale
	format func(float64) string
	min    float64 // 0,0: from data
	max    float64
	at     []float64 // ticks at these values instead of computed ones
}

type refLine struct {
	y     float64
	label string
}

const (
	chartW, chartH                 = 620, 330
	padL, padR, padT, padB         = 64, 28, 50, 44
	plotW                          = chartW - padL - padR
	plotH                          = chartH - padT - padB
	legendRow                      = 16
	maxNinesPlotted        float64 = 5
)

func (a axis) tf(v float64) float64 {
	switch a.scale {
	case logScale:
		return math.Log10(math.Max(v, 1e-9))
	case nines:
		if v >= 100 {
			return maxNinesPlotted
		}
		return math.Min(-math.Log10(1-v/100), maxNinesPlotted)
	}
	return v
}

// bounds returns the transformed range of the axis over values.
func (a axis) bounds(vals []float64) (lo, hi float64) {
	if a.min != 0 || a.max != 0 {
		return a.tf(a.min), a.tf(a.max)
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		t := a.tf(v)
		lo, hi = math.Min(lo, t), math.Max(hi, t)
	}
	if math.IsInf(lo, 0) {
		return 0, 1
	}
	switch a.scale {
	case logScale:
		lo, hi = math.Floor(lo), math.Ceil(hi)
		if hi == lo {
			hi++
		}
	case nines:
		lo, hi = 0, math.Ceil(hi)
		if hi < 1 {
			hi = 1
		}
	default:
		if lo > 0 {
			lo = 0
		}
		if hi == lo {
			hi = lo + 1
		}
		hi = niceCeil(hi * 1.08)
	}
	return lo, hi
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// ticks returns (transformed position, label) pairs.
func (a axis) ticks(lo, hi float64) [][2]any {
	var out [][2]any
	f := a.format
	if f == nil {
		f = func(v float64) string { return trimFloat(v) }
	}
	if len(a.at) > 0 {
		for _, v := range a.at {
			out = append(out, [2]any{a.tf(v), f(v)})
		}
		return out
	}
	switch a.scale {
	case logScale:
		for e := math.Floor(lo); e <= hi+1e-9; e++ {
			for _, m := range []float64{1, 2, 5} {
				t := e + math.Log10(m)
				if t >= lo-1e-9 && t <= hi+1e-9 && (m == 1 || hi-lo <= 3) {
					out = append(out, [2]any{t, f(math.Pow(10, t))})
				}
			}
		}
	case nines:
		out = append(out, [2]any{0.0, "0%"}, [2]any{math.Log10(2), "50%"})
		labels := []string{"90%", "99%", "99.9%", "99.99%", "99.999%"}
		for n := 1.0; n <= hi+1e-9 && int(n) <= len(labels); n++ {
			out = append(out, [2]any{n, labels[int(n)-1]})
		}
	default:
		step := niceCeil((hi - lo) / 5)
		for v := lo; v <= hi+1e-9; v += step {
			out = append(out, [2]any{v, f(v)})
		}
	}
	return out
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3g", v)
	if strings.Contains(s, "e") {
		return fmt.Sprintf("%.0f", v)
	}
	return s
}

// lineChart renders series as an SVG line chart.
func lineChart(title string, x, y axis, ss []series, refs []refLine) string {
	var xs, ys []float64
	for _, s := range ss {
		for _, p := range s.pts {
			xs, ys = append(xs, p[0]), append(ys, p[1])
		}
	}
	for _, r := range refs {
		ys = append(ys, r.y)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="20" class="ct">%s</text>`, padL, html.EscapeString(title))
	if len(xs) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="empty">no data in this run</text></svg>`, chartW/2-60, chartH/2)
		return b.String()
	}
	xlo, xhi := x.bounds(xs)
	ylo, yhi := y.bounds(ys)
	px := func(v float64) float64 { return padL + (x.tf(v)-xlo)/(xhi-xlo)*plotW }
	py := func(v float64) float64 { return padT + plotH - (y.tf(v)-ylo)/(yhi-ylo)*plotH }
	pxT := func(t float64) float64 { return padL + (t-xlo)/(xhi-xlo)*plotW }
	pyT := func(t float64) float64 { return padT + plotH - (t-ylo)/(yhi-ylo)*plotH }
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" class="plot"/>`, padL, padT, plotW, plotH)
	for _, t := range y.ticks(ylo, yhi) {
		yy := pyT(t[0].(float64))
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="grid"/><text x="%d" y="%.1f" class="tl" text-anchor="end">%s</text>`,
			padL, padL+plotW, yy, yy, padL-6, yy+4, html.EscapeString(t[1].(string)))
	}
	for _, t := range x.ticks(xlo, xhi) {
		xx := pxT(t[0].(float64))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" class="grid"/><text x="%.1f" y="%d" class="tl" text-anchor="middle">%s</text>`,
			xx, xx, padT, padT+plotH, xx, padT+plotH+16, html.EscapeString(t[1].(string)))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="al" text-anchor="middle">%s</text>`, padL+plotW/2, chartH-6, html.EscapeString(x.label))
	fmt.Fprintf(&b, `<text x="14" y="%d" class="al" text-anchor="middle" transform="rotate(-90 14 %d)">%s</text>`,
		padT+plotH/2, padT+plotH/2, html.EscapeString(y.label))
	for _, r := range refs {
		yy := py(r.y)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="ref"/><text x="%d" y="%.1f" class="rl">%s</text>`,
			padL, padL+plotW, yy, yy, padL+4, yy-4, html.EscapeString(r.label))
	}
	for i, s := range ss {
		col := palette[i%len(palette)]
		var pts []string
		for _, p := range s.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
		}
		dash := ""
		if s.dash {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<polyline class="series" fill="none" stroke="%s" stroke-width="2"%s points="%s"><title>%s</title></polyline>`,
			col, dash, strings.Join(pts, " "), html.EscapeString(s.name))
		for _, p := range s.pts {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.6" fill="%s"><title>%s: %s → %s</title></circle>`,
				px(p[0]), py(p[1]), col, html.EscapeString(s.name), fmtAxis(x, p[0]), fmtAxis(y, p[1]))
		}
		lx := padL + (i%4)*(plotW/4)
		ly := 30 + (i/4)*legendRow
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="3" fill="%s"/><text x="%d" y="%d" class="lg">%s</text>`,
			lx, ly, col, lx+18, ly+5, html.EscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func fmtAxis(a axis, v float64) string {
	if a.scale == nines {
		return trimFloat(v) + "%"
	}
	if a.format != nil {
		return a.format(v)
	}
	return trimFloat(v)
}

// bar is one group of a bar chart: a label and one value per series.
type bar struct {
	label  string
	values []float64
}

// barChart renders grouped horizontal bars.
func barChart(title string, seriesNames []string, bars []bar, format func(float64) string) string {
	var b strings.Builder
	rowH := 18
	h := padT + len(bars)*(len(seriesNames)*rowH+10) + 20
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		chartW, h, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="20" class="ct">%s</text>`, padL, html.EscapeString(title))
	maxV := 0.0
	for _, br := range bars {
		for _, v := range br.values {
			maxV = math.Max(maxV, v)
		}
	}
	if maxV == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="empty">no data in this run</text></svg>`, chartW/2-60, h/2)
		return b.String()
	}
	left, width := 170, chartW-170-120 // room right of the longest bar for its value and name
	y := padT
	for _, br := range bars {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="tl" text-anchor="end">%s</text>`, left-8, y+rowH*len(seriesNames)/2+4,
			html.EscapeString(br.label))
		for i, v := range br.values {
			w := v / maxV * float64(width)
			col := palette[i%len(palette)]
			fmt.Fprintf(&b, `<rect class="bar" x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s: %s</title></rect>`,
				left, y, w, rowH-4, col, html.EscapeString(br.label), html.EscapeString(seriesNames[i]), format(v))
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="tl">%s %s</text>`, float64(left)+w+4, y+rowH-7,
				html.EscapeString(format(v)), html.EscapeString(seriesNames[i]))
			y += rowH
		}
		y += 10
	}
	b.WriteString(`</svg>`)
	return b.String()
}
