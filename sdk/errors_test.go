package sdk

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// allCodes lists every Code constant with its expected kind.
var allCodes = []struct {
	code string
	kind ErrorKind
}{
	{CodeInvalidInput, KindValidation},
	{CodeSummaryConflict, KindConflict},
	{CodeQuotaNotFound, KindNotFound},
	{CodeBudgetNotFound, KindNotFound},
	{CodeScheduleNotFound, KindNotFound},
	{CodeScheduleChanged, KindContention},
	{CodeFlowNotFound, KindNotFound},
	{CodeFlowTerminal, KindState},
	{CodeStaleGraphRevision, KindContention},
	{CodeNotFlowMember, KindValidation},
	{CodeFlowMemberElsewhere, KindConflict},
	{CodeFlowTooLarge, KindValidation},
	{CodeEdgeExists, KindConflict},
	{CodeEdgeNotFound, KindNotFound},
	{CodeCycleDetected, KindConflict},
	{CodeInvalidDependency, KindState},
	{CodeGroupPolicyLocked, KindConflict},
	{CodeInvalidSummaryPatch, KindValidation},
	{CodeInvalidToken, KindValidation},
	{CodeWaitpointClosed, KindState},
	{CodeWaitpointExpired, KindState},
	{CodeWaitpointExists, KindConflict},
	{CodeWaitpointNotFound, KindNotFound},
	{CodeWaitpointNotPending, KindState},
	{CodeSignalLimitExceeded, KindResourceExhausted},
	{CodeHMACSecretNotInitialized, KindState},
	{CodeRotationConflict, KindConflict},
	{CodePayloadTooLarge, KindValidation},
	{CodeInvalidCapabilities, KindValidation},
	{CodeCapabilityMismatch, KindValidation},
	{CodeMalformedHandle, KindValidation},
	{CodeHandleFromOtherBackend, KindValidation},
	{CodeExecutionNotFound, KindNotFound},
	{CodeExecutionNotEligible, KindContention},
	{CodeExecutionNotInEligibleSet, KindContention},
	{CodeGrantAlreadyExists, KindState},
	{CodeInvalidClaimGrant, KindContention},
	{CodeClaimGrantExpired, KindContention},
	{CodeExecutionNotLeaseable, KindState},
	{CodeUseClaimResumed, KindContention},
	{CodeNotAResumedExecution, KindState},
	{CodeActiveAttemptExists, KindConflict},
	{CodeExecutionNotActive, KindContention},
	{CodeLeaseRevoked, KindState},
	{CodeLeaseExpired, KindState},
	{CodeStaleLease, KindState},
	{CodeLeaseConflict, KindContention},
	{CodeExecutionTerminal, KindState},
	{CodeExecutionNotRunnable, KindState},
	{CodeNoActiveLease, KindState},
	{CodeTransport, KindTransport},
	{CodeUnavailable, KindUnavailable},
	{CodeResourceExhausted, KindResourceExhausted},
	{CodeTimeout, KindTimeout},
	{CodeBug, KindBug},
	{CodeWorkerInstanceInUse, KindConflict},
	{CodeExecutionIDInUse, KindConflict},
	{CodeExecutionNotReclaimable, KindState},
	{CodeExecutionNotTerminal, KindState},
	{CodeReplayLimitExceeded, KindState},
	{CodeTaskFinished, KindState},
	{CodeWorkerShutdown, KindState},
	{CodeNotReplicated, KindTimeout},
	{CodePermissionDenied, KindUnavailable},
	{CodeLibraryIncompatible, KindConflict},
}

