package sdk_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestTaskReasonsAreCut: a handler's 5 MiB cancel or failure reason is cut
// to MaxReasonBytes (marked), not refused: a refused terminal call would
// leave the task to be settled another way.
func TestTaskReasonsAreCut(t *testing.T) {
	b := e2eConnect(t, []string{valkeytest.NewServer(t).Addr()})
	ctx := context.Background()
	lane := e2eLane(t, "limits")
	huge := strings.Repeat("é", 5<<19) // 5 MiB of two-byte runes
	cancelled, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "cancel"})
	if err != nil {
		t.Fatal(err)
	}
	failed, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "fail"})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	_, stop := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "limits", Lanes: []sdk.LaneID{lane}},
		sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
			if task.Kind == "cancel" {
				errs <- task.Cancel(ctx, huge)
			} else {
				_, err := task.Fail(ctx, huge, "too_much")
				errs <- err
			}
			return nil
		}))
	for range 2 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatalf("a terminal call with a 5 MiB reason: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("handlers did not run")
		}
	}
	_ = stop()
	for id, want := range map[sdk.ExecutionID]sdk.PublicState{cancelled.ID: sdk.StateCancelled, failed.ID: sdk.StateFailed} {
		info, err := b.ReadExecutionInfo(ctx, id)
		if err != nil || info.Snapshot.State != want {
			t.Fatalf("%s: %+v %v, want %s", id, info, err, want)
		}
		reason := info.Fields["cancel_reason"] + info.Fields["failure_reason"]
		if len(reason) > sdk.MaxReasonBytes || !strings.HasSuffix(reason, "…[truncated]") || !strings.HasPrefix(reason, "éé") {
			t.Fatalf("%s: stored reason of %d bytes, want at most %d, cut and marked", id, len(reason), sdk.MaxReasonBytes)
		}
	}
}
