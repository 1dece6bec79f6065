package sdk

import (
	"context"
	"time"
)

// The interfaces below are optional accelerations. A worker detects them with a
// type assertion and falls back to the EngineBackend calls when a backend lacks
// them, so a minimal backend still works (more slowly).

// RenewResult is the per-lease outcome of a batched renewal.
type RenewResult struct {
	Renewal LeaseRenewal
	Err     error // typed, as Renew would return; nil on success
}

// BatchRenewer renews many leases in as few round trips as the backend can
// (Valkey: one FCALL per partition, all partitions in one pipelined flush).
type BatchRenewer interface {
	// RenewBatch returns one result per handle, in order. The error is for a
	// failure of the whole batch (transport); per-lease outcomes are in results.
	RenewBatch(ctx context.Context, handles []Handle) ([]RenewResult, error)
}

// ClaimedTask is a claimed execution together with its context, ready to hand
// to a handler.
type ClaimedTask struct {
	ClaimedExecution
	Context ExecutionContext
	// Admission, on a hand-off to an offer made under a quota
	// (OfferArgs.Quota), is the admission the create made for it: the
	// receiver holds that quota slot as if it had admitted the execution
	// itself. nil otherwise.
	Admission *QuotaAdmission
}

// WindowScanner scans many partitions of a lane in one round trip.
type WindowScanner interface {
	// ScanEligibleWindow returns, per requested partition (same order), up to
	// limit eligible ids, best first, each with its rank, so a worker can
	// order the heads of several partitions (RankedID.Before). A backend may
	// answer from a cache that trails a write by an invalidation's flight
	// time: a claim of a stale head then fails and the next round rescans.
	ScanEligibleWindow(ctx context.Context, lane LaneID, partitions []int, limit int) ([][]RankedID, error)
}

// RankedID is an eligible execution with its rank in its eligible set: a
// lower rank runs first. The rank orders by priority (higher first), then
// by creation time to the millisecond; equal ranks order by id, and ids the
// SDK mints sort by creation (NewExecutionID), so Before is priority, then
// first in, first out.
type RankedID struct {
	ID   ExecutionID
	Rank float64
}

// Before reports whether a runs before b.
func (a RankedID) Before(b RankedID) bool {
	if a.Rank != b.Rank {
		return a.Rank < b.Rank
	}
	return a.ID.uuidPart() < b.ID.uuidPart()
}

// GrantClaimer issues a grant, claims with it and reads the execution context
// in one round trip. It returns the same typed errors as IssueClaimGrant and
// ClaimExecution (ClaimResumedExecution is used when the attempt was
// interrupted).
type GrantClaimer interface {
	GrantAndClaim(ctx context.Context, grant IssueClaimGrantArgs, leaseTTL time.Duration) (ClaimedTask, error)
}

// FusedClaimArgs asks a partition for up to Max executions in one call.
type FusedClaimArgs struct {
	Lane             LaneID
	Partition        int
	Max              int // default 1
	WorkerID         WorkerID
	WorkerInstanceID WorkerInstanceID
	Capabilities     []string
	LeaseTTL         time.Duration // default 30s
}

// FusedClaimer picks, grants and claims up to Max executions on one partition
// in one call and returns their context inline. Executions the worker lacks
// capabilities for are blocked for routing on the way.
type FusedClaimer interface {
	ClaimFused(ctx context.Context, args FusedClaimArgs) ([]ClaimedTask, error)
}

// ReadinessWatcher tells a worker where work is without probing empty
// partitions, and wakes it when work arrives.
type ReadinessWatcher interface {
	// ReadyPartitions returns the partitions (of those given) whose eligible
	// set for lane is non-empty. Backends serve it from a client-side cache
	// kept fresh by server invalidations, so repeated calls cost nothing
	// while nothing changes.
	ReadyPartitions(ctx context.Context, lane LaneID, partitions []int) ([]int, error)
	// WatchReadiness returns a channel that receives (coalesced) whenever work
	// may have become ready on one of the lanes. It is closed when ctx ends.
	WatchReadiness(ctx context.Context, lanes []LaneID) (<-chan struct{}, error)
}

// Arrival names an execution that just became claimable.
type Arrival struct {
	Lane LaneID
	ID   ExecutionID
}

