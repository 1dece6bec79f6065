package sdk

import (
	"context"
	"strings"
	"time"
)

// Durable waiting: an attempt suspends on waitpoints until signals meet a
// resume condition; its lease is released meanwhile, and the execution
// resumes (the same attempt, AttemptResumed) on any worker once the
// condition holds. A signal is delivered with the waitpoint's token, an
// HMAC under the deployment's waitpoint secret, so only whoever was given
// the token can signal.

// WaitpointID names a waitpoint. It carries its execution's partition
// ("{p:N}:<uuid>", minted by NewWaitpointID), so a token alone routes a
// signal.
type WaitpointID string

// NewWaitpointID mints a waitpoint id on the partition of execution id.
func NewWaitpointID(id ExecutionID) WaitpointID {
	return WaitpointID(id.Tag() + ":" + newUUID())
}

// Validate checks the id's shape.
func (w WaitpointID) Validate() error {
	if _, err := ExecutionID(w).parse(); err != nil {
		return validationf(CodeInvalidInput, "malformed waitpoint id %q", truncate(string(w)))
	}
	return nil
}

// MatchMode says how a resume condition counts matching signals.
type MatchMode string

// Match modes.
const (
	MatchAny   MatchMode = "any"   // one matching signal resumes
	MatchAll   MatchMode = "all"   // every name of the condition, once each
	MatchCount MatchMode = "count" // Count matching signals
)

// ResumeCondition decides when signals resume a suspension. A signal
// matches when Names is empty or holds its name.
type ResumeCondition struct {
	// Names the signals that count; empty: any name. At most
	// MaxConditionNames, each a name as lanes are (no space, comma or brace).
	Names []string
	// Mode defaults to MatchAny; MatchAll needs Names.
	Mode MatchMode
	// Count is how many matching signals MatchCount needs (1..MaxSignalCount).
	Count int
}

// TimeoutBehavior is what a suspension's timeout does.
type TimeoutBehavior string

// Timeout behaviours.
const (
	TimeoutFail   TimeoutBehavior = "fail"   // the execution fails (category suspension_timeout)
	TimeoutCancel TimeoutBehavior = "cancel" // the execution is cancelled
	TimeoutExpire TimeoutBehavior = "expire" // the execution expires
	TimeoutResume TimeoutBehavior = "resume" // the attempt resumes without the signals
)

// Waiting limits, checked before anything is written.
const (
	MaxWaitpointsPerSuspension = 16
	MaxConditionNames          = 64
	MaxSignalCount             = 1000
	// MaxSignalsPerWaitpoint is how many signals one waitpoint accepts;
	// more get signal_limit_exceeded.
	MaxSignalsPerWaitpoint = 1000
	// MaxSignalPayloadBytes bounds a signal's payload.
	MaxSignalPayloadBytes = 64 << 10
	// DefaultSignalDedupTTL is how long a signal's dedup key is remembered.
	DefaultSignalDedupTTL = 24 * time.Hour
	// DefaultPendingWaitpointTTL is how long a pending waitpoint waits for
	// its suspend.
	DefaultPendingWaitpointTTL = time.Hour
)

// SuspendArgs describes a suspension.
type SuspendArgs struct {
	// Waitpoints are the labels of new waitpoints to create, one token each.
	// Default: one waitpoint labelled "default" (unless Pending names some).
	Waitpoints []string
	// Pending are waitpoints the attempt created earlier (CreateWaitpoint)
	// to activate: the signals they buffered count first.
	Pending []WaitpointID
	// Condition defaults to any one signal.
	Condition ResumeCondition
	// Timeout, when positive, ends the wait after this long with OnTimeout.
	Timeout time.Duration
	// OnTimeout defaults to TimeoutFail.
	OnTimeout TimeoutBehavior
	// Reason is recorded on the suspension (ListSuspended shows it).
	Reason string
	// DedupKey makes a repeated suspend return the first one's outcome
	// (the execution's last suspension) instead of failing on the lease it
	// released: it names one suspend call and its retries, so a later,
	// different suspend needs another key. The Task's Suspend sets one per
	// call when empty (per lease, and again after each AlreadySatisfied).
	DedupKey string
	// SuspensionID defaults to a fresh one.
	SuspensionID string
}

// Waitpoint is one waitpoint of a suspension and the token to hand out.
type Waitpoint struct {
	ID    WaitpointID
	Label string
	// Token authorises signals to this waitpoint (DeliverSignal). It is a
	// bearer credential: hand it only to whoever may resume the execution.
	Token string
}

