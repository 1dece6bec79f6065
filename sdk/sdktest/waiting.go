package sdktest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// The waiting subtests (sdk.Waiter, RoleWaiting): suspend, signal, resume.

var (
	testKID    = "sdktest-k1"
	testSecret = []byte("sdktest-secret-0123456789abcdef")
)

// waiter returns the backend's Waiter with the test secret seeded, or skips.
func (e *env) waiter() sdk.Waiter {
	e.t.Helper()
	w := need(e, e.roles.Waiter, sdk.RoleWaiting)
	if _, err := w.SeedWaitpointSecret(e.ctx, testKID, testSecret); err != nil {
		e.t.Fatalf("SeedWaitpointSecret = %v", err)
	}
	return w
}

// claimed creates an execution on lane and claims it.
func (e *env) claimed(lane sdk.LaneID) (sdk.ExecutionID, sdk.ClaimedExecution) {
	e.t.Helper()
	id := e.create(simple(lane))
	return id, e.claim(id, lane, leaseTTL)
}

func (e *env) suspend(w sdk.Waiter, h sdk.Handle, args sdk.SuspendArgs) sdk.SuspendOutcome {
	e.t.Helper()
	out, err := w.Suspend(e.ctx, h, args)
	if err != nil {
		e.t.Fatalf("Suspend = %v", err)
	}
	n := len(args.Waitpoints) + len(args.Pending)
	if n == 0 {
		n = 1
	}
	if len(out.Waitpoints) != n || out.SuspensionID == "" {
		e.t.Fatalf("Suspend: %d waitpoints (id %q), want %d", len(out.Waitpoints), out.SuspensionID, n)
	}
	for _, wp := range out.Waitpoints {
		if wp.Token == "" || wp.ID.Validate() != nil {
			e.t.Fatalf("Suspend: waitpoint %+v has no token or a malformed id", wp)
		}
	}
	return out
}

func (e *env) signal(w sdk.Waiter, token, name string, payload []byte, wantEffect string) sdk.DeliverSignalResult {
	e.t.Helper()
	r, err := w.DeliverSignal(e.ctx, sdk.DeliverSignalArgs{Token: token, Name: name, Payload: payload, Source: "sdktest"})
	if err != nil {
		e.t.Fatalf("DeliverSignal(%s) = %v", name, err)
	}
	if r.Effect != wantEffect || r.Duplicate {
		e.t.Fatalf("DeliverSignal(%s): effect %q (duplicate %v), want %q", name, r.Effect, r.Duplicate, wantEffect)
	}
	return r
}

// resumeAndCheck claims the resumed attempt of id and checks it continues
// the suspended one.
func (e *env) resumeAndCheck(id sdk.ExecutionID, lane sdk.LaneID, old sdk.Handle) sdk.ClaimedExecution {
	e.t.Helper()
	e.requireState(id, sdk.StateWaiting, "resumed")
	e.requireScannable(lane, id, true, "resumed")
	r := e.claimResumed(id, lane, leaseTTL, false)
	e.requireResumed("claim after resume", r.Handle, old)
	return r
}

