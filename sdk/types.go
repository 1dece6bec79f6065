package sdk

import (
	"slices"
	"sort"
	"strings"
	"time"
)

// PublicState is the state users see.
type PublicState string

// Public states.
const (
	StateWaiting         PublicState = "waiting"          // eligible, or blocked for routing
	StateDelayed         PublicState = "delayed"          // not before a time (delay, retry backoff)
	StateRateLimited     PublicState = "rate_limited"     // blocked by a budget or quota
	StateWaitingChildren PublicState = "waiting_children" // blocked on flow dependencies
	StateActive          PublicState = "active"           // a worker holds (or held) the lease
	StateSuspended       PublicState = "suspended"        // waiting for a signal
	StateCompleted       PublicState = "completed"
	StateFailed          PublicState = "failed"
	StateCancelled       PublicState = "cancelled"
	StateExpired         PublicState = "expired"
	StateSkipped         PublicState = "skipped"
)

// Terminal reports whether no further transition can happen (but replay).
func (s PublicState) Terminal() bool {
	switch s {
	case StateCompleted, StateFailed, StateCancelled, StateExpired, StateSkipped:
		return true
	}
	return false
}

// Priority bounds: higher runs first; equal priorities run in creation order.
const (
	MinPriority = 0
	MaxPriority = 9000
)

// AttemptType says why an attempt exists.
type AttemptType string

// Attempt types.
const (
	AttemptInitial AttemptType = "initial"
	AttemptRetry   AttemptType = "retry"
	AttemptReclaim AttemptType = "reclaim"
	AttemptReplay  AttemptType = "replay"
	AttemptResumed AttemptType = "resumed" // the interrupted attempt continues (after delay)
)

// BackoffKind selects how retry delays grow.
type BackoffKind string

// Backoff kinds.
const (
	BackoffExponential BackoffKind = "exponential"
	BackoffFixed       BackoffKind = "fixed"
)

// Backoff describes the delay before retry n (n counts from 0).
type Backoff struct {
	// Kind defaults to BackoffExponential.
	Kind BackoffKind
	// Initial is the first delay (fixed: every delay). Default 1s; 0 with
	// ZeroDelay retries at once.
	Initial time.Duration
	// Max caps exponential growth. Default 60s.
	Max time.Duration
	// Multiplier of exponential growth. Default 2.
	Multiplier float64
	// Jitter in [0,1]: each delay is reduced by a random fraction up to Jitter.
	// Default 0 (no jitter).
	Jitter float64
	// ZeroDelay makes Initial=0 mean "retry at once" instead of the default.
	ZeroDelay bool
}

// RetryPolicy is carried by the execution and applied by fail.
type RetryPolicy struct {
	// MaxRetries is how many retries follow the first attempt. Default 0.
	MaxRetries int
	Backoff    Backoff
	// RetryableCategories limits retries to failures whose category is listed.
	// Empty: every category retries.
	RetryableCategories []string
}

// CreateExecutionArgs describes a new execution.
type CreateExecutionArgs struct {
	// ID, when set, is used as is (its partition decides where it lives); empty
	// lets the backend mint one (spread over partitions, or placed by the
	// idempotency key so a retried create lands where the first did). An ID
	// an execution already has is ErrExecutionIDInUse: to make a create safe
	// to repeat, give it an IdempotencyKey.
	ID   ExecutionID
	Lane LaneID
	// Kind is the handler dispatch key.
	Kind    string
	Payload []byte
	// Priority in [MinPriority, MaxPriority]; higher runs first. Default 0.
	Priority int
	// DelayUntil, when in the future, creates the execution delayed.
	DelayUntil time.Time
	Tags       map[string]string
	// RequiredCapabilities must all be advertised by the claiming worker.
	RequiredCapabilities []string
	Retry                RetryPolicy
	// AttemptTimeout bounds each attempt; 0 means no limit.
	AttemptTimeout time.Duration
	// Deadline bounds the whole execution; zero means none.
	Deadline time.Time
	// IdempotencyKey makes a repeated create return the first id while the key
	// lives (DedupTTL, default 24h). The key is kept on the partition the
	// create lands on, so a repeat finds it when it lands there too: one
	// with no ID (both are placed by the key) or with an ID on the first's
	// partition (the same ID, say). A repeat whose ID lies on another
	// partition, or one without an ID after a first create with one, is
	// another create: repeat a create as it was first made.
	IdempotencyKey string
	DedupTTL       time.Duration
	// LeaseHistory logs every lease event of this execution (acquired,
	// renewed late, revoked, expired, reclaimed, released) to its
	// partition's lease history, which LeaseHistorySubscriber streams.
	// Default off: an execution without it makes the server write nothing
	// for lease history.
	LeaseHistory bool
	// TraceParent is a trace carrier (a W3C traceparent; package ffotel
	// sets it) stored with the execution outside its tags and handed back
	// with its context (ExecutionContext.TraceParent, Task.TraceParent), so
	// the handler's span can link to the submit's in another process. At
	// most MaxTraceParentBytes of printable ASCII. Default empty: nothing
	// stored and nothing extra returned.
	TraceParent string
}

