package bench

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// TestDAGShapes: a fan-out of n has n+2 members and 2n edges, its join
// depending on every fanned member; a chain of d has d-1 edges in a line;
// both resolve as a FlowSpec, and each member's payload names its DAG and
// index.
func TestDAGShapes(t *testing.T) {
	t.Parallel()
	f := fanoutShape(3)
	if len(f.names) != 5 || len(f.edges) != 6 || f.dependants() != 4 || !slices.Equal(f.parents[4], []int{1, 2, 3}) ||
		!slices.Equal(f.parents[2], []int{0}) || len(f.parents[0]) != 0 {
		t.Fatalf("fan-out of 3: %+v", f)
	}
	c := chainShape(4)
	if len(c.names) != 4 || len(c.edges) != 3 || c.dependants() != 3 || !slices.Equal(c.parents[3], []int{2}) || c.edges[2].From != "c2" {
		t.Fatalf("chain of 4: %+v", c)
	}
	for _, s := range []dagShape{fanoutShape(FlowWidthMax), chainShape(FlowDepthMax), f, c} {
		spec := s.spec(7, time.Unix(1, 0), 64)
		if _, _, err := spec.Resolve(3); err != nil {
			t.Errorf("%s: %v", s.label, err)
		}
		key, intended, ok := decodePayload(spec.Members[len(spec.Members)-1].Args.Payload)
		if !ok || key>>flowKeyBits != 7 || int(key&(1<<flowKeyBits-1)) != len(s.names)-1 || !intended.Equal(time.Unix(1, 0)) {
			t.Errorf("%s: payload key %x, intended %v", s.label, key, intended)
		}
	}
	if _, _, err := fanoutShape(FlowWidthMax+1).spec(1, time.Time{}, 16).Resolve(0); err == nil {
		t.Error("a fan-out over FlowWidthMax fits one flow: the bound is wrong")
	}
	for _, bad := range []Config{{DagWidth: -1}, {DagWidth: FlowWidthMax + 1}, {DagDepth: 1}, {DagDepth: FlowDepthMax + 1}, {DagRate: -1}} {
		if bad.validateFlows() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestDAGRunOrder: a child's edge is timed from its last parent's return,
// and a parent that has not returned is counted missing (an order
// violation).
func TestDAGRunOrder(t *testing.T) {
	t.Parallel()
	d := &dagRun{returned: make([]atomic.Int64, 4)}
	d.returned[1].Store(100)
	d.returned[2].Store(300)
	if last, missing := d.lastReturn([]int{1, 2}); last != 300 || missing != 0 {
		t.Errorf("lastReturn = %d, %d", last, missing)
	}
	if _, missing := d.lastReturn([]int{1, 2, 3}); missing != 1 {
		t.Errorf("a parent that has not returned is not missing: %d", missing)
	}
	if _, missing := d.lastOfAll(); missing != 2 {
		t.Errorf("lastOfAll: %d missing, want 2", missing)
	}
}
