package sdk

import (
	"sync/atomic"
	"time"
)

// WorkerStats are a worker's counters since it started.
type WorkerStats struct {
	Claimed   uint64 // leases obtained
	Completed uint64 // Complete landed
	Failed    uint64 // Fail landed, terminal
	Retried   uint64 // Fail landed, retry scheduled
	Cancelled uint64 // Cancel landed
	Delayed   uint64 // Delay landed
	Suspended uint64 // Suspend landed and released the lease

	HandlerErrors uint64 // handlers that returned an error
	HandlerPanics uint64 // handlers that panicked
	Aborted       uint64 // tasks taken over at hard shutdown
	// GivenBack counts attempts handed back unchanged (no retry consumed)
	// because the handler's outcome could not be written, or the handler
	// returned a transport error of the SDK's.
	GivenBack uint64

	LostLeases    uint64        // leases found lost (fenced renewal or write, local expiry)
	Renewals      uint64        // successful renewals
	RenewFailures uint64        // renewals that failed without losing the lease
	RenewRounds   uint64        // renewal rounds (one BatchRenewer call each)
	RenewLagAvg   time.Duration // how late renewals went out, on average
	RenewLagMax   time.Duration // … and at worst

	ClaimRounds      uint64 // passes over the lanes
	Scans            uint64 // scan calls (a window, or one partition)
	ReadinessReads   uint64 // ReadyPartitions calls
	ClaimAttempts    uint64 // grant+claim attempts (direct) or fused calls
	ClaimConflicts   uint64 // attempts lost to another worker or a state change
	CapabilityBlocks uint64 // executions blocked for routing
	ClaimErrors      uint64 // claim rounds ended by a transport error
	IdleWakeupsPush  uint64 // idle waits ended by a readiness push or an arrival
	Arrivals         uint64 // arrivals the worker tried to claim straight from the push
	IdleWakeupsPoll  uint64 // idle waits ended by the fallback poll
	Offers           uint64 // claim offers posted (ClaimOfferer)
	Handoffs         uint64 // executions handed to this worker's offers

	// CompleteBatches counts the batches of completions sent
	// (CompleteBatcher), BatchedCompletes the completions they carried,
	// and CompleteBatchMax the largest: BatchedCompletes/CompleteBatches
	// is the completions per call.
	CompleteBatches  uint64
	BatchedCompletes uint64
	CompleteBatchMax uint64
	// CompleteWaitAvg and CompleteWaitMax are how long a completion waited
	// for the batch ahead of it before its own went out.
	CompleteWaitAvg time.Duration
	CompleteWaitMax time.Duration

	InFlight   int // slots in use now: tasks running and claims under way
	Offered    int // slots offered now (open, or taken with the hand-off still coming)
	HeldLeases int // leases the renewer holds now
}

// workerStats are the worker's own counters (the renewer keeps its own).
type workerStats struct {
	claimed, completed, failed, retried, cancelled, delayed, suspended atomic.Uint64
	handlerErrors, handlerPanics, aborted, lostLeases                  atomic.Uint64
	claimRounds, scans, readiness, attempts, conflicts                 atomic.Uint64
	blocks, claimErrors, idlePush, idlePoll, arrivals                  atomic.Uint64
	offers, handoffs, givenBack                                        atomic.Uint64
}

// Stats returns a snapshot of the worker's counters.
func (w *Worker) Stats() WorkerStats {
	s := &w.stats
	r := &w.renewer.stats
	open, taken := w.offers.counts()
	offered := open + taken
	avg, mx := r.lag()
	st := WorkerStats{
		Claimed: s.claimed.Load(), Completed: s.completed.Load(), Failed: s.failed.Load(),
		Retried: s.retried.Load(), Cancelled: s.cancelled.Load(), Delayed: s.delayed.Load(), Suspended: s.suspended.Load(),
		HandlerErrors: s.handlerErrors.Load(), HandlerPanics: s.handlerPanics.Load(), Aborted: s.aborted.Load(), GivenBack: s.givenBack.Load(),
		LostLeases: s.lostLeases.Load(), Renewals: r.renewals.Load(), RenewFailures: r.failures.Load(),
		RenewRounds: r.batches.Load(), RenewLagAvg: avg, RenewLagMax: mx,
		ClaimRounds: s.claimRounds.Load(), Scans: s.scans.Load(), ReadinessReads: s.readiness.Load(),
		ClaimAttempts: s.attempts.Load(), ClaimConflicts: s.conflicts.Load(), CapabilityBlocks: s.blocks.Load(),
		ClaimErrors: s.claimErrors.Load(), IdleWakeupsPush: s.idlePush.Load(), IdleWakeupsPoll: s.idlePoll.Load(),
		Arrivals: s.arrivals.Load(), Offers: s.offers.Load(), Handoffs: s.handoffs.Load(),
		InFlight: w.slots.inUse() - offered, Offered: offered, HeldLeases: w.renewer.held(),
	}
	if c := w.completer; c != nil {
		st.CompleteBatches, st.BatchedCompletes, st.CompleteBatchMax, st.CompleteWaitAvg, st.CompleteWaitMax = c.waitStats()
	}
	return st
}