func TestKindOfCode(t *testing.T) {
	seen := make(map[string]bool)
	for _, c := range allCodes {
		if seen[c.code] {
			t.Errorf("code %q listed twice (two constants share a value?)", c.code)
		}
		seen[c.code] = true
		if got := KindOfCode(c.code); got != c.kind {
			t.Errorf("KindOfCode(%q) = %s, want %s", c.code, got, c.kind)
		}
	}
	for code := range codeKinds {
		if !seen[code] {
			t.Errorf("code %q is not in allCodes: add it here and to TestErrorClass with its expected class", code)
		}
	}
	for _, unknown := range []string{"", "nope", "STALE_LEASE", "stale_lease "} {
		if got := KindOfCode(unknown); got != KindBug {
			t.Errorf("KindOfCode(%q) = %s, want bug", unknown, got)
		}
	}
}

func TestErrorKindString(t *testing.T) {
	want := map[ErrorKind]string{
		KindNotFound: "not_found", KindValidation: "validation", KindContention: "contention",
		KindConflict: "conflict", KindState: "state", KindTransport: "transport",
		KindUnavailable: "unavailable", KindResourceExhausted: "resource_exhausted",
		KindTimeout: "timeout", KindBug: "bug",
		0: "kind(0)", KindBug + 1: "kind(11)", 255: "kind(255)",
	}
	for k, s := range want {
		if got := k.String(); got != s {
			t.Errorf("ErrorKind(%d).String() = %q, want %q", k, got, s)
		}
	}
}

// codeSentinels are the code sentinels and their codes.
var codeSentinels = []struct {
	name string
	err  *Error
	code string
}{
	{"ErrStaleLease", ErrStaleLease, CodeStaleLease},
	{"ErrLeaseExpired", ErrLeaseExpired, CodeLeaseExpired},
	{"ErrLeaseRevoked", ErrLeaseRevoked, CodeLeaseRevoked},
	{"ErrExecutionNotActive", ErrExecutionNotActive, CodeExecutionNotActive},
	{"ErrExecutionNotFound", ErrExecutionNotFound, CodeExecutionNotFound},
	{"ErrCapabilityMismatch", ErrCapabilityMismatch, CodeCapabilityMismatch},
	{"ErrGrantAlreadyExists", ErrGrantAlreadyExists, CodeGrantAlreadyExists},
	{"ErrInvalidClaimGrant", ErrInvalidClaimGrant, CodeInvalidClaimGrant},
	{"ErrPayloadTooLarge", ErrPayloadTooLarge, CodePayloadTooLarge},
	{"ErrMalformedHandle", ErrMalformedHandle, CodeMalformedHandle},
	{"ErrUseClaimResumed", ErrUseClaimResumed, CodeUseClaimResumed},
	{"ErrExecutionTerminal", ErrExecutionTerminal, CodeExecutionTerminal},
	{"ErrWorkerInstanceInUse", ErrWorkerInstanceInUse, CodeWorkerInstanceInUse},
	{"ErrExecutionIDInUse", ErrExecutionIDInUse, CodeExecutionIDInUse},
	{"ErrPermissionDenied", ErrPermissionDenied, CodePermissionDenied},
	{"ErrLibraryIncompatible", ErrLibraryIncompatible, CodeLibraryIncompatible},
}

// kindSentinels are the kind sentinels and their kinds.
var kindSentinels = []struct {
	name string
	err  *Error
	kind ErrorKind
}{
	{"ErrNotFound", ErrNotFound, KindNotFound},
	{"ErrValidation", ErrValidation, KindValidation},
	{"ErrContention", ErrContention, KindContention},
	{"ErrConflict", ErrConflict, KindConflict},
	{"ErrState", ErrState, KindState},
	{"ErrTransport", ErrTransport, KindTransport},
	{"ErrUnavailable", ErrUnavailable, KindUnavailable},
	{"ErrResourceExhausted", ErrResourceExhausted, KindResourceExhausted},
	{"ErrTimeout", ErrTimeout, KindTimeout},
}

