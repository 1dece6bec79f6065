package sdk_test

// End-to-end tests of the Worker and Client on real Valkey, standalone and a
// 3-primary cluster. No engine is mocked; the only wrapper (flakyBackend)
// delegates to the real backend and injects a lost reply.
//
// Size: the exactly-once test runs 10,000 executions; with -short it runs
// 2,000 (make test runs without -short).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

const e2ePartitions = 16

// e2eTopology is a server the end-to-end tests run against.
type e2eTopology struct {
	name  string
	addrs func(t *testing.T) []string
}

// e2eTopologies are standalone Valkey and a 3-primary cluster, each
// started for the test that asks for it (valkeytest.NewServer, NewCluster).
func e2eTopologies() []e2eTopology {
	return []e2eTopology{
		{"standalone", func(t *testing.T) []string { return []string{valkeytest.NewServer(t).Addr()} }},
		{"cluster", func(t *testing.T) []string { return valkeytest.NewCluster(t).Addrs() }},
	}
}

func TestWorkerE2E(t *testing.T) {
	for _, topo := range e2eTopologies() {
		t.Run(topo.name, func(t *testing.T) {
			addrs := topo.addrs(t)
			t.Run("ExactlyOnce", func(t *testing.T) { testExactlyOnce(t, addrs, sdk.ClaimDirect) })
			t.Run("ExactlyOnceFused", func(t *testing.T) { testExactlyOnce(t, addrs, sdk.ClaimFused) })
			t.Run("MinimalBackend", func(t *testing.T) { testMinimalBackend(t, addrs) })
			t.Run("NoClientCache", func(t *testing.T) { testNoClientCache(t, addrs) })
			t.Run("ArrivalPickup", func(t *testing.T) { testArrivalPickup(t, addrs) })
			t.Run("HandoffPickup", func(t *testing.T) { testHandoffPickup(t, addrs, topo.name == "cluster") })
			t.Run("HandoffOutlivesFirstLease", func(t *testing.T) { testHandoffOutlivesFirstLease(t, addrs, topo.name == "cluster") })
			t.Run("BatchToIdleWorkers", func(t *testing.T) { testBatchToIdleWorkers(t, addrs, false) })
			t.Run("BatchPastOffers", func(t *testing.T) { testBatchToIdleWorkers(t, addrs, true) })
			t.Run("Renewal", func(t *testing.T) { testRenewal(t, addrs, false) })
			t.Run("RenewalPerLease", func(t *testing.T) { testRenewal(t, addrs, true) })
			t.Run("RetryPolicy", func(t *testing.T) { testRetryPolicy(t, addrs) })
			t.Run("LeaseRevoked", func(t *testing.T) { testLeaseRevoked(t, addrs, false) })
			t.Run("LeaseRevokedEvent", func(t *testing.T) { testLeaseRevoked(t, addrs, true) })
			t.Run("StaleHandle", func(t *testing.T) { testStaleHandle(t, addrs) })
			t.Run("TerminalReplay", func(t *testing.T) { testTerminalReplay(t, addrs) })
			t.Run("PendingReplay", func(t *testing.T) { testPendingReplay(t, addrs) })
			t.Run("ShutdownInFlight", func(t *testing.T) { testShutdownInFlight(t, addrs) })
			t.Run("Registry", func(t *testing.T) { testRegistry(t, addrs) })
			t.Run("CapabilityMismatch", func(t *testing.T) { testCapabilityMismatch(t, addrs) })
			t.Run("Client", func(t *testing.T) { testClient(t, addrs) })
		})
	}
}

func e2eConnect(t *testing.T, addrs []string) *valkeybackend.Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, Partitions: e2ePartitions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// runWorker starts w.Run in a goroutine; stop cancels Run's context and
// returns Run's error (idempotent; also run at cleanup).
func e2eRunWorker(t *testing.T, b sdk.EngineBackend, cfg sdk.WorkerConfig, h sdk.Handler) (*sdk.Worker, func() error) {
	t.Helper()
	w, err := sdk.NewWorker(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, h) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(60 * time.Second):
				runErr = errors.New("worker did not stop within 60s")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return w, stop
}

func e2eWaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// promoteLoop stands in for the delayed-promotion scanner until it lands:
// every 20ms it promotes due delayed executions of every lane and partition.
func e2ePromoteLoop(t *testing.T, b sdk.EngineBackend, lanes ...sdk.LaneID) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, l := range lanes {
				for p := range b.Partitions() {
					_, _ = b.PromoteDelayed(ctx, sdk.PromoteDelayedArgs{Lane: l, Partition: p})
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// states reads every id's public state, 256 reads in flight.
func e2eStates(t *testing.T, b sdk.EngineBackend, ids []sdk.ExecutionID) map[sdk.ExecutionID]sdk.PublicState {
	t.Helper()
	out := make([]sdk.PublicState, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for i, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i], errs[i] = b.ReadExecutionState(context.Background(), id)
		})
	}
	wg.Wait()
	m := make(map[sdk.ExecutionID]sdk.PublicState, len(ids))
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatalf("state of %s: %v", id, errs[i])
		}
		m[id] = out[i]
	}
	return m
}

func e2eLane(t *testing.T, s string) sdk.LaneID {
	return sdk.LaneID(fmt.Sprintf("%s-%d", s, time.Now().UnixNano()%1e9))
}

