package valkeybackend_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// Tests of the documented admission promises (sdk/admission.go, README
// "Admission: budgets, quotas, rate limits and lane pause") that no other
// test checks, or checks only on the happy path. Each runs on one server.

// admEnv is one fresh server with a one-partition backend.
type admEnv struct {
	t     *testing.T
	ctx   context.Context
	addrs []string
	b     *valkeybackend.Backend
}

func newAdmEnv(t *testing.T) *admEnv {
	t.Helper()
	return newAdmEnvOn(t, topologies()[0].addrs(t))
}

func newAdmEnvOn(t *testing.T, addrs []string) *admEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return &admEnv{t: t, ctx: ctx, addrs: addrs, b: freshBackend(t, addrs, valkeybackend.Options{Partitions: 1})}
}

// another connects a second backend (its own client-side cache), as
// another worker process has.
func (e *admEnv) another() *valkeybackend.Backend {
	e.t.Helper()
	return connectOpts(e.t, valkeybackend.Options{Addrs: e.addrs, Partitions: 1}, 1)
}

func (e *admEnv) must(what string, err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
}

func (e *admEnv) quotaLane(lane sdk.LaneID, qp sdk.QuotaPolicy, budgets ...sdk.BudgetID) {
	e.t.Helper()
	e.must("CreateQuotaPolicy", e.b.CreateQuotaPolicy(e.ctx, qp))
	e.must("SetLanePolicy", e.b.SetLanePolicy(e.ctx, lane, sdk.LanePolicy{Quota: qp.ID, Budgets: budgets}))
}

func (e *admEnv) create(args sdk.CreateExecutionArgs) sdk.ExecutionID {
	e.t.Helper()
	if args.Kind == "" {
		args.Kind = "k"
	}
	res, err := e.b.CreateExecution(e.ctx, args)
	e.must("CreateExecution", err)
	return res.ID
}

func (e *admEnv) claim(b *valkeybackend.Backend, lane sdk.LaneID, worker string, ttl time.Duration, caps ...string) (*sdk.ClaimedTask, sdk.Admission) {
	e.t.Helper()
	ct, ad, err := b.ClaimForWorker(e.ctx, sdk.ClaimForWorkerArgs{Lane: lane, WorkerID: sdk.WorkerID(worker),
		WorkerInstanceID: sdk.WorkerInstanceID(worker + "-1"), LeaseTTL: ttl, Capabilities: caps})
	e.must("ClaimForWorker", err)
	return ct, ad
}

// claimSeen is claim, retried (bounded) while it finds nothing and is
// refused nothing: the lane's heads are read through the client-side
// cache, whose invalidation of a create may trail the create's reply
// (ClaimForWorker's doc).
func (e *admEnv) claimSeen(b *valkeybackend.Backend, lane sdk.LaneID, worker string, ttl time.Duration, caps ...string) (*sdk.ClaimedTask, sdk.Admission) {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		ct, ad := e.claim(b, lane, worker, ttl, caps...)
		if ct != nil || ad.Reason != "" || time.Now().After(deadline) {
			return ct, ad
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *admEnv) holds(q sdk.QuotaID) map[sdk.ExecutionID]time.Time {
	e.t.Helper()
	h, err := e.b.QuotaHolds(e.ctx, q)
	e.must("QuotaHolds", err)
	return h
}

// windowSize is how many admissions quota q's rate window holds.
func (e *admEnv) windowSize(q sdk.QuotaID) int64 {
	e.t.Helper()
	_, win := e.b.QuotaKeys(q)
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: e.addrs, DisableCache: true})
	e.must("valkey.NewClient", err)
	defer c.Close()
	n, err := c.Do(e.ctx, c.B().Zcard().Key(win).Build()).AsInt64()
	e.must("ZCARD window", err)
	return n
}

func (e *admEnv) state(id sdk.ExecutionID) sdk.PublicState {
	e.t.Helper()
	st, err := e.b.ReadExecutionState(e.ctx, id)
	e.must("ReadExecutionState", err)
	return st
}

