package valkeybackend_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// claimOne creates an execution on lane "rec" and claims it with ttl.
func claimOne(t *testing.T, b *valkeybackend.Backend, args sdk.CreateExecutionArgs, ttl time.Duration) (sdk.ExecutionID, sdk.ClaimedTask) {
	return claimOneWith(t, b, args, ttl, nil)
}

func claimOneWith(t *testing.T, b *valkeybackend.Backend, args sdk.CreateExecutionArgs, ttl time.Duration, caps []string) (sdk.ExecutionID, sdk.ClaimedTask) {
	t.Helper()
	ctx := context.Background()
	args.Lane, args.Kind = "rec", "k"
	r, err := b.CreateExecution(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	task, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: "rec", WorkerID: "w1", WorkerInstanceID: "w1-a", Capabilities: caps}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return r.ID, task
}

func TestReclaimGrantAndReclaim(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			b := freshBackend(t, topo.addrs(t), valkeybackend.Options{})
			id, first := claimOneWith(t, b, sdk.CreateExecutionArgs{Payload: []byte("p"), RequiredCapabilities: []string{"gpu"}}, 150*time.Millisecond, []string{"gpu"})

			// A live lease is not reclaimable.
			_, err := b.IssueReclaimGrant(ctx, sdk.IssueReclaimGrantArgs{ExecutionID: id, WorkerID: "w2", WorkerInstanceID: "w2-a", Capabilities: []string{"gpu"}})
			if sdk.CodeOf(err) != sdk.CodeExecutionNotReclaimable {
				t.Fatalf("reclaim grant on a live lease: %v", err)
			}
			time.Sleep(250 * time.Millisecond)
			// Capabilities are checked as for a claim.
			_, err = b.IssueReclaimGrant(ctx, sdk.IssueReclaimGrantArgs{ExecutionID: id, WorkerID: "w2", WorkerInstanceID: "w2-a"})
			if !errors.Is(err, sdk.ErrCapabilityMismatch) {
				t.Fatalf("reclaim grant without caps: %v", err)
			}
			if _, err := b.IssueReclaimGrant(ctx, sdk.IssueReclaimGrantArgs{ExecutionID: id, WorkerID: "w2", WorkerInstanceID: "w2-a", Capabilities: []string{"gpu"}}); err != nil {
				t.Fatal(err)
			}
			// Another worker cannot consume w2's grant.
			_, err = b.ReclaimExecution(ctx, sdk.ReclaimExecutionArgs{ExecutionID: id, Lane: "rec", WorkerID: "w3", WorkerInstanceID: "w3-a"})
			if !errors.Is(err, sdk.ErrInvalidClaimGrant) {
				t.Fatalf("reclaim by another worker: %v", err)
			}
			out, err := b.ReclaimExecution(ctx, sdk.ReclaimExecutionArgs{ExecutionID: id, Lane: "rec", WorkerID: "w2", WorkerInstanceID: "w2-a", LeaseTTL: time.Minute})
			if err != nil || out.Task == nil {
				t.Fatalf("reclaim: %+v %v", out, err)
			}
			h := out.Task.Handle
			if out.Task.AttemptType != sdk.AttemptReclaim || h.Kind != sdk.HandleReclaimed || h.AttemptIndex != 1 ||
				h.Epoch <= first.Handle.Epoch || string(out.Task.Context.Payload) != "p" {
				t.Fatalf("reclaimed task: %+v", out.Task)
			}
			// The old holder is fenced out; the new one completes.
			if err := b.Complete(ctx, first.Handle, nil); !errors.Is(err, sdk.ErrStaleLease) {
				t.Fatalf("old handle complete: %v", err)
			}
			if err := b.Complete(ctx, h, []byte("ok")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReclaimAtCapFails(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{})
	id, _ := claimOne(t, b, sdk.CreateExecutionArgs{}, 100*time.Millisecond)
	time.Sleep(150 * time.Millisecond)
	if _, err := b.IssueReclaimGrant(ctx, sdk.IssueReclaimGrantArgs{ExecutionID: id, WorkerID: "w2", WorkerInstanceID: "w2-a"}); err != nil {
		t.Fatal(err)
	}
	// One interruption allowed: this reclaim takes it.
	out, err := b.ReclaimExecution(ctx, sdk.ReclaimExecutionArgs{ExecutionID: id, Lane: "rec", WorkerID: "w2", WorkerInstanceID: "w2-a", LeaseTTL: 100 * time.Millisecond, MaxReclaims: 1})
	if err != nil || out.Task == nil {
		t.Fatalf("first reclaim: %+v %v", out, err)
	}
	time.Sleep(150 * time.Millisecond)
	if _, err := b.IssueReclaimGrant(ctx, sdk.IssueReclaimGrantArgs{ExecutionID: id, WorkerID: "w2", WorkerInstanceID: "w2-a"}); err != nil {
		t.Fatal(err)
	}
	out, err = b.ReclaimExecution(ctx, sdk.ReclaimExecutionArgs{ExecutionID: id, Lane: "rec", WorkerID: "w2", WorkerInstanceID: "w2-a", MaxReclaims: 1})
	if err != nil || !out.TerminalFailed {
		t.Fatalf("reclaim at the cap: %+v %v", out, err)
	}
	if s, _ := b.ReadExecutionState(ctx, id); s != sdk.StateFailed {
		t.Fatalf("state %s, want failed", s)
	}
}

func TestReplayAndExecutionInfo(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{})
	id, task := claimOne(t, b, sdk.CreateExecutionArgs{}, time.Minute)
	if _, err := b.ReplayExecution(ctx, sdk.ReplayExecutionArgs{ExecutionID: id}); sdk.CodeOf(err) != sdk.CodeExecutionNotTerminal {
		t.Fatalf("replay of an active execution: %v", err)
	}
	if err := b.Complete(ctx, task.Handle, []byte("r1")); err != nil {
		t.Fatal(err)
	}
	r, err := b.ReplayExecution(ctx, sdk.ReplayExecutionArgs{ExecutionID: id, MaxReplays: 1})
	if err != nil || r.PreviousState != sdk.StateCompleted {
		t.Fatalf("replay: %+v %v", r, err)
	}
	again, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: "rec", WorkerID: "w1", WorkerInstanceID: "w1-a"}, time.Minute)
	if err != nil || again.AttemptType != sdk.AttemptReplay || again.Handle.AttemptIndex != 1 {
		t.Fatalf("claim after replay: %+v %v", again, err)
	}
	if _, err := b.Fail(ctx, again.Handle, "boom", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReplayExecution(ctx, sdk.ReplayExecutionArgs{ExecutionID: id, MaxReplays: 1}); sdk.CodeOf(err) != sdk.CodeReplayLimitExceeded {
		t.Fatalf("second replay over the limit: %v", err)
	}
	info, err := b.ReadExecutionInfo(ctx, id)
	if err != nil || info == nil || info.Snapshot.State != sdk.StateFailed || info.Fields["replay_count"] != "1" || info.Fields["attempt_type"] != "replay" {
		t.Fatalf("info: %+v %v", info, err)
	}
	if info, err := b.ReadExecutionInfo(ctx, sdk.NewExecutionID(0)); info != nil || !errors.Is(err, sdk.ErrExecutionNotFound) {
		t.Fatalf("unknown id: %+v %v; want ErrExecutionNotFound", info, err)
	}
}

