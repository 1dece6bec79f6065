package sdk_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestPriorityOrder: a backlog of 48 executions of 5 priorities, created
// one after another in a shuffled order, is started by a worker with one
// slot in exact priority-then-FIFO order, on 1 and on 16 partitions, by
// the direct and the fused claim. With k slots each execution starts fewer
// than k places from its place in that order (the k claims of one batch
// land in any order).
func TestPriorityOrder(t *testing.T) {
	for _, parts := range []int{1, 16} {
		addr := valkeytest.NewServer(t).Addr()
		for _, mode := range []sdk.ClaimMode{sdk.ClaimDirect, sdk.ClaimFused} {
			for _, slots := range []int{1, 4} {
				t.Run(fmt.Sprintf("P=%d/%s/slots=%d", parts, mode, slots), func(t *testing.T) {
					testPriorityOrder(t, addr, parts, mode, slots)
				})
			}
		}
	}
}

func testPriorityOrder(t *testing.T, addr string, partitions int, mode sdk.ClaimMode, slots int) {
	const n = 48
	ctx := context.Background()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{addr}, Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	lane := e2eLane(t, "prio")
	priorities := []int{0, 10, 100, 1000, sdk.MaxPriority}
	rng := rand.New(rand.NewPCG(uint64(partitions), uint64(slots)))
	type made struct {
		id       sdk.ExecutionID
		priority int
	}
	created := make([]made, n)
	for i := range created {
		p := priorities[rng.IntN(len(priorities))]
		res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Priority: p})
		if err != nil {
			t.Fatal(err)
		}
		created[i] = made{res.ID, p}
	}
	want := slices.Clone(created)
	slices.SortStableFunc(want, func(a, b made) int { return b.priority - a.priority })

	var mu sync.Mutex
	var started []sdk.ExecutionID
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		mu.Lock()
		started = append(started, task.ID)
		mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // completions in a varied order
		return nil
	})
	_, stop := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "prio", Lanes: []sdk.LaneID{lane},
		MaxConcurrency: slots, ClaimMode: mode}, h)
	e2eWaitFor(t, 30*time.Second, "every execution to start", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(started) == n
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	place := map[sdk.ExecutionID]int{}
	for i, m := range want {
		place[m.id] = i
	}
	inversions, worst := 0, 0
	for i, id := range started {
		worst = max(worst, abs(i-place[id]))
		for _, later := range started[i+1:] {
			if place[later] < place[id] {
				inversions++
			}
		}
	}
	if worst >= slots {
		t.Errorf("an execution started %d places from its priority-then-FIFO place (%d inversions); with %d slots the bound is %d",
			worst, inversions, slots, slots-1)
		for i, id := range started {
			t.Logf("started %2d: want place %2d (priority %d)", i, place[id], want[place[id]].priority)
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