// requireUnchanged fails when the keyspace differs from before.
func (e *admEnv) requireUnchanged(what string, before map[string]string) {
	e.t.Helper()
	after := keyspace(e.t, e.addrs)
	var diff []string
	for k, v := range after {
		if before[k] != v {
			diff = append(diff, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			diff = append(diff, k+" (deleted)")
		}
	}
	if len(diff) > 0 {
		e.t.Errorf("%s wrote %v", what, diff)
	}
}

// TestAdmissionPromiseBadInputWritesNothing: malformed admission calls are
// typed errors (a code of the documented kind), never a panic, and leave
// the keyspace exactly as it was.
func TestAdmissionPromiseBadInputWritesNothing(t *testing.T) {
	e := newAdmEnv(t)
	const lane sdk.LaneID = "bad"
	e.quotaLane(lane, sdk.QuotaPolicy{ID: "q", Rate: 5, Window: time.Minute, Concurrency: 2})
	e.must("CreateBudget", e.b.CreateBudget(e.ctx, sdk.Budget{ID: "bg", Limits: map[string]sdk.BudgetLimit{"t": {Hard: 10}}}))
	id := e.create(sdk.CreateExecutionArgs{Lane: lane})
	other := e.create(sdk.CreateExecutionArgs{Lane: "elsewhere"})
	e.create(sdk.CreateExecutionArgs{Lane: "elsewhere"})
	many := map[string]uint64{}
	manyLimits := map[string]sdk.BudgetLimit{}
	for i := range sdk.MaxBudgetDimensions + 1 {
		many[fmt.Sprintf("d%d", i)] = 1
		manyLimits[fmt.Sprintf("d%d", i)] = sdk.BudgetLimit{Hard: 5}
	}
	done, _ := e.claimSeen(e.b, "elsewhere", "w", time.Minute)
	if done == nil {
		t.Fatal("no claim on a lane without a policy")
	}
	e.must("Complete", e.b.Complete(e.ctx, done.Handle, nil))
	stale := done.Handle
	cases := []struct {
		what string
		call func() error
		want error
	}{
		{"a negative rate", func() error {
			return e.b.CreateQuotaPolicy(e.ctx, sdk.QuotaPolicy{ID: "q2", Rate: -1, Concurrency: 1})
		}, sdk.ErrValidation},
		{"a rate with a sub-millisecond window", func() error {
			return e.b.CreateQuotaPolicy(e.ctx, sdk.QuotaPolicy{ID: "q2", Rate: 1, Window: time.Microsecond})
		}, sdk.ErrValidation},
		{"an empty quota id", func() error { return e.b.CreateQuotaPolicy(e.ctx, sdk.QuotaPolicy{Concurrency: 1}) }, sdk.ErrValidation},
		{"a budget of 33 dimensions", func() error {
			return e.b.CreateBudget(e.ctx, sdk.Budget{ID: "bg2", Limits: manyLimits})
		}, sdk.ErrValidation},
		{"a budget dimension with a space", func() error {
			return e.b.CreateBudget(e.ctx, sdk.Budget{ID: "bg2", Limits: map[string]sdk.BudgetLimit{"a b": {Hard: 1}}})
		}, sdk.ErrValidation},
		{"a budget id with a colon", func() error {
			return e.b.CreateBudget(e.ctx, sdk.Budget{ID: "a:b", Limits: map[string]sdk.BudgetLimit{"t": {Hard: 1}}})
		}, sdk.ErrValidation},
		{"a report over 2^53", func() error {
			_, err := e.b.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: "bg", Usage: map[string]uint64{"t": 1<<53 + 1}})
			return err
		}, sdk.ErrValidation},
		{"a report of 33 dimensions", func() error {
			_, err := e.b.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: "bg", Usage: many})
			return err
		}, sdk.ErrValidation},
		{"a report with a 513-byte dedup key", func() error {
			_, err := e.b.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: "bg", Usage: map[string]uint64{"t": 1},
				DedupKey: strings.Repeat("k", 513)})
			return err
		}, sdk.ErrValidation},
		{"a report with a bad dimension", func() error {
			_, err := e.b.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: "bg", Usage: map[string]uint64{"": 1}})
			return err
		}, sdk.ErrValidation},
		{"a fenced report with a stale lease", func() error {
			_, err := e.b.ReportUsage(e.ctx, stale, sdk.UsageReport{Budget: "bg", Usage: map[string]uint64{"t": 1}})
			return err
		}, sdk.ErrExecutionNotActive},
		{"a reset of an unknown budget", func() error { return e.b.ResetBudget(e.ctx, "nobudget") }, sdk.ErrNotFound},
		{"a report to an unknown budget with a dedup key", func() error {
			_, err := e.b.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: "nobudget", Usage: map[string]uint64{"t": 1}, DedupKey: "k"})
			return err
		}, sdk.ErrNotFound},
		{"a claim with no lease TTL", func() error {
			_, _, err := e.b.ClaimForWorker(e.ctx, sdk.ClaimForWorkerArgs{Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1"})
			return err
		}, sdk.ErrValidation},
		{"a claim on a partition out of range", func() error {
			_, _, err := e.b.ClaimForWorker(e.ctx, sdk.ClaimForWorkerArgs{Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1",
				LeaseTTL: time.Minute, Partitions: []int{7}})
			return err
		}, sdk.ErrValidation},
		{"a claim on a negative partition", func() error {
			_, _, err := e.b.ClaimForWorker(e.ctx, sdk.ClaimForWorkerArgs{Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1",
				LeaseTTL: time.Minute, Partitions: []int{-1}})
			return err
		}, sdk.ErrValidation},
		{"an admission with no hold", func() error {
			_, err := e.b.Admit(e.ctx, sdk.LanePolicy{Quota: "q"}, id, 0)
			return err
		}, sdk.ErrValidation},
		{"an admission of a malformed id", func() error {
			_, err := e.b.Admit(e.ctx, sdk.LanePolicy{Quota: "q"}, "not-an-id", time.Minute)
			return err
		}, sdk.ErrValidation},
		{"a release of a malformed id", func() error { return e.b.ReleaseAdmission(e.ctx, "q", "not-an-id") }, sdk.ErrValidation},
		{"a refresh of a malformed id", func() error {
			return e.b.RefreshAdmissions(e.ctx, "q", time.Minute, id, "not-an-id")
		}, sdk.ErrValidation},
		{"a park on another lane", func() error {
			_, err := e.b.Park(e.ctx, other, lane, time.Now().Add(time.Minute), "budget")
			return err
		}, sdk.ErrValidation},
		{"a park with an unknown reason", func() error {
			_, err := e.b.Park(e.ctx, id, lane, time.Now().Add(time.Minute), "paused")
			return err
		}, sdk.ErrValidation},
		{"a lane policy with a budget id with a colon", func() error {
			return e.b.SetLanePolicy(e.ctx, lane, sdk.LanePolicy{Budgets: []sdk.BudgetID{"a:b"}})
		}, sdk.ErrValidation},
	}
	for _, c := range cases {
		before := keyspace(t, e.addrs)
		var err error
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: panicked: %v", c.what, r)
				}
			}()
			err = c.call()
		}()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v (code %q, kind %s), want %v", c.what, err, sdk.CodeOf(err), sdk.KindOf(err), c.want)
		}
		if err != nil && sdk.CodeOf(err) == "" {
			t.Errorf("%s: error %v has no code", c.what, err)
		}
		e.requireUnchanged(c.what, before)
	}
}