// CreateExecutionResult reports the created (or deduplicated) execution.
type CreateExecutionResult struct {
	ID        ExecutionID
	Duplicate bool // an earlier create with the same idempotency key won
	// State is the execution's state after the call; for a Duplicate, the
	// first execution's state now (empty once retention deleted it).
	State PublicState
}

// ScanEligibleArgs asks for the head of a lane on one partition.
type ScanEligibleArgs struct {
	Lane      LaneID
	Partition int
	// Limit is how many ids to return, highest priority first. Default 1.
	Limit int
}

// IssueClaimGrantArgs asks for the right to claim one execution.
type IssueClaimGrantArgs struct {
	ExecutionID      ExecutionID
	Lane             LaneID
	WorkerID         WorkerID
	WorkerInstanceID WorkerInstanceID
	// Capabilities the worker advertises; must cover the execution's requirements.
	Capabilities []string
	// GrantTTL is how long the grant waits to be claimed. Default 5s.
	GrantTTL time.Duration
}

// ClaimGrant is a written, unconsumed grant.
type ClaimGrant struct {
	ExecutionID ExecutionID
	ExpiresAt   time.Time
}

// ClaimExecutionArgs consumes a grant and takes the lease.
type ClaimExecutionArgs struct {
	ExecutionID      ExecutionID
	Lane             LaneID
	WorkerID         WorkerID
	WorkerInstanceID WorkerInstanceID
	// LeaseTTL is the lease length. Default 30s.
	LeaseTTL time.Duration
}

// ClaimedExecution is a granted lease and its context.
type ClaimedExecution struct {
	Handle      Handle
	ExpiresAt   time.Time
	AttemptType AttemptType
}

// ClaimArgs drives the backend's own fresh-work claim (scan, grant, claim).
type ClaimArgs struct {
	Lane             LaneID
	WorkerID         WorkerID
	WorkerInstanceID WorkerInstanceID
	Capabilities     []string
	// LeaseTTL default 30s; GrantTTL default 5s.
	LeaseTTL time.Duration
	GrantTTL time.Duration
}

// BlockRouteArgs parks an execution no current worker can run.
type BlockRouteArgs struct {
	ExecutionID ExecutionID
	Lane        LaneID
	// Reason is recorded on the execution. Default "capability_mismatch".
	Reason string
}

// BlockRouteOutcome says whether the block happened (false: it was no longer
// eligible, which is fine).
type BlockRouteOutcome struct{ Blocked bool }

// LeaseRenewal is the result of a renewal.
type LeaseRenewal struct {
	ExpiresAt time.Time
	Epoch     uint64
}

// FailOutcome says what fail did.
type FailOutcome struct {
	RetryScheduled bool
	// RetryAt is when the retry becomes eligible (RetryScheduled only).
	RetryAt time.Time
}

// CancelExecutionArgs is an operator's cancel.
type CancelExecutionArgs struct {
	ExecutionID ExecutionID
	Reason      string
	// RequestedBy names the operator, recorded on the execution. Default "operator".
	RequestedBy string
}

// CancelExecutionResult reports the state the execution left.
type CancelExecutionResult struct{ PreviousState PublicState }

