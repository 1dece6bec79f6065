package sdktest

import (
	"fmt"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Admission (sdk.Admitter, RoleAdmission).

func (e *env) claimForWorker(a sdk.Admitter, lane sdk.LaneID, ttl time.Duration) (*sdk.ClaimedTask, sdk.Admission) {
	e.t.Helper()
	ct, ad, err := a.ClaimForWorker(e.ctx, sdk.ClaimForWorkerArgs{Lane: lane, WorkerID: workerID,
		WorkerInstanceID: workerInstance, LeaseTTL: ttl})
	if err != nil {
		e.t.Fatalf("ClaimForWorker(%s) = %v", lane, err)
	}
	return ct, ad
}

// uniqueName is a policy name of this subtest (policies are not flushed
// with a lane's keys on a cluster's other slots, so each gets its own).
func uniqueName(prefix string) string { return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()) }

// testQuotaRate: a quota of 3 per window admits 3 claims, refuses the
// next (rate_limited, with when to retry) and parks that execution
// (rate_limited) until the window moves; brought back by the delayed
// promotion, it is admitted.
func testQuotaRate(e *env) {
	const lane sdk.LaneID = "sdktest-quota-rate"
	a := need(e, e.roles.Admission, sdk.RoleAdmission)
	q := sdk.QuotaID(uniqueName("rate"))
	const window = 700 * time.Millisecond
	e.must("CreateQuotaPolicy", a.CreateQuotaPolicy(e.ctx, sdk.QuotaPolicy{ID: q, Rate: 3, Window: window}))
	e.must("SetLanePolicy", a.SetLanePolicy(e.ctx, lane, sdk.LanePolicy{Quota: q}))
	ids := make([]sdk.ExecutionID, 4)
	for i := range ids {
		a := simple(lane)
		a.ID = sdk.NewExecutionID(e.lastPartition())
		ids[i] = e.create(a)
	}
	start := time.Now()
	for i := range 3 {
		ct, ad := e.claimForWorker(a, lane, leaseTTL)
		if ct == nil || !ad.Admitted || ct.Handle.ExecutionID != ids[i] {
			e.t.Fatalf("ClaimForWorker %d = %+v, %+v; want %s admitted", i, ct, ad, ids[i])
		}
	}
	ct, ad := e.claimForWorker(a, lane, leaseTTL)
	if ct != nil || ad.Reason != "rate_limited" || ad.RetryAfter <= 0 || ad.RetryAfter > window {
		e.t.Fatalf("ClaimForWorker past the rate = %+v, %+v; want rate_limited within %v", ct, ad, window)
	}
	e.requireState(ids[3], sdk.StateRateLimited, "the execution the rate refused")
	e.requireScannable(lane, ids[3], false, "a parked execution")
	if n, err := e.b.PromoteDelayed(e.ctx, sdk.PromoteDelayedArgs{Lane: lane, Partition: e.lastPartition()}); err != nil || n != 0 {
		e.t.Fatalf("PromoteDelayed before the window moved = %d, %v; want 0", n, err)
	}
	e.sleepUntil(start.Add(window + 100*time.Millisecond))
	if n, err := e.b.PromoteDelayed(e.ctx, sdk.PromoteDelayedArgs{Lane: lane, Partition: e.lastPartition()}); err != nil || n != 1 {
		e.t.Fatalf("PromoteDelayed once the window moved = %d, %v; want 1", n, err)
	}
	ct, ad = e.claimForWorker(a, lane, leaseTTL)
	if ct == nil || ct.Handle.ExecutionID != ids[3] {
		e.t.Fatalf("ClaimForWorker after the window = %+v, %+v; want %s", ct, ad, ids[3])
	}
}

