package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// FleetConfig describes a fleet of workers in this process.
type FleetConfig struct {
	// Backend is shared by the fleet's workers (one connection pool, as
	// workers in one process share a client); each worker gets its own
	// Wrap of it, so it can be killed alone. A Backend that also implements
	// sdk.Waiter or sdk.Streamer keeps those roles through the Wrap (tasks
	// can Suspend and Emit).
	// Required.
	Backend FullBackend
	// Workers is the fleet size. Default 1.
	Workers int
	// Worker is the template config; WorkerID defaults to "ffbench" and
	// InstanceID to "<WorkerID>-<n>-<start unix ns>".
	Worker sdk.WorkerConfig
	// DistinctWorkerIDs gives worker i the WorkerID "<WorkerID>-<i>" (one
	// deployment per worker) instead of the shared one. Default false.
	DistinctWorkerIDs bool
	// Hooks, when set, instruments worker index's backend.
	Hooks func(index int) Hooks
	// Handler runs tasks; index is the worker's index in the fleet.
	Handler func(index int) sdk.Handler
}

// Fleet runs workers until Stop, and can kill any of them.
type Fleet struct {
	cfg      FleetConfig
	workers  []*sdk.Worker
	backends []*Backend
	cancel   []context.CancelFunc
	errs     []error
	wg       sync.WaitGroup
}

// StartFleet builds the workers and starts them. ctx bounds their life.
func StartFleet(ctx context.Context, cfg FleetConfig) (*Fleet, error) {
	if cfg.Backend == nil || cfg.Handler == nil {
		return nil, errors.New("loadgen: FleetConfig needs Backend and Handler")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Worker.WorkerID == "" {
		cfg.Worker.WorkerID = "ffbench"
	}
	f := &Fleet{cfg: cfg, errs: make([]error, cfg.Workers)}
	stamp := time.Now().UnixNano()
	for i := range cfg.Workers {
		wc := cfg.Worker
		if cfg.DistinctWorkerIDs {
			wc.WorkerID = sdk.WorkerID(fmt.Sprintf("%s-%d", wc.WorkerID, i))
		}
		if wc.InstanceID == "" {
			wc.InstanceID = sdk.WorkerInstanceID(fmt.Sprintf("%s-%d-%d", wc.WorkerID, i, stamp))
		} else {
			wc.InstanceID = sdk.WorkerInstanceID(fmt.Sprintf("%s-%d", wc.InstanceID, i))
		}
		var h Hooks
		if cfg.Hooks != nil {
			h = cfg.Hooks(i)
		}
		b := Wrap(cfg.Backend, h)
		w, err := sdk.NewWorker(forWorker(b, cfg.Backend), wc)
		if err != nil {
			return nil, err
		}
		f.workers = append(f.workers, w)
		f.backends = append(f.backends, b)
	}
	for i, w := range f.workers {
		wctx, cancel := context.WithCancel(ctx)
		f.cancel = append(f.cancel, cancel)
		h := cfg.Handler(i)
		f.wg.Go(func() { f.errs[i] = w.Run(wctx, h) })
	}
	return f, nil
}

// Kill crashes worker i: its backend refuses every call from now on (so its
// leases are abandoned, nothing completes or fails), and its Run is
// cancelled so its goroutines end.
func (f *Fleet) Kill(i int) {
	f.backends[i].Kill()
	f.cancel[i]()
}

// KillAll crashes every worker.
func (f *Fleet) KillAll() {
	for i := range f.workers {
		f.backends[i].Kill()
	}
	for i := range f.workers {
		f.cancel[i]()
	}
}

// Stop shuts the workers down gracefully (Run's cancellation) and waits,
// at most until ctx ends.
func (f *Fleet) Stop(ctx context.Context) error {
	for _, c := range f.cancel {
		c()
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return errors.Join(f.errs...)
}

// Stats sums the workers' counters (the …Max fields are the maxima, the
// …Avg ones weighted averages).
func (f *Fleet) Stats() sdk.WorkerStats {
	var t sdk.WorkerStats
	var lagN uint64
	for _, w := range f.workers {
		s := w.Stats()
		t.Claimed += s.Claimed
		t.Completed += s.Completed
		t.Failed += s.Failed
		t.Retried += s.Retried
		t.Cancelled += s.Cancelled
		t.Delayed += s.Delayed
		t.Suspended += s.Suspended
		t.HandlerErrors += s.HandlerErrors
		t.HandlerPanics += s.HandlerPanics
		t.Aborted += s.Aborted
		t.LostLeases += s.LostLeases
		t.Renewals += s.Renewals
		t.RenewFailures += s.RenewFailures
		t.RenewRounds += s.RenewRounds
		t.RenewLagAvg += s.RenewLagAvg * time.Duration(s.RenewRounds)
		lagN += s.RenewRounds
		t.RenewLagMax = max(t.RenewLagMax, s.RenewLagMax)
		t.ClaimRounds += s.ClaimRounds
		t.Scans += s.Scans
		t.ReadinessReads += s.ReadinessReads
		t.ClaimAttempts += s.ClaimAttempts
		t.ClaimConflicts += s.ClaimConflicts
		t.CapabilityBlocks += s.CapabilityBlocks
		t.ClaimErrors += s.ClaimErrors
		t.IdleWakeupsPush += s.IdleWakeupsPush
		t.IdleWakeupsPoll += s.IdleWakeupsPoll
		t.Arrivals += s.Arrivals
		t.Offers += s.Offers
		t.Handoffs += s.Handoffs
		t.CompleteBatches += s.CompleteBatches
		t.BatchedCompletes += s.BatchedCompletes
		t.CompleteBatchMax = max(t.CompleteBatchMax, s.CompleteBatchMax)
		t.CompleteWaitAvg += s.CompleteWaitAvg * time.Duration(s.BatchedCompletes)
		t.CompleteWaitMax = max(t.CompleteWaitMax, s.CompleteWaitMax)
		t.InFlight += s.InFlight
		t.Offered += s.Offered
		t.HeldLeases += s.HeldLeases
	}
	if lagN > 0 {
		t.RenewLagAvg /= time.Duration(lagN)
	}
	if t.BatchedCompletes > 0 {
		t.CompleteWaitAvg /= time.Duration(t.BatchedCompletes)
	}
	return t
}
