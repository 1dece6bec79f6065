package bench

import (
	"runtime/metrics"
	"time"
)

// gcWork is what this process's garbage collector had done by a moment
// (readGCWork), or in a window (since): cycles finished and the CPU time
// its mark and sweep work took, assists included, as the runtime counts
// them (runtime/metrics, updated as cycles end). On a small machine the
// mark phases are where an open loop's latency tail comes from: the
// workers, the producer and the recorder all share this process.
type gcWork struct {
	cycles uint64
	cpu    time.Duration
}

var gcMetrics = [...]string{"/gc/cycles/total:gc-cycles", "/cpu/classes/gc/total:cpu-seconds"}

func readGCWork() gcWork {
	s := make([]metrics.Sample, len(gcMetrics))
	for i, name := range gcMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	var w gcWork
	if s[0].Value.Kind() == metrics.KindUint64 {
		w.cycles = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindFloat64 {
		w.cpu = time.Duration(s[1].Value.Float64() * float64(time.Second))
	}
	return w
}

// since is the work done after before.
func (w gcWork) since(before gcWork) gcWork {
	return gcWork{cycles: w.cycles - before.cycles, cpu: w.cpu - before.cpu}
}

// report adds the window's collector figures to extra: gc_cycles, and
// with at least one, gc_every_ms (the window over its cycles) and, when
// the process's CPU in the window (cpu) is known, gc_cpu_share (the
// collector's part of it, 0..1).
func (w gcWork) report(extra map[string]float64, win Window, cpu time.Duration) {
	extra["gc_cycles"] = float64(w.cycles)
	if w.cycles == 0 {
		return
	}
	extra["gc_every_ms"] = round3(float64(win.To.Sub(win.From).Milliseconds()) / float64(w.cycles))
	if cpu > 0 {
		extra["gc_cpu_share"] = round3(min(1, max(0, float64(w.cpu)/float64(cpu))))
	}
}
