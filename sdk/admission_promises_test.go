package sdk_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Tests of the Worker's documented admission promises that no other test
// checks: README "Pause: a paused lane's work is not claimed and not
// handed off (workers post no offers on it, and a hand-off that raced the
// pause is handed back)"; LanePolicy.Paused "the lane's work is not
// claimed or handed off ... resuming makes it claimable at once".

// TestWorkerPausePromiseRacedHandoff: an idle worker has offers posted on
// the lane; an operator (its own connection) pauses the lane and a
// producer (its own connection, its own cached policy) submits at once,
// with no pause for the workers to hear of it. Nothing may run while the
// lane is paused (hand-offs to the standing offers are handed back), no
// quota slot stays held by handed-back work, and a resume runs it all.
func TestWorkerPausePromiseRacedHandoff(t *testing.T) {
	for _, withQuota := range []bool{false, true} {
		t.Run(fmt.Sprintf("quota=%v", withQuota), func(t *testing.T) {
			addrs := e2eTopologies()[0].addrs(t)
			wb, operator, producer := e2eConnect(t, addrs), e2eConnect(t, addrs), e2eConnect(t, addrs)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			lane := e2eLane(t, "pauserace")
			policy := sdk.LanePolicy{}
			q := sdk.QuotaID(fmt.Sprint("pr-", time.Now().UnixNano()))
			if withQuota {
				if err := operator.CreateQuotaPolicy(ctx, sdk.QuotaPolicy{ID: q, Concurrency: 10}); err != nil {
					t.Fatal(err)
				}
				policy.Quota = q
				if err := operator.SetLanePolicy(ctx, lane, policy); err != nil {
					t.Fatal(err)
				}
				// The producer's cache has the quota (its creates admit
				// what they hand to offers made under it).
				e2eWaitFor(t, 5*time.Second, "the producer reading the quota", func() bool {
					p, err := producer.LanePolicy(ctx, lane)
					return err == nil && p.Quota == q
				})
			}
			var ran atomic.Int64
			h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
				ran.Add(1)
				return nil
			})
			w, _ := e2eRunWorker(t, wb, sdk.WorkerConfig{WorkerID: "pr", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 4,
				IdlePoll: time.Minute}, h)
			client := sdk.NewClient(producer)
			// Warm up: one job runs, so the worker is idle with its offers
			// posted afterwards.
			if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}); err != nil {
				t.Fatal(err)
			}
			e2eWaitFor(t, 10*time.Second, "the warm-up job", func() bool { return ran.Load() == 1 })
			time.Sleep(200 * time.Millisecond) // idle, offers posted
			handoffsBefore := w.Stats().Handoffs
			t.Logf("before the pause: %d offered, %d hand-offs", w.Stats().Offered, handoffsBefore)
			paused := policy
			paused.Paused = true
			if err := operator.SetLanePolicy(ctx, lane, paused); err != nil {
				t.Fatal(err)
			}
			var ids []sdk.ExecutionID
			for range 5 {
				res, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, res.ID)
			}
			time.Sleep(500 * time.Millisecond)
			if n := ran.Load(); n != 1 {
				t.Fatalf("%d jobs ran while the lane was paused (stats %+v)", n-1, w.Stats())
			}
			for _, id := range ids {
				st, err := operator.ReadExecutionState(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if st != sdk.StateWaiting {
					t.Fatalf("%s is %s while paused, want waiting", id, st)
				}
			}
			if withQuota {
				if holds, err := operator.QuotaHolds(ctx, q); err != nil || len(holds) != 0 {
					t.Fatalf("quota holds while paused: %v, %v; want none (handed-back work gives its admission back)", holds, err)
				}
			}
			t.Logf("hand-offs while paused: %d (handed back)", w.Stats().Handoffs-handoffsBefore)
			if err := operator.SetLanePolicy(ctx, lane, policy); err != nil {
				t.Fatal(err)
			}
			e2eWaitFor(t, 10*time.Second, "the paused work running after the resume", func() bool { return ran.Load() == 6 })
		})
	}
}

