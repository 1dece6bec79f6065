package sdk_test

import (
	"context"
	"fmt"
	"sort"
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
		if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}); err != nil {
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
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	for i := range starts {
		in := 0
		for j := i; j < len(starts) && starts[j].Sub(starts[i]) < window; j++ {
			in++
		}
		// Starts are stamped in this process after the server admitted
		// them: a start that lagged its admission by a few ms can land in
		// the next window of starts, so one over the rate is allowed here
		// (TestFaultAdmissionWithKills checks the engine's own admission
		// times exactly).
		if in > 11 {
			t.Fatalf("%d starts within %v from %v: over the rate of 10", in, window, starts[i])
		}
	}
	t.Logf("max running %d (cap 2); %d rate-limited starts", maxRunning, len(starts))
}
