package sdk_test

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestClientSubmitsShareCalls: concurrent Submits share round trips (fewer
// FCALLs than submits), and each is answered as its own CreateExecution
// would be: a fresh execution, waiting, or its own validation error, or a
// duplicate of its idempotency key's first execution.
func TestClientSubmitsShareCalls(t *testing.T) {
	ctx := context.Background()
	srv := valkeytest.NewServer(t)
	addrs := []string{srv.Addr()}
	c := sdk.NewClient(e2eConnect(t, addrs))
	lane := e2eLane(t, "submits")
	if _, err := c.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}); err != nil { // the lane registry
		t.Fatal(err)
	}
	if err := valkeytest.ResetStats(ctx, addrs); err != nil {
		t.Fatal(err)
	}
	const n = 200
	res := make([]sdk.CreateExecutionResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a := sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}
			switch i % 50 {
			case 7:
				a.Kind = "" // invalid
			case 9:
				a.IdempotencyKey = "same"
			}
			res[i], errs[i] = c.Submit(ctx, a)
		})
	}
	wg.Wait()
	calls, err := valkeytest.CommandCalls(ctx, addrs)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[sdk.ExecutionID]bool{}
	var first sdk.ExecutionID
	var sameIDs []sdk.ExecutionID
	for i := range n {
		switch i % 50 {
		case 7:
			if sdk.KindOf(errs[i]) != sdk.KindValidation {
				t.Fatalf("submit %d (no kind): %v, want a validation error", i, errs[i])
			}
			continue
		case 9:
			if errs[i] != nil {
				t.Fatalf("submit %d: %v", i, errs[i])
			}
			// The submits of one key race: whichever landed first created
			// the execution, and every other is its duplicate.
			if !res[i].Duplicate {
				if first != "" {
					t.Fatalf("submit %d of key %q: %+v, a second creation (first %s)", i, "same", res[i], first)
				}
				first = res[i].ID
			}
			sameIDs = append(sameIDs, res[i].ID)
			continue
		}
		if errs[i] != nil || res[i].Duplicate || res[i].State != sdk.StateWaiting || seen[res[i].ID] {
			t.Fatalf("submit %d: %+v, %v; want a new waiting execution", i, res[i], errs[i])
		}
		seen[res[i].ID] = true
	}
	if first == "" {
		t.Fatalf("no submit of key %q created an execution: %v", "same", sameIDs)
	}
	for _, id := range sameIDs {
		if id != first {
			t.Fatalf("a submit of key %q answered %s, want %s", "same", id, first)
		}
	}
	st := e2eStates(t, c.Backend(), append(slices.Collect(maps.Keys(seen)), first))
	for id, s := range st {
		if s != sdk.StateWaiting {
			t.Fatalf("%s is %s, want waiting", id, s)
		}
	}
	if calls["fcall"] >= n {
		t.Fatalf("%d FCALLs for %d concurrent submits; want them to share calls", calls["fcall"], n)
	}
	t.Logf("%d concurrent submits in %d FCALLs", n, calls["fcall"])
}