func TestClaimFromResumeGrant(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{})
	id, task := claimOne(t, b, sdk.CreateExecutionArgs{}, time.Minute)
	tok := sdk.ResumeToken{ExecutionID: id, Lane: "rec", WorkerID: "w1", WorkerInstanceID: "w1-a"}
	// Active: not resumable now.
	if got, err := b.ClaimFromResumeGrant(ctx, tok); got != nil || err != nil {
		t.Fatalf("resume of an active execution: %+v %v", got, err)
	}
	if err := b.Delay(ctx, task.Handle, time.Now().Add(-time.Second)); err != nil { // due at once
		t.Fatal(err)
	}
	got, err := b.ClaimFromResumeGrant(ctx, tok)
	if err != nil || got == nil || got.AttemptType != sdk.AttemptResumed || got.Handle.AttemptID != task.Handle.AttemptID ||
		got.Handle.Epoch <= task.Handle.Epoch {
		t.Fatalf("resume: %+v %v", got, err)
	}
	// A fresh execution has no interrupted attempt: nil, and no grant left behind.
	r, _ := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "rec", Kind: "k"})
	if got, err := b.ClaimFromResumeGrant(ctx, sdk.ResumeToken{ExecutionID: r.ID, Lane: "rec", WorkerID: "w1", WorkerInstanceID: "w1-a"}); got != nil || err != nil {
		t.Fatalf("resume of a fresh execution: %+v %v", got, err)
	}
	if _, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: "rec", WorkerID: "w9", WorkerInstanceID: "w9-a"}, 0); err != nil {
		t.Fatalf("a failed resume left its grant behind: %v", err)
	}
}

// A replayed run is fresh: an earlier result does not show through. (The
// create also uses a sub-millisecond dedup TTL, which once became PX 0 and
// failed after writing half the execution.)
func TestReplayIsAFreshRun(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{})
	id, task := claimOne(t, b, sdk.CreateExecutionArgs{IdempotencyKey: "once", DedupTTL: 500 * time.Microsecond}, time.Minute)
	if err := b.Complete(ctx, task.Handle, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReplayExecution(ctx, sdk.ReplayExecutionArgs{ExecutionID: id}); err != nil {
		t.Fatal(err)
	}
	again, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: "rec", WorkerID: "w1", WorkerInstanceID: "w1-a"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Complete(ctx, again.Handle, nil); err != nil {
		t.Fatal(err)
	}
	if res, err := b.GetExecutionResult(ctx, id); res != nil || err != nil {
		t.Fatalf("result after a replay completed without one: %q %v", res, err)
	}
}

// The not-active detail says who ended the attempt, so a retried terminal
// call tells its own landing from a scanner's requeue.
func TestNotActiveSaysWhoEndedTheAttempt(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{})
	id, task := claimOne(t, b, sdk.CreateExecutionArgs{}, 100*time.Millisecond)
	time.Sleep(150 * time.Millisecond)
	if c, err := b.ReclaimExpired(ctx, []sdk.ExecutionID{id}, 0); err != nil || c["retry_scheduled"] != 1 {
		t.Fatalf("requeue: %v %v", c, err)
	}
	err := b.Delay(ctx, task.Handle, time.Now().Add(time.Minute))
	var e *sdk.Error
	if !errors.As(err, &e) {
		t.Fatalf("delay after requeue: %v", err)
	}
	if d, ok := e.NotActive(); !ok || d.State != sdk.StateWaiting || d.EndedBy != "engine" || d.Epoch != task.Handle.Epoch {
		t.Fatalf("detail after a requeue: %+v %v", d, ok)
	}
	again, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: "rec", WorkerID: "w1", WorkerInstanceID: "w1-a"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Complete(ctx, again.Handle, nil); err != nil {
		t.Fatal(err)
	}
	err = b.Complete(ctx, again.Handle, nil)
	if !errors.As(err, &e) {
		t.Fatalf("second complete: %v", err)
	}
	if d, _ := e.NotActive(); d.EndedBy != again.Handle.LeaseID {
		t.Fatalf("detail after our own complete: %+v, want ended by lease %s", d, again.Handle.LeaseID)
	}
}
