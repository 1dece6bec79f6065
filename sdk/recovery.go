package sdk

import (
	"context"
	"time"
)

// IssueReclaimGrantArgs asks for the right to take over an execution whose
// lease expired or was revoked.
type IssueReclaimGrantArgs struct {
	ExecutionID      ExecutionID
	WorkerID         WorkerID
	WorkerInstanceID WorkerInstanceID
	Capabilities     []string
	// GrantTTL default 5s.
	GrantTTL time.Duration
}

// ReclaimExecutionArgs consumes a reclaim grant.
type ReclaimExecutionArgs struct {
	ExecutionID      ExecutionID
	Lane             LaneID
	WorkerID         WorkerID
	WorkerInstanceID WorkerInstanceID
	// LeaseTTL default 30s.
	LeaseTTL time.Duration
	// MaxReclaims caps interruptions (lost leases, shutdowns) per execution;
	// at the cap the execution fails terminally. Default 100.
	MaxReclaims int
}

// ReclaimOutcome is what a reclaim did: a new attempt under the caller's
// lease, or terminal failure at the cap.
type ReclaimOutcome struct {
	Task           *ClaimedTask // nil when TerminalFailed
	TerminalFailed bool
}

// ReplayExecutionArgs runs a terminal execution again.
type ReplayExecutionArgs struct {
	ExecutionID ExecutionID
	// MaxReplays default 10.
	MaxReplays int
}

// ReplayExecutionResult reports the state the execution left.
type ReplayExecutionResult struct{ PreviousState PublicState }

// ResumeToken names an execution whose interrupted attempt a worker wants to
// continue (after a delay or, later, a satisfied suspension).
type ResumeToken struct {
	ExecutionID      ExecutionID
	Lane             LaneID
	WorkerID         WorkerID
	WorkerInstanceID WorkerInstanceID
	Capabilities     []string
	LeaseTTL         time.Duration
}

// ExecutionInfo is the full record of an execution: the snapshot plus every
// raw field the backend stores, for operators and debugging.
type ExecutionInfo struct {
	Snapshot ExecutionSnapshot
	Fields   map[string]string
	// Attempts is what each attempt did, oldest first: the records of ended
	// attempts (the last AttemptHistoryMax of them), then the current or
	// last attempt as it stands when it has no record yet. The snapshot's
	// progress and failure fields are the current attempt's alone: a new
	// attempt starts them clean.
	Attempts []AttemptRecord
}

// AttemptHistoryMax is how many ended attempts' records an execution keeps;
// older ones are dropped.
const AttemptHistoryMax = 16

// Attempt outcomes (AttemptRecord.Outcome) besides the terminal states.
const (
	// OutcomeRetried: the attempt failed and a retry followed.
	OutcomeRetried = "retried"
	// OutcomeInterrupted: the attempt lost its lease or its worker shut
	// down; the execution was requeued without using a retry.
	OutcomeInterrupted = "interrupted"
)

// AttemptRecord is what one attempt of an execution did.
type AttemptRecord struct {
	Index            AttemptIndex
	Type             AttemptType
	AttemptID        string
	WorkerID         WorkerID
	WorkerInstanceID WorkerInstanceID
	LeaseEpoch       uint64
	// EndedAt is when the attempt ended; zero while it runs (or waits to
	// resume after a delay).
	EndedAt time.Time
	// Outcome is how it ended: OutcomeRetried, OutcomeInterrupted, or the
	// terminal state it left the execution in ("completed", "failed",
	// "cancelled", "expired"); "" while it runs.
	Outcome string
	// ProgressPercent and ProgressMessage are its last progress report.
	ProgressPercent int
	ProgressMessage string
	// FailureReason and FailureCategory say why it ended, when it failed
	// or was interrupted (a cancelled attempt's reason is the cancellation's).
	FailureReason   string
	FailureCategory string
}

// Recovery covers taking over lost work and running ended work again.
type Recovery interface {
	IssueReclaimGrant(ctx context.Context, args IssueReclaimGrantArgs) (ClaimGrant, error)
	ReclaimExecution(ctx context.Context, args ReclaimExecutionArgs) (ReclaimOutcome, error)
	ReplayExecution(ctx context.Context, args ReplayExecutionArgs) (ReplayExecutionResult, error)
	// ClaimFromResumeGrant grants and claims the interrupted attempt in one
	// go; (nil, nil) when the execution is not resumable now.
	ClaimFromResumeGrant(ctx context.Context, token ResumeToken) (*ClaimedTask, error)
	// ReadExecutionInfo gives ErrExecutionNotFound for an unknown id.
	ReadExecutionInfo(ctx context.Context, id ExecutionID) (*ExecutionInfo, error)
}