// testExactlyOnce: 10,000 executions over 16 partitions and two lanes, four
// workers of concurrency 32: every execution completes, exactly once.
func testExactlyOnce(t *testing.T, addrs []string, mode sdk.ClaimMode) {
	n := 10000
	if testing.Short() {
		n = 2000
	}
	ctx := context.Background()
	lanes := []sdk.LaneID{e2eLane(t, "eo-a"), e2eLane(t, "eo-b")}
	producer := e2eConnect(t, addrs)
	client := sdk.NewClient(producer)

	args := make([]sdk.CreateExecutionArgs, n)
	for i := range args {
		args[i] = sdk.CreateExecutionArgs{Lane: lanes[i%2], Kind: []string{"alpha", "beta"}[i%3%2],
			Payload: []byte(strconv.Itoa(i)), Tags: map[string]string{"i": strconv.Itoa(i)}}
	}
	start := time.Now()
	res, err := client.SubmitBatch(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	submitted := time.Since(start)
	ids := make([]sdk.ExecutionID, n)
	want := make(map[sdk.ExecutionID]int, n)
	parts := map[int]bool{}
	for i, r := range res {
		ids[i] = r.ID
		want[r.ID] = i
		p, _ := r.ID.Partition()
		parts[p] = true
	}
	if len(want) != n {
		t.Fatalf("%d distinct ids for %d submits", len(want), n)
	}
	if len(parts) != e2ePartitions {
		t.Fatalf("executions landed on %d partitions, want all %d", len(parts), e2ePartitions)
	}

	var mu sync.Mutex
	runs := make(map[sdk.ExecutionID]int, n)
	var bad atomic.Value
	var total atomic.Int64
	record := func(ctx context.Context, task *sdk.Task) error {
		i, ok := want[task.ID]
		if !ok || string(task.Payload) != strconv.Itoa(i) || task.Tags["i"] != strconv.Itoa(i) ||
			task.Lane != lanes[i%2] || task.AttemptType != sdk.AttemptInitial {
			bad.Store(fmt.Sprintf("task %s: payload %q tags %v lane %s type %s", task.ID, task.Payload, task.Tags, task.Lane, task.AttemptType))
		}
		mu.Lock()
		runs[task.ID]++
		mu.Unlock()
		total.Add(1)
		return nil
	}
	mux := sdk.NewMux()
	mux.HandleFunc("alpha", record)
	mux.HandleFunc("beta", record)

	claimStart := time.Now()
	var workers []*sdk.Worker
	var stops []func() error
	for i := range 4 {
		b := e2eConnect(t, addrs)
		w, stop := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "e2e", InstanceID: sdk.WorkerInstanceID(fmt.Sprintf("eo-%d-%d", mode, i)),
			Lanes: lanes, MaxConcurrency: 32, ClaimMode: mode}, mux)
		workers = append(workers, w)
		stops = append(stops, stop)
	}
	e2eWaitFor(t, 120*time.Second, "every execution to run", func() bool { return total.Load() >= int64(n) })
	elapsed := time.Since(claimStart)
	// Wait for the completes to land, then stop.
	e2eWaitFor(t, 30*time.Second, "completes to land", func() bool {
		var c uint64
		for _, w := range workers {
			c += w.Stats().Completed
		}
		return c >= uint64(n)
	})
	for _, stop := range stops {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	if total.Load() != int64(n) {
		t.Fatalf("%d handler runs for %d executions", total.Load(), n)
	}
	for id, c := range runs {
		if c != 1 {
			t.Fatalf("execution %s ran %d times", id, c)
		}
	}
	var sum sdk.WorkerStats
	for i, w := range workers {
		s := w.Stats()
		t.Logf("worker %d: claimed %d completed %d scans %d attempts %d conflicts %d rounds %d readiness %d push %d poll %d renewals %d lost %d",
			i, s.Claimed, s.Completed, s.Scans, s.ClaimAttempts, s.ClaimConflicts, s.ClaimRounds, s.ReadinessReads,
			s.IdleWakeupsPush, s.IdleWakeupsPoll, s.Renewals, s.LostLeases)
		sum.Claimed += s.Claimed
		sum.Completed += s.Completed
		sum.LostLeases += s.LostLeases
		if s.InFlight != 0 || s.HeldLeases != 0 {
			t.Fatalf("worker %d stopped with %d in flight, %d leases held", i, s.InFlight, s.HeldLeases)
		}
	}
	if sum.Claimed != uint64(n) || sum.Completed != uint64(n) || sum.LostLeases != 0 {
		t.Fatalf("stats: claimed %d completed %d lost %d, want %d %d 0", sum.Claimed, sum.Completed, sum.LostLeases, n, n)
	}
	for id, st := range e2eStates(t, producer, ids) {
		if st != sdk.StateCompleted {
			t.Fatalf("execution %s is %s, want completed", id, st)
		}
	}
	t.Logf("%s: %d executions: submit %v (%.0f/s), run %v (%.0f/s)", mode, n, submitted.Round(time.Millisecond),
		float64(n)/submitted.Seconds(), elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
}

// minimalBackend hides the backend's optional roles (batch renewal, window scan,
// grant+claim, fused claim, readiness, registry): the worker must still work
// through the plain EngineBackend calls. It delegates to the real backend.
type minimalBackend struct{ sdk.EngineBackend }

// testMinimalBackend: exactly once through the fallback paths (per-partition
// scans, grant then claim then context read, fallback polling).
func testMinimalBackend(t *testing.T, addrs []string) {
	ctx := context.Background()
	lane := e2eLane(t, "minimal")
	b := e2eConnect(t, addrs)
	const n = 1000
	args := make([]sdk.CreateExecutionArgs, n)
	for i := range args {
		args[i] = sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte(strconv.Itoa(i))}
	}
	res, err := sdk.NewClient(b).SubmitBatch(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	runs := map[sdk.ExecutionID]int{}
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		mu.Lock()
		runs[task.ID]++
		mu.Unlock()
		return nil
	})
	var workers []*sdk.Worker
	for i := range 2 {
		w, _ := e2eRunWorker(t, minimalBackend{e2eConnect(t, addrs)}, sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane},
			InstanceID: sdk.WorkerInstanceID(fmt.Sprintf("minimal-%d", i)), MaxConcurrency: 16}, h)
		workers = append(workers, w)
	}
	e2eWaitFor(t, 60*time.Second, "every execution completed", func() bool {
		return workers[0].Stats().Completed+workers[1].Stats().Completed == n
	})
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != n {
		t.Fatalf("%d executions ran, want %d", len(runs), n)
	}
	for id, c := range runs {
		if c != 1 {
			t.Fatalf("%s ran %d times", id, c)
		}
	}
	ids := make([]sdk.ExecutionID, n)
	for i, r := range res {
		ids[i] = r.ID
	}
	for id, st := range e2eStates(t, b, ids) {
		if st != sdk.StateCompleted {
			t.Fatalf("%s is %s", id, st)
		}
	}
	s := workers[0].Stats()
	t.Logf("worker 0: claimed %d scans %d attempts %d conflicts %d rounds %d poll %d", s.Claimed, s.Scans, s.ClaimAttempts,
		s.ClaimConflicts, s.ClaimRounds, s.IdleWakeupsPoll)
}

// testArrivalPickup: with readiness and hand-offs off (no client cache) and
// a one-minute idle poll, only arrivals can wake the idle worker: every
// execution submitted to an empty lane is picked up at once, through its
// arrival.
func testArrivalPickup(t *testing.T, addrs []string) {
	w := idlePickups(t, valkeybackend.Options{Addrs: addrs, Partitions: e2ePartitions, CacheSizeEachConn: -1, DisableHandoff: true},
		sdk.WorkerConfig{IdlePoll: time.Minute}, "arrive", 5, 300*time.Millisecond, 20*time.Millisecond, 10*time.Second)
	if s := w.Stats(); s.Arrivals < 5 || s.IdleWakeupsPoll != 0 {
		t.Fatalf("arrivals %d, poll wake-ups %d: want 5 arrivals and no poll", s.Arrivals, s.IdleWakeupsPoll)
	}
}