// TestAdmissionPromiseMissingBudgetTakesNoSlot: Admit checks "its
// budgets' hard limits, then its quota, which records the admission ...
// when it admits" (sdk/admission.go, Admitter.Admit), and "a claim that
// fails gives its admission back" (README). A lane policy naming a budget
// that does not exist is refused (budget_not_found); the quota must not
// keep an admission for it: no hold, no window entry, nothing written.
func TestAdmissionPromiseMissingBudgetTakesNoSlot(t *testing.T) {
	e := newAdmEnv(t)
	q := sdk.QuotaID("mbq")
	e.must("CreateQuotaPolicy", e.b.CreateQuotaPolicy(e.ctx, sdk.QuotaPolicy{ID: q, Rate: 1, Window: time.Minute, Concurrency: 1}))
	id := e.create(sdk.CreateExecutionArgs{Lane: "mb"})
	before := keyspace(t, e.addrs)
	_, err := e.b.Admit(e.ctx, sdk.LanePolicy{Quota: q, Budgets: []sdk.BudgetID{"nobudget"}}, id, time.Minute)
	if !errors.Is(err, sdk.ErrNotFound) || sdk.CodeOf(err) != sdk.CodeBudgetNotFound {
		t.Fatalf("Admit with a missing budget = %v, want budget_not_found", err)
	}
	if h, n := e.holds(q), e.windowSize(q); len(h) != 0 || n != 0 {
		t.Errorf("after a refused Admit: holds %v, window %d; want none (nothing admitted)", h, n)
	}
	e.requireUnchanged("Admit with a missing budget", before)
}