func TestSentinelsAreConsistent(t *testing.T) {
	for _, s := range codeSentinels {
		if s.err.Code != s.code {
			t.Errorf("%s.Code = %q, want %q", s.name, s.err.Code, s.code)
		}
		// A sentinel's kind must be its code's kind, or errors.Is(err,
		// ErrState) and errors.Is(err, ErrStaleLease) would disagree.
		if s.err.Kind != KindOfCode(s.code) {
			t.Errorf("%s.Kind = %s, but KindOfCode(%q) = %s", s.name, s.err.Kind, s.code, KindOfCode(s.code))
		}
	}
	for _, s := range kindSentinels {
		if s.err.Code != "" || s.err.Kind != s.kind {
			t.Errorf("%s = {%s %q}, want {%s \"\"}", s.name, s.err.Kind, s.err.Code, s.kind)
		}
	}
}

func TestErrorsIs(t *testing.T) {
	for _, s := range codeSentinels {
		t.Run(s.name, func(t *testing.T) {
			err := NewError("op", s.code, "msg")
			wrapped := fmt.Errorf("outer: %w", err)
			for _, e := range []error{err, wrapped, fmt.Errorf("twice: %w", wrapped)} {
				if !errors.Is(e, s.err) {
					t.Errorf("errors.Is(%v, %s) = false", e, s.name)
				}
				// Exactly one kind sentinel matches.
				for _, k := range kindSentinels {
					if got, want := errors.Is(e, k.err), k.kind == s.err.Kind; got != want {
						t.Errorf("errors.Is(%v, %s) = %v, want %v", e, k.name, got, want)
					}
				}
				// No other code sentinel matches.
				for _, o := range codeSentinels {
					if o.code != s.code && errors.Is(e, o.err) {
						t.Errorf("errors.Is(%v, %s) = true", e, o.name)
					}
				}
			}
		})
	}
}

func TestErrorsIsEdgeCases(t *testing.T) {
	stale := NewError("renew", CodeStaleLease, "")
	if errors.Is(stale, &Error{}) {
		t.Error("an *Error matches the empty *Error (no kind, no code)")
	}
	if errors.Is(stale, io.EOF) {
		t.Error("an *Error matches io.EOF")
	}
	foreign := fmt.Errorf("read: %w", io.EOF)
	if errors.Is(foreign, ErrStaleLease) {
		t.Error("a foreign error matches a sentinel")
	}
	// A code sentinel matches by code even if a backend got the kind wrong.
	odd := &Error{Kind: KindBug, Code: CodeStaleLease}
	if !errors.Is(odd, ErrStaleLease) || errors.Is(odd, ErrState) {
		t.Error("code sentinels must match by code, kind sentinels by kind")
	}
	// Unwrap exposes the cause.
	cause := errors.New("connection refused")
	te := TransportError("fcall", cause)
	if !errors.Is(te, cause) || !errors.Is(te, ErrTransport) {
		t.Errorf("TransportError does not match its cause and ErrTransport: %v", te)
	}
	if te.Kind != KindTransport || te.Code != CodeTransport || te.Op != "fcall" {
		t.Errorf("TransportError = %+v", te)
	}
	un := Unavailable("suspend")
	if !errors.Is(un, ErrUnavailable) || un.Code != CodeUnavailable || un.Op != "suspend" {
		t.Errorf("Unavailable = %+v", un)
	}
	v := Validationf(CodePayloadTooLarge, "payload is %d bytes", 9)
	if !errors.Is(v, ErrValidation) || !errors.Is(v, ErrPayloadTooLarge) || v.Msg != "payload is 9 bytes" {
		t.Errorf("Validationf = %+v", v)
	}
}

