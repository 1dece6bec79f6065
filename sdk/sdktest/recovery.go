package sdktest

import (
	"errors"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Recovery (sdk.Recovery) is part of every EngineBackend: these subtests
// never skip.

// errNotReclaimable matches execution_not_reclaimable.
var errNotReclaimable = codeErr(sdk.CodeExecutionNotReclaimable)

// revoke takes the lease behind h away from its holder.
func (e *env) revoke(h sdk.Handle) {
	e.t.Helper()
	rv, err := e.b.RevokeLease(e.ctx, sdk.RevokeLeaseArgs{ExecutionID: h.ExecutionID, ExpectedLeaseID: h.LeaseID, Reason: "sdktest"})
	if err != nil {
		e.t.Fatalf("RevokeLease(%s) = %v", h.ExecutionID, err)
	}
	if rv.LeaseID != h.LeaseID || rv.Epoch != h.Epoch {
		e.t.Fatalf("RevokeLease(%s) = %+v, want lease %s epoch %d", h.ExecutionID, rv, h.LeaseID, h.Epoch)
	}
}

func reclaimGrantArgs(id sdk.ExecutionID, w sdk.WorkerID, caps ...string) sdk.IssueReclaimGrantArgs {
	return sdk.IssueReclaimGrantArgs{ExecutionID: id, WorkerID: w, WorkerInstanceID: workerInstance, Capabilities: caps, GrantTTL: 5 * time.Second}
}

func reclaimArgs(id sdk.ExecutionID, lane sdk.LaneID, w sdk.WorkerID, maxReclaims int) sdk.ReclaimExecutionArgs {
	return sdk.ReclaimExecutionArgs{ExecutionID: id, Lane: lane, WorkerID: w, WorkerInstanceID: workerInstance,
		LeaseTTL: leaseTTL, MaxReclaims: maxReclaims}
}

// reclaimGrantCall and reclaimCall are the recovery calls as rejects
// takes them.
func (e *env) reclaimGrantCall(id sdk.ExecutionID, w sdk.WorkerID, caps ...string) func() error {
	return func() error {
		_, err := e.b.IssueReclaimGrant(e.ctx, reclaimGrantArgs(id, w, caps...))
		return err
	}
}

func (e *env) reclaimCall(id sdk.ExecutionID, lane sdk.LaneID, w sdk.WorkerID, maxReclaims int) func() error {
	return func() error {
		_, err := e.b.ReclaimExecution(e.ctx, reclaimArgs(id, lane, w, maxReclaims))
		return err
	}
}

// reclaimGrant issues a reclaim grant to workerID.
func (e *env) reclaimGrant(id sdk.ExecutionID, caps ...string) {
	e.t.Helper()
	before := time.Now()
	g, err := e.b.IssueReclaimGrant(e.ctx, reclaimGrantArgs(id, workerID, caps...))
	if err != nil {
		e.t.Fatalf("IssueReclaimGrant(%s) = %v", id, err)
	}
	if g.ExecutionID != id || !g.ExpiresAt.After(before.Add(-clockSlack)) {
		e.t.Fatalf("IssueReclaimGrant(%s) = %+v, want a grant for it expiring after %v", id, g, before)
	}
}

// reclaim grants and reclaims the execution whose lease old was, and checks
// the new attempt: reclaim type, a higher epoch, a new attempt id and lease
// id, the next attempt index, and the context inline.
func (e *env) reclaim(old sdk.Handle, maxReclaims int, want sdk.ExecutionContext, caps ...string) sdk.ClaimedTask {
	e.t.Helper()
	id := old.ExecutionID
	e.reclaimGrant(id, caps...)
	before := time.Now()
	out, err := e.b.ReclaimExecution(e.ctx, reclaimArgs(id, old.Lane, workerID, maxReclaims))
	if err != nil {
		e.t.Fatalf("ReclaimExecution(%s) = %v", id, err)
	}
	if out.TerminalFailed || out.Task == nil {
		e.t.Fatalf("ReclaimExecution(%s) = %+v, want a new attempt", id, out)
	}
	t := *out.Task
	e.checkTask("ReclaimExecution("+string(id)+")", t, id, leaseTTL, before, time.Now(), sdk.AttemptReclaim, want)
	h := t.Handle
	if h.Epoch <= old.Epoch || h.AttemptIndex != old.AttemptIndex+1 || h.AttemptID == old.AttemptID || h.LeaseID == old.LeaseID {
		e.t.Fatalf("ReclaimExecution(%s): epoch %d attempt %d %s lease %s; want a new attempt and lease after epoch %d attempt %d %s lease %s",
			id, h.Epoch, h.AttemptIndex, h.AttemptID, h.LeaseID, old.Epoch, old.AttemptIndex, old.AttemptID, old.LeaseID)
	}
	return t
}

// requireFenced fails unless every lease call with h is refused with want
// and changes nothing.
func (e *env) requireFenced(h sdk.Handle, when string, want error) {
	e.t.Helper()
	for _, lc := range e.leaseCalls() {
		e.rejects(lc.name+" "+when, func() error { return lc.call(h) }, want)
	}
}

// testReclaimAfterRevoke: a revoked lease is taken over by a reclaim grant
// and a reclaim: a new attempt under a higher epoch, and the old holder is
// fenced off.
func testReclaimAfterRevoke(e *env) {
	const lane sdk.LaneID = "sdktest-reclaim"
	args := simple(lane)
	args.Payload = []byte("reclaim me")
	args.Tags = map[string]string{"t": "v"}
	args.RequiredCapabilities = []string{"gpu"}
	id := e.create(args)
	c := e.claim(id, lane, leaseTTL, "gpu")

	e.rejects("IssueReclaimGrant on a live lease", e.reclaimGrantCall(id, workerID, "gpu"), errNotReclaimable)
	e.revoke(c.Handle)
	e.rejects("IssueReclaimGrant without the required capabilities", e.reclaimGrantCall(id, workerID), sdk.ErrCapabilityMismatch)

	r := e.reclaim(c.Handle, 0, contextOf(args), "gpu")
	e.requireAttempts(id, 2, 1)
	if s := e.describe(id); s.State != sdk.StateActive || s.LeaseEpoch != r.Handle.Epoch {
		e.t.Fatalf("DescribeExecution after reclaim: state %q epoch %d, want active %d", s.State, s.LeaseEpoch, r.Handle.Epoch)
	}
	e.requireFenced(c.Handle, "with the handle the reclaim replaced", sdk.ErrStaleLease)
	if _, err := e.b.Renew(e.ctx, r.Handle); err != nil {
		e.t.Fatalf("Renew with the reclaimed lease = %v", err)
	}
	e.must("Complete with the reclaimed lease", e.b.Complete(e.ctx, r.Handle, []byte("took over")))
	e.requireState(id, sdk.StateCompleted, "reclaimed attempt completed")
	e.rejects("IssueReclaimGrant on a completed execution", e.reclaimGrantCall(id, workerID, "gpu"), errNotReclaimable)
}

// testReclaimAfterExpiry: a lease that expired unrenewed is reclaimable
// too, and not before it expired.
func testReclaimAfterExpiry(e *env) {
	const lane sdk.LaneID = "sdktest-reclaim-expiry"
	const shortTTL = 300 * time.Millisecond
	args := simple(lane)
	id := e.create(args)
	c := e.claim(id, lane, shortTTL)
	if time.Until(c.ExpiresAt) > 100*time.Millisecond {
		e.rejects("IssueReclaimGrant before the lease expired", e.reclaimGrantCall(id, workerID), errNotReclaimable)
	}
	e.sleepUntil(c.ExpiresAt.Add(2 * clockSlack))
	r := e.reclaim(c.Handle, 0, contextOf(args))
	e.requireFenced(c.Handle, "with the expired handle the reclaim replaced", sdk.ErrStaleLease)
	e.must("Complete with the reclaimed lease", e.b.Complete(e.ctx, r.Handle, nil))
}

// testReclaimRejections: what a reclaim grant and a reclaim refuse, each
// changing nothing.
func testReclaimRejections(e *env) {
	const lane sdk.LaneID = "sdktest-reclaim-rejects"
	unknown := sdk.NewExecutionID(e.lastPartition())
	e.rejects("IssueReclaimGrant(unknown)", e.reclaimGrantCall(unknown, workerID), sdk.ErrNotFound)
	e.rejects("ReclaimExecution(unknown)", e.reclaimCall(unknown, lane, workerID, 0), sdk.ErrNotFound)

	waiting := e.create(simple(lane))
	e.rejects("IssueReclaimGrant on a waiting execution", e.reclaimGrantCall(waiting, workerID), errNotReclaimable)

	id := e.create(simple(lane))
	c := e.claim(id, lane, leaseTTL)
	e.revoke(c.Handle)
	e.rejects("ReclaimExecution without a reclaim grant", e.reclaimCall(id, lane, workerID, 0), sdk.ErrInvalidClaimGrant)
	e.reclaimGrant(id)
	e.rejects("a second IssueReclaimGrant", e.reclaimGrantCall(id, otherWorkerID), sdk.ErrGrantAlreadyExists)
	e.rejects("ReclaimExecution by a worker without the grant", e.reclaimCall(id, lane, otherWorkerID, 0), sdk.ErrInvalidClaimGrant)
	e.rejects("ReclaimExecution with a negative MaxReclaims", e.reclaimCall(id, lane, workerID, -1), sdk.ErrValidation)
	e.requireState(id, sdk.StateActive, "revoked, reclaim refused")
	e.requireFenced(c.Handle, "after RevokeLease, reclaim refused", sdk.ErrLeaseRevoked)
}

// testReclaimCap: MaxReclaims caps the reclaims of an execution; the one
// past the cap fails it terminally instead of starting an attempt.
func testReclaimCap(e *env) {
	const lane sdk.LaneID = "sdktest-reclaim-cap"
	const maxReclaims = 2
	args := simple(lane)
	id := e.create(args)
	h := e.claim(id, lane, leaseTTL).Handle
	for range maxReclaims {
		e.revoke(h)
		h = e.reclaim(h, maxReclaims, contextOf(args)).Handle
	}
	e.revoke(h)
	e.reclaimGrant(id)
	out, err := e.b.ReclaimExecution(e.ctx, reclaimArgs(id, lane, workerID, maxReclaims))
	if err != nil || !out.TerminalFailed || out.Task != nil {
		e.t.Fatalf("reclaim %d with MaxReclaims %d = %+v, %v; want TerminalFailed and no task", maxReclaims+1, maxReclaims, out, err)
	}
	e.requireState(id, sdk.StateFailed, "reclaimed past the cap")
	e.requireScannable(lane, id, false, "reclaimed past the cap")
	if s := e.describe(id); s.CompletedAt.IsZero() {
		e.t.Fatalf("DescribeExecution after terminal failure at the reclaim cap: CompletedAt is zero")
	}
	e.requireAttempts(id, 1+maxReclaims, maxReclaims)
	e.requireFenced(h, "after the reclaim cap failed the execution", sdk.ErrExecutionNotActive)
	e.rejects("IssueReclaimGrant on the failed execution", e.reclaimGrantCall(id, workerID), errNotReclaimable)
}

// testReplay: a terminal execution runs again as a new attempt, up to
// MaxReplays times.
func testReplay(e *env) {
	const lane sdk.LaneID = "sdktest-replay"
	const maxReplays = 2
	replay := func(id sdk.ExecutionID) error {
		_, err := e.b.ReplayExecution(e.ctx, sdk.ReplayExecutionArgs{ExecutionID: id, MaxReplays: maxReplays})
		return err
	}
	e.rejects("ReplayExecution(unknown)", func() error { return replay(sdk.NewExecutionID(e.lastPartition())) }, sdk.ErrNotFound)
	id := e.create(simple(lane))
	e.rejects("ReplayExecution of a waiting execution", func() error { return replay(id) }, codeErr(sdk.CodeExecutionNotTerminal))
	c := e.claim(id, lane, leaseTTL)
	e.rejects("ReplayExecution of an active execution", func() error { return replay(id) }, codeErr(sdk.CodeExecutionNotTerminal))
	e.must("Complete", e.b.Complete(e.ctx, c.Handle, []byte("first run")))

	// Each replay starts a new attempt; the run before it ended completed,
	// then failed.
	ends := []struct {
		state sdk.PublicState
		end   func(sdk.Handle)
	}{
		{sdk.StateCompleted, nil},
		{sdk.StateFailed, func(h sdk.Handle) { e.fail(h, "boom", "") }},
		{sdk.StateCancelled, func(h sdk.Handle) { e.must("Cancel", e.b.Cancel(e.ctx, h, "enough")) }},
	}
	prev := c.Handle
	for i, end := range ends {
		if end.end != nil {
			end.end(prev)
		}
		e.requireState(id, end.state, "run before replay")
		if i == maxReplays {
			break
		}
		res, err := e.b.ReplayExecution(e.ctx, sdk.ReplayExecutionArgs{ExecutionID: id, MaxReplays: maxReplays})
		if err != nil || res.PreviousState != end.state {
			e.t.Fatalf("ReplayExecution %d = %+v, %v; want PreviousState %q", i+1, res, err, end.state)
		}
		e.requireState(id, sdk.StateWaiting, "replayed")
		e.requireScannable(lane, id, true, "replayed")
		if r, err := e.b.GetExecutionResult(e.ctx, id); err != nil || r != nil {
			e.t.Fatalf("GetExecutionResult of a replayed, waiting execution = %q, %v; want nil, nil", r, err)
		}
		next := e.claim(id, lane, leaseTTL)
		e.checkAttempt("claim after replay", next, sdk.AttemptReplay)
		if h := next.Handle; h.AttemptIndex != prev.AttemptIndex+1 || h.Epoch <= prev.Epoch || h.AttemptID == prev.AttemptID {
			e.t.Fatalf("claim after replay %d: attempt %d %s epoch %d; want a new attempt after %d %s epoch %d",
				i+1, h.AttemptIndex, h.AttemptID, h.Epoch, prev.AttemptIndex, prev.AttemptID, prev.Epoch)
		}
		e.requireAttempts(id, i+2, sdk.AttemptIndex(i+1))
		e.rejects("Complete with the handle of the run before the replay", func() error {
			return e.b.Complete(e.ctx, prev, []byte("zombie"))
		}, sdk.ErrStaleLease)
		prev = next.Handle
	}
	e.rejects("ReplayExecution past MaxReplays", func() error { return replay(id) }, codeErr(sdk.CodeReplayLimitExceeded))
	e.requireState(id, sdk.StateCancelled, "replay refused")
}

// testResumeGrant: ClaimFromResumeGrant continues an interrupted attempt
// once it is due, and otherwise returns nil, nil having changed nothing.
func testResumeGrant(e *env) {
	const lane sdk.LaneID = "sdktest-resume"
	args := simple(lane)
	args.Payload = []byte("resume me")
	id := e.create(args)
	tok := sdk.ResumeToken{ExecutionID: id, Lane: lane, WorkerID: workerID, WorkerInstanceID: workerInstance, LeaseTTL: leaseTTL}
	notResumable := func(when string) {
		e.t.Helper()
		before := e.snapshot()
		t, err := e.b.ClaimFromResumeGrant(e.ctx, tok)
		if t != nil || err != nil {
			e.t.Fatalf("ClaimFromResumeGrant (%s) = %+v, %v; want nil, nil", when, t, err)
		}
		if e.h.Snapshot != nil {
			requireSameKeyspace(e.t, "ClaimFromResumeGrant ("+when+")", before, e.snapshot())
		}
	}
	notResumable("fresh execution, no attempt to resume")
	c := e.claim(id, lane, leaseTTL)
	notResumable("attempt running")

	until := time.Now().Add(300 * time.Millisecond)
	e.must("Delay", e.b.Delay(e.ctx, c.Handle, until))
	if time.Until(until) > 100*time.Millisecond {
		notResumable("delayed, not yet due")
	}
	e.readyAgain(lane, id)
	before := time.Now()
	t, err := e.b.ClaimFromResumeGrant(e.ctx, tok)
	if err != nil || t == nil {
		e.t.Fatalf("ClaimFromResumeGrant of a due interrupted attempt = %+v, %v; want a task", t, err)
	}
	e.checkTask("ClaimFromResumeGrant", *t, id, leaseTTL, before, time.Now(), sdk.AttemptResumed, contextOf(args))
	e.requireResumed("ClaimFromResumeGrant", t.Handle, c.Handle)
	e.requireAttempts(id, 1, 0)
	e.requireFenced(c.Handle, "with the handle from before the delay", sdk.ErrStaleLease)
	e.must("Complete", e.b.Complete(e.ctx, t.Handle, nil))
	notResumable("completed")
}

// testExecutionInfo: ReadExecutionInfo is the snapshot plus the raw fields;
// ErrExecutionNotFound for an unknown id.
func testExecutionInfo(e *env) {
	const lane sdk.LaneID = "sdktest-info"
	if info, err := e.b.ReadExecutionInfo(e.ctx, sdk.NewExecutionID(e.lastPartition())); info != nil || !errors.Is(err, sdk.ErrExecutionNotFound) {
		e.t.Fatalf("ReadExecutionInfo(unknown) = %+v, %v; want ErrExecutionNotFound", info, err)
	}
	e.rejects("ReadExecutionInfo(malformed)", func() error {
		_, err := e.b.ReadExecutionInfo(e.ctx, "not-an-id")
		return err
	}, sdk.ErrValidation)
	args := simple(lane)
	args.Priority = 7
	id := e.create(args)
	c := e.claim(id, lane, leaseTTL)
	info, err := e.b.ReadExecutionInfo(e.ctx, id)
	if err != nil || info == nil {
		e.t.Fatalf("ReadExecutionInfo(%s) = %+v, %v", id, info, err)
	}
	s, want := info.Snapshot, e.describe(id)
	if s.ID != id || s.State != sdk.StateActive || s.Lane != lane || s.Kind != args.Kind || s.Priority != 7 ||
		s.LeaseEpoch != c.Handle.Epoch || s.TotalAttempts != want.TotalAttempts {
		e.t.Fatalf("ReadExecutionInfo(%s).Snapshot = %+v, want the execution as DescribeExecution has it (%+v)", id, s, *want)
	}
	if len(info.Fields) == 0 {
		e.t.Fatalf("ReadExecutionInfo(%s): no raw fields", id)
	}
}
