package sdk

import (
	"cmp"
	"math"
	"time"
)

// Argument checks every backend shares. A backend calls them first, renders
// what they return (defaults filled in, capabilities normalized) and adds
// only its own limits (Valkey: the partition count, the payload size).
// An execution id is the backend's to check: it needs the id's partition
// anyway (ExecutionID.Partition validates it), so checking it here too
// would parse every id twice. Errors are validation *Errors without an Op;
// the backend stamps its own.

// Contract limits and defaults of the call arguments. Every string a caller
// supplies is bounded; ids and names by MaxIDLength, the rest here. A
// backend bounds an execution's whole context (payload plus tags) and its
// result by its own limit (Valkey: Options.MaxPayloadBytes).
const (
	// MaxTags bounds an execution's tags.
	MaxTags = 256
	// MaxTagValueBytes bounds one tag's value; a tag's name is an id
	// (MaxIDLength).
	MaxTagValueBytes = 4096
	// MaxTagsBytes bounds an execution's tags together (names and values).
	MaxTagsBytes = 64 << 10
	// MaxReasonBytes bounds a failure, cancel, revoke or routing reason and
	// a progress message. Task.Fail and Task.Cancel cut a longer reason to
	// it (keeping UTF-8 whole, marked "…[truncated]"); backend calls refuse
	// one.
	MaxReasonBytes = 4096
	// MaxIdempotencyKeyBytes bounds CreateExecutionArgs.IdempotencyKey.
	MaxIdempotencyKeyBytes = 512
	// MaxTraceParentBytes bounds CreateExecutionArgs.TraceParent.
	MaxTraceParentBytes = 512
	// DedupTTLDefault is how long an idempotency key is remembered.
	DedupTTLDefault = 24 * time.Hour

	// Backoff defaults (see Backoff).
	BackoffInitialDefault    = time.Second
	BackoffMaxDefault        = 60 * time.Second
	BackoffMultiplierDefault = 2.0
	maxBackoffMultiplier     = 1000
)

// Validate checks a create's arguments (all but the payload size, a
// backend limit).
func (a CreateExecutionArgs) Validate() error {
	_, err := a.Resolve()
	return err
}

// Resolve checks a create's arguments as Validate does and returns them
// with the required capabilities normalized, a non-zero retry policy
// resolved (RetryPolicy.Resolve; the zero policy stays zero, so a backend
// can render it once for all) and DedupTTL's default.
func (a CreateExecutionArgs) Resolve() (CreateExecutionArgs, error) {
	if err := a.checkNames(); err != nil {
		return a, err
	}
	if a.Priority < MinPriority || a.Priority > MaxPriority {
		return a, validationf(CodeInvalidInput, "priority %d out of range %d..%d", a.Priority, MinPriority, MaxPriority)
	}
	var err error
	if a.RequiredCapabilities, err = NormalizeCapabilities(a.RequiredCapabilities); err != nil {
		return a, err
	}
	if !a.Retry.IsZero() {
		if a.Retry, err = a.Retry.Resolve(); err != nil {
			return a, err
		}
	}
	if err := notNegative("attempt timeout", a.AttemptTimeout); err != nil {
		return a, err
	}
	a.DedupTTL, err = orDefault("dedup ttl", a.DedupTTL, DedupTTLDefault)
	return a, err
}

// checkNames checks a create's id, lane, kind, tags and idempotency key.
func (a CreateExecutionArgs) checkNames() error {
	if a.ID != "" {
		if err := a.ID.Validate(); err != nil {
			return err
		}
	}
	if err := a.Lane.Validate(); err != nil {
		return err
	}
	if err := ValidateKind(a.Kind); err != nil {
		return err
	}
	if err := checkTags(a.Tags); err != nil {
		return err
	}
	if len(a.IdempotencyKey) > MaxIdempotencyKeyBytes {
		return validationf(CodeInvalidInput, "idempotency key over %d bytes", MaxIdempotencyKeyBytes)
	}
	return checkTraceParent(a.TraceParent)
}

// checkTraceParent bounds a trace carrier: at most MaxTraceParentBytes of
// printable ASCII (a traceparent header's alphabet and more).
func checkTraceParent(s string) error {
	if len(s) > MaxTraceParentBytes {
		return validationf(CodeInvalidInput, "trace parent is %d bytes, over the %d limit", len(s), MaxTraceParentBytes)
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' || b >= 0x7f {
			return validationf(CodeInvalidInput, "trace parent: byte 0x%02x is not printable ASCII", b)
		}
	}
	return nil
}

