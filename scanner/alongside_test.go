package scanner_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// A single binary: the worker hosts the scanners, which reclaim a lease a
// crashed process abandoned; the worker then completes it, and stopping the
// worker stops the scanners and releases their partitions.
func TestScannersAlongsideWorker(t *testing.T) {
	addrs := standalone(t)
	b := freshBackend(t, addrs)
	id := create(t, b, sdk.CreateExecutionArgs{Lane: "solo"})
	abandoned := claim(t, b, id, "solo", "crashed", 300*time.Millisecond)

	w, err := sdk.NewWorker(b, sdk.WorkerConfig{
		WorkerID: "single", Lanes: []sdk.LaneID{"solo"}, LeaseTTL: 2 * time.Second,
		IdlePoll:  50 * time.Millisecond,
		Alongside: []func(context.Context) error{scanner.Alongside(b, testConfig(t))},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *sdk.Task, 1)
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() {
		stopped <- w.Run(ctx, sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
			done <- task
			return nil
		}))
	}()
	select {
	case task := <-done:
		if task.ID != id || task.AttemptType != sdk.AttemptReclaim || task.Handle.Epoch <= abandoned.Handle.Epoch {
			t.Fatalf("reclaimed task: id %s type %s epoch %d", task.ID, task.AttemptType, task.Handle.Epoch)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the abandoned execution was never reclaimed and run")
	}
	eventually(t, 5*time.Second, "completed", func() bool { return state(t, b, id) == sdk.StateCompleted })

	stop()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	// The scanners released their partitions when the worker stopped.
	keys, err := b.Client().Do(context.Background(), b.Client().B().Keys().Pattern("ff:own:*").Build()).AsStrSlice()
	if err != nil || len(keys) != 0 {
		t.Fatalf("ownership keys left after stop: %v %v", keys, err)
	}
}
