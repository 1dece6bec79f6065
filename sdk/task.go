package sdk

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Codes of errors the worker makes itself (not sent by a backend).
const (
	// CodeTaskFinished: a terminal call already landed for this task.
	CodeTaskFinished = "task_finished"
	// CodeWorkerShutdown: the worker stopped before the task finished.
	CodeWorkerShutdown = "worker_shutdown"
)

var (
	// ErrTaskFinished is returned by a Task method called after a terminal call
	// (Complete, Fail, Cancel, Delay) landed, or after the worker took the task
	// over at shutdown.
	ErrTaskFinished = &Error{Kind: KindState, Code: CodeTaskFinished}
	// ErrWorkerShutdown is the context.Cause of a task cancelled because the
	// worker stopped before the task finished.
	ErrWorkerShutdown = &Error{Kind: KindState, Code: CodeWorkerShutdown}
)

// A terminal call that meets a transport error is retried, with exponential
// backoff from terminalRetryBase capped at terminalRetryMax, for as long as
// the lease it writes for can still be saved.
const (
	terminalRetryBase = 10 * time.Millisecond
	terminalRetryMax  = 250 * time.Millisecond
)

// terminalCall is one terminal method's call. One that did not land stays
// pending on the task, so the worker finishes it after the handler returns.
type terminalCall struct {
	op       string
	replayOK func(PublicState) bool // the state a landed call leaves, for replay recognition
	call     func(context.Context) error
	count    *atomic.Uint64 // counts it when it lands, unless landed is set
	landed   func()
	// outcome is what the call did once it landed (WorkerObserver); ""
	// when landed sets it, as fail's depends on the answer.
	outcome TaskOutcome
	// unsure is set once a try met a transport error: that try may have
	// landed, so any later try (the worker's settle included) recognises
	// its replay. Guarded by the task's termMu.
	unsure bool
	// keptLease, when set and true after the call succeeded, means the
	// call left the lease held (a suspend already satisfied): the task
	// goes on, unfinished.
	keptLease func() bool
}

func completedState(s PublicState) bool { return s == StateCompleted }
func cancelledState(s PublicState) bool { return s == StateCancelled }
func parkedState(s PublicState) bool    { return s == StateDelayed || s == StateWaiting }

// Task is one claimed execution, handed to a Handler. Its fields describe the
// execution; its methods write on behalf of the lease. A Task is safe for
// concurrent use, and terminal methods are serialised: the first that lands
// wins, later ones return ErrTaskFinished.
type Task struct {
	ID           ExecutionID
	Kind         string
	Payload      []byte
	Tags         map[string]string
	Lane         LaneID
	AttemptIndex AttemptIndex
	AttemptType  AttemptType
	// Handle is the lease; it can be persisted (MarshalBinary) and used with
	// the backend directly. The Task's methods use their own copy.
	Handle Handle
	// ClaimedAt is when the worker received the lease (local clock).
	ClaimedAt time.Time
	// HandedOff reports a lease handed to one of the worker's claim offers
	// by the create (or resume) that made the work, with no claim call.
	HandedOff bool
	// TraceParent is the create's trace carrier (CreateExecutionArgs), ""
	// when it gave none.
	TraceParent string

	h      Handle
	w      *Worker
	ctx    context.Context
	cancel context.CancelCauseFunc
	lease  *leaseEntry
	// renewal is the renewer's entry for the lease (lease points to it
	// while renewals run).
	renewal leaseEntry
	// slot is the task's worker slot; Complete may hand it to a claim offer.
	slot      taskSlot
	unrenewed sync.Once // stopRenewing
	// emit sends the frames Emit queues (task_streams.go), made once.
	emitOnce sync.Once
	emit     atomic.Pointer[emitter]

	termMu      sync.Mutex // serialises terminal calls
	mu          sync.Mutex
	inflight    bool  // a terminal call is in flight: renewal outcomes are not authoritative
	pendingLoss error // a loss the renewer reported while a terminal call was in flight
	returned    bool  // the handler returned; its goroutine settles the attempt
	finished    bool  // a terminal call landed: the task writes nothing more
	lost        bool  // the lease is gone; ctx is cancelled
	aborted     bool  // shutdown took the task over
	// outcome is what the terminal call that landed did ("" before one).
	outcome TaskOutcome
	// satisfied counts Suspend calls that came back AlreadySatisfied (the
	// lease kept): the next one's default dedup key differs.
	satisfied int
	// pending is the handler's last terminal call when it did not land (a
	// transport error outlasted the lease, or its ctx ended).
	pending *terminalCall
}

