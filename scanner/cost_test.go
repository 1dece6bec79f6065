package scanner_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// An idle engine costs (almost) nothing: with the cached index peek no
// scanner reads an index whose head did not change, so over an idle window
// no ff_due runs at all; without the peek every scanner reads every index
// of every partition every cycle. The only steady cost left is the
// ownership renewal (one ff_own per partition per OwnershipTTL/3).
func TestIdleEngineCost(t *testing.T) {
	addrs := standalone(t)
	b := freshBackend(t, addrs)
	ctx := context.Background()
	// A lane with a finished execution (retention not due) and one blocked
	// for want of a worker: the indexes the scanners peek at are not all empty.
	done := create(t, b, sdk.CreateExecutionArgs{Lane: "idle"})
	if _, err := b.CancelExecution(ctx, sdk.CancelExecutionArgs{ExecutionID: done, Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	blocked := create(t, b, sdk.CreateExecutionArgs{Lane: "idle", RequiredCapabilities: []string{"gpu"}})
	if _, err := b.BlockRoute(ctx, sdk.BlockRouteArgs{ExecutionID: blocked, Lane: "idle"}); err != nil {
		t.Fatal(err)
	}
	const window = 1500 * time.Millisecond
	measure := func(peek bool) map[string]int64 {
		cfg := testConfig(t)
		cfg.UnblockInterval = time.Hour // blocked work is re-read each cycle by design
		cfg.OwnershipTTL = 3 * time.Second
		cfg.DisablePeek = !peek
		eb := connect(t, addrs)
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		s := runEngineCtx(t, rctx, eb, cfg)
		time.Sleep(300 * time.Millisecond) // heads cached
		before := commandCalls(t, addrs)
		time.Sleep(window)
		after := commandCalls(t, addrs)
		cancel()
		<-s.Done()
		delta := map[string]int64{}
		for k, v := range after {
			if d := v - before[k]; d > 0 {
				delta[k] = d
			}
		}
		return delta
	}
	with, without := measure(true), measure(false)
	t.Logf("idle, 16 partitions, scans every 50ms, %v: with peek %v; without %v", window, with, without)
	if with["fcall_ro"] != 0 {
		t.Fatalf("with the peek an idle engine still ran %d ff_due calls", with["fcall_ro"])
	}
	// The per-lane scanners re-read the lane registry every cycle, from the
	// client-side cache while it is unchanged.
	if with["smembers"] != 0 || without["smembers"] != 0 {
		t.Fatalf("the unchanged lane registry was read from the server: %d and %d SMEMBERS", with["smembers"], without["smembers"])
	}
	if without["fcall_ro"] < 16*3*10 {
		t.Fatalf("without the peek only %d ff_due calls: the comparison is void", without["fcall_ro"])
	}
}
