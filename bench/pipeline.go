package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/flowfabric/flowfabric-go/loadgen"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

const benchLane sdk.LaneID = "bench"

// pipelineSpec is one submit → claim → complete run.
type pipelineSpec struct {
	scenario, variant string
	partitions        int
	mode              sdk.ClaimMode
	// open: arrivals follow a schedule at rate; else a closed loop keeps
	// inFlight submissions outstanding.
	open     bool
	rate     float64
	inFlight int
	pause    time.Duration
	// noHandoff keeps the workers claiming (no offers) whatever the
	// config says: claim-path compares claim calls.
	noHandoff bool
	// window and warmup replace Config.Duration and Config.Warmup when
	// window is set.
	window, warmup time.Duration
	// noProbe leaves out the open loop's load probe (its FCALLs would
	// count in the server's CPU per job: peers compares that figure).
	noProbe bool
	// setup runs on the deployed backend before the fleet starts
	// (admission: the lane's quota and policy).
	setup func(ctx context.Context, be *valkeybackend.Backend) error
	// direct runs the fleet's sdk.Workers on the backend itself, with
	// every role it has (admission included), instead of loadgen's
	// per-worker wrap, which carries no admission role (and would let a
	// quota'd lane's work through unadmitted); no claim-call hook.
	direct bool
}

// pipelineFleet is a running fleet: loadgen's, or a direct one.
type pipelineFleet interface {
	Stop(ctx context.Context) error
	Stats() sdk.WorkerStats
}

