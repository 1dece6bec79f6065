package loadgen_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/loadgen"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// A fleet's tasks keep the backend's streams role through the Wrap: frames
// a handler emits reach the attempt's stream, in order, and OnAppend sees
// every append call with its frames.
func TestFleetTasksEmit(t *testing.T) {
	srv := valkeytest.NewServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const frames = 50
	var appended, calls atomic.Int64
	done := make(chan error, 1)
	f, err := loadgen.StartFleet(ctx, loadgen.FleetConfig{Backend: b, Workers: 1,
		Worker: sdk.WorkerConfig{Lanes: []sdk.LaneID{"l"}, ShutdownGrace: 10 * time.Millisecond},
		Hooks: func(int) loadgen.Hooks {
			return loadgen.Hooks{OnAppend: func(_ time.Time, _ time.Duration, n int, err error) {
				if err == nil {
					appended.Add(int64(n))
					calls.Add(1)
				}
			}}
		},
		Handler: func(int) sdk.Handler {
			return sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
				for i := range frames {
					if err := task.Emit(ctx, sdk.Frame{Type: "n", Payload: []byte(strconv.Itoa(i))}); err != nil {
						done <- err
						return err
					}
				}
				err := task.Complete(ctx, nil)
				done <- err
				return err
			})
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = f.Stop(sctx)
	}()
	res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "l", Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("handler: %v", err)
	}
	page, err := b.ReadStream(ctx, res.ID, 0, "", frames+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != frames || !page.Closed {
		t.Fatalf("%d frames read back (closed %v), want %d", len(page.Entries), page.Closed, frames)
	}
	for i, e := range page.Entries {
		if string(e.Payload) != strconv.Itoa(i) {
			t.Fatalf("frame %d: %q", i, e.Payload)
		}
	}
	if appended.Load() != frames || calls.Load() == 0 || calls.Load() > frames {
		t.Fatalf("OnAppend saw %d frames in %d calls, want %d", appended.Load(), calls.Load(), frames)
	}
}