func testSuspendResume(e *env) {
	const lane sdk.LaneID = "sdktest-suspend"
	w := e.waiter()
	id, c := e.claimed(lane)
	e.rejects("Suspend with a malformed condition", func() error {
		_, err := w.Suspend(e.ctx, c.Handle, sdk.SuspendArgs{Condition: sdk.ResumeCondition{Mode: sdk.MatchAll}})
		return err
	}, sdk.ErrValidation)
	out := e.suspend(w, c.Handle, sdk.SuspendArgs{Reason: "waiting for approval",
		Condition: sdk.ResumeCondition{Names: []string{"approve"}}})
	if out.AlreadySatisfied {
		e.t.Fatal("Suspend reported already satisfied with no signal")
	}
	e.requireState(id, sdk.StateSuspended, "after Suspend")
	e.requireScannable(lane, id, false, "suspended")
	e.rejects("Renew after Suspend released the lease", func() error {
		_, err := e.b.Renew(e.ctx, c.Handle)
		return err
	}, sdk.ErrExecutionNotActive)
	page, err := w.ListSuspended(e.ctx, e.partition(id), "", 10)
	e.must("ListSuspended", err)
	if len(page.Entries) != 1 || page.Entries[0].ExecutionID != id || page.Entries[0].Reason != "waiting for approval" {
		e.t.Fatalf("ListSuspended = %+v, want %s with its reason", page.Entries, id)
	}
	if ids := e.listAll(); !containsID(ids, id) {
		e.t.Fatalf("ListExecutions misses the suspended execution %s", id)
	}
	tok := out.Waitpoints[0].Token
	e.signal(w, tok, "reject", []byte("no"), sdk.EffectAppended)
	e.requireState(id, sdk.StateSuspended, "a signal the condition does not name")
	payload := binaryPayload()
	r := e.signal(w, tok, "approve", payload, sdk.EffectResumed)
	if r.ExecutionID != id {
		e.t.Fatalf("DeliverSignal: execution %s, want %s", r.ExecutionID, id)
	}
	e.rejects("a signal after the waitpoint closed", func() error {
		_, err := w.DeliverSignal(e.ctx, sdk.DeliverSignalArgs{Token: tok, Name: "approve"})
		return err
	}, codeErr(sdk.CodeWaitpointClosed))
	page, err = w.ListSuspended(e.ctx, e.partition(id), "", 10)
	e.must("ListSuspended", err)
	if len(page.Entries) != 0 {
		e.t.Fatalf("ListSuspended after resume = %+v, want none", page.Entries)
	}
	rc := e.resumeAndCheck(id, lane, c.Handle)
	s, err := w.ObserveSignals(e.ctx, id)
	e.must("ObserveSignals", err)
	if s == nil || s.Open || s.CloseReason != "satisfied" || len(s.Signals) != 1 ||
		s.Signals[0].Name != "approve" || !bytes.Equal(s.Signals[0].Payload, payload) || s.Signals[0].ID != r.SignalID ||
		s.Signals[0].Waitpoint != out.Waitpoints[0].ID || s.AttemptIndex != c.Handle.AttemptIndex {
		e.t.Fatalf("ObserveSignals = %+v", s)
	}
	e.must("Complete", e.b.Complete(e.ctx, rc.Handle, nil))
	e.requireState(id, sdk.StateCompleted, "resumed and completed")
	e.requireAttempts(id, 1, 0)
}

