package scanner_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// An abandoned lease (claimed, never renewed) is requeued by the lease-expiry
// scanner; the next claim is a reclaim attempt under a higher epoch, and the
// old handle is fenced out.
func TestLeaseExpiryRequeues(t *testing.T) {
	for _, topo := range both() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			b := freshBackend(t, topo.addrs(t))
			s := runEngine(t, b, testConfig(t))
			id := create(t, b, sdk.CreateExecutionArgs{Lane: "le"})
			first := claim(t, b, id, "le", "w1", 200*time.Millisecond)
			if first.AttemptType != sdk.AttemptInitial {
				t.Fatalf("first attempt type %q", first.AttemptType)
			}
			took := eventually(t, 5*time.Second, "requeue", func() bool { return state(t, b, id) == sdk.StateWaiting })
			t.Logf("requeued %v after the claim (lease 200ms, scan 50ms)", took)
			if took < 150*time.Millisecond {
				t.Fatalf("requeued after %v, before the 200ms lease could expire", took)
			}
			second := claim(t, b, id, "le", "w2", time.Second)
			if second.AttemptType != sdk.AttemptReclaim {
				t.Fatalf("second attempt type %q, want reclaim", second.AttemptType)
			}
			if second.Handle.Epoch <= first.Handle.Epoch {
				t.Fatalf("epoch %d after %d", second.Handle.Epoch, first.Handle.Epoch)
			}
			if second.Handle.AttemptIndex <= first.Handle.AttemptIndex {
				t.Fatalf("attempt index %d after %d", second.Handle.AttemptIndex, first.Handle.AttemptIndex)
			}
			if err := b.Complete(ctx, first.Handle, nil); err == nil {
				t.Fatal("the abandoned handle completed the reclaimed execution")
			}
			if err := b.Complete(ctx, second.Handle, []byte("ok")); err != nil {
				t.Fatal(err)
			}
			// The cycle that requeued it counts the action when it ends,
			// which can be after the state change is visible.
			eventually(t, 5*time.Second, "the requeue counted", func() bool {
				got := s.Stats().Scanners[0]
				return got.Name == "lease_expiry" && got.Acted["requeued"] >= 1
			})
			if got := s.Stats().Scanners[0]; got.Acted["requeued"] != 1 {
				t.Fatalf("lease_expiry stats %+v", got)
			}
		})
	}
}

// At the reclaim cap the lease-expiry scanner fails the execution for good.
func TestLeaseExpiryCapFails(t *testing.T) {
	b := freshBackend(t, standalone(t))
	cfg := testConfig(t)
	cfg.MaxReclaims = 1
	runEngine(t, b, cfg)
	id := create(t, b, sdk.CreateExecutionArgs{Lane: "cap"})
	claim(t, b, id, "cap", "w1", 100*time.Millisecond)
	eventually(t, 5*time.Second, "first requeue", func() bool { return state(t, b, id) == sdk.StateWaiting })
	claim(t, b, id, "cap", "w2", 100*time.Millisecond)
	eventually(t, 5*time.Second, "terminal failure", func() bool { return state(t, b, id) == sdk.StateFailed })
	d := describe(t, b, id)
	if d.FailureCategory != "lease_lost" {
		t.Fatalf("failure category %q, want lease_lost", d.FailureCategory)
	}
}

// A revoked lease is reclaimed at the next scan, long before its TTL.
func TestRevokedLeaseReclaimedAtOnce(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, standalone(t))
	runEngine(t, b, testConfig(t))
	id := create(t, b, sdk.CreateExecutionArgs{Lane: "rv"})
	c := claim(t, b, id, "rv", "w1", time.Minute)
	if _, err := b.RevokeLease(ctx, sdk.RevokeLeaseArgs{ExecutionID: id, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 3*time.Second, "reclaim of the revoked lease", func() bool { return state(t, b, id) == sdk.StateWaiting })
	t.Logf("revoked lease reclaimed after %v (TTL 1m)", took)
	if err := b.Complete(ctx, c.Handle, nil); err == nil {
		t.Fatal("revoked handle completed")
	}
	again := claim(t, b, id, "rv", "w2", time.Second)
	if again.AttemptType != sdk.AttemptReclaim {
		t.Fatalf("attempt type %q", again.AttemptType)
	}
}

// A delayed execution becomes eligible when its time comes, not before.
func TestDelayedPromoted(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, standalone(t))
	runEngine(t, b, testConfig(t))
	until := time.Now().Add(400 * time.Millisecond)
	id := create(t, b, sdk.CreateExecutionArgs{Lane: "dl", DelayUntil: until})
	if got := state(t, b, id); got != sdk.StateDelayed {
		t.Fatalf("state %q, want delayed", got)
	}
	eventually(t, 5*time.Second, "promotion", func() bool { return state(t, b, id) == sdk.StateWaiting })
	if early := time.Until(until); early > 20*time.Millisecond {
		t.Fatalf("promoted %v early", early)
	}
	p, _ := id.Partition()
	ids, err := b.ScanEligibleExecutions(ctx, sdk.ScanEligibleArgs{Lane: "dl", Partition: p, Limit: 10})
	if err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("eligible %v %v", ids, err)
	}
}

