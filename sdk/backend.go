package sdk

import (
	"context"
	"time"
)

// Lifecycle covers connection-level calls.
type Lifecycle interface {
	// Ping checks the backend answers.
	Ping(ctx context.Context) error
	// Prepare does one-time boot work (Valkey: load the Functions library where
	// its version differs). Idempotent.
	Prepare(ctx context.Context) (PrepareOutcome, error)
	// BackendLabel names the backend family for logs and metrics ("valkey").
	BackendLabel() string
	// Features names the backend and the optional roles it has enabled
	// (see RolesOf).
	Features() Features
	// Partitions is the deployment's fixed partition count.
	Partitions() int
	// ShutdownPrepare lets in-flight backend work drain for up to grace.
	ShutdownPrepare(ctx context.Context, grace time.Duration) error
}

// Submitter creates executions.
type Submitter interface {
	CreateExecution(ctx context.Context, args CreateExecutionArgs) (CreateExecutionResult, error)
}

// DirectClaimer is the scheduler bypass, as three calls a worker composes:
// scan a lane's eligible head on a partition, issue a grant, claim with it.
type DirectClaimer interface {
	// ScanEligibleExecutions returns up to Limit eligible ids, highest priority
	// first, then oldest first. Read-only.
	ScanEligibleExecutions(ctx context.Context, args ScanEligibleArgs) ([]ExecutionID, error)
	// IssueClaimGrant checks eligibility and capabilities and writes a grant.
	// Errors: capability_mismatch, grant_already_exists, execution_not_eligible.
	IssueClaimGrant(ctx context.Context, args IssueClaimGrantArgs) (ClaimGrant, error)
	// ClaimExecution consumes the caller's grant and starts a new attempt under
	// a fresh lease (epoch+1). use_claim_resumed_execution when the execution
	// has an interrupted attempt to continue.
	ClaimExecution(ctx context.Context, args ClaimExecutionArgs) (ClaimedExecution, error)
	// ClaimResumedExecution consumes the grant and continues the interrupted
	// attempt under a fresh lease.
	ClaimResumedExecution(ctx context.Context, args ClaimExecutionArgs) (ClaimedExecution, error)
	// BlockRoute moves an execution no worker can run out of the eligible set.
	BlockRoute(ctx context.Context, args BlockRouteArgs) (BlockRouteOutcome, error)
}

// Claimer is a one-call fresh-work claim. It returns (nil, nil) when no work
// is available.
type Claimer interface {
	Claim(ctx context.Context, args ClaimArgs) (*ClaimedExecution, error)
}

// LeaseHolder covers the calls made on behalf of a held lease. Each is fenced:
// a stale, expired or revoked handle gets a typed error and changes nothing.
type LeaseHolder interface {
	Renew(ctx context.Context, h Handle) (LeaseRenewal, error)
	// Progress records percent (0..100) and a message on the execution.
	Progress(ctx context.Context, h Handle, percent int, message string) error
	// Complete ends the execution successfully and stores result.
	Complete(ctx context.Context, h Handle, result []byte) error
	// Fail ends the attempt; the execution's retry policy decides between a
	// retry (delayed until the backoff passes) and terminal failure.
	Fail(ctx context.Context, h Handle, reason, category string) (FailOutcome, error)
	// Cancel ends the execution as cancelled, by the lease holder.
	Cancel(ctx context.Context, h Handle, reason string) error
	// Delay releases the lease and parks the execution until until; the next
	// claim resumes the same attempt.
	Delay(ctx context.Context, h Handle, until time.Time) error
}

// Operator covers administrative writes.
type Operator interface {
	// CancelExecution cancels from any non-terminal state. An execution
	// that already ended gives execution_terminal (ErrExecutionTerminal)
	// with its state as the detail.
	CancelExecution(ctx context.Context, args CancelExecutionArgs) (CancelExecutionResult, error)
	// ChangePriority re-scores a waiting execution.
	ChangePriority(ctx context.Context, args ChangePriorityArgs) (ChangePriorityResult, error)
	// RevokeLease takes the lease from its holder; the execution stays active
	// until reclaimed.
	RevokeLease(ctx context.Context, args RevokeLeaseArgs) (RevokeLeaseResult, error)
	// PromoteDelayed moves due delayed executions back to eligible and returns
	// how many moved.
	PromoteDelayed(ctx context.Context, args PromoteDelayedArgs) (int, error)
}

// Reader covers read-only calls. Every call that looks up an execution by
// id gives ErrExecutionNotFound (kind not_found) for an unknown one.
type Reader interface {
	DescribeExecution(ctx context.Context, id ExecutionID) (*ExecutionSnapshot, error)
	// ReadExecutionContext returns payload, kind, lane and tags (immutable).
	ReadExecutionContext(ctx context.Context, id ExecutionID) (ExecutionContext, error)
	ReadExecutionState(ctx context.Context, id ExecutionID) (PublicState, error)
	// GetExecutionResult returns nil, nil for a known execution that has no
	// result (not completed, or completed without one).
	GetExecutionResult(ctx context.Context, id ExecutionID) ([]byte, error)
	ReadCurrentAttemptIndex(ctx context.Context, id ExecutionID) (AttemptIndex, error)
	ReadTotalAttemptCount(ctx context.Context, id ExecutionID) (int, error)
	// ListExecutions pages a partition's executions in id order, after cursor.
	ListExecutions(ctx context.Context, partition int, cursor ExecutionID, limit int) (ListExecutionsPage, error)
	// ListLanes pages the lane registry in name order, after cursor.
	ListLanes(ctx context.Context, cursor LaneID, limit int) (ListLanesPage, error)
}

// EngineBackend is the whole contract a worker and a client need.
type EngineBackend interface {
	Lifecycle
	Submitter
	DirectClaimer
	Claimer
	LeaseHolder
	Operator
	Reader
	Recovery
}
