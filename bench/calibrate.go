package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"net"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"
)

// CalibrationTolerance is how far ffbench's raw figures may be from
// valkey-benchmark's on the same server for the harness to be trusted.
const CalibrationTolerance = 0.15

// calibrationRounds is how many interleaved ffbench / valkey-benchmark
// slices each figure takes (see CalibrationRow.Diff for how they are
// judged). Many short rounds rather than a few long ones: a shared machine
// has slow spells of a second or more, a round's two sides must see the
// same machine, and a ceiling needs enough slices that both sides catch
// an unthrottled one.
const calibrationRounds = 15

// Calibration compares ffbench's raw anchors with valkey-benchmark sending
// the same commands to the same server in the same session.
type Calibration struct {
	Rows      []CalibrationRow `json:"rows"`
	Tolerance float64          `json:"tolerance"`
	// ServerPinned: the server is the embedded one (started by ffbench) and
	// its main thread was kept on a CPU other than the clients' while
	// calibrating.
	ServerPinned bool `json:"server_pinned"`
	OK           bool `json:"ok"`
}

// CalibrationRow is one command in one mode.
type CalibrationRow struct {
	Command string `json:"command"`
	Mode    string `json:"mode"` // "serial" (one connection, no pipeline) or "pipelined"
	Conns   int    `json:"conns"`
	Depth   int    `json:"depth"`
	// Calls per second measured by ffbench's probe and by valkey-benchmark:
	// a serial row's median over the rounds, a pipelined row's best round
	// (see Diff).
	FFBench         float64 `json:"ffbench_rate"`
	ValkeyBenchmark float64 `json:"valkey_benchmark_rate"`
	// Serial rows: the round trip's median and mean, µs (medians over the
	// rounds).
	FFBenchP50US          float64 `json:"ffbench_p50_us,omitempty"`
	ValkeyBenchmarkP50US  float64 `json:"valkey_benchmark_p50_us,omitempty"`
	FFBenchMeanUS         float64 `json:"ffbench_mean_us,omitempty"`
	ValkeyBenchmarkMeanUS float64 `json:"valkey_benchmark_mean_us,omitempty"`
	// Diff is how much faster ffbench's figure is, as a fraction. A serial
	// row compares the round trip's p50 (the serial anchor the harness
	// quotes is a p50): the median over rounds of valkey-benchmark's /
	// ffbench's - 1. A pipelined row compares the ceiling: each side's best
	// round, ffbench's / valkey-benchmark's - 1. A best round, because a
	// throttled VM only ever slows a slice down (by up to 10x here, slice to
	// slice), so the fastest slices are the ones that saw the server's
	// capacity; a median of ratios there judges the throttling.
	Diff   float64 `json:"diff"`
	Within bool    `json:"within"`
}

// calSample is one slice's measurement by either side.
type calSample struct {
	rate, meanUS, p50US float64
}

// Calibrate measures ff_version and ff_renew (one held lease) serially and
// pipelined, with ffbench's raw clients and with valkey-benchmark (path
// given, default "valkey-benchmark"), and compares them. Each side
// measures calibrationRounds slices of length slice per figure, the two
// taking turns (ABBA order).
func (r *Runner) Calibrate(ctx context.Context, vbPath string, slice time.Duration) (*Calibration, error) {
	if vbPath == "" {
		vbPath = "valkey-benchmark"
	}
	if _, err := exec.LookPath(vbPath); err != nil {
		return nil, fmt.Errorf("calibrate needs valkey-benchmark (package valkey-tools): %w", err)
	}
	r.prog.Stage("calibrate: ffbench vs valkey-benchmark")
	renew, cleanup, err := r.anchorCommand(ctx)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	version := r.t.raw.B().Fcall().Function("ff_version").Numkeys(0).Build().Pin()
	addr, err := r.nodeFor(ctx, renew)
	if err != nil {
		return nil, err
	}
	cal := &Calibration{Tolerance: CalibrationTolerance, OK: true}
	// Both tools' clients run on one CPU; valkey-benchmark through taskset,
	// when it is here.
	cpu := probeCPU()
	vb := []string{vbPath}
	if ts, err := exec.LookPath("taskset"); err == nil && cpu >= 0 {
		vb = []string{ts, "-c", strconv.Itoa(cpu), vbPath}
	}
	// Only a server ffbench started itself is pinned (it knows the pid):
	// another process's affinity is not ffbench's to change.
	if pid := r.t.serverPID(addr); pid > 0 {
		undo, ok := pinServerAway(pid, cpu)
		defer undo()
		cal.ServerPinned = ok
	}
	for _, c := range []struct {
		name string
		cmd  valkey.Completed
	}{{"FCALL ff_version 0", version}, {"FCALL ff_renew (1 lease)", renew}} {
		for _, mode := range []string{"serial", "pipelined"} {
			conns, depth := 1, 1
			if mode == "pipelined" {
				conns, depth = r.cfg.PipelineConns, r.cfg.PipelineDepth
			}
			r.prog.Detail(func() string { return c.name + " " + mode })
			row, err := calibrateRow(ctx, vb, cpu, addr, c.cmd.Commands(), mode, conns, depth, slice)
			if err != nil {
				return nil, err
			}
			row.Command = c.name
			cal.OK = cal.OK && row.Within
			cal.Rows = append(cal.Rows, row)
		}
	}
	r.prog.Detail(nil)
	return cal, nil
}