// checkTags bounds tags: their count, each name and value, and all of them
// together.
func checkTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return validationf(CodeInvalidInput, "%d tags, over the %d limit", len(tags), MaxTags)
	}
	total := 0
	for k, v := range tags {
		if k == "" || len(k) > MaxIDLength {
			return validationf(CodeInvalidInput, "tag name must be 1..%d bytes", MaxIDLength)
		}
		if len(v) > MaxTagValueBytes {
			return validationf(CodeInvalidInput, "tag %q: value is %d bytes, over the %d limit", truncate(k), len(v), MaxTagValueBytes)
		}
		total += len(k) + len(v)
	}
	if total > MaxTagsBytes {
		return validationf(CodeInvalidInput, "tags take %d bytes, over the %d limit", total, MaxTagsBytes)
	}
	return nil
}

// TagsBytes is the size of tags (names and values), the part of an
// execution's context besides its payload.
func TagsBytes(tags map[string]string) int {
	n := 0
	for k, v := range tags {
		n += len(k) + len(v)
	}
	return n
}

// CheckReason refuses a reason or message over MaxReasonBytes; what names
// it in the error.
func CheckReason(what, s string) error {
	if len(s) > MaxReasonBytes {
		return validationf(CodeInvalidInput, "%s is %d bytes, over the %d limit", what, len(s), MaxReasonBytes)
	}
	return nil
}

// IsZero reports whether p is the zero policy (no retry, default backoff).
func (p RetryPolicy) IsZero() bool {
	return p.MaxRetries == 0 && p.Backoff == (Backoff{}) && len(p.RetryableCategories) == 0
}

// Resolve checks p and returns it with the backoff's defaults filled in and
// its categories normalized.
func (p RetryPolicy) Resolve() (RetryPolicy, error) {
	if p.MaxRetries < 0 {
		return p, validationf(CodeInvalidInput, "MaxRetries is negative")
	}
	var err error
	if p.Backoff, err = p.Backoff.resolve(); err != nil {
		return p, err
	}
	cats, err := NormalizeCapabilities(p.RetryableCategories)
	if err != nil {
		return p, validationf(CodeInvalidInput, "retryable categories: %s", err.(*Error).Msg)
	}
	p.RetryableCategories = cats
	return p, nil
}

// resolve checks a backoff and fills its defaults.
func (bo Backoff) resolve() (Backoff, error) {
	switch bo.Kind {
	case "":
		bo.Kind = BackoffExponential
	case BackoffExponential, BackoffFixed:
	default:
		return bo, validationf(CodeInvalidInput, "backoff kind %q is unknown", bo.Kind)
	}
	if bo.Initial < 0 || bo.Max < 0 {
		return bo, validationf(CodeInvalidInput, "backoff durations must not be negative")
	}
	if bo.Initial == 0 && !bo.ZeroDelay {
		bo.Initial = BackoffInitialDefault
	}
	bo.Max = max(cmp.Or(bo.Max, BackoffMaxDefault), bo.Initial)
	bo.Multiplier = cmp.Or(bo.Multiplier, BackoffMultiplierDefault)
	if bo.Multiplier < 1 || math.IsNaN(bo.Multiplier) || bo.Multiplier > maxBackoffMultiplier {
		return bo, validationf(CodeInvalidInput, "backoff multiplier %v out of range 1..%d", bo.Multiplier, maxBackoffMultiplier)
	}
	if bo.Jitter < 0 || bo.Jitter > 1 || math.IsNaN(bo.Jitter) {
		return bo, validationf(CodeInvalidInput, "backoff jitter %v out of range 0..1", bo.Jitter)
	}
	return bo, nil
}

// Resolve checks a grant's arguments and fills GrantTTL's default.
func (a IssueClaimGrantArgs) Resolve() (IssueClaimGrantArgs, error) {
	if err := a.Lane.Validate(); err != nil {
		return a, err
	}
	var err error
	a.Capabilities, a.GrantTTL, err = resolveGrant(a.WorkerID, a.WorkerInstanceID, a.Capabilities, a.GrantTTL)
	return a, err
}

// resolveGrant checks a grant's worker, normalizes its capabilities and
// fills its TTL's default.
func resolveGrant(w WorkerID, wi WorkerInstanceID, caps []string, ttl time.Duration) ([]string, time.Duration, error) {
	if err := w.Validate(); err != nil {
		return caps, ttl, err
	}
	if err := wi.Validate(); err != nil {
		return caps, ttl, err
	}
	caps, err := NormalizeCapabilities(caps)
	if err != nil {
		return caps, ttl, err
	}
	ttl, err = orDefault("grant ttl", ttl, GrantTTLDefault)
	return caps, ttl, err
}

