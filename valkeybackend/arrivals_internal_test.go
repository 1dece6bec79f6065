package valkeybackend

import (
	"slices"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// An arrival nobody receives is kept for TakeArrivals, in order, once; one
// this client claims meanwhile is dropped; the oldest go past the cap.
func TestPendingArrivalsQueue(t *testing.T) {
	var a arrivals
	a.byLane = map[sdk.LaneID][]chan sdk.Arrival{"l": {make(chan sdk.Arrival)}} // a watcher, not receiving
	a.next = map[sdk.LaneID]int{}
	ids := make([]sdk.ExecutionID, pendingArrivalsMax+2)
	for i := range ids {
		ids[i] = sdk.NewExecutionID(i % 4)
		if a.deliver(sdk.Arrival{Lane: "l", ID: ids[i]}) {
			t.Fatal("delivered to a watcher that is not receiving")
		}
	}
	a.claimed("l", ids[5])
	got := a.take("l", 1000)
	want := slices.Concat(ids[2:5], ids[6:])
	if len(got) != len(want) {
		t.Fatalf("took %d, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i] {
			t.Fatalf("arrival %d is %s, want %s", i, got[i].ID, want[i])
		}
	}
	if again := a.take("l", 1000); len(again) != 0 {
		t.Fatalf("taken twice: %d", len(again))
	}
	// No watcher on a lane: nothing is kept.
	a.deliver(sdk.Arrival{Lane: "other", ID: ids[0]})
	if got := a.take("other", 10); len(got) != 0 {
		t.Fatalf("kept an arrival for a lane nobody watches: %v", got)
	}
}

// An arrival that came while its lane's watcher was busy reaches that
// watcher once it waits again (within the freshness window), and only once.
func TestPendingArrivalsRehanded(t *testing.T) {
	var a arrivals
	ch := make(chan sdk.Arrival)
	a.byLane = map[sdk.LaneID][]chan sdk.Arrival{"l": {ch}}
	a.next = map[sdk.LaneID]int{}
	defer a.close()
	id := sdk.NewExecutionID(1)
	if a.deliver(sdk.Arrival{Lane: "l", ID: id}) {
		t.Fatal("delivered to a watcher that is not receiving")
	}
	select {
	case got := <-ch:
		if got.ID != id {
			t.Fatalf("got %s, want %s", got.ID, id)
		}
	case <-time.After(time.Second):
		t.Fatal("the pending arrival never reached the watcher once it waited")
	}
	if left := a.take("l", 10); len(left) != 0 {
		t.Fatalf("handed and still pending: %v", left)
	}
}
