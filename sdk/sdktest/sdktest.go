package sdktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Harness adapts a backend to the suite.
type Harness struct {
	// New returns a backend connected to an empty keyspace (the suite calls it
	// once per subtest, may reuse a server; it must FLUSH or use a fresh one).
	New func(t *testing.T) sdk.EngineBackend
	// Snapshot returns a deterministic dump of the whole keyspace (key ->
	// type+value digest) so the suite can prove a rejected call wrote nothing.
	// It must leave TTLs out (they shrink between two snapshots).
	Snapshot func(t *testing.T) map[string]string
	// MaxPayloadBytes is the backend's configured payload limit (the suite
	// submits one byte more).
	MaxPayloadBytes int
}

const (
	// subtestTimeout bounds every subtest's context.
	subtestTimeout = 15 * time.Second
	// clockSlack is how far a server-stamped time may stray outside the
	// window the local clock brackets it in (before the call .. after it):
	// millisecond truncation and clock reads on the same host. A server on
	// another host needs clocks synchronised to well within this.
	clockSlack = 25 * time.Millisecond
	// promoteDeadline bounds how long the suite waits for a due delayed
	// execution to be promoted.
	promoteDeadline = 3 * time.Second
	// settleDeadline bounds how long the suite waits for something a backend
	// may do a moment after the call that caused it: a hand-off reaching its
	// worker, a cached read catching up with a write.
	settleDeadline = 3 * time.Second
	// pollInterval is the pause between two polls.
	pollInterval = 5 * time.Millisecond
	// leaseTTL is the lease length of ordinary claims.
	leaseTTL = time.Minute

	workerID       sdk.WorkerID         = "sdktest-worker"
	otherWorkerID  sdk.WorkerID         = "sdktest-other-worker"
	workerInstance sdk.WorkerInstanceID = "sdktest-worker-1"
)

// Run runs the conformance suite against the backend h builds. Subtests run
// sequentially, each on a fresh backend from h.New.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("sdktest: Harness.New is nil")
	}
	if h.Snapshot == nil {
		t.Log("sdktest: Harness.Snapshot is nil: write-nothing checks only check the error")
	}
	for _, st := range suite {
		t.Run(st.name, func(t *testing.T) {
			if st.fn != nil {
				st.fn(newEnv(t, h))
				return
			}
			for _, sub := range st.sub {
				t.Run(sub.name, func(t *testing.T) { sub.fn(newEnv(t, h)) })
			}
		})
	}
}

type subtest struct {
	name string
	fn   func(*env)
	sub  []subtest // instead of fn: nested subtests, each on a fresh backend
}

