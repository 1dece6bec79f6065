package sdktest

import (
	"fmt"
	"slices"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// roleEnabled reports whether RolesOf found role r (known is false for a
// role this suite does not know).
func roleEnabled(rs sdk.BackendRoles, r sdk.Role) (enabled, known bool) {
	fields := map[sdk.Role]any{
		sdk.RoleBatchRenew: rs.BatchRenewer, sdk.RoleWindowScan: rs.WindowScanner,
		sdk.RoleGrantClaim: rs.GrantClaimer, sdk.RoleFusedClaim: rs.FusedClaimer,
		sdk.RoleReadiness: rs.ReadinessWatcher, sdk.RoleArrivals: rs.ArrivalWatcher,
		sdk.RoleLeaseEvents: rs.LeaseEventWatcher, sdk.RoleWorkerRegistry: rs.WorkerRegistry,
		sdk.RoleClaimOffers: rs.ClaimOfferer, sdk.RoleCompleteOffer: rs.CompleteOfferer,
		sdk.RoleBatchSubmit: rs.BatchSubmitter, sdk.RoleEngineMonitor: rs.EngineMonitor,
		sdk.RoleCompleteBatch: rs.CompleteBatcher, sdk.RoleWaiting: rs.Waiter, sdk.RoleStreams: rs.Streamer, sdk.RoleTerminalWatch: rs.TerminalWatcher, sdk.RoleCompletions: rs.Completions,
		sdk.RoleLeaseHistory: rs.LeaseHistory, sdk.RoleFlows: rs.Flows, sdk.RoleAdmission: rs.Admission,
		sdk.RoleSchedules: rs.Schedules,
	}
	f, known := fields[r]
	return known && f != nil, known
}

// testRolesListed: every role Features lists is a known role, listed once,
// that the backend implements (a listed role it lacks would be silently
// unused).
func testRolesListed(e *env) {
	f := e.b.Features()
	e.t.Logf("Features: family %q version %q roles %q", f.Family, f.Version, f.Roles)
	seen := map[sdk.Role]bool{}
	for _, r := range f.Roles {
		if seen[r] {
			e.t.Fatalf("Features().Roles lists %q twice", r)
		}
		seen[r] = true
		switch enabled, known := roleEnabled(e.roles, r); {
		case !known:
			e.t.Fatalf("Features().Roles lists %q, not a role of sdk/roles.go", r)
		case !enabled:
			e.t.Fatalf("Features().Roles lists %q but the backend does not implement its interface", r)
		}
	}
}

// renewBatch renews hs in one call and checks the shape of the answer.
func (e *env) renewBatch(br sdk.BatchRenewer, hs []sdk.Handle) []sdk.RenewResult {
	e.t.Helper()
	res, err := br.RenewBatch(e.ctx, hs)
	if err != nil {
		e.t.Fatalf("RenewBatch(%d handles) = %v", len(hs), err)
	}
	if len(res) != len(hs) {
		e.t.Fatalf("RenewBatch(%d handles) returned %d results", len(hs), len(res))
	}
	return res
}

// checkRenewal checks a successful renewal of h, sent in [before, after],
// of a lease that expired at prev: the epoch stays, the expiry moves to a
// TTL after the call, and the execution records it.
func (e *env) checkRenewal(what string, r sdk.RenewResult, h sdk.Handle, prev, before, after time.Time) {
	e.t.Helper()
	if r.Err != nil {
		e.t.Fatalf("%s: %v, want a renewal", what, r.Err)
	}
	if r.Renewal.Epoch != h.Epoch {
		e.t.Fatalf("%s: epoch %d, want %d", what, r.Renewal.Epoch, h.Epoch)
	}
	if !r.Renewal.ExpiresAt.After(prev) {
		e.t.Fatalf("%s: expiry %v did not move past %v", what, r.Renewal.ExpiresAt, prev)
	}
	e.requireAround(what+": expiry", r.Renewal.ExpiresAt, before.Add(h.LeaseTTL), after.Add(h.LeaseTTL))
	if s := e.describe(h.ExecutionID); s.LeaseExpiresAt.Sub(r.Renewal.ExpiresAt).Abs() > time.Millisecond {
		e.t.Fatalf("%s: DescribeExecution has the lease expiring at %v, the renewal said %v", what, s.LeaseExpiresAt, r.Renewal.ExpiresAt)
	}
}

// testBatchRenewPerHandle: one result per handle, in order; each rejected
// handle gets the error Renew would give it, and the others renew.
func testBatchRenewPerHandle(e *env) {
	br := need(e, e.roles.BatchRenewer, sdk.RoleBatchRenew)
	const lane sdk.LaneID = "sdktest-batch-renew"
	p := e.lastPartition()
	claimOn := func(ttl time.Duration) sdk.ClaimedExecution {
		args := onPartition(simple(lane), p)
		return e.claim(e.create(args), lane, ttl)
	}
	if res, err := br.RenewBatch(e.ctx, nil); err != nil || len(res) != 0 {
		e.t.Fatalf("RenewBatch(no handles) = %v, %v; want no results", res, err)
	}

	expired := claimOn(time.Millisecond)
	live := []sdk.ClaimedExecution{claimOn(leaseTTL), claimOn(leaseTTL)}
	replaced := claimOn(leaseTTL)
	e.revoke(replaced.Handle)
	reclaimed := e.reclaim(replaced.Handle, 0, contextOf(simple(lane)))
	revoked := claimOn(leaseTTL)
	e.revoke(revoked.Handle)
	done := claimOn(leaseTTL)
	e.must("Complete", e.b.Complete(e.ctx, done.Handle, nil))
	h := live[0].Handle
	unknown, foreign, otherBackend, malformed := h, h, h, h
	unknown.ExecutionID = sdk.NewExecutionID(p)
	foreign.ExecutionID = sdk.NewExecutionID(e.b.Partitions())
	otherBackend.Backend++
	malformed.Epoch = 0

	type item struct {
		name string
		h    sdk.Handle
		want error // nil: renews
		prev time.Time
	}
	items := []item{
		{"live", live[0].Handle, nil, live[0].ExpiresAt},
		{"stale after a reclaim", replaced.Handle, sdk.ErrStaleLease, time.Time{}},
		{"on a partition beyond Partitions()", foreign, sdk.ErrValidation, time.Time{}},
		{"revoked", revoked.Handle, sdk.ErrLeaseRevoked, time.Time{}},
		{"live", live[1].Handle, nil, live[1].ExpiresAt},
		{"completed", done.Handle, sdk.ErrExecutionNotActive, time.Time{}},
		{"unknown execution", unknown, sdk.ErrNotFound, time.Time{}},
		{"from another backend", otherBackend, sdk.ErrValidation, time.Time{}},
		{"expired", expired.Handle, sdk.ErrLeaseExpired, time.Time{}},
		{"malformed (epoch 0)", malformed, sdk.ErrValidation, time.Time{}},
		{"the reclaimer's", reclaimed.Handle, nil, reclaimed.ExpiresAt},
	}
	hs := make([]sdk.Handle, len(items))
	for i, it := range items {
		hs[i] = it.h
	}
	e.sleepUntil(expired.ExpiresAt.Add(2 * clockSlack)) // also lets a renewal move the live expiries
	before := time.Now()
	res := e.renewBatch(br, hs)
	after := time.Now()
	renewed := map[sdk.ExecutionID]time.Time{}
	for i, it := range items {
		what := fmt.Sprintf("RenewBatch result %d (%s)", i, it.name)
		if it.want == nil {
			e.checkRenewal(what, res[i], it.h, it.prev, before, after)
			renewed[it.h.ExecutionID] = res[i].Renewal.ExpiresAt
			continue
		}
		requireErr(e.t, what, res[i].Err, it.want)
	}

	// A batch of handles that are all refused changes nothing (an expired
	// lease may record its expiry, so it is left out).
	var refused []sdk.Handle
	for _, it := range items {
		if it.want != nil && it.want != sdk.ErrLeaseExpired {
			refused = append(refused, it.h)
		}
	}
	snap := e.snapshot()
	for i, r := range e.renewBatch(br, refused) {
		if r.Err == nil {
			e.t.Fatalf("RenewBatch of refused handles: result %d renewed %s", i, refused[i].ExecutionID)
		}
	}
	if e.h.Snapshot != nil {
		requireSameKeyspace(e.t, "RenewBatch of refused handles", snap, e.snapshot())
	}

	// A second renewal moves the expiries on again.
	e.sleep(20 * time.Millisecond)
	again := []sdk.Handle{live[0].Handle, live[1].Handle}
	before = time.Now()
	res2 := e.renewBatch(br, again)
	after = time.Now()
	for i, h := range again {
		e.checkRenewal(fmt.Sprintf("second RenewBatch result %d", i), res2[i], h, renewed[h.ExecutionID], before, after)
	}
}

// testBatchRenewPartitions: one call renews leases on many partitions and
// with different TTLs, each by its own TTL, and a refused handle among
// them keeps its place.
func testBatchRenewPartitions(e *env) {
	br := need(e, e.roles.BatchRenewer, sdk.RoleBatchRenew)
	const lane sdk.LaneID = "sdktest-batch-renew-parts"
	var claims []sdk.ClaimedExecution
	for _, ttl := range []time.Duration{leaseTTL, 2 * leaseTTL} {
		for _, p := range e.somePartitions(8) {
			claims = append(claims, e.claim(e.create(onPartition(simple(lane), p)), lane, ttl))
		}
	}
	hs := make([]sdk.Handle, len(claims))
	for i, c := range claims {
		hs[i] = c.Handle
		if i%3 == 1 {
			hs[i].Epoch++ // stale: refused in its place
		}
	}
	e.sleep(20 * time.Millisecond)
	before := time.Now()
	res := e.renewBatch(br, hs)
	after := time.Now()
	for i, h := range hs {
		what := fmt.Sprintf("RenewBatch result %d (partition %d, ttl %v)", i, e.partition(h.ExecutionID), h.LeaseTTL)
		if i%3 == 1 {
			requireErr(e.t, what+" of a stale handle", res[i].Err, sdk.ErrStaleLease)
			if s := e.describe(h.ExecutionID); s.LeaseExpiresAt.Sub(claims[i].ExpiresAt).Abs() > time.Millisecond {
				e.t.Fatalf("%s: the refused renewal moved the lease from %v to %v", what, claims[i].ExpiresAt, s.LeaseExpiresAt)
			}
			continue
		}
		e.checkRenewal(what, res[i], h, claims[i].ExpiresAt, before, after)
	}
}

// testWindowScan: ScanEligibleWindow answers, per requested partition in
// the requested order, what ScanEligibleExecutions answers there.
func testWindowScan(e *env) {
	ws := need(e, e.roles.WindowScanner, sdk.RoleWindowScan)
	const lane sdk.LaneID = "sdktest-window"
	parts := e.somePartitions(8)
	for i, p := range parts {
		if i == len(parts)-1 && i > 0 {
			break // one partition stays empty
		}
		for j := range i%3 + 1 {
			args := onPartition(simple(lane), p)
			args.Priority = (j * 5) % 7
			e.create(args)
			e.sleep(fifoGap)
		}
	}
	for range 20 { // more than a head cache would hold
		e.create(onPartition(simple(lane), parts[0]))
	}
	e.create(onPartition(simple("sdktest-window-other"), parts[0]))

	req := append(slices.Clone(parts), parts[0]) // a partition asked twice answers twice
	for _, limit := range []int{1, 3, 50} {
		e.requireWindow(ws, lane, req, limit)
	}
	// The window follows a change: the head of a partition leaves.
	head := e.scan(lane, parts[0], 1)[0]
	e.claim(head, lane, leaseTTL)
	for _, limit := range []int{1, 3, 50} {
		e.requireWindow(ws, lane, req, limit)
	}

	if got, err := ws.ScanEligibleWindow(e.ctx, lane, nil, 5); err != nil || len(got) != 0 {
		e.t.Fatalf("ScanEligibleWindow(no partitions) = %v, %v; want nothing", got, err)
	}
	for _, p := range []int{-1, e.b.Partitions()} {
		e.rejects(fmt.Sprintf("ScanEligibleWindow on partition %d", p), func() error {
			_, err := ws.ScanEligibleWindow(e.ctx, lane, []int{0, p}, 1)
			return err
		}, sdk.ErrValidation)
	}
	e.rejects("ScanEligibleWindow with an empty lane", func() error {
		_, err := ws.ScanEligibleWindow(e.ctx, "", []int{0}, 1)
		return err
	}, sdk.ErrValidation)
}

// requireWindow waits (settleDeadline at most: a backend may answer from a
// cache an invalidation is on its way to) until the window of parts equals
// the per-partition scans.
func (e *env) requireWindow(ws sdk.WindowScanner, lane sdk.LaneID, parts []int, limit int) {
	e.t.Helper()
	e.eventually(fmt.Sprintf("ScanEligibleWindow(%q, %v, %d)", lane, parts, limit), func() (bool, string) {
		got, err := ws.ScanEligibleWindow(e.ctx, lane, parts, limit)
		if err != nil {
			e.t.Fatalf("ScanEligibleWindow(%q, %v, %d) = %v", lane, parts, limit, err)
		}
		if len(got) != len(parts) {
			e.t.Fatalf("ScanEligibleWindow(%q, %v, %d) returned %d lists", lane, parts, limit, len(got))
		}
		for i, p := range parts {
			ids := make([]sdk.ExecutionID, len(got[i]))
			for k, r := range got[i] {
				ids[k] = r.ID
				if k > 0 && r.Before(got[i][k-1]) {
					e.t.Fatalf("ScanEligibleWindow(%q, %v, %d): partition %d ranks %v before %v", lane, parts, limit, p, r, got[i][k-1])
				}
			}
			if want := e.scan(lane, p, limit); !slices.Equal(ids, want) {
				return false, fmt.Sprintf("partition %d (position %d) = %q, ScanEligibleExecutions has %q", p, i, ids, want)
			}
		}
		return true, ""
	})
}
