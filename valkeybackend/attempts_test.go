package valkeybackend_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// info reads id's ExecutionInfo.
func info(t *testing.T, b *valkeybackend.Backend, id sdk.ExecutionID) *sdk.ExecutionInfo {
	t.Helper()
	in, err := b.ReadExecutionInfo(context.Background(), id)
	if err != nil || in == nil {
		t.Fatalf("info of %s: %+v %v", id, in, err)
	}
	return in
}

// clean fails unless the snapshot carries nothing of an earlier attempt.
func clean(t *testing.T, what string, s sdk.ExecutionSnapshot) {
	t.Helper()
	if s.FailureReason != "" || s.FailureCategory != "" || s.ProgressPercent != 0 || s.ProgressMessage != "" {
		t.Fatalf("%s: snapshot carries an earlier attempt: reason %q category %q progress %d %q",
			what, s.FailureReason, s.FailureCategory, s.ProgressPercent, s.ProgressMessage)
	}
}

// wantAttempt checks the fields of an attempt record that a test pins.
func wantAttempt(t *testing.T, got sdk.AttemptRecord, want sdk.AttemptRecord, ended bool) {
	t.Helper()
	if got.Index != want.Index || got.Type != want.Type || got.Outcome != want.Outcome ||
		got.ProgressPercent != want.ProgressPercent || got.ProgressMessage != want.ProgressMessage ||
		got.FailureReason != want.FailureReason || got.FailureCategory != want.FailureCategory ||
		(want.WorkerInstanceID != "" && got.WorkerInstanceID != want.WorkerInstanceID) ||
		got.EndedAt.IsZero() == ended || got.AttemptID == "" || got.LeaseEpoch == 0 {
		t.Fatalf("attempt record\n got %+v\nwant %+v (ended %v)", got, want, ended)
	}
}