// suite lists the subtests in the order Run runs them.
var suite = []subtest{
	{name: "lifecycle", fn: testLifecycle},
	{name: "retry", sub: []subtest{
		{name: "fixed", fn: testRetryFixed},
		{name: "exponential", fn: testRetryExponential},
		{name: "retryable_categories", fn: testRetryableCategories},
	}},
	{name: "zero_delay_retry", fn: testZeroDelayRetry},
	{name: "priority_then_fifo", fn: testPriorityThenFIFO},
	{name: "idempotent_create", fn: testIdempotentCreate},
	{name: "delay", fn: testDelay},
	{name: "fencing", fn: testFencing},
	{name: "capabilities", fn: testCapabilities},
	{name: "grant_contention", fn: testGrantContention},
	{name: "cancel", fn: testCancel},
	{name: "bad_input_writes_nothing", fn: testBadInput},
	{name: "list", fn: testList},
	{name: "unknown_execution", fn: testUnknownExecution},
	{name: "recovery", sub: []subtest{
		{name: "reclaim_after_revoke", fn: testReclaimAfterRevoke},
		{name: "reclaim_after_expiry", fn: testReclaimAfterExpiry},
		{name: "reclaim_rejections", fn: testReclaimRejections},
		{name: "reclaim_cap", fn: testReclaimCap},
		{name: "replay", fn: testReplay},
		{name: "resume_grant", fn: testResumeGrant},
		{name: "execution_info", fn: testExecutionInfo},
	}},

	// The optional roles (sdk/roles.go): each subtest skips when
	// sdk.RolesOf says the backend lacks its role.
	{name: "roles_listed", fn: testRolesListed},
	{name: "batch_renew", sub: []subtest{
		{name: "per_handle_results", fn: testBatchRenewPerHandle},
		{name: "partitions_and_ttls", fn: testBatchRenewPartitions},
	}},
	{name: "window_scan", fn: testWindowScan},
	{name: "grant_claim", sub: []subtest{
		{name: "claim_with_context", fn: testGrantClaim},
		{name: "rejections", fn: testGrantClaimRejections},
		{name: "resumed", fn: testGrantClaimResumed},
	}},
	{name: "fused_claim", sub: []subtest{
		{name: "order_and_max", fn: testFusedOrder},
		{name: "capabilities_and_grants", fn: testFusedCapabilities},
		{name: "resumed", fn: testFusedResumed},
	}},
	{name: "batch_submit", fn: testBatchSubmit},
	{name: "complete_batch", sub: []subtest{
		{name: "items", fn: testCompleteBatch},
		{name: "offers_take_backlog", fn: testCompleteBatchBacklog},
	}},
	{name: "waiting", sub: []subtest{
		{name: "suspend_resume", fn: testSuspendResume},
		{name: "conditions", fn: testConditions},
		{name: "pending_waitpoint", fn: testPendingWaitpoint},
		{name: "dedup", fn: testWaitDedup},
		{name: "timeouts", fn: testSuspensionTimeouts},
		{name: "cancel", fn: testSuspendedCancel},
		{name: "stale_fence", fn: testSuspendStaleFence},
		{name: "tokens", fn: testWaitpointTokens},
		{name: "resume_handoff", fn: testResumeHandoff},
		{name: "signal_deliveries", fn: testSignalDeliveries},
		{name: "signal_cap", fn: testSignalCap},
	}},
	{name: "streams", sub: []subtest{
		{name: "round_trip", fn: testStreamRoundTrip},
		{name: "fencing_and_limits", fn: testStreamFencingAndLimits},
		{name: "summary", fn: testStreamSummary},
		{name: "live", fn: testStreamLive},
	}},
	{name: "await_terminal", fn: testAwaitTerminal},
	{name: "completions", fn: testCompletions},
	{name: "lease_history", fn: testLeaseHistory},
	{name: "flows", sub: []subtest{
		{name: "chain", fn: testFlowChain},
		{name: "policies", fn: testFlowPolicies},
		{name: "incremental", fn: testFlowIncremental},
		{name: "cancel", fn: testFlowCancel},
		{name: "wait_children", fn: testFlowWaitChildren},
		{name: "handoff", fn: testFlowHandoff},
		{name: "bad_input", fn: testFlowBadInput},
	}},
	{name: "admission", sub: []subtest{
		{name: "quota_rate", fn: testQuotaRate},
		{name: "quota_concurrency", fn: testQuotaConcurrency},
		{name: "budgets", fn: testBudgets},
		{name: "lane_pause", fn: testLanePause},
		{name: "bad_input", fn: testAdmissionBadInput},
	}},
	{name: "schedules", sub: []subtest{
		{name: "fire_once", fn: testScheduleFireOnce},
		{name: "catch_up", fn: testScheduleCatchUp},
		{name: "states", fn: testScheduleStates},
		{name: "bad_input", fn: testScheduleBadInput},
	}},
	{name: "offers", sub: []subtest{
		{name: "handoff", fn: testHandoff},
		{name: "withdraw", fn: testWithdrawOffers},
		{name: "refresh_and_expiry", fn: testRefreshOffers},
		{name: "complete_and_offer", fn: testCompleteAndOffer},
	}},
}

// env is one subtest's backend and context. Its helpers fail the test on any
// unexpected error, so the subtests read as the scenario they check.
type env struct {
	t   *testing.T
	ctx context.Context
	b   sdk.EngineBackend
	h   Harness
	// roles are the backend's enabled optional roles (sdk.RolesOf).
	roles sdk.BackendRoles
}

