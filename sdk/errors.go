package sdk

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrorKind groups error codes by what the caller can do about them.
type ErrorKind uint8

// Error kinds. The zero value is not a kind.
const (
	KindNotFound          ErrorKind = iota + 1 // the entity does not exist
	KindValidation                             // bad input; nothing was written
	KindContention                             // lost a race; try again (maybe elsewhere)
	KindConflict                               // the request conflicts with existing state
	KindState                                  // the entity is in a state that forbids the call
	KindTransport                              // the backend could not be reached or answered garbage
	KindUnavailable                            // this backend does not implement the call, or may not run it (permission)
	KindResourceExhausted                      // a limit was hit; back off
	KindTimeout                                // the deadline passed before an answer
	KindBug                                    // an invariant broke; report it
)

var kindNames = [...]string{"", "not_found", "validation", "contention", "conflict", "state",
	"transport", "unavailable", "resource_exhausted", "timeout", "bug"}

func (k ErrorKind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Class says whether retrying the same call can succeed.
type Class uint8

const (
	// ClassTerminal: retrying the same call fails the same way.
	ClassTerminal Class = iota
	// ClassRetryable: a later or different attempt may succeed.
	ClassRetryable
	// ClassInformational: the outcome is benign (already done, someone else won).
	ClassInformational
)

// Stable error codes. Backends map their native failures onto these.
const (
	CodeInvalidInput              = "invalid_input"
	CodePayloadTooLarge           = "payload_too_large"
	CodeInvalidCapabilities       = "invalid_capabilities"
	CodeCapabilityMismatch        = "capability_mismatch"
	CodeMalformedHandle           = "malformed_handle"
	CodeHandleFromOtherBackend    = "handle_from_other_backend"
	CodeExecutionNotFound         = "execution_not_found"
	CodeExecutionNotEligible      = "execution_not_eligible"
	CodeExecutionNotInEligibleSet = "execution_not_in_eligible_set"
	CodeGrantAlreadyExists        = "grant_already_exists"
	CodeInvalidClaimGrant         = "invalid_claim_grant"
	CodeClaimGrantExpired         = "claim_grant_expired"
	CodeExecutionNotLeaseable     = "execution_not_leaseable"
	CodeUseClaimResumed           = "use_claim_resumed_execution"
	CodeNotAResumedExecution      = "not_a_resumed_execution"
	CodeActiveAttemptExists       = "active_attempt_exists"
	CodeExecutionNotActive        = "execution_not_active"
	CodeLeaseRevoked              = "lease_revoked"
	CodeLeaseExpired              = "lease_expired"
	CodeStaleLease                = "stale_lease"
	CodeLeaseConflict             = "lease_conflict"
	CodeExecutionTerminal         = "execution_terminal"
	CodeExecutionNotRunnable      = "execution_not_runnable"
	CodeNoActiveLease             = "no_active_lease"
	CodeTransport                 = "transport"
	CodeUnavailable               = "unavailable"
	CodeResourceExhausted         = "resource_exhausted"
	CodeTimeout                   = "timeout"
	CodeBug                       = "bug"
	CodeWorkerInstanceInUse       = "worker_instance_in_use"
	CodeExecutionNotReclaimable   = "execution_not_reclaimable"
	CodeExecutionNotTerminal      = "execution_not_terminal"
	CodeReplayLimitExceeded       = "replay_limit_exceeded"
	// CodeExecutionIDInUse: a create named an explicit id that an existing
	// execution has (a repeat of a create carries its idempotency key).
	CodeExecutionIDInUse = "execution_id_in_use"
	// CodePermissionDenied: the backend's access control (Valkey ACL) forbids
	// a command the call needs. Detail[0] names the command as the server
	// does ("function|load"), "" when unknown; Detail[1], when present, is
	// "key" or "channel": the command may run, not on that key or channel.
	CodePermissionDenied = "permission_denied"
	// CodeLibraryIncompatible: the backend's server-side code (Valkey: the
	// Functions library) and this client cannot work together, and Prepare
	// will not replace it (it never downgrades). Detail: the loaded library's
	// version, the oldest client version it serves, this client's version.
	CodeLibraryIncompatible = "library_incompatible"
	// CodeNotReplicated: the write landed on the primary, but fewer
	// replicas than the backend was told to wait for acknowledged it in
	// time (Valkey: WAIT), so a failover may still lose it: an unknown
	// outcome, as a timeout. A Worker retries its terminal call (the
	// repeat recognises a first try that survived); a submit is repeated
	// safely with an idempotency key. Detail: replicas that acknowledged,
	// replicas wanted.
	CodeNotReplicated = "not_replicated"
)

// codeKinds maps every known code to its kind.
var codeKinds = map[string]ErrorKind{
	CodeInvalidInput: KindValidation, CodePayloadTooLarge: KindValidation,
	CodeInvalidCapabilities: KindValidation, CodeCapabilityMismatch: KindValidation,
	CodeMalformedHandle: KindValidation, CodeHandleFromOtherBackend: KindValidation,
	CodeExecutionNotFound:    KindNotFound,
	CodeExecutionNotEligible: KindContention, CodeExecutionNotInEligibleSet: KindContention,
	CodeInvalidClaimGrant: KindContention, CodeClaimGrantExpired: KindContention,
	CodeUseClaimResumed: KindContention, CodeLeaseConflict: KindContention,
	CodeExecutionNotActive: KindContention,
	CodeGrantAlreadyExists: KindState, CodeExecutionNotLeaseable: KindState,
	CodeNotAResumedExecution: KindState, CodeLeaseRevoked: KindState,
	CodeLeaseExpired: KindState, CodeStaleLease: KindState, CodeExecutionTerminal: KindState,
	CodeExecutionNotRunnable: KindState, CodeNoActiveLease: KindState,
	CodeExecutionNotReclaimable: KindState, CodeExecutionNotTerminal: KindState,
	CodeReplayLimitExceeded: KindState,
	CodeTaskFinished:        KindState,
	CodeWorkerShutdown:      KindState,
	CodeActiveAttemptExists: KindConflict,
	CodeWorkerInstanceInUse: KindConflict,
	CodeExecutionIDInUse:    KindConflict,
	CodeLibraryIncompatible: KindConflict,
	CodePermissionDenied:    KindUnavailable,
	CodeTransport:           KindTransport, CodeUnavailable: KindUnavailable,
	CodeResourceExhausted: KindResourceExhausted, CodeTimeout: KindTimeout, CodeBug: KindBug,
	CodeNotReplicated: KindTimeout,
	CodeInvalidToken:  KindValidation, CodeWaitpointClosed: KindState, CodeWaitpointExpired: KindState,
	CodeWaitpointExists: KindConflict, CodeWaitpointNotFound: KindNotFound, CodeWaitpointNotPending: KindState,
	CodeSignalLimitExceeded: KindResourceExhausted, CodeHMACSecretNotInitialized: KindState,
	CodeRotationConflict: KindConflict, CodeSummaryConflict: KindConflict, CodeInvalidSummaryPatch: KindValidation,
	CodeFlowNotFound: KindNotFound, CodeFlowTerminal: KindState, CodeStaleGraphRevision: KindContention,
	CodeNotFlowMember: KindValidation, CodeFlowMemberElsewhere: KindConflict, CodeFlowTooLarge: KindValidation,
	CodeEdgeExists: KindConflict, CodeEdgeNotFound: KindNotFound, CodeCycleDetected: KindConflict,
	CodeInvalidDependency: KindState, CodeGroupPolicyLocked: KindConflict,
	CodeQuotaNotFound: KindNotFound, CodeBudgetNotFound: KindNotFound,
	CodeScheduleNotFound: KindNotFound, CodeScheduleChanged: KindContention,
}

// KindOfCode returns the kind of a known code, and KindBug for an unknown one
// (an unknown code from a backend means the two sides disagree).
func KindOfCode(code string) ErrorKind {
	if k, ok := codeKinds[code]; ok {
		return k
	}
	return KindBug
}

// Error is the one error type of the contract. Match it with errors.Is against
// the sentinels below (ErrStaleLease matches by code, ErrValidation by kind) or
// errors.As to read its fields.
type Error struct {
	Kind   ErrorKind
	Code   string   // stable, machine-readable; see the Code constants
	Op     string   // the backend call that failed, e.g. "complete"
	Detail []string // extra fields, code-specific (see NotActiveDetail)
	Msg    string   // human-readable explanation
	Err    error    // the underlying cause, if any (transport errors)
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	b.WriteString(e.Code)
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	if len(e.Detail) > 0 {
		b.WriteString(" [")
		b.WriteString(strings.Join(e.Detail, " "))
		b.WriteString("]")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches a sentinel: by Code when the target has one, else by Kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	if t.Code != "" {
		return e.Code == t.Code
	}
	return t.Kind != 0 && e.Kind == t.Kind
}

// Class classifies the error for retry decisions.
func (e *Error) Class() Class {
	switch e.Code {
	case CodeGrantAlreadyExists, CodeExecutionNotEligible, CodeExecutionNotInEligibleSet, CodeExecutionNotActive:
		// Someone else won, or the execution moved on (a replayed terminal
		// call lands here too): retrying the same call cannot succeed.
		return ClassInformational
	}
	switch e.Kind {
	case KindContention, KindTransport, KindTimeout, KindResourceExhausted:
		return ClassRetryable
	}
	return ClassTerminal
}

// Retryable reports whether the error is an *Error of class ClassRetryable.
func Retryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Class() == ClassRetryable
}

// KindOf returns the kind of err, or 0 when err is not an *Error.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// CodeOf returns the code of err, or "" when err is not an *Error.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// NotActiveDetail is what an execution_not_active error says about the
// execution, so a client can recognise the replay of its own terminal call.
type NotActiveDetail struct {
	State     PublicState
	Epoch     uint64
	AttemptID string
	// EndedBy says who ended the last attempt: the lease id of the holder
	// whose terminal call landed, "engine" (scanners) or "operator". Empty
	// when the backend does not tell.
	EndedBy string
}

// NotActive decodes the detail of an execution_not_active error.
func (e *Error) NotActive() (NotActiveDetail, bool) {
	if e.Code != CodeExecutionNotActive || len(e.Detail) < 3 {
		return NotActiveDetail{}, false
	}
	epoch, err := strconv.ParseUint(e.Detail[1], 10, 64)
	if err != nil {
		return NotActiveDetail{}, false
	}
	d := NotActiveDetail{State: PublicState(e.Detail[0]), Epoch: epoch, AttemptID: e.Detail[2]}
	if len(e.Detail) > 3 {
		d.EndedBy = e.Detail[3]
	}
	return d, true
}

// NewError builds an *Error for a code; the kind comes from the code.
func NewError(op, code, msg string, detail ...string) *Error {
	return &Error{Kind: KindOfCode(code), Code: code, Op: op, Msg: msg, Detail: detail}
}

// Unavailable is the error of a call this backend does not implement.
func Unavailable(op string) *Error {
	return &Error{Kind: KindUnavailable, Code: CodeUnavailable, Op: op, Msg: "not supported by this backend"}
}

// TransportError wraps a failure to talk to the backend.
func TransportError(op string, err error) *Error {
	return &Error{Kind: KindTransport, Code: CodeTransport, Op: op, Err: err}
}

func validationf(code, format string, args ...any) *Error {
	return &Error{Kind: KindValidation, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Validationf builds a validation error; backends use it for their own checks.
func Validationf(code, format string, args ...any) *Error { return validationf(code, format, args...) }

// Sentinels for errors.Is. Code sentinels match one code, kind sentinels a kind.
var (
	ErrNotFound          = &Error{Kind: KindNotFound}
	ErrValidation        = &Error{Kind: KindValidation}
	ErrContention        = &Error{Kind: KindContention}
	ErrConflict          = &Error{Kind: KindConflict}
	ErrState             = &Error{Kind: KindState}
	ErrTransport         = &Error{Kind: KindTransport}
	ErrUnavailable       = &Error{Kind: KindUnavailable}
	ErrResourceExhausted = &Error{Kind: KindResourceExhausted}
	ErrTimeout           = &Error{Kind: KindTimeout}

	ErrStaleLease          = &Error{Kind: KindState, Code: CodeStaleLease}
	ErrLeaseExpired        = &Error{Kind: KindState, Code: CodeLeaseExpired}
	ErrLeaseRevoked        = &Error{Kind: KindState, Code: CodeLeaseRevoked}
	ErrExecutionNotActive  = &Error{Kind: KindContention, Code: CodeExecutionNotActive}
	ErrExecutionNotFound   = &Error{Kind: KindNotFound, Code: CodeExecutionNotFound}
	ErrCapabilityMismatch  = &Error{Kind: KindValidation, Code: CodeCapabilityMismatch}
	ErrGrantAlreadyExists  = &Error{Kind: KindState, Code: CodeGrantAlreadyExists}
	ErrInvalidClaimGrant   = &Error{Kind: KindContention, Code: CodeInvalidClaimGrant}
	ErrPayloadTooLarge     = &Error{Kind: KindValidation, Code: CodePayloadTooLarge}
	ErrMalformedHandle     = &Error{Kind: KindValidation, Code: CodeMalformedHandle}
	ErrUseClaimResumed     = &Error{Kind: KindContention, Code: CodeUseClaimResumed}
	ErrExecutionTerminal   = &Error{Kind: KindState, Code: CodeExecutionTerminal}
	ErrWorkerInstanceInUse = &Error{Kind: KindConflict, Code: CodeWorkerInstanceInUse}
	ErrExecutionIDInUse    = &Error{Kind: KindConflict, Code: CodeExecutionIDInUse}
	ErrPermissionDenied    = &Error{Kind: KindUnavailable, Code: CodePermissionDenied}
	ErrLibraryIncompatible = &Error{Kind: KindConflict, Code: CodeLibraryIncompatible}
)
