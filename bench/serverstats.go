package bench

import (
	"bufio"
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"
)

// serverSnapshot is INFO commandstats and INFO cpu summed over the primaries.
type serverSnapshot struct {
	at    time.Time
	calls map[string]int64 // command → calls (script-internal calls included)
	// usec is command → server time spent in it, µs (an FCALL's includes
	// the commands its function ran, which count under their own names too)
	usec map[string]int64
	cpu  float64 // used_cpu_user + used_cpu_sys, seconds
	// cpuByNode is cpu per primary, in the Target's primaries order.
	cpuByNode []float64
}

// probeCommands are the harness's own commands, left out of per-op counts.
var probeCommands = map[string]bool{"info": true}

// snapshotServer reads the counters of every primary.
func snapshotServer(ctx context.Context, nodes []valkey.Client) (serverSnapshot, error) {
	s := serverSnapshot{at: time.Now(), calls: map[string]int64{}, usec: map[string]int64{}}
	for _, n := range nodes {
		res := n.DoMulti(ctx, n.B().Info().Section("commandstats").Build(), n.B().Info().Section("cpu").Build())
		cs, err := res[0].ToString()
		if err != nil {
			return s, err
		}
		cpu, err := res[1].ToString()
		if err != nil {
			return s, err
		}
		for k, v := range parseCommandStats(cs) {
			s.calls[k] += v
		}
		for k, v := range parseCommandUsec(cs) {
			s.usec[k] += v
		}
		f := infoFields(cpu)
		u, _ := strconv.ParseFloat(f["used_cpu_user"], 64)
		y, _ := strconv.ParseFloat(f["used_cpu_sys"], 64)
		s.cpu += u + y
		s.cpuByNode = append(s.cpuByNode, u+y)
	}
	return s, nil
}

// parseCommandStats reads "cmdstat_<name>:calls=N,..." lines.
func parseCommandStats(info string) map[string]int64 {
	out := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return out
}

// parseCommandUsec reads the usec= field of "cmdstat_<name>:..." lines.
func parseCommandUsec(info string) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "usec="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return out
}

// infoFields reads "key:value" lines of an INFO section.
func infoFields(info string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out
}

// serverDelta is what the server did between two snapshots.
type serverDelta struct {
	calls      map[string]int64
	usec       map[string]int64 // server time per command, µs (see serverSnapshot.usec)
	cpuSeconds float64
	cpuByNode  []float64 // per primary (serverSnapshot.cpuByNode)
}

func (a serverSnapshot) to(b serverSnapshot) serverDelta {
	d := serverDelta{calls: map[string]int64{}, usec: map[string]int64{}, cpuSeconds: b.cpu - a.cpu}
	if len(a.cpuByNode) == len(b.cpuByNode) {
		for i := range b.cpuByNode {
			d.cpuByNode = append(d.cpuByNode, b.cpuByNode[i]-a.cpuByNode[i])
		}
	}
	for k, v := range b.calls {
		if probeCommands[k] {
			continue
		}
		if n := v - a.calls[k]; n > 0 {
			d.calls[k] = n
		}
	}
	for k, v := range b.usec {
		if n := v - a.usec[k]; n > 0 && !probeCommands[k] {
			d.usec[k] = n
		}
	}
	return d
}

// add accumulates e into d.
func (d *serverDelta) add(e serverDelta) {
	if d.calls == nil {
		d.calls = map[string]int64{}
	}
	if d.usec == nil {
		d.usec = map[string]int64{}
	}
	for k, v := range e.calls {
		d.calls[k] += v
	}
	for k, v := range e.usec {
		d.usec[k] += v
	}
	d.cpuSeconds += e.cpuSeconds
	if len(d.cpuByNode) == 0 {
		d.cpuByNode = make([]float64, len(e.cpuByNode))
	}
	if len(d.cpuByNode) == len(e.cpuByNode) {
		for i, v := range e.cpuByNode {
			d.cpuByNode[i] += v
		}
	}
}

func (d serverDelta) total() int64 {
	var t int64
	for _, v := range d.calls {
		t += v
	}
	return t
}

// efficiency fills a result's per-op counters from a server delta, a client
// allocation delta and the op count.
func (r *Result) efficiency(d serverDelta, mallocs uint64, ops int64) {
	if ops <= 0 {
		return
	}
	n := float64(ops)
	r.CommandsPerOp = round3(float64(d.total()) / n)
	r.FcallsPerOp = round3(float64(d.calls["fcall"]+d.calls["fcall_ro"]) / n)
	r.ValkeyCPUPerOpUS = round3(d.cpuSeconds * 1e6 / n)
	r.PrimaryCPUPerOpUS = nil
	for _, c := range d.cpuByNode {
		r.PrimaryCPUPerOpUS = append(r.PrimaryCPUPerOpUS, round3(c*1e6/n))
	}
	r.AllocsPerOp = round3(float64(mallocs) / n)
	r.CommandMix = map[string]float64{}
	names := make([]string, 0, len(d.calls))
	for k := range d.calls {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		r.CommandMix[k] = round3(float64(d.calls[k]) / n)
	}
}

func round3(f float64) float64 {
	return float64(int64(f*1000+0.5)) / 1000
}
