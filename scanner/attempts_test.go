package scanner_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// A worker reports progress and loses its lease; the lease-expiry scanner
// reclaims the execution and another worker completes it. The completed
// snapshot is the second attempt's alone (no "lease expired", no "A
// alive"), and the first attempt's progress and loss stay readable in the
// attempt history.
func TestReclaimedAttemptLeavesCleanSnapshot(t *testing.T) {
	for _, topo := range both() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			b := freshBackend(t, topo.addrs(t))
			runEngine(t, b, testConfig(t))
			id := create(t, b, sdk.CreateExecutionArgs{Lane: "snap"})
			a := claim(t, b, id, "snap", "A", 200*time.Millisecond)
			if err := b.Progress(ctx, a.Handle, 10, "A alive"); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "the scanner's reclaim", func() bool { return state(t, b, id) == sdk.StateWaiting })
			if d := describe(t, b, id); d.FailureCategory != "lease_lost" {
				t.Fatalf("between attempts the snapshot shows the lost one: %+v", d)
			}
			bb := claim(t, b, id, "snap", "B", time.Minute)
			if d := describe(t, b, id); d.FailureReason != "" || d.FailureCategory != "" || d.ProgressPercent != 0 || d.ProgressMessage != "" {
				t.Fatalf("the reclaimed attempt starts with the lost one's fields: %+v", d)
			}
			if err := b.Complete(ctx, bb.Handle, []byte("ok")); err != nil {
				t.Fatal(err)
			}
			in, err := b.ReadExecutionInfo(ctx, id)
			if err != nil || in == nil {
				t.Fatalf("info: %+v %v", in, err)
			}
			s := in.Snapshot
			if s.State != sdk.StateCompleted || s.FailureReason != "" || s.FailureCategory != "" || s.ProgressPercent != 0 || s.ProgressMessage != "" {
				t.Fatalf("completed snapshot carries the lost attempt: %+v", s)
			}
			if len(in.Attempts) != 2 {
				t.Fatalf("attempts %+v", in.Attempts)
			}
			lost, won := in.Attempts[0], in.Attempts[1]
			if lost.Index != 0 || lost.Type != sdk.AttemptInitial || lost.WorkerInstanceID != "A-1" ||
				lost.Outcome != sdk.OutcomeInterrupted || lost.FailureReason != "lease expired" ||
				lost.FailureCategory != "lease_lost" || lost.ProgressPercent != 10 || lost.ProgressMessage != "A alive" ||
				lost.EndedAt.IsZero() || lost.LeaseEpoch != a.Handle.Epoch {
				t.Fatalf("lost attempt record %+v", lost)
			}
			if won.Index != 1 || won.Type != sdk.AttemptReclaim || won.WorkerInstanceID != "B-1" || won.Outcome != "completed" ||
				won.FailureReason != "" || won.ProgressMessage != "" || !won.EndedAt.Equal(s.CompletedAt) {
				t.Fatalf("completing attempt record %+v", won)
			}
		})
	}
}