// A retry, a lease reclaim (through a reclaim grant) and a replay each start
// an attempt with clean progress and failure fields, and the earlier
// attempt's stay readable in its record.
func TestNewAttemptStartsClean(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			b := freshBackend(t, topo.addrs(t), valkeybackend.Options{})
			claimAs := func(id sdk.ExecutionID, inst string) sdk.ClaimedTask {
				t.Helper()
				task, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: "rec", WorkerID: "w",
					WorkerInstanceID: sdk.WorkerInstanceID(inst)}, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				return task
			}
			progress := func(h sdk.Handle, pct int, msg string) {
				t.Helper()
				if err := b.Progress(ctx, h, pct, msg); err != nil {
					t.Fatal(err)
				}
			}

			// Retry: fail with a retry at once, claim again.
			id, first := claimOne(t, b, sdk.CreateExecutionArgs{Retry: sdk.RetryPolicy{MaxRetries: 1,
				Backoff: sdk.Backoff{Kind: sdk.BackoffFixed, Initial: time.Millisecond}}}, time.Minute)
			progress(first.Handle, 30, "first try")
			if out, err := b.Fail(ctx, first.Handle, "flaky", "handler_error"); err != nil || !out.RetryScheduled {
				t.Fatalf("fail: %+v %v", out, err)
			}
			if s := info(t, b, id).Snapshot; s.FailureReason != "flaky" || s.ProgressMessage != "first try" {
				t.Fatalf("between attempts the snapshot shows the last one: %+v", s)
			}
			time.Sleep(5 * time.Millisecond) // the 1ms backoff
			if _, err := b.PromoteDelayed(ctx, sdk.PromoteDelayedArgs{Lane: "rec", Partition: partitionOf(t, id)}); err != nil {
				t.Fatal(err)
			}
			second := claimAs(id, "w-2")
			clean(t, "retry claim", info(t, b, id).Snapshot)
			progress(second.Handle, 100, "second try")
			if err := b.Complete(ctx, second.Handle, nil); err != nil {
				t.Fatal(err)
			}
			in := info(t, b, id)
			if s := in.Snapshot; s.State != sdk.StateCompleted || s.FailureReason != "" || s.FailureCategory != "" || s.ProgressMessage != "second try" {
				t.Fatalf("completed retry: %+v", s)
			}
			if len(in.Attempts) != 2 {
				t.Fatalf("attempts %+v", in.Attempts)
			}
			wantAttempt(t, in.Attempts[0], sdk.AttemptRecord{Index: 0, Type: sdk.AttemptInitial, Outcome: sdk.OutcomeRetried,
				ProgressPercent: 30, ProgressMessage: "first try", FailureReason: "flaky", FailureCategory: "handler_error",
				WorkerInstanceID: "w1-a"}, true)
			wantAttempt(t, in.Attempts[1], sdk.AttemptRecord{Index: 1, Type: sdk.AttemptRetry, Outcome: "completed",
				ProgressPercent: 100, ProgressMessage: "second try", WorkerInstanceID: "w-2"}, true)
			if !in.Attempts[1].EndedAt.Equal(in.Snapshot.CompletedAt) {
				t.Fatalf("last attempt ended %v, the execution %v", in.Attempts[1].EndedAt, in.Snapshot.CompletedAt)
			}

			// Reclaim through a reclaim grant, after a revoke.
			id, first = claimOne(t, b, sdk.CreateExecutionArgs{}, time.Minute)
			progress(first.Handle, 10, "A alive")
			if _, err := b.RevokeLease(ctx, sdk.RevokeLeaseArgs{ExecutionID: id, Reason: "test"}); err != nil {
				t.Fatal(err)
			}
			if _, err := b.IssueReclaimGrant(ctx, sdk.IssueReclaimGrantArgs{ExecutionID: id, WorkerID: "w", WorkerInstanceID: "w-2"}); err != nil {
				t.Fatal(err)
			}
			out, err := b.ReclaimExecution(ctx, sdk.ReclaimExecutionArgs{ExecutionID: id, Lane: "rec", WorkerID: "w",
				WorkerInstanceID: "w-2", LeaseTTL: time.Minute})
			if err != nil || out.Task == nil {
				t.Fatalf("reclaim: %+v %v", out, err)
			}
			in = info(t, b, id)
			clean(t, "reclaim", in.Snapshot)
			if in.Fields["revoke_reason"] != "" {
				t.Fatalf("the new attempt carries the old revoke reason %q", in.Fields["revoke_reason"])
			}
			if len(in.Attempts) != 2 {
				t.Fatalf("attempts %+v", in.Attempts)
			}
			wantAttempt(t, in.Attempts[0], sdk.AttemptRecord{Index: 0, Type: sdk.AttemptInitial, Outcome: sdk.OutcomeInterrupted,
				ProgressPercent: 10, ProgressMessage: "A alive", FailureReason: "lease revoked", FailureCategory: "lease_lost"}, true)
			wantAttempt(t, in.Attempts[1], sdk.AttemptRecord{Index: 1, Type: sdk.AttemptReclaim}, false)

			// Replay of a cancelled execution, then of a completed one.
			id, first = claimOne(t, b, sdk.CreateExecutionArgs{}, time.Minute)
			progress(first.Handle, 40, "before cancel")
			if _, err := b.CancelExecution(ctx, sdk.CancelExecutionArgs{ExecutionID: id, Reason: "operator said so"}); err != nil {
				t.Fatal(err)
			}
			if _, err := b.ReplayExecution(ctx, sdk.ReplayExecutionArgs{ExecutionID: id}); err != nil {
				t.Fatal(err)
			}
			if s := info(t, b, id).Snapshot; s.CancellationReason != "" {
				t.Fatalf("replayed execution still shows cancellation %q", s.CancellationReason)
			}
			second = claimAs(id, "w-2")
			clean(t, "replay claim", info(t, b, id).Snapshot)
			progress(second.Handle, 70, "replayed")
			if err := b.Complete(ctx, second.Handle, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := b.ReplayExecution(ctx, sdk.ReplayExecutionArgs{ExecutionID: id}); err != nil {
				t.Fatal(err)
			}
			claimAs(id, "w-3")
			in = info(t, b, id)
			clean(t, "second replay claim", in.Snapshot)
			if len(in.Attempts) != 3 {
				t.Fatalf("attempts %+v", in.Attempts)
			}
			wantAttempt(t, in.Attempts[0], sdk.AttemptRecord{Index: 0, Type: sdk.AttemptInitial, Outcome: "cancelled",
				ProgressPercent: 40, ProgressMessage: "before cancel", FailureReason: "operator said so"}, true)
			wantAttempt(t, in.Attempts[1], sdk.AttemptRecord{Index: 1, Type: sdk.AttemptReplay, Outcome: "completed",
				ProgressPercent: 70, ProgressMessage: "replayed", WorkerInstanceID: "w-2"}, true)
			wantAttempt(t, in.Attempts[2], sdk.AttemptRecord{Index: 2, Type: sdk.AttemptReplay, WorkerInstanceID: "w-3"}, false)
		})
	}
}

