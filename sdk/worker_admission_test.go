package sdk_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// TestWorkerLanePause: a paused lane's work waits, its running work
// finishes, and a resume runs the rest at once (pushed, not polled: the
// worker's idle poll is a minute).
func TestWorkerLanePause(t *testing.T) {
	for _, topo := range e2eTopologies() {
		t.Run(topo.name, func(t *testing.T) {
			b := e2eConnect(t, topo.addrs(t))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			lane := e2eLane(t, "pause")
			release := make(chan struct{})
			var ran atomic.Int64
			h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
				if string(task.Payload) == "long" {
					<-release
				}
				ran.Add(1)
				return nil
			})
			w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "pauser", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 4,
				IdlePoll: time.Minute}, h)
			client := sdk.NewClient(b)
			long, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte("long")})
			if err != nil {
				t.Fatal(err)
			}
			e2eWaitFor(t, 10*time.Second, "the long task running", func() bool { return w.Stats().Claimed == 1 })
			if err := b.SetLanePolicy(ctx, lane, sdk.LanePolicy{Paused: true}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // the workers hear of it
			for range 5 {
				if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}); err != nil {
					t.Fatal(err)
				}
			}
			close(release)
			if _, err := client.Wait(ctx, long.ID, 0); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			if s := w.Stats(); s.Claimed != 1 || ran.Load() != 1 {
				t.Fatalf("while paused: %d claimed, %d ran; want only the one running before the pause", s.Claimed, ran.Load())
			}
			resumed := time.Now()
			if err := b.SetLanePolicy(ctx, lane, sdk.LanePolicy{}); err != nil {
				t.Fatal(err)
			}
			e2eWaitFor(t, 10*time.Second, "the paused work running after the resume", func() bool { return ran.Load() == 6 })
			if d := time.Since(resumed); d > 5*time.Second {
				t.Fatalf("the resume took %v to run the waiting work", d)
			}
		})
	}
}