// ArrivalWatcher hands the ids of new executions to idle workers, so a
// waiting worker claims one at once instead of first reading where work is:
// one round trip after the push instead of two. Arrivals are hints, never
// the only way work is found: one may be dropped (no worker was waiting at
// that instant, a reconnect) and a claim of one may lose to another worker;
// readiness pushes and polling still find every execution.
type ArrivalWatcher interface {
	// WatchArrivals returns a channel of arrivals on lanes. An arrival goes
	// to one watcher that receives it at once (or within a moment), or to
	// none. After ctx ends the channel receives nothing more; it is not
	// closed.
	WatchArrivals(ctx context.Context, lanes []LaneID) (<-chan Arrival, error)
	// TakeArrivals returns up to max recent arrivals on lane that no
	// watcher was receiving when they came (its workers were busy), each
	// once, oldest first: a busy worker's next round claims them without
	// first reading where work is.
	TakeArrivals(lane LaneID, max int) []Arrival
}

// LeaseEventWatcher tells a worker the moment a lease was taken from its
// holder (revoked, or the execution cancelled by an operator), so the
// task's context ends then instead of at the lease's next renewal. An event
// names an execution only; the worker re-checks by renewing that lease now,
// so a stray or forged event costs one renewal and changes nothing.
type LeaseEventWatcher interface {
	// WatchLeaseEvents returns a channel of executions whose lease was taken
	// away; events that find the channel full are dropped (the renewal
	// still finds the loss). After ctx ends it receives nothing more; it is
	// not closed.
	WatchLeaseEvents(ctx context.Context) (<-chan ExecutionID, error)
}

// WorkerRegistration describes a running worker instance.
type WorkerRegistration struct {
	WorkerID     WorkerID
	InstanceID   WorkerInstanceID
	Lanes        []LaneID
	Capabilities []string
	// TTL is how long the registration lives without a heartbeat.
	TTL time.Duration
}

// WorkerRegistry records live worker instances, so routing-blocked work can
// be unblocked when a capable worker is alive.
type WorkerRegistry interface {
	// RegisterWorker fails with ErrWorkerInstanceInUse when a live instance
	// already has the id.
	RegisterWorker(ctx context.Context, reg WorkerRegistration) error
	// HeartbeatWorker extends the registration by its TTL.
	HeartbeatWorker(ctx context.Context, reg WorkerRegistration) error
	DeregisterWorker(ctx context.Context, instance WorkerInstanceID) error
}

// ClaimOffer is one free slot an idle worker offered on a lane: the next
// execution created into the lane's empty eligible set is claimed for it in
// the create call itself and handed over (see ClaimOfferer).
type ClaimOffer struct {
	Lane LaneID
	// LeaseID is the lease a hand-off for this offer carries: it names the
	// offer, and is spent once taken.
	LeaseID string
	// Ref is the backend's own reference to the posted offer.
	Ref string
	// Partition is the partition whose creates the offer serves when the
	// backend keeps offers per partition (Valkey on a cluster, where a
	// create reaches its own slot only), or -1 when it serves every
	// partition's (one server).
	Partition int
}

// OfferArgs asks for one claim offer on Lane per lease id.
type OfferArgs struct {
	Lane LaneID
	// LeaseIDs name the offers, one each (NewToken): an offer's hand-off
	// carries its lease id, so the worker knows it even before the offer
	// call returns.
	LeaseIDs         []string
	WorkerID         WorkerID
	WorkerInstanceID WorkerInstanceID
	Capabilities     []string
	LeaseTTL         time.Duration // default 30s
	// TTL is how long an offer stands unless refreshed: a worker that died
	// idle stops receiving work after it. Required.
	TTL time.Duration
	// Quota, when set, is the quota Lane is claimed under: a create hands
	// work to these offers only after admitting it under Quota, and the
	// hand-off carries the admission (ClaimedTask.Admission); a hand-off
	// that cannot be admitted skips them. Default "" (a lane without a
	// quota). A backend that cannot admit inside its hand-offs refuses
	// such offers with an Unavailable error. The role does not check the
	// lane's policy: an offer without Quota on a lane under a quota or a
	// budget takes work unadmitted. The Worker never makes one (it offers
	// on such a lane only with its quota, on one server, and only when the
	// lane has no budgets); a caller of this role must do the same.
	Quota QuotaID
}