// A delay resumes the same attempt: its progress stays.
func TestResumedAttemptKeepsItsProgress(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{})
	id, task := claimOne(t, b, sdk.CreateExecutionArgs{}, time.Minute)
	if err := b.Progress(ctx, task.Handle, 20, "half way"); err != nil {
		t.Fatal(err)
	}
	if err := b.Delay(ctx, task.Handle, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	resumed, err := b.ClaimFromResumeGrant(ctx, sdk.ResumeToken{ExecutionID: id, Lane: "rec", WorkerID: "w1", WorkerInstanceID: "w1-a"})
	if err != nil || resumed == nil {
		t.Fatalf("resume: %+v %v", resumed, err)
	}
	in := info(t, b, id)
	if in.Snapshot.ProgressMessage != "half way" || len(in.Attempts) != 1 || in.Attempts[0].Outcome != "" {
		t.Fatalf("resumed attempt: %+v, attempts %+v", in.Snapshot, in.Attempts)
	}
}

// The history keeps the last sdk.AttemptHistoryMax ended attempts, and a
// job that runs once writes no record and no per-attempt field it did not
// use.
func TestAttemptHistoryBounded(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{})
	once, task := claimOne(t, b, sdk.CreateExecutionArgs{}, time.Minute)
	if err := b.Complete(ctx, task.Handle, nil); err != nil {
		t.Fatal(err)
	}
	for k := range info(t, b, once).Fields {
		if strings.HasPrefix(k, "attempt:") || strings.HasPrefix(k, "progress_") || strings.HasPrefix(k, "failure_") {
			t.Fatalf("a job that ran once has field %q", k)
		}
	}

	const ended = sdk.AttemptHistoryMax + 4
	id, task := claimOne(t, b, sdk.CreateExecutionArgs{}, time.Minute)
	for i := range ended {
		if err := b.Progress(ctx, task.Handle, i, "run"); err != nil {
			t.Fatal(err)
		}
		// A shutdown requeues at once without using a retry.
		if _, err := b.Fail(ctx, task.Handle, "shutting down", sdk.CategoryWorkerShutdown); err != nil {
			t.Fatal(err)
		}
		var err error
		if task, err = b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: "rec", WorkerID: "w1",
			WorkerInstanceID: "w1-a"}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	in := info(t, b, id)
	if len(in.Attempts) != sdk.AttemptHistoryMax+1 {
		t.Fatalf("%d attempt records, want the last %d ended and the current", len(in.Attempts), sdk.AttemptHistoryMax)
	}
	for i, a := range in.Attempts {
		idx := ended - sdk.AttemptHistoryMax + i
		if int(a.Index) != idx {
			t.Fatalf("record %d is attempt %d, want %d", i, a.Index, idx)
		}
		if i < sdk.AttemptHistoryMax && (a.Outcome != sdk.OutcomeInterrupted || a.ProgressPercent != idx) {
			t.Fatalf("record %+v", a)
		}
	}
	records := 0
	for k := range in.Fields {
		if strings.HasPrefix(k, "attempt:") {
			records++
		}
	}
	if records != sdk.AttemptHistoryMax {
		t.Fatalf("%d record fields stored, want %d", records, sdk.AttemptHistoryMax)
	}
}

func partitionOf(t *testing.T, id sdk.ExecutionID) int {
	t.Helper()
	p, err := id.Partition()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// attemptsOf never panics on stored fields, keeps only well-formed records
// in index order, and reads a record back as the library framed it.
func FuzzAttemptsOf(f *testing.F) {
	rec := frame("1", "3", "retry", "att", "w", "w-1", "7", "1700000000000", "retried", "50", "msg:with:colons", "boom", "handler_error")
	f.Add(rec, "5", "4", "completed")
	f.Add("", "0", "0", "waiting")
	f.Add("1:1", "x", "-1", "")
	f.Add(frame("2", "3"), "1", "99999999999", "failed")
	f.Fuzz(func(t *testing.T, record, total, index, state string) {
		core := map[string]string{"attempt:3": record, "total_attempts": total, "attempt_index": index, "state": state}
		got := valkeybackend.AttemptsOfForTest(core)
		for i := 1; i < len(got); i++ {
			if got[i].Index <= got[i-1].Index {
				t.Fatalf("attempts out of order: %+v", got)
			}
		}
		if record == rec {
			if len(got) == 0 || got[0].Index != 3 || got[0].ProgressMessage != "msg:with:colons" || got[0].LeaseEpoch != 7 ||
				got[0].EndedAt.UnixMilli() != 1700000000000 || got[0].Outcome != sdk.OutcomeRetried || got[0].FailureCategory != "handler_error" {
				t.Fatalf("record read back as %+v", got)
			}
		}
	})
}