// TestAdmissionPromiseClaimMissingBudgetTakesNoSlot: the claim path of
// the same policy (ClaimForWorker: "The admission and the claim go out
// together: a refused one whose claim went through is handed back"; README
// "a claim that fails gives its admission back"): refused with
// budget_not_found, it must spend none of the quota: once the budget
// exists, a rate of 1 per minute still admits the work.
func TestAdmissionPromiseClaimMissingBudgetTakesNoSlot(t *testing.T) {
	e := newAdmEnv(t)
	const lane sdk.LaneID = "mbc"
	q := sdk.QuotaID("mbcq")
	e.quotaLane(lane, sdk.QuotaPolicy{ID: q, Rate: 1, Window: time.Minute, Concurrency: 1}, "nobudget")
	x := e.create(sdk.CreateExecutionArgs{Lane: lane})
	var err error
	deadline := time.Now().Add(3 * time.Second)
	for err == nil && time.Now().Before(deadline) { // until the create is seen
		_, _, err = e.b.ClaimForWorker(e.ctx, sdk.ClaimForWorkerArgs{Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1", LeaseTTL: time.Minute})
	}
	if sdk.CodeOf(err) != sdk.CodeBudgetNotFound {
		t.Fatalf("ClaimForWorker with a missing budget = %v, want budget_not_found", err)
	}
	if h, n := e.holds(q), e.windowSize(q); len(h) != 0 || n != 0 {
		t.Errorf("after a refused ClaimForWorker: holds %v, window %d; want none", h, n)
	}
	if st := e.state(x); st != sdk.StateWaiting {
		t.Errorf("%s is %s after the refused claim, want waiting (handed back)", x, st)
	}
	e.must("CreateBudget", e.b.CreateBudget(e.ctx, sdk.Budget{ID: "nobudget", Limits: map[string]sdk.BudgetLimit{"t": {Hard: 10}}}))
	if ct, ad := e.claimSeen(e.b, lane, "w", time.Minute); ct == nil {
		t.Fatalf("ClaimForWorker once the budget exists = %+v; want the work admitted (the refusal took no admission)", ad)
	}
}

// TestAdmissionPromiseBudgetLimitsReadBack: a budget's limits are
// uint64s up to 2^53 (BudgetLimit: the engine counts in float64, exact up
// to there, as usage reports are), and GetBudgetStatus reads "a budget's
// limits and usage": a limit up to 2^53 reads back as set; one above is
// refused as invalid input with nothing written, not rounded.
func TestAdmissionPromiseBudgetLimitsReadBack(t *testing.T) {
	e := newAdmEnv(t)
	limits := map[string]sdk.BudgetLimit{"top": {Hard: 1 << 53, Soft: 1<<53 - 1}, "small": {Hard: 7, Soft: 3}}
	e.must("CreateBudget", e.b.CreateBudget(e.ctx, sdk.Budget{ID: "bigb", Limits: limits}))
	st, err := e.b.GetBudgetStatus(e.ctx, "bigb")
	e.must("GetBudgetStatus", err)
	for d, l := range limits {
		if st.Limits[d] != l {
			t.Errorf("GetBudgetStatus limits[%s] = %+v, want %+v", d, st.Limits[d], l)
		}
	}
	before := keyspace(t, e.addrs)
	for _, l := range []sdk.BudgetLimit{{Hard: 1<<53 + 1}, {Hard: 1 << 60, Soft: 1 << 59}} {
		err := e.b.CreateBudget(e.ctx, sdk.Budget{ID: "bigb", Limits: map[string]sdk.BudgetLimit{"odd": l}})
		if sdk.CodeOf(err) != sdk.CodeInvalidInput {
			t.Errorf("CreateBudget with limits %+v: %v, want invalid_input", l, err)
		}
	}
	requireUnchanged(t, "CreateBudget with limits over 2^53", before, keyspace(t, e.addrs))
}

// TestAdmissionPromiseConcurrentCap: "never more than N concurrent
// holders": eight claimers, each on its own connection, race
// ClaimForWorker on a lane with a cap of 3 and 20 executions; no task
// ends, so at most 3 are claimed, and the quota holds exactly those. On a
// cluster too (README: "The two-call admission is safe without one").
func TestAdmissionPromiseConcurrentCap(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) { testConcurrentCap(t, newAdmEnvOn(t, topo.addrs(t))) })
	}
}

func testConcurrentCap(t *testing.T, e *admEnv) {
	const lane sdk.LaneID = "ccap"
	q := sdk.QuotaID("ccapq")
	e.quotaLane(lane, sdk.QuotaPolicy{ID: q, Concurrency: 3})
	for range 20 {
		e.create(sdk.CreateExecutionArgs{Lane: lane})
	}
	claimed := raceClaims(e, lane, 8, 15)
	if len(claimed) > 3 {
		t.Fatalf("%d claims under a cap of 3: %v", len(claimed), claimed)
	}
	if len(claimed) == 0 {
		t.Fatal("nothing claimed under a cap of 3")
	}
	h := e.holds(q)
	if len(h) != len(claimed) {
		t.Fatalf("holds %v, claims %v: want one hold per claim", h, claimed)
	}
	for id := range claimed {
		if _, ok := h[id]; !ok {
			t.Fatalf("claimed %s holds no slot (holds %v)", id, h)
		}
	}
}

// TestAdmissionPromiseConcurrentRate: "never more than R admissions per
// window", under concurrent claimers: eight race a rate of 4 per minute
// over 20 executions; at most 4 are claimed, each with one window entry,
// and every refused head is parked (rate_limited), none lost.
func TestAdmissionPromiseConcurrentRate(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) { testConcurrentRate(t, newAdmEnvOn(t, topo.addrs(t))) })
	}
}

