package sdktest

import (
	"fmt"
	"slices"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// grantAndClaim claims id with GrantAndClaim and checks the task.
func (e *env) grantAndClaim(gc sdk.GrantClaimer, id sdk.ExecutionID, typ sdk.AttemptType, want sdk.ExecutionContext, caps ...string) sdk.ClaimedTask {
	e.t.Helper()
	before := time.Now()
	t, err := gc.GrantAndClaim(e.ctx, grantArgs(id, want.Lane, workerID, caps...), leaseTTL)
	if err != nil {
		e.t.Fatalf("GrantAndClaim(%s) = %v", id, err)
	}
	e.checkTask("GrantAndClaim("+string(id)+")", t, id, leaseTTL, before, time.Now(), typ, want)
	return t
}

// grantToOther grants id to otherWorkerID, as another worker's claim under
// way.
func (e *env) grantToOther(id sdk.ExecutionID, lane sdk.LaneID) {
	e.t.Helper()
	if _, err := e.b.IssueClaimGrant(e.ctx, grantArgs(id, lane, otherWorkerID)); err != nil {
		e.t.Fatalf("IssueClaimGrant(%s) to another worker = %v", id, err)
	}
}

// claimAsGrantee claims id with the grant grantToOther issued: the grant
// stood through what happened since (after).
func (e *env) claimAsGrantee(id sdk.ExecutionID, lane sdk.LaneID, after string) {
	e.t.Helper()
	a := claimArgs(id, lane, leaseTTL)
	a.WorkerID = otherWorkerID
	if _, err := e.b.ClaimExecution(e.ctx, a); err != nil {
		e.t.Fatalf("ClaimExecution(%s) by the grantee after %s = %v", id, after, err)
	}
}

// testGrantClaim: GrantAndClaim takes the lease and returns the context in
// one call.
func testGrantClaim(e *env) {
	gc := need(e, e.roles.GrantClaimer, sdk.RoleGrantClaim)
	const lane sdk.LaneID = "sdktest-grant-claim"
	args := sdk.CreateExecutionArgs{Lane: lane, Kind: "sdktest.grant-claim", Payload: binaryPayload(),
		Tags: map[string]string{"tenant": "acme", "empty": ""}}
	id := e.create(args)
	t := e.grantAndClaim(gc, id, sdk.AttemptInitial, contextOf(args))
	if t.Handle.AttemptIndex != 0 {
		e.t.Fatalf("GrantAndClaim of a new execution: attempt index %d, want 0", t.Handle.AttemptIndex)
	}
	e.requireScannable(lane, id, false, "after GrantAndClaim")
	e.requireAttempts(id, 1, 0)
	if _, err := e.b.Renew(e.ctx, t.Handle); err != nil {
		e.t.Fatalf("Renew of a GrantAndClaim lease = %v", err)
	}
	e.must("Complete", e.b.Complete(e.ctx, t.Handle, []byte("ok")))
	e.requireState(id, sdk.StateCompleted, "after Complete")

	// LeaseTTL 0 is the default lease.
	id = e.create(simple(lane))
	before := time.Now()
	t, err := gc.GrantAndClaim(e.ctx, grantArgs(id, lane, workerID), 0)
	if err != nil {
		e.t.Fatalf("GrantAndClaim with LeaseTTL 0 = %v", err)
	}
	e.checkClaim(t.ClaimedExecution, id, lane, sdk.LeaseTTLDefault, before, time.Now())
}

// testGrantClaimRejections: GrantAndClaim refuses what IssueClaimGrant or
// ClaimExecution refuse, with their errors, and claims nothing.
func testGrantClaimRejections(e *env) {
	gc := need(e, e.roles.GrantClaimer, sdk.RoleGrantClaim)
	const lane sdk.LaneID = "sdktest-grant-claim-rejects"
	grantAndClaim := func(id sdk.ExecutionID, caps ...string) func() error {
		return func() error {
			_, err := gc.GrantAndClaim(e.ctx, grantArgs(id, lane, workerID, caps...), leaseTTL)
			return err
		}
	}

	args := simple(lane)
	args.RequiredCapabilities = []string{"gpu"}
	gpu := e.create(args)
	for _, caps := range [][]string{nil, {"cuda"}} {
		e.rejects("GrantAndClaim with capabilities "+csv(caps), grantAndClaim(gpu, caps...), sdk.ErrCapabilityMismatch)
	}
	e.requireState(gpu, sdk.StateWaiting, "capability mismatch")
	e.requireScannable(lane, gpu, true, "capability mismatch")
	e.grantAndClaim(gc, gpu, sdk.AttemptInitial, contextOf(args), "gpu")
	e.rejects("GrantAndClaim of an active execution", grantAndClaim(gpu, "gpu"), sdk.ErrContention, sdk.ErrState)

	// A grant to another worker stands: GrantAndClaim loses, the grantee claims.
	granted := e.create(simple(lane))
	e.grantToOther(granted, lane)
	e.rejects("GrantAndClaim of an execution granted to another worker", grantAndClaim(granted), sdk.ErrGrantAlreadyExists, sdk.ErrContention)
	e.claimAsGrantee(granted, lane, "GrantAndClaim lost")

	delayed := simple(lane)
	delayed.DelayUntil = time.Now().Add(time.Hour)
	e.rejects("GrantAndClaim of a delayed execution", grantAndClaim(e.create(delayed)), sdk.ErrContention, sdk.ErrState)
	blocked := e.create(simple(lane))
	if out, err := e.b.BlockRoute(e.ctx, sdk.BlockRouteArgs{ExecutionID: blocked, Lane: lane}); err != nil || !out.Blocked {
		e.t.Fatalf("BlockRoute = %+v, %v; want blocked", out, err)
	}
	e.rejects("GrantAndClaim of a blocked execution", grantAndClaim(blocked), sdk.ErrContention, sdk.ErrState)
	e.rejects("GrantAndClaim(unknown)", grantAndClaim(sdk.NewExecutionID(e.lastPartition())), sdk.ErrNotFound)
	waiting := e.create(simple(lane))
	e.rejects("GrantAndClaim with a negative lease TTL", func() error {
		_, err := gc.GrantAndClaim(e.ctx, grantArgs(waiting, lane, workerID), -time.Second)
		return err
	}, sdk.ErrValidation)
	e.rejects("GrantAndClaim with an empty worker id", func() error {
		_, err := gc.GrantAndClaim(e.ctx, grantArgs(waiting, lane, ""), leaseTTL)
		return err
	}, sdk.ErrValidation)
}

// testGrantClaimResumed: an interrupted attempt, due again, is claimed
// resumed by GrantAndClaim: the same attempt under a new lease.
func testGrantClaimResumed(e *env) {
	gc := need(e, e.roles.GrantClaimer, sdk.RoleGrantClaim)
	const lane sdk.LaneID = "sdktest-grant-claim-resume"
	args := simple(lane)
	args.Payload = []byte("resumed")
	id := e.create(args)
	first := e.grantAndClaim(gc, id, sdk.AttemptInitial, contextOf(args))
	e.interrupt(first.Handle)
	t := e.grantAndClaim(gc, id, sdk.AttemptResumed, contextOf(args))
	e.requireResumed("resumed GrantAndClaim", t.Handle, first.Handle)
	e.requireAttempts(id, 1, 0)
	e.requireFenced(first.Handle, "with the handle from before the delay", sdk.ErrStaleLease)
	e.must("Complete", e.b.Complete(e.ctx, t.Handle, nil))
}

func fusedArgs(lane sdk.LaneID, p, maxTasks int, caps ...string) sdk.FusedClaimArgs {
	return sdk.FusedClaimArgs{Lane: lane, Partition: p, Max: maxTasks, WorkerID: workerID, WorkerInstanceID: workerInstance,
		Capabilities: caps, LeaseTTL: leaseTTL}
}

// fused claims with args and checks every task is a fresh lease of lane
// on args.Partition with its context inline, of the attempt type typ.
// want maps the ids it may return to their contexts.
func (e *env) fused(fc sdk.FusedClaimer, args sdk.FusedClaimArgs, typ sdk.AttemptType, want map[sdk.ExecutionID]sdk.ExecutionContext) []sdk.ExecutionID {
	e.t.Helper()
	before := time.Now()
	ts, err := fc.ClaimFused(e.ctx, args)
	if err != nil {
		e.t.Fatalf("ClaimFused(%q, partition %d, max %d) = %v", args.Lane, args.Partition, args.Max, err)
	}
	after := time.Now()
	if len(ts) > max(args.Max, 1) {
		e.t.Fatalf("ClaimFused(max %d) returned %d tasks", args.Max, len(ts))
	}
	ids := make([]sdk.ExecutionID, len(ts))
	for i, t := range ts {
		id := t.Handle.ExecutionID
		c, ok := want[id]
		if !ok {
			e.t.Fatalf("ClaimFused(%q, partition %d) returned %s, not one of the executions it may claim", args.Lane, args.Partition, id)
		}
		e.checkTask(fmt.Sprintf("ClaimFused task %d", i), t, id, args.LeaseTTL, before, after, typ, c)
		ids[i] = id
	}
	return ids
}

// testFusedOrder: ClaimFused takes up to Max of the partition's head,
// highest priority first, then oldest, with each context inline, and
// nothing of other partitions or lanes.
func testFusedOrder(e *env) {
	fc := need(e, e.roles.FusedClaimer, sdk.RoleFusedClaim)
	const lane sdk.LaneID = "sdktest-fused"
	p := e.lastPartition()
	prios := []int{0, 5, 0, 9, 5}
	ids := make([]sdk.ExecutionID, len(prios))
	want := map[sdk.ExecutionID]sdk.ExecutionContext{}
	for i, prio := range prios {
		args := onPartition(simple(lane), p)
		args.Priority = prio
		args.Payload = []byte(fmt.Sprintf("job %d", i))
		args.Tags = map[string]string{"i": fmt.Sprint(i)}
		ids[i] = e.create(args)
		want[ids[i]] = contextOf(args)
		e.sleep(fifoGap)
	}
	bystanders := []sdk.ExecutionID{e.create(onPartition(simple("sdktest-fused-other"), p))}
	if p > 0 {
		bystanders = append(bystanders, e.create(onPartition(simple(lane), 0)))
	}

	for _, step := range []struct {
		max  int
		want []sdk.ExecutionID
	}{
		{0, ids[3:4]}, // Max 0 means 1
		{2, []sdk.ExecutionID{ids[1], ids[4]}},
		{10, []sdk.ExecutionID{ids[0], ids[2]}},
		{10, nil},
	} {
		if got := e.fused(fc, fusedArgs(lane, p, step.max), sdk.AttemptInitial, want); !slices.Equal(got, step.want) {
			e.t.Fatalf("ClaimFused(max %d) = %q, want %q (priorities %v in creation order %q)", step.max, got, step.want, prios, ids)
		}
	}
	for _, id := range ids {
		e.requireState(id, sdk.StateActive, "claimed by ClaimFused")
	}
	for _, id := range bystanders {
		e.requireState(id, sdk.StateWaiting, "another lane or partition after ClaimFused")
	}
	if got := e.fused(fc, fusedArgs("sdktest-fused-empty", 0, 5), sdk.AttemptInitial, nil); len(got) != 0 {
		e.t.Fatalf("ClaimFused on an empty lane = %q", got)
	}
	for _, bad := range []int{-1, e.b.Partitions()} {
		e.rejects(fmt.Sprintf("ClaimFused on partition %d", bad), func() error {
			_, err := fc.ClaimFused(e.ctx, fusedArgs(lane, bad, 1))
			return err
		}, sdk.ErrValidation)
	}
}

// testFusedCapabilities: ClaimFused never returns an execution whose
// capabilities the worker lacks (it blocks it for routing), nor one
// granted to another worker.
func testFusedCapabilities(e *env) {
	fc := need(e, e.roles.FusedClaimer, sdk.RoleFusedClaim)
	const lane sdk.LaneID = "sdktest-fused-caps"
	p := e.lastPartition()
	create := func(prio int, caps ...string) (sdk.ExecutionID, sdk.ExecutionContext) {
		args := onPartition(simple(lane), p)
		args.Priority, args.RequiredCapabilities = prio, caps
		id := e.create(args)
		e.sleep(fifoGap)
		return id, contextOf(args)
	}
	gpu, gpuCtx := create(9, "gpu")
	tpu, _ := create(8, "tpu")
	granted, _ := create(7)
	plain, plainCtx := create(0)
	e.grantToOther(granted, lane)

	got := e.fused(fc, fusedArgs(lane, p, 10, "gpu"), sdk.AttemptInitial,
		map[sdk.ExecutionID]sdk.ExecutionContext{gpu: gpuCtx, plain: plainCtx})
	if !slices.Equal(got, []sdk.ExecutionID{gpu, plain}) {
		e.t.Fatalf("ClaimFused with capability gpu = %q, want [%s %s]", got, gpu, plain)
	}
	e.requireState(tpu, sdk.StateWaiting, "skipped by ClaimFused for capabilities")
	e.requireScannable(lane, tpu, false, "skipped by ClaimFused for capabilities")
	if s := e.describe(tpu); s.BlockedReason != sdk.CodeCapabilityMismatch {
		e.t.Fatalf("DescribeExecution of an execution ClaimFused skipped for capabilities: BlockedReason %q, want %q", s.BlockedReason, sdk.CodeCapabilityMismatch)
	}
	// Blocked for routing: even a capable worker's ClaimFused leaves it.
	if got := e.fused(fc, fusedArgs(lane, p, 10, "tpu"), sdk.AttemptInitial, nil); len(got) != 0 {
		e.t.Fatalf("ClaimFused after the rest was taken = %q, want none", got)
	}

	// The grant to another worker stood.
	e.requireState(granted, sdk.StateWaiting, "granted to another worker, after ClaimFused")
	e.claimAsGrantee(granted, lane, "ClaimFused")
}

// testFusedResumed: ClaimFused claims an interrupted attempt, due again,
// resumed.
func testFusedResumed(e *env) {
	fc := need(e, e.roles.FusedClaimer, sdk.RoleFusedClaim)
	const lane sdk.LaneID = "sdktest-fused-resume"
	p := e.lastPartition()
	args := onPartition(simple(lane), p)
	id := e.create(args)
	c := e.claim(id, lane, leaseTTL)
	e.interrupt(c.Handle)
	got := e.fused(fc, fusedArgs(lane, p, 5), sdk.AttemptResumed, map[sdk.ExecutionID]sdk.ExecutionContext{id: contextOf(args)})
	if !slices.Equal(got, []sdk.ExecutionID{id}) {
		e.t.Fatalf("ClaimFused of an interrupted attempt = %q, want [%s]", got, id)
	}
	e.requireAttempts(id, 1, 0)
	e.requireFenced(c.Handle, "with the handle from before the delay", sdk.ErrStaleLease)
}