// ClaimOfferer lets an idle worker be handed new executions as they are
// created, claimed for it inside the create: the time from submit to a held
// lease is the submit's round trip, with no claim call after it. This is
// how a blocked BLPOP client is served; a worker that is busy, or work that
// arrives behind a backlog, goes through the claim path as before.
//
// Offers reserve slots: the worker counts each open offer as a running task
// until it is taken (its hand-off arrives) or withdrawn.
type ClaimOfferer interface {
	// WatchHandoffs calls deliver with each execution handed to instance's
	// offers, one at a time, until ctx ends; instance must be watched
	// before it offers. deliver runs on the backend's reader and must not
	// block (no hop to another goroutine stands between the hand-off and
	// the task). Each hand-off is delivered at most once; one lost on the
	// way (the connection broke as it was read, or ctx ended first) is
	// recovered when its lease expires, like a crashed worker's.
	WatchHandoffs(ctx context.Context, instance WorkerInstanceID, deliver func(ClaimedTask)) error
	// OfferClaims posts one offer per args.LeaseIDs and returns them, in
	// that order.
	OfferClaims(ctx context.Context, args OfferArgs) ([]ClaimOffer, error)
	// RefreshOffers extends the offers by ttl; taken reports, per offer,
	// whether it was gone (taken, so its hand-off is on its way, or expired).
	RefreshOffers(ctx context.Context, offers []ClaimOffer, ttl time.Duration) (taken []bool, err error)
	// WithdrawOffers takes the offers back; taken reports, per offer,
	// whether it was gone. Unlike RefreshOffers, an offer that expired unseen
	// may read as not taken (the worker then frees its slot at once, which
	// is right: no hand-off can come for it).
	WithdrawOffers(ctx context.Context, offers []ClaimOffer) (taken []bool, err error)
}

// CompleteOfferer completes a task and offers the slot it frees in the same
// round trip, so a worker that runs one task after another at a rate below
// its capacity keeps its slots offered without a call of its own.
type CompleteOfferer interface {
	// CompleteAndOffer completes h as Complete does (err is Complete's
	// error) and, when that lands, posts offer as OfferClaims does. offers
	// is nil when the complete did not land, or when the offer was refused
	// (offerErr says why; the complete then went ahead alone).
	CompleteAndOffer(ctx context.Context, h Handle, result []byte, offer OfferArgs) (offers []ClaimOffer, offerErr, err error)
}

// CompleteBatcher completes many tasks' executions in as few round trips as
// the backend can (Valkey: one server takes any mix of partitions in one
// FCALL; a cluster one FCALL per partition, pipelined), each exactly as
// Complete (or, with an offer, CompleteAndOffer) would. A worker sends the
// completions that gathered while its previous batch was in flight, so a
// completion waits at most for one batch's round trip (WorkerStats:
// CompleteBatches, CompleteBatchMax).
type CompleteBatcher interface {
	// CompleteBatch returns one outcome per item, in order. A failure of a
	// whole call (transport) is every item's Err in that call. The caller
	// may reuse items once it returns: it is not kept.
	CompleteBatch(ctx context.Context, items []CompleteItem) []CompleteOutcome
}

// CompleteItem is one completion of a batch.
type CompleteItem struct {
	Handle Handle
	Result []byte // nil stores none
	// Offer, when set, is posted as OfferClaims does when the complete
	// lands (only with RoleCompleteOffer: a backend without hand-offs
	// refuses it in OfferErr and completes alone).
	Offer *OfferArgs
}

// CompleteOutcome is one item's outcome: Err as Complete would return it;
// Offers and OfferErr as CompleteAndOffer's.
type CompleteOutcome struct {
	Err      error
	Offers   []ClaimOffer
	OfferErr error
	// Handoffs are executions handed to the item's own Offers in the same
	// call (a flow member's ready children): each is delivered here
	// instead of to WatchHandoffs, and the caller runs it, or hands it
	// back, as a hand-off delivered there. Nil for a plain completion.
	Handoffs []ClaimedTask
}

// TerminalWatcher waits for an execution to end without polling: it is
// woken by the server when the execution's record changes.
type TerminalWatcher interface {
	// AwaitTerminal returns the execution's terminal state once it has
	// one, or ctx's error; an unknown id is ErrExecutionNotFound.
	AwaitTerminal(ctx context.Context, id ExecutionID) (PublicState, error)
	// AwaitResult is AwaitTerminal that also returns the result of an
	// execution that completed (nil for another terminal state), read, where
	// the backend can, in the round trip that saw the end.
	AwaitResult(ctx context.Context, id ExecutionID) (PublicState, []byte, error)
}

// CompletionFilter narrows a completion subscription; empty fields match
// everything.
type CompletionFilter struct {
	Lanes []LaneID
	// Tags must all be on the execution with these values.
	Tags map[string]string
}

// Completion is one terminal outcome.
type Completion struct {
	ExecutionID ExecutionID
	Lane        LaneID
	State       PublicState // completed, failed, cancelled, expired, skipped
	At          time.Time   // when it ended (server time)
	// FlowID is the execution's flow; "" outside flows (the only case until
	// flows exist).
	FlowID FlowID
	// Cursor resumes a subscription right after this completion.
	Cursor string
}