// TestWorkerBudgetPromiseHoldsBack: "a budget over a hard limit holds the
// lane's work back, and work that cannot be admitted is parked
// (StateRateLimited) until the window allows, then comes back by itself"
// (sdk/admission.go); README: "A lane whose budget reached a hard limit
// admits no work: its head is parked (budget) and re-checked every
// second, so a reset lets it through"; workers post no offers on a lane
// with budgets. Handlers report usage with a dedup key (fenced by their
// lease), retried once: each counts exactly once.
func TestWorkerBudgetPromiseHoldsBack(t *testing.T) {
	addrs := e2eTopologies()[0].addrs(t)
	wb, operator := e2eConnect(t, addrs), e2eConnect(t, addrs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lane := e2eLane(t, "budget")
	bg := sdk.BudgetID(fmt.Sprint("wb-", time.Now().UnixNano()))
	if err := operator.CreateBudget(ctx, sdk.Budget{ID: bg, Limits: map[string]sdk.BudgetLimit{"tokens": {Hard: 5}}}); err != nil {
		t.Fatal(err)
	}
	if out, err := operator.ReportUsageAdmin(ctx, sdk.UsageReport{Budget: bg, Usage: map[string]uint64{"tokens": 5}}); err != nil || out.Status != sdk.UsageOK {
		t.Fatalf("ReportUsageAdmin to the hard limit = %+v, %v", out, err)
	}
	if err := operator.SetLanePolicy(ctx, lane, sdk.LanePolicy{Budgets: []sdk.BudgetID{bg}}); err != nil {
		t.Fatal(err)
	}
	go func() { // the engine's delayed promotion, for budget-parked work
		for ctx.Err() == nil {
			for p := range operator.Partitions() {
				_, _ = operator.PromoteDelayed(ctx, sdk.PromoteDelayedArgs{Lane: lane, Partition: p})
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var ran atomic.Int64
	var reportErrs atomic.Int64
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		ran.Add(1)
		r := sdk.UsageReport{Budget: bg, Usage: map[string]uint64{"tokens": 1}, DedupKey: string(task.ID)}
		for range 2 { // a retry after a lost reply
			if _, err := wb.ReportUsage(ctx, task.Handle, r); err != nil {
				reportErrs.Add(1)
			}
		}
		return nil
	})
	w, _ := e2eRunWorker(t, wb, sdk.WorkerConfig{WorkerID: "wb", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 4,
		IdlePoll: 100 * time.Millisecond}, h)
	time.Sleep(100 * time.Millisecond)
	client := sdk.NewClient(operator)
	const n = 3
	for range n {
		if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // past a re-check
	if k := ran.Load(); k != 0 {
		t.Fatalf("%d jobs ran on a lane whose budget is at its hard limit (stats %+v)", k, w.Stats())
	}
	if err := operator.ResetBudget(ctx, bg); err != nil {
		t.Fatal(err)
	}
	e2eWaitFor(t, 10*time.Second, "the held-back work running after the reset", func() bool { return ran.Load() == n })
	if reportErrs.Load() != 0 {
		t.Fatalf("%d usage reports failed", reportErrs.Load())
	}
	e2eWaitFor(t, 5*time.Second, "the usage counted", func() bool {
		st, err := operator.GetBudgetStatus(ctx, bg)
		return err == nil && st.Used["tokens"] == n
	})
	st, _ := operator.GetBudgetStatus(ctx, bg)
	if st.Used["tokens"] != n {
		t.Fatalf("usage %v after %d jobs each reporting 1 token twice with one dedup key, want %d", st.Used, n, n)
	}
}

// TestWorkerAdmissionPromiseLostLeaseKeepsSlot: "A running execution holds
// its slot until its attempt ends ... or, if its worker dies or loses the
// lease, until its hold lapses" (QuotaPolicy.Concurrency). A worker whose
// lease on X was lost (revoked here), and whose hold lapsed, while another
// claimer took X over (a hold of its own: holds are per execution) must
// not release that hold when its task ends: under a cap of 1, a second
// execution is still refused while X runs on the other claimer.
func TestWorkerAdmissionPromiseLostLeaseKeepsSlot(t *testing.T) {
	addrs := e2eTopologies()[0].addrs(t)
	b := e2eConnect(t, addrs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lane := e2eLane(t, "lostslot")
	q := sdk.QuotaID(fmt.Sprint("lostslot-", time.Now().UnixNano()))
	if err := b.CreateQuotaPolicy(ctx, sdk.QuotaPolicy{ID: q, Concurrency: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetLanePolicy(ctx, lane, sdk.LanePolicy{Quota: q}); err != nil {
		t.Fatal(err)
	}
	started, lost, takenOver, ended := make(chan sdk.ExecutionID, 1), make(chan struct{}), make(chan struct{}), make(chan struct{})
	h := sdk.HandlerFunc(func(hctx context.Context, task *sdk.Task) error {
		started <- task.ID
		<-hctx.Done() // the revocation reaches the worker's renewal
		close(lost)
		<-takenOver // another claimer runs X under its own hold now
		defer close(ended)
		return hctx.Err()
	})
	e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "a", InstanceID: sdk.WorkerInstanceID(t.Name()), Lanes: []sdk.LaneID{lane},
		MaxConcurrency: 1, LeaseTTL: 600 * time.Millisecond}, h)
	client := sdk.NewClient(b)
	xr, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	x := xr.ID
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the worker never started X")
	}
	if _, err := b.RevokeLease(ctx, sdk.RevokeLeaseArgs{ExecutionID: x, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-ctx.Done():
		t.Fatal("the worker never heard its lease was revoked")
	}
	if _, err := b.ReclaimExpired(ctx, []sdk.ExecutionID{x}, 10); err != nil {
		t.Fatal(err)
	}
	// The lost task's hold ends as its lapse would (a worker cut off from
	// the server stops refreshing it), and another claimer (its own worker
	// id) takes X over, admitted anew.
	if err := b.ReleaseAdmission(ctx, q, x); err != nil {
		t.Fatal(err)
	}
	claim := func(who string) (*sdk.ClaimedTask, sdk.Admission) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			ct, ad, err := b.ClaimForWorker(ctx, sdk.ClaimForWorkerArgs{Lane: lane, WorkerID: sdk.WorkerID(who),
				WorkerInstanceID: sdk.WorkerInstanceID(who + "-1"), LeaseTTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if ct != nil || ad.Reason != "" || time.Now().After(deadline) {
				return ct, ad
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if ct, ad := claim("b"); ct == nil || ct.Handle.ExecutionID != x {
		t.Fatalf("the takeover claim = %+v (%+v), want %s", ct, ad, x)
	}
	close(takenOver)
	<-ended
	time.Sleep(50 * time.Millisecond) // the worker's endTask runs after the handler returns
	holds, err := b.QuotaHolds(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := holds[x]; !ok {
		t.Fatalf("the takeover's hold on %s was released by the worker that lost the lease (holds %v)", x, holds)
	}
	y, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if ct, ad := claim("c"); ct != nil {
		t.Fatalf("claim of %s while %s runs under a cap of 1 = %s admitted (%+v); want a concurrency refusal", y.ID, x, ct.Handle.ExecutionID, ad)
	}
}