func TestErrorsAsAndHelpers(t *testing.T) {
	err := fmt.Errorf("worker: %w", NewError("complete", CodeLeaseRevoked, "revoked by operator"))
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeLeaseRevoked || e.Op != "complete" {
		t.Fatalf("errors.As = %+v", e)
	}
	if KindOf(err) != KindState || CodeOf(err) != CodeLeaseRevoked {
		t.Errorf("KindOf/CodeOf = %s/%q", KindOf(err), CodeOf(err))
	}
	if KindOf(io.EOF) != 0 || CodeOf(io.EOF) != "" || KindOf(nil) != 0 || CodeOf(nil) != "" {
		t.Error("KindOf/CodeOf of a foreign error must be zero")
	}
	if Retryable(io.EOF) || Retryable(nil) {
		t.Error("a foreign error is retryable")
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Code: CodeStaleLease}, "stale_lease"},
		{&Error{Op: "renew", Code: CodeStaleLease}, "renew: stale_lease"},
		{&Error{Op: "renew", Code: CodeStaleLease, Msg: "epoch 3 < 4"}, "renew: stale_lease: epoch 3 < 4"},
		{NewError("complete", CodeExecutionNotActive, "", "completed", "3", testUUID),
			"complete: execution_not_active [completed 3 " + testUUID + "]"},
		{TransportError("fcall", io.EOF), "fcall: transport: EOF"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestErrorClass(t *testing.T) {
	want := map[string]Class{
		// Informational by code.
		CodeGrantAlreadyExists:        ClassInformational,
		CodeExecutionNotEligible:      ClassInformational,
		CodeExecutionNotInEligibleSet: ClassInformational,
		// Retryable by kind.
		CodeInvalidClaimGrant:  ClassRetryable,
		CodeClaimGrantExpired:  ClassRetryable,
		CodeUseClaimResumed:    ClassRetryable,
		CodeLeaseConflict:      ClassRetryable,
		CodeExecutionNotActive: ClassInformational, // moved on; retrying cannot succeed
		CodeTransport:          ClassRetryable,
		CodeTimeout:            ClassRetryable,
		CodeResourceExhausted:  ClassRetryable,
		// Terminal.
		CodeInvalidInput:             ClassTerminal,
		CodePayloadTooLarge:          ClassTerminal,
		CodeInvalidCapabilities:      ClassTerminal,
		CodeCapabilityMismatch:       ClassTerminal,
		CodeMalformedHandle:          ClassTerminal,
		CodeHandleFromOtherBackend:   ClassTerminal,
		CodeExecutionNotFound:        ClassTerminal,
		CodeExecutionNotLeaseable:    ClassTerminal,
		CodeNotAResumedExecution:     ClassTerminal,
		CodeActiveAttemptExists:      ClassTerminal,
		CodeLeaseRevoked:             ClassTerminal,
		CodeLeaseExpired:             ClassTerminal,
		CodeStaleLease:               ClassTerminal,
		CodeExecutionTerminal:        ClassTerminal,
		CodeExecutionNotRunnable:     ClassTerminal,
		CodeNoActiveLease:            ClassTerminal,
		CodeUnavailable:              ClassTerminal,
		CodeBug:                      ClassTerminal,
		CodeWorkerInstanceInUse:      ClassTerminal,
		CodeExecutionIDInUse:         ClassTerminal,
		CodeExecutionNotReclaimable:  ClassTerminal,
		CodeExecutionNotTerminal:     ClassTerminal,
		CodeReplayLimitExceeded:      ClassTerminal,
		CodeTaskFinished:             ClassTerminal,
		CodeNotReplicated:            ClassRetryable,
		CodeWorkerShutdown:           ClassTerminal,
		CodePermissionDenied:         ClassTerminal,
		CodeLibraryIncompatible:      ClassTerminal,
		"unknown_code":               ClassTerminal,
		CodeSummaryConflict:          ClassTerminal,
		CodeQuotaNotFound:            ClassTerminal,
		CodeBudgetNotFound:           ClassTerminal,
		CodeScheduleNotFound:         ClassTerminal,
		CodeScheduleChanged:          ClassRetryable,
		CodeFlowNotFound:             ClassTerminal,
		CodeFlowTerminal:             ClassTerminal,
		CodeStaleGraphRevision:       ClassRetryable,
		CodeNotFlowMember:            ClassTerminal,
		CodeFlowMemberElsewhere:      ClassTerminal,
		CodeFlowTooLarge:             ClassTerminal,
		CodeEdgeExists:               ClassTerminal,
		CodeEdgeNotFound:             ClassTerminal,
		CodeCycleDetected:            ClassTerminal,
		CodeInvalidDependency:        ClassTerminal,
		CodeGroupPolicyLocked:        ClassTerminal,
		CodeInvalidSummaryPatch:      ClassTerminal,
		CodeInvalidToken:             ClassTerminal,
		CodeWaitpointClosed:          ClassTerminal,
		CodeWaitpointExpired:         ClassTerminal,
		CodeWaitpointExists:          ClassTerminal,
		CodeWaitpointNotFound:        ClassTerminal,
		CodeWaitpointNotPending:      ClassTerminal,
		CodeSignalLimitExceeded:      ClassRetryable,
		CodeHMACSecretNotInitialized: ClassTerminal,
		CodeRotationConflict:         ClassTerminal,
	}
	for code, class := range want {
		e := NewError("op", code, "")
		if got := e.Class(); got != class {
			t.Errorf("Class() of %q = %d, want %d", code, got, class)
		}
		if got := Retryable(fmt.Errorf("wrapped: %w", e)); got != (class == ClassRetryable) {
			t.Errorf("Retryable(%q) = %v", code, got)
		}
	}
	for _, c := range allCodes {
		if _, ok := want[c.code]; !ok {
			t.Errorf("code %q has no expected class in TestErrorClass", c.code)
		}
	}
}

func TestNotActive(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want NotActiveDetail
		ok   bool
	}{
		{"completed", NewError("complete", CodeExecutionNotActive, "", "completed", "3", testUUID),
			NotActiveDetail{State: StateCompleted, Epoch: 3, AttemptID: testUUID}, true},
		{"ended by", NewError("complete", CodeExecutionNotActive, "", "cancelled", "18446744073709551615", testUUID, "operator"),
			NotActiveDetail{State: StateCancelled, Epoch: 1<<64 - 1, AttemptID: testUUID, EndedBy: "operator"}, true},
		{"extra fields ignored", NewError("complete", CodeExecutionNotActive, "", "cancelled", "1", testUUID, "engine", "more"),
			NotActiveDetail{State: StateCancelled, Epoch: 1, AttemptID: testUUID, EndedBy: "engine"}, true},
		{"empty attempt id", NewError("fail", CodeExecutionNotActive, "", "failed", "0", ""),
			NotActiveDetail{State: StateFailed}, true},
		{"no detail", NewError("complete", CodeExecutionNotActive, ""), NotActiveDetail{}, false},
		{"short detail", NewError("complete", CodeExecutionNotActive, "", "completed", "3"), NotActiveDetail{}, false},
		{"bad epoch", NewError("complete", CodeExecutionNotActive, "", "completed", "x", testUUID), NotActiveDetail{}, false},
		{"negative epoch", NewError("complete", CodeExecutionNotActive, "", "completed", "-1", testUUID), NotActiveDetail{}, false},
		{"overflow epoch", NewError("complete", CodeExecutionNotActive, "", "completed", "18446744073709551616", testUUID), NotActiveDetail{}, false},
		{"other code", NewError("complete", CodeStaleLease, "", "completed", "3", testUUID), NotActiveDetail{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.err.NotActive()
			if ok != tt.ok || got != tt.want {
				t.Fatalf("NotActive() = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestNewError(t *testing.T) {
	e := NewError("claim", CodeInvalidClaimGrant, "grant names another worker", "a", "b")
	if e.Kind != KindContention || e.Code != CodeInvalidClaimGrant || e.Op != "claim" ||
		e.Msg != "grant names another worker" || strings.Join(e.Detail, ",") != "a,b" || e.Err != nil {
		t.Fatalf("NewError = %+v", e)
	}
	if e := NewError("x", "made_up", ""); e.Kind != KindBug {
		t.Fatalf("NewError with an unknown code has kind %s, want bug", e.Kind)
	}
}