// A blocked execution is unblocked only once a live worker that serves its
// lane has every capability it needs; other block reasons are left alone.
func TestUnblockAfterCapableWorker(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, standalone(t))
	runEngine(t, b, testConfig(t))
	id := create(t, b, sdk.CreateExecutionArgs{Lane: "ub", RequiredCapabilities: []string{"gpu", "x86"}})
	other := create(t, b, sdk.CreateExecutionArgs{Lane: "ub"})
	_, err := b.IssueClaimGrant(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: "ub", WorkerID: "w",
		WorkerInstanceID: "w-1", Capabilities: []string{"x86"}})
	if !errors.Is(err, sdk.ErrCapabilityMismatch) {
		t.Fatalf("grant without gpu: %v", err)
	}
	for _, blk := range []struct {
		id     sdk.ExecutionID
		reason string
	}{{id, ""}, {other, "manual_hold"}} {
		if out, err := b.BlockRoute(ctx, sdk.BlockRouteArgs{ExecutionID: blk.id, Lane: "ub", Reason: blk.reason}); err != nil || !out.Blocked {
			t.Fatalf("block: %v %v", out, err)
		}
	}
	stillBlocked := func(what string) {
		time.Sleep(300 * time.Millisecond) // several unblock cycles
		if d := describe(t, b, id); d.BlockedReason != sdk.CodeCapabilityMismatch {
			t.Fatalf("%s: blocked reason %q, want it still blocked", what, d.BlockedReason)
		}
	}
	stillBlocked("no worker")
	reg := func(inst string, lanes []sdk.LaneID, caps ...string) {
		if err := b.RegisterWorker(ctx, sdk.WorkerRegistration{WorkerID: "w", InstanceID: sdk.WorkerInstanceID(inst),
			Lanes: lanes, Capabilities: caps, TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	reg("lacks-gpu", nil, "x86")
	stillBlocked("a worker without gpu")
	reg("other-lane", []sdk.LaneID{"elsewhere"}, "gpu", "x86")
	stillBlocked("a capable worker on another lane")
	reg("capable", []sdk.LaneID{"elsewhere", "ub"}, "arm", "gpu", "x86")
	took := eventually(t, 3*time.Second, "unblock", func() bool { return describe(t, b, id).BlockedReason == "" })
	t.Logf("unblocked %v after a capable worker registered", took)
	p, _ := id.Partition()
	ids, err := b.ScanEligibleExecutions(ctx, sdk.ScanEligibleArgs{Lane: "ub", Partition: p, Limit: 10})
	if err != nil || !containsID(ids, id) {
		t.Fatalf("unblocked execution not eligible: %v %v", ids, err)
	}
	if d := describe(t, b, other); d.BlockedReason != "manual_hold" {
		t.Fatalf("execution blocked for another reason was touched: %q", d.BlockedReason)
	}
	if _, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: "ub", WorkerID: "w",
		WorkerInstanceID: "capable", Capabilities: []string{"arm", "gpu", "x86"}}, time.Second); err != nil {
		t.Fatal(err)
	}
}

func containsID(ids []sdk.ExecutionID, id sdk.ExecutionID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// Past its deadline an execution ends expired, whether it waited or ran;
// the runner's lease is fenced out.
func TestDeadlineExpires(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, standalone(t))
	runEngine(t, b, testConfig(t))
	deadline := time.Now().Add(300 * time.Millisecond)
	waiting := create(t, b, sdk.CreateExecutionArgs{Lane: "dd", Deadline: deadline})
	running := create(t, b, sdk.CreateExecutionArgs{Lane: "dd", Deadline: deadline})
	c := claim(t, b, running, "dd", "w", time.Minute)
	for _, id := range []sdk.ExecutionID{waiting, running} {
		eventually(t, 5*time.Second, "expiry", func() bool { return state(t, b, id) == sdk.StateExpired })
	}
	if early := time.Until(deadline); early > 20*time.Millisecond {
		t.Fatalf("expired %v before the deadline", early)
	}
	if err := b.Complete(ctx, c.Handle, nil); !errors.Is(err, sdk.ErrExecutionNotActive) {
		t.Fatalf("complete after expiry: %v, want execution_not_active", err)
	}
	p, _ := waiting.Partition()
	ids, _ := b.ScanEligibleExecutions(ctx, sdk.ScanEligibleArgs{Lane: "dd", Partition: p, Limit: 10})
	if containsID(ids, waiting) {
		t.Fatal("expired execution still eligible")
	}
}