// Context is cancelled the moment the lease is lost (a renewal is fenced off:
// revoked, expired, stale, or the execution is no longer active, e.g.
// cancelled), when the worker stops hard, and after the handler returns.
// context.Cause tells which (a typed *Error such as ErrLeaseRevoked, or
// ErrWorkerShutdown).
func (t *Task) Context() context.Context { return t.ctx }

// Complete ends the execution successfully and stores result. A transport
// error is retried while the lease can still be saved (renewals go on
// meanwhile), so a server restart or failover does not lose the outcome;
// should it still return one (ctx ended first, or the lease ran out), the
// worker finishes the call after the handler returns (see Handler).
func (t *Task) Complete(ctx context.Context, result []byte) error {
	return t.terminal(ctx, &terminalCall{op: "complete", replayOK: completedState, count: &t.w.stats.completed, outcome: TaskCompleted,
		call: func(ctx context.Context) error { return t.w.completeCall(ctx, t, result) }})
}

// Fail ends the attempt with reason and category; the execution's retry
// policy decides between a retry and terminal failure. A reason over
// MaxReasonBytes is cut to it. Transport errors are retried as Complete's
// are.
func (t *Task) Fail(ctx context.Context, reason, category string) (FailOutcome, error) {
	reason = truncateReason(reason)
	var out FailOutcome
	err := t.terminal(ctx, &terminalCall{op: "fail",
		replayOK: func(s PublicState) bool {
			out = FailOutcome{RetryScheduled: s == StateDelayed || s == StateWaiting}
			return s == StateFailed || out.RetryScheduled
		},
		call: func(ctx context.Context) error {
			o, err := t.w.backend.Fail(ctx, t.h, reason, category)
			if err == nil {
				out = o
			}
			return err
		},
		landed: func() {
			if out.RetryScheduled {
				t.w.stats.retried.Add(1)
				t.setOutcome(TaskRetried)
				t.w.delayedWork()
			} else {
				t.w.stats.failed.Add(1)
				t.setOutcome(TaskFailed)
			}
		}})
	return out, err
}

// Cancel ends the execution as cancelled. A reason over MaxReasonBytes is
// cut to it.
func (t *Task) Cancel(ctx context.Context, reason string) error {
	reason = truncateReason(reason)
	return t.terminal(ctx, &terminalCall{op: "cancel", replayOK: cancelledState, count: &t.w.stats.cancelled, outcome: TaskCancelled,
		call: func(ctx context.Context) error { return t.w.backend.Cancel(ctx, t.h, reason) }})
}

// Delay releases the lease and parks the execution until until; the next
// claim continues the same attempt.
func (t *Task) Delay(ctx context.Context, until time.Time) error {
	err := t.terminal(ctx, t.delayCall("delay", TaskDelayed, until, &t.w.stats.delayed))
	if err == nil && time.Until(until) > 0 {
		t.w.delayedWork()
	}
	return err
}

// giveBack hands the attempt back to the eligible set unchanged (a Delay to
// now: no retry is consumed and no failure recorded). The worker does it
// when the handler's outcome could not be written.
func (t *Task) giveBack(ctx context.Context) error {
	return t.terminal(ctx, t.delayCall("give_back", TaskGivenBack, time.Now(), &t.w.stats.givenBack))
}

func (t *Task) delayCall(op string, outcome TaskOutcome, until time.Time, count *atomic.Uint64) *terminalCall {
	return &terminalCall{op: op, replayOK: parkedState, count: count, outcome: outcome,
		call: func(ctx context.Context) error { return t.w.backend.Delay(ctx, t.h, until) }}
}

