package sdk_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// A large backlog fed by a trickle of creates is claimed with every slot
// but one: the worker, idle with every slot offered when the backlog lands
// (from a producer that hands nothing off, on a partition the trickle
// never creates on, so no create or complete hands the backlog to an
// offer), keeps about the offers the trickle takes (its hand-offs come at
// the trickle's rate) and claims with the rest. A worker that kept every
// slot but one offered while creates come would claim with one slot here
// (9 backlog tasks/s measured), one that kept half with four (28/s
// measured against the 70/s of seven claimers; this one measured
// 56-67/s).
func TestBacklogFedByTrickleDrainsAtFullConcurrency(t *testing.T) {
	const (
		slots    = 8
		backlog  = 2000
		taskTime = 100 * time.Millisecond
		trickle  = 50 * time.Millisecond // one create per
		measure  = 2 * time.Second
	)
	addrs := []string{valkeytest.NewServer(t).Addr()}
	lane := e2eLane(t, "trickle")
	var running, peak, done, backlogDone atomic.Int64
	w, _ := e2eRunWorker(t, e2eConnect(t, addrs), sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane},
		MaxConcurrency: slots},
		sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
			n := running.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			select {
			case <-time.After(taskTime):
			case <-ctx.Done():
			}
			running.Add(-1)
			if p, _ := task.ID.Partition(); p == 1 {
				backlogDone.Add(1)
			}
			done.Add(1)
			return nil
		}))
	time.Sleep(300 * time.Millisecond) // idle, every slot offered

	client := sdk.NewClient(e2eConnect(t, addrs))
	ctx, stopTrickle := context.WithCancel(context.Background())
	var trickling sync.WaitGroup
	trickling.Go(func() {
		tick := time.NewTicker(trickle)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_, err := client.Submit(ctx, sdk.CreateExecutionArgs{ID: sdk.NewExecutionID(0), Lane: lane, Kind: "k"})
			if err != nil && ctx.Err() == nil {
				t.Errorf("trickle submit: %v", err)
			}
		}
	})
	defer func() { stopTrickle(); trickling.Wait() }()
	e2eWaitFor(t, 10*time.Second, "a trickled create handed to an offer", func() bool { return w.Stats().Handoffs > 0 })

	producer, err := valkeybackend.Connect(context.Background(),
		valkeybackend.Options{Addrs: addrs, Partitions: e2ePartitions, DisableHandoff: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	args := make([]sdk.CreateExecutionArgs, backlog)
	for i := range args {
		args[i] = sdk.CreateExecutionArgs{ID: sdk.NewExecutionID(1), Lane: lane, Kind: "k"}
	}
	if _, err := sdk.NewClient(producer).SubmitBatch(context.Background(), args); err != nil {
		t.Fatal(err)
	}
	// Let the worker see the backlog and settle on how it drains it.
	e2eWaitFor(t, 30*time.Second, "the backlog's first waves", func() bool { return backlogDone.Load() >= 2*slots })
	peak.Store(0)
	from, start := backlogDone.Load(), time.Now()
	time.Sleep(measure)
	ran, took := backlogDone.Load()-from, time.Since(start)
	if backlogDone.Load() >= backlog {
		t.Fatalf("the backlog drained before the measure ended: nothing measured")
	}
	rate, claimers := float64(ran)/took.Seconds(), float64(slots-1)/taskTime.Seconds()
	s := w.Stats()
	t.Logf("%d backlog tasks in %v: %.0f/s (every slot but one: %.0f/s), peak %d running; %d tasks, %d hand-offs, %d claim attempts",
		ran, took.Round(time.Millisecond), rate, claimers, peak.Load(), done.Load(), s.Handoffs, s.ClaimAttempts)
	if rate < 0.65*claimers {
		t.Fatalf("the backlog ran at %.0f tasks/s, under 65%% of every slot but one claiming (%.0f/s)", rate, claimers)
	}
	if p := peak.Load(); p != slots {
		t.Fatalf("at most %d tasks ran at once while the backlog waited, want %d", p, slots)
	}
}
