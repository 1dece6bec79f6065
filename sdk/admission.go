package sdk

import (
	"context"
	"time"
)

// Admission: quotas, budgets and lane policies. A lane's policy (pause, a
// quota, budgets) is operator configuration the Worker reads through the
// backend's cache: a lane without one is claimed exactly as before (no
// added call or command), a paused lane is not claimed at all, and a lane
// with a quota or budgets is claimed through admission: the quota admits
// (or says when to try again) before the claim, a budget over a hard limit
// holds the lane's work back, and work that cannot be admitted is parked
// (StateRateLimited) until the window allows, then comes back by itself.

// QuotaID names a quota policy (a name, as lanes are).
type QuotaID string

// Validate checks a quota id like a lane name; ':' is not allowed either.
func (q QuotaID) Validate() error { return validatePolicyName("quota id", string(q)) }

// BudgetID names a budget (a name, as lanes are).
type BudgetID string

// Validate checks a budget id like a lane name; ':' is not allowed either.
func (b BudgetID) Validate() error { return validatePolicyName("budget id", string(b)) }

func validatePolicyName(what, s string) error {
	if err := validateName(what, s); err != nil {
		return err
	}
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return validationf(CodeInvalidInput, "%s %q: ':' is not allowed", what, truncate(s))
		}
	}
	return nil
}

// QuotaPolicy limits how fast and how much at once a lane's work runs.
type QuotaPolicy struct {
	ID QuotaID
	// Rate admissions per Window (sliding); 0: no rate limit.
	Rate   int
	Window time.Duration
	// Concurrency caps the executions running under the quota at once; 0:
	// no cap. A running execution holds its slot until its attempt ends
	// (the Worker releases it) or, if its worker dies or loses the lease,
	// until its hold lapses (about a lease TTL after the worker's last
	// renewal).
	Concurrency int
}

// Validate checks a policy: a rate needs a window of at least 1ms, and a
// policy needs a rate or a cap.
func (q QuotaPolicy) Validate() error {
	if err := q.ID.Validate(); err != nil {
		return err
	}
	if q.Rate < 0 || q.Concurrency < 0 || q.Window < 0 {
		return validationf(CodeInvalidInput, "quota %q: negative rate, window or concurrency", q.ID)
	}
	if q.Rate == 0 && q.Concurrency == 0 {
		return validationf(CodeInvalidInput, "quota %q: no rate and no concurrency cap", q.ID)
	}
	if q.Rate > 0 && q.Window < time.Millisecond {
		return validationf(CodeInvalidInput, "quota %q: a rate needs a window of 1ms or more", q.ID)
	}
	return nil
}

// BudgetLimit is one dimension's limits; 0 means none. Soft must not
// exceed Hard when both are set, and neither 2^53 (the engine counts in
// float64, exact up to there, as usage reports are).
type BudgetLimit struct{ Hard, Soft uint64 }

// Budget is a budget's definition.
type Budget struct {
	ID BudgetID
	// Limits per dimension ("tokens", "usd_micros", ...): names as lanes
	// are; 1..32 of them.
	Limits map[string]BudgetLimit
}

// MaxBudgetDimensions bounds a budget's dimensions and a report's.
const MaxBudgetDimensions = 32

// Validate checks a budget definition.
func (b Budget) Validate() error {
	if err := b.ID.Validate(); err != nil {
		return err
	}
	if len(b.Limits) == 0 || len(b.Limits) > MaxBudgetDimensions {
		return validationf(CodeInvalidInput, "budget %q: 1..%d dimensions", b.ID, MaxBudgetDimensions)
	}
	for d, l := range b.Limits {
		if err := validateName("budget dimension", d); err != nil {
			return err
		}
		if l.Hard > 1<<53 || l.Soft > 1<<53 {
			return validationf(CodeInvalidInput, "budget %q dimension %q: limit over 2^53", b.ID, d)
		}
		if l.Hard > 0 && l.Soft > l.Hard {
			return validationf(CodeInvalidInput, "budget %q dimension %q: soft limit over the hard one", b.ID, d)
		}
	}
	return nil
}

