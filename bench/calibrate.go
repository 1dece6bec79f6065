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
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"
)

// CalibrationTolerance is how far ffbench's raw figures may be from
// valkey-benchmark's on the same server for the harness to be trusted.
const CalibrationTolerance = 0.15

// calibrationRounds is how many interleaved ffbench / valkey-benchmark runs
// each figure takes; the median of the rounds' ratios is judged.
const calibrationRounds = 5

// Calibration compares ffbench's raw anchors with valkey-benchmark sending
// the same commands to the same server in the same session.
type Calibration struct {
	Rows      []CalibrationRow `json:"rows"`
	Tolerance float64          `json:"tolerance"`
	OK        bool             `json:"ok"`
}

// CalibrationRow is one command in one mode.
type CalibrationRow struct {
	Command string `json:"command"`
	Mode    string `json:"mode"` // "serial" (one connection, no pipeline) or "pipelined"
	Conns   int    `json:"conns"`
	Depth   int    `json:"depth"`
	// Calls per second measured by ffbench's probe and by valkey-benchmark:
	// the median of calibrationRounds interleaved runs each.
	FFBench         float64 `json:"ffbench_rate"`
	ValkeyBenchmark float64 `json:"valkey_benchmark_rate"`
	// Mean round trip (serial rows), µs.
	FFBenchMeanUS         float64 `json:"ffbench_mean_us,omitempty"`
	ValkeyBenchmarkMeanUS float64 `json:"valkey_benchmark_mean_us,omitempty"`
	Diff                  float64 `json:"diff"` // median over rounds of ffbench / valkey-benchmark, - 1
	Within                bool    `json:"within"`
}

// Calibrate measures ff_version and ff_renew (one held lease) serially and
// pipelined, with ffbench's raw clients and with valkey-benchmark (path
// given, default "valkey-benchmark"), and compares the rates.
func (r *Runner) Calibrate(ctx context.Context, vbPath string, d time.Duration) (*Calibration, error) {
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
			row := CalibrationRow{Command: c.name, Mode: mode, Conns: conns, Depth: depth}
			enc := encodeCommand(c.cmd.Commands())
			ours := func() (float64, float64, error) {
				if mode == "serial" {
					h, err := probeSerial(ctx, addr, enc, d, probeCPU())
					if err != nil {
						return 0, 0, err
					}
					return 1e6 / h.Mean(), h.Mean(), nil
				}
				rate, err := probePipelined(ctx, addr, enc, conns, depth, d, probeCPU())
				return rate, 0, err
			}
			// Interleave ffbench and valkey-benchmark runs, each round one
			// of each back to back, and judge the median of the rounds'
			// ratios: a shared machine's slow spells then weigh on both
			// sides of a round alike. The rates shown are each side's
			// median.
			var ourRates, ourMeans, vbRates, vbMeans, ratios []float64
			for range calibrationRounds {
				a, am, err := ours()
				if err != nil {
					return nil, err
				}
				n := int(math.Max(a*d.Seconds(), 1000))
				vbRate, vbMean, err := runValkeyBenchmark(ctx, vbPath, addr, conns, depth, n, c.cmd.Commands())
				if err != nil {
					return nil, err
				}
				ourRates, ourMeans = append(ourRates, a), append(ourMeans, am)
				vbRates, vbMeans = append(vbRates, vbRate), append(vbMeans, vbMean)
				if vbRate > 0 {
					ratios = append(ratios, a/vbRate)
				}
			}
			row.FFBench, row.ValkeyBenchmark = round3(median(ourRates)), round3(median(vbRates))
			if mode == "serial" {
				row.FFBenchMeanUS, row.ValkeyBenchmarkMeanUS = round3(median(ourMeans)), round3(median(vbMeans))
			}
			row.Diff = round3(median(ratios) - 1)
			row.Within = math.Abs(row.Diff) <= CalibrationTolerance
			cal.OK = cal.OK && row.Within
			cal.Rows = append(cal.Rows, row)
		}
	}
	r.prog.Detail(nil)
	return cal, nil
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

// runValkeyBenchmark runs valkey-benchmark with the given command and
// returns its rate (requests/s) and mean latency (µs).
func runValkeyBenchmark(ctx context.Context, path, addr string, conns, depth, n int, args []string) (float64, float64, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, 0, err
	}
	cmdline := []string{"-h", host, "-p", port, "-c", strconv.Itoa(conns), "-P", strconv.Itoa(depth),
		"-n", strconv.Itoa(n), "--csv"}
	cmdline = append(cmdline, args...)
	// On the CPU ffbench's probes use (see probeCPU), when taskset is here.
	if cpu := probeCPU(); cpu >= 0 {
		if ts, err := exec.LookPath("taskset"); err == nil {
			cmdline = append([]string{"-c", strconv.Itoa(cpu), path}, cmdline...)
			path = ts
		}
	}
	var out, stderr bytes.Buffer
	c := exec.CommandContext(ctx, path, cmdline...)
	c.Stdout, c.Stderr = &out, &stderr
	if err := c.Run(); err != nil {
		return 0, 0, fmt.Errorf("valkey-benchmark: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return parseBenchmarkCSV(out.String())
}

// parseBenchmarkCSV reads valkey-benchmark --csv: a header with "rps" and
// "avg_latency_ms", then one row.
func parseBenchmarkCSV(s string) (rate, meanUS float64, err error) {
	r := csv.NewReader(strings.NewReader(s))
	r.FieldsPerRecord = -1
	var header []string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, 0, fmt.Errorf("valkey-benchmark csv: %w", err)
		}
		if header == nil {
			header = rec
			continue
		}
		for i, h := range header {
			if i >= len(rec) {
				break
			}
			v, _ := strconv.ParseFloat(rec[i], 64)
			switch h {
			case "rps":
				rate = v
			case "avg_latency_ms":
				meanUS = v * 1000
			}
		}
		if rate > 0 {
			return rate, meanUS, nil
		}
	}
	return 0, 0, fmt.Errorf("valkey-benchmark csv: no rate in %q", s)
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