// CompletionSubscriber streams terminal outcomes (RoleCompletions).
type CompletionSubscriber interface {
	// SubscribeCompletions calls fn with every execution that ends, from
	// cursor ("" = from now; a Completion's Cursor = right after it),
	// until ctx ends or fn returns an error (returned). It resumes exactly
	// within the retention of terminal executions: nothing missed, nothing
	// twice.
	SubscribeCompletions(ctx context.Context, filter CompletionFilter, cursor string, fn func(Completion) error) error
}

// LeaseEventKind names a lease event.
type LeaseEventKind string

// The lease events.
const (
	// LeaseAcquired: a lease was taken (a claim, a hand-off, the claim that
	// resumes a delayed or suspended attempt).
	LeaseAcquired LeaseEventKind = "acquired"
	// LeaseRenewedLate: a renewal landed with less than a quarter of the
	// new TTL left on the lease; Reason holds the milliseconds that were
	// left. Renewers renew with two thirds left, so this marks a holder
	// that is falling behind.
	LeaseRenewedLate LeaseEventKind = "renewed_late"
	// LeaseRevoked: an operator took the lease; Reason is theirs.
	LeaseRevoked LeaseEventKind = "revoked"
	// LeaseExpired: the engine ended an attempt whose lease expired or was
	// revoked; Reason says which.
	LeaseExpired LeaseEventKind = "expired"
	// LeaseReclaimed: a worker took over an interrupted attempt's
	// execution with a reclaim grant (the new lease's id and epoch).
	LeaseReclaimed LeaseEventKind = "reclaimed"
	// LeaseReleased: the lease ended otherwise; Reason is completed,
	// failed, retry, delayed, suspended, cancelled, attempt_timeout or
	// deadline.
	LeaseReleased LeaseEventKind = "released"
)

// LeaseEvent is one entry of the lease history.
type LeaseEvent struct {
	ExecutionID ExecutionID
	Lane        LaneID
	Kind        LeaseEventKind
	LeaseID     string
	Epoch       uint64
	Reason      string
	// WorkerInstance holds the new holder, for acquired and reclaimed.
	WorkerInstance WorkerInstanceID
	At             time.Time // server time of the event
	// Cursor resumes a subscription right after this event.
	Cursor string
}

// LeaseHistoryFilter narrows a lease-history subscription; empty fields
// match everything.
type LeaseHistoryFilter struct {
	Lanes []LaneID
	// Tags must all be on the execution with these values.
	Tags map[string]string
}

// LeaseHistorySubscriber streams lease events (RoleLeaseHistory) of the
// executions created with CreateExecutionArgs.LeaseHistory.
type LeaseHistorySubscriber interface {
	// SubscribeLeaseHistory calls fn with every lease event from cursor
	// ("" = from now; an event's Cursor = right after it), in order within
	// a partition, until ctx ends or fn returns an error (returned). A
	// cursor resumes exactly while its events are retained (the history
	// keeps about the last 10,000 events per partition): nothing missed,
	// nothing twice.
	SubscribeLeaseHistory(ctx context.Context, filter LeaseHistoryFilter, cursor string, fn func(LeaseEvent) error) error
}

// Role names an optional backend role: one of the interfaces in this file
// (or BatchSubmitter). Routing capabilities (WorkerConfig.Capabilities) are
// a different thing: tokens a worker advertises and an execution requires.
type Role string

// The optional roles.
const (
	RoleBatchRenew     Role = "batch_renew"     // BatchRenewer
	RoleWindowScan     Role = "window_scan"     // WindowScanner
	RoleGrantClaim     Role = "grant_claim"     // GrantClaimer
	RoleFusedClaim     Role = "fused_claim"     // FusedClaimer
	RoleReadiness      Role = "readiness"       // ReadinessWatcher
	RoleArrivals       Role = "arrivals"        // ArrivalWatcher
	RoleLeaseEvents    Role = "lease_events"    // LeaseEventWatcher
	RoleWorkerRegistry Role = "worker_registry" // WorkerRegistry
	RoleClaimOffers    Role = "claim_offers"    // ClaimOfferer
	RoleCompleteOffer  Role = "complete_offer"  // CompleteOfferer
	RoleBatchSubmit    Role = "batch_submit"    // BatchSubmitter
	RoleCompleteBatch  Role = "complete_batch"  // CompleteBatcher
	RoleEngineMonitor  Role = "engine_monitor"  // EngineMonitor
	RoleWaiting        Role = "waiting"         // Waiter
	RoleStreams        Role = "streams"         // Streamer
	RoleTerminalWatch  Role = "terminal_watch"  // TerminalWatcher
	RoleCompletions    Role = "completions"     // CompletionSubscriber
	RoleLeaseHistory   Role = "lease_history"   // LeaseHistorySubscriber
	RoleFlows          Role = "flows"           // Flower
	RoleAdmission      Role = "admission"       // Admitter
	RoleSchedules      Role = "schedules"       // Scheduler
)