func newEnv(t *testing.T, h Harness) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), subtestTimeout)
	t.Cleanup(cancel)
	b := h.New(t)
	if b == nil {
		t.Fatal("sdktest: Harness.New returned nil")
	}
	if n := b.Partitions(); n < 1 {
		t.Fatalf("sdktest: Partitions() = %d, want at least 1", n)
	}
	return &env{t: t, ctx: ctx, b: b, h: h, roles: sdk.RolesOf(b)}
}

// need returns role, a field of e.roles, or skips the subtest when it is
// nil: the backend lacks the role or has it turned off.
func need[T any](e *env, role T, name sdk.Role) T {
	e.t.Helper()
	if any(role) == nil {
		e.t.Skipf("backend lacks %s", name)
	}
	return role
}

// onPartition pins a create to partition p.
func onPartition(args sdk.CreateExecutionArgs, p int) sdk.CreateExecutionArgs {
	args.ID = sdk.NewExecutionID(p)
	return args
}

// somePartitions returns up to limit partitions spread over all of them,
// highest first (a backend that sorts what it is given shows).
func (e *env) somePartitions(limit int) []int {
	n := e.b.Partitions()
	step := max(1, (n+limit-1)/limit)
	var out []int
	for p := n - 1; p >= 0; p -= step {
		out = append(out, p)
	}
	return out
}

// lastPartition is the highest partition: tests that pin ids to one
// partition use it so a backend that ignores the id's tag (and uses 0) fails.
func (e *env) lastPartition() int { return e.b.Partitions() - 1 }

// partition returns the partition of a backend-minted id.
func (e *env) partition(id sdk.ExecutionID) int {
	e.t.Helper()
	p, err := id.Partition()
	if err != nil {
		e.t.Fatalf("backend returned a malformed execution id %q: %v", id, err)
	}
	if p >= e.b.Partitions() {
		e.t.Fatalf("execution id %q is on partition %d, beyond Partitions() = %d", id, p, e.b.Partitions())
	}
	return p
}

// create creates an execution and checks the result.
func (e *env) create(args sdk.CreateExecutionArgs) sdk.ExecutionID {
	e.t.Helper()
	want := sdk.StateWaiting
	if args.DelayUntil.After(time.Now()) {
		want = sdk.StateDelayed
	}
	res, err := e.b.CreateExecution(e.ctx, args)
	if err != nil {
		e.t.Fatalf("CreateExecution(lane %q, kind %q) = %v", args.Lane, args.Kind, err)
	}
	if res.Duplicate {
		e.t.Fatalf("CreateExecution(lane %q) reported a duplicate of %s", args.Lane, res.ID)
	}
	if args.ID != "" && res.ID != args.ID {
		e.t.Fatalf("CreateExecution with ID %s returned ID %s", args.ID, res.ID)
	}
	e.partition(res.ID)
	if res.State != want {
		e.t.Fatalf("CreateExecution %s: state %q, want %q", res.ID, res.State, want)
	}
	return res.ID
}

// simple returns create arguments for an ordinary execution on lane.
func simple(lane sdk.LaneID) sdk.CreateExecutionArgs {
	return sdk.CreateExecutionArgs{Lane: lane, Kind: "sdktest.job", Payload: []byte("{}")}
}

// scan returns the eligible head of lane on p.
func (e *env) scan(lane sdk.LaneID, p, limit int) []sdk.ExecutionID {
	e.t.Helper()
	ids, err := e.b.ScanEligibleExecutions(e.ctx, sdk.ScanEligibleArgs{Lane: lane, Partition: p, Limit: limit})
	if err != nil {
		e.t.Fatalf("ScanEligibleExecutions(%q, %d, %d) = %v", lane, p, limit, err)
	}
	if limit > 0 && len(ids) > limit {
		e.t.Fatalf("ScanEligibleExecutions(%q, %d, %d) returned %d ids", lane, p, limit, len(ids))
	}
	return ids
}

// scannable reports whether id is in its lane's eligible set.
func (e *env) scannable(lane sdk.LaneID, id sdk.ExecutionID) bool {
	e.t.Helper()
	return slices.Contains(e.scan(lane, e.partition(id), 1000), id)
}

