package bench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// A small SVG chart writer for the self-contained HTML report: line charts
// with linear, log or "nines" (percentile) axes, and grouped bar charts.

// palette colours the series in order. Red is left out: it is the alarm
// colour (a missed target, an SLO line), never a series'. Any two of the
// first six (a partition sweep's 1, 4, 16, 64, 256, 1024) differ in hue
// and lightness, and neighbours most: blue, orange, green, purple, black,
// pink, then sky blue and brown.
var palette = []string{"#1d4ed8", "#e69f00", "#059669", "#7c3aed", "#111827", "#db2777", "#56b4e9", "#92400e"}

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
			s := "0" // whatever the format makes of it ("-" for a missing rate)
			if math.Abs(v) > step*1e-6 {
				s = f(v)
			}
			out = append(out, [2]any{v, s})
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

// chart is one SVG chart: its size, its title and its elements in paint
// order. The page template writes it, escaping every attribute and text;
// names that come from a report are cleaned when the chart is made.
type chart struct {
	W, H  int
	Title string
	Els   []el
	// Empty: the chart says "no data in this run".
	Empty bool
}

// el is one SVG element: Tag is rect, line, text, polyline or circle. The
// geometry is preformatted numbers; Text is a text element's content and
// Title a tooltip (a <title> child).
type el struct {
	Tag                       string
	Class, Fill, Stroke, Dash string
	Anchor, Transform         string
	X, Y, X2, Y2, W, H, R     string
	Points                    string
	Text, Title               string
}

func (c *chart) add(e ...el) { c.Els = append(c.Els, e...) }

func num(v float64) string { return fmt.Sprintf("%.1f", v) }

func label(x, y, class, anchor, s string) el {
	return el{Tag: "text", X: x, Y: y, Class: class, Anchor: anchor, Text: s}
}

func gridLine(x1, x2, y1, y2, class string) el {
	return el{Tag: "line", X: x1, X2: x2, Y: y1, Y2: y2, Class: class}
}

// newChart starts a chart of w×h with its title, and says "no data" when
// there is none.
func newChart(w, h int, title string, empty bool) chart {
	c := chart{W: w, H: h, Title: clean(title, maxTextRunes), Empty: empty}
	c.add(label(strconv.Itoa(padL), "20", "ct", "", c.Title))
	if empty {
		c.add(label(strconv.Itoa(w/2-60), strconv.Itoa(h/2), "empty", "", "no data in this run"))
	}
	return c
}

// chartRefs are a chart's reference lines: y (grey, dashed: a figure to
// compare with), slo (red: a bound not to cross) and x (vertical, grey:
// for x refs, refLine.y is the x value).
type chartRefs struct {
	y, slo, x []refLine
}

// lineChart draws series as an SVG line chart with horizontal reference
// lines.
func lineChart(title string, x, y axis, ss []series, refs []refLine) chart {
	return lineChartRefs(title, x, y, ss, chartRefs{y: refs})
}