// testQuotaConcurrency: a cap of 2 admits 2 running claims and refuses a
// third (concurrency, the execution stays eligible); a release frees a
// slot; a hold whose holder stopped refreshing it lapses; a refresh keeps
// one alive.
func testQuotaConcurrency(e *env) {
	const lane sdk.LaneID = "sdktest-quota-conc"
	a := need(e, e.roles.Admission, sdk.RoleAdmission)
	q := sdk.QuotaID(uniqueName("conc"))
	e.must("CreateQuotaPolicy", a.CreateQuotaPolicy(e.ctx, sdk.QuotaPolicy{ID: q, Concurrency: 2}))
	e.must("SetLanePolicy", a.SetLanePolicy(e.ctx, lane, sdk.LanePolicy{Quota: q}))
	for range 4 {
		e.create(simple(lane))
	}
	const hold = 600 * time.Millisecond
	first, _ := e.claimForWorker(a, lane, hold)
	second, _ := e.claimForWorker(a, lane, time.Minute)
	if first == nil || second == nil {
		e.t.Fatalf("ClaimForWorker under the cap = %v, %v; want two claims", first, second)
	}
	ct, ad := e.claimForWorker(a, lane, time.Minute)
	if ct != nil || ad.Reason != "concurrency" {
		e.t.Fatalf("ClaimForWorker at the cap = %+v, %+v; want a concurrency refusal", ct, ad)
	}
	if n := len(e.scanAll(lane)); n != 2 {
		e.t.Fatalf("%d executions eligible after the refusal, want 2 (a full cap parks nothing)", n)
	}
	// Completing and releasing the second frees its slot.
	e.must("Complete", e.b.Complete(e.ctx, second.Handle, nil))
	e.must("ReleaseAdmission", a.ReleaseAdmission(e.ctx, q, second.Handle.ExecutionID))
	third, _ := e.claimForWorker(a, lane, time.Minute)
	if third == nil {
		e.t.Fatal("ClaimForWorker after a release admitted nothing")
	}
	// The first's hold (its lease TTL) lapses while nobody refreshes it;
	// the third's is refreshed.
	e.must("RefreshAdmissions", a.RefreshAdmissions(e.ctx, q, time.Minute, third.Handle.ExecutionID))
	e.sleep(hold + 100*time.Millisecond)
	fourth, ad := e.claimForWorker(a, lane, time.Minute)
	if fourth == nil {
		e.t.Fatalf("ClaimForWorker once a hold lapsed = %+v; want a claim", ad)
	}
	_, ad = e.claimForWorker(a, lane, time.Minute)
	if ad.Reason != "concurrency" && ad.Reason != "" {
		e.t.Fatalf("ClaimForWorker with the cap full again = %+v", ad)
	}
	// A giveback (a hand-off's admission its worker hands back) frees the
	// slot as a release does.
	e.create(simple(lane))
	// The lane's heads were just read empty through the client-side cache;
	// the create's invalidation push comes after its reply, so a claim
	// right after it may still read them empty (nothing, no refusal).
	e.eventually("a claim with the cap full sees the create", func() (bool, string) {
		ct, ad = e.claimForWorker(a, lane, time.Minute)
		return ct != nil || ad.Reason != "", "nothing and no refusal"
	})
	if ct != nil || ad.Reason != "concurrency" {
		e.t.Fatalf("ClaimForWorker with the cap full = %+v, %+v; want a concurrency refusal", ct, ad)
	}
	e.must("GiveBackAdmission", a.GiveBackAdmission(e.ctx, q, fourth.Handle.ExecutionID, ""))
	if fifth, ad := e.claimForWorker(a, lane, time.Minute); fifth == nil {
		e.t.Fatalf("ClaimForWorker after a giveback = %+v; want a claim", ad)
	}
}

// scanAll lists the lane's eligible executions on every partition.
func (e *env) scanAll(lane sdk.LaneID) []sdk.ExecutionID {
	var out []sdk.ExecutionID
	for p := range e.b.Partitions() {
		out = append(out, e.scan(lane, p, 100)...)
	}
	return out
}