// SuspendOutcome is what a suspend did.
type SuspendOutcome struct {
	// AlreadySatisfied: the pending waitpoints' buffered signals met the
	// condition already. The lease is kept and the attempt goes on (its
	// signals are readable with ObserveSignals); nothing was suspended.
	AlreadySatisfied bool
	SuspensionID     string
	Waitpoints       []Waitpoint
}

// PendingWaitpoint is a waitpoint created before its suspend.
type PendingWaitpoint struct {
	Waitpoint
	ExpiresAt time.Time
}

// ResumeSignal is a signal that counted towards a suspension's condition.
type ResumeSignal struct {
	ID          string
	Name        string
	Payload     []byte
	Source      string
	Waitpoint   WaitpointID
	DeliveredAt time.Time
}

// Suspension is a suspension as recorded.
type Suspension struct {
	ID           string
	ExecutionID  ExecutionID
	Reason       string
	SuspendedAt  time.Time
	TimeoutAt    time.Time // zero: none
	OnTimeout    TimeoutBehavior
	Condition    ResumeCondition
	Waitpoints   []WaitpointID
	Open         bool
	CloseReason  string // satisfied, already_satisfied, timeout, cancelled, expired
	Signals      []ResumeSignal
	AttemptIndex AttemptIndex
}

// DeliverSignalArgs is one signal.
type DeliverSignalArgs struct {
	// Token is the waitpoint's (Waitpoint.Token): it names the waitpoint.
	Token string
	// Name is matched against the condition's names.
	Name    string
	Payload []byte
	// Source names the sender, recorded with the signal.
	Source string
	// DedupKey, when set, makes a repeated delivery return the first
	// signal's id as Duplicate for DedupTTL (default DefaultSignalDedupTTL).
	DedupKey string
	DedupTTL time.Duration
	// SignalID defaults to a fresh one.
	SignalID string
}

// Signal effects (DeliverSignalResult.Effect).
const (
	EffectResumed  = "resumed"  // the condition holds: the execution resumes
	EffectMatched  = "matched"  // it counted towards the condition
	EffectAppended = "appended" // kept, but it does not match the condition
	EffectBuffered = "buffered" // kept by a pending waitpoint until its suspend
)

// DeliverSignalResult reports a delivery.
type DeliverSignalResult struct {
	SignalID    string
	ExecutionID ExecutionID
	Effect      string
	// Duplicate: the dedup key was seen; SignalID is the first signal's.
	Duplicate bool
}

// SuspendedEntry is one line of ListSuspended.
type SuspendedEntry struct {
	ExecutionID ExecutionID
	Reason      string
	SuspendedAt time.Time
	TimeoutAt   time.Time
}

// ListSuspendedPage is a page of a partition's suspended executions, in id order.
type ListSuspendedPage struct {
	Entries    []SuspendedEntry
	NextCursor ExecutionID // "" on the last page
}

// PendingWaitpointEntry is one line of ListPendingWaitpoints.
type PendingWaitpointEntry struct {
	ID          WaitpointID
	ExecutionID ExecutionID
	Label       string
	ExpiresAt   time.Time
	Signals     int
}

// ListPendingWaitpointsPage is a page of a partition's live pending waitpoints, in id order.
type ListPendingWaitpointsPage struct {
	Entries    []PendingWaitpointEntry
	NextCursor WaitpointID // "" on the last page
}

// SeedOutcome reports a seed.
type SeedOutcome struct {
	// AlreadySeeded: a secret was there; nothing was overwritten.
	AlreadySeeded bool
	// CurrentKID is the kid in use (AlreadySeeded only).
	CurrentKID string
	// SameSecret: the current kid is the one given, with the same secret.
	SameSecret bool
}

// RotateOutcome reports a rotation of every partition.
type RotateOutcome struct {
	// Rotated counts partitions whose current kid changed; Unchanged those
	// that had the kid and secret already.
	Rotated, Unchanged int
	PreviousKID        string
}

// SignalDelivery is one entry of the deliveries log.
type SignalDelivery struct {
	ExecutionID ExecutionID
	Waitpoint   WaitpointID
	SignalID    string
	Name        string
	Effect      string
	DeliveredAt time.Time
	// Cursor resumes a subscription right after this delivery.
	Cursor string
}