// lineChartRefs draws series as an SVG line chart with reference lines.
func lineChartRefs(title string, x, y axis, ss []series, rf chartRefs) chart {
	var xs, ys []float64
	for _, s := range ss {
		for _, p := range s.pts {
			xs, ys = append(xs, p[0]), append(ys, p[1])
		}
	}
	for _, r := range append(slices.Clone(rf.y), rf.slo...) {
		ys = append(ys, r.y)
	}
	for _, r := range rf.x {
		xs = append(xs, r.y)
	}
	c := newChart(chartW, chartH, title, len(xs) == 0)
	if len(xs) == 0 {
		return c
	}
	xlo, xhi := x.bounds(xs)
	ylo, yhi := y.bounds(ys)
	px := func(v float64) float64 { return padL + (x.tf(v)-xlo)/(xhi-xlo)*plotW }
	py := func(v float64) float64 { return padT + plotH - (y.tf(v)-ylo)/(yhi-ylo)*plotH }
	pxT := func(t float64) float64 { return padL + (t-xlo)/(xhi-xlo)*plotW }
	pyT := func(t float64) float64 { return padT + plotH - (t-ylo)/(yhi-ylo)*plotH }
	left, right, top, bottom := strconv.Itoa(padL), strconv.Itoa(padL+plotW), strconv.Itoa(padT), strconv.Itoa(padT+plotH)
	c.add(el{Tag: "rect", Class: "plot", X: left, Y: top, W: strconv.Itoa(plotW), H: strconv.Itoa(plotH)})
	for _, t := range y.ticks(ylo, yhi) {
		yy := pyT(t[0].(float64))
		c.add(gridLine(left, right, num(yy), num(yy), "grid"),
			label(strconv.Itoa(padL-6), num(yy+4), "tl", "end", t[1].(string)))
	}
	for _, t := range x.ticks(xlo, xhi) {
		xx := pxT(t[0].(float64))
		c.add(gridLine(num(xx), num(xx), top, bottom, "grid"),
			label(num(xx), strconv.Itoa(padT+plotH+16), "tl", "middle", t[1].(string)))
	}
	c.add(label(strconv.Itoa(padL+plotW/2), strconv.Itoa(chartH-6), "al", "middle", clean(x.label, maxTextRunes)))
	yl := label("14", strconv.Itoa(padT+plotH/2), "al", "middle", clean(y.label, maxTextRunes))
	yl.Transform = fmt.Sprintf("rotate(-90 14 %d)", padT+plotH/2)
	c.add(yl)
	for _, r := range rf.y {
		yy := py(r.y)
		c.add(gridLine(left, right, num(yy), num(yy), "ref"),
			label(strconv.Itoa(padL+4), num(yy-4), "rl", "", clean(r.label, maxTextRunes)))
	}
	for _, r := range rf.slo {
		yy := py(r.y)
		c.add(gridLine(left, right, num(yy), num(yy), "slo"),
			label(strconv.Itoa(padL+4), num(yy-4), "sl", "", clean(r.label, maxTextRunes)))
	}
	for _, r := range rf.x {
		xx := px(r.y)
		c.add(gridLine(num(xx), num(xx), top, bottom, "ref"),
			label(num(xx+4), strconv.Itoa(padT+12), "rl", "", clean(r.label, maxTextRunes)))
	}
	for i, s := range ss {
		col := palette[i%len(palette)]
		name := clean(s.name, maxNameRunes)
		var pts []string
		for _, p := range s.pts {
			pts = append(pts, num(px(p[0]))+","+num(py(p[1])))
		}
		line := el{Tag: "polyline", Class: "series", Stroke: col, Points: strings.Join(pts, " "), Title: name}
		if s.dash {
			line.Dash = "6 4"
		}
		c.add(line)
		for _, p := range s.pts {
			c.add(el{Tag: "circle", X: num(px(p[0])), Y: num(py(p[1])), R: "2.6", Fill: col,
				Title: name + ": " + fmtAxis(x, p[0]) + " → " + fmtAxis(y, p[1])})
		}
		lx := padL + (i%4)*(plotW/4)
		ly := 30 + (i/4)*legendRow
		c.add(el{Tag: "rect", X: strconv.Itoa(lx), Y: strconv.Itoa(ly), W: "14", H: "3", Fill: col},
			label(strconv.Itoa(lx+18), strconv.Itoa(ly+5), "lg", "", name))
	}
	return c
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

// barChart draws grouped horizontal bars.
func barChart(title string, seriesNames []string, bars []bar, format func(float64) string) chart {
	rowH := 18
	h := padT + len(bars)*(len(seriesNames)*rowH+10) + 20
	maxV := 0.0
	for _, br := range bars {
		for _, v := range br.values {
			maxV = math.Max(maxV, v)
		}
	}
	c := newChart(chartW, h, title, maxV == 0)
	if maxV == 0 {
		return c
	}
	left, width := 170, chartW-170-120 // room right of the longest bar for its value and name
	y := padT
	for _, br := range bars {
		name := clean(br.label, maxNameRunes)
		c.add(label(strconv.Itoa(left-8), strconv.Itoa(y+rowH*len(seriesNames)/2+4), "tl", "end", name))
		for i, v := range br.values {
			w := v / maxV * float64(width)
			col := palette[i%len(palette)]
			sn := clean(seriesNames[i], maxNameRunes)
			c.add(el{Tag: "rect", Class: "bar", X: strconv.Itoa(left), Y: strconv.Itoa(y), W: num(w), H: strconv.Itoa(rowH - 4),
				Fill: col, Title: name + " " + sn + ": " + format(v)},
				label(num(float64(left)+w+4), strconv.Itoa(y+rowH-7), "tl", "", format(v)+" "+sn))
			y += rowH
		}
		y += 10
	}
	return c
}