// UsageReport adds usage to a budget.
type UsageReport struct {
	Budget BudgetID
	// Usage per dimension: amounts to add (each dimension must be the
	// budget's to be limited; others are counted without limit).
	Usage map[string]uint64
	// DedupKey, when set, makes a repeated report (a retry after a lost
	// reply) ALREADY_APPLIED instead of counted twice, for 24h.
	DedupKey string
}

// Validate checks a report.
func (r UsageReport) Validate() error {
	if err := r.Budget.Validate(); err != nil {
		return err
	}
	if len(r.Usage) == 0 || len(r.Usage) > MaxBudgetDimensions {
		return validationf(CodeInvalidInput, "usage report: 1..%d dimensions", MaxBudgetDimensions)
	}
	for d, v := range r.Usage {
		if err := validateName("budget dimension", d); err != nil {
			return err
		}
		if v > 1<<53 {
			return validationf(CodeInvalidInput, "usage report: dimension %q amount over 2^53", d)
		}
	}
	if len(r.DedupKey) > 512 {
		return validationf(CodeInvalidInput, "usage report: dedup key over 512 bytes")
	}
	return nil
}

// UsageStatus is how a usage report went.
type UsageStatus string

// The usage statuses.
const (
	UsageOK             UsageStatus = "ok"
	UsageSoftBreach     UsageStatus = "soft_breach"     // counted; a soft limit is now crossed
	UsageHardBreach     UsageStatus = "hard_breach"     // NOT counted: it would cross a hard limit
	UsageAlreadyApplied UsageStatus = "already_applied" // the dedup key was seen: not counted again
)

// UsageOutcome reports a usage report: for a breach, the dimension, its
// usage (after the report for a soft breach, before it for a hard one)
// and the limit.
type UsageOutcome struct {
	Status    UsageStatus
	Dimension string
	Current   uint64
	Limit     uint64
}

// BudgetStatus is a budget's limits and usage.
type BudgetStatus struct {
	ID        BudgetID
	Limits    map[string]BudgetLimit
	Used      map[string]uint64
	CreatedAt time.Time
	ResetAt   time.Time // zero until the first reset
}

// HardBreached returns a dimension whose usage reached its hard limit
// ("" when none): the budget admits no more work.
func (s BudgetStatus) HardBreached() string {
	for d, l := range s.Limits {
		if l.Hard > 0 && s.Used[d] >= l.Hard {
			return d
		}
	}
	return ""
}

// LanePolicy is a lane's admission configuration.
type LanePolicy struct {
	// Paused: the lane's work is not claimed or handed off (running work
	// finishes); resuming makes it claimable at once.
	Paused bool
	// Quota admits every claim of the lane's work ("" none).
	Quota QuotaID
	// Budgets hold the lane's work back while one of them is over a hard
	// limit.
	Budgets []BudgetID
}

// Admits reports whether claims of the lane go through admission.
func (p LanePolicy) Admits() bool { return p.Quota != "" || len(p.Budgets) > 0 }

// Admission is the outcome of an admission check.
type Admission struct {
	Admitted bool
	// Reason when not admitted: "rate_limited", "concurrency", "budget",
	// or "paused" (a claim on a paused lane: ClaimForWorker).
	Reason string
	// RetryAfter: when trying again may succeed.
	RetryAfter time.Duration
	// Budget and Dimension name the budget over its hard limit.
	Budget    BudgetID
	Dimension string
	// Held (with Admitted): the execution held a slot of the quota already,
	// taken by an earlier admission (another claimer's, or this caller's
	// whose reply was lost), left as it was. A claimer that did not take
	// it must not claim or release it.
	Held bool
}

// QuotaAdmission is an admission made for an execution before it was
// handed to an offer (ClaimedTask.Admission): Quota holds a slot for it,
// and Member names its entry in the quota's rate window (GiveBackAdmission
// takes both back; "" without a rate).
type QuotaAdmission struct {
	Quota  QuotaID
	Member string
}

