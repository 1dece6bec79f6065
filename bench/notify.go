package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowfabric/flowfabric-go/loadgen"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// completion-notify defaults.
const (
	// NotifyRateDefault is completion-notify's arrival rate (executions
	// per second) when Config.Rate is 0: fixed, as signal-resume's, so its
	// per-job counters compare across profiles and runs.
	NotifyRateDefault = 200
	// NotifyWork is how long each completion-notify handler works before
	// it completes: the waiter is already waiting when Complete runs.
	NotifyWork = 2 * time.Millisecond
)

// notifyRate is the config's rate, or NotifyRateDefault.
func (c *Config) notifyRate() float64 {
	if c.Rate > 0 {
		return c.Rate
	}
	return NotifyRateDefault
}

// notifyTimes pairs each execution's completion (the handler's times
// around Task.Complete) with its waiter's return, whichever comes last
// recording the samples.
type notifyTimes struct {
	shards [64]struct {
		mu sync.Mutex
		m  map[uint64]*notifyPair
	}
	notify, fromStart *Latency
	early             atomic.Int64 // waiters that returned before the worker's Complete did
}

type notifyPair struct {
	intended                      time.Time
	completeStart, completeReturn time.Time
	waitReturn                    time.Time
}

func newNotifyTimes(notify, fromStart *Latency) *notifyTimes {
	n := &notifyTimes{notify: notify, fromStart: fromStart}
	for i := range n.shards {
		n.shards[i].m = map[uint64]*notifyPair{}
	}
	return n
}

// note merges one side's times into seq's pair and records the samples
// once both sides are in.
func (n *notifyTimes) note(seq uint64, set func(*notifyPair)) {
	s := &n.shards[seq%64]
	s.mu.Lock()
	p := s.m[seq]
	if p == nil {
		p = &notifyPair{}
		s.m[seq] = p
	}
	set(p)
	done := !p.completeReturn.IsZero() && !p.waitReturn.IsZero()
	if done {
		delete(s.m, seq)
	}
	s.mu.Unlock()
	if !done {
		return
	}
	d := p.waitReturn.Sub(p.completeReturn)
	if d < 0 {
		n.early.Add(1)
		d = 0
	}
	n.notify.Shard(int(seq)).Record(p.intended, d)
	n.fromStart.Shard(int(seq)).Record(p.intended, p.waitReturn.Sub(p.completeStart))
}

// notifyResult is what completion-notify's handler completes seq with; the
// waiter must read it back.
func notifyResult(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte("cn:"), seq)
}