// runPipeline deploys P partitions, starts a fleet and a producer, and
// measures one window.
func (r *Runner) runPipeline(ctx context.Context, sp pipelineSpec) (*Result, error) {
	cfg := r.cfg
	bes, closeAll, err := r.t.DeployConnected(ctx, sp.partitions, 1)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	be, prod := bes[0], bes[1]
	if sp.setup != nil {
		if err := sp.setup(ctx, be); err != nil {
			return nil, err
		}
	}

	track := newTracker()
	// The fleet settles (registers, subscribes) until t0, when the producer
	// starts; the window follows the warm-up.
	t0 := time.Now().Add(100 * time.Millisecond)
	if sp.window > 0 {
		cfg.Duration, cfg.Warmup = sp.window, sp.warmup
	}
	win := Window{From: t0.Add(cfg.Warmup)}
	win.To = win.From.Add(cfg.Duration)
	lat := map[string]*Latency{}
	for _, name := range []string{"claim", "handler_start", "e2e", "claim_call", "send_lag", "submit", "fcall_rtt"} {
		lat[name] = NewLatency(cfg.Workers, win)
	}
	var windowOps, windowDone atomic.Int64
	var closed *loadgen.ClosedLoop
	if !sp.open {
		closed = &loadgen.ClosedLoop{InFlight: sp.inFlight, Duration: cfg.Warmup + cfg.Duration}
	}

	fctx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	wc := sdk.WorkerConfig{MaxConcurrency: cfg.Concurrency, ClaimMode: sp.mode, Lanes: []sdk.LaneID{benchLane},
		ShutdownGrace: 2 * time.Second, DisableClaimOffers: cfg.NoHandoff || sp.noHandoff, Observer: cfg.WorkerObserver}
	handler := func(i int) sdk.Handler {
		return sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
			start := time.Now()
			seq, intended, ok := decodePayload(t.Payload)
			if !ok {
				return fmt.Errorf("bench: foreign payload")
			}
			lat["claim"].Shard(i).Record(intended, t.ClaimedAt.Sub(intended))
			lat["handler_start"].Shard(i).Record(intended, start.Sub(intended))
			if err := t.Complete(ctx, nil); err != nil {
				return err
			}
			done := time.Now()
			track.complete(seq)
			lat["e2e"].Shard(i).Record(intended, done.Sub(intended))
			if win.Contains(done) {
				windowDone.Add(1)
			}
			if closed != nil {
				closed.Done()
			}
			return nil
		})
	}
	var fleet pipelineFleet
	if sp.direct {
		fleet, err = startDirectFleet(fctx, be, cfg, wc, handler)
	} else {
		fleet, err = loadgen.StartFleet(fctx, loadgen.FleetConfig{Backend: be, Workers: cfg.Workers, DistinctWorkerIDs: cfg.DistinctWorkerIDs,
			Worker: wc, Hooks: func(i int) loadgen.Hooks { return r.hooks(be, lat["claim_call"], i) }, Handler: handler})
	}
	if err != nil {
		return nil, err
	}
	// Producers submit as users do, through sdk.Client: concurrent submits
	// share round trips (Client.Submit).
	client := sdk.NewClientWithOptions(prod, sdk.ClientOptions{Observer: cfg.ClientObserver})
	submit := timedSubmit(win, sp.open, &windowOps, lat, track, func(ctx context.Context, a loadgen.Arrival) error {
		_, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: benchLane, Kind: "noop",
			Payload: encodePayload(a.Seq, a.Intended, cfg.PayloadBytes)})
		return err
	})
	sleepUntil(ctx, t0)

	pdone := r.startProducer(ctx, sp.open, sp.rate, closed, cfg.Warmup+cfg.Duration, submit)
	// In open loop, the round trip of one FCALL under this load.
	stopProbe := func() int64 { return 0 }
	if sp.open && !sp.noProbe {
		stopProbe = loadProbe(ctx, r.t.serial, win, lat["fcall_rtt"])
	}
	if sp.pause > 0 {
		go func() {
			at := win.From.Add(cfg.Duration/2 - sp.pause/2)
			time.Sleep(time.Until(at))
			_ = loadgen.PauseServer(ctx, r.t.raw, sp.pause, false)
		}()
	}
	m, err := r.measure(ctx, win, func() string {
		return fmt.Sprintf("%s %s P=%d  completed %d", sp.scenario, sp.variant, sp.partitions, track.completed.Load())
	})
	probed := stopProbe()
	if err != nil {
		return nil, err
	}
	m.server.calls["fcall"] -= probed // the probe's calls are not the jobs'
	if m.server.calls["fcall"] <= 0 {
		delete(m.server.calls, "fcall")
	}
	po := <-pdone
	if po.err != nil {
		return nil, po.err
	}
	settled := track.waitSettled(cfg.Drain)
	var diag string
	if !settled {
		diag = r.strandedDiagnosis(ctx, be, sp.partitions)
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_ = fleet.Stop(sctx)
	cancel()

	res := &Result{Scenario: sp.scenario, Variant: sp.variant, Partitions: sp.partitions, Workers: cfg.Workers,
		DurationS: win.Seconds(), Unit: "jobs", Latency: map[string]*Summary{}}
	summarizeInto(res.Latency, lat)
	done := windowDone.Load()
	res.AchievedRate = round3(float64(done) / win.Seconds())
	res.Throughput = res.AchievedRate
	ops := done
	if sp.open {
		res.OfferedRate = round3(sp.rate)
		ops = windowOps.Load()
	}
	res.Ops = ops
	res.efficiency(m.server, m.mallocs, ops)
	res.Lost, res.Duplicated = track.outcome()
	if po.st.Failed > 0 {
		res.Note = fmt.Sprintf("%d submissions failed", po.st.Failed)
	}
	if !settled {
		res.Note = fmt.Sprintf("not settled after %v drain: %d of %d completed; %s", cfg.Drain,
			track.completed.Load(), track.submitted.Load(), diag)
	}
	fs := fleet.Stats()
	res.Extra = map[string]float64{
		"submitted": float64(track.submitted.Load()), "stalled_arrivals": float64(po.st.Stalled),
		"claim_conflicts": float64(fs.ClaimConflicts), "claim_attempts": float64(fs.ClaimAttempts),
		"idle_wakeups_push": float64(fs.IdleWakeupsPush), "idle_wakeups_poll": float64(fs.IdleWakeupsPoll),
		"claimed": float64(fs.Claimed), "completed": float64(fs.Completed), "failed": float64(fs.Failed),
		"retried": float64(fs.Retried), "handler_errors": float64(fs.HandlerErrors), "lost_leases": float64(fs.LostLeases),
		"claim_errors": float64(fs.ClaimErrors), "offers": float64(fs.Offers), "handoffs": float64(fs.Handoffs),
		"complete_batches": float64(fs.CompleteBatches), "complete_batch_max": float64(fs.CompleteBatchMax),
	}
	if m.cpu > 0 && ops > 0 {
		// The client's CPU per job (producers, workers and the harness's
		// own bookkeeping): what an SDK-side change, such as --otel, costs.
		res.Extra["client_cpu_us_per_op"] = round3(float64(m.cpu.Microseconds()) / float64(ops))
	}
	if ops > 0 {
		// The client's allocated bytes per job (producers, workers and the
		// harness): with the live heap, how often the collector runs, and
		// its mark phases are where the claim tail comes from.
		res.Extra["alloc_bytes_per_op"] = round3(float64(m.allocBytes) / float64(ops))
	}
	m.gc.report(res.Extra, win, m.cpu)
	if fs.CompleteBatches > 0 {
		res.Extra["completes_per_call"] = float64(fs.BatchedCompletes) / float64(fs.CompleteBatches)
		res.Extra["complete_wait_avg_us"] = float64(fs.CompleteWaitAvg.Microseconds())
		res.Extra["complete_wait_max_us"] = float64(fs.CompleteWaitMax.Microseconds())
	}
	if df, ok := fleet.(*directFleet); ok {
		res.Extra["worker_errors"] = float64(df.errors.Load())
	}
	setHandoffShare(res, float64(fs.Handoffs), float64(fs.Claimed))
	return res, nil
}