// Features names a backend and the optional roles its configuration enables.
type Features struct {
	Family  string // "valkey"
	Version string // library or schema version
	// Roles lists the enabled optional roles. A backend whose type has a
	// role's methods but whose configuration turns the role off (Valkey:
	// hand-offs when disabled, readiness without client-side caching) leaves
	// it out, so nobody calls it.
	Roles []Role
}

// Has reports whether r is enabled.
func (f Features) Has(r Role) bool {
	for _, x := range f.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// BackendRoles holds a backend's enabled optional roles; a nil field is a
// role the backend lacks or has turned off.
type BackendRoles struct {
	BatchRenewer      BatchRenewer
	WindowScanner     WindowScanner
	GrantClaimer      GrantClaimer
	FusedClaimer      FusedClaimer
	ReadinessWatcher  ReadinessWatcher
	ArrivalWatcher    ArrivalWatcher
	LeaseEventWatcher LeaseEventWatcher
	WorkerRegistry    WorkerRegistry
	ClaimOfferer      ClaimOfferer
	CompleteOfferer   CompleteOfferer
	BatchSubmitter    BatchSubmitter
	EngineMonitor     EngineMonitor
	CompleteBatcher   CompleteBatcher
	Waiter            Waiter
	Streamer          Streamer
	TerminalWatcher   TerminalWatcher
	Completions       CompletionSubscriber
	LeaseHistory      LeaseHistorySubscriber
	Flows             Flower
	Admission         Admitter
	Schedules         Scheduler
}

// RolesOf is the one way to discover a backend's optional roles: a role is
// used when the backend implements its interface and lists it in
// Features().Roles. The Worker, the Client and sdktest all go through it.
func RolesOf(b EngineBackend) BackendRoles {
	f := b.Features()
	var r BackendRoles
	r.BatchRenewer = roleOf[BatchRenewer](b, f, RoleBatchRenew)
	r.WindowScanner = roleOf[WindowScanner](b, f, RoleWindowScan)
	r.GrantClaimer = roleOf[GrantClaimer](b, f, RoleGrantClaim)
	r.FusedClaimer = roleOf[FusedClaimer](b, f, RoleFusedClaim)
	r.ReadinessWatcher = roleOf[ReadinessWatcher](b, f, RoleReadiness)
	r.ArrivalWatcher = roleOf[ArrivalWatcher](b, f, RoleArrivals)
	r.LeaseEventWatcher = roleOf[LeaseEventWatcher](b, f, RoleLeaseEvents)
	r.WorkerRegistry = roleOf[WorkerRegistry](b, f, RoleWorkerRegistry)
	r.ClaimOfferer = roleOf[ClaimOfferer](b, f, RoleClaimOffers)
	r.CompleteOfferer = roleOf[CompleteOfferer](b, f, RoleCompleteOffer)
	r.BatchSubmitter = roleOf[BatchSubmitter](b, f, RoleBatchSubmit)
	r.CompleteBatcher = roleOf[CompleteBatcher](b, f, RoleCompleteBatch)
	r.EngineMonitor = roleOf[EngineMonitor](b, f, RoleEngineMonitor)
	r.Waiter = roleOf[Waiter](b, f, RoleWaiting)
	r.Streamer = roleOf[Streamer](b, f, RoleStreams)
	r.TerminalWatcher = roleOf[TerminalWatcher](b, f, RoleTerminalWatch)
	r.Completions = roleOf[CompletionSubscriber](b, f, RoleCompletions)
	r.LeaseHistory = roleOf[LeaseHistorySubscriber](b, f, RoleLeaseHistory)
	r.Flows = roleOf[Flower](b, f, RoleFlows)
	r.Admission = roleOf[Admitter](b, f, RoleAdmission)
	r.Schedules = roleOf[Scheduler](b, f, RoleSchedules)
	return r
}

func roleOf[T any](b EngineBackend, f Features, r Role) T {
	var zero T
	v, ok := b.(T)
	if !ok || !f.Has(r) {
		return zero
	}
	return v
}