// runCompletionNotify measures how fast Client.WaitResult learns that an
// execution ended: executions arrive open loop (cfg.Arrivals at
// notifyRate); right after each submit a waiter goroutine calls
// WaitResult on a client of its own backend connection (one for all the
// waiters: one caller process), which with RoleTerminalWatch waits for the
// server's invalidation push of the execution record instead of polling.
// Each handler works NotifyWork, then completes with a result naming its
// execution. notify runs from the moment the worker's Complete call
// returned to the waiter's return; complete_start_to_return from the
// moment it started.
//
// Every execution must complete once and every WaitResult must return its
// execution's result; otherwise the run fails.
func (r *Runner) runCompletionNotify(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	rate := cfg.notifyRate()
	bes, closeBackends, err := r.t.DeployConnected(ctx, cfg.Partitions, 1)
	if err != nil {
		return nil, err
	}
	var closeOnce sync.Once
	closeAll := func() { closeOnce.Do(closeBackends) }
	defer closeAll()
	be, prod := bes[0], bes[1]

	track := newTracker() // completions per execution
	waits := newTracker() // WaitResult returns per execution
	var waitErrs, mismatches atomic.Int64
	var faults firstFault // the first failure, for the note
	fail := faults.add

	t0 := time.Now().Add(300 * time.Millisecond)
	win := Window{From: t0.Add(cfg.Warmup)}
	win.To = win.From.Add(cfg.Duration)
	lat := map[string]*Latency{}
	// Every sample is stamped with its execution's intended submit time, so
	// the window holds whole jobs.
	for _, name := range []string{"notify", "complete_start_to_return", "complete_call", "wait_call", "send_lag", "submit", "fcall_rtt"} {
		lat[name] = NewLatency(cfg.Workers, win)
	}
	times := newNotifyTimes(lat["notify"], lat["complete_start_to_return"])
	var windowOps, windowDone, windowWaits atomic.Int64

	fctx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	fleet, err := loadgen.StartFleet(fctx, loadgen.FleetConfig{
		Backend: be, Workers: cfg.Workers, DistinctWorkerIDs: cfg.DistinctWorkerIDs,
		Worker: sdk.WorkerConfig{MaxConcurrency: cfg.Concurrency, ClaimMode: r.mode(), Lanes: []sdk.LaneID{benchLane},
			ShutdownGrace: 2 * time.Second, DisableClaimOffers: cfg.NoHandoff},
		Hooks: func(i int) loadgen.Hooks { return r.hooks(be, nil, i) },
		Handler: func(i int) sdk.Handler {
			return sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
				seq, intended, ok := decodePayload(t.Payload)
				if !ok {
					return fmt.Errorf("bench: foreign payload")
				}
				work := time.NewTimer(NotifyWork)
				select {
				case <-ctx.Done():
					work.Stop()
					return ctx.Err()
				case <-work.C:
				}
				cs := time.Now()
				if err := t.Complete(ctx, notifyResult(seq)); err != nil {
					return err
				}
				ce := time.Now()
				lat["complete_call"].Shard(i).Record(intended, ce.Sub(cs))
				times.note(seq, func(p *notifyPair) { p.intended, p.completeStart, p.completeReturn = intended, cs, ce })
				track.complete(seq)
				if win.Contains(ce) {
					windowDone.Add(1)
				}
				return nil
			})
		},
	})
	if err != nil {
		return nil, err
	}
	// The waiters' commands are counted per connection (CLIENT LIST
	// tot-cmds): their connections are those opened after this listing
	// (valkey-go opens some lazily) that are still open once the workers'
	// and the producer's backends have closed.
	time.Sleep(100 * time.Millisecond)
	before, err := r.clientCmds(ctx)
	if err != nil {
		return nil, err
	}
	waitBE, err := r.t.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer waitBE.Close()
	if sdk.RolesOf(waitBE).TerminalWatcher == nil {
		return nil, fmt.Errorf("completion-notify: the waiters' backend has no %s role (client-side caching off?)", sdk.RoleTerminalWatch)
	}
	waitClient := sdk.NewClient(waitBE)
	wctx, stopWaiters := context.WithCancel(ctx)
	defer stopWaiters()
	var waitWG sync.WaitGroup
	client := sdk.NewClient(prod)
	submit := timedSubmit(win, true, &windowOps, lat, track, func(ctx context.Context, a loadgen.Arrival) error {
		res, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: benchLane, Kind: "notify",
			Payload: encodePayload(a.Seq, a.Intended, cfg.PayloadBytes)})
		if err != nil {
			return err
		}
		waits.submit(a.Seq)
		waitWG.Add(1)
		go func(seq uint64, intended time.Time, id sdk.ExecutionID) {
			defer waitWG.Done()
			ws := time.Now()
			out, err := waitClient.WaitResult(wctx, id, 0)
			we := time.Now()
			lat["wait_call"].Shard(int(seq)).Record(intended, we.Sub(ws))
			switch {
			case err != nil:
				fail(&waitErrs, "seq %d: WaitResult: %v", seq, err)
				return
			case !bytes.Equal(out, notifyResult(seq)):
				fail(&mismatches, "seq %d: WaitResult returned %q, want %q", seq, out, notifyResult(seq))
				return
			}
			waits.complete(seq)
			if win.Contains(we) {
				windowWaits.Add(1)
			}
			times.note(seq, func(p *notifyPair) { p.intended, p.waitReturn = intended, we })
		}(a.Seq, a.Intended, res.ID)
		return nil
	})
	sleepUntil(ctx, t0)
	pdone := r.startProducer(ctx, true, rate, nil, cfg.Warmup+cfg.Duration, submit)
	stopProbe := loadProbe(ctx, r.t.serial, win, lat["fcall_rtt"])
	// The waiters' commands over the window, read at its edges.
	type cmdsAt struct {
		m   map[string]int64
		err error
	}
	edge := make(chan cmdsAt, 1)
	go func() {
		if !sleepUntil(ctx, win.From) {
			edge <- cmdsAt{err: ctx.Err()}
			return
		}
		m, err := r.clientCmds(ctx)
		edge <- cmdsAt{m, err}
	}()
	m, err := r.measure(ctx, win, func() string {
		return fmt.Sprintf("%s P=%d  submitted %d, completed %d, waits returned %d", ScenarioCompletionNotify, cfg.Partitions,
			track.submitted.Load(), track.completed.Load(), waits.completed.Load())
	})
	endCmds, endErr := r.clientCmds(ctx)
	startCmds := <-edge
	probed := stopProbe()
	if err != nil {
		return nil, err
	}
	m.server.calls["fcall"] -= probed     // the probe's calls are not the jobs'
	delete(m.server.calls, "client|list") // the harness's count of the waiters' commands
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
		diag = r.strandedDiagnosis(ctx, be, cfg.Partitions)
	}
	waited := waits.waitSettled(cfg.Drain)
	stopWaiters() // a waiter still waiting now fails
	waitWG.Wait()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_ = fleet.Stop(sctx)
	cancel()
	closeAll()
	time.Sleep(100 * time.Millisecond) // for the server to drop the closed connections
	final, finalErr := r.clientCmds(ctx)
	res := openLoopResult(ScenarioCompletionNotify, cfg, win, "jobs", rate, lat, windowDone.Load(), windowOps.Load(), m, track)
	waitsLost, waitsDup := waits.outcome()
	fs := fleet.Stats()
	res.Extra = map[string]float64{
		"submitted": float64(track.submitted.Load()), "waits_returned": float64(waits.completed.Load()),
		"waits_lost": float64(waitsLost), "waits_duplicated": float64(waitsDup), "wait_errors": float64(waitErrs.Load()),
		"result_mismatches": float64(mismatches.Load()), "early_returns": float64(times.early.Load()),
		"work_ms": float64(NotifyWork.Microseconds()) / 1000, "window_waits": float64(windowWaits.Load()),
		"stalled_arrivals": float64(po.st.Stalled), "probe_fcalls": float64(probed),
		"claimed": float64(fs.Claimed), "handoffs": float64(fs.Handoffs), "completed": float64(fs.Completed),
		"failed": float64(fs.Failed), "handler_errors": float64(fs.HandlerErrors), "lost_leases": float64(fs.LostLeases),
		"idle_wakeups_push": float64(fs.IdleWakeupsPush), "idle_wakeups_poll": float64(fs.IdleWakeupsPoll),
	}
	setHandoffShare(res, float64(fs.Handoffs), float64(fs.Claimed))
	if n, lr := res.Latency["notify"], res.Latency["fcall_rtt"]; n != nil && lr != nil && lr.P50 > 0 {
		res.Extra["notify_p50_over_loaded_rtt"] = round3(n.P50 / lr.P50)
	}
	var cmdNote string
	switch {
	case startCmds.err != nil || endErr != nil || finalErr != nil:
		cmdNote = fmt.Sprintf("; the waiters' commands were not counted (CLIENT LIST: %v %v %v)", startCmds.err, endErr, finalErr)
	default:
		var n, conns int64
		for id, c := range endCmds {
			_, old := before[id]
			if _, open := final[id]; open && !old {
				conns++
				n += c - startCmds.m[id] // 0 when it opened inside the window
			}
		}
		res.Extra["waiter_connections"] = float64(conns)
		res.Extra["waiter_commands"] = float64(n)
		if w := windowWaits.Load(); w > 0 && conns > 0 {
			res.Extra["waiter_commands_per_wait"] = round3(float64(n) / float64(w))
		}
	}
	res.Note = fmt.Sprintf("each handler works %v then completes; a waiter on its own backend connection calls WaitResult right after the submit (%s arrivals); "+
		"notify runs from the worker's Complete call returning to WaitResult returning; Valkey CPU per job includes the load probe (%d ff_version calls)%s",
		NotifyWork, cfg.Arrivals, probed, cmdNote)
	if n := times.early.Load(); n > 0 {
		res.Note += fmt.Sprintf("; %d waiters returned before the worker's Complete call did (recorded as 0)", n)
	}
	if po.st.Failed > 0 {
		res.Note += fmt.Sprintf("; %d submissions failed", po.st.Failed)
	}
	if first := faults.first(); first != "" {
		res.Note += "; first failure: " + first
	}
	if !settled {
		res.Note += fmt.Sprintf("; not settled after %v drain: %d of %d completed; %s", cfg.Drain,
			track.completed.Load(), track.submitted.Load(), diag)
	}
	if !waited {
		res.Note += fmt.Sprintf("; %d of %d waits had not returned after %v drain", waits.submitted.Load()-waits.completed.Load(),
			waits.submitted.Load(), cfg.Drain)
	}
	return res, nil
}