// ChangePriorityArgs re-scores a waiting execution.
type ChangePriorityArgs struct {
	ExecutionID ExecutionID
	Priority    int
}

// ChangePriorityResult reports the old and new priority.
type ChangePriorityResult struct{ Old, New int }

// RevokeLeaseArgs takes a lease away from its holder.
type RevokeLeaseArgs struct {
	ExecutionID ExecutionID
	// ExpectedLeaseID, when set, revokes only that lease.
	ExpectedLeaseID string
	Reason          string
}

// RevokeLeaseResult names the revoked lease.
type RevokeLeaseResult struct {
	LeaseID string
	Epoch   uint64
}

// PromoteDelayedArgs moves due delayed executions of one lane and partition
// back to eligible. Scanners call it.
type PromoteDelayedArgs struct {
	Lane      LaneID
	Partition int
	// Limit caps how many are promoted in one call. Default 100.
	Limit int
}

// ExecutionSnapshot is a read model of an execution (without payload bytes).
type ExecutionSnapshot struct {
	ID                   ExecutionID
	Lane                 LaneID
	Kind                 string
	State                PublicState
	BlockedReason        string
	Priority             int
	RequiredCapabilities []string
	Tags                 map[string]string
	CreatedAt            time.Time
	StartedAt            time.Time // first claim; zero before
	CompletedAt          time.Time // zero until terminal
	DelayUntil           time.Time // zero unless delayed
	Deadline             time.Time
	CurrentAttemptIndex  AttemptIndex
	TotalAttempts        int
	RetryCount           int
	LeaseEpoch           uint64
	LeaseExpiresAt       time.Time // zero unless active
	WorkerInstanceID     WorkerInstanceID
	ProgressPercent      int
	ProgressMessage      string
	FailureReason        string
	FailureCategory      string
	CancellationReason   string
}

// ExecutionContext is what a handler needs: immutable after create.
type ExecutionContext struct {
	Lane    LaneID
	Kind    string
	Payload []byte
	Tags    map[string]string
	// TraceParent is the create's trace carrier ("" when it gave none).
	TraceParent string
}

// ListExecutionsPage is one page of a partition's executions, in id order.
type ListExecutionsPage struct {
	IDs []ExecutionID
	// NextCursor is the last id of the page when more follow, else "".
	NextCursor ExecutionID
}

// ListLanesPage is one page of the lane registry, in name order.
type ListLanesPage struct {
	Lanes      []LaneID
	NextCursor LaneID // "" on the last page
}

// PrepareOutcome reports what Prepare did.
type PrepareOutcome struct {
	Applied bool   // false: nothing to do
	Detail  string // e.g. "FUNCTION LOAD flowfabric v3 on 3 primaries"
}

// Capability token limits.
const (
	MaxCapabilityTokens   = 256
	MaxCapabilityCSVBytes = 4096
)

// NormalizeCapabilities validates capability tokens (no commas, whitespace or
// control bytes, non-empty) and returns them sorted and deduplicated.
func NormalizeCapabilities(caps []string) ([]string, error) {
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		if c == "" {
			return nil, validationf(CodeInvalidCapabilities, "empty capability token")
		}
		for i := 0; i < len(c); i++ {
			if b := c[i]; b <= ' ' || b == ',' || b == 0x7f {
				return nil, validationf(CodeInvalidCapabilities, "capability %q: byte 0x%02x is not allowed", truncate(c), b)
			}
		}
		out = append(out, c)
	}
	sort.Strings(out)
	out = slices.Compact(out)
	if len(out) > MaxCapabilityTokens {
		return nil, validationf(CodeInvalidCapabilities, "%d capability tokens, over the %d limit", len(out), MaxCapabilityTokens)
	}
	if n := len(strings.Join(out, ",")); n > MaxCapabilityCSVBytes {
		return nil, validationf(CodeInvalidCapabilities, "capabilities take %d bytes, over the %d limit", n, MaxCapabilityCSVBytes)
	}
	return out, nil
}

// CapabilitiesCSV joins normalized capabilities for the wire.
func CapabilitiesCSV(caps []string) string { return strings.Join(caps, ",") }