// testNoClientCache: with client-side caching off the backend answers
// "unavailable" for readiness, and with arrivals and hand-offs off for
// those too; the worker drops them and polls instead.
func testNoClientCache(t *testing.T, addrs []string) {
	w := idlePickups(t, valkeybackend.Options{Addrs: addrs, Partitions: e2ePartitions, CacheSizeEachConn: -1,
		DisableArrivals: true, DisableHandoff: true}, sdk.WorkerConfig{}, "nocache", 3, 100*time.Millisecond, 0, 5*time.Second)
	if s := w.Stats(); s.ClaimErrors != 0 || s.IdleWakeupsPoll == 0 {
		t.Fatalf("claim errors %d, poll wakeups %d: want 0 errors and the fallback poll", s.ClaimErrors, s.IdleWakeupsPoll)
	}
}

// testHandoffPickup: an idle worker offers its slots, so each execution
// submitted to an empty lane is handed to it by the create itself: no claim
// call, no arrival. On a cluster an offer serves one partition's creates,
// so the worker has a slot per partition here: its offers cover them all.
func testHandoffPickup(t *testing.T, addrs []string, cluster bool) {
	slots := 4
	if cluster {
		slots = e2ePartitions
	}
	w := idlePickups(t, valkeybackend.Options{Addrs: addrs, Partitions: e2ePartitions},
		sdk.WorkerConfig{IdlePoll: time.Minute, MaxConcurrency: slots}, "handoff", 5, 300*time.Millisecond, 20*time.Millisecond, 10*time.Second)
	if s := w.Stats(); s.Handoffs != 5 || s.ClaimAttempts != 0 || s.Arrivals != 0 {
		t.Fatalf("hand-offs %d, claim attempts %d, arrivals %d: want 5 hand-offs and no claim call", s.Handoffs, s.ClaimAttempts, s.Arrivals)
	}
	// The handler reports before its Complete returns: the last slot frees
	// a moment later.
	e2eWaitFor(t, 5*time.Second, "the last slot freed", func() bool { return w.Stats().InFlight == 0 })
	if s := w.Stats(); s.Claimed != 5 || s.InFlight != 0 {
		t.Fatalf("claimed %d, in flight %d: want 5 and 0", s.Claimed, s.InFlight)
	}
}

// testHandoffOutlivesFirstLease: a handed-off task starts on the short
// HandoffLeaseTTL; the renewer renews it early, to the full LeaseTTL, so a
// task running well past the first lease keeps it and completes.
func testHandoffOutlivesFirstLease(t *testing.T, addrs []string, cluster bool) {
	if cluster {
		t.Skip("one offer serves one partition's creates on a cluster; this test has one slot and one create")
	}
	ctx := context.Background()
	lane := e2eLane(t, "firstlease")
	b := e2eConnect(t, addrs)
	const leaseTTL, first, work = 30 * time.Second, 600 * time.Millisecond, 2 * time.Second
	expiry := make(chan time.Time, 1)
	w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 1,
		LeaseTTL: leaseTTL, HandoffLeaseTTL: first, IdlePoll: time.Minute},
		sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
			select {
			case <-time.After(work):
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			snap, err := b.DescribeExecution(ctx, task.ID)
			if err != nil {
				return err
			}
			expiry <- snap.LeaseExpiresAt
			return nil
		}))
	e2eWaitFor(t, 10*time.Second, "the slot offered", func() bool { return w.Stats().Offers == 1 })
	if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}); err != nil {
		t.Fatal(err)
	}
	e2eWaitFor(t, 20*time.Second, "the task completed", func() bool { s := w.Stats(); return s.Completed == 1 || s.LostLeases > 0 })
	s := w.Stats()
	if s.Handoffs != 1 || s.Completed != 1 || s.LostLeases != 0 || s.Renewals == 0 {
		t.Fatalf("hand-offs %d, completed %d, lost %d, renewals %d: want a handed-off task renewed past its first lease",
			s.Handoffs, s.Completed, s.LostLeases, s.Renewals)
	}
	// Renewed to the full TTL, not by another first lease.
	if left := time.Until(<-expiry); left < leaseTTL/2 {
		t.Fatalf("lease had %v left after %v of work; want the renewals to extend it by LeaseTTL (%v)", left, work, leaseTTL)
	}
}

// testBatchToIdleWorkers: a batch submitted at once to idle workers (their
// slots offered) and then nothing more: the first creates are handed over,
// the rest form a backlog that no create comes to drain, so the workers
// must take their offers back and claim it. With pastOffers the producer
// never hands off (DisableHandoff): the whole batch lands in the eligible
// sets while every slot stands offered, and the workers must claim before
// their completions' offers can take the rest. Every execution runs once.
func testBatchToIdleWorkers(t *testing.T, addrs []string, pastOffers bool) {
	ctx := context.Background()
	const n = 3000
	lane := e2eLane(t, "batch")
	var mu sync.Mutex
	runs := make(map[sdk.ExecutionID]int, n)
	var done atomic.Int64
	var workers []*sdk.Worker
	for i := range 2 {
		w, _ := e2eRunWorker(t, e2eConnect(t, addrs), sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane},
			InstanceID: sdk.WorkerInstanceID(fmt.Sprintf("batch-%d", i)), MaxConcurrency: 16},
			sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
				mu.Lock()
				runs[task.ID]++
				mu.Unlock()
				done.Add(1)
				return nil
			}))
		workers = append(workers, w)
	}
	time.Sleep(300 * time.Millisecond) // idle, slots offered
	args := make([]sdk.CreateExecutionArgs, n)
	for i := range args {
		args[i] = sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}
	}
	start := time.Now()
	var producer sdk.EngineBackend = e2eConnect(t, addrs)
	if pastOffers {
		p, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, DisableHandoff: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		producer = p
	}
	if _, err := sdk.NewClient(producer).SubmitBatch(ctx, args); err != nil {
		t.Fatal(err)
	}
	e2eWaitFor(t, 60*time.Second, "the batch to run", func() bool { return done.Load() == n })
	took := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	for id, c := range runs {
		if c != 1 {
			t.Fatalf("%s ran %d times", id, c)
		}
	}
	if len(runs) != n {
		t.Fatalf("%d executions ran, want %d", len(runs), n)
	}
	var handoffs, attempts uint64
	for _, w := range workers {
		s := w.Stats()
		handoffs += s.Handoffs
		attempts += s.ClaimAttempts
	}
	// Nothing runs until a worker takes its offers back and claims: the
	// producer hands nothing off, and completes hand the backlog to their
	// offers (the hand-offs counted here) only once something ran.
	if pastOffers && attempts == 0 {
		t.Fatalf("the backlog ran without a claim (%d hand-offs): no worker took its offers back", handoffs)
	}
	t.Logf("%d executions in %v: %d handed over, %d claim attempts", n, took, handoffs, attempts)
}