// clientCmds lists every connection of the primaries with its commands so
// far (CLIENT LIST tot-cmds), keyed "node/id".
func (r *Runner) clientCmds(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for i, n := range r.t.primaries {
		s, err := n.Do(ctx, n.B().ClientList().Build()).ToString()
		if err != nil {
			return nil, fmt.Errorf("CLIENT LIST: %w", err)
		}
		for line := range strings.SplitSeq(s, "\n") {
			var id string
			var cmds int64 = -1
			for _, kv := range strings.Fields(strings.TrimPrefix(line, "txt:")) { // RESP3 verbatim string
				if v, ok := strings.CutPrefix(kv, "id="); ok {
					id = v
				} else if v, ok := strings.CutPrefix(kv, "tot-cmds="); ok {
					cmds, _ = strconv.ParseInt(v, 10, 64)
				}
			}
			if id != "" {
				if cmds < 0 {
					return nil, fmt.Errorf("CLIENT LIST has no tot-cmds (Valkey 8 or later)")
				}
				out[strconv.Itoa(i)+"/"+id] = cmds
			}
		}
	}
	return out, nil
}

// notifyFailure says why a completion-notify result breaks "every wait
// returns its result"; "" when it holds (or the result is another
// scenario's).
func notifyFailure(res *Result) string {
	if res.Scenario != ScenarioCompletionNotify {
		return ""
	}
	e := res.Extra
	if e["waits_lost"] == 0 && e["waits_duplicated"] == 0 && e["wait_errors"] == 0 && e["result_mismatches"] == 0 {
		return ""
	}
	return fmt.Sprintf("waits: %.0f never returned, %.0f returned twice, %.0f failed, %.0f returned another result (%s)",
		e["waits_lost"], e["waits_duplicated"], e["wait_errors"], e["result_mismatches"], res.Note)
}

