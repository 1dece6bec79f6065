package sdk

import (
	"context"
	"time"
)

// WorkerObserver watches a worker's tasks and leases, for metrics and
// traces (package github.com/flowfabric/flowfabric-go/otel implements it
// with OpenTelemetry). The worker calls it from its own goroutines, often
// several at once: methods must be safe for concurrent use, quick, and
// must not block. Set it in WorkerConfig.Observer; a nil observer (the
// default) costs the worker nothing.
type WorkerObserver interface {
	// TaskStarted is called on the task's goroutine just before its handler
	// runs; the context it returns (derived from ctx, e.g. carrying a span)
	// is the one handed to the handler.
	TaskStarted(ctx context.Context, t *Task) context.Context
	// TaskEnded is called once per task that started, after the handler
	// returned and the worker settled the attempt; ctx is what TaskStarted
	// returned.
	TaskEnded(ctx context.Context, t *Task, end TaskEnd)
	// LeaseRenewing is called as a renewal of t's lease goes out, lag after
	// it was due.
	LeaseRenewing(t *Task, lag time.Duration)
	// LeaseLost is called when the worker finds t's lease gone (fenced off
	// or run out), with the cause.
	LeaseLost(t *Task, cause error)
	// WorkerError is called with the errors the worker handles itself (as
	// WorkerConfig.OnError is).
	WorkerError(err error)
}

// TaskOutcome is how a task's attempt ended, as far as the worker knows.
type TaskOutcome string

// Task outcomes.
const (
	TaskCompleted TaskOutcome = "completed"
	TaskFailed    TaskOutcome = "failed"  // terminally
	TaskRetried   TaskOutcome = "retried" // failed, retry scheduled
	// TaskCancelled: the handler's Task.Cancel landed. An execution
	// cancelled by someone else while its handler runs ends as
	// TaskLeaseLost.
	TaskCancelled TaskOutcome = "cancelled"
	TaskDelayed   TaskOutcome = "delayed" // Task.Delay landed
	// TaskSuspended: the attempt waits for a signal or for its children.
	TaskSuspended TaskOutcome = "suspended"
	// TaskGivenBack: handed back unchanged, no retry consumed (e.g. the
	// handler returned a transport or timeout error).
	TaskGivenBack TaskOutcome = "given_back"
	// TaskLeaseLost: the lease was lost before the handler's outcome
	// landed: revoked, run out, or the execution ended by someone else
	// (e.g. an operator's cancel); WorkerObserver.LeaseLost's cause says
	// which.
	TaskLeaseLost TaskOutcome = "lease_lost"
	// TaskAborted: taken over at hard shutdown.
	TaskAborted TaskOutcome = "aborted"
	// TaskUnsettled: no outcome could be written; the lease runs out
	// and the reclaim scanner requeues the attempt.
	TaskUnsettled TaskOutcome = "unsettled"
)

// TaskEnd describes a finished task to WorkerObserver.TaskEnded.
type TaskEnd struct {
	Outcome TaskOutcome
	// HandlerDuration is how long the handler ran.
	HandlerDuration time.Duration
	// HandlerErr is the error the handler returned (nil when it returned
	// none or panicked).
	HandlerErr error
	// Panicked reports a handler that panicked.
	Panicked bool
}

// ClientObserver watches a Client's submits, for metrics and traces. Its
// methods are called on the submitting goroutine, must be safe for
// concurrent use and must not block. Set it with NewClientWithOptions; a
// nil observer (the default) costs nothing.
type ClientObserver interface {
	// SubmitStarted is called before a create goes out. It may set the
	// create's trace carrier (args.TraceParent) and returns the context
	// the submit carries on with (e.g. holding its span).
	SubmitStarted(ctx context.Context, args *CreateExecutionArgs) context.Context
	// SubmitEnded is called once per SubmitStarted with the create's
	// answer and how long the submit took.
	SubmitEnded(ctx context.Context, args *CreateExecutionArgs, res CreateExecutionResult, err error, elapsed time.Duration)
}

// ClientOptions configures a Client. The zero value is NewClient's.
type ClientOptions struct {
	// Observer watches the client's submits (Submit, SubmitBatch, and
	// SubmitFlow's members). Default nil: none.
	Observer ClientObserver
}
