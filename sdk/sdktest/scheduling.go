package sdktest

import (
	"slices"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// fifoGap separates creations that must keep their order: eligibility is
// ordered by priority, then by creation time in server milliseconds, so two
// executions created in the same millisecond may come out either way.
const fifoGap = 2 * time.Millisecond

// testPriorityThenFIFO: the eligible head is the highest priority, oldest first.
func testPriorityThenFIFO(e *env) {
	const lane sdk.LaneID = "sdktest-priority"
	p := e.lastPartition()
	prios := []int{0, 5, 0, 9, 5}
	ids := make([]sdk.ExecutionID, len(prios))
	for i, prio := range prios {
		args := simple(lane)
		args.ID = sdk.NewExecutionID(p)
		args.Priority = prio
		ids[i] = e.create(args)
		e.sleep(fifoGap)
	}
	requireOrder := func(when string, limit int, want ...sdk.ExecutionID) {
		e.t.Helper()
		if got := e.scan(lane, p, limit); !slices.Equal(got, want) {
			e.t.Fatalf("%s: ScanEligibleExecutions(limit %d) = %q, want %q (priorities %v in creation order %q)", when, limit, got, want, prios, ids)
		}
	}
	requireOrder("after create", 5, ids[3], ids[1], ids[4], ids[0], ids[2])
	requireOrder("after create", 2, ids[3], ids[1])
	requireOrder("Limit 0 means 1", 0, ids[3])
	if p > 0 {
		if got := e.scan(lane, 0, 5); len(got) != 0 {
			e.t.Fatalf("executions minted on partition %d showed up on partition 0: %q", p, got)
		}
	}

	res, err := e.b.ChangePriority(e.ctx, sdk.ChangePriorityArgs{ExecutionID: ids[2], Priority: sdk.MaxPriority})
	if err != nil || res.Old != 0 || res.New != sdk.MaxPriority {
		e.t.Fatalf("ChangePriority(%s, %d) = %+v, %v; want {0 %d}", ids[2], sdk.MaxPriority, res, err, sdk.MaxPriority)
	}
	if s := e.describe(ids[2]); s.Priority != sdk.MaxPriority {
		e.t.Fatalf("DescribeExecution after ChangePriority: priority %d", s.Priority)
	}
	requireOrder("after raising the last one", 5, ids[2], ids[3], ids[1], ids[4], ids[0])

	// Lowering keeps the creation-time position within the new level.
	if res, err := e.b.ChangePriority(e.ctx, sdk.ChangePriorityArgs{ExecutionID: ids[3], Priority: 0}); err != nil || res.Old != 9 || res.New != 0 {
		e.t.Fatalf("ChangePriority(%s, 0) = %+v, %v; want {9 0}", ids[3], res, err)
	}
	requireOrder("after lowering the 9", 5, ids[2], ids[1], ids[4], ids[0], ids[3])
}

// testIdempotentCreate: a repeated create with the same idempotency key
// returns the first execution and its state now while the key lives, and
// writes nothing; an explicit id that exists is a conflict.
func testIdempotentCreate(e *env) {
	const lane sdk.LaneID = "sdktest-idempotent"
	args := simple(lane)
	args.IdempotencyKey = "order-42"
	args.Payload = []byte("first")
	first, err := e.b.CreateExecution(e.ctx, args)
	if err != nil || first.Duplicate {
		e.t.Fatalf("first CreateExecution = %+v, %v", first, err)
	}
	args.Payload = []byte("second")
	before := e.snapshot()
	second, err := e.b.CreateExecution(e.ctx, args)
	if err != nil {
		e.t.Fatalf("second CreateExecution = %v", err)
	}
	if !second.Duplicate || second.ID != first.ID || second.State != sdk.StateWaiting {
		e.t.Fatalf("second CreateExecution with the same key = %+v, want Duplicate of %s, waiting", second, first.ID)
	}
	if e.h.Snapshot != nil {
		requireSameKeyspace(e.t, "a repeated create", before, e.snapshot())
	}
	// The repeat reports the first execution's state now.
	e.claim(first.ID, lane, leaseTTL)
	if again, err := e.b.CreateExecution(e.ctx, args); err != nil || !again.Duplicate || again.ID != first.ID || again.State != sdk.StateActive {
		e.t.Fatalf("CreateExecution repeated after the first was claimed = %+v, %v; want Duplicate of %s, active", again, err, first.ID)
	}
	if all := e.listAll(); !slices.Equal(all, []sdk.ExecutionID{first.ID}) {
		e.t.Fatalf("executions after a duplicate create: %q, want [%s]", all, first.ID)
	}
	e.requireContext(first.ID, lane, "sdktest.job", []byte("first"), nil)

	// An explicit id that exists, without the idempotency key, is another
	// execution the caller meant: a conflict, and nothing is written.
	for _, l := range []sdk.LaneID{lane, "sdktest-idempotent-other"} {
		e.rejects("CreateExecution with an existing ID on lane "+string(l), func() error {
			_, err := e.b.CreateExecution(e.ctx, sdk.CreateExecutionArgs{ID: first.ID, Lane: l, Kind: "other", Payload: []byte("third")})
			return err
		}, sdk.ErrExecutionIDInUse)
	}
	e.requireContext(first.ID, lane, "sdktest.job", []byte("first"), nil)

	// Another key is another execution.
	args.IdempotencyKey = "order-43"
	other := e.create(args)
	if other == first.ID {
		e.t.Fatalf("a different idempotency key returned the same id %s", other)
	}

	// The key lives DedupTTL.
	args.IdempotencyKey = "short-lived"
	args.DedupTTL = 100 * time.Millisecond
	short := e.create(args)
	e.sleep(args.DedupTTL + 50*time.Millisecond)
	again, err := e.b.CreateExecution(e.ctx, args)
	if err != nil || again.Duplicate || again.ID == short {
		e.t.Fatalf("CreateExecution after DedupTTL passed = %+v, %v; want a new execution", again, err)
	}
	if n := len(e.listAll()); n != 4 {
		e.t.Fatalf("%d executions, want 4", n)
	}
}

// testCapabilities: a grant needs every required capability; BlockRoute
// parks what no worker can run.
func testCapabilities(e *env) {
	const lane sdk.LaneID = "sdktest-caps"
	args := simple(lane)
	args.RequiredCapabilities = []string{"gpu", "cuda12"}
	id := e.create(args)
	if s := e.describe(id); !slices.Equal(s.RequiredCapabilities, []string{"cuda12", "gpu"}) {
		e.t.Fatalf("DescribeExecution: RequiredCapabilities %q, want [cuda12 gpu] (normalized)", s.RequiredCapabilities)
	}
	for _, caps := range [][]string{{"gpu"}, nil, {"cuda12", "x"}, {"GPU", "CUDA12"}} {
		e.rejects("IssueClaimGrant with capabilities "+csv(caps), func() error {
			_, err := e.b.IssueClaimGrant(e.ctx, grantArgs(id, lane, workerID, caps...))
			return err
		}, sdk.ErrCapabilityMismatch)
	}

	out, err := e.b.BlockRoute(e.ctx, sdk.BlockRouteArgs{ExecutionID: id, Lane: lane})
	if err != nil || !out.Blocked {
		e.t.Fatalf("BlockRoute = %+v, %v; want blocked", out, err)
	}
	e.requireScannable(lane, id, false, "blocked for route")
	e.requireState(id, sdk.StateWaiting, "blocked for route")
	if s := e.describe(id); s.BlockedReason != "capability_mismatch" {
		e.t.Fatalf("DescribeExecution of a blocked execution: BlockedReason %q, want the default %q", s.BlockedReason, "capability_mismatch")
	}
	// Blocking again is a no-op, not an error.
	if out, err := e.b.BlockRoute(e.ctx, sdk.BlockRouteArgs{ExecutionID: id, Lane: lane}); err != nil || out.Blocked {
		e.t.Fatalf("second BlockRoute = %+v, %v; want {Blocked: false}, nil", out, err)
	}
	if _, err := e.b.IssueClaimGrant(e.ctx, grantArgs(id, lane, workerID, "cuda12", "gpu")); err == nil {
		e.t.Fatalf("IssueClaimGrant on a blocked execution succeeded")
	}

	id = e.create(args)
	c := e.claim(id, lane, leaseTTL, "cuda12", "gpu", "x")
	e.must("Complete", e.b.Complete(e.ctx, c.Handle, nil))

	// Without requirements any worker qualifies, with or without capabilities.
	id = e.create(simple(lane))
	e.claim(id, lane, leaseTTL, "anything")
}

func csv(caps []string) string {
	if len(caps) == 0 {
		return "(none)"
	}
	return sdk.CapabilitiesCSV(caps)
}

// testGrantContention: one grant per execution, claimable only by its worker.
func testGrantContention(e *env) {
	const lane sdk.LaneID = "sdktest-grants"
	id := e.create(simple(lane))
	e.grant(id, lane)
	e.rejects("second IssueClaimGrant", func() error {
		_, err := e.b.IssueClaimGrant(e.ctx, grantArgs(id, lane, otherWorkerID))
		return err
	}, sdk.ErrGrantAlreadyExists)
	e.rejects("ClaimExecution by another worker", func() error {
		a := claimArgs(id, lane, leaseTTL)
		a.WorkerID = otherWorkerID
		_, err := e.b.ClaimExecution(e.ctx, a)
		return err
	}, sdk.ErrInvalidClaimGrant)
	e.requireScannable(lane, id, true, "grant issued, not claimed")

	// The grant's own worker still claims with it.
	before := time.Now()
	c, err := e.b.ClaimExecution(e.ctx, claimArgs(id, lane, leaseTTL))
	if err != nil {
		e.t.Fatalf("ClaimExecution by the granted worker = %v", err)
	}
	e.checkClaim(c, id, lane, leaseTTL, before, time.Now())

	// The grant was consumed: a second claim finds none.
	e.rejects("ClaimExecution of an active execution", func() error {
		_, err := e.b.ClaimExecution(e.ctx, claimArgs(id, lane, leaseTTL))
		return err
	}, sdk.ErrContention, sdk.ErrState, sdk.ErrConflict)
	e.rejects("IssueClaimGrant on an active execution", func() error {
		_, err := e.b.IssueClaimGrant(e.ctx, grantArgs(id, lane, workerID))
		return err
	}, sdk.ErrContention, sdk.ErrState)

	// No grant, no claim.
	id = e.create(simple(lane))
	e.rejects("ClaimExecution without a grant", func() error {
		_, err := e.b.ClaimExecution(e.ctx, claimArgs(id, lane, leaseTTL))
		return err
	}, sdk.ErrInvalidClaimGrant)
}

// testList: ListExecutions pages a partition in id order; ListLanes pages the
// lane registry in name order.
func testList(e *env) {
	const lane sdk.LaneID = "sdktest-list"
	p := e.lastPartition()
	var want []sdk.ExecutionID
	for range 7 {
		args := simple(lane)
		args.ID = sdk.NewExecutionID(p)
		want = append(want, e.create(args))
	}
	slices.Sort(want)

	var got []sdk.ExecutionID
	var cursor sdk.ExecutionID
	for i, size := range []int{3, 3, 1} {
		page, err := e.b.ListExecutions(e.ctx, p, cursor, 3)
		if err != nil {
			e.t.Fatalf("ListExecutions(%d, %q, 3) = %v", p, cursor, err)
		}
		if len(page.IDs) != size {
			e.t.Fatalf("ListExecutions page %d: %d ids %q, want %d", i+1, len(page.IDs), page.IDs, size)
		}
		last := i == 2
		if last != (page.NextCursor == "") {
			e.t.Fatalf("ListExecutions page %d: NextCursor %q", i+1, page.NextCursor)
		}
		if !last && page.NextCursor != page.IDs[len(page.IDs)-1] {
			e.t.Fatalf("ListExecutions page %d: NextCursor %q, want the page's last id %s", i+1, page.NextCursor, page.IDs[len(page.IDs)-1])
		}
		got = append(got, page.IDs...)
		cursor = page.NextCursor
	}
	if !slices.Equal(got, want) {
		e.t.Fatalf("ListExecutions pages = %q, want %q (sorted)", got, want)
	}
	if all := e.listPartition(p, 100); !slices.Equal(all, want) {
		e.t.Fatalf("ListExecutions in one page = %q, want %q", all, want)
	}
	if p > 0 {
		if other := e.listPartition(0, 100); len(other) != 0 {
			e.t.Fatalf("ListExecutions(0) = %q, want none (all were minted on %d)", other, p)
		}
	}

	for _, l := range []sdk.LaneID{"lane-c", "lane-a", "lane-b", "lane-a"} {
		e.create(simple(l))
	}
	wantLanes := []sdk.LaneID{"lane-a", "lane-b", "lane-c", lane}
	var lanes []sdk.LaneID
	var lc sdk.LaneID
	for pages := 0; ; pages++ {
		if pages > len(wantLanes) {
			e.t.Fatalf("ListLanes did not end after %d pages (so far %q)", pages, lanes)
		}
		page, err := e.b.ListLanes(e.ctx, lc, 2)
		if err != nil {
			e.t.Fatalf("ListLanes(%q, 2) = %v", lc, err)
		}
		if len(page.Lanes) > 2 {
			e.t.Fatalf("ListLanes(%q, 2) returned %d lanes", lc, len(page.Lanes))
		}
		lanes = append(lanes, page.Lanes...)
		if page.NextCursor == "" {
			break
		}
		if len(page.Lanes) == 0 || page.NextCursor != page.Lanes[len(page.Lanes)-1] {
			e.t.Fatalf("ListLanes(%q, 2): NextCursor %q is not the page's last lane (%q)", lc, page.NextCursor, page.Lanes)
		}
		lc = page.NextCursor
	}
	if !slices.Equal(lanes, wantLanes) {
		e.t.Fatalf("ListLanes = %q, want %q", lanes, wantLanes)
	}
}

// testUnknownExecution: calls on a well-formed id that does not exist all
// give ErrExecutionNotFound (one convention); a known execution without a
// result has a nil result, not an error.
func testUnknownExecution(e *env) {
	id := sdk.NewExecutionID(e.lastPartition())
	calls := []struct {
		name string
		call func() error
	}{
		{"DescribeExecution", func() error {
			s, err := e.b.DescribeExecution(e.ctx, id)
			if s != nil {
				e.t.Fatalf("DescribeExecution(unknown) returned a snapshot %+v", s)
			}
			return err
		}},
		{"GetExecutionResult", func() error {
			r, err := e.b.GetExecutionResult(e.ctx, id)
			if r != nil {
				e.t.Fatalf("GetExecutionResult(unknown) returned %q", r)
			}
			return err
		}},
		{"ReadExecutionInfo", func() error { _, err := e.b.ReadExecutionInfo(e.ctx, id); return err }},
		{"ReadExecutionState", func() error { _, err := e.b.ReadExecutionState(e.ctx, id); return err }},
		{"ReadExecutionContext", func() error { _, err := e.b.ReadExecutionContext(e.ctx, id); return err }},
		{"ReadCurrentAttemptIndex", func() error { _, err := e.b.ReadCurrentAttemptIndex(e.ctx, id); return err }},
		{"ReadTotalAttemptCount", func() error { _, err := e.b.ReadTotalAttemptCount(e.ctx, id); return err }},
		{"CancelExecution", func() error {
			_, err := e.b.CancelExecution(e.ctx, sdk.CancelExecutionArgs{ExecutionID: id})
			return err
		}},
		{"ChangePriority", func() error {
			_, err := e.b.ChangePriority(e.ctx, sdk.ChangePriorityArgs{ExecutionID: id, Priority: 1})
			return err
		}},
		{"IssueClaimGrant", func() error {
			_, err := e.b.IssueClaimGrant(e.ctx, grantArgs(id, "sdktest-unknown", workerID))
			return err
		}},
		{"RevokeLease", func() error { _, err := e.b.RevokeLease(e.ctx, sdk.RevokeLeaseArgs{ExecutionID: id}); return err }},
		{"ReplayExecution", func() error {
			_, err := e.b.ReplayExecution(e.ctx, sdk.ReplayExecutionArgs{ExecutionID: id})
			return err
		}},
		{"IssueReclaimGrant", func() error {
			_, err := e.b.IssueReclaimGrant(e.ctx, sdk.IssueReclaimGrantArgs{ExecutionID: id, WorkerID: workerID,
				WorkerInstanceID: workerInstance})
			return err
		}},
	}
	for _, c := range calls {
		e.rejects(c.name+"(unknown)", c.call, sdk.ErrExecutionNotFound)
	}
	if page, err := e.b.ListExecutions(e.ctx, 0, "", 10); err != nil || len(page.IDs) != 0 || page.NextCursor != "" {
		e.t.Fatalf("ListExecutions on an empty keyspace = %+v, %v", page, err)
	}
	if page, err := e.b.ListLanes(e.ctx, "", 10); err != nil || len(page.Lanes) != 0 || page.NextCursor != "" {
		e.t.Fatalf("ListLanes on an empty keyspace = %+v, %v", page, err)
	}
	known := e.create(simple("sdktest-unknown"))
	if r, err := e.b.GetExecutionResult(e.ctx, known); r != nil || err != nil {
		e.t.Fatalf("GetExecutionResult(known, not completed) = %q, %v; want nil, nil", r, err)
	}
}