// Resolve checks a claim's arguments and fills LeaseTTL's default.
func (a ClaimExecutionArgs) Resolve() (ClaimExecutionArgs, error) {
	if err := validateWorker(a.Lane, a.WorkerID, a.WorkerInstanceID); err != nil {
		return a, err
	}
	var err error
	a.LeaseTTL, err = orDefault("lease ttl", a.LeaseTTL, LeaseTTLDefault)
	return a, err
}

// Resolve checks a fused claim's arguments and fills Max's and LeaseTTL's
// defaults (the partition range is the backend's to check).
func (a FusedClaimArgs) Resolve() (FusedClaimArgs, error) {
	if err := validateWorker(a.Lane, a.WorkerID, a.WorkerInstanceID); err != nil {
		return a, err
	}
	var err error
	if a.Capabilities, err = NormalizeCapabilities(a.Capabilities); err != nil {
		return a, err
	}
	a.Max = max(a.Max, 1)
	a.LeaseTTL, err = orDefault("lease ttl", a.LeaseTTL, LeaseTTLDefault)
	return a, err
}

// Resolve checks a reclaim grant's arguments and fills GrantTTL's default.
func (a IssueReclaimGrantArgs) Resolve() (IssueReclaimGrantArgs, error) {
	var err error
	a.Capabilities, a.GrantTTL, err = resolveGrant(a.WorkerID, a.WorkerInstanceID, a.Capabilities, a.GrantTTL)
	return a, err
}

// Resolve checks a reclaim's arguments and fills LeaseTTL's and
// MaxReclaims' defaults.
func (a ReclaimExecutionArgs) Resolve() (ReclaimExecutionArgs, error) {
	if err := validateWorker(a.Lane, a.WorkerID, a.WorkerInstanceID); err != nil {
		return a, err
	}
	if a.MaxReclaims < 0 {
		return a, validationf(CodeInvalidInput, "max reclaims is negative")
	}
	if a.MaxReclaims == 0 {
		a.MaxReclaims = MaxReclaimsDefault
	}
	var err error
	a.LeaseTTL, err = orDefault("lease ttl", a.LeaseTTL, LeaseTTLDefault)
	return a, err
}

// Resolve checks a registration (its TTL must be positive) and normalizes
// its capabilities.
func (r WorkerRegistration) Resolve() (WorkerRegistration, error) {
	if err := r.InstanceID.Validate(); err != nil {
		return r, err
	}
	if err := r.WorkerID.Validate(); err != nil {
		return r, err
	}
	if r.TTL <= 0 {
		return r, validationf(CodeInvalidInput, "registration ttl must be positive")
	}
	for _, l := range r.Lanes {
		if err := l.Validate(); err != nil {
			return r, err
		}
	}
	var err error
	r.Capabilities, err = NormalizeCapabilities(r.Capabilities)
	return r, err
}

func validateWorker(lane LaneID, w WorkerID, wi WorkerInstanceID) error {
	if err := lane.Validate(); err != nil {
		return err
	}
	if err := w.Validate(); err != nil {
		return err
	}
	return wi.Validate()
}

func notNegative(what string, d time.Duration) error {
	if d < 0 {
		return validationf(CodeInvalidInput, "%s is negative", what)
	}
	return nil
}

// orDefault returns d, or def when d is zero; a negative d is an error.
func orDefault(what string, d, def time.Duration) (time.Duration, error) {
	if err := notNegative(what, d); err != nil {
		return d, err
	}
	if d == 0 {
		return def, nil
	}
	return d, nil
}

// Recovery defaults.
const (
	// MaxReclaimsDefault caps an execution's interruptions (lost leases,
	// shutdowns); at the cap it fails terminally.
	MaxReclaimsDefault = 100
	// MaxReplaysDefault caps how often a terminal execution is run again.
	MaxReplaysDefault = 10
)

// Resolve checks an offer's worker, capabilities and lease TTL, and fills
// LeaseTTL's default. The lease ids and the offer TTL's bounds are the
// backend's to check (they depend on how it stores offers).
func (a OfferArgs) Resolve() (OfferArgs, error) {
	if err := validateWorker(a.Lane, a.WorkerID, a.WorkerInstanceID); err != nil {
		return a, err
	}
	var err error
	if a.Capabilities, err = NormalizeCapabilities(a.Capabilities); err != nil {
		return a, err
	}
	if a.Quota != "" {
		if err := a.Quota.Validate(); err != nil {
			return a, err
		}
	}
	a.LeaseTTL, err = orDefault("lease ttl", a.LeaseTTL, LeaseTTLDefault)
	return a, err
}