// notifyRes is the completion-notify result at the config's partition
// count, or nil.
func notifyRes(rep *Report) *Result {
	if r := rep.Find(ScenarioCompletionNotify + "/P=" + strconv.Itoa(rep.Config.Partitions)); r != nil {
		if s := r.Latency["notify"]; s != nil && s.Count > 0 {
			return r
		}
	}
	return nil
}

// notifyHeadline is completion-notify's line: complete → WaitResult
// returns against one FCALL round trip under the same load, the waiters'
// commands per wait and the job's cost.
func notifyHeadline(rep *Report) string {
	r := notifyRes(rep)
	if r == nil {
		return ""
	}
	s := r.Latency["notify"]
	line := fmt.Sprintf("complete → WaitResult returns at P=%d, %s jobs/s: p50 %s, p99 %s, p99.9 %s",
		r.Partitions, fmtRate(r.OfferedRate), fmtUS(s.P50), fmtUS(s.P99), fmtUS(s.P999))
	if lr := r.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 {
		line += fmt.Sprintf("; one FCALL round trip under this load p50 %s, so the p50 is %.2f× it %s", fmtUS(lr.P50), r.Extra["notify_p50_over_loaded_rtt"],
			notifyGoal(r).Tag())
	}
	if v, ok := r.Extra["waiter_commands_per_wait"]; ok {
		line += fmt.Sprintf("; %.2f waiter commands per wait", v)
	}
	return line + fmt.Sprintf("; per job: %.2f FCALLs, %.1f Valkey commands", r.FcallsPerOp, r.CommandsPerOp)
}