// An attempt past its timeout fails with category attempt_timeout; the retry
// policy schedules a retry (here after a 200ms backoff, promoted by the
// delayed scanner), and the last allowed attempt's timeout fails for good.
func TestAttemptTimeoutRetries(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, standalone(t))
	runEngine(t, b, testConfig(t))
	id := create(t, b, sdk.CreateExecutionArgs{Lane: "to", AttemptTimeout: 200 * time.Millisecond,
		Retry: sdk.RetryPolicy{MaxRetries: 1, Backoff: sdk.Backoff{Kind: sdk.BackoffFixed, Initial: 200 * time.Millisecond}}})
	first := claim(t, b, id, "to", "w", time.Minute)
	eventually(t, 5*time.Second, "retry scheduled", func() bool { return state(t, b, id) == sdk.StateDelayed })
	if d := describe(t, b, id); d.FailureCategory != "attempt_timeout" || d.RetryCount != 1 {
		t.Fatalf("after timeout: category %q retries %d", d.FailureCategory, d.RetryCount)
	}
	eventually(t, 5*time.Second, "retry promoted", func() bool { return state(t, b, id) == sdk.StateWaiting })
	if err := b.Complete(ctx, first.Handle, nil); err == nil {
		t.Fatal("timed-out attempt completed")
	}
	second := claim(t, b, id, "to", "w", time.Minute)
	if second.AttemptType != sdk.AttemptRetry {
		t.Fatalf("attempt type %q, want retry", second.AttemptType)
	}
	eventually(t, 5*time.Second, "terminal failure", func() bool { return state(t, b, id) == sdk.StateFailed })
	if d := describe(t, b, id); d.FailureCategory != "attempt_timeout" || d.TotalAttempts != 2 {
		t.Fatalf("final: category %q attempts %d", d.FailureCategory, d.TotalAttempts)
	}
}

// Retention deletes a terminal execution with every key and index entry,
// and keeps younger ones and live ones.
func TestRetentionTrims(t *testing.T) {
	for _, topo := range both() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs)
			cfg := testConfig(t)
			cfg.Retention = 300 * time.Millisecond
			runEngine(t, b, cfg)
			done := create(t, b, sdk.CreateExecutionArgs{Lane: "rt", Payload: []byte("p"), Tags: map[string]string{"a": "b"},
				Deadline: time.Now().Add(time.Hour), AttemptTimeout: time.Hour, IdempotencyKey: "k1"})
			live := create(t, b, sdk.CreateExecutionArgs{Lane: "rt", Payload: []byte("p")})
			c := claim(t, b, done, "rt", "w", time.Minute)
			if err := b.Complete(ctx, c.Handle, []byte("result")); err != nil {
				t.Fatal(err)
			}
			if left := keysMentioning(t, addrs, done); len(left) < 3 {
				t.Fatalf("before trim only %v mention the execution", left)
			}
			eventually(t, 5*time.Second, "trim", func() bool { return describe(t, b, done) == nil })
			if left := keysMentioning(t, addrs, done); len(left) > 0 {
				t.Fatalf("after trim these keys still hold the execution: %v", left)
			}
			p, _ := done.Partition()
			page, err := b.ListExecutions(ctx, p, "", 1000)
			if err != nil {
				t.Fatal(err)
			}
			if containsID(page.IDs, done) {
				t.Fatal("ListExecutions still lists the trimmed execution")
			}
			time.Sleep(400 * time.Millisecond)
			if describe(t, b, live) == nil {
				t.Fatal("a waiting execution was trimmed")
			}
		})
	}
}

// keysMentioning lists every key whose name contains id, or that is a ZSET,
// SET or HASH holding id as a member or field (idempotency keys excepted:
// they expire by their own TTL and hold the id as a value).
func keysMentioning(t *testing.T, addrs []string, id sdk.ExecutionID) []string {
	t.Helper()
	var out []string
	ctx := context.Background()
	eachPrimary(t, addrs, func(c valkey.Client) {
		var cursor uint64
		for {
			e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Count(1000).Build()).AsScanEntry()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range e.Elements {
				if strings.Contains(k, string(id)) {
					out = append(out, k)
					continue
				}
				typ, _ := c.Do(ctx, c.B().Type().Key(k).Build()).ToString()
				var hit bool
				switch typ {
				case "zset":
					_, err := c.Do(ctx, c.B().Zscore().Key(k).Member(string(id)).Build()).AsFloat64()
					hit = err == nil
				case "set":
					hit, _ = c.Do(ctx, c.B().Sismember().Key(k).Member(string(id)).Build()).AsBool()
				case "hash":
					hit, _ = c.Do(ctx, c.B().Hexists().Key(k).Field(string(id)).Build()).AsBool()
				case "string":
					v, _ := c.Do(ctx, c.B().Get().Key(k).Build()).ToString()
					hit = v == string(id) && !strings.HasPrefix(k, "ff:idem:")
				}
				if hit {
					out = append(out, k+" ("+typ+")")
				}
			}
			if e.Cursor == 0 {
				return
			}
			cursor = e.Cursor
		}
	})
	return out
}