func (e *env) requireScannable(lane sdk.LaneID, id sdk.ExecutionID, want bool, when string) {
	e.t.Helper()
	if got := e.scannable(lane, id); got != want {
		e.t.Fatalf("%s: %s scannable = %v, want %v", when, id, got, want)
	}
}

// grant issues a claim grant to workerID.
func (e *env) grant(id sdk.ExecutionID, lane sdk.LaneID, caps ...string) sdk.ClaimGrant {
	e.t.Helper()
	before := time.Now()
	g, err := e.b.IssueClaimGrant(e.ctx, grantArgs(id, lane, workerID, caps...))
	if err != nil {
		e.t.Fatalf("IssueClaimGrant(%s) = %v", id, err)
	}
	if g.ExecutionID != id {
		e.t.Fatalf("IssueClaimGrant(%s) returned a grant for %s", id, g.ExecutionID)
	}
	if !g.ExpiresAt.After(before.Add(-clockSlack)) {
		e.t.Fatalf("IssueClaimGrant(%s): grant expires at %v, before it was issued (%v)", id, g.ExpiresAt, before)
	}
	return g
}

func grantArgs(id sdk.ExecutionID, lane sdk.LaneID, w sdk.WorkerID, caps ...string) sdk.IssueClaimGrantArgs {
	return sdk.IssueClaimGrantArgs{
		ExecutionID: id, Lane: lane, WorkerID: w, WorkerInstanceID: workerInstance,
		Capabilities: caps, GrantTTL: 5 * time.Second,
	}
}

func claimArgs(id sdk.ExecutionID, lane sdk.LaneID, ttl time.Duration) sdk.ClaimExecutionArgs {
	return sdk.ClaimExecutionArgs{
		ExecutionID: id, Lane: lane, WorkerID: workerID, WorkerInstanceID: workerInstance, LeaseTTL: ttl,
	}
}

// claim grants and claims a new attempt, and checks the claim.
func (e *env) claim(id sdk.ExecutionID, lane sdk.LaneID, ttl time.Duration, caps ...string) sdk.ClaimedExecution {
	e.t.Helper()
	e.grant(id, lane, caps...)
	before := time.Now()
	c, err := e.b.ClaimExecution(e.ctx, claimArgs(id, lane, ttl))
	if err != nil {
		e.t.Fatalf("ClaimExecution(%s) = %v", id, err)
	}
	e.checkClaim(c, id, lane, ttl, before, time.Now())
	if c.Handle.Kind != sdk.HandleFresh {
		e.t.Fatalf("ClaimExecution(%s): handle kind %d, want HandleFresh (%d)", id, c.Handle.Kind, sdk.HandleFresh)
	}
	return c
}

// claimResumed grants (unless a grant is already waiting) and claims the
// interrupted attempt.
func (e *env) claimResumed(id sdk.ExecutionID, lane sdk.LaneID, ttl time.Duration, granted bool) sdk.ClaimedExecution {
	e.t.Helper()
	if !granted {
		e.grant(id, lane)
	}
	before := time.Now()
	c, err := e.b.ClaimResumedExecution(e.ctx, claimArgs(id, lane, ttl))
	if err != nil {
		e.t.Fatalf("ClaimResumedExecution(%s) = %v", id, err)
	}
	e.checkClaim(c, id, lane, ttl, before, time.Now())
	e.checkAttempt("ClaimResumedExecution("+string(id)+")", c, sdk.AttemptResumed)
	return c
}

// handleKinds maps the attempt types whose handles are not HandleFresh.
var handleKinds = map[sdk.AttemptType]sdk.HandleKind{
	sdk.AttemptResumed: sdk.HandleResumed,
	sdk.AttemptReclaim: sdk.HandleReclaimed,
}

// checkAttempt fails unless c is an attempt of type typ with the handle
// kind that goes with it.
func (e *env) checkAttempt(what string, c sdk.ClaimedExecution, typ sdk.AttemptType) {
	e.t.Helper()
	kind, ok := handleKinds[typ]
	if !ok {
		kind = sdk.HandleFresh
	}
	if c.AttemptType != typ || c.Handle.Kind != kind {
		e.t.Fatalf("%s: attempt type %q handle kind %d, want %q and kind %d", what, c.AttemptType, c.Handle.Kind, typ, kind)
	}
}

