// Package sdktest is the conformance suite every sdk.EngineBackend passes.
//
// A backend's own tests call Run with a Harness that hands the suite a backend
// on an empty keyspace and a way to dump that keyspace:
//
//	func TestConformance(t *testing.T) {
//		srv, err := valkeytest.Start(t.Context(), valkeytest.Options{}) // one server for the suite
//		if err != nil {
//			t.Fatal(err)
//		}
//		t.Cleanup(func() { srv.Close() })
//		sdktest.Run(t, sdktest.Harness{
//			New: func(t *testing.T) sdk.EngineBackend {
//				flushAll(t, srv.Addr())
//				b, err := valkeybackend.Connect(t.Context(), valkeybackend.Options{Addrs: []string{srv.Addr()}})
//				if err != nil {
//					t.Fatal(err)
//				}
//				t.Cleanup(b.Close)
//				return b
//			},
//			Snapshot:        func(t *testing.T) map[string]string { return dumpKeyspace(t, srv.Addr()) },
//			MaxPayloadBytes: valkeybackend.MaxPayloadBytesDefault,
//		})
//	}
//
// Run starts one subtest per behaviour (lifecycle, retry, fencing, cancel,
// bad_input_writes_nothing, recovery/…, batch_renew/…, offers/…; the names
// are stable so -run can select them)
// and calls Harness.New once per subtest. Subtests run one after another, never
// in parallel, so New may reuse one server as long as it empties it first.
//
// What the suite expects of a harness:
//
//   - New returns a ready backend: connected, prepared (library loaded), with
//     an empty keyspace, and no background scanners running (the suite drives
//     PromoteDelayed itself and relies on an expired lease staying unreclaimed).
//     It registers its own cleanup with t.Cleanup.
//   - Snapshot returns every key of the keyspace (on every primary of a cluster)
//     mapped to a digest of its type and value. It must not include TTLs:
//     the suite compares snapshots around rejected calls to prove they wrote
//     nothing, and a key's remaining TTL shrinks in between. A nil Snapshot
//     reduces those checks to checking the error.
//   - MaxPayloadBytes is the backend's payload limit; the suite submits one
//     byte more and expects a payload_too_large validation error, and submits
//     exactly the limit (when at most 16 MiB) and expects success. Zero skips
//     both checks.
//
// Backend behaviour the suite pins down beyond the sdk doc comments:
//
//   - Every rejected call (validation, fencing, capability mismatch, grant
//     contention, use_claim_resumed_execution, cancel of a terminal
//     execution) leaves the keyspace exactly as it was. The one exception is
//     a call refused with lease_expired, which may record the expiry.
//   - A rejected ClaimExecution (use_claim_resumed_execution, invalid claim
//     grant) leaves the grant in place for the right call or worker.
//   - Complete, Fail and Cancel on an execution that is no longer active
//     return execution_not_active with NotActive detail (state, epoch,
//     attempt id of the last lease). An operator's CancelExecution of a
//     terminal execution returns execution_terminal with the state as its
//     detail.
//   - A zero-delay retry is eligible at once, or delayed and promotable by
//     one PromoteDelayed call; Initial 0 without ZeroDelay means 1s.
//   - Priority ties are broken by creation time at millisecond resolution:
//     the suite creates executions fifoGap apart when it checks FIFO order.
//   - Calls on a well-formed but unknown id, reads and writes alike, return
//     ErrExecutionNotFound; GetExecutionResult of a known execution without
//     a result returns nil, nil.
//   - CreateExecution with an explicit ID an execution has returns
//     ErrExecutionIDInUse and writes nothing; a repeated idempotency key
//     returns the first execution (Duplicate) with its state now.
//   - Ids beyond Partitions(), and partitions out of range, are validation
//     errors.
//
// Recovery (sdk.Recovery, part of every EngineBackend) has its own
// subtests, recovery/…: a revoked or expired lease is taken over by
// IssueReclaimGrant + ReclaimExecution (a new attempt, reclaim type, higher
// epoch, context inline; the old handle gets stale_lease); the refusals
// (execution_not_reclaimable on a live lease, a missing or foreign grant,
// a capability mismatch) write nothing; the reclaim past MaxReclaims fails
// the execution terminally; ReplayExecution runs a completed, failed or
// cancelled execution again as a new replay attempt, up to MaxReplays;
// ClaimFromResumeGrant continues a due interrupted attempt and otherwise
// returns nil, nil having written nothing; ReadExecutionInfo returns nil,
// nil for an unknown id.
//
// Optional roles (sdk/roles.go) have one subtest group each: batch_renew,
// window_scan, grant_claim, fused_claim, batch_submit and offers
// (ClaimOfferer, with CompleteOfferer for offers/complete_and_offer). Each subtest skips
// ("backend lacks <role>") unless sdk.RolesOf returns the role, so a
// backend opts in the way it does for the Worker: implement the interface
// and list the role in Features().Roles. Listed roles are then held to
// their doc comments:
//
//   - batch_renew: one result per handle, in order, across partitions and
//     lease TTLs; each refused handle (stale after a reclaim, revoked,
//     expired, completed, unknown, beyond Partitions(), from another
//     backend, malformed) gets the error Renew would give it, in its
//     place, while the others renew (by their own TTL, as
//     DescribeExecution then shows); a batch of refused handles writes
//     nothing.
//   - window_scan: per requested partition, in the requested order
//     (repeats included), what ScanEligibleExecutions answers there, at
//     limits below and above a head cache, and again after the head moved.
//     A backend serving it from a cache may lag a write by the time an
//     invalidation takes: the suite polls for up to settleDeadline (3s).
//   - grant_claim: the lease and the context in one call; the errors of
//     IssueClaimGrant and ClaimExecution (capability mismatch, active,
//     granted to another worker, delayed, blocked, unknown), each writing
//     nothing; an interrupted attempt is claimed resumed.
//   - fused_claim: at most Max (0 means 1), priority then FIFO on the
//     partition, context inline, nothing of other lanes or partitions;
//     executions needing capabilities the worker lacks are blocked for
//     routing (BlockedReason capability_mismatch) and those granted to
//     another worker are left to it; an interrupted attempt is resumed.
//   - batch_submit: per item, in order, what CreateExecution answers:
//     creates on several partitions, a delay, an idempotency key repeated
//     in the batch (a duplicate of its first item) or from before, ids
//     taken before or inside the batch and invalid items failing alone in
//     their *sdk.BatchError slot with a zero result; a batch of failing
//     items writes nothing.
//   - offers: a create into an empty eligible set while an offer is open
//     answers active and the worker's WatchHandoffs deliver gets the lease
//     (LeaseID the offer's) with the context inline; an offer is spent
//     once; withdrawn, expired, or passed over (capabilities, delayed
//     work) it takes nothing; RefreshOffers and WithdrawOffers answer per
//     offer, in order, across lanes; CompleteAndOffer posts nothing when
//     the complete fails, and completes alone when the offer is refused.
//
// The offers subtests create through the backend they watch hand-offs on.
// roles_listed checks every role in Features().Roles is known, listed once,
// and implemented. The suite has no subtests yet for readiness, arrivals,
// lease events and the worker registry. Since a missing role
// skips its subtests, a backend's test should pin which roles each of its
// configurations lists (valkeybackend's TestConformance does).
//
// Times: the suite compares server-stamped times (lease expiry, retry due
// times) with the local clock, allowing clockSlack (25ms) outside the window
// the call ran in, so the server must run on the same host (or on a clock
// synchronised well within that). Delays are tens to hundreds of
// milliseconds; the whole suite takes a few seconds.
package sdktest
