package bench

import (
	"runtime"
	"testing"
	"time"
)

// The collector's figures come from runtime/metrics by name: a renamed
// metric would read as nothing, so forced collections must show.
func TestGCWorkCountsCollections(t *testing.T) {
	before := readGCWork()
	runtime.GC()
	runtime.GC()
	d := readGCWork().since(before)
	if d.cycles < 2 || d.cpu <= 0 {
		t.Fatalf("two forced collections read as %+v", d)
	}
}

func TestGCWorkReport(t *testing.T) {
	win := Window{From: time.Unix(0, 0), To: time.Unix(2, 0)}
	extra := map[string]float64{}
	gcWork{cycles: 4, cpu: 50 * time.Millisecond}.report(extra, win, time.Second)
	if extra["gc_cycles"] != 4 || extra["gc_every_ms"] != 500 || extra["gc_cpu_share"] != 0.05 {
		t.Fatalf("report: %v", extra)
	}
	extra = map[string]float64{}
	gcWork{}.report(extra, win, time.Second)
	if _, ok := extra["gc_every_ms"]; ok || extra["gc_cycles"] != 0 {
		t.Fatalf("no cycle: %v", extra)
	}
	if _, ok := extra["gc_cycles"]; !ok {
		t.Fatal("no cycle: gc_cycles missing")
	}
}