// requireResumed fails unless h continues the attempt of old, the handle
// from before the interruption, under a new lease.
func (e *env) requireResumed(what string, h, old sdk.Handle) {
	e.t.Helper()
	if h.AttemptID != old.AttemptID || h.AttemptIndex != old.AttemptIndex || h.Epoch <= old.Epoch || h.LeaseID == old.LeaseID {
		e.t.Fatalf("%s: attempt %d %s epoch %d lease %s; want attempt %d %s under a new lease after epoch %d",
			what, h.AttemptIndex, h.AttemptID, h.Epoch, h.LeaseID, old.AttemptIndex, old.AttemptID, old.Epoch)
	}
}

// checkTask checks a claim that returned its context inline (GrantAndClaim,
// ClaimFused, a hand-off, a reclaim, a resume grant): the lease as
// checkClaim does, the attempt type and the context.
func (e *env) checkTask(what string, t sdk.ClaimedTask, id sdk.ExecutionID, ttl time.Duration, before, after time.Time, typ sdk.AttemptType, want sdk.ExecutionContext) {
	e.t.Helper()
	e.checkClaim(t.ClaimedExecution, id, want.Lane, ttl, before, after)
	e.checkAttempt(what, t.ClaimedExecution, typ)
	e.checkContext(what+": context", t.Context, want)
}

func (e *env) checkClaim(c sdk.ClaimedExecution, id sdk.ExecutionID, lane sdk.LaneID, ttl time.Duration, before, after time.Time) {
	e.t.Helper()
	h := c.Handle
	if err := h.Validate(); err != nil {
		e.t.Fatalf("claim of %s returned an invalid handle %+v: %v", id, h, err)
	}
	if h.ExecutionID != id || h.Lane != lane {
		e.t.Fatalf("claim of %s on %q returned a handle for %s on %q", id, lane, h.ExecutionID, h.Lane)
	}
	if h.LeaseTTL != ttl {
		e.t.Fatalf("claim of %s: handle LeaseTTL %v, want %v", id, h.LeaseTTL, ttl)
	}
	if h.WorkerInstanceID != "" && h.WorkerInstanceID != workerInstance {
		e.t.Fatalf("claim of %s: handle WorkerInstanceID %q, want %q", id, h.WorkerInstanceID, workerInstance)
	}
	e.requireAround("claim lease expiry", c.ExpiresAt, before.Add(ttl), after.Add(ttl))
	if st := e.state(id); st != sdk.StateActive {
		e.t.Fatalf("after claiming %s: state %q, want active", id, st)
	}
}

// requireAround fails unless at is in [lo-clockSlack, hi+clockSlack].
func (e *env) requireAround(what string, at, lo, hi time.Time) {
	e.t.Helper()
	if at.Before(lo.Add(-clockSlack)) || at.After(hi.Add(clockSlack)) {
		e.t.Fatalf("%s = %v, want within [%v, %v] (±%v)", what, at.Format(time.StampMilli),
			lo.Format(time.StampMilli), hi.Format(time.StampMilli), clockSlack)
	}
}

func (e *env) state(id sdk.ExecutionID) sdk.PublicState {
	e.t.Helper()
	st, err := e.b.ReadExecutionState(e.ctx, id)
	if err != nil {
		e.t.Fatalf("ReadExecutionState(%s) = %v", id, err)
	}
	return st
}

func (e *env) requireState(id sdk.ExecutionID, want sdk.PublicState, when string) {
	e.t.Helper()
	if got := e.state(id); got != want {
		e.t.Fatalf("%s: ReadExecutionState(%s) = %q, want %q", when, id, got, want)
	}
	if got := e.describe(id).State; got != want {
		e.t.Fatalf("%s: DescribeExecution(%s).State = %q, want %q", when, id, got, want)
	}
}