// idlePickups runs one worker (cfg, on its own lane) over a backend
// connected with opts, lets it idle for settle, then submits n executions
// one at a time, gap apart after each ran: each must run within wait.
func idlePickups(t *testing.T, opts valkeybackend.Options, cfg sdk.WorkerConfig, lanePrefix string, n int,
	settle, gap, wait time.Duration) *sdk.Worker {
	t.Helper()
	ctx := context.Background()
	lane := e2eLane(t, lanePrefix)
	b, err := valkeybackend.Connect(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	done := make(chan sdk.ExecutionID, 4)
	cfg.WorkerID, cfg.Lanes = "e2e", []sdk.LaneID{lane}
	w, _ := e2eRunWorker(t, b, cfg,
		sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error { done <- task.ID; return nil }))
	if !opts.DisableArrivals {
		// A loaded machine can take longer than settle to subscribe every
		// partition's arrivals channel: an arrival published before then
		// reaches nobody, and the one-minute poll would be the only wake-up.
		waitArrivalsSubscribed(t, b, opts.Partitions)
	}
	time.Sleep(settle) // idle (and subscribed) first
	for i := range n {
		r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case id := <-done:
			if id != r.ID {
				t.Fatalf("ran %s, want %s", id, r.ID)
			}
		case <-time.After(wait):
			t.Fatalf("execution %d not picked up (stats %+v)", i, w.Stats())
		}
		time.Sleep(gap) // idle again
	}
	return w
}

// waitArrivalsSubscribed waits until every partition's arrivals channel
// has a subscriber (PUBSUB SHARDNUMSUB, asked of the node owning each).
func waitArrivalsSubscribed(t *testing.T, b *valkeybackend.Backend, partitions int) {
	t.Helper()
	c := b.Client()
	deadline := time.Now().Add(20 * time.Second)
	for p := range partitions {
		ch := "ff:arrivals:" + sdk.PartitionTag(p)
		for {
			m, err := c.Do(context.Background(), c.B().PubsubShardnumsub().Channel(ch).Build()).AsIntMap()
			if err == nil && m[ch] > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has no subscriber after 20s (%v, %v)", ch, m, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// testRenewal: leases held well past their TTL survive through renewals,
// batched into few rounds (one call per round with a BatchRenewer).
func testRenewal(t *testing.T, addrs []string, perLease bool) {
	ctx := context.Background()
	lane := e2eLane(t, "renew")
	var b sdk.EngineBackend = e2eConnect(t, addrs)
	if perLease {
		b = minimalBackend{b}
	}
	const n, hold = 200, 1200 * time.Millisecond
	const ttl, every = 500 * time.Millisecond, 100 * time.Millisecond
	args := make([]sdk.CreateExecutionArgs, n)
	for i := range args {
		args[i] = sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}
	}
	if _, err := sdk.NewClient(b).SubmitBatch(ctx, args); err != nil {
		t.Fatal(err)
	}
	var lost atomic.Int64
	w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane}, MaxConcurrency: n,
		LeaseTTL: ttl, RenewEvery: every}, sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		select {
		case <-time.After(hold):
			return nil // completes: only possible if the lease was renewed
		case <-ctx.Done():
			lost.Add(1)
			return context.Cause(ctx)
		}
	}))
	e2eWaitFor(t, 30*time.Second, "every task completed", func() bool { return w.Stats().Completed == n || lost.Load() > 0 })
	s := w.Stats()
	t.Logf("renewals %d in %d rounds (%.1f per round), failures %d, lag avg %v max %v",
		s.Renewals, s.RenewRounds, float64(s.Renewals)/float64(max(s.RenewRounds, 1)), s.RenewFailures, s.RenewLagAvg, s.RenewLagMax)
	if lost.Load() != 0 || s.LostLeases != 0 || s.Completed != n {
		t.Fatalf("lost %d leases, completed %d of %d", s.LostLeases, s.Completed, n)
	}
	if s.Renewals < n*(uint64(hold/every)-3) {
		t.Fatalf("%d renewals for %d leases held %v renewed every %v", s.Renewals, n, hold, every)
	}
	if s.RenewRounds > s.Renewals/20 {
		t.Fatalf("%d rounds for %d renewals: not batched", s.RenewRounds, s.Renewals)
	}
}

// testRetryPolicy: handler errors and panics fail the attempt; the policy
// retries them (at once, or after a backoff the promote loop honours), with
// the category the handler chose.
func testRetryPolicy(t *testing.T, addrs []string) {
	ctx := context.Background()
	lane := e2eLane(t, "retry")
	b := e2eConnect(t, addrs)
	e2ePromoteLoop(t, b, lane)
	client := sdk.NewClient(b)

	zero := sdk.RetryPolicy{MaxRetries: 2, Backoff: sdk.Backoff{ZeroDelay: true}}
	backoff := sdk.RetryPolicy{MaxRetries: 2, Backoff: sdk.Backoff{Kind: sdk.BackoffFixed, Initial: 30 * time.Millisecond}}
	onlyTimeouts := sdk.RetryPolicy{MaxRetries: 3, Backoff: sdk.Backoff{ZeroDelay: true}, RetryableCategories: []string{"timeout"}}
	specs := []struct {
		kind   string
		retry  sdk.RetryPolicy
		state  sdk.PublicState
		runs   int
		cat    string
		reason string
	}{
		{"flaky", zero, sdk.StateCompleted, 3, "", ""},    // fails twice, then succeeds
		{"flaky", backoff, sdk.StateCompleted, 3, "", ""}, // same, through the delayed set
		{"always", zero, sdk.StateFailed, 3, "handler_error", "always fails"},
		{"panics", zero, sdk.StateFailed, 3, "handler_panic", "panic: boom"},
		{"categorised", onlyTimeouts, sdk.StateFailed, 1, "bad_input", "rejected"}, // not retryable
	}
	var mu sync.Mutex
	runs := map[sdk.ExecutionID]int{}
	types := map[sdk.ExecutionID][]sdk.AttemptType{}
	count := func(task *sdk.Task) int {
		mu.Lock()
		defer mu.Unlock()
		runs[task.ID]++
		types[task.ID] = append(types[task.ID], task.AttemptType)
		return runs[task.ID]
	}
	mux := sdk.NewMux()
	mux.HandleFunc("flaky", func(ctx context.Context, task *sdk.Task) error {
		if count(task) < 3 {
			return errors.New("transient")
		}
		return task.Complete(ctx, []byte("ok"))
	})
	mux.HandleFunc("always", func(ctx context.Context, task *sdk.Task) error {
		count(task)
		return errors.New("always fails")
	})
	mux.HandleFunc("panics", func(ctx context.Context, task *sdk.Task) error {
		count(task)
		panic("boom")
	})
	mux.HandleFunc("categorised", func(ctx context.Context, task *sdk.Task) error {
		count(task)
		return &sdk.Failure{Category: "bad_input", Err: errors.New("rejected")}
	})
	ids := make([]sdk.ExecutionID, len(specs))
	for i, s := range specs {
		r, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: s.kind, Retry: s.retry})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = r.ID
	}
	w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 4}, mux)
	for i, s := range specs {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		snap, err := client.Wait(wctx, ids[i], 10*time.Millisecond)
		cancel()
		if err != nil {
			t.Fatalf("spec %d: %v", i, err)
		}
		mu.Lock()
		got, tys := runs[ids[i]], types[ids[i]]
		mu.Unlock()
		if snap.State != s.state || got != s.runs || snap.TotalAttempts != s.runs {
			t.Fatalf("spec %d (%s): state %s runs %d attempts %d, want %s %d", i, s.kind, snap.State, got, snap.TotalAttempts, s.state, s.runs)
		}
		if s.runs > 1 && !slices.Equal(tys, []sdk.AttemptType{sdk.AttemptInitial, sdk.AttemptRetry, sdk.AttemptRetry}) {
			t.Fatalf("spec %d: attempt types %v", i, tys)
		}
		if snap.FailureCategory != s.cat && s.state == sdk.StateFailed {
			t.Fatalf("spec %d: category %q, want %q", i, snap.FailureCategory, s.cat)
		}
		if s.state == sdk.StateFailed && !strings.HasPrefix(snap.FailureReason, s.reason) {
			t.Fatalf("spec %d: reason %q, want prefix %q", i, snap.FailureReason, s.reason)
		}
		if s.kind == "panics" && !strings.Contains(snap.FailureReason, "goroutine") {
			t.Fatalf("panic reason has no stack: %q", snap.FailureReason)
		}
	}
	if res, err := client.Result(ctx, ids[0]); err != nil || string(res) != "ok" {
		t.Fatalf("result %q %v", res, err)
	}
	s := w.Stats()
	if s.Retried != 8 || s.Failed != 3 || s.Completed != 2 || s.HandlerPanics != 3 {
		t.Fatalf("stats: retried %d failed %d completed %d panics %d", s.Retried, s.Failed, s.Completed, s.HandlerPanics)
	}
}

