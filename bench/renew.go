package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/loadgen"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// renewLeaseTTL is long enough that no lease of the renew scenario expires
// while the harness switches from the SDK phase to the raw one.
const renewLeaseTTL = 30 * time.Second

// runRenew measures renew-throughput at P partitions: a fleet of
// RenewWorkers sdk.Workers holds Leases leases and renews them flat out
// through the SDK's own renewer (WorkerConfig.RenewEvery = 1ms: every lease
// is always due, so each worker's renewer loops one RenewBatch round after
// another: one ff_renew per partition, all partitions in one pipelined
// flush). Then the fleet is killed, its leases left held, and the very same
// leases are renewed raw: each worker's round rebuilt by hand as pinned
// FCALLs and sent from one goroutine per worker, flat out. Both phases have
// the same shape (commands, batch sizes, concurrency), so their ratio is
// the SDK's cost alone.
func (r *Runner) runRenew(ctx context.Context, scenario string, p int) ([]*Result, error) {
	cfg := r.cfg
	bes, closeAll, err := r.t.DeployConnected(ctx, p, 1)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	be, prod := bes[0], bes[1]

	r.prog.Detail(func() string { return fmt.Sprintf("%s P=%d: creating %d executions", scenario, p, cfg.Leases) })
	if _, err := submitN(ctx, prod, benchLane, cfg.Leases, 0); err != nil {
		return nil, err
	}

	// Phase 1: the SDK renewer.
	type held struct {
		h      sdk.Handle
		worker int
	}
	var mu sync.Mutex
	heldBy := make(map[uint64]held, cfg.Leases)
	per := (cfg.Leases + cfg.RenewWorkers - 1) / cfg.RenewWorkers
	var sdkRound *Latency // set before any renewal can happen (the fleet waits for its leases)
	var sdkWin Window
	fctx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	fleet, err := loadgen.StartFleet(fctx, loadgen.FleetConfig{
		Backend: be, Workers: cfg.RenewWorkers, DistinctWorkerIDs: cfg.DistinctWorkerIDs,
		// ScanWindow covers every partition, so a claim round is two round
		// trips whatever P is: the renewals of the leases already held run
		// flat out and every round trip queues behind a renew round.
		Worker: sdk.WorkerConfig{MaxConcurrency: per, ClaimMode: sdk.ClaimFused, ClaimBatch: 256, ScanWindow: p,
			Lanes: []sdk.LaneID{benchLane}, LeaseTTL: renewLeaseTTL, RenewEvery: time.Millisecond,
			ShutdownGrace: 10 * time.Millisecond},
		Hooks: func(i int) loadgen.Hooks {
			h := r.hooks(be, nil, i)
			h.OnRenewBatch = func(start time.Time, took time.Duration, _ int) {
				mu.Lock()
				l := sdkRound
				mu.Unlock()
				if l != nil {
					l.Shard(i).Record(start, took)
				}
			}
			return h
		},
		Handler: func(i int) sdk.Handler {
			return sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
				seq, _, _ := decodePayload(t.Payload)
				mu.Lock()
				heldBy[seq] = held{t.Handle, i}
				mu.Unlock()
				<-ctx.Done() // hold the lease until the worker is killed
				return ctx.Err()
			})
		},
	})
	if err != nil {
		return nil, err
	}
	// The fleet claims every lease; a lease it cannot get within the
	// deadline (free slots, eligible work, no claim) is a liveness problem
	// worth reporting, but the renewals of the leases it holds still count.
	deadline := time.Now().Add(10 * time.Second)
	var unclaimed int
	var diag string
	for {
		mu.Lock()
		n := len(heldBy)
		mu.Unlock()
		if n >= cfg.Leases {
			break
		}
		if ctx.Err() != nil {
			fleet.KillAll()
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			if n == 0 {
				fleet.KillAll()
				return nil, fmt.Errorf("%s P=%d: the fleet claimed nothing in 10s", scenario, p)
			}
			unclaimed = cfg.Leases - n
			diag = r.strandedDiagnosis(ctx, be, p)
			break
		}
		r.prog.Detail(func() string { return fmt.Sprintf("%s P=%d: fleet holds %d/%d leases", scenario, p, n, cfg.Leases) })
		time.Sleep(20 * time.Millisecond)
	}
	sdkWin = Window{From: time.Now().Add(cfg.Warmup)}
	sdkWin.To = sdkWin.From.Add(cfg.Duration)
	mu.Lock()
	sdkRound = NewLatency(cfg.RenewWorkers, sdkWin)
	mu.Unlock()
	s0ch := make(chan sdk.WorkerStats, 1)
	go func() {
		sleepUntil(ctx, sdkWin.From)
		s0ch <- fleet.Stats()
	}()
	m, err := r.measure(ctx, sdkWin, func() string {
		return fmt.Sprintf("%s P=%d sdk: %d renewals", scenario, p, fleet.Stats().Renewals)
	})
	s1 := fleet.Stats()
	if err != nil {
		fleet.KillAll()
		return nil, err
	}
	s0 := <-s0ch
	fleet.KillAll()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_ = fleet.Stop(sctx)
	cancel()
	renewals := int64(s1.Renewals - s0.Renewals)
	sdkRes := &Result{Scenario: scenario, Variant: "sdk", Partitions: p, Workers: cfg.RenewWorkers,
		DurationS: sdkWin.Seconds(), Unit: "renewals", Ops: renewals,
		Throughput: round3(float64(renewals) / sdkWin.Seconds()), Latency: map[string]*Summary{}}
	sdkRes.efficiency(m.server, m.mallocs, renewals)
	if s := Summarize(sdkRound.Merge()); s.Count > 0 {
		sdkRes.Latency["renew_round"] = s
	}
	rounds := s1.RenewRounds - s0.RenewRounds
	sdkRes.Extra = map[string]float64{"leases": float64(cfg.Leases), "renew_rounds": float64(rounds),
		"renew_failures": float64(s1.RenewFailures - s0.RenewFailures), "lost_leases": float64(s1.LostLeases)}
	if rounds > 0 {
		sdkRes.Extra["leases_per_round"] = round3(float64(renewals) / float64(rounds))
	}

	// Phase 2: the raw ceiling on the same leases, grouped as each worker held them.
	mu.Lock()
	byWorker := make([][]sdk.Handle, cfg.RenewWorkers)
	all := make([]sdk.Handle, 0, len(heldBy))
	for _, h := range heldBy {
		byWorker[h.worker] = append(byWorker[h.worker], h.h)
		all = append(all, h.h)
	}
	mu.Unlock()
	groups := make([][]valkey.Completed, 0, len(byWorker))
	for _, hs := range byWorker {
		if len(hs) > 0 {
			groups = append(groups, renewCommands(r.t.raw, hs))
		}
	}
	rawWin := Window{From: time.Now().Add(cfg.Warmup)}
	rawWin.To = rawWin.From.Add(cfg.Duration)
	rawRound := NewLatency(len(groups), rawWin)
	var rawRate float64
	var rawErr error
	var rdone = make(chan struct{})
	go func() {
		defer close(rdone)
		rawRate, rawErr = rawStorm(ctx, r.t.raw, groups, cfg.Warmup, cfg.Duration, rawRound)
	}()
	mr, err := r.measure(ctx, rawWin, func() string { return fmt.Sprintf("%s P=%d raw ceiling", scenario, p) })
	<-rdone
	if err != nil {
		return nil, err
	}
	if rawErr != nil {
		return nil, rawErr
	}
	rawOps := int64(rawRate * rawWin.Seconds())
	rawRes := &Result{Scenario: scenario, Variant: "raw", Partitions: p, Workers: len(groups),
		DurationS: rawWin.Seconds(), Unit: "renewals", Ops: rawOps, Throughput: round3(rawRate),
		Latency: map[string]*Summary{}}
	rawRes.efficiency(mr.server, mr.mallocs, rawOps)
	if s := Summarize(rawRound.Merge()); s.Count > 0 {
		rawRes.Latency["renew_round"] = s
	}
	sdkRes.RawCeiling = rawRes.Throughput
	if rawRate > 0 {
		sdkRes.RatioToCeiling = round3(sdkRes.Throughput / rawRate)
	}

	// Every lease must still be ours: complete them all through the backend.
	r.prog.Detail(func() string { return fmt.Sprintf("%s P=%d: completing %d leases", scenario, p, len(all)) })
	var failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, h := range all {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := prod.Complete(ctx, h, nil); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	sdkRes.Lost = failed.Load()
	if sdkRes.Lost > 0 {
		sdkRes.Note = fmt.Sprintf("%d leases could not be completed after renewing", sdkRes.Lost)
	}
	if unclaimed > 0 {
		sdkRes.Extra["unclaimed"] = float64(unclaimed)
		sdkRes.Note = strings.TrimPrefix(sdkRes.Note+fmt.Sprintf("; the fleet left %d of %d executions unclaimed for 10s with free slots (%s)",
			unclaimed, cfg.Leases, diag), "; ")
	}
	return []*Result{sdkRes, rawRes}, nil
}