// TestWorkerQuotas: under a concurrency cap of 2 no more than 2 tasks of
// the lane run at once across two workers, and under a rate of 10 per
// 300ms no window holds more than 10 starts; every execution completes
// once. The delayed promotion (scanner) brings rate-parked work back; here
// a loop promotes, as the engine would.
func TestWorkerQuotas(t *testing.T) {
	b := e2eConnect(t, e2eTopologies()[0].addrs(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	concLane, rateLane := e2eLane(t, "conc"), e2eLane(t, "rate")
	cq, rq := sdk.QuotaID(fmt.Sprint("conc-", time.Now().UnixNano())), sdk.QuotaID(fmt.Sprint("rate-", time.Now().UnixNano()))
	const window = 300 * time.Millisecond
	if err := b.CreateQuotaPolicy(ctx, sdk.QuotaPolicy{ID: cq, Concurrency: 2}); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateQuotaPolicy(ctx, sdk.QuotaPolicy{ID: rq, Rate: 10, Window: window}); err != nil {
		t.Fatal(err)
	}
	for lane, q := range map[sdk.LaneID]sdk.QuotaID{concLane: cq, rateLane: rq} {
		if err := b.SetLanePolicy(ctx, lane, sdk.LanePolicy{Quota: q}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	running, maxRunning := 0, 0
	var starts []time.Time
	done := map[sdk.ExecutionID]int{}
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		mu.Lock()
		if task.Lane == concLane {
			running++
			maxRunning = max(maxRunning, running)
		} else {
			starts = append(starts, time.Now())
		}
		mu.Unlock()
		if task.Lane == concLane {
			time.Sleep(20 * time.Millisecond)
		}
		err := task.Complete(ctx, nil)
		mu.Lock()
		if task.Lane == concLane {
			running--
		}
		if err == nil {
			done[task.ID]++
		}
		mu.Unlock()
		return err
	})
	var workers []*sdk.Worker
	for i := range 2 {
		w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "quota", InstanceID: sdk.WorkerInstanceID(fmt.Sprint(t.Name(), i)),
			Lanes: []sdk.LaneID{concLane, rateLane}, MaxConcurrency: 8}, h)
		workers = append(workers, w)
	}
	go func() { // the engine's delayed promotion, for the rate-parked work
		for ctx.Err() == nil {
			for p := range b.Partitions() {
				_, _ = b.PromoteDelayed(ctx, sdk.PromoteDelayedArgs{Lane: rateLane, Partition: p})
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	client := sdk.NewClient(b)
	const n = 30
	for i := range 2 * n {
		lane := concLane
		if i%2 == 1 {
			lane = rateLane
		}
		// The rate lane's leases are logged (lease history), so the rate is
		// checked on the server's times of acquisition below.
		if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", LeaseHistory: lane == rateLane}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		mu.Lock()
		k := len(done)
		mu.Unlock()
		if k == 2*n {
			break
		}
		if time.Now().After(deadline) {
			states := map[string]int{}
			for p := range b.Partitions() {
				page, _ := b.ListExecutions(ctx, p, "", 1000)
				for _, id := range page.IDs {
					d, _ := b.DescribeExecution(ctx, id)
					if d != nil {
						states[string(d.Lane)+" "+string(d.State)]++
					}
				}
			}
			t.Logf("states: %v", states)
			st, _ := b.QuotaHolds(ctx, cq)
			t.Logf("holds: %v", st)
			for _, w := range workers {
				t.Logf("worker stats %+v", w.Stats())
			}
			ct, ad, err := b.ClaimForWorker(ctx, sdk.ClaimForWorkerArgs{Lane: concLane, WorkerID: "x", WorkerInstanceID: "x-1", LeaseTTL: time.Minute})
			t.Logf("manual ClaimForWorker: %v %+v %v", ct != nil, ad, err)
			t.Fatalf("%d of %d completed", k, 2*n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, k := range done {
		if k != 1 {
			t.Fatalf("%s completed %d times", id, k)
		}
	}
	if maxRunning > 2 {
		pol, err := b.LanePolicy(ctx, concLane)
		t.Logf("policy %+v %v", pol, err)
		t.Fatalf("%d tasks ran at once under a concurrency cap of 2", maxRunning)
	}
	// The rate is checked on the server's times of the leases' acquisition
	// (each follows its admission in the same pipeline): times stamped in
	// this process lag by however the loaded machine schedules it (a CI run
	// saw 12 local starts within a window). An admission at the end of one
	// window whose claim lands in the next can still put one over the rate
	// into a sliding window, so one over is allowed (TestFaultAdmissionWithKills
	// checks the admission times themselves, exactly).
	parts := 0
	for range b.Partitions() {
		parts++
	}
	acquired := rateLaneAcquisitions(t, b, parts, rateLane, n)
	for i := range acquired {
		in := 0
		for j := i; j < len(acquired) && acquired[j].Sub(acquired[i]) < window; j++ {
			in++
		}
		if in > 11 {
			t.Fatalf("%d leases acquired within %v from %v (server time): over the rate of 10", in, window, acquired[i])
		}
	}
	t.Logf("max running %d (cap 2); %d rate-limited starts", maxRunning, len(starts))
}

// rateLaneAcquisitions reads lane's lease history from its start (every
// partition's stream from 0-0) and returns, in order, the server time of
// each of its n executions' last acquisition: the lease that ran. An
// earlier one was handed back unused, and its admission given back with it
// (ff_quota_giveback), so it spent none of the rate.
func rateLaneAcquisitions(t *testing.T, b sdk.LeaseHistorySubscriber, partitions int, lane sdk.LaneID, n int) []time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type acquisition struct {
		epoch uint64
		at    time.Time
	}
	last := map[sdk.ExecutionID]acquisition{}
	from := strings.TrimSuffix(strings.Repeat("0-0,", partitions), ",")
	err := b.SubscribeLeaseHistory(ctx, sdk.LeaseHistoryFilter{Lanes: []sdk.LaneID{lane}}, from, func(e sdk.LeaseEvent) error {
		if e.Kind != sdk.LeaseAcquired {
			return nil
		}
		if a, ok := last[e.ExecutionID]; !ok || e.Epoch > a.epoch {
			last[e.ExecutionID] = acquisition{e.Epoch, e.At}
		}
		if len(last) == n {
			// Every execution seen: the streams' rest (later epochs) is
			// read within a follow round or two.
			time.AfterFunc(500*time.Millisecond, cancel)
		}
		return nil
	})
	if len(last) < n {
		t.Fatalf("%d of %d executions acquired in the lease history (%v)", len(last), n, err)
	}
	at := make([]time.Time, 0, n)
	for _, a := range last {
		at = append(at, a.at)
	}
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	return at
}

// TestWorkerQuotaHandoffs: on one server, idle workers offer their slots
// on a quota'd lane and creates hand work to them once admitted under the
// quota: hand-offs happen, the concurrency cap and the rate hold across
// hand-offs and claims (the rate on the server's lease times), a hold taken
// in a hand-off (its first deadline the short hand-off lease TTL) is
// refreshed while its task runs past it and past a lease TTL, and
// every hold is released when its task completes or fails.
func TestWorkerQuotaHandoffs(t *testing.T) {
	b := e2eConnect(t, e2eTopologies()[0].addrs(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lane := e2eLane(t, "qho")
	q := sdk.QuotaID(fmt.Sprint("qho-", time.Now().UnixNano()))
	const rate, window, capN = 8, 500 * time.Millisecond, 2
	if err := b.CreateQuotaPolicy(ctx, sdk.QuotaPolicy{ID: q, Concurrency: capN, Rate: rate, Window: window}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetLanePolicy(ctx, lane, sdk.LanePolicy{Quota: q}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	running, maxRunning := 0, 0
	ended := map[sdk.ExecutionID]int{}
	var refreshed, lapsed atomic.Int64
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		mu.Lock()
		running++
		maxRunning = max(maxRunning, running)
		mu.Unlock()
		defer func() {
			mu.Lock()
			running--
			ended[task.ID]++
			mu.Unlock()
		}()
		switch string(task.Payload) {
		case "long": // runs past its lease TTL: the hold must follow the renewals
			first, _ := b.QuotaHolds(ctx, q)
			time.Sleep(1500 * time.Millisecond)
			later, _ := b.QuotaHolds(ctx, q)
			switch {
			case later[task.ID].IsZero():
				lapsed.Add(1)
			case later[task.ID].After(first[task.ID]):
				refreshed.Add(1)
			}
		case "fail":
			return fmt.Errorf("failing on purpose")
		default:
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	})
	var workers []*sdk.Worker
	for i := range 2 {
		w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "qho", InstanceID: sdk.WorkerInstanceID(fmt.Sprint(t.Name(), i)),
			Lanes: []sdk.LaneID{lane}, MaxConcurrency: 4, LeaseTTL: 2 * time.Second, HandoffLeaseTTL: 300 * time.Millisecond}, h)
		workers = append(workers, w)
	}
	go func() { // the engine's delayed promotion, for rate-parked work
		for ctx.Err() == nil {
			for p := range b.Partitions() {
				_, _ = b.PromoteDelayed(ctx, sdk.PromoteDelayedArgs{Lane: lane, Partition: p})
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	client := sdk.NewClient(b)
	const n = 24
	for i := range n {
		payload := "short"
		switch i % 6 {
		case 0:
			payload = "long"
		case 3:
			payload = "fail"
		}
		if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte(payload), LeaseHistory: true}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(40 * time.Millisecond) // the workers idle with offers between creates
	}
	e2eWaitFor(t, 45*time.Second, "every execution run", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ended) == n
	})
	e2eWaitFor(t, 10*time.Second, "every hold released", func() bool {
		holds, err := b.QuotaHolds(ctx, q)
		return err == nil && len(holds) == 0
	})
	var handoffs uint64
	for _, w := range workers {
		handoffs += w.Stats().Handoffs
	}
	mu.Lock()
	defer mu.Unlock()
	for id, k := range ended {
		if k != 1 {
			t.Fatalf("%s ran %d times", id, k)
		}
	}
	if handoffs == 0 {
		t.Fatal("no hand-off on the quota'd lane: every claim went through ClaimForWorker")
	}
	if maxRunning > capN {
		t.Fatalf("%d tasks ran at once under a concurrency cap of %d", maxRunning, capN)
	}
	if refreshed.Load() == 0 || lapsed.Load() != 0 {
		t.Fatalf("holds of tasks running past their lease TTL: %d refreshed, %d lapsed", refreshed.Load(), lapsed.Load())
	}
	parts := 0
	for range b.Partitions() {
		parts++
	}
	acquired := rateLaneAcquisitions(t, b, parts, lane, n)
	for i := range acquired {
		in := 0
		for j := i; j < len(acquired) && acquired[j].Sub(acquired[i]) < window; j++ {
			in++
		}
		if in > rate+1 {
			t.Fatalf("%d leases acquired within %v from %v (server time): over the rate of %d", in, window, acquired[i], rate)
		}
	}
	t.Logf("%d hand-offs of %d; max running %d (cap %d); %d long tasks' holds refreshed", handoffs, n, maxRunning, capN, refreshed.Load())
}