func (e *env) describe(id sdk.ExecutionID) *sdk.ExecutionSnapshot {
	e.t.Helper()
	s, err := e.b.DescribeExecution(e.ctx, id)
	if err != nil {
		e.t.Fatalf("DescribeExecution(%s) = %v", id, err)
	}
	if s == nil {
		e.t.Fatalf("DescribeExecution(%s) = nil for an existing execution", id)
	}
	if s.ID != id {
		e.t.Fatalf("DescribeExecution(%s) described %s", id, s.ID)
	}
	return s
}

func (e *env) promote(lane sdk.LaneID, p int) int {
	e.t.Helper()
	n, err := e.b.PromoteDelayed(e.ctx, sdk.PromoteDelayedArgs{Lane: lane, Partition: p})
	if err != nil {
		e.t.Fatalf("PromoteDelayed(%q, %d) = %v", lane, p, err)
	}
	if n < 0 {
		e.t.Fatalf("PromoteDelayed(%q, %d) = %d", lane, p, n)
	}
	return n
}

// promoteDue polls PromoteDelayed on p until it promotes want executions in
// total, and returns when that happened.
func (e *env) promoteDue(lane sdk.LaneID, p, want int) time.Time {
	e.t.Helper()
	deadline := time.Now().Add(promoteDeadline)
	got := 0
	for {
		got += e.promote(lane, p)
		if got == want {
			return time.Now()
		}
		if got > want {
			e.t.Fatalf("PromoteDelayed(%q, %d) promoted %d, want %d", lane, p, got, want)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("PromoteDelayed(%q, %d) promoted %d of %d within %v", lane, p, got, want, promoteDeadline)
		}
		e.sleep(pollInterval)
	}
}

// readyAgain waits until id, due again (a scheduled retry, a delay that
// passed), is eligible, promoting it when the backend parked it in the
// delayed set.
func (e *env) readyAgain(lane sdk.LaneID, id sdk.ExecutionID) {
	e.t.Helper()
	switch st := e.state(id); st {
	case sdk.StateDelayed:
		e.promoteDue(lane, e.partition(id), 1)
	case sdk.StateWaiting:
	default:
		e.t.Fatalf("execution %s due again is %q, want delayed or waiting", id, st)
	}
	e.requireState(id, sdk.StateWaiting, "due again")
	e.requireScannable(lane, id, true, "due again")
}

// interrupt delays the attempt behind h briefly and waits until it is
// eligible again: its next claim resumes that attempt.
func (e *env) interrupt(h sdk.Handle) {
	e.t.Helper()
	e.must("Delay", e.b.Delay(e.ctx, h, time.Now().Add(20*time.Millisecond)))
	e.readyAgain(h.Lane, h.ExecutionID)
}

// eventually polls cond until it holds, for at most settleDeadline; cond
// says what it saw when it does not hold.
func (e *env) eventually(what string, cond func() (bool, string)) {
	e.t.Helper()
	deadline := time.Now().Add(settleDeadline)
	for polls := 1; ; polls++ {
		ok, saw := cond()
		if ok {
			if polls > 1 {
				e.t.Logf("%s: held after %d polls", what, polls)
			}
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: still %s after %v", what, saw, settleDeadline)
		}
		e.sleep(pollInterval)
	}
}

func (e *env) sleep(d time.Duration) {
	e.t.Helper()
	select {
	case <-time.After(d):
	case <-e.ctx.Done():
		e.t.Fatalf("subtest deadline passed while sleeping: %v", e.ctx.Err())
	}
}

func (e *env) sleepUntil(at time.Time) { e.sleep(time.Until(at)) }

// snapshot returns the harness's keyspace dump, or nil without a Snapshot.
func (e *env) snapshot() map[string]string {
	e.t.Helper()
	if e.h.Snapshot == nil {
		return nil
	}
	s := e.h.Snapshot(e.t)
	if s == nil {
		s = map[string]string{}
	}
	return s
}

// rejects runs call, requires its error to match one of want, and requires
// the keyspace to be unchanged by it. It returns the error.
func (e *env) rejects(what string, call func() error, want ...error) error {
	e.t.Helper()
	before := e.snapshot()
	err := call()
	requireErr(e.t, what, err, want...)
	if e.h.Snapshot != nil {
		requireSameKeyspace(e.t, what, before, e.snapshot())
	}
	return err
}