// timedSubmit wraps send, one submission, with what every run records of
// it: an open loop's arrival in the window (windowOps), the producer's lag
// from the intended time (lat["send_lag"]), the call's latency
// (lat["submit"]) and, when it succeeded, the tracker's count.
func timedSubmit(win Window, open bool, windowOps *atomic.Int64, lat map[string]*Latency, track *tracker,
	send func(context.Context, loadgen.Arrival) error) func(context.Context, loadgen.Arrival) error {
	sendLag, submitLat := lat["send_lag"], lat["submit"]
	return func(ctx context.Context, a loadgen.Arrival) error {
		if open && win.Contains(a.Intended) {
			windowOps.Add(1)
		}
		t0 := time.Now()
		sendLag.Shard(int(a.Seq)).Record(a.Intended, t0.Sub(a.Intended))
		err := send(ctx, a)
		submitLat.Shard(int(a.Seq)).Record(a.Intended, time.Since(t0))
		if err == nil {
			track.submit(a.Seq)
		}
		return err
	}
}

// setHandoffShare records how many of the claims were hand-offs (no claim
// call) rather than claims; nothing when there were none.
func setHandoffShare(res *Result, handoffs, claimed float64) {
	if claimed > 0 {
		res.Extra["handoff_share"] = round3(handoffs / claimed)
	}
}

// hooks instruments worker i: claim call latency, and the planted
// regressions when configured.
func (r *Runner) hooks(be *valkeybackend.Backend, claimLat *Latency, i int) loadgen.Hooks {
	h := loadgen.Hooks{
		// claim_call is the latency of calls that claimed something: a
		// call lost to a worker of the same process fails without a round
		// trip, and would pull the figure down.
		OnClaimCall: func(start time.Time, took time.Duration, claimed int) {
			if claimLat != nil && claimed > 0 {
				claimLat.Shard(i).Record(start, took)
			}
		},
		RenewDelay: r.cfg.PlantRenewDelay,
	}
	if r.cfg.PlantClaimPing {
		c := be.Client()
		h.BeforeClaim = func(ctx context.Context) error { return c.Do(ctx, c.B().Ping().Build()).Error() }
	}
	return h
}