// testLeaseRevoked: revoking a lease (or cancelling the execution) cancels
// the task's context, with the fencing error as its cause; the worker
// writes nothing more for it. Through the lease event (events) that takes
// well under a second although the next renewal is 10 s away; without
// events (DisableArrivals) within one renewal interval.
func testLeaseRevoked(t *testing.T, addrs []string, events bool) {
	ctx := context.Background()
	lane := e2eLane(t, "revoke")
	renewEvery, bound := 300*time.Millisecond, 450*time.Millisecond // one interval + slack for -race on 2 cores
	b := e2eConnect(t, addrs)
	if events {
		renewEvery, bound = 10*time.Second, time.Second
	} else {
		var err error
		if b, err = valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, Partitions: e2ePartitions,
			DisableArrivals: true}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
	}
	type seen struct {
		task *sdk.Task
		at   time.Time
	}
	started := make(chan *sdk.Task, 2)
	ended := make(chan seen, 2)
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		started <- task
		<-ctx.Done()
		ended <- seen{task, time.Now()}
		return ctx.Err()
	})
	w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane},
		LeaseTTL: 10 * renewEvery, RenewEvery: renewEvery}, h)

	for i, c := range []struct {
		name  string
		act   func(id sdk.ExecutionID) error
		cause *sdk.Error
		state sdk.PublicState
	}{
		{"revoke", func(id sdk.ExecutionID) error {
			_, err := b.RevokeLease(ctx, sdk.RevokeLeaseArgs{ExecutionID: id, Reason: "test"})
			return err
		}, sdk.ErrLeaseRevoked, sdk.StateActive},
		{"cancel", func(id sdk.ExecutionID) error {
			_, err := sdk.NewClient(b).Cancel(ctx, id, "operator says no")
			return err
		}, sdk.ErrExecutionNotActive, sdk.StateCancelled},
	} {
		r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
		if err != nil {
			t.Fatal(err)
		}
		task := <-started
		if task.ID != r.ID {
			t.Fatalf("%s: started %s, want %s", c.name, task.ID, r.ID)
		}
		time.Sleep(min(renewEvery/2, time.Second)) // act between renewals
		at := time.Now()
		if err := c.act(r.ID); err != nil {
			t.Fatal(err)
		}
		var s seen
		select {
		case s = <-ended:
		case <-time.After(5 * bound):
			t.Fatalf("%s: task context not cancelled after %v", c.name, 5*bound)
		}
		lag := s.at.Sub(at)
		t.Logf("%s: context cancelled %v after the %s (renew every %v, events %v)", c.name, lag.Round(time.Millisecond),
			c.name, renewEvery, events)
		if lag > bound {
			t.Fatalf("%s: context cancelled %v after, want within %v (renew every %v, events %v)", c.name, lag, bound, renewEvery, events)
		}
		if cause := context.Cause(task.Context()); !errors.Is(cause, c.cause) {
			t.Fatalf("%s: cause %v, want %v", c.name, cause, c.cause)
		}
		if err := task.Complete(ctx, nil); err == nil {
			t.Fatalf("%s: Complete after losing the lease succeeded", c.name)
		}
		st, err := b.ReadExecutionState(ctx, r.ID)
		if err != nil || st != c.state {
			t.Fatalf("%s: state %s %v, want %s", c.name, st, err, c.state)
		}
		e2eWaitFor(t, 5*time.Second, "lost lease counted", func() bool { return w.Stats().LostLeases == uint64(i+1) })
	}
	if s := w.Stats(); s.Completed+s.Failed+s.Retried != 0 {
		t.Fatalf("worker wrote a terminal outcome for a lost lease: %+v", s)
	}
}

// testStaleHandle: writes with a stale fence are rejected; a second terminal
// call on a task is refused locally; the real handle after completion gets
// execution_not_active with the detail a replay check needs.
func testStaleHandle(t *testing.T, addrs []string) {
	ctx := context.Background()
	lane := e2eLane(t, "stale")
	b := e2eConnect(t, addrs)
	errc := make(chan error, 1)
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		errc <- func() error {
			staleLease := task.Handle
			staleLease.LeaseID = sdk.NewToken()
			if err := b.Complete(ctx, staleLease, nil); !errors.Is(err, sdk.ErrStaleLease) {
				return fmt.Errorf("complete with another lease id: %v, want stale_lease", err)
			}
			staleEpoch := task.Handle
			staleEpoch.Epoch++
			if _, err := b.Fail(ctx, staleEpoch, "x", "y"); !errors.Is(err, sdk.ErrStaleLease) {
				return fmt.Errorf("fail with another epoch: %v, want stale_lease", err)
			}
			if err := task.Progress(ctx, 50, "half"); err != nil {
				return fmt.Errorf("progress: %v", err)
			}
			if err := task.Complete(ctx, []byte("done")); err != nil {
				return fmt.Errorf("complete: %v", err)
			}
			if err := task.Complete(ctx, nil); !errors.Is(err, sdk.ErrTaskFinished) {
				return fmt.Errorf("second complete: %v, want task_finished", err)
			}
			err := b.Complete(ctx, task.Handle, nil)
			var se *sdk.Error
			if !errors.As(err, &se) || se.Code != sdk.CodeExecutionNotActive {
				return fmt.Errorf("complete after completion: %v, want execution_not_active", err)
			}
			d, ok := se.NotActive()
			if !ok || d.State != sdk.StateCompleted || d.Epoch != task.Handle.Epoch || d.AttemptID != task.Handle.AttemptID {
				return fmt.Errorf("not-active detail %+v %v", d, ok)
			}
			return nil
		}()
		return nil
	})
	_, stop := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane}}, h)
	r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not run")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	snap, err := sdk.NewClient(b).Describe(ctx, r.ID)
	if err != nil || snap.State != sdk.StateCompleted || snap.ProgressPercent != 50 {
		t.Fatalf("describe: %+v %v", snap, err)
	}
	if res, _ := b.GetExecutionResult(ctx, r.ID); string(res) != "done" {
		t.Fatalf("result %q", res)
	}
}

