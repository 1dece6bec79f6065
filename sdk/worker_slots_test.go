package sdk_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestWorkerFewSlotsIdleRounds: workers with fewer slots than partitions
// on a cluster, where a completing task's slot becomes an offer on its own
// partition only. Rounds of two executions with idle gaps between them:
// each must be picked up (through the arrival push, the offer withdrawn)
// even when created on a partition no offer serves. A claim loop that
// waited at capacity for a slot slept through such rounds until a
// hand-off came.
func TestWorkerFewSlotsIdleRounds(t *testing.T) {
	b := e2eConnect(t, valkeytest.NewCluster(t).Addrs())
	lane := e2eLane(t, "rounds")
	var done atomic.Int64
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		time.Sleep(20 * time.Millisecond)
		done.Add(1)
		return task.Complete(ctx, nil)
	})
	var ws []*sdk.Worker
	for i := range 2 {
		w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "rounds", InstanceID: sdk.WorkerInstanceID(fmt.Sprintf("rounds-%d", i)),
			Lanes: []sdk.LaneID{lane}, MaxConcurrency: 1}, h)
		ws = append(ws, w)
	}
	ctx := context.Background()
	for round := range 12 {
		want := done.Load() + 2
		for range 2 {
			if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(3 * time.Second)
		for done.Load() < want {
			if time.Now().After(deadline) {
				for i, w := range ws {
					t.Logf("worker %d: %+v", i, w.Stats())
				}
				t.Fatalf("timed out waiting for round %d's two executions", round)
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(50+round*25) * time.Millisecond)
	}
	t.Logf("hand-offs %d + %d, arrivals %d + %d, offers %d + %d", ws[0].Stats().Handoffs, ws[1].Stats().Handoffs, ws[0].Stats().Arrivals, ws[1].Stats().Arrivals, ws[0].Stats().Offers, ws[1].Stats().Offers)
}