func testConcurrentRate(t *testing.T, e *admEnv) {
	const lane sdk.LaneID = "crate"
	q := sdk.QuotaID("crateq")
	e.quotaLane(lane, sdk.QuotaPolicy{ID: q, Rate: 4, Window: time.Minute})
	ids := make([]sdk.ExecutionID, 20)
	for i := range ids {
		ids[i] = e.create(sdk.CreateExecutionArgs{Lane: lane})
	}
	claimed := raceClaims(e, lane, 8, 10)
	if len(claimed) > 4 || len(claimed) == 0 {
		t.Fatalf("%d claims under a rate of 4 per minute: %v", len(claimed), claimed)
	}
	if n := e.windowSize(q); n != int64(len(claimed)) {
		t.Fatalf("window holds %d admissions for %d claims: want one each (refused and failed claims give theirs back)", n, len(claimed))
	}
	for _, id := range ids {
		switch st := e.state(id); {
		case claimed[id] && st != sdk.StateActive:
			t.Fatalf("claimed %s is %s", id, st)
		case !claimed[id] && st != sdk.StateWaiting && st != sdk.StateRateLimited:
			t.Fatalf("unclaimed %s is %s, want waiting or rate_limited", id, st)
		}
	}
}

// raceClaims runs n claimers (each its own backend) that each call
// ClaimForWorker tries times on lane, and returns the executions claimed.
func raceClaims(e *admEnv, lane sdk.LaneID, n, tries int) map[sdk.ExecutionID]bool {
	e.t.Helper()
	backends := make([]*valkeybackend.Backend, n)
	for i := range backends {
		backends[i] = e.another()
	}
	var (
		mu      sync.Mutex
		claimed = map[sdk.ExecutionID]bool{}
		errs    []error
		wg      sync.WaitGroup
		start   = make(chan struct{})
	)
	for i, b := range backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range tries {
				ct, _, err := b.ClaimForWorker(e.ctx, sdk.ClaimForWorkerArgs{Lane: lane, WorkerID: sdk.WorkerID(fmt.Sprintf("w%d", i)),
					WorkerInstanceID: sdk.WorkerInstanceID(fmt.Sprintf("w%d-1", i)), LeaseTTL: time.Minute})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if ct != nil {
					if claimed[ct.Handle.ExecutionID] {
						errs = append(errs, fmt.Errorf("%s claimed twice", ct.Handle.ExecutionID))
					}
					claimed[ct.Handle.ExecutionID] = true
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		e.t.Fatalf("claimers: %v", errs)
	}
	return claimed
}

// TestAdmissionPromiseFailedClaimGivesBack: "a claim that fails gives its
// admission back" (README): a head the claimer may not run (a capability
// it lacks) is admitted and its grant refused; the quota keeps neither a
// hold nor a window entry for it, so a rate of 1 per minute still admits
// the next execution.
func TestAdmissionPromiseFailedClaimGivesBack(t *testing.T) {
	e := newAdmEnv(t)
	const lane sdk.LaneID = "fail"
	q := sdk.QuotaID("failq")
	e.quotaLane(lane, sdk.QuotaPolicy{ID: q, Rate: 1, Window: time.Minute, Concurrency: 1})
	gpu := e.create(sdk.CreateExecutionArgs{Lane: lane, RequiredCapabilities: []string{"gpu"}})
	ct, ad := e.claimSeen(e.b, lane, "cpu", time.Minute)
	if ct != nil {
		t.Fatalf("a worker without gpu claimed %s", ct.Handle.ExecutionID)
	}
	if h, n := e.holds(q), e.windowSize(q); len(h) != 0 || n != 0 {
		t.Fatalf("after a failed claim (%+v): holds %v, window %d; want nothing kept", ad, h, n)
	}
	if st := e.state(gpu); st != sdk.StateWaiting {
		t.Fatalf("the execution whose claim failed is %s, want waiting", st)
	}
	plain := e.create(sdk.CreateExecutionArgs{Lane: lane})
	got, ad := e.claimSeen(e.b, lane, "cpu", time.Minute)
	if got == nil || got.Handle.ExecutionID != plain || !ad.Admitted {
		t.Fatalf("claim of %s after the failed one = %+v, %+v; want it admitted (the rate of 1 was given back)", plain, got, ad)
	}
	if n := e.windowSize(q); n != 1 {
		t.Fatalf("window holds %d admissions after one claim, want 1", n)
	}
}

// TestAdmissionPromiseRefusedClaimUnchanged: "a refused admission whose
// claim went through hands the lease back with its attempt unchanged (its
// next claim resumes it)" and "work a full cap refuses stays eligible":
// with the cap held by another execution, a claim is refused
// (concurrency); the head is waiting and eligible again, and once the slot
// frees its claim resumes its first attempt (index 0, not a retry).
func TestAdmissionPromiseRefusedClaimUnchanged(t *testing.T) {
	e := newAdmEnv(t)
	const lane sdk.LaneID = "refused"
	q := sdk.QuotaID("refusedq")
	e.quotaLane(lane, sdk.QuotaPolicy{ID: q, Concurrency: 1})
	holder := e.create(sdk.CreateExecutionArgs{Lane: "elsewhere"})
	ad, err := e.b.Admit(e.ctx, sdk.LanePolicy{Quota: q}, holder, time.Minute)
	if err != nil || !ad.Admitted {
		t.Fatalf("Admit = %+v, %v", ad, err)
	}
	x := e.create(sdk.CreateExecutionArgs{Lane: lane})
	ct, ad := e.claimSeen(e.b, lane, "w", time.Minute)
	if ct != nil || ad.Reason != "concurrency" || ad.RetryAfter <= 0 {
		t.Fatalf("claim with the cap full = %+v, %+v; want a concurrency refusal with a retry time", ct, ad)
	}
	if st := e.state(x); st != sdk.StateWaiting {
		t.Fatalf("refused %s is %s, want waiting (a full cap parks nothing)", x, st)
	}
	if h := e.holds(q); len(h) != 1 {
		t.Fatalf("holds after the refusal %v, want the holder's only", h)
	}
	e.must("ReleaseAdmission", e.b.ReleaseAdmission(e.ctx, q, holder))
	ct, ad = e.claimSeen(e.b, lane, "w", time.Minute)
	if ct == nil || ct.Handle.ExecutionID != x || !ad.Admitted {
		t.Fatalf("claim once the slot freed = %+v, %+v; want %s", ct, ad, x)
	}
	if ct.Handle.AttemptIndex != 0 || (ct.AttemptType != sdk.AttemptInitial && ct.AttemptType != sdk.AttemptResumed) {
		t.Fatalf("claim after the hand-back: attempt %d (%s), want the first attempt resumed, unchanged", ct.Handle.AttemptIndex, ct.AttemptType)
	}
}

// TestAdmissionPromiseRetriedAdmitHeld: a retried Admit (its reply lost)
// is Admitted with Held: "the execution held a slot of the quota already
// ... left as it was": no second window entry, the hold's deadline
// unchanged.
func TestAdmissionPromiseRetriedAdmitHeld(t *testing.T) {
	e := newAdmEnv(t)
	q := sdk.QuotaID("retryq")
	e.must("CreateQuotaPolicy", e.b.CreateQuotaPolicy(e.ctx, sdk.QuotaPolicy{ID: q, Rate: 2, Window: time.Minute, Concurrency: 1}))
	id := e.create(sdk.CreateExecutionArgs{Lane: "retry"})
	p := sdk.LanePolicy{Quota: q}
	first, err := e.b.Admit(e.ctx, p, id, time.Minute)
	if err != nil || !first.Admitted || first.Held {
		t.Fatalf("Admit = %+v, %v; want admitted", first, err)
	}
	h1 := e.holds(q)
	time.Sleep(5 * time.Millisecond)
	again, err := e.b.Admit(e.ctx, p, id, time.Hour)
	if err != nil || !again.Admitted || !again.Held {
		t.Fatalf("Admit retried = %+v, %v; want admitted, held", again, err)
	}
	if h2 := e.holds(q); len(h2) != 1 || !h2[id].Equal(h1[id]) {
		t.Fatalf("holds after the retry %v, before %v: want unchanged", h2, h1)
	}
	if n := e.windowSize(q); n != 1 {
		t.Fatalf("window holds %d admissions after a retried Admit, want 1", n)
	}
}

// TestAdmissionPromiseDedupExactlyOnce: "DedupKey, when set, makes a
// repeated report ... ALREADY_APPLIED instead of counted twice": sixteen
// concurrent copies of one report (each its own connection) count once.
func TestAdmissionPromiseDedupExactlyOnce(t *testing.T) {
	e := newAdmEnv(t)
	e.must("CreateBudget", e.b.CreateBudget(e.ctx, sdk.Budget{ID: "dd", Limits: map[string]sdk.BudgetLimit{"t": {Hard: 1000}}}))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[sdk.UsageStatus]int{}
		errs     []error
	)
	backends := []*valkeybackend.Backend{e.b, e.another(), e.another(), e.another()}
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := backends[i%len(backends)].ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: "dd", DedupKey: "once",
				Usage: map[string]uint64{"t": 7, "other": 3}})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			statuses[out.Status]++
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if statuses[sdk.UsageOK] != 1 || statuses[sdk.UsageAlreadyApplied] != 15 {
		t.Fatalf("statuses %v, want 1 ok and 15 already_applied", statuses)
	}
	st, err := e.b.GetBudgetStatus(e.ctx, "dd")
	e.must("GetBudgetStatus", err)
	// "other" is not the budget's: "counted without limit".
	if st.Used["t"] != 7 || st.Used["other"] != 3 {
		t.Fatalf("usage %v, want t=7 other=3 (counted once)", st.Used)
	}
	// A different key counts; a hard breach counts nothing on any
	// dimension ("every hard limit is checked before anything is added").
	out, err := e.b.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: "dd", DedupKey: "twice", Usage: map[string]uint64{"t": 1, "other": 1}})
	if err != nil || out.Status != sdk.UsageOK {
		t.Fatalf("a second key = %+v, %v", out, err)
	}
	out, err = e.b.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: "dd", Usage: map[string]uint64{"t": 993, "other": 5}})
	if err != nil || out.Status != sdk.UsageHardBreach || out.Dimension != "t" || out.Current != 8 || out.Limit != 1000 {
		t.Fatalf("a report crossing the hard limit = %+v, %v; want hard_breach t 8/1000", out, err)
	}
	out, err = e.b.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: "dd", Usage: map[string]uint64{"t": 992}})
	if err != nil || out.Status != sdk.UsageOK {
		t.Fatalf("a report reaching the hard limit exactly = %+v, %v; want ok", out, err)
	}
	st, _ = e.b.GetBudgetStatus(e.ctx, "dd")
	if st.Used["t"] != 1000 || st.Used["other"] != 4 || st.HardBreached() != "t" {
		t.Fatalf("status %+v, want t=1000 (hard reached), other=4", st)
	}
}

