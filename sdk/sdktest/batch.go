package sdktest

import (
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// testBatchSubmit: CreateExecutions answers, per item and in order, what
// CreateExecution would: creates on several partitions, a delay, an
// idempotency key repeated inside the batch (a duplicate of its first item)
// and one from before, explicit ids taken before and inside the batch,
// invalid items. Failed items have a zero result and their error in a
// *sdk.BatchError; a batch of invalid items writes nothing.
func testBatchSubmit(e *env) {
	bs := need(e, e.roles.BatchSubmitter, sdk.RoleBatchSubmit)
	const lane sdk.LaneID = "sdktest-batch-submit"
	if res, err := bs.CreateExecutions(e.ctx, nil); err != nil || len(res) != 0 {
		e.t.Fatalf("CreateExecutions(no items) = %v, %v; want no results", res, err)
	}
	old := simple(lane)
	old.IdempotencyKey = "sdktest-batch-old"
	oldID := e.create(old)
	taken := e.create(onPartition(simple(lane), e.lastPartition()))

	parts := e.somePartitions(4)
	fresh := sdk.NewExecutionID(parts[len(parts)-1])
	keyed := simple(lane)
	keyed.IdempotencyKey = "sdktest-batch-new"
	keyed.Payload = []byte("first")
	repeat := keyed
	repeat.Payload = []byte("repeat")
	delayed := simple(lane)
	delayed.DelayUntil = time.Now().Add(time.Hour)
	invalid := simple(lane)
	invalid.Kind = ""
	items := []sdk.CreateExecutionArgs{keyed, delayed, repeat, old, onPartition(simple(lane), parts[0]),
		{ID: taken, Lane: lane, Kind: "other"}, invalid, {ID: fresh, Lane: lane, Kind: "sdktest.job", Priority: 7},
		{ID: fresh, Lane: lane, Kind: "other"}}
	for _, p := range parts {
		items = append(items, onPartition(simple(lane), p))
	}
	res, err := bs.CreateExecutions(e.ctx, items)
	var be *sdk.BatchError
	if !errors.As(err, &be) || len(be.Errs) != len(items) || len(res) != len(items) {
		e.t.Fatalf("CreateExecutions = %d results, %v; want %d and a *sdk.BatchError with one error slot per item", len(res), err, len(items))
	}
	wantErr := map[int]error{5: sdk.ErrExecutionIDInUse, 6: sdk.ErrValidation, 8: sdk.ErrExecutionIDInUse}
	for i, r := range res {
		if want := wantErr[i]; want != nil {
			requireErr(e.t, "batch item "+strconv.Itoa(i), be.Errs[i], want)
			if r != (sdk.CreateExecutionResult{}) {
				e.t.Fatalf("failed batch item %d has result %+v, want the zero result", i, r)
			}
			continue
		}
		if be.Errs[i] != nil {
			e.t.Fatalf("batch item %d failed: %v", i, be.Errs[i])
		}
		wantDup, wantID, wantState := false, items[i].ID, sdk.StateWaiting
		switch i {
		case 1:
			wantState = sdk.StateDelayed
		case 2:
			wantDup, wantID = true, res[0].ID
		case 3:
			wantDup, wantID = true, oldID
		}
		if r.Duplicate != wantDup || (wantID != "" && r.ID != wantID) || r.State != wantState {
			e.t.Fatalf("batch item %d = %+v, want duplicate %v id %q state %q", i, r, wantDup, wantID, wantState)
		}
		e.partition(r.ID)
		e.requireState(r.ID, wantState, "after the batch")
	}
	e.requireContext(res[0].ID, lane, "sdktest.job", []byte("first"), nil)
	e.requireContext(taken, lane, "sdktest.job", []byte("{}"), nil)
	if s := e.describe(fresh); s.Priority != 7 {
		e.t.Fatalf("batch item 7: priority %d, want 7", s.Priority)
	}
	for _, id := range []sdk.ExecutionID{res[4].ID, res[len(res)-1].ID} {
		if !slices.Contains(e.scan(lane, e.partition(id), 100), id) {
			e.t.Fatalf("batch item %s is not eligible", id)
		}
	}

	// Invalid items only: every item fails, nothing is written.
	before := e.snapshot()
	tooBig := simple(lane)
	tooBig.Payload = make([]byte, e.h.MaxPayloadBytes+1)
	bad := []sdk.CreateExecutionArgs{invalid, {ID: taken, Lane: lane, Kind: "k"}}
	if e.h.MaxPayloadBytes > 0 {
		bad = append(bad, tooBig)
	}
	res, err = bs.CreateExecutions(e.ctx, bad)
	if !errors.As(err, &be) || len(be.Errs) != len(bad) || len(res) != len(bad) {
		e.t.Fatalf("CreateExecutions(invalid items) = %d results, %v", len(res), err)
	}
	for i, err := range be.Errs {
		if err == nil {
			e.t.Fatalf("invalid batch item %d succeeded: %+v", i, res[i])
		}
	}
	requireErr(e.t, "batch item with a taken id", be.Errs[1], sdk.ErrExecutionIDInUse)
	if e.h.Snapshot != nil {
		requireSameKeyspace(e.t, "a batch of failing items", before, e.snapshot())
	}
}