// calibrateRow measures one command in one mode with both tools: ffbench's
// probes pinned to cpu, valkey-benchmark run by the command line vb.
func calibrateRow(ctx context.Context, vb []string, cpu int, addr string, args []string, mode string, conns, depth int,
	slice time.Duration) (CalibrationRow, error) {
	row := CalibrationRow{Mode: mode, Conns: conns, Depth: depth}
	enc := encodeCommand(args)
	lastRate := 0.0 // ffbench's last rate
	ours := func() (calSample, error) {
		if mode == "serial" {
			h, err := probeSerial(ctx, addr, enc, slice, cpu)
			if err != nil {
				return calSample{}, err
			}
			lastRate = 1e6 / h.Mean()
			return calSample{rate: lastRate, meanUS: h.Mean(), p50US: float64(h.ValueAtQuantile(50))}, nil
		}
		rate, err := probePipelined(ctx, addr, enc, conns, depth, slice, cpu)
		lastRate = rate
		return calSample{rate: rate}, err
	}
	theirs := func() (calSample, error) {
		// As many requests as ffbench's last slice made, so both sides
		// take about as long.
		n := int(math.Max(lastRate*slice.Seconds(), 500))
		return runValkeyBenchmark(ctx, vb, addr, conns, depth, n, args)
	}
	// Interleave the two tools' slices, each round one of each back to
	// back, alternating which goes first (ABBA): a shared machine's slow
	// spells then weigh on both sides alike.
	var oursAll, theirsAll []calSample
	var ratios []float64
	for i := range calibrationRounds {
		var a, v calSample
		var err error
		if i%4 == 0 || i%4 == 3 {
			if a, err = ours(); err == nil {
				v, err = theirs()
			}
		} else if v, err = theirs(); err == nil {
			a, err = ours()
		}
		if err != nil {
			return row, err
		}
		oursAll, theirsAll = append(oursAll, a), append(theirsAll, v)
		if a.p50US > 0 && v.p50US > 0 {
			ratios = append(ratios, v.p50US/a.p50US)
		}
	}
	pick := func(xs []calSample, f func(calSample) float64, agg func([]float64) float64) float64 {
		vals := make([]float64, len(xs))
		for i, x := range xs {
			vals[i] = f(x)
		}
		return round3(agg(vals))
	}
	rate := func(x calSample) float64 { return x.rate }
	if mode == "serial" {
		p50 := func(x calSample) float64 { return x.p50US }
		mean := func(x calSample) float64 { return x.meanUS }
		row.FFBench, row.ValkeyBenchmark = pick(oursAll, rate, median), pick(theirsAll, rate, median)
		row.FFBenchP50US, row.ValkeyBenchmarkP50US = pick(oursAll, p50, median), pick(theirsAll, p50, median)
		row.FFBenchMeanUS, row.ValkeyBenchmarkMeanUS = pick(oursAll, mean, median), pick(theirsAll, mean, median)
		if len(ratios) == 0 {
			return row, fmt.Errorf("calibrate %s: no comparable rounds", mode)
		}
		row.Diff = round3(median(ratios) - 1)
	} else {
		row.FFBench, row.ValkeyBenchmark = pick(oursAll, rate, slices.Max), pick(theirsAll, rate, slices.Max)
		if row.ValkeyBenchmark <= 0 {
			return row, fmt.Errorf("calibrate %s: valkey-benchmark measured no rate", mode)
		}
		row.Diff = round3(row.FFBench/row.ValkeyBenchmark - 1)
	}
	row.Within = math.Abs(row.Diff) <= CalibrationTolerance
	return row, nil
}

// nodeFor returns the address of the primary that serves cmd's slot.
func (r *Runner) nodeFor(ctx context.Context, cmd valkey.Completed) (string, error) {
	if !r.t.Cluster {
		return r.t.firstAddr(), nil
	}
	for addr, n := range r.t.raw.Nodes() {
		if err := n.Do(ctx, cmd).Error(); err == nil {
			return addr, nil
		}
	}
	return "", fmt.Errorf("no node serves the calibration command's slot")
}

// runValkeyBenchmark runs valkey-benchmark (the command line vb) with the
// given command and returns its rate (requests/s) and its latency's mean
// and p50 (µs).
func runValkeyBenchmark(ctx context.Context, vb []string, addr string, conns, depth, n int, args []string) (calSample, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return calSample{}, err
	}
	cmdline := []string{"-h", host, "-p", port, "-c", strconv.Itoa(conns), "-P", strconv.Itoa(depth),
		"-n", strconv.Itoa(n), "--csv"}
	cmdline = append(cmdline, args...)
	var out, stderr bytes.Buffer
	c := exec.CommandContext(ctx, vb[0], append(vb[1:], cmdline...)...)
	c.Stdout, c.Stderr = &out, &stderr
	if err := c.Run(); err != nil {
		return calSample{}, fmt.Errorf("valkey-benchmark: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return parseBenchmarkCSV(out.String())
}

// parseBenchmarkCSV reads valkey-benchmark --csv: a header with "rps",
// "avg_latency_ms" and "p50_latency_ms", then one row.
func parseBenchmarkCSV(s string) (calSample, error) {
	r := csv.NewReader(strings.NewReader(s))
	r.FieldsPerRecord = -1
	var header []string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return calSample{}, fmt.Errorf("valkey-benchmark csv: %w", err)
		}
		if header == nil {
			header = rec
			continue
		}
		var x calSample
		for i, h := range header {
			if i >= len(rec) {
				break
			}
			v, _ := strconv.ParseFloat(rec[i], 64)
			switch h {
			case "rps":
				x.rate = v
			case "avg_latency_ms":
				x.meanUS = v * 1000
			case "p50_latency_ms":
				x.p50US = v * 1000
			}
		}
		if x.rate > 0 {
			return x, nil
		}
	}
	return calSample{}, fmt.Errorf("valkey-benchmark csv: no rate in %q", s)
}

// median of xs (0 for none); xs is left sorted.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	m := len(xs) / 2
	if len(xs)%2 == 0 {
		return (xs[m-1] + xs[m]) / 2
	}
	return xs[m]
}