// flakyBackend is the real backend with one fault injected: the first
// terminal call of each kind lands, but its reply is lost (a transport
// error), as when a connection drops after the server ran the FCALL.
type flakyBackend struct {
	*valkeybackend.Backend
	lost   sync.Map        // op -> true once injected
	onLost func(op string) // when set, called as a reply is lost
}

func (f *flakyBackend) inject(op string) bool {
	_, done := f.lost.LoadOrStore(op, true)
	if !done && f.onLost != nil {
		f.onLost(op)
	}
	return !done
}

func (f *flakyBackend) Complete(ctx context.Context, h sdk.Handle, result []byte) error {
	err := f.Backend.Complete(ctx, h, result)
	if err == nil && f.inject("complete") {
		return sdk.TransportError("complete", errors.New("injected: connection reset after send"))
	}
	return err
}

func (f *flakyBackend) CompleteAndOffer(ctx context.Context, h sdk.Handle, result []byte, a sdk.OfferArgs) ([]sdk.ClaimOffer, error, error) {
	offers, offerErr, err := f.Backend.CompleteAndOffer(ctx, h, result, a)
	if err == nil && f.inject("complete") {
		// The offers posted with it expire unclaimed; what they held is requeued.
		return nil, nil, sdk.TransportError("complete_and_offer", errors.New("injected: connection reset after send"))
	}
	return offers, offerErr, err
}

func (f *flakyBackend) CompleteBatch(ctx context.Context, items []sdk.CompleteItem) []sdk.CompleteOutcome {
	out := f.Backend.CompleteBatch(ctx, items)
	for _, o := range out {
		if o.Err == nil && f.inject("complete") {
			// The whole call's reply is lost: every item's outcome is unknown.
			for i := range out {
				out[i] = sdk.CompleteOutcome{Err: sdk.TransportError("complete", errors.New("injected: connection reset after send"))}
			}
			break
		}
	}
	return out
}

// injected requires that the fault of op was injected: a test whose
// calls took another path would prove nothing.
func (f *flakyBackend) injected(t *testing.T, op string) {
	t.Helper()
	if _, ok := f.lost.Load(op); !ok {
		t.Fatalf("no %s reply was lost: the worker took a path the fault does not cover", op)
	}
}

func (f *flakyBackend) Fail(ctx context.Context, h sdk.Handle, reason, category string) (sdk.FailOutcome, error) {
	out, err := f.Backend.Fail(ctx, h, reason, category)
	if err == nil && f.inject("fail") {
		return sdk.FailOutcome{}, sdk.TransportError("fail", errors.New("injected: connection reset after send"))
	}
	return out, err
}

// testTerminalReplay: a terminal call whose reply was lost is retried, and
// the retry recognises the first call's outcome as its own.
func testTerminalReplay(t *testing.T, addrs []string) {
	ctx := context.Background()
	lane := e2eLane(t, "replay")
	fb := &flakyBackend{Backend: e2eConnect(t, addrs)}
	errc := make(chan error, 2)
	mux := sdk.NewMux()
	mux.HandleFunc("complete", func(ctx context.Context, task *sdk.Task) error {
		errc <- task.Complete(ctx, []byte("r"))
		return nil
	})
	mux.HandleFunc("fail", func(ctx context.Context, task *sdk.Task) error {
		out, err := task.Fail(ctx, "nope", "handler_error")
		if err == nil && out.RetryScheduled {
			err = errors.New("retry scheduled without a retry policy")
		}
		errc <- err
		return nil
	})
	w, _ := e2eRunWorker(t, fb, sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane}}, mux)
	var ids []sdk.ExecutionID
	for _, k := range []string{"complete", "fail"} {
		r, err := fb.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: k})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("%s after a lost reply: %v", k, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("handler did not run")
		}
	}
	st := e2eStates(t, fb, ids)
	if st[ids[0]] != sdk.StateCompleted || st[ids[1]] != sdk.StateFailed {
		t.Fatalf("states %v", st)
	}
	if s := w.Stats(); s.Completed != 1 || s.Failed != 1 || s.LostLeases != 0 {
		t.Fatalf("stats %+v", s)
	}
	fb.injected(t, "complete")
	fb.injected(t, "fail")
}

// testPendingReplay: a Complete whose reply was lost, and whose handler gave
// up on it (its context ended) and returned the error, is finished by the
// worker; the worker recognises the first call's outcome as its own, so the
// execution stays completed, counted once, and no lease counts as lost.
func testPendingReplay(t *testing.T, addrs []string) {
	ctx := context.Background()
	lane := e2eLane(t, "pending-replay")
	fb := &flakyBackend{Backend: e2eConnect(t, addrs)}
	callCtx, giveUp := context.WithCancel(ctx)
	fb.onLost = func(string) { giveUp() }
	errc := make(chan error, 1)
	w, stop := e2eRunWorker(t, fb, sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane}},
		sdk.HandlerFunc(func(_ context.Context, task *sdk.Task) error {
			err := task.Complete(callCtx, []byte("r"))
			errc <- err
			return err
		}))
	r, err := fb.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if sdk.KindOf(err) != sdk.KindTransport {
			t.Fatalf("Complete with its reply lost and its context ended returned %v, want a transport error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not run")
	}
	if err := stop(); err != nil { // the worker settles the pending call before it stops
		t.Fatal(err)
	}
	if st := e2eStates(t, fb, []sdk.ExecutionID{r.ID}); st[r.ID] != sdk.StateCompleted {
		t.Fatalf("state %v", st[r.ID])
	}
	if s := w.Stats(); s.Completed != 1 || s.LostLeases != 0 || s.Failed != 0 || s.GivenBack != 0 {
		t.Fatalf("stats %+v, want one completion and nothing else", s)
	}
	fb.injected(t, "complete")
}