// ClaimForWorkerArgs asks for a scheduler-routed claim on one lane.
type ClaimForWorkerArgs struct {
	Lane             LaneID
	WorkerID         WorkerID
	WorkerInstanceID WorkerInstanceID
	Capabilities     []string
	LeaseTTL         time.Duration
	// Partitions to look at, best first (nil: all).
	Partitions []int
}

// Admission error codes.
const (
	CodeQuotaNotFound  = "quota_not_found"
	CodeBudgetNotFound = "budget_not_found"
)

// Admitter runs budgets, quotas and lane policies (RoleAdmission).
type Admitter interface {
	CreateQuotaPolicy(ctx context.Context, q QuotaPolicy) error
	CreateBudget(ctx context.Context, b Budget) error
	ResetBudget(ctx context.Context, id BudgetID) error
	GetBudgetStatus(ctx context.Context, id BudgetID) (BudgetStatus, error)
	// ReportUsage reports usage on behalf of h's lease: fenced (a stale
	// handle counts nothing).
	ReportUsage(ctx context.Context, h Handle, r UsageReport) (UsageOutcome, error)
	// ReportUsageAdmin reports usage with no lease (an operator's).
	ReportUsageAdmin(ctx context.Context, r UsageReport) (UsageOutcome, error)
	// SetLanePolicy replaces a lane's policy (the zero policy clears it).
	SetLanePolicy(ctx context.Context, lane LaneID, p LanePolicy) error
	// LanePolicy reads a lane's policy (from the backend's cache while the
	// server says it is unchanged).
	LanePolicy(ctx context.Context, lane LaneID) (LanePolicy, error)
	// Admit checks execution id against policy p: its budgets' hard
	// limits, then its quota, which records the admission (and a
	// concurrency hold of about hold) when it admits.
	Admit(ctx context.Context, p LanePolicy, id ExecutionID, hold time.Duration) (Admission, error)
	// ReleaseAdmission ends the concurrency holds of ids under quota q. A
	// hold is the execution's, whoever's admission took it: a caller
	// whose lease on it was lost must not release it (the execution may
	// run under another attempt's hold now); the Worker does not.
	ReleaseAdmission(ctx context.Context, q QuotaID, ids ...ExecutionID) error
	// GiveBackAdmission undoes an admission its holder will not use (a
	// hand-off it hands back): id's hold under q ends and its rate window
	// entry member ("" none) is removed.
	GiveBackAdmission(ctx context.Context, q QuotaID, id ExecutionID, member string) error
	// RefreshAdmissions extends the holds of running ids by hold.
	RefreshAdmissions(ctx context.Context, q QuotaID, hold time.Duration, ids ...ExecutionID) error
	// Park takes a waiting execution out of its lane's eligible set until
	// until (StateRateLimited, reason "rate_limited", "concurrency" or
	// "budget"); the delayed scanner brings it back. False when it was no
	// longer eligible.
	Park(ctx context.Context, id ExecutionID, lane LaneID, until time.Time, reason string) (bool, error)
	// ClaimForWorker is the scheduler-routed claim: the lane's best
	// eligible execution, admitted under the lane's policy, granted and
	// claimed. nil (and the refusal) when nothing could be admitted; work
	// refused by its quota's rate or a budget is parked. The admission and
	// the claim go out together: a refused one whose claim went through is
	// handed back with its attempt unchanged (its next claim resumes it).
	// nil with no refusal means nothing was eligible as this client saw
	// it: a backend may read the lane's heads through a client-side cache,
	// whose invalidation of a create (even this client's own) can come
	// just after the create's reply, so a call right after a create can
	// miss it; a later call, once the invalidation arrived, finds it.
	ClaimForWorker(ctx context.Context, args ClaimForWorkerArgs) (*ClaimedTask, Admission, error)
}