// A suspension past its timeout gets its behaviour from the running
// scanner: fail ends the execution (category suspension_timeout), resume
// makes it claimable again as the same attempt. A signal after the timeout
// finds the waitpoint closed.
func TestSuspensionTimeouts(t *testing.T) {
	ctx := context.Background()
	b := freshBackend(t, standalone(t))
	runEngine(t, b, testConfig(t))
	if _, err := b.SeedWaitpointSecret(ctx, "k", []byte("scanner-test-secret-123")); err != nil {
		t.Fatal(err)
	}
	failing := create(t, b, sdk.CreateExecutionArgs{Lane: "st"})
	c := claim(t, b, failing, "st", "w", time.Minute)
	out, err := b.Suspend(ctx, c.Handle, sdk.SuspendArgs{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	resuming := create(t, b, sdk.CreateExecutionArgs{Lane: "st"})
	c2 := claim(t, b, resuming, "st", "w", time.Minute)
	if _, err := b.Suspend(ctx, c2.Handle, sdk.SuspendArgs{Timeout: 200 * time.Millisecond, OnTimeout: sdk.TimeoutResume}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "suspension timeout: fail", func() bool { return state(t, b, failing) == sdk.StateFailed })
	if d := describe(t, b, failing); d.FailureCategory != "suspension_timeout" {
		t.Fatalf("failure category %q, want suspension_timeout", d.FailureCategory)
	}
	eventually(t, 5*time.Second, "suspension timeout: resume", func() bool { return state(t, b, resuming) == sdk.StateWaiting })
	if _, err := b.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: out.Waitpoints[0].Token, Name: "late"}); !errors.Is(err, &sdk.Error{Code: sdk.CodeWaitpointClosed}) {
		t.Fatalf("signal after the timeout: %v, want waitpoint_closed", err)
	}
	r, err := b.ClaimFromResumeGrant(ctx, sdk.ResumeToken{ExecutionID: resuming, Lane: "st", WorkerID: "w",
		WorkerInstanceID: "w-1", LeaseTTL: time.Minute})
	if err != nil || r == nil || r.AttemptType != sdk.AttemptResumed || r.Handle.AttemptIndex != c2.Handle.AttemptIndex {
		t.Fatalf("resume after timeout: %+v, %v", r, err)
	}
}

// Retention deletes what suspending kept for an execution: its suspension
// record, its waitpoints and their signal streams.
func TestRetentionTrimsWaiting(t *testing.T) {
	ctx := context.Background()
	addrs := standalone(t)
	b := freshBackend(t, addrs)
	cfg := testConfig(t)
	cfg.Retention = 300 * time.Millisecond
	runEngine(t, b, cfg)
	if _, err := b.SeedWaitpointSecret(ctx, "k", []byte("retention-test-secret")); err != nil {
		t.Fatal(err)
	}
	id := create(t, b, sdk.CreateExecutionArgs{Lane: "rw"})
	c := claim(t, b, id, "rw", "w", time.Minute)
	out, err := b.Suspend(ctx, c.Handle, sdk.SuspendArgs{Waitpoints: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: out.Waitpoints[0].Token, Name: "go"}); err != nil {
		t.Fatal(err)
	}
	r, err := b.ClaimFromResumeGrant(ctx, sdk.ResumeToken{ExecutionID: id, Lane: "rw", WorkerID: "w", WorkerInstanceID: "w-1", LeaseTTL: time.Minute})
	if err != nil || r == nil {
		t.Fatalf("resume: %+v, %v", r, err)
	}
	if err := b.Complete(ctx, r.Handle, nil); err != nil {
		t.Fatal(err)
	}
	waitKeys := func() []string {
		var keys []string
		for _, w := range out.Waitpoints {
			keys = append(keys, keysMentioning(t, addrs, sdk.ExecutionID(w.ID))...)
		}
		return append(keys, keysMentioning(t, addrs, id)...)
	}
	if left := waitKeys(); len(left) < 4 {
		t.Fatalf("before trim only %v hold the execution and its waitpoints", left)
	}
	eventually(t, 5*time.Second, "trim", func() bool { return describe(t, b, id) == nil })
	if left := waitKeys(); len(left) > 0 {
		t.Fatalf("after trim these keys are left: %v", left)
	}
}