// testShutdownInFlight: a worker shut down with tasks in flight loses none:
// quick tasks finish within the grace, stuck ones are cancelled and failed
// with worker_shutdown, and another worker runs them.
func testShutdownInFlight(t *testing.T, addrs []string) {
	ctx := context.Background()
	lane := e2eLane(t, "shutdown")
	b1, b2 := e2eConnect(t, addrs), e2eConnect(t, addrs)
	client := sdk.NewClient(b1)
	const n = 24
	args := make([]sdk.CreateExecutionArgs, n)
	for i := range args {
		kind := "quick"
		if i%2 == 1 {
			kind = "stuck"
		}
		args[i] = sdk.CreateExecutionArgs{Lane: lane, Kind: kind}
	}
	res, err := client.SubmitBatch(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	doneBy := map[sdk.ExecutionID][]string{}
	finish := func(who string, task *sdk.Task) {
		mu.Lock()
		doneBy[task.ID] = append(doneBy[task.ID], who)
		mu.Unlock()
	}
	var inFlight atomic.Int64
	first := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		inFlight.Add(1)
		if task.Kind == "quick" {
			time.Sleep(150 * time.Millisecond)
			finish("first", task)
			return nil
		}
		<-ctx.Done() // stuck until the worker gives up on it
		return ctx.Err()
	})
	w1, stop1 := e2eRunWorker(t, b1, sdk.WorkerConfig{WorkerID: "e2e", InstanceID: "shutdown-1", Lanes: []sdk.LaneID{lane},
		MaxConcurrency: n, ShutdownGrace: 400 * time.Millisecond}, first)
	e2eWaitFor(t, 10*time.Second, "every task in flight", func() bool { return inFlight.Load() == n })
	stopAt := time.Now()
	if err := stop1(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(stopAt)
	s1 := w1.Stats()
	t.Logf("shutdown took %v: %+v", took.Round(time.Millisecond), s1)
	if s1.Completed != n/2 || s1.Aborted != n/2 || s1.InFlight != 0 || s1.HeldLeases != 0 {
		t.Fatalf("first worker: completed %d aborted %d in flight %d held %d", s1.Completed, s1.Aborted, s1.InFlight, s1.HeldLeases)
	}
	if took < 400*time.Millisecond || took > 5*time.Second {
		t.Fatalf("shutdown took %v, want the 400ms grace plus a little", took)
	}
	// The stuck ones were requeued (worker_shutdown is an interruption); a
	// second worker finishes them.
	second := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		finish("second", task)
		return nil
	})
	w2, _ := e2eRunWorker(t, b2, sdk.WorkerConfig{WorkerID: "e2e", InstanceID: "shutdown-2", Lanes: []sdk.LaneID{lane}}, second)
	e2eWaitFor(t, 10*time.Second, "the second worker to finish the rest", func() bool { return w2.Stats().Completed == n/2 })
	ids := make([]sdk.ExecutionID, n)
	for i, r := range res {
		ids[i] = r.ID
	}
	st := e2eStates(t, b1, ids)
	mu.Lock()
	defer mu.Unlock()
	for i, id := range ids {
		want := []string{"first"}
		if i%2 == 1 {
			want = []string{"second"}
		}
		if st[id] != sdk.StateCompleted || !slices.Equal(doneBy[id], want) {
			t.Fatalf("execution %d (%s): state %s finished by %v, want completed by %v", i, args[i].Kind, st[id], doneBy[id], want)
		}
	}
	// The completed snapshot is the second attempt's; the first attempt's
	// interruption is in its record.
	snap, err := client.Describe(ctx, ids[1])
	if err != nil || snap.TotalAttempts != 2 || snap.FailureCategory != "" {
		t.Fatalf("stuck execution: %+v %v", snap, err)
	}
	info, err := b1.ReadExecutionInfo(ctx, ids[1])
	if err != nil || len(info.Attempts) != 2 || info.Attempts[0].Outcome != sdk.OutcomeInterrupted ||
		info.Attempts[0].FailureCategory != sdk.CategoryWorkerShutdown {
		t.Fatalf("stuck execution's attempts: %+v %v", info, err)
	}
}

// testRegistry: a worker registers its instance while it runs; a second
// worker with the same instance id gets ErrWorkerInstanceInUse; shutdown
// deregisters, freeing the id.
func testRegistry(t *testing.T, addrs []string) {
	ctx := context.Background()
	lane := e2eLane(t, "registry")
	b1, b2 := e2eConnect(t, addrs), e2eConnect(t, addrs)
	noop := sdk.HandlerFunc(func(context.Context, *sdk.Task) error { return nil })
	cfg := sdk.WorkerConfig{WorkerID: "e2e", InstanceID: sdk.WorkerInstanceID("reg-" + string(lane)), Lanes: []sdk.LaneID{lane},
		Capabilities: []string{"gpu"}}
	_, stop1 := e2eRunWorker(t, b1, cfg, noop)
	live := func() bool {
		ws, err := b2.LiveWorkers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			if w.InstanceID == cfg.InstanceID {
				return slices.Equal(w.Lanes, cfg.Lanes) && slices.Equal(w.Capabilities, cfg.Capabilities)
			}
		}
		return false
	}
	e2eWaitFor(t, 5*time.Second, "registration", live)

	w2, err := sdk.NewWorker(b2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w2.Run(rctx, noop); !errors.Is(err, sdk.ErrWorkerInstanceInUse) {
		t.Fatalf("second worker with the same instance id: %v, want ErrWorkerInstanceInUse", err)
	}
	if err := stop1(); err != nil {
		t.Fatal(err)
	}
	if live() {
		t.Fatal("instance still registered after shutdown")
	}
	w3, err := sdk.NewWorker(b2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx3, cancel3 := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w3.Run(ctx3, noop) }()
	e2eWaitFor(t, 5*time.Second, "re-registration", live)
	cancel3()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// testCapabilityMismatch: an execution the worker cannot run is blocked for
// routing once, not re-read on every poll; one it can run is claimed.
func testCapabilityMismatch(t *testing.T, addrs []string) {
	ctx := context.Background()
	lane := e2eLane(t, "caps")
	b := e2eConnect(t, addrs)
	ran := make(chan sdk.ExecutionID, 2)
	w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane}, Capabilities: []string{"cpu"}},
		sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error { ran <- task.ID; return nil }))
	gpu, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", RequiredCapabilities: []string{"gpu"}})
	if err != nil {
		t.Fatal(err)
	}
	cpu, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", RequiredCapabilities: []string{"cpu"}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-ran:
		if id != cpu.ID {
			t.Fatalf("ran %s, want the cpu execution", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cpu execution did not run")
	}
	e2eWaitFor(t, 5*time.Second, "the gpu execution blocked", func() bool { return w.Stats().CapabilityBlocks == 1 })
	snap, err := b.DescribeExecution(ctx, gpu.ID)
	if err != nil || snap.State != sdk.StateWaiting || snap.BlockedReason == "" {
		t.Fatalf("gpu execution: %+v %v", snap, err)
	}
	// A cached head can be stale for an invalidation's flight time, so a
	// claim round or two right after the block may try the blocked
	// execution again (on a loaded machine, a few: the cpu claim, its
	// arrival and the offers trimmed as it waits all start rounds); a
	// handful at most, and after that it is never tried again.
	time.Sleep(300 * time.Millisecond)
	s1 := w.Stats()
	if s1.CapabilityBlocks != 1 || s1.ClaimAttempts > 6 {
		t.Fatalf("blocked execution re-tried: blocks %d attempts %d (%+v)", s1.CapabilityBlocks, s1.ClaimAttempts, s1)
	}
	time.Sleep(300 * time.Millisecond)
	if s2 := w.Stats(); s2.CapabilityBlocks != 1 || s2.ClaimAttempts != s1.ClaimAttempts {
		t.Fatalf("blocked execution re-tried: blocks %d attempts %d, then %d", s2.CapabilityBlocks, s1.ClaimAttempts, s2.ClaimAttempts)
	}
	select {
	case id := <-ran:
		t.Fatalf("ran %s without the capability", id)
	default:
	}
}

