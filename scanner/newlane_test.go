package scanner_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// newLaneSlack is what a due action may take beyond its due time plus one
// scan interval on a loaded test machine. The bug it guards against made
// work on a lane younger than the engine's registry read wait for the next
// LaneRefresh (10s).
const newLaneSlack = 400 * time.Millisecond

// Work on a lane first used after the engine started is found within one
// scan interval of coming due, whatever LaneRefresh says: a delay, a retry
// backoff, an unblock and a retention trim (the lane scanners), and a lease
// expiry and an attempt timeout (partition-wide indexes, checked alike).
func TestNewLaneFoundWithinOneInterval(t *testing.T) {
	for _, topo := range both() {
		t.Run(topo.name, func(t *testing.T) {
			testNewLane(t, topo.addrs(t), valkeybackend.Options{})
		})
	}
}

// Without client-side caching the registry is read every cycle instead.
func TestNewLaneFoundWithoutCache(t *testing.T) {
	testNewLane(t, standalone(t), valkeybackend.Options{CacheSizeEachConn: -1})
}

func testNewLane(t *testing.T, addrs []string, opts valkeybackend.Options) {
	ctx := context.Background()
	flushAll(t, addrs)
	b := connect(t, addrs)
	opts.Addrs, opts.Partitions = addrs, 16
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	eb, err := valkeybackend.Connect(cctx, opts)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eb.Close)
	cfg := testConfig(t)
	cfg.LaneRefresh = time.Hour // the registry read must not depend on it
	cfg.Retention = 300 * time.Millisecond
	const interval = 50 * time.Millisecond
	// A lane the engine sees at its first registry read.
	create(t, b, sdk.CreateExecutionArgs{Lane: "old"})
	runEngine(t, eb, cfg)
	time.Sleep(3 * interval) // the engine has read the registry and cached it

	within := func(what string, due time.Time, cond func() bool) {
		t.Helper()
		eventually(t, time.Until(due)+interval+5*time.Second, what, cond)
		late := time.Since(due)
		t.Logf("%s: done %v after it came due (scan every %v)", what, late.Round(time.Millisecond), interval)
		if late > interval+newLaneSlack {
			t.Fatalf("%s took %v after it came due, over one interval (%v) + %v", what, late, interval, newLaneSlack)
		}
	}

	// A delay.
	until := time.Now().Add(200 * time.Millisecond)
	delayed := create(t, b, sdk.CreateExecutionArgs{Lane: "new-delay", DelayUntil: until})
	within("200ms delay", until, func() bool { return state(t, b, delayed) == sdk.StateWaiting })

	// A retry backoff.
	retried := create(t, b, sdk.CreateExecutionArgs{Lane: "new-retry",
		Retry: sdk.RetryPolicy{MaxRetries: 1, Backoff: sdk.Backoff{Kind: sdk.BackoffFixed, Initial: 200 * time.Millisecond}}})
	c := claim(t, b, retried, "new-retry", "w", time.Minute)
	failedAt := time.Now()
	out, err := b.Fail(ctx, c.Handle, "boom", "handler_error")
	if err != nil || !out.RetryScheduled {
		t.Fatalf("fail: %+v %v", out, err)
	}
	within("200ms retry backoff", failedAt.Add(200*time.Millisecond), func() bool { return state(t, b, retried) == sdk.StateWaiting })

	// An unblock: blocked for want of a capability, then a capable worker.
	blocked := create(t, b, sdk.CreateExecutionArgs{Lane: "new-unblock", RequiredCapabilities: []string{"gpu"}})
	if r, err := b.BlockRoute(ctx, sdk.BlockRouteArgs{ExecutionID: blocked, Lane: "new-unblock"}); err != nil || !r.Blocked {
		t.Fatalf("block: %+v %v", r, err)
	}
	if err := b.RegisterWorker(ctx, sdk.WorkerRegistration{WorkerID: "w", InstanceID: "gpu-1",
		Capabilities: []string{"gpu"}, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	within("unblock", time.Now(), func() bool { return describe(t, b, blocked).BlockedReason == "" })

	// A retention trim.
	ended := create(t, b, sdk.CreateExecutionArgs{Lane: "new-retention"})
	if _, err := b.CancelExecution(ctx, sdk.CancelExecutionArgs{ExecutionID: ended, Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	within("retention", time.Now().Add(cfg.Retention), func() bool { return describe(t, b, ended) == nil })

	// A lease expiry.
	leased := create(t, b, sdk.CreateExecutionArgs{Lane: "new-lease"})
	claim(t, b, leased, "new-lease", "w", 200*time.Millisecond)
	within("lease expiry", time.Now().Add(200*time.Millisecond), func() bool { return state(t, b, leased) == sdk.StateWaiting })

	// An attempt timeout.
	timed := create(t, b, sdk.CreateExecutionArgs{Lane: "new-timeout", AttemptTimeout: 200 * time.Millisecond})
	claim(t, b, timed, "new-timeout", "w", time.Minute)
	within("attempt timeout", time.Now().Add(200*time.Millisecond), func() bool { return state(t, b, timed) == sdk.StateFailed })
}