// requireErr fails unless err matches one of want with errors.Is.
func requireErr(t *testing.T, what string, err error, want ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want %s", what, errNames(want))
	}
	for _, w := range want {
		if errors.Is(err, w) {
			return
		}
	}
	t.Fatalf("%s: got %v (code %q, kind %s), want %s", what, err, sdk.CodeOf(err), sdk.KindOf(err), errNames(want))
}

func errNames(errs []error) string {
	names := make([]string, len(errs))
	for i, err := range errs {
		var e *sdk.Error
		switch {
		case errors.As(err, &e) && e.Code != "":
			names[i] = e.Code
		case errors.As(err, &e):
			names[i] = "kind " + e.Kind.String()
		default:
			names[i] = fmt.Sprint(err)
		}
	}
	return strings.Join(names, " or ")
}

// requireSameKeyspace fails with a readable diff when two snapshots differ.
func requireSameKeyspace(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	var diff []string
	for k, v := range before {
		w, ok := after[k]
		switch {
		case !ok:
			diff = append(diff, "  - "+k+" (deleted)")
		case v != w:
			diff = append(diff, fmt.Sprintf("  ~ %s: %.60q -> %.60q", k, v, w))
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			diff = append(diff, "  + "+k+" (created)")
		}
	}
	if len(diff) == 0 {
		return
	}
	sort.Strings(diff)
	if len(diff) > 20 {
		diff = append(diff[:20], fmt.Sprintf("  … and %d more", len(diff)-20))
	}
	t.Fatalf("%s: the call was rejected but changed the keyspace:\n%s", what, strings.Join(diff, "\n"))
}

// must fails the test on a non-nil error.
func (e *env) must(what string, err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s = %v", what, err)
	}
}

// fail fails the attempt behind h and returns the outcome.
func (e *env) fail(h sdk.Handle, reason, category string) (sdk.FailOutcome, time.Time, time.Time) {
	e.t.Helper()
	before := time.Now()
	out, err := e.b.Fail(e.ctx, h, reason, category)
	if err != nil {
		e.t.Fatalf("Fail(%s, %q, %q) = %v", h.ExecutionID, reason, category, err)
	}
	return out, before, time.Now()
}

// listAll pages through every partition's executions.
func (e *env) listAll() []sdk.ExecutionID {
	e.t.Helper()
	var all []sdk.ExecutionID
	for p := range e.b.Partitions() {
		all = append(all, e.listPartition(p, 100)...)
	}
	return all
}

// listPartition pages through one partition, checking page invariants.
func (e *env) listPartition(p, limit int) []sdk.ExecutionID {
	e.t.Helper()
	var all []sdk.ExecutionID
	var cursor sdk.ExecutionID
	for pages := 0; ; pages++ {
		if pages > 10000 {
			e.t.Fatalf("ListExecutions(%d) did not end after %d pages", p, pages)
		}
		page, err := e.b.ListExecutions(e.ctx, p, cursor, limit)
		if err != nil {
			e.t.Fatalf("ListExecutions(%d, %q, %d) = %v", p, cursor, limit, err)
		}
		if len(page.IDs) > limit {
			e.t.Fatalf("ListExecutions(%d, %q, %d) returned %d ids", p, cursor, limit, len(page.IDs))
		}
		all = append(all, page.IDs...)
		if page.NextCursor == "" {
			break
		}
		if len(page.IDs) == 0 || page.NextCursor != page.IDs[len(page.IDs)-1] {
			e.t.Fatalf("ListExecutions(%d, %q, %d): NextCursor %q is not the page's last id (page %q)", p, cursor, limit, page.NextCursor, page.IDs)
		}
		cursor = page.NextCursor
	}
	if !slices.IsSorted(all) {
		e.t.Fatalf("ListExecutions(%d) is not in id order: %q", p, all)
	}
	if len(slices.Compact(slices.Clone(all))) != len(all) {
		e.t.Fatalf("ListExecutions(%d) repeats ids: %q", p, all)
	}
	return all
}