// Waiter suspends attempts and delivers signals (RoleWaiting).
type Waiter interface {
	// Suspend suspends h's attempt (see SuspendArgs). Fenced.
	Suspend(ctx context.Context, h Handle, args SuspendArgs) (SuspendOutcome, error)
	// SuspendByTriple suspends by execution id and lease triple, for a
	// caller that holds no Handle.
	SuspendByTriple(ctx context.Context, id ExecutionID, fence LeaseFence, args SuspendArgs) (SuspendOutcome, error)
	// CreateWaitpoint creates a pending waitpoint for h's attempt: its token
	// can be handed out before the attempt suspends, and signals delivered
	// meanwhile are kept for the suspend. ttl defaults to
	// DefaultPendingWaitpointTTL.
	CreateWaitpoint(ctx context.Context, h Handle, label string, ttl time.Duration) (PendingWaitpoint, error)
	// ObserveSignals returns the execution's last suspension with the
	// signals that counted towards it; nil when it never suspended.
	ObserveSignals(ctx context.Context, id ExecutionID) (*Suspension, error)
	// DeliverSignal delivers one signal. A bad token is invalid_token,
	// with nothing written.
	DeliverSignal(ctx context.Context, args DeliverSignalArgs) (DeliverSignalResult, error)
	ListSuspended(ctx context.Context, partition int, cursor ExecutionID, limit int) (ListSuspendedPage, error)
	ListPendingWaitpoints(ctx context.Context, partition int, cursor WaitpointID, limit int) (ListPendingWaitpointsPage, error)
	// SeedWaitpointSecret installs the first secret on every partition;
	// one already there is kept (SeedOutcome says which).
	SeedWaitpointSecret(ctx context.Context, kid string, secret []byte) (SeedOutcome, error)
	// RotateWaitpointSecret makes kid current on every partition; tokens of
	// the previous kid keep verifying for grace.
	RotateWaitpointSecret(ctx context.Context, kid string, secret []byte, grace time.Duration) (RotateOutcome, error)
	// ExpireDueSuspensions applies the timeout behaviour of up to limit
	// suspensions of partition whose timeout passed, and returns how many
	// ended each way (by state after: failed, cancelled, expired, waiting;
	// stale and not_due for entries that no longer apply). The suspension
	// scanner calls it.
	ExpireDueSuspensions(ctx context.Context, partition, limit int) (map[string]int, error)
	// SignalDeliveries streams the deliveries log from cursor ("" = from
	// now; a delivery's Cursor = right after it) until ctx ends or fn
	// returns an error.
	SignalDeliveries(ctx context.Context, cursor string, fn func(SignalDelivery) error) error
}

// Waiting error codes.
const (
	CodeInvalidToken             = "invalid_token"
	CodeWaitpointClosed          = "waitpoint_closed"
	CodeWaitpointExpired         = "waitpoint_expired"
	CodeWaitpointExists          = "waitpoint_exists"
	CodeWaitpointNotFound        = "waitpoint_not_found"
	CodeWaitpointNotPending      = "waitpoint_not_pending"
	CodeSignalLimitExceeded      = "signal_limit_exceeded"
	CodeHMACSecretNotInitialized = "hmac_secret_not_initialized"
	CodeRotationConflict         = "rotation_conflict"
)