func containsID(ids []sdk.ExecutionID, id sdk.ExecutionID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func testConditions(e *env) {
	const lane sdk.LaneID = "sdktest-conditions"
	w := e.waiter()
	// all: each name once, in any order; a repeat of a name does not count.
	id, c := e.claimed(lane)
	out := e.suspend(w, c.Handle, sdk.SuspendArgs{Waitpoints: []string{"a", "b"},
		Condition: sdk.ResumeCondition{Mode: sdk.MatchAll, Names: []string{"x", "y"}}})
	e.signal(w, out.Waitpoints[0].Token, "x", nil, sdk.EffectMatched)
	e.signal(w, out.Waitpoints[1].Token, "x", nil, sdk.EffectAppended)
	e.requireState(id, sdk.StateSuspended, "mode all with one name of two")
	e.signal(w, out.Waitpoints[1].Token, "y", nil, sdk.EffectResumed)
	e.resumeAndCheck(id, lane, c.Handle)

	// count(3) over any names.
	id, c = e.claimed(lane)
	out = e.suspend(w, c.Handle, sdk.SuspendArgs{Condition: sdk.ResumeCondition{Mode: sdk.MatchCount, Count: 3}})
	tok := out.Waitpoints[0].Token
	e.signal(w, tok, "a", nil, sdk.EffectMatched)
	e.signal(w, tok, "a", nil, sdk.EffectMatched)
	e.requireState(id, sdk.StateSuspended, "count 3 after 2")
	e.signal(w, tok, "b", nil, sdk.EffectResumed)
	e.resumeAndCheck(id, lane, c.Handle)
	s, err := w.ObserveSignals(e.ctx, id)
	e.must("ObserveSignals", err)
	if len(s.Signals) != 3 || s.Condition.Mode != sdk.MatchCount || s.Condition.Count != 3 {
		e.t.Fatalf("ObserveSignals after count(3) = %+v", s)
	}

	// any, with no names: the first signal resumes.
	id, c = e.claimed(lane)
	out = e.suspend(w, c.Handle, sdk.SuspendArgs{})
	e.signal(w, out.Waitpoints[0].Token, "whatever", nil, sdk.EffectResumed)
	e.resumeAndCheck(id, lane, c.Handle)
}

func testPendingWaitpoint(e *env) {
	const lane sdk.LaneID = "sdktest-pending"
	w := e.waiter()
	// A buffered signal meets the condition at suspend: already satisfied,
	// the lease is kept.
	id, c := e.claimed(lane)
	pw, err := w.CreateWaitpoint(e.ctx, c.Handle, "callback", time.Minute)
	e.must("CreateWaitpoint", err)
	if pw.Token == "" || pw.ExpiresAt.Before(time.Now().Add(50*time.Second)) {
		e.t.Fatalf("CreateWaitpoint = %+v", pw)
	}
	list, err := w.ListPendingWaitpoints(e.ctx, e.partition(id), "", 10)
	e.must("ListPendingWaitpoints", err)
	if len(list.Entries) != 1 || list.Entries[0].ID != pw.ID || list.Entries[0].ExecutionID != id {
		e.t.Fatalf("ListPendingWaitpoints = %+v, want %s", list.Entries, pw.ID)
	}
	e.signal(w, pw.Token, "done", []byte("early"), sdk.EffectBuffered)
	e.requireState(id, sdk.StateActive, "a pending waitpoint buffers")
	out := e.suspend(w, c.Handle, sdk.SuspendArgs{Pending: []sdk.WaitpointID{pw.ID},
		Condition: sdk.ResumeCondition{Names: []string{"done"}}})
	if !out.AlreadySatisfied {
		e.t.Fatal("Suspend on a pending waitpoint whose buffered signal meets the condition: not already satisfied")
	}
	e.requireState(id, sdk.StateActive, "already satisfied")
	if _, err := e.b.Renew(e.ctx, c.Handle); err != nil {
		e.t.Fatalf("Renew after an already satisfied suspend = %v (the lease must be kept)", err)
	}
	s, err := w.ObserveSignals(e.ctx, id)
	e.must("ObserveSignals", err)
	if s == nil || s.CloseReason != "already_satisfied" || len(s.Signals) != 1 || string(s.Signals[0].Payload) != "early" {
		e.t.Fatalf("ObserveSignals after already satisfied = %+v", s)
	}
	e.must("Complete", e.b.Complete(e.ctx, c.Handle, nil))

	// Buffered signals count but do not meet it: suspended, and the next
	// signal resumes.
	id, c = e.claimed(lane)
	pw, err = w.CreateWaitpoint(e.ctx, c.Handle, "two", time.Minute)
	e.must("CreateWaitpoint", err)
	e.signal(w, pw.Token, "part", nil, sdk.EffectBuffered)
	out = e.suspend(w, c.Handle, sdk.SuspendArgs{Pending: []sdk.WaitpointID{pw.ID},
		Condition: sdk.ResumeCondition{Mode: sdk.MatchCount, Count: 2}})
	if out.AlreadySatisfied {
		e.t.Fatal("one buffered signal of two: already satisfied")
	}
	e.requireState(id, sdk.StateSuspended, "one buffered signal of two")
	e.signal(w, out.Waitpoints[0].Token, "part", nil, sdk.EffectResumed)
	e.resumeAndCheck(id, lane, c.Handle)
	list, err = w.ListPendingWaitpoints(e.ctx, e.partition(id), "", 10)
	e.must("ListPendingWaitpoints", err)
	if len(list.Entries) != 0 {
		e.t.Fatalf("ListPendingWaitpoints after activation = %+v, want none", list.Entries)
	}

	// A pending waitpoint past its expiry refuses signals and suspends.
	_, c = e.claimed(lane)
	pw, err = w.CreateWaitpoint(e.ctx, c.Handle, "short", 50*time.Millisecond)
	e.must("CreateWaitpoint", err)
	e.sleep(120 * time.Millisecond)
	e.rejects("a signal to an expired pending waitpoint", func() error {
		_, err := w.DeliverSignal(e.ctx, sdk.DeliverSignalArgs{Token: pw.Token, Name: "late"})
		return err
	}, codeErr(sdk.CodeWaitpointExpired))
	e.rejects("Suspend on an expired pending waitpoint", func() error {
		_, err := w.Suspend(e.ctx, c.Handle, sdk.SuspendArgs{Pending: []sdk.WaitpointID{pw.ID}})
		return err
	}, codeErr(sdk.CodeWaitpointExpired))
}

func testWaitDedup(e *env) {
	const lane sdk.LaneID = "sdktest-wait-dedup"
	w := e.waiter()
	id, c := e.claimed(lane)
	args := sdk.SuspendArgs{DedupKey: "suspend-once"}
	first := e.suspend(w, c.Handle, args)
	before := e.snapshot()
	again, err := w.Suspend(e.ctx, c.Handle, args)
	e.must("Suspend repeated with its dedup key", err)
	if again.SuspensionID != first.SuspensionID || len(again.Waitpoints) != 1 || again.Waitpoints[0] != first.Waitpoints[0] {
		e.t.Fatalf("repeated Suspend = %+v, want the first outcome %+v", again, first)
	}
	if before != nil {
		requireSameKeyspace(e.t, "repeated Suspend", before, e.snapshot())
	}
	e.rejects("Suspend again without the dedup key", func() error {
		_, err := w.Suspend(e.ctx, c.Handle, sdk.SuspendArgs{})
		return err
	}, sdk.ErrExecutionNotActive)

	tok := first.Waitpoints[0].Token
	one, err := w.DeliverSignal(e.ctx, sdk.DeliverSignalArgs{Token: tok, Name: "n", DedupKey: "sig-1",
		Payload: []byte("1")})
	e.must("DeliverSignal", err)
	if one.Effect != sdk.EffectResumed {
		e.t.Fatalf("DeliverSignal effect %q, want resumed", one.Effect)
	}
	before = e.snapshot()
	dup, err := w.DeliverSignal(e.ctx, sdk.DeliverSignalArgs{Token: tok, Name: "n", DedupKey: "sig-1"})
	e.must("DeliverSignal repeated", err)
	if !dup.Duplicate || dup.SignalID != one.SignalID {
		e.t.Fatalf("repeated DeliverSignal = %+v, want a duplicate of %s", dup, one.SignalID)
	}
	if before != nil {
		requireSameKeyspace(e.t, "repeated DeliverSignal", before, e.snapshot())
	}
	e.requireState(id, sdk.StateWaiting, "resumed once")
}

func testSuspensionTimeouts(e *env) {
	const lane sdk.LaneID = "sdktest-wait-timeout"
	w := e.waiter()
	for _, tc := range []struct {
		on   sdk.TimeoutBehavior
		want sdk.PublicState
	}{
		{sdk.TimeoutFail, sdk.StateFailed},
		{sdk.TimeoutCancel, sdk.StateCancelled},
		{sdk.TimeoutExpire, sdk.StateExpired},
		{sdk.TimeoutResume, sdk.StateWaiting},
	} {
		id, c := e.claimed(lane)
		out := e.suspend(w, c.Handle, sdk.SuspendArgs{Timeout: 100 * time.Millisecond, OnTimeout: tc.on})
		p := e.partition(id)
		counts, err := w.ExpireDueSuspensions(e.ctx, p, 10)
		e.must("ExpireDueSuspensions", err)
		if counts[string(tc.want)] != 0 {
			e.t.Fatalf("ExpireDueSuspensions before the timeout = %v", counts)
		}
		e.sleep(150 * time.Millisecond)
		e.eventually("suspension "+string(tc.on)+" after its timeout", func() (bool, string) {
			counts, err := w.ExpireDueSuspensions(e.ctx, p, 10)
			e.must("ExpireDueSuspensions", err)
			s := e.state(id)
			return s == tc.want, fmt.Sprintf("state %s, counts %v", s, counts)
		})
		e.rejects("a signal after the timeout", func() error {
			_, err := w.DeliverSignal(e.ctx, sdk.DeliverSignalArgs{Token: out.Waitpoints[0].Token, Name: "late"})
			return err
		}, codeErr(sdk.CodeWaitpointClosed))
		s, err := w.ObserveSignals(e.ctx, id)
		e.must("ObserveSignals", err)
		if s.Open || s.CloseReason != "timeout" {
			e.t.Fatalf("%s: suspension after timeout = %+v", tc.on, s)
		}
		if tc.on == sdk.TimeoutResume {
			e.resumeAndCheck(id, lane, c.Handle)
		} else if snap := e.describe(id); snap.CompletedAt.IsZero() {
			e.t.Fatalf("%s: ended without a completion time", tc.on)
		}
	}
}

func testSuspendedCancel(e *env) {
	const lane sdk.LaneID = "sdktest-wait-cancel"
	w := e.waiter()
	id, c := e.claimed(lane)
	out := e.suspend(w, c.Handle, sdk.SuspendArgs{Timeout: time.Hour})
	res, err := e.b.CancelExecution(e.ctx, sdk.CancelExecutionArgs{ExecutionID: id, Reason: "no longer needed"})
	e.must("CancelExecution of a suspended execution", err)
	if res.PreviousState != sdk.StateSuspended {
		e.t.Fatalf("CancelExecution: previous state %q, want suspended", res.PreviousState)
	}
	e.requireState(id, sdk.StateCancelled, "cancelled while suspended")
	e.rejects("a signal to a cancelled execution", func() error {
		_, err := w.DeliverSignal(e.ctx, sdk.DeliverSignalArgs{Token: out.Waitpoints[0].Token, Name: "late"})
		return err
	}, codeErr(sdk.CodeWaitpointClosed))
	page, err := w.ListSuspended(e.ctx, e.partition(id), "", 10)
	e.must("ListSuspended", err)
	if len(page.Entries) != 0 {
		e.t.Fatalf("ListSuspended after cancel = %+v", page.Entries)
	}
	counts, err := w.ExpireDueSuspensions(e.ctx, e.partition(id), 10)
	e.must("ExpireDueSuspensions", err)
	if len(counts) != 0 {
		e.t.Fatalf("ExpireDueSuspensions after cancel = %v, want nothing due", counts)
	}
}

func testSuspendStaleFence(e *env) {
	const lane sdk.LaneID = "sdktest-wait-fence"
	w := e.waiter()
	id, c := e.claimed(lane)
	e.revoke(c.Handle)
	e.rejects("Suspend with a revoked lease", func() error {
		_, err := w.Suspend(e.ctx, c.Handle, sdk.SuspendArgs{})
		return err
	}, sdk.ErrLeaseRevoked, sdk.ErrStaleLease)
	e.rejects("SuspendByTriple with a wrong triple", func() error {
		f := c.Handle.Fence()
		f.Epoch++
		_, err := w.SuspendByTriple(e.ctx, id, f, sdk.SuspendArgs{})
		return err
	}, sdk.ErrLeaseRevoked, sdk.ErrStaleLease)

	// By triple, with the live lease: as Suspend.
	id, c = e.claimed(lane)
	out, err := w.SuspendByTriple(e.ctx, id, c.Handle.Fence(), sdk.SuspendArgs{})
	e.must("SuspendByTriple", err)
	e.requireState(id, sdk.StateSuspended, "suspended by triple")
	e.signal(w, out.Waitpoints[0].Token, "go", nil, sdk.EffectResumed)
	e.resumeAndCheck(id, lane, c.Handle)
}

func testWaitpointTokens(e *env) {
	const lane sdk.LaneID = "sdktest-wait-hmac"
	w := need(e, e.roles.Waiter, sdk.RoleWaiting)
	id, c := e.claimed(lane)
	e.rejects("Suspend before a secret is seeded", func() error {
		_, err := w.Suspend(e.ctx, c.Handle, sdk.SuspendArgs{})
		return err
	}, codeErr(sdk.CodeHMACSecretNotInitialized))
	e.rejects("SeedWaitpointSecret with a short secret", func() error {
		_, err := w.SeedWaitpointSecret(e.ctx, testKID, []byte("short"))
		return err
	}, sdk.ErrValidation)
	seed, err := w.SeedWaitpointSecret(e.ctx, testKID, testSecret)
	e.must("SeedWaitpointSecret", err)
	if seed.AlreadySeeded {
		e.t.Fatalf("first SeedWaitpointSecret = %+v", seed)
	}
	seed, err = w.SeedWaitpointSecret(e.ctx, "other", []byte("another-secret-0123456789"))
	e.must("SeedWaitpointSecret again", err)
	if !seed.AlreadySeeded || seed.CurrentKID != testKID || seed.SameSecret {
		e.t.Fatalf("second SeedWaitpointSecret = %+v, want already seeded with %s", seed, testKID)
	}

	out := e.suspend(w, c.Handle, sdk.SuspendArgs{Waitpoints: []string{"one", "two"},
		Condition: sdk.ResumeCondition{Mode: sdk.MatchCount, Count: 2}})
	tok, other := out.Waitpoints[0].Token, out.Waitpoints[1].Token
	if strings.Contains(tok, string(testSecret)) {
		e.t.Fatal("a token carries the secret")
	}
	parts := strings.Split(tok, ".")
	otherParts := strings.Split(other, ".")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	for _, bad := range []struct{ what, token string }{
		{"a forged mac", parts[0] + "." + parts[1] + "." + strings.Repeat("0", 40)},
		{"a tampered mac", parts[0] + "." + parts[1] + "." + flip(parts[2], 7)},
		{"another waitpoint's mac", parts[0] + "." + parts[1] + "." + otherParts[2]},
		{"this mac on another waitpoint", otherParts[0] + "." + parts[1] + "." + parts[2]},
		{"an unknown kid", parts[0] + ".nokid." + parts[2]},
		{"a waitpoint that does not exist", string(sdk.NewWaitpointID(id)) + "." + parts[1] + "." + parts[2]},
		{"no token at all", "garbage"},
	} {
		e.rejects("DeliverSignal with "+bad.what, func() error {
			_, err := w.DeliverSignal(e.ctx, sdk.DeliverSignalArgs{Token: bad.token, Name: "x"})
			return err
		}, codeErr(sdk.CodeInvalidToken))
	}
	e.signal(w, tok, "x", nil, sdk.EffectMatched)

	// Rotation: the old kid verifies during the grace, not after it.
	const grace = 1500 * time.Millisecond
	rot, err := w.RotateWaitpointSecret(e.ctx, "sdktest-k2", []byte("sdktest-secret-rotated-0123456789"), grace)
	e.must("RotateWaitpointSecret", err)
	if rot.Rotated != e.b.Partitions() || rot.PreviousKID != testKID {
		e.t.Fatalf("RotateWaitpointSecret = %+v, want %d partitions rotated from %s", rot, e.b.Partitions(), testKID)
	}
	rotatedAt := time.Now()
	if again, err := w.RotateWaitpointSecret(e.ctx, "sdktest-k2", []byte("sdktest-secret-rotated-0123456789"), grace); err != nil || again.Unchanged != e.b.Partitions() {
		e.t.Fatalf("RotateWaitpointSecret repeated = %+v, %v, want unchanged everywhere", again, err)
	}
	e.rejects("RotateWaitpointSecret of the current kid with another secret", func() error {
		_, err := w.RotateWaitpointSecret(e.ctx, "sdktest-k2", []byte("a-different-secret-0123456789"), grace)
		return err
	}, codeErr(sdk.CodeRotationConflict))
	if time.Since(rotatedAt) < grace-100*time.Millisecond {
		e.signal(w, tok, "x", nil, sdk.EffectResumed) // the old kid, in its grace
	} else {
		e.t.Log("rotation checks took longer than the grace: the in-grace delivery is not checked")
	}
	// A new suspension's tokens carry the new kid; the old kid expires.
	r := e.claimResumed(id, lane, leaseTTL, false)
	out = e.suspend(w, r.Handle, sdk.SuspendArgs{})
	if !strings.Contains(out.Waitpoints[0].Token, ".sdktest-k2.") {
		e.t.Fatalf("token %q after rotation does not carry the new kid", out.Waitpoints[0].Token)
	}
	e.sleepUntil(rotatedAt.Add(grace + 100*time.Millisecond))
	old := strings.Join([]string{string(out.Waitpoints[0].ID), testKID,
		strings.Split(out.Waitpoints[0].Token, ".")[2]}, ".")
	e.rejects("DeliverSignal with a rotated-out kid after the grace", func() error {
		_, err := w.DeliverSignal(e.ctx, sdk.DeliverSignalArgs{Token: old, Name: "x"})
		return err
	}, codeErr(sdk.CodeInvalidToken))
	e.signal(w, out.Waitpoints[0].Token, "x", nil, sdk.EffectResumed)
}

// testResumeHandoff: a resume into an empty eligible set goes to a live
// offer of the lane, as a create does: no claim call.
func testResumeHandoff(e *env) {
	const lane sdk.LaneID = "sdktest-wait-handoff"
	co := need(e, e.roles.ClaimOfferer, sdk.RoleClaimOffers)
	w := e.waiter()
	id, c := e.claimed(lane)
	out := e.suspend(w, c.Handle, sdk.SuspendArgs{})
	in := e.watchHandoffs(co)
	// One offer per partition: where a backend keeps offers per partition,
	// one of them serves the execution's.
	e.offer(co, offerArgs(lane, e.b.Partitions()))
	r := e.signal(w, out.Waitpoints[0].Token, "go", nil, sdk.EffectResumed)
	if r.ExecutionID != id {
		e.t.Fatalf("resumed %s, want %s", r.ExecutionID, id)
	}
	t := in.next(e, "the resumed execution")
	if t.Handle.ExecutionID != id || t.AttemptType != sdk.AttemptResumed {
		e.t.Fatalf("hand-off %s (%s), want %s resumed", t.Handle.ExecutionID, t.AttemptType, id)
	}
	e.requireResumed("handed-off resume", t.Handle, c.Handle)
	e.must("Complete", e.b.Complete(e.ctx, t.Handle, nil))
}

// testSignalDeliveries: the deliveries log streams every delivery with its
// effect, and a subscriber that resumes from a delivery's cursor gets what
// followed it, nothing twice.
func testSignalDeliveries(e *env) {
	const lane sdk.LaneID = "sdktest-wait-log"
	w := e.waiter()
	got := make(chan sdk.SignalDelivery, 16)
	subscribe := func(cursor string) context.CancelFunc {
		ctx, cancel := context.WithCancel(e.ctx)
		go func() {
			_ = w.SignalDeliveries(ctx, cursor, func(d sdk.SignalDelivery) error {
				got <- d
				return nil
			})
		}()
		return cancel
	}
	next := func(what string) sdk.SignalDelivery {
		e.t.Helper()
		select {
		case d := <-got:
			return d
		case <-time.After(settleDeadline):
			e.t.Fatalf("%s: no delivery within %v", what, settleDeadline)
		}
		return sdk.SignalDelivery{}
	}
	// A subscription from now starts at the logs' ends: give it a moment
	// to read them before the first signal.
	stop := subscribe("")
	e.sleep(100 * time.Millisecond)
	id, c := e.claimed(lane)
	out := e.suspend(w, c.Handle, sdk.SuspendArgs{Condition: sdk.ResumeCondition{Mode: sdk.MatchCount, Count: 3}})
	var sent []sdk.DeliverSignalResult
	for i, effect := range []string{sdk.EffectMatched, sdk.EffectMatched, sdk.EffectResumed} {
		sent = append(sent, e.signal(w, out.Waitpoints[0].Token, fmt.Sprintf("s%d", i), nil, effect))
	}
	var first sdk.SignalDelivery
	for i, s := range sent {
		d := next("delivery " + s.SignalID)
		if d.SignalID != s.SignalID || d.ExecutionID != id || d.Effect != s.Effect ||
			d.Waitpoint != out.Waitpoints[0].ID || d.Name != fmt.Sprintf("s%d", i) || d.Cursor == "" {
			e.t.Fatalf("delivery %d = %+v, want signal %s (%s) of %s", i, d, s.SignalID, s.Effect, id)
		}
		if i == 0 {
			first = d
		}
	}
	stop()
	// Resumed from the first delivery's cursor: the two after it, once.
	stop = subscribe(first.Cursor)
	defer stop()
	for _, s := range sent[1:] {
		if d := next("resumed subscription"); d.SignalID != s.SignalID {
			e.t.Fatalf("resumed subscription: %s, want %s", d.SignalID, s.SignalID)
		}
	}
	select {
	case d := <-got:
		e.t.Fatalf("resumed subscription delivered %s again", d.SignalID)
	case <-time.After(200 * time.Millisecond):
	}
	e.rejects("SignalDeliveries with a malformed cursor", func() error {
		return w.SignalDeliveries(e.ctx, "nonsense", func(sdk.SignalDelivery) error { return nil })
	}, sdk.ErrValidation)
}

// testSignalCap: a waitpoint takes MaxSignalsPerWaitpoint signals; the next
// is signal_limit_exceeded, with nothing written.
func testSignalCap(e *env) {
	const lane sdk.LaneID = "sdktest-wait-cap"
	w := e.waiter()
	id, c := e.claimed(lane)
	out := e.suspend(w, c.Handle, sdk.SuspendArgs{Condition: sdk.ResumeCondition{Names: []string{"never-sent"}}})
	tok := out.Waitpoints[0].Token
	for i := range sdk.MaxSignalsPerWaitpoint {
		if _, err := w.DeliverSignal(e.ctx, sdk.DeliverSignalArgs{Token: tok, Name: "noise"}); err != nil {
			e.t.Fatalf("signal %d of %d: %v", i+1, sdk.MaxSignalsPerWaitpoint, err)
		}
	}
	e.rejects("a signal past the waitpoint's cap", func() error {
		_, err := w.DeliverSignal(e.ctx, sdk.DeliverSignalArgs{Token: tok, Name: "never-sent"})
		return err
	}, codeErr(sdk.CodeSignalLimitExceeded))
	e.requireState(id, sdk.StateSuspended, "past the signal cap")
}