// TestAdmissionPromiseBudgetResetReadmits: "A lane whose budget reached a
// hard limit admits no work: its head is parked (budget) and re-checked
// every second, so a reset lets it through" — the parked head comes back
// by the delayed promotion after about a second and, the budget reset, is
// admitted.
func TestAdmissionPromiseBudgetResetReadmits(t *testing.T) {
	e := newAdmEnv(t)
	const lane sdk.LaneID = "reset"
	e.must("CreateBudget", e.b.CreateBudget(e.ctx, sdk.Budget{ID: "rb", Limits: map[string]sdk.BudgetLimit{"t": {Hard: 5, Soft: 2}}}))
	e.must("SetLanePolicy", e.b.SetLanePolicy(e.ctx, lane, sdk.LanePolicy{Budgets: []sdk.BudgetID{"rb"}}))
	out, err := e.b.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: "rb", Usage: map[string]uint64{"t": 5}})
	if err != nil || out.Status != sdk.UsageSoftBreach || out.Current != 5 || out.Limit != 2 {
		t.Fatalf("report to the hard limit = %+v, %v; want soft_breach 5/2", out, err)
	}
	x := e.create(sdk.CreateExecutionArgs{Lane: lane})
	parkedAt := time.Now()
	ct, ad := e.claimSeen(e.b, lane, "w", time.Minute)
	if ct != nil || ad.Reason != "budget" || ad.Budget != "rb" || ad.Dimension != "t" {
		t.Fatalf("claim over the budget = %+v, %+v; want a budget refusal", ct, ad)
	}
	if st := e.state(x); st != sdk.StateRateLimited {
		t.Fatalf("held-back %s is %s, want rate_limited", x, st)
	}
	e.must("ResetBudget", e.b.ResetBudget(e.ctx, "rb"))
	// Back within about a second (bounded wait), by the delayed promotion.
	deadline := parkedAt.Add(3 * time.Second)
	for {
		n, err := e.b.PromoteDelayed(e.ctx, sdk.PromoteDelayedArgs{Lane: lane, Partition: 0})
		e.must("PromoteDelayed", err)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the budget-parked head was not due for promotion within 3s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	ct, ad = e.claimSeen(e.b, lane, "w", time.Minute)
	if ct == nil || ct.Handle.ExecutionID != x {
		t.Fatalf("claim after the reset = %+v, %+v; want %s", ct, ad, x)
	}
}

