package sdk

import (
	"context"
	"strconv"
	"time"
)

// The Task's durable waiting (needs a backend with RoleWaiting; without
// one the calls return an Unavailable error).

func (t *Task) waiter(op string) (Waiter, error) {
	if w := t.w.roles.Waiter; w != nil {
		return w, nil
	}
	return nil, Unavailable(op)
}

func suspendedState(s PublicState) bool { return s == StateSuspended }

// Suspend suspends the task's attempt until signals meet args.Condition
// (default: any one signal on one new waitpoint) and returns the
// waitpoints' tokens to hand out (Client.DeliverSignal takes them). The
// lease is released: the handler should return once it has handed the
// tokens out (its return value is then ignored), and the execution resumes
// later, on any worker, as an AttemptResumed task whose Signals says what
// resumed it.
//
// When the pending waitpoints (CreateWaitpoint) buffered signals that meet
// the condition already, the outcome is AlreadySatisfied: the lease is
// kept and the handler goes on (Signals has them).
//
// Like the other terminal calls, a transport error is retried while the
// lease can be saved; the retry is recognised by the suspend's dedup key
// (args.DedupKey; by default one per call: per lease, and a new one after
// each AlreadySatisfied outcome, so the handler can suspend again), so it
// returns the first call's tokens.
func (t *Task) Suspend(ctx context.Context, args SuspendArgs) (SuspendOutcome, error) {
	w, err := t.waiter("suspend")
	if err != nil {
		return SuspendOutcome{}, err
	}
	if args.DedupKey == "" {
		t.mu.Lock()
		n := t.satisfied
		t.mu.Unlock()
		args.DedupKey = "lease-" + t.h.LeaseID
		if n > 0 {
			args.DedupKey += "-" + strconv.Itoa(n)
		}
	}
	var out SuspendOutcome
	err = t.terminal(ctx, &terminalCall{op: "suspend", replayOK: suspendedState, count: &t.w.stats.suspended, outcome: TaskSuspended,
		call: func(ctx context.Context) error {
			o, err := w.Suspend(ctx, t.h, args)
			if err == nil {
				out = o
			}
			return err
		},
		keptLease: func() bool { return out.AlreadySatisfied }})
	if err == nil && out.AlreadySatisfied {
		t.mu.Lock()
		t.satisfied++ // the next suspend is another call: another key
		t.mu.Unlock()
	}
	return out, err
}

// CreateWaitpoint creates a pending waitpoint for this attempt: its token
// can be handed out before the attempt suspends, and signals delivered to
// it meanwhile are kept and count when Suspend names it in
// SuspendArgs.Pending. It expires unused after ttl (0:
// DefaultPendingWaitpointTTL). Not terminal; a fencing error means the
// lease is lost and cancels Context.
func (t *Task) CreateWaitpoint(ctx context.Context, label string, ttl time.Duration) (PendingWaitpoint, error) {
	w, err := t.waiter("create_waitpoint")
	if err != nil {
		return PendingWaitpoint{}, err
	}
	t.mu.Lock()
	done := t.finished
	t.mu.Unlock()
	if done {
		return PendingWaitpoint{}, &Error{Kind: KindState, Code: CodeTaskFinished, Op: "create_waitpoint"}
	}
	pw, err := w.CreateWaitpoint(ctx, t.h, label, ttl)
	if err != nil && isFencing(err) {
		t.leaseLost(err)
	}
	return pw, err
}

// Signals returns the execution's last suspension and the signals that
// counted towards it: for a resumed task (AttemptType AttemptResumed),
// what resumed it; nil when the execution never suspended. Read-only.
func (t *Task) Signals(ctx context.Context) (*Suspension, error) {
	w, err := t.waiter("observe_signals")
	if err != nil {
		return nil, err
	}
	return w.ObserveSignals(ctx, t.ID)
}