// testClient: submit (one and a batch, ids in order), describe, change
// priority, cancel, results and waiting.
func testClient(t *testing.T, addrs []string) {
	ctx := context.Background()
	lane := e2eLane(t, "client")
	b := e2eConnect(t, addrs)
	c := sdk.NewClient(b)
	args := make([]sdk.CreateExecutionArgs, 300)
	for i := range args {
		args[i] = sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte{byte(i), 0, 0xff}, IdempotencyKey: "key-" + strconv.Itoa(i)}
	}
	res, err := c.SubmitBatch(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		ec, err := b.ReadExecutionContext(ctx, r.ID)
		if err != nil || string(ec.Payload) != string(args[i].Payload) {
			t.Fatalf("item %d: context %+v %v", i, ec, err)
		}
	}
	// Resubmitting dedups to the same ids, in order.
	again, err := c.SubmitBatch(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	for i := range again {
		if again[i].ID != res[i].ID || !again[i].Duplicate {
			t.Fatalf("item %d: resubmit %+v, first %+v", i, again[i], res[i])
		}
	}
	// A bad item fails alone.
	mixed := []sdk.CreateExecutionArgs{{Lane: lane, Kind: "k"}, {Lane: "bad lane", Kind: "k"}, {Lane: lane, Kind: "k"}}
	mres, err := c.SubmitBatch(ctx, mixed)
	var be *sdk.BatchError
	if !errors.As(err, &be) || be.Errs[0] != nil || !errors.Is(be.Errs[1], sdk.ErrValidation) || be.Errs[2] != nil ||
		mres[0].ID == "" || mres[1].ID != "" || mres[2].ID == "" {
		t.Fatalf("mixed batch: %+v %v", mres, err)
	}

	id := res[0].ID
	if _, err := c.ChangePriority(ctx, id, 10); err != nil {
		t.Fatal(err)
	}
	snap, err := c.Describe(ctx, id)
	if err != nil || snap.Priority != 10 || snap.State != sdk.StateWaiting {
		t.Fatalf("describe: %+v %v", snap, err)
	}
	if _, err := c.Cancel(ctx, id, "not needed"); err != nil {
		t.Fatal(err)
	}
	_, err = c.WaitResult(ctx, id, 0)
	var ee *sdk.ExecutionError
	if !errors.As(err, &ee) || ee.State != sdk.StateCancelled || ee.Reason != "not needed" {
		t.Fatalf("wait on a cancelled execution: %v", err)
	}
	if _, err := c.Describe(ctx, sdk.NewExecutionID(3)); !errors.Is(err, sdk.ErrExecutionNotFound) {
		t.Fatalf("describe unknown: %v", err)
	}

	// WaitResult while a worker completes it.
	e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 64},
		sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
			return task.Complete(ctx, append([]byte("echo:"), task.Payload...))
		}))
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := c.WaitResult(wctx, res[7].ID, 5*time.Millisecond)
	if err != nil || string(out) != "echo:"+string(args[7].Payload) {
		t.Fatalf("wait result: %q %v", out, err)
	}
}

// TestWorkerResilience: the worker rides out a server crash (kill, restart
// from the AOF) and a stall (SIGSTOP for longer than a renewal interval but
// shorter than the lease): it backs off, never stops, and loses no task.
func TestWorkerResilience(t *testing.T) {
	ctx := context.Background()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	addrs := []string{srv.Addr()}
	producer, b := e2eConnect(t, addrs), e2eConnect(t, addrs)
	lane := e2eLane(t, "resilience")
	var mu sync.Mutex
	runs := map[sdk.ExecutionID]int{}
	hold := make(chan struct{})
	var errs atomic.Int64
	w, stop := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane},
		LeaseTTL: 4 * time.Second, RenewEvery: 300 * time.Millisecond, OnError: func(error) { errs.Add(1) }},
		sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
			if task.Kind == "hold" {
				select {
				case <-hold:
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			}
			mu.Lock()
			runs[task.ID]++
			mu.Unlock()
			return nil
		}))
	submit := func(kind string, n int) []sdk.ExecutionID {
		var ids []sdk.ExecutionID
		for range n {
			for attempt := 0; ; attempt++ {
				r, err := producer.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: kind})
				if err == nil {
					ids = append(ids, r.ID)
					break
				}
				if attempt > 100 {
					t.Fatalf("submit: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		return ids
	}
	completed := func(ids []sdk.ExecutionID) func() bool {
		return func() bool {
			for _, id := range ids {
				if st, err := producer.ReadExecutionState(ctx, id); err != nil || st != sdk.StateCompleted {
					return false
				}
			}
			return true
		}
	}
	time.Sleep(300 * time.Millisecond) // idle

	// Crash while idle, then restart: new work is picked up.
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	ids := submit("quick", 20)
	e2eWaitFor(t, 20*time.Second, "work submitted after a restart to complete", completed(ids))

	// Stall for 1.5s (five renewal intervals, under the 4s lease) with tasks
	// in flight: renewals fail and retry, no lease is lost.
	held := submit("hold", 10)
	e2eWaitFor(t, 10*time.Second, "tasks in flight", func() bool { return w.Stats().InFlight == 10 })
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // a renewal after the stall
	close(hold)
	e2eWaitFor(t, 20*time.Second, "held tasks to complete after the stall", completed(held))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s := w.Stats()
	t.Logf("after crash and stall: %d errors reported; claim errors %d, renew failures %d, lost %d, lag max %v",
		errs.Load(), s.ClaimErrors, s.RenewFailures, s.LostLeases, s.RenewLagMax)
	if s.LostLeases != 0 || s.RenewFailures == 0 {
		t.Fatalf("lost %d leases, %d renew failures (want 0 lost, some failures during the stall)", s.LostLeases, s.RenewFailures)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, c := range runs {
		if c != 1 {
			t.Fatalf("%s ran %d times", id, c)
		}
	}
	if len(runs) != 30 {
		t.Fatalf("%d executions ran, want 30", len(runs))
	}
}