// TestAdmissionPromiseParkNotEligible: Park is "False when it was no
// longer eligible" and then changes nothing.
func TestAdmissionPromiseParkNotEligible(t *testing.T) {
	e := newAdmEnv(t)
	const lane sdk.LaneID = "park"
	x := e.create(sdk.CreateExecutionArgs{Lane: lane})
	ok, err := e.b.Park(e.ctx, x, lane, time.Now().Add(time.Minute), "rate_limited")
	if err != nil || !ok {
		t.Fatalf("Park of a waiting execution = %v, %v; want parked", ok, err)
	}
	if st := e.state(x); st != sdk.StateRateLimited {
		t.Fatalf("parked %s is %s", x, st)
	}
	before := keyspace(t, e.addrs)
	ok, err = e.b.Park(e.ctx, x, lane, time.Now().Add(time.Hour), "budget")
	if err != nil || ok {
		t.Fatalf("Park of a parked execution = %v, %v; want false", ok, err)
	}
	e.requireUnchanged("a second Park", before)
}

// TestAdmissionPromiseRefreshLapsedHold: a hold "lapses" a hold time
// after its holder's last refresh (QuotaPolicy.Concurrency: "until its
// hold lapses (about a lease TTL after the worker's last renewal)");
// ff_quota_refresh: "a hold that lapsed is not taken back". A refresh
// that comes after the deadline must not bring the hold back.
func TestAdmissionPromiseRefreshLapsedHold(t *testing.T) {
	e := newAdmEnv(t)
	q := sdk.QuotaID("lapseq")
	e.must("CreateQuotaPolicy", e.b.CreateQuotaPolicy(e.ctx, sdk.QuotaPolicy{ID: q, Concurrency: 1}))
	x := e.create(sdk.CreateExecutionArgs{Lane: "lapse"})
	if ad, err := e.b.Admit(e.ctx, sdk.LanePolicy{Quota: q}, x, 100*time.Millisecond); err != nil || !ad.Admitted {
		t.Fatalf("Admit = %+v, %v", ad, err)
	}
	time.Sleep(200 * time.Millisecond)
	e.must("RefreshAdmissions", e.b.RefreshAdmissions(e.ctx, q, time.Minute, x))
	if d, ok := e.holds(q)[x]; ok && d.After(time.Now()) {
		t.Fatalf("a refresh after the hold lapsed took it back (deadline %v)", d)
	}
	y := e.create(sdk.CreateExecutionArgs{Lane: "lapse"})
	if ad, err := e.b.Admit(e.ctx, sdk.LanePolicy{Quota: q}, y, time.Minute); err != nil || !ad.Admitted {
		t.Fatalf("Admit of another execution once the hold lapsed = %+v, %v; want admitted", ad, err)
	}
}