// Resolve checks a suspend's arguments and fills defaults; the error is
// a validation error.
func (a SuspendArgs) Resolve() (SuspendArgs, error) {
	if len(a.Waitpoints) == 0 && len(a.Pending) == 0 {
		a.Waitpoints = []string{"default"}
	}
	if n := len(a.Waitpoints) + len(a.Pending); n > MaxWaitpointsPerSuspension {
		return a, validationf(CodeInvalidInput, "%d waitpoints, over the %d limit", n, MaxWaitpointsPerSuspension)
	}
	for _, l := range a.Waitpoints {
		if err := validateName("waitpoint label", l); err != nil {
			return a, err
		}
	}
	seen := map[WaitpointID]bool{}
	for _, w := range a.Pending {
		if err := w.Validate(); err != nil {
			return a, err
		}
		if seen[w] {
			return a, validationf(CodeInvalidInput, "waitpoint %s given twice", w)
		}
		seen[w] = true
	}
	c := &a.Condition
	if c.Mode == "" {
		c.Mode = MatchAny
	}
	if len(c.Names) > MaxConditionNames {
		return a, validationf(CodeInvalidInput, "%d signal names, over the %d limit", len(c.Names), MaxConditionNames)
	}
	for _, n := range c.Names {
		if err := validateName("signal name", n); err != nil {
			return a, err
		}
	}
	switch c.Mode {
	case MatchAny:
	case MatchAll:
		if len(c.Names) == 0 {
			return a, validationf(CodeInvalidInput, "match mode all needs signal names")
		}
	case MatchCount:
		if c.Count < 1 || c.Count > MaxSignalCount {
			return a, validationf(CodeInvalidInput, "match count %d out of range 1..%d", c.Count, MaxSignalCount)
		}
	default:
		return a, validationf(CodeInvalidInput, "unknown match mode %q", truncate(string(c.Mode)))
	}
	if a.OnTimeout == "" {
		a.OnTimeout = TimeoutFail
	}
	switch a.OnTimeout {
	case TimeoutFail, TimeoutCancel, TimeoutExpire, TimeoutResume:
	default:
		return a, validationf(CodeInvalidInput, "unknown timeout behaviour %q", truncate(string(a.OnTimeout)))
	}
	if a.Timeout < 0 {
		return a, validationf(CodeInvalidInput, "negative suspension timeout")
	}
	if err := CheckReason("suspension reason", a.Reason); err != nil {
		return a, err
	}
	if a.SuspensionID == "" {
		a.SuspensionID = newUUID()
	} else if err := validateName("suspension id", a.SuspensionID); err != nil {
		return a, err
	}
	if a.DedupKey != "" {
		if err := validateName("suspend dedup key", a.DedupKey); err != nil {
			return a, err
		}
	}
	return a, nil
}

// Resolve checks a delivery's arguments (the token only by its shape: the
// server verifies it) and fills defaults.
func (a DeliverSignalArgs) Resolve() (DeliverSignalArgs, error) {
	if _, err := TokenWaitpoint(a.Token); err != nil {
		return a, err
	}
	if err := validateName("signal name", a.Name); err != nil {
		return a, err
	}
	if len(a.Payload) > MaxSignalPayloadBytes {
		return a, validationf(CodePayloadTooLarge, "signal payload of %d bytes, over the %d limit", len(a.Payload), MaxSignalPayloadBytes)
	}
	if err := CheckReason("signal source", a.Source); err != nil {
		return a, err
	}
	if a.DedupKey != "" {
		if err := validateName("signal dedup key", a.DedupKey); err != nil {
			return a, err
		}
	}
	if a.DedupTTL < 0 {
		return a, validationf(CodeInvalidInput, "negative dedup TTL")
	}
	if a.DedupTTL == 0 {
		a.DedupTTL = DefaultSignalDedupTTL
	}
	if a.SignalID == "" {
		a.SignalID = newUUID()
	} else if err := validateName("signal id", a.SignalID); err != nil {
		return a, err
	}
	return a, nil
}

// maxTokenBytes bounds a token's length (a waitpoint id, a kid of at most
// 64 bytes and a 40-digit mac, with room to spare).
const maxTokenBytes = 256

// TokenWaitpoint returns the waitpoint a token names. A token that is not
// one ("<waitpoint>.<kid>.<mac>") is invalid_token; one of the right shape
// is verified by the server only.
func TokenWaitpoint(token string) (WaitpointID, error) {
	bad := &Error{Kind: KindValidation, Code: CodeInvalidToken, Msg: "not a waitpoint token"}
	if len(token) > maxTokenBytes {
		return "", bad
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[1] == "" || len(parts[2]) != 40 || !lowerHex(parts[2]) {
		return "", bad
	}
	if !isKID(parts[1]) {
		return "", bad
	}
	w := WaitpointID(parts[0])
	if w.Validate() != nil {
		return "", bad
	}
	return w, nil
}

// CheckSecret checks a waitpoint secret and its kid: a kid of 1..64
// letters, digits, '_' or '-', a secret of 16..128 bytes.
func CheckSecret(kid string, secret []byte) error {
	if !isKID(kid) {
		return validationf(CodeInvalidInput, "kid must be 1..64 letters, digits, '_' or '-'")
	}
	if len(secret) < 16 || len(secret) > 128 {
		// The length only: a secret never appears in an error.
		return validationf(CodeInvalidInput, "secret must be 16..128 bytes, got %d", len(secret))
	}
	return nil
}

// isKID reports whether s is a secret's key id: 1..64 letters, digits, '_'
// or '-' (the library's KID_PATTERN).
func isKID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
