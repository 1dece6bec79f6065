package sdk_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestWorkerEmitAndTail: a handler emits 1,000 frames without waiting and
// completes; a client tailing the attempt's stream from its start gets every
// frame, in order, once, and its loop ends when the attempt does. Emits are
// batched: far fewer appends than frames. Standalone and cluster.
func TestWorkerEmitAndTail(t *testing.T) {
	for _, topo := range e2eTopologies() {
		t.Run(topo.name, func(t *testing.T) {
			addrs := topo.addrs(t)
			b := e2eConnect(t, addrs)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			const frames = 1000
			lane := e2eLane(t, "emit")
			started := make(chan sdk.ExecutionID, 1)
			release := make(chan struct{})
			var summaryVersion uint64
			h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
				started <- task.ID
				<-release
				for i := range frames {
					if err := task.Emit(ctx, sdk.Frame{Type: "token", Payload: []byte(strconv.Itoa(i))}); err != nil {
						return err
					}
				}
				v, err := task.UpdateSummary(ctx, []byte(`{"tokens":1000,"state":"done"}`))
				if err != nil {
					return err
				}
				summaryVersion = v
				return task.Complete(ctx, nil)
			})
			w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "emitter", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 1}, h)
			client := sdk.NewClient(b)
			r, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "emit"})
			if err != nil {
				t.Fatal(err)
			}
			if id := <-started; id != r.ID {
				t.Fatalf("started %s, want %s", id, r.ID)
			}
			before, err := valkeytest.CommandCalls(ctx, addrs)
			if err != nil {
				t.Fatal(err)
			}
			close(release)
			next := 0
			for e, err := range client.Tail(ctx, r.ID, 0, "") {
				if err != nil {
					t.Fatalf("Tail: %v", err)
				}
				if next < frames {
					if e.Type != "token" || string(e.Payload) != strconv.Itoa(next) {
						t.Fatalf("frame %d: %s %q", next, e.Type, e.Payload)
					}
				} else if e.Type != "summary" || next > frames {
					t.Fatalf("after %d tokens: %s %q", frames, e.Type, e.Payload)
				}
				next++
			}
			if next != frames+1 {
				t.Fatalf("Tail ended after %d frames, want %d and the summary frame", next, frames)
			}
			e2eWaitFor(t, 10*time.Second, "completion", func() bool { return w.Stats().Completed == 1 })
			after, err := valkeytest.CommandCalls(ctx, addrs)
			if err != nil {
				t.Fatal(err)
			}
			appends := after["fcall"] - before["fcall"]
			if appends > frames/4 {
				t.Fatalf("%d FCALLs for %d emitted frames: emits are not batched", appends, frames)
			}
			sum, err := b.ReadSummary(ctx, r.ID, 0)
			if err != nil || summaryVersion != 1 || sum.Version != 1 || string(sum.Doc) != `{"state":"done","tokens":1000}` {
				t.Fatalf("summary %s v%d (handler saw v%d), %v", sum.Doc, sum.Version, summaryVersion, err)
			}
			t.Logf("%d frames in %d FCALLs (appends and the rest of the job)", frames, appends)
		})
	}
}
