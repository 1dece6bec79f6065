package sdktest

import (
	"errors"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// leaseCalls are the fenced lease-holder calls, each as a func of a handle.
func (e *env) leaseCalls() []struct {
	name string
	call func(sdk.Handle) error
} {
	return []struct {
		name string
		call func(sdk.Handle) error
	}{
		{"Renew", func(h sdk.Handle) error { _, err := e.b.Renew(e.ctx, h); return err }},
		{"Progress", func(h sdk.Handle) error { return e.b.Progress(e.ctx, h, 10, "x") }},
		{"Complete", func(h sdk.Handle) error { return e.b.Complete(e.ctx, h, []byte("r")) }},
		{"Fail", func(h sdk.Handle) error { _, err := e.b.Fail(e.ctx, h, "r", "c"); return err }},
		{"Cancel", func(h sdk.Handle) error { return e.b.Cancel(e.ctx, h, "r") }},
		{"Delay", func(h sdk.Handle) error { return e.b.Delay(e.ctx, h, time.Now().Add(time.Hour)) }},
	}
}

// terminalCalls are the lease calls whose execution_not_active error must
// carry the NotActive detail, so a client can recognise the replay of its own
// terminal call.
var terminalCalls = map[string]bool{"Complete": true, "Fail": true, "Cancel": true}

// testFencing: every lease-holder call checks the lease, and a rejected call
// changes nothing.
func testFencing(e *env) {
	const lane sdk.LaneID = "sdktest-fencing"

	// Reach epoch 2 (through a zero-delay retry) so "epoch - 1" is a
	// well-formed but stale handle.
	args := simple(lane)
	args.Retry = sdk.RetryPolicy{MaxRetries: 1, Backoff: sdk.Backoff{ZeroDelay: true}}
	id := e.create(args)
	first := e.claim(id, lane, leaseTTL)
	if out, _, _ := e.fail(first.Handle, "boom", ""); !out.RetryScheduled {
		e.t.Fatalf("zero-delay Fail: no retry scheduled")
	}
	e.readyAgain(lane, id)
	c := e.claim(id, lane, leaseTTL)
	h := c.Handle
	if h.Epoch < 2 {
		e.t.Fatalf("second claim: epoch %d, want at least 2", h.Epoch)
	}

	stale := []struct {
		name string
		h    sdk.Handle
	}{
		{"epoch - 1", func() sdk.Handle { x := h; x.Epoch--; return x }()},
		{"epoch + 1", func() sdk.Handle { x := h; x.Epoch++; return x }()},
		{"other lease id", func() sdk.Handle { x := h; x.LeaseID = sdk.NewToken(); return x }()},
		{"other attempt id", func() sdk.Handle { x := h; x.AttemptID = sdk.NewToken(); return x }()},
		{"previous attempt", first.Handle},
	}
	for _, s := range stale {
		for _, lc := range e.leaseCalls() {
			e.rejects(lc.name+" with a stale handle ("+s.name+")", func() error { return lc.call(s.h) }, sdk.ErrStaleLease)
		}
	}
	e.requireState(id, sdk.StateActive, "after stale calls")
	if _, err := e.b.Renew(e.ctx, h); err != nil {
		e.t.Fatalf("Renew with the live handle after stale calls = %v", err)
	}

	// Revoked: the execution stays active, its holder is fenced off.
	rv, err := e.b.RevokeLease(e.ctx, sdk.RevokeLeaseArgs{ExecutionID: id, ExpectedLeaseID: h.LeaseID, Reason: "sdktest"})
	if err != nil {
		e.t.Fatalf("RevokeLease = %v", err)
	}
	if rv.LeaseID != h.LeaseID || rv.Epoch != h.Epoch {
		e.t.Fatalf("RevokeLease = %+v, want lease %s epoch %d", rv, h.LeaseID, h.Epoch)
	}
	e.requireState(id, sdk.StateActive, "after RevokeLease")
	for _, lc := range e.leaseCalls() {
		e.rejects(lc.name+" after RevokeLease", func() error { return lc.call(h) }, sdk.ErrLeaseRevoked)
	}

	// Expired: the check reads server time. A backend may record the expiry
	// when it notices it, so this case checks the state, not the keyspace.
	id = e.create(simple(lane))
	const shortTTL = 300 * time.Millisecond
	c = e.claim(id, lane, shortTTL)
	e.sleepUntil(c.ExpiresAt.Add(200 * time.Millisecond))
	for _, lc := range e.leaseCalls() {
		requireErr(e.t, lc.name+" after the lease expired", lc.call(c.Handle), sdk.ErrLeaseExpired)
	}
	e.requireState(id, sdk.StateActive, "lease expired, not yet reclaimed")

	// Terminal: the replayed terminal call learns what happened.
	id = e.create(simple(lane))
	c = e.claim(id, lane, leaseTTL)
	e.must("Complete", e.b.Complete(e.ctx, c.Handle, []byte("once")))
	for _, lc := range e.leaseCalls() {
		err := e.rejects(lc.name+" on a completed execution", func() error { return lc.call(c.Handle) }, sdk.ErrExecutionNotActive)
		if terminalCalls[lc.name] {
			e.requireNotActive(err, sdk.StateCompleted, c.Handle)
		}
	}
	if r, err := e.b.GetExecutionResult(e.ctx, id); err != nil || string(r) != "once" {
		e.t.Fatalf("GetExecutionResult after a replayed Complete = %q, %v; want %q", r, err, "once")
	}
}

// requireNotActive checks the detail of an execution_not_active error.
func (e *env) requireNotActive(err error, state sdk.PublicState, h sdk.Handle) {
	e.t.Helper()
	var se *sdk.Error
	if !errors.As(err, &se) {
		e.t.Fatalf("%v is not an *sdk.Error", err)
	}
	d, ok := se.NotActive()
	if !ok {
		e.t.Fatalf("execution_not_active error %v has no decodable detail %q (want state, epoch, attempt id)", err, se.Detail)
	}
	if d.State != state || d.Epoch != h.Epoch || d.AttemptID != h.AttemptID {
		e.t.Fatalf("NotActive() = %+v, want state %q epoch %d attempt %s", d, state, h.Epoch, h.AttemptID)
	}
}

// requireTerminalDetail requires an execution_terminal error whose detail
// starts with the execution's state.
func (e *env) requireTerminalDetail(err error, state sdk.PublicState) {
	e.t.Helper()
	var se *sdk.Error
	if !errors.As(err, &se) || len(se.Detail) == 0 || se.Detail[0] != string(state) {
		e.t.Fatalf("execution_terminal error %v: want the state %q as its detail", err, state)
	}
}

// testCancel: an operator cancels from every non-terminal state; the lease
// holder cancels its own execution.
func testCancel(e *env) {
	const lane sdk.LaneID = "sdktest-cancel"
	type victim struct {
		name string
		id   sdk.ExecutionID
		prev sdk.PublicState
		h    *sdk.Handle // the lease holder's handle, if any
	}
	var vs []victim

	vs = append(vs, victim{name: "waiting", id: e.create(simple(lane)), prev: sdk.StateWaiting})

	delayedUntil := time.Now().Add(150 * time.Millisecond)
	args := simple(lane)
	args.DelayUntil = delayedUntil
	vs = append(vs, victim{name: "delayed", id: e.create(args), prev: sdk.StateDelayed})

	id := e.create(simple(lane))
	c := e.claim(id, lane, leaseTTL)
	vs = append(vs, victim{name: "active", id: id, prev: sdk.StateActive, h: &c.Handle})

	id = e.create(simple(lane))
	rc := e.claim(id, lane, leaseTTL)
	if _, err := e.b.RevokeLease(e.ctx, sdk.RevokeLeaseArgs{ExecutionID: id, Reason: "sdktest"}); err != nil {
		e.t.Fatalf("RevokeLease = %v", err)
	}
	vs = append(vs, victim{name: "active with revoked lease", id: id, prev: sdk.StateActive, h: &rc.Handle})

	id = e.create(simple(lane))
	if out, err := e.b.BlockRoute(e.ctx, sdk.BlockRouteArgs{ExecutionID: id, Lane: lane}); err != nil || !out.Blocked {
		e.t.Fatalf("BlockRoute = %+v, %v; want blocked", out, err)
	}
	vs = append(vs, victim{name: "blocked for route", id: id, prev: sdk.StateWaiting})

	for _, v := range vs {
		res, err := e.b.CancelExecution(e.ctx, sdk.CancelExecutionArgs{ExecutionID: v.id, Reason: "sdktest " + v.name, RequestedBy: "sdktest"})
		if err != nil {
			e.t.Fatalf("CancelExecution (%s) = %v", v.name, err)
		}
		if res.PreviousState != v.prev {
			e.t.Fatalf("CancelExecution (%s): PreviousState %q, want %q", v.name, res.PreviousState, v.prev)
		}
		e.requireState(v.id, sdk.StateCancelled, "cancelled "+v.name)
		e.requireScannable(lane, v.id, false, "cancelled "+v.name)
		s := e.describe(v.id)
		if s.CancellationReason != "sdktest "+v.name || s.CompletedAt.IsZero() {
			e.t.Fatalf("DescribeExecution (cancelled %s): CancellationReason %q CompletedAt %v", v.name, s.CancellationReason, s.CompletedAt)
		}
		if v.h != nil {
			for _, lc := range e.leaseCalls() {
				e.rejects(lc.name+" after the operator cancelled ("+v.name+")", func() error { return lc.call(*v.h) }, sdk.ErrExecutionNotActive)
			}
		}
		// A second cancel finds it terminal and changes nothing.
		err = e.rejects("CancelExecution of a cancelled execution ("+v.name+")", func() error {
			_, err := e.b.CancelExecution(e.ctx, sdk.CancelExecutionArgs{ExecutionID: v.id, Reason: "again"})
			return err
		}, sdk.ErrExecutionTerminal)
		e.requireTerminalDetail(err, sdk.StateCancelled)
	}

	// The cancelled delayed execution is never promoted.
	e.sleepUntil(delayedUntil.Add(50 * time.Millisecond))
	for p := range e.b.Partitions() {
		if n := e.promote(lane, p); n != 0 {
			e.t.Fatalf("PromoteDelayed(%q, %d) after its only delayed execution was cancelled = %d, want 0", lane, p, n)
		}
	}
	e.requireState(vs[1].id, sdk.StateCancelled, "delay passed after cancel")

	// Completed executions cannot be cancelled.
	id = e.create(simple(lane))
	c = e.claim(id, lane, leaseTTL)
	e.must("Complete", e.b.Complete(e.ctx, c.Handle, []byte("r")))
	err := e.rejects("CancelExecution of a completed execution", func() error {
		_, err := e.b.CancelExecution(e.ctx, sdk.CancelExecutionArgs{ExecutionID: id})
		return err
	}, sdk.ErrExecutionTerminal)
	e.requireTerminalDetail(err, sdk.StateCompleted)
	e.requireState(id, sdk.StateCompleted, "cancel of a completed execution")

	// The lease holder cancels.
	id = e.create(simple(lane))
	c = e.claim(id, lane, leaseTTL)
	e.must("Cancel by the lease holder", e.b.Cancel(e.ctx, c.Handle, "holder gave up"))
	e.requireState(id, sdk.StateCancelled, "holder's Cancel")
	if s := e.describe(id); s.CancellationReason != "holder gave up" {
		e.t.Fatalf("DescribeExecution after the holder's Cancel: CancellationReason %q", s.CancellationReason)
	}
	err = e.rejects("Complete after the holder's Cancel", func() error {
		return e.b.Complete(e.ctx, c.Handle, []byte("late"))
	}, sdk.ErrExecutionNotActive)
	e.requireNotActive(err, sdk.StateCancelled, c.Handle)
}