// measured is what the server and the client did in a window.
type measured struct {
	server  serverDelta
	mallocs uint64
	// allocBytes is the bytes this process allocated in the window: with
	// mallocs, what drives its garbage collections.
	allocBytes uint64
	// cpu is this process's CPU time in the window (user + system; 0 where
	// it is not measured): the client's side of a job's cost.
	cpu time.Duration
	// gc is what this process's garbage collector did in the window.
	gc gcWork
}

// measure sleeps to the window's start, snapshots the server and the
// client's allocations, CPU and collector work, sleeps to its end and
// snapshots again, showing progress meanwhile.
func (r *Runner) measure(ctx context.Context, win Window, detail func() string) (measured, error) {
	r.prog.Detail(detail)
	defer r.prog.Detail(nil)
	if !sleepUntil(ctx, win.From) {
		return measured{}, ctx.Err()
	}
	a, err := r.t.snapshot(ctx)
	if err != nil {
		return measured{}, err
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0, gc0 := processCPU(), readGCWork()
	if !sleepUntil(ctx, win.To) {
		return measured{}, ctx.Err()
	}
	cpu, gc := processCPU()-cpu0, readGCWork().since(gc0)
	runtime.ReadMemStats(&m1)
	b, err := r.t.snapshot(ctx)
	if err != nil {
		return measured{}, err
	}
	return measured{server: a.to(b), mallocs: m1.Mallocs - m0.Mallocs, allocBytes: m1.TotalAlloc - m0.TotalAlloc, cpu: cpu, gc: gc}, nil
}

// counting is a measurement in progress: startCount snapshots the server
// and the client's allocations, stop returns what happened since.
type counting struct {
	server serverSnapshot
	mem    runtime.MemStats
	r      *Runner
}

func (r *Runner) startCount(ctx context.Context) (*counting, error) {
	a, err := r.t.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	c := &counting{server: a, r: r}
	runtime.ReadMemStats(&c.mem)
	return c, nil
}

func (c *counting) stop(ctx context.Context) (measured, error) {
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	b, err := c.r.t.snapshot(ctx)
	if err != nil {
		return measured{}, err
	}
	return measured{server: c.server.to(b), mallocs: m1.Mallocs - c.mem.Mallocs, allocBytes: m1.TotalAlloc - c.mem.TotalAlloc}, nil
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// strandedDiagnosis says where unfinished work sits when a run does not
// settle: per-state index sizes and what the workers' cached readiness read
// reports.
func (r *Runner) strandedDiagnosis(ctx context.Context, be *valkeybackend.Backend, partitions int) string {
	counts := map[string]int64{}
	var stale []int
	var ready []int
	all := make([]int, partitions)
	for p := range all {
		all[p] = p
	}
	if rp, err := be.ReadyPartitions(ctx, benchLane, all); err == nil {
		ready = rp
	}
	for p := range partitions {
		k := valkeybackend.LaneIndexKeys(p, benchLane)
		for _, idx := range []struct{ name, key string }{
			{"eligible", k.Eligible}, {"active", k.Active}, {"delayed", k.Delayed}, {"blocked", k.Blocked},
		} {
			n, err := r.t.raw.Do(ctx, r.t.raw.B().Zcard().Key(idx.key).Build()).AsInt64()
			if err != nil {
				return "diagnosis failed: " + err.Error()
			}
			counts[idx.name] += n
			if idx.name == "eligible" && n > 0 && !slices.Contains(ready, p) {
				stale = append(stale, p)
			}
		}
	}
	return fmt.Sprintf("server: %d eligible, %d active, %d delayed, %d blocked; partitions with eligible work the workers' cached readiness reports empty: %v",
		counts["eligible"], counts["active"], counts["delayed"], counts["blocked"], stale)
}