// notifyMarkdown writes completion-notify's section.
func notifyMarkdown(b *strings.Builder, rep *Report) {
	r := notifyRes(rep)
	if r == nil {
		return
	}
	b.WriteString("## Completion → WaitResult\n\n")
	fmt.Fprintf(b, "Open loop: executions arrive at %s/s (%s); right after each submit a waiter calls Client.WaitResult on a client of its own backend "+
		"connection (one for all waiters), which waits for the server's invalidation push of the execution record (client-side caching) instead of polling. "+
		"Each handler works %gms, then completes with a result the waiter must read back. "+
		"notify runs from the moment the worker's Complete call **returned** to WaitResult's return.\n\n",
		fmtRate(r.OfferedRate), md(rep.Config.Arrivals, maxNameRunes), r.Extra["work_ms"])
	b.WriteString("| measure | what | count | p50 | p90 | p99 | p99.9 | max |\n|---|---|--:|--:|--:|--:|--:|--:|\n")
	for _, m := range []struct{ name, what string }{
		{"notify", "worker's Complete returned → WaitResult returned"},
		{"complete_start_to_return", "worker's Complete started → WaitResult returned"},
		{"complete_call", "the worker's Complete call"},
		{"wait_call", "the whole WaitResult call (from right after the submit)"},
		{"fcall_rtt", "one FCALL round trip under the same load"},
	} {
		if s := r.Latency[m.name]; s != nil && s.Count > 0 {
			fmt.Fprintf(b, "| %s | %s | %d | %s | %s | %s | %s | %s |\n", m.name, m.what, s.Count, fmtUS(s.P50), fmtUS(s.P90),
				fmtUS(s.P99), fmtUS(s.P999), fmtUS(s.Max))
		}
	}
	fmt.Fprintf(b, "\nnotify p50 / loaded FCALL p50: **%.2f×** (target ≤ 2); waiters' Valkey commands per wait (CLIENT LIST tot-cmds of their connections over the window): **%.2f**; "+
		"per job: **%.2f FCALLs**, **%.1f Valkey commands** (the waiters' included, the load probe's left out), %.0f µs of Valkey CPU (the load probe's included); "+
		"%.0f jobs in the window; over the whole run %.0f submitted, %.0f waits returned, %.0f never returned, %.0f failed, %.0f returned another result; "+
		"%.0f waiters returned before the worker's Complete call did.\n\n",
		r.Extra["notify_p50_over_loaded_rtt"], r.Extra["waiter_commands_per_wait"], r.FcallsPerOp, r.CommandsPerOp, r.ValkeyCPUPerOpUS, float64(r.Ops),
		r.Extra["submitted"], r.Extra["waits_returned"], r.Extra["waits_lost"], r.Extra["wait_errors"], r.Extra["result_mismatches"], r.Extra["early_returns"])
}

// notifyCurves draws completion-notify's latency curves, with the loaded
// FCALL round trip's p50 as a reference line.
func notifyCurves(rep *Report) chart {
	const title = "Complete → WaitResult latency (open loop)"
	r := notifyRes(rep)
	if r == nil {
		return lineChart(title, pctAxis(), usAxis("latency"), nil, nil)
	}
	var ss []series
	for _, name := range []string{"fcall_rtt", "complete_call", "notify", "complete_start_to_return"} {
		if s := r.Latency[name]; s != nil && s.Count > 0 {
			ss = append(ss, series{name: name, pts: curve(s)})
		}
	}
	var refs []refLine
	if lr := r.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 {
		refs = append(refs, refLine{lr.P50, "loaded FCALL p50 " + fmtUS(lr.P50)})
	}
	return lineChart(fmt.Sprintf("Complete → WaitResult latency, open loop at %s jobs/s", fmtRate(r.OfferedRate)), pctAxis(), usAxis("latency"), ss, refs)
}
