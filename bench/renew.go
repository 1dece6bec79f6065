package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/loadgen"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// renewSlice is the length of one measured slice of renew-throughput:
// short, so the two variants alternate faster than this machine's slow
// spells come and go (they last a few hundred ms), yet a few renew rounds
// long.
const renewSlice = 100 * time.Millisecond

// renewTotals sums one variant's slices.
type renewTotals struct {
	renewed uint64
	took    time.Duration
	server  serverDelta
	mallocs uint64
}

func (t *renewTotals) add(n uint64, took time.Duration, m measured) {
	t.renewed += n
	t.took += took
	t.server.add(m.server)
	t.mallocs += m.mallocs
}

func (t *renewTotals) result(scenario, variant string, p, workers int) *Result {
	res := &Result{Scenario: scenario, Variant: variant, Partitions: p, Workers: workers,
		DurationS: round3(t.took.Seconds()), Unit: "renewals", Ops: int64(t.renewed), Latency: map[string]*Summary{}}
	if t.took > 0 {
		res.Throughput = round3(float64(t.renewed) / t.took.Seconds())
	}
	res.efficiency(t.server, t.mallocs, int64(t.renewed))
	return res
}

// renewLeaseTTL is long enough that no lease of the renew scenario expires
// while the other variant's slices run.
const renewLeaseTTL = 30 * time.Second

// runRenew measures renew-throughput at P partitions: a fleet of
// RenewWorkers sdk.Workers holds Leases leases and renews them flat out
// through the SDK's own renewer (WorkerConfig.RenewEvery = 1ms: every lease
// is always due, so each worker's renewer loops one RenewBatch round after
// another: one ff_renew per partition, all partitions in one pipelined
// flush). The raw ceiling renews the very same leases: each worker's round
// rebuilt as pinned FCALLs from valkeybackend's RenewCall (the KEYS and
// ARGV RenewBatch sends) and sent from one goroutine per worker, flat out.
// The two take turns in renewSlices slices each (the fleet's renewers held
// at a loadgen.RenewGate during raw slices), so both see the same machine;
// both have the same shape (commands, batch sizes, concurrency), so their
// ratio is the SDK's cost alone.
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

	// The fleet: the SDK renewer.
	type held struct {
		h      sdk.Handle
		worker int
	}
	var mu sync.Mutex
	heldBy := make(map[uint64]held, cfg.Leases)
	per := (cfg.Leases + cfg.RenewWorkers - 1) / cfg.RenewWorkers
	var sdkRound *Latency // set before the measured slices
	// Closed while the fleet claims: renewing flat out the leases it
	// already holds would only slow the claims (the 30 s leases do not
	// need it yet).
	gate := &loadgen.RenewGate{}
	if err := gate.Pause(ctx); err != nil {
		return nil, err
	}
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
			h.RenewGate = gate
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
	defer fleet.KillAll() // on every return: an error must not let the leases settle
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
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			if n == 0 {
				return nil, fmt.Errorf("%s P=%d: the fleet claimed nothing in 10s", scenario, p)
			}
			unclaimed = cfg.Leases - n
			diag = r.strandedDiagnosis(ctx, be, p)
			break
		}
		r.prog.Detail(func() string { return fmt.Sprintf("%s P=%d: fleet holds %d/%d leases", scenario, p, n, cfg.Leases) })
		time.Sleep(20 * time.Millisecond)
	}
	// The raw rounds: the same leases, grouped as each worker held them.
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
			cmds, err := renewCommands(r.t.raw, be, hs)
			if err != nil {
				return nil, err
			}
			groups = append(groups, cmds)
		}
	}

	// Warm-up: the fleet's renewers for the warm-up, then the raw path as
	// long, unmeasured.
	gate.Resume()
	if !sleepUntil(ctx, time.Now().Add(cfg.Warmup)) {
		return nil, ctx.Err()
	}
	if err := gate.Pause(ctx); err != nil {
		return nil, err
	}
	if _, _, err := rawSlice(ctx, r.t.raw, groups, cfg.Warmup, nil); err != nil {
		return nil, err
	}

	// Interleaved slices, ABBA, each timed from its first call to the
	// return of its last: slices of both variants start with every
	// renewer idle and end with every round drained, so neither gains
	// from the other's start-up or tail.
	open := Window{From: time.Now()}
	mu.Lock()
	sdkRound = NewLatency(cfg.RenewWorkers, open)
	mu.Unlock()
	rawRound := NewLatency(len(groups), open)
	slice := renewSlice
	renewSlices := max(int(cfg.Duration/slice), 4)
	var sdkT, rawT renewTotals
	var pairs []float64
	var failures uint64
	type variant struct {
		name   string
		run    func() (renewed uint64, took time.Duration, err error)
		totals *renewTotals
	}
	sdkV := variant{"sdk", func() (uint64, time.Duration, error) {
		s0, f0 := gate.Renewed(), fleet.Stats().RenewFailures
		t0 := time.Now()
		gate.Resume()
		ok := sleepUntil(ctx, t0.Add(slice))
		err := gate.Pause(ctx)
		took := time.Since(t0)
		if !ok || err != nil {
			return 0, 0, errors.Join(ctx.Err(), err)
		}
		failures += fleet.Stats().RenewFailures - f0
		return gate.Renewed() - s0, took, nil
	}, &sdkT}
	rawV := variant{"raw", func() (uint64, time.Duration, error) {
		return rawSlice(ctx, r.t.raw, groups, slice, rawRound)
	}, &rawT}
	for i := range renewSlices {
		rate := map[string]float64{}
		for _, v := range abba(i, sdkV, rawV) {
			r.prog.Detail(func() string {
				return fmt.Sprintf("%s P=%d: slice %d/%d %s (%s each)", scenario, p, i+1, renewSlices, v.name, slice)
			})
			snap, err := r.startCount(ctx)
			if err != nil {
				return nil, err
			}
			n, took, err := v.run()
			if err != nil {
				return nil, err
			}
			m, err := snap.stop(ctx)
			if err != nil {
				return nil, err
			}
			v.totals.add(n, took, m)
			rate[v.name] = float64(n) / took.Seconds()
		}
		if rate["raw"] > 0 {
			pairs = append(pairs, rate["sdk"]/rate["raw"])
		}
	}
	s1 := fleet.Stats()
	fleet.KillAll()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_ = fleet.Stop(sctx)
	cancel()

	sdkRes := sdkT.result(scenario, "sdk", p, cfg.RenewWorkers)
	if s := Summarize(sdkRound.Merge()); s.Count > 0 {
		sdkRes.Latency["renew_round"] = s
	}
	sdkRes.Extra = map[string]float64{"leases": float64(cfg.Leases), "renew_failures": float64(failures),
		"lost_leases": float64(s1.LostLeases), "slices": float64(renewSlices), "slice_s": slice.Seconds()}
	rawRes := rawT.result(scenario, "raw", p, len(groups))
	if s := Summarize(rawRound.Merge()); s.Count > 0 {
		rawRes.Latency["renew_round"] = s
	}
	sdkRes.RawCeiling = rawRes.Throughput
	if rawRes.Throughput > 0 {
		sdkRes.RatioToCeiling = round3(sdkRes.Throughput / rawRes.Throughput)
	}
	if len(pairs) > 0 {
		sdkRes.Extra["ratio_slice_min"] = round3(slices.Min(pairs))
		sdkRes.Extra["ratio_slice_max"] = round3(slices.Max(pairs))
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