// TestAdmissionPromiseBudgetReplace: CreateBudget "creates a budget or
// replaces its limits" (usage is kept: ff_budget_set); a retried create
// changes nothing. A replacement's limits are the budget's limits: a
// dimension it no longer limits is counted without limit.
func TestAdmissionPromiseBudgetReplace(t *testing.T) {
	e := newAdmEnv(t)
	first := sdk.Budget{ID: "rep", Limits: map[string]sdk.BudgetLimit{"a": {Hard: 10, Soft: 5}, "b": {Hard: 4}}}
	e.must("CreateBudget", e.b.CreateBudget(e.ctx, first))
	if out, err := e.b.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: "rep", Usage: map[string]uint64{"a": 3, "b": 4}}); err != nil || out.Status != sdk.UsageOK {
		t.Fatalf("report = %+v, %v", out, err)
	}
	before := keyspace(t, e.addrs)
	e.must("CreateBudget retried", e.b.CreateBudget(e.ctx, first))
	e.requireUnchanged("a retried CreateBudget", before)
	e.must("CreateBudget replace", e.b.CreateBudget(e.ctx, sdk.Budget{ID: "rep", Limits: map[string]sdk.BudgetLimit{"a": {Hard: 20}}}))
	st, err := e.b.GetBudgetStatus(e.ctx, "rep")
	e.must("GetBudgetStatus", err)
	if st.Used["a"] != 3 || st.Used["b"] != 4 {
		t.Fatalf("usage after the replace %v, want a=3 b=4 (kept)", st.Used)
	}
	if st.Limits["a"] != (sdk.BudgetLimit{Hard: 20}) {
		t.Fatalf("limits[a] after the replace %+v, want hard 20, no soft", st.Limits["a"])
	}
	if l, ok := st.Limits["b"]; ok && l != (sdk.BudgetLimit{}) {
		t.Errorf("limits[b] after a replace without b = %+v, want none", l)
	}
	if d := st.HardBreached(); d != "" {
		t.Errorf("HardBreached after the replace = %q, want none (b is no longer limited)", d)
	}
	if out, err := e.b.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: "rep", Usage: map[string]uint64{"b": 1}}); err != nil || out.Status != sdk.UsageOK {
		t.Errorf("a report on b after the replace = %+v, %v; want ok (counted without limit)", out, err)
	}
}