// testBudgets: usage under the soft limit is ok, over it soft_breach
// (counted), one that would cross the hard limit hard_breach and counted
// not at all; a repeated dedup key is already_applied; a stale lease
// counts nothing; a lane whose budget is over its hard limit admits
// nothing and parks its head (budget); a reset admits again.
func testBudgets(e *env) {
	const lane sdk.LaneID = "sdktest-budget"
	a := need(e, e.roles.Admission, sdk.RoleAdmission)
	bg := sdk.BudgetID(uniqueName("tokens"))
	e.must("CreateBudget", a.CreateBudget(e.ctx, sdk.Budget{ID: bg, Limits: map[string]sdk.BudgetLimit{
		"tokens": {Hard: 100, Soft: 80}, "calls": {Hard: 0, Soft: 0}}}))
	id := e.create(simple("sdktest-budget-work"))
	c := e.claim(id, "sdktest-budget-work", leaseTTL)
	report := func(n uint64, key string) sdk.UsageOutcome {
		e.t.Helper()
		out, err := a.ReportUsage(e.ctx, c.Handle, sdk.UsageReport{Budget: bg, DedupKey: key,
			Usage: map[string]uint64{"tokens": n, "calls": 1}})
		e.must("ReportUsage", err)
		return out
	}
	if out := report(50, "r1"); out.Status != sdk.UsageOK {
		e.t.Fatalf("ReportUsage(50) = %+v, want ok", out)
	}
	if out := report(40, "r2"); out.Status != sdk.UsageSoftBreach || out.Dimension != "tokens" || out.Current != 90 || out.Limit != 80 {
		e.t.Fatalf("ReportUsage(40) = %+v, want soft_breach tokens 90/80", out)
	}
	if out := report(40, "r2"); out.Status != sdk.UsageAlreadyApplied {
		e.t.Fatalf("ReportUsage repeated = %+v, want already_applied", out)
	}
	if out := report(20, "r3"); out.Status != sdk.UsageHardBreach || out.Current != 90 || out.Limit != 100 {
		e.t.Fatalf("ReportUsage(20) = %+v, want hard_breach tokens 90/100", out)
	}
	st, err := a.GetBudgetStatus(e.ctx, bg)
	e.must("GetBudgetStatus", err)
	if st.Used["tokens"] != 90 || st.Used["calls"] != 2 || st.Limits["tokens"].Hard != 100 || st.HardBreached() != "" {
		e.t.Fatalf("GetBudgetStatus = %+v, want 90 tokens and 2 calls (the hard breach counted nothing)", st)
	}
	e.must("Complete", e.b.Complete(e.ctx, c.Handle, nil))
	e.rejects("ReportUsage with an ended lease", func() error {
		_, err := a.ReportUsage(e.ctx, c.Handle, sdk.UsageReport{Budget: bg, Usage: map[string]uint64{"tokens": 1}})
		return err
	}, sdk.ErrExecutionNotActive)
	out, err := a.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: bg, Usage: map[string]uint64{"tokens": 10}})
	e.must("ReportUsageAdmin", err)
	if out.Status != sdk.UsageSoftBreach || out.Current != 100 {
		e.t.Fatalf("ReportUsageAdmin(10) = %+v, want soft_breach at 100", out)
	}
	// At the hard limit: the lane's work is held back and parked.
	e.must("SetLanePolicy", a.SetLanePolicy(e.ctx, lane, sdk.LanePolicy{Budgets: []sdk.BudgetID{bg}}))
	w := e.create(simple(lane))
	ct, ad := e.claimForWorker(a, lane, leaseTTL)
	if ct != nil || ad.Reason != "budget" || ad.Budget != bg || ad.Dimension != "tokens" {
		e.t.Fatalf("ClaimForWorker over the budget = %+v, %+v; want a budget refusal on tokens", ct, ad)
	}
	e.requireState(w, sdk.StateRateLimited, "work held back by its budget")
	e.must("ResetBudget", a.ResetBudget(e.ctx, bg))
	if st, _ := a.GetBudgetStatus(e.ctx, bg); st.Used["tokens"] != 0 || st.ResetAt.IsZero() {
		e.t.Fatalf("GetBudgetStatus after the reset = %+v", st)
	}
}

// testLanePause: a paused lane is read back paused and admits no claim
// through ClaimForWorker; the zero policy clears it.
func testLanePause(e *env) {
	const lane sdk.LaneID = "sdktest-pause"
	a := need(e, e.roles.Admission, sdk.RoleAdmission)
	e.create(simple(lane))
	e.must("SetLanePolicy(paused)", a.SetLanePolicy(e.ctx, lane, sdk.LanePolicy{Paused: true}))
	if p, err := a.LanePolicy(e.ctx, lane); err != nil || !p.Paused || p.Admits() {
		e.t.Fatalf("LanePolicy = %+v, %v; want paused", p, err)
	}
	if ct, ad := e.claimForWorker(a, lane, leaseTTL); ct != nil || ad.Reason != "paused" {
		e.t.Fatalf("ClaimForWorker on a paused lane = %+v, %+v", ct, ad)
	}
	e.must("SetLanePolicy(zero)", a.SetLanePolicy(e.ctx, lane, sdk.LanePolicy{}))
	settle := time.Now().Add(settleDeadline)
	for {
		p, err := a.LanePolicy(e.ctx, lane)
		e.must("LanePolicy", err)
		if !p.Paused {
			break
		}
		if time.Now().After(settle) {
			e.t.Fatal("LanePolicy still paused after the policy was cleared")
		}
		e.sleep(pollInterval)
	}
	if ct, _ := e.claimForWorker(a, lane, leaseTTL); ct == nil {
		e.t.Fatal("ClaimForWorker after the resume claimed nothing")
	}
}