// Progress records percent (0..100) and a message on the execution. It is
// not terminal; a fencing error means the lease is lost and cancels Context.
func (t *Task) Progress(ctx context.Context, percent int, message string) error {
	t.mu.Lock()
	done := t.finished
	t.mu.Unlock()
	if done {
		return &Error{Kind: KindState, Code: CodeTaskFinished, Op: "progress"}
	}
	err := t.w.backend.Progress(ctx, t.h, percent, message)
	if err != nil && isFencing(err) {
		t.leaseLost(err)
	}
	return err
}

// terminal runs a terminal call: serialised, retried on transport errors
// while the lease can be saved, and with the replay of its own earlier call
// recognised as success. Every terminal method goes through it; the task
// is finished when the call landed or the lease turned out gone, and
// renewals stop then. A call that did not land stays pending (settle).
func (t *Task) terminal(ctx context.Context, c *terminalCall) error {
	t.flushFrames(ctx)
	t.termMu.Lock()
	defer t.termMu.Unlock()
	t.mu.Lock()
	if t.finished {
		t.mu.Unlock()
		return &Error{Kind: KindState, Code: CodeTaskFinished, Op: c.op}
	}
	if p := t.pending; p != nil && p.unsure && p.op == c.op {
		c.unsure = true // the handler tries again what may have landed
	}
	t.inflight = true
	t.pending = c
	t.mu.Unlock()

	err := t.callWhileSaved(ctx, c)
	if err == nil && c.keptLease != nil && c.keptLease() {
		t.mu.Lock()
		t.inflight, t.pending = false, nil
		t.mu.Unlock()
		return nil
	}
	fenced := err != nil && isFencing(err)
	if t.recordOutcome(err, fenced, c.outcome) {
		t.stopRenewing()
		switch {
		case err != nil:
		case c.landed != nil:
			c.landed()
		default:
			c.count.Add(1)
		}
	}
	if err != nil && !fenced {
		t.w.reportError(err)
	}
	return err
}

// callWhileSaved makes the call, retrying transport errors with backoff
// while ctx lasts and the lease has not run out as far as the renewer
// knows (renewals keep extending it meanwhile). After a transport error the
// call may have landed: a later try (in this loop or when the worker
// settles the pending call) that finds the execution in the outcome asked
// for, under this lease's epoch and attempt, is that call's replay and
// counts as success.
func (t *Task) callWhileSaved(ctx context.Context, c *terminalCall) error {
	for attempt := 0; ; attempt++ {
		err := c.call(ctx)
		if err == nil {
			return nil
		}
		if c.unsure && isReplayOf(err, t.h, c.replayOK) {
			return nil
		}
		if isTransient(err) || ctx.Err() != nil {
			c.unsure = true // sent, perhaps, with its answer lost
		}
		if !isTransient(err) || ctx.Err() != nil {
			return err
		}
		left := time.Until(t.w.renewer.expiry(t.lease))
		if left <= 0 || !sleepCtx(ctx, min(backoffDelay(attempt, terminalRetryBase, terminalRetryMax), left)) {
			return err
		}
	}
}

// recordOutcome records a terminal call's result and reports whether it
// landed (or found the lease gone). Any other error (transport after the
// retries, validation) leaves the lease held: the handler may try again,
// or the worker settles the attempt when the handler returns. A loss the
// renewer reported while the call was in flight stands when the call did
// not land.
func (t *Task) recordOutcome(err error, fenced bool, outcome TaskOutcome) (landed bool) {
	landed = err == nil || fenced
	t.mu.Lock()
	t.inflight = false
	if landed {
		t.finished = true
		t.pending = nil
		if err == nil {
			t.outcome = outcome
		}
	}
	cause := err
	if !landed && t.pendingLoss != nil {
		cause = t.pendingLoss
	}
	t.pendingLoss = nil
	lostNow := (fenced || (!landed && cause != err)) && !t.lost
	if lostNow {
		t.lost = true
	}
	t.mu.Unlock()
	if lostNow {
		t.w.stats.lostLeases.Add(1)
		if o := t.w.obs; o != nil {
			o.LeaseLost(t, cause)
		}
		t.cancel(cause)
	}
	return landed
}

