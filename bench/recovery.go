package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/flowfabric/flowfabric-go/loadgen"
	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// runRecovery crashes workers mid-task and times crash → completion: fleet
// A claims RecoveryJobs executions and holds them; fleet B idles; the
// scanner engine (package scanner, lease-expiry interval ScanInterval) runs
// as in production. A is killed (its backend refuses every call: leases are
// abandoned, nothing is failed or completed), the lease-expiry scanner
// requeues each execution once its lease expires, and B completes it. Every
// job must complete exactly once.
func (r *Runner) runRecovery(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	p := cfg.Partitions
	bes, closeAll, err := r.t.DeployConnected(ctx, p, 2)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	be, prod, engine := bes[0], bes[1], bes[2]

	sctx, stopScan := context.WithCancel(ctx)
	defer stopScan()
	sup, err := scanner.Start(sctx, engine, scanner.Config{LeaseExpiryInterval: cfg.ScanInterval,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer func() { stopScan(); <-sup.Done() }()
	if err := sup.WaitOwned(ctx, p); err != nil {
		return nil, err
	}

	n := cfg.RecoveryJobs
	track := newTracker()
	ids, err := submitN(ctx, prod, benchLane, n, 0)
	if err != nil {
		return nil, err
	}
	for i := range ids {
		track.submit(uint64(i))
	}

	var mu sync.Mutex
	held := 0
	var crashAt time.Time
	lat := NewLatency(cfg.Workers, Window{})
	worker := sdk.WorkerConfig{Lanes: []sdk.LaneID{benchLane}, LeaseTTL: cfg.LeaseTTL,
		MaxConcurrency: n/cfg.Workers + 1, ShutdownGrace: 10 * time.Millisecond}
	actx, stopA := context.WithCancel(ctx)
	defer stopA()
	a, err := loadgen.StartFleet(actx, loadgen.FleetConfig{Backend: be, Workers: cfg.Workers, DistinctWorkerIDs: cfg.DistinctWorkerIDs, Worker: worker,
		Hooks: func(i int) loadgen.Hooks { return r.hooks(be, nil, i) },
		Handler: func(int) sdk.Handler {
			return sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
				mu.Lock()
				held++
				mu.Unlock()
				<-ctx.Done() // mid-task until the crash
				return ctx.Err()
			})
		}})
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		h := held
		mu.Unlock()
		if h >= n {
			break
		}
		if time.Now().After(deadline) {
			a.KillAll()
			return nil, fmt.Errorf("recovery: crash fleet holds %d of %d jobs after 30s", h, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	worker.MaxConcurrency = cfg.Concurrency
	bctx, stopB := context.WithCancel(ctx)
	defer stopB()
	b, err := loadgen.StartFleet(bctx, loadgen.FleetConfig{Backend: be, Workers: cfg.Workers, DistinctWorkerIDs: cfg.DistinctWorkerIDs, Worker: worker,
		Hooks: func(i int) loadgen.Hooks { return r.hooks(be, nil, i) },
		Handler: func(i int) sdk.Handler {
			return sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
				seq, _, _ := decodePayload(t.Payload)
				if err := t.Complete(ctx, nil); err != nil {
					return err
				}
				done := time.Now()
				mu.Lock()
				at := crashAt
				mu.Unlock()
				track.complete(seq)
				if !at.IsZero() {
					lat.Shard(i).Record(done, done.Sub(at))
				}
				return nil
			})
		}})
	if err != nil {
		return nil, err
	}
	time.Sleep(100 * time.Millisecond) // B registers and goes idle

	m0, err := r.t.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	crashAt = time.Now()
	mu.Unlock()
	a.KillAll()
	r.prog.Detail(func() string {
		return fmt.Sprintf("recovery: %d/%d recovered since the crash", track.completed.Load(), n)
	})
	settled := track.waitSettled(cfg.LeaseTTL + 4*cfg.ScanInterval + cfg.Drain)
	elapsed := time.Since(crashAt)
	r.prog.Detail(nil)
	m1, err := r.t.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	stopCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_ = b.Stop(stopCtx)
	_ = a.Stop(stopCtx)
	cancel()

	res := &Result{Scenario: ScenarioRecovery, Partitions: p, Workers: cfg.Workers, DurationS: round3(elapsed.Seconds()),
		Unit: "jobs", Ops: track.completed.Load(), Latency: map[string]*Summary{}}
	res.Throughput = round3(float64(res.Ops) / elapsed.Seconds())
	res.Latency["crash_to_completion"] = Summarize(lat.Merge())
	res.efficiency(m0.to(m1), 0, res.Ops)
	res.AllocsPerOp = 0 // not measured: two fleets and the scanner share the process
	res.Lost, res.Duplicated = track.outcome()
	res.Extra = map[string]float64{"lease_ttl_ms": float64(cfg.LeaseTTL.Milliseconds()),
		"scan_interval_ms": float64(cfg.ScanInterval.Milliseconds()), "jobs": float64(n)}
	// Recovery is bounded by lease TTL + scan interval (+ a claim): the p99
	// against that bound is comparable across configs.
	if s := res.Latency["crash_to_completion"]; s.Count > 0 {
		res.Extra["p99_over_ttl_plus_scan"] = round3(s.P99 / float64((cfg.LeaseTTL + cfg.ScanInterval).Microseconds()))
	}
	res.Note = fmt.Sprintf("lease-expiry scanner (package scanner) every %v; lease TTL %v, renewed every TTL/3, so a crash leaves 2/3..1 TTL to run",
		cfg.ScanInterval, cfg.LeaseTTL)
	if !settled {
		res.Note += fmt.Sprintf("; only %d of %d recovered", track.completed.Load(), n)
	}
	return res, nil
}