// testAdmissionBadInput: malformed policies, reports and names are typed
// errors and write nothing; unknown quotas and budgets are not found.
func testAdmissionBadInput(e *env) {
	const lane sdk.LaneID = "sdktest-admission-bad"
	a := need(e, e.roles.Admission, sdk.RoleAdmission)
	for _, c := range []struct {
		what string
		call func() error
		want error
	}{
		{"a quota without rate or cap", func() error { return a.CreateQuotaPolicy(e.ctx, sdk.QuotaPolicy{ID: "q"}) }, sdk.ErrValidation},
		{"a rate without a window", func() error { return a.CreateQuotaPolicy(e.ctx, sdk.QuotaPolicy{ID: "q", Rate: 1}) }, sdk.ErrValidation},
		{"a quota id with a colon", func() error {
			return a.CreateQuotaPolicy(e.ctx, sdk.QuotaPolicy{ID: "a:b", Concurrency: 1})
		}, sdk.ErrValidation},
		{"a budget without dimensions", func() error { return a.CreateBudget(e.ctx, sdk.Budget{ID: "b"}) }, sdk.ErrValidation},
		{"a soft limit over the hard one", func() error {
			return a.CreateBudget(e.ctx, sdk.Budget{ID: "b", Limits: map[string]sdk.BudgetLimit{"t": {Hard: 1, Soft: 2}}})
		}, sdk.ErrValidation},
		{"a report without usage", func() error {
			_, err := a.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: "b"})
			return err
		}, sdk.ErrValidation},
		{"a report to an unknown budget", func() error {
			_, err := a.ReportUsageAdmin(e.ctx, sdk.UsageReport{Budget: sdk.BudgetID(uniqueName("none")), Usage: map[string]uint64{"t": 1}})
			return err
		}, sdk.ErrNotFound},
		{"the status of an unknown budget", func() error {
			_, err := a.GetBudgetStatus(e.ctx, sdk.BudgetID(uniqueName("none")))
			return err
		}, sdk.ErrNotFound},
		{"a lane policy on a bad lane", func() error { return a.SetLanePolicy(e.ctx, "bad lane", sdk.LanePolicy{Paused: true}) }, sdk.ErrValidation},
		{"a lane policy with a bad quota", func() error {
			return a.SetLanePolicy(e.ctx, lane, sdk.LanePolicy{Quota: "bad quota"})
		}, sdk.ErrValidation},
		{"a park with a bad lane", func() error {
			_, err := a.Park(e.ctx, sdk.NewExecutionID(0), "bad lane", time.Now(), "budget")
			return err
		}, sdk.ErrValidation},
	} {
		e.rejects(c.what, c.call, c.want)
	}
	id := e.create(simple(lane))
	e.rejects("Admit under an unknown quota", func() error {
		_, err := a.Admit(e.ctx, sdk.LanePolicy{Quota: sdk.QuotaID(uniqueName("none"))}, id, time.Minute)
		return err
	}, sdk.ErrNotFound)
	e.rejects("Park with an unknown reason", func() error {
		_, err := a.Park(e.ctx, id, lane, time.Now(), "because")
		return err
	}, sdk.ErrValidation)
	e.rejects("a giveback under a bad quota", func() error {
		return a.GiveBackAdmission(e.ctx, "bad quota", id, "")
	}, sdk.ErrValidation)
	e.rejects("a giveback of another execution's window entry", func() error {
		return a.GiveBackAdmission(e.ctx, sdk.QuotaID(uniqueName("q")), id, "someone-else 1")
	}, sdk.ErrValidation)
}