func (t *Task) setOutcome(o TaskOutcome) {
	t.mu.Lock()
	t.outcome = o
	t.mu.Unlock()
}

// endOutcome is how the task ended, read once it did (WorkerObserver).
func (t *Task) endOutcome() TaskOutcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.outcome != "":
		return t.outcome
	case t.lost:
		return TaskLeaseLost
	case t.aborted:
		return TaskAborted
	}
	return TaskUnsettled
}

// stopRenewing takes the task's lease out of the renewer, once: when a
// terminal call lands, or at the task's end (endTask) whatever ended it.
func (t *Task) stopRenewing() {
	t.unrenewed.Do(func() { t.w.renewer.remove(t.lease) })
}

// leaseLost is called by the renewer (or Progress) with a fencing error. It
// cancels the task's context and reports whether the loss is news. While a
// terminal call is in flight its own answer is authoritative (the renewal may
// have raced with a Complete that landed), so the renewal outcome is ignored.
func (t *Task) leaseLost(cause error) bool {
	t.mu.Lock()
	if t.inflight && !t.finished && !t.lost {
		t.pendingLoss = cause // decided when the terminal call returns
		t.mu.Unlock()
		return false
	}
	if t.inflight || t.finished || t.lost {
		t.mu.Unlock()
		return false
	}
	t.lost = true
	t.mu.Unlock()
	t.w.stats.lostLeases.Add(1)
	if o := t.w.obs; o != nil {
		o.LeaseLost(t, cause)
	}
	t.cancel(cause)
	return true
}

// abort takes an unfinished task over at hard shutdown: it cancels the
// task's context and reports whether the caller should fail the attempt.
func (t *Task) abort() bool {
	t.mu.Lock()
	if t.finished || t.lost || t.aborted || t.returned {
		// A handler that already returned is settled by its own goroutine:
		// taking it over would throw its outcome away.
		t.mu.Unlock()
		return false
	}
	t.aborted = true
	t.mu.Unlock()
	t.cancel(ErrWorkerShutdown)
	return true
}

// settleState reports whether the worker must end the attempt itself after
// the handler returned (no terminal call landed, the lease is held, and
// shutdown did not take the task over), and the handler's terminal call
// that did not land, if any.
func (t *Task) settleState() (settle bool, pending *terminalCall) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.returned = true
	if t.lost || t.aborted || t.finished {
		return false, nil
	}
	return true, t.pending
}

func isReplayOf(err error, h Handle, ok func(PublicState) bool) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	d, has := e.NotActive()
	// The same epoch and attempt are not enough: a scanner may have ended the
	// attempt meanwhile (a requeue looks like a landed Delay). When the
	// backend says who ended it, it must be this lease.
	return has && d.Epoch == h.Epoch && d.AttemptID == h.AttemptID && ok(d.State) &&
		(d.EndedBy == "" || d.EndedBy == h.LeaseID)
}

// isTransient reports an error worth retrying the same call for: transport
// and timeout errors, and errors that are not typed at all (a backend that
// failed to wrap a network error), but not context cancellation.
func isTransient(err error) bool {
	switch KindOf(err) {
	case KindTransport, KindTimeout:
		return true
	case 0:
		return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	}
	return false
}

// isFencing reports an error that means the lease is no longer ours.
func isFencing(err error) bool {
	switch CodeOf(err) {
	case CodeStaleLease, CodeLeaseExpired, CodeLeaseRevoked, CodeExecutionNotActive,
		CodeExecutionNotFound, CodeNoActiveLease, CodeLeaseConflict, CodeExecutionTerminal:
		return true
	}
	return false
}

// backoffDelay is base·2^attempt capped at max.
func backoffDelay(attempt int, base, max time.Duration) time.Duration {
	d := base
	for i := 0; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// sleepCtx sleeps for d or until ctx ends; it reports whether it slept fully.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
