package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowfabric/flowfabric-go/loadgen"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// signal-resume defaults.
const (
	// SignalRateDefault is signal-resume's arrival rate (cycles per second)
	// when Config.Rate is 0: a fixed rate, not a fraction of the capacity,
	// so its per-cycle counters compare across profiles and runs.
	SignalRateDefault = 100
	// SignalWaitDefault is Config.SignalWait's default: long enough for
	// submit → claim → suspend to be done on 2 loaded cores, so the signal
	// meets a suspended execution (a token that arrives later is counted in
	// late_tokens, and its lateness shows in the resume latency).
	SignalWaitDefault = 20 * time.Millisecond
)

// signalName is the name of the harness's signals; the suspensions take
// any name (the default condition: one signal).
const signalName = "go"

// signalWait is the config's wait, or its default.
func (c *Config) signalWait() time.Duration { return orDefault(c.SignalWait, SignalWaitDefault) }

// signalRate is the config's rate, or SignalRateDefault.
func (c *Config) signalRate() float64 { return orDefault(c.Rate, SignalRateDefault) }

// runSignalResume measures durable waiting's signal → resume path, one
// cycle per execution: submit → claim → suspend → signal → resume →
// complete. Executions arrive open loop (cfg.Arrivals at signalRate); a
// fresh attempt suspends (one waitpoint, any signal) and hands its token to
// the signaller, which delivers the signal at the time fixed by the
// schedule: the execution's intended submit time + signalWait. The
// resumed attempt, handed to an idle worker by the signal's FCALL (or
// claimed after the arrival push), records its start, reads the signal
// that resumed it (Task.Signals) and completes. Resume latency is timed
// from the signal's intended delivery time, not from its send, so a late
// signaller or a late suspend shows (no coordinated omission).
//
// Every execution must complete once, every suspension must get exactly
// one signal whose effect is "resumed", and the resumed attempt must see
// that signal alone; otherwise the run fails.
func (r *Runner) runSignalResume(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	rate, wait := cfg.signalRate(), cfg.signalWait()
	// Workers, producer and signaller on separate clients, as separate
	// processes would be.
	bes, closeAll, err := r.t.DeployConnected(ctx, cfg.Partitions, 2)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	be, prod, sigBE := bes[0], bes[1], bes[2]
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	if _, err := be.SeedWaitpointSecret(ctx, "ffbench", secret); err != nil {
		return nil, fmt.Errorf("seed the waitpoint secret: %w", err)
	}

	track := newTracker()   // completions per execution
	signals := newTracker() // resuming deliveries per suspension
	var suspended sync.Map  // seq → suspended once already
	var suspendDups, lateTokens, signalErrs, mismatches atomic.Int64
	var faults firstFault // the first failure, for the note
	fail := faults.add

	t0 := time.Now().Add(100 * time.Millisecond)
	win := Window{From: t0.Add(cfg.Warmup)}
	win.To = win.From.Add(cfg.Duration)
	lat := map[string]*Latency{}
	// Every sample of a cycle is stamped with its execution's intended
	// submit time, so the window holds whole cycles.
	for _, name := range []string{"resume", "suspend", "signal_lag", "signal", "send_lag", "submit", "fcall_rtt"} {
		lat[name] = NewLatency(cfg.Workers, win)
	}
	var windowOps, windowDone atomic.Int64

	// The signaller: one goroutine per owed signal, asleep until its
	// intended delivery time (loadgen.SleepUntil: a precise sleep for the
	// last stretch), then one DeliverSignal.
	sctx, stopSignaller := context.WithCancel(ctx)
	defer stopSignaller()
	var sigWG sync.WaitGroup
	sigClient := sdk.NewClient(sigBE)
	deliver := func(seq uint64, intended, due time.Time, token string) {
		defer sigWG.Done()
		if !loadgen.SleepUntil(sctx, due) {
			fail(&signalErrs, "seq %d: the run ended before its signal was due", seq)
			return
		}
		sent := time.Now()
		lat["signal_lag"].Shard(int(seq)).Record(intended, sent.Sub(due))
		res, err := sigClient.DeliverSignal(sctx, sdk.DeliverSignalArgs{Token: token, Name: signalName,
			Payload: binary.BigEndian.AppendUint64(nil, seq), Source: "ffbench"})
		lat["signal"].Shard(int(seq)).Record(intended, time.Since(sent))
		switch {
		case err != nil:
			fail(&signalErrs, "seq %d: DeliverSignal: %v", seq, err)
		case res.Duplicate || res.Effect != sdk.EffectResumed:
			fail(&signalErrs, "seq %d: DeliverSignal effect %q (duplicate %v), want %q", seq, res.Effect, res.Duplicate, sdk.EffectResumed)
		default:
			signals.complete(seq)
		}
	}

	fctx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	fleet, err := loadgen.StartFleet(fctx, loadgen.FleetConfig{
		Backend: be, Workers: cfg.Workers, DistinctWorkerIDs: cfg.DistinctWorkerIDs,
		Worker: sdk.WorkerConfig{MaxConcurrency: cfg.Concurrency, ClaimMode: r.mode(), Lanes: []sdk.LaneID{benchLane},
			ShutdownGrace: 2 * time.Second, DisableClaimOffers: cfg.NoHandoff},
		Hooks: func(i int) loadgen.Hooks { return r.hooks(be, nil, i) },
		Handler: func(i int) sdk.Handler {
			return sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
				start := time.Now()
				seq, intended, ok := decodePayload(t.Payload)
				if !ok {
					return fmt.Errorf("bench: foreign payload")
				}
				due := intended.Add(wait)
				if t.AttemptType != sdk.AttemptResumed {
					out, err := t.Suspend(ctx, sdk.SuspendArgs{})
					if err != nil {
						return err
					}
					if out.AlreadySatisfied || len(out.Waitpoints) != 1 {
						fail(&mismatches, "seq %d: suspend outcome %+v, want one new waitpoint", seq, out)
						return nil
					}
					now := time.Now()
					lat["suspend"].Shard(i).Record(intended, now.Sub(intended))
					if now.After(due) {
						lateTokens.Add(1)
					}
					if _, again := suspended.LoadOrStore(seq, true); again {
						fail(&suspendDups, "seq %d suspended twice", seq)
					} else {
						signals.submit(seq)
					}
					sigWG.Add(1)
					go deliver(seq, intended, due, out.Waitpoints[0].Token)
					return nil // the suspend released the lease
				}
				lat["resume"].Shard(i).Record(intended, start.Sub(due))
				s, err := t.Signals(ctx)
				if err != nil {
					return err
				}
				if s == nil || len(s.Signals) != 1 || len(s.Signals[0].Payload) != 8 ||
					binary.BigEndian.Uint64(s.Signals[0].Payload) != seq {
					fail(&mismatches, "seq %d resumed with %s", seq, describeSuspension(s))
				}
				if err := t.Complete(ctx, nil); err != nil {
					return err
				}
				track.complete(seq)
				if win.Contains(time.Now()) {
					windowDone.Add(1)
				}
				return nil
			})
		},
	})
	if err != nil {
		return nil, err
	}
	client := sdk.NewClient(prod)
	submit := timedSubmit(win, true, &windowOps, lat, track, func(ctx context.Context, a loadgen.Arrival) error {
		_, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: benchLane, Kind: "signal",
			Payload: encodePayload(a.Seq, a.Intended, cfg.PayloadBytes)})
		return err
	})
	sleepUntil(ctx, t0)
	pdone := r.startProducer(ctx, true, rate, nil, cfg.Warmup+cfg.Duration, submit)
	stopProbe := loadProbe(ctx, r.t.serial, win, lat["fcall_rtt"])
	m, err := r.measure(ctx, win, func() string {
		return fmt.Sprintf("%s P=%d  suspended %d, signalled %d, completed %d", ScenarioSignalResume, cfg.Partitions,
			signals.submitted.Load(), signals.completed.Load(), track.completed.Load())
	})
	probed := stopProbe()
	if err != nil {
		return nil, err
	}
	m.server.calls["fcall"] -= probed // the probe's calls are not the cycles'
	if m.server.calls["fcall"] <= 0 {
		delete(m.server.calls, "fcall")
	}
	po := <-pdone
	if po.err != nil {
		return nil, po.err
	}
	settled := track.waitSettled(wait + cfg.Drain)
	var diag string
	if !settled {
		diag = r.strandedDiagnosis(ctx, be, cfg.Partitions)
	}
	stopSignaller() // a signal still asleep now fails: its cycle did not settle
	sigWG.Wait()
	sctx2, cancel := context.WithTimeout(ctx, 15*time.Second)
	_ = fleet.Stop(sctx2)
	cancel()

	res := openLoopResult(ScenarioSignalResume, cfg, win, "cycles", rate, lat, windowDone.Load(), windowOps.Load(), m, track)
	sigLost, sigDups := signals.outcome()
	fs := fleet.Stats()
	res.Extra = map[string]float64{
		"submitted": float64(track.submitted.Load()), "suspended": float64(signals.submitted.Load()),
		"signals_delivered": float64(signals.completed.Load()), "signals_lost": float64(sigLost),
		"signals_duplicated": float64(sigDups), "signal_errors": float64(signalErrs.Load()),
		"signal_mismatches": float64(mismatches.Load()), "suspend_duplicates": float64(suspendDups.Load()),
		"late_tokens": float64(lateTokens.Load()), "signal_wait_ms": float64(wait.Microseconds()) / 1000,
		"stalled_arrivals": float64(po.st.Stalled), "probe_fcalls": float64(probed),
		"claimed": float64(fs.Claimed), "handoffs": float64(fs.Handoffs), "completed": float64(fs.Completed),
		"worker_suspended": float64(fs.Suspended), "failed": float64(fs.Failed), "handler_errors": float64(fs.HandlerErrors),
		"lost_leases": float64(fs.LostLeases), "idle_wakeups_push": float64(fs.IdleWakeupsPush),
		"idle_wakeups_poll": float64(fs.IdleWakeupsPoll),
	}
	// Two claims per cycle (the fresh attempt and the resumed one): the
	// share of them that were hand-offs (no claim call).
	setHandoffShare(res, float64(fs.Handoffs), float64(fs.Claimed))
	rs, lr := res.Latency["resume"], res.Latency["fcall_rtt"]
	if rs != nil && lr != nil && lr.P50 > 0 {
		res.Extra["resume_p50_over_loaded_rtt"] = round3(rs.P50 / lr.P50)
	}
	res.Note = fmt.Sprintf("each signal is due %v after its execution's intended submit time (%s arrivals); resume latency is timed from then: "+
		"signaller's lag, the ff_signal call, the hand-off and the handler's start; Valkey CPU per cycle includes the load probe (%d ff_version calls)",
		wait, cfg.Arrivals, probed)
	if n := lateTokens.Load(); n > 0 {
		res.Note += fmt.Sprintf("; %d suspends landed after their signal was due (their wait counts in the resume latency)", n)
	}
	if po.st.Failed > 0 {
		res.Note += fmt.Sprintf("; %d submissions failed", po.st.Failed)
	}
	if first := faults.first(); first != "" {
		res.Note += "; first failure: " + first
	}
	if !settled {
		res.Note += fmt.Sprintf("; not settled after %v drain: %d of %d completed, %d suspended, %d signalled; %s", cfg.Drain,
			track.completed.Load(), track.submitted.Load(), signals.submitted.Load(), signals.completed.Load(), diag)
	}
	return res, nil
}

// signalFailure says why a signal-resume result breaks exactly-once
// signalling; "" when it holds (or the result is another scenario's).
func signalFailure(res *Result) string {
	if res.Scenario != ScenarioSignalResume {
		return ""
	}
	e := res.Extra
	if e["signals_lost"] == 0 && e["signals_duplicated"] == 0 && e["signal_errors"] == 0 &&
		e["signal_mismatches"] == 0 && e["suspend_duplicates"] == 0 {
		return ""
	}
	return fmt.Sprintf("signals: %.0f lost, %.0f duplicated, %.0f failed, %.0f resumed with other signals, %.0f executions suspended twice (%s)",
		e["signals_lost"], e["signals_duplicated"], e["signal_errors"], e["signal_mismatches"], e["suspend_duplicates"], res.Note)
}

func describeSuspension(s *sdk.Suspension) string {
	if s == nil {
		return "no suspension"
	}
	return fmt.Sprintf("%d signals (suspension %s, close reason %q)", len(s.Signals), s.ID, s.CloseReason)
}
