package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/loadgen"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// stream-append defaults.
const (
	// StreamRateDefault is stream-append's open-loop rate (frames per
	// second) when Config.Rate is 0: a fixed rate, as signal-resume's, so
	// the latency part's per-frame counters compare between runs and
	// profiles (a share of the measured throughput would batch frames
	// differently on every machine); about a few LLM token streams.
	StreamRateDefault = 1000
	// streamSlice is the length of one measured slice of the throughput
	// part: short, so the SDK and raw slices alternate faster than this
	// machine's slow spells come and go (as renew-throughput's), yet
	// thousands of frames long.
	streamSlice = 200 * time.Millisecond
	// streamRawBatch is how many XADDs one raw round pipelines: the frames
	// one ff_append carries when a handler emits flat out (the SDK's
	// batches fill up to sdk.MaxFramesPerAppend while one is in flight).
	streamRawBatch = sdk.MaxFramesPerAppend
	// streamRawMaxLen is the raw XADDs' MAXLEN ~: what ff_append trims a
	// durable stream to by default.
	streamRawMaxLen = sdk.StreamMaxLenDefault
	// streamFrameType is the harness's frame type.
	streamFrameType = "token"
	// Execution kinds of the scenario's two parts.
	streamKindSlice = "stream-slice"
	streamKindTail  = "stream-tail"
)

// streamRate is the config's rate, or StreamRateDefault.
func (c *Config) streamRate() float64 {
	if c.Rate > 0 {
		return c.Rate
	}
	return StreamRateDefault
}

// attemptStreamKey is the key valkeybackend keeps attempt i's frames of
// execution id under (valkeybackend/streams.go): the harness reads its
// XINFO to count what reached the server.
func attemptStreamKey(id sdk.ExecutionID, i sdk.AttemptIndex) string {
	return "ff:e:" + string(id) + ":stream:" + strconv.FormatUint(uint64(i), 10)
}

// appendObs collects a part's AppendFrames calls (loadgen.Hooks.OnAppend).
type appendObs struct {
	lat                  *Latency // "append_round": one AppendFrames call
	calls, frames, fails atomic.Int64
}

func (o *appendObs) record(i int, start time.Time, took time.Duration, frames int, err error) {
	if err != nil {
		o.fails.Add(1)
		return
	}
	o.calls.Add(1)
	o.frames.Add(int64(frames))
	o.lat.Shard(i).Record(start, took)
}

// sdkSlice is one SDK slice of the throughput part: one execution per
// stream, each handler emitting flat out from start to deadline.
type sdkSlice struct {
	idx      uint64
	size     int
	ready    chan struct{} // a send per handler holding its lease
	start    chan struct{} // closed when the slice starts (deadline set before)
	deadline time.Time
	done     chan sliceStream // a send per handler once flushed
	release  chan struct{}    // closed when the counters are read: handlers complete
}

// sliceStream is what one handler of an SDK slice did.
type sliceStream struct {
	id      sdk.ExecutionID
	attempt sdk.AttemptIndex
	frames  int64
	end     time.Time // Flush returned
	err     error
}

// emit is a slice handler: frames of size bytes (the frame's sequence in
// the stream first), Emit after Emit until the deadline, then Flush.
func (s *sdkSlice) emit(ctx context.Context, t *sdk.Task) error {
	s.ready <- struct{}{}
	select {
	case <-s.start:
	case <-ctx.Done():
		return ctx.Err()
	}
	out := sliceStream{id: t.ID, attempt: t.AttemptIndex}
	var err error
	for time.Now().Before(s.deadline) {
		if err = t.Emit(ctx, sdk.Frame{Type: streamFrameType, Payload: encodePayload(uint64(out.frames), time.Time{}, s.size)}); err != nil {
			break
		}
		out.frames++
	}
	if err == nil {
		err = t.Flush(ctx)
	}
	out.end, out.err = time.Now(), err
	s.done <- out
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

// tailRun is the latency part: one handler emits a frame at each intended
// time of the schedule from t0 to end, a tailer times each frame's
// arrival.
type tailRun struct {
	t0, end  time.Time
	sched    loadgen.Schedule
	size     int
	win      Window
	emitLag  *Latency
	emitted  atomic.Int64 // frames Emit accepted
	inWindow atomic.Int64 // of which intended in the window
	badIndex atomic.Int64 // handlers that ran another attempt than the tailed one (0)
}

func (tr *tailRun) emit(ctx context.Context, t *sdk.Task) error {
	if t.AttemptIndex != 0 {
		tr.badIndex.Add(1)
		return fmt.Errorf("bench: tail execution on attempt %d, the tailer follows 0", t.AttemptIndex)
	}
	intended := tr.t0
	for seq := uint64(0); intended.Before(tr.end); seq++ {
		if !loadgen.SleepUntil(ctx, intended) {
			return ctx.Err()
		}
		sent := time.Now()
		tr.emitLag.Shard(0).Record(intended, sent.Sub(intended))
		if err := t.Emit(ctx, sdk.Frame{Type: streamFrameType, Payload: stampSent(encodePayload(seq, intended, tr.size), sent)}); err != nil {
			return err
		}
		tr.emitted.Add(1)
		if tr.win.Contains(intended) {
			tr.inWindow.Add(1)
		}
		intended = intended.Add(tr.sched.Gap(intended.Sub(tr.t0)))
	}
	return t.Flush(ctx)
}

// stampSent writes the time the handler called Emit after the payload
// header (when the payload has room: PayloadBytes of 24 or more), so the
// tailer times the append itself, as the load probe times its FCALL from
// its send, apart from the handler's own lag behind the schedule.
func stampSent(b []byte, sent time.Time) []byte {
	if len(b) >= payloadHeader+8 {
		binary.BigEndian.PutUint64(b[payloadHeader:], uint64(sent.UnixNano()))
	}
	return b
}

// sentOf is the time stampSent wrote; zero when there is none.
func sentOf(b []byte) time.Time {
	if len(b) < payloadHeader+8 {
		return time.Time{}
	}
	if ns := binary.BigEndian.Uint64(b[payloadHeader:]); ns != 0 {
		return time.Unix(0, int64(ns))
	}
	return time.Time{}
}

// sliceExecPayload is an SDK slice execution's payload: its sequence
// number (the tracker's) and the slice it belongs to.
func sliceExecPayload(seq, slice uint64) []byte {
	b := encodePayload(seq, time.Time{}, payloadHeader+8)
	binary.BigEndian.PutUint64(b[payloadHeader:], slice)
	return b
}

// sliceOf is the slice of a sliceExecPayload; 0 (no slice) for another.
func sliceOf(b []byte) uint64 {
	if len(b) != payloadHeader+8 {
		return 0
	}
	return binary.BigEndian.Uint64(b[payloadHeader:])
}

// errStranded stops the throughput part when a slice's executions are not
// all claimed (the result says where they sit).
var errStranded = errors.New("bench: a slice's executions were not claimed")

// streamTotals sums one side's slices.
type streamTotals struct {
	frames int64
	took   time.Duration
	server serverDelta
	malloc uint64
	cpu    time.Duration // this process's CPU time
}

func (t *streamTotals) add(frames int64, took time.Duration, m measured, cpu time.Duration) {
	t.frames += frames
	t.took += took
	t.server.add(m.server)
	t.malloc += m.mallocs
	t.cpu += cpu
}

func (t *streamTotals) result(variant string, p, streams int) *Result {
	res := &Result{Scenario: ScenarioStreamAppend, Variant: variant, Partitions: p, Workers: streams,
		DurationS: round3(t.took.Seconds()), Unit: "frames", Ops: t.frames, Latency: map[string]*Summary{},
		Extra: map[string]float64{"streams": float64(streams)}}
	if t.took > 0 {
		res.Throughput = round3(float64(t.frames) / t.took.Seconds())
	}
	res.efficiency(t.server, t.malloc, t.frames)
	if t.frames > 0 {
		n := float64(t.frames)
		res.Extra["client_cpu_us_per_frame"] = round3(float64(t.cpu.Microseconds()) / n)
		// Server time in the commands (commandstats usec): an FCALL's
		// includes the XADDs its function ran, which count as xadd too.
		res.Extra["fcall_us_per_frame"] = round3(float64(t.server.usec["fcall"]) / n)
		res.Extra["xadd_us_per_frame"] = round3(float64(t.server.usec["xadd"]) / n)
		if c := t.server.calls["xadd"]; c > 0 {
			res.Extra["xadd_us_per_call"] = round3(float64(t.server.usec["xadd"]) / float64(c))
		}
		if f := t.server.calls["fcall"]; f > 0 {
			res.Extra["frames_per_fcall"] = round3(n / float64(f))
		}
	}
	return res
}

// runStreamAppend measures attempt streams' append path, in two parts on
// one deployment and one fleet of cfg.Workers workers (MaxConcurrency 1:
// one stream per worker).
//
// Throughput against the raw ceiling: in SDK slices, one execution per
// worker; each handler calls Task.Emit in a tight loop (frames of
// PayloadBytes) for streamSlice, then Flush; the slice is timed from its
// start to the last Flush's return, and the server's counters are read
// before the handlers complete. In raw slices, as many goroutines send the
// same frames (same sizes, one fresh stream key each, as each SDK slice's
// executions have) as XADD key MAXLEN ~ 10000 * t <type> p <payload>,
// streamRawBatch per DoMulti through valkey-go, flat out for streamSlice.
// The two alternate, ABBA, max(Duration/streamSlice, 4) pairs after one
// unmeasured pair; the ratio is total SDK frames/s over raw frames/s. Every
// stream's XINFO entries-added must equal the frames its side counted.
//
// Latency: one execution whose handler emits a frame at each intended time
// of an open-loop schedule (cfg.Arrivals at streamRate) for Warmup +
// Duration while a tailer on its own client (sdk.Client.Tail) follows the
// attempt's stream; each frame's latency runs from its intended time to
// the tailer's receipt, beside the load probe's FCALL round trip in the
// same window. The tailer must see every frame once, in order.
func (r *Runner) runStreamAppend(ctx context.Context) ([]*Result, error) {
	cfg := r.cfg
	streams := cfg.Workers
	bes, closeAll, err := r.t.DeployConnected(ctx, cfg.Partitions, 2)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	be, prod, tailBE := bes[0], bes[1], bes[2]

	sliceTrack, tailTrack := newTracker(), newTracker()
	var execSeq atomic.Uint64
	var cur atomic.Pointer[sdkSlice]
	var tail atomic.Pointer[tailRun]
	var obs atomic.Pointer[appendObs]
	var foreign atomic.Int64

	fctx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	fleet, err := loadgen.StartFleet(fctx, loadgen.FleetConfig{
		Backend: be, Workers: streams, DistinctWorkerIDs: cfg.DistinctWorkerIDs,
		Worker: sdk.WorkerConfig{MaxConcurrency: 1, ClaimMode: r.mode(), Lanes: []sdk.LaneID{benchLane},
			ShutdownGrace: 2 * time.Second, DisableClaimOffers: cfg.NoHandoff},
		Hooks: func(i int) loadgen.Hooks {
			h := r.hooks(be, nil, i)
			h.OnAppend = func(start time.Time, took time.Duration, frames int, err error) {
				if o := obs.Load(); o != nil {
					o.record(i, start, took, frames, err)
				}
			}
			return h
		},
		Handler: func(i int) sdk.Handler {
			return sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
				seq, _, ok := decodePayload(t.Payload)
				if !ok {
					foreign.Add(1)
					return fmt.Errorf("bench: foreign payload")
				}
				track := sliceTrack
				var err error
				switch s, tr := cur.Load(), tail.Load(); {
				case t.Kind == streamKindSlice && s != nil && sliceOf(t.Payload) == s.idx:
					err = s.emit(ctx, t)
				case t.Kind == streamKindTail && tr != nil:
					track = tailTrack
					err = tr.emit(ctx, t)
				default:
					foreign.Add(1)
					return fmt.Errorf("bench: execution %s of kind %q (seq %d) belongs to no part running", t.ID, t.Kind, seq)
				}
				if err != nil {
					return err
				}
				if err := t.Complete(ctx, nil); err != nil {
					return err
				}
				track.complete(seq)
				return nil
			})
		},
	})
	if err != nil {
		return nil, err
	}
	client := sdk.NewClient(prod)

	// --- Throughput: SDK and raw slices, ABBA. ---
	var countMismatches, appendErrs, rawErrs atomic.Int64
	var faults firstFault // the first failure, for the note
	fail := faults.add
	// checkStream compares a stream's XINFO with what its side counted:
	// every frame added (entries-added) and the last one the last counted.
	checkStream := func(side, key string, frames int64) error {
		m, err := r.t.raw.Do(ctx, r.t.raw.B().XinfoStream().Key(key).Build()).AsMap()
		if err != nil {
			if frames == 0 && valkey.IsValkeyNil(err) {
				return nil
			}
			return fmt.Errorf("XINFO STREAM %s: %w", key, err)
		}
		am, lm := m["entries-added"], m["last-entry"]
		added, _ := am.AsInt64()
		var last uint64
		if frames > 0 {
			if e, err := lm.AsXRangeEntry(); err == nil {
				last, _, _ = decodePayload([]byte(e.FieldValues["p"]))
			}
		}
		if added != frames || (frames > 0 && last != uint64(frames-1)) {
			fail(&countMismatches, "%s stream %s: %d entries added (last frame %d), %d frames counted", side, key, added, last, frames)
		}
		return nil
	}

	var sdkT, rawT streamTotals
	var unclaimed int
	var strandDiag string
	sdkObs := &appendObs{lat: NewLatency(streams, Window{})}
	rawRound := NewLatency(streams, Window{})
	var slice uint64 // slices run (both sides), for keys and payloads
	runSDK := func(d time.Duration, measure bool) (float64, error) {
		slice++
		s := &sdkSlice{idx: slice, size: cfg.PayloadBytes, ready: make(chan struct{}, streams), start: make(chan struct{}),
			done: make(chan sliceStream, streams), release: make(chan struct{})}
		cur.Store(s)
		var releaseOnce sync.Once
		release := func() { releaseOnce.Do(func() { close(s.release) }) }
		defer release() // on every return: no handler stays held
		args := make([]sdk.CreateExecutionArgs, streams)
		seqs := make([]uint64, streams)
		for i := range args {
			seqs[i] = execSeq.Add(1)
			args[i] = sdk.CreateExecutionArgs{Lane: benchLane, Kind: streamKindSlice, Payload: sliceExecPayload(seqs[i], slice)}
		}
		if _, err := client.SubmitBatch(ctx, args); err != nil {
			return 0, fmt.Errorf("submit slice %d: %w", slice, err)
		}
		for _, q := range seqs {
			sliceTrack.submit(q)
		}
		for got, deadline := 0, time.After(10*time.Second); got < streams; got++ {
			select {
			case <-s.ready:
			case <-deadline:
				// A liveness failure worth a report, not a crash: the
				// handlers that hold theirs end at once, and the run
				// fails with the diagnosis.
				unclaimed = streams - got
				strandDiag = fmt.Sprintf("slice %d: %d of %d executions unclaimed for 10s with free slots (%s)", slice, unclaimed, streams,
					r.strandedDiagnosis(ctx, be, cfg.Partitions))
				s.deadline = time.Now()
				close(s.start)
				return 0, errStranded
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		if measure {
			obs.Store(sdkObs)
			defer obs.Store(nil)
		}
		snap, err := r.startCount(ctx)
		if err != nil {
			return 0, err
		}
		cpu0 := processCPU()
		t0 := time.Now()
		s.deadline = t0.Add(d)
		close(s.start)
		var frames int64
		end := t0
		outs := make([]sliceStream, 0, streams)
		for range streams {
			select {
			case o := <-s.done:
				outs = append(outs, o)
				frames += o.frames
				if o.end.After(end) {
					end = o.end
				}
				if o.err != nil {
					fail(&appendErrs, "slice %d: %s: %v", slice, o.id, o.err)
				}
			case <-time.After(d + 30*time.Second):
				return 0, fmt.Errorf("slice %d: a handler did not flush within 30s of the slice's end", slice)
			}
		}
		cpu := processCPU() - cpu0
		m, err := snap.stop(ctx)
		if err != nil {
			return 0, err
		}
		for _, o := range outs {
			if err := checkStream("sdk", attemptStreamKey(o.id, o.attempt), o.frames); err != nil {
				return 0, err
			}
		}
		// The handlers complete; the next slice starts once they have, so
		// no completion lands in its counters.
		release()
		if !sliceTrack.waitSettled(10 * time.Second) {
			return 0, fmt.Errorf("slice %d: %d of %d executions completed 10s after the slice; %s", slice,
				sliceTrack.completed.Load(), sliceTrack.submitted.Load(), r.strandedDiagnosis(ctx, be, cfg.Partitions))
		}
		took := end.Sub(t0)
		if measure {
			sdkT.add(frames, took, m, cpu)
		}
		return float64(frames) / took.Seconds(), nil
	}
	runRaw := func(d time.Duration, measure bool) (float64, error) {
		slice++
		keys := make([]string, streams)
		for i := range keys {
			keys[i] = fmt.Sprintf("ffbench:xadd:%d:%d", slice, i)
		}
		maxLen := strconv.Itoa(streamRawMaxLen)
		counts := make([]int64, streams)
		ends := make([]time.Time, streams)
		errs := make([]error, streams)
		snap, err := r.startCount(ctx)
		if err != nil {
			return 0, err
		}
		cpu0 := processCPU()
		t0 := time.Now()
		deadline := t0.Add(d)
		var wg sync.WaitGroup
		for i, key := range keys {
			wg.Go(func() {
				c := r.t.raw
				cmds := make(valkey.Commands, 0, streamRawBatch)
				for seq := uint64(0); time.Now().Before(deadline); {
					cmds = cmds[:0]
					for range streamRawBatch {
						cmds = append(cmds, c.B().Xadd().Key(key).Maxlen().Almost().Threshold(maxLen).Id("*").FieldValue().
							FieldValue("t", streamFrameType).FieldValue("p", valkey.BinaryString(encodePayload(seq, time.Time{}, cfg.PayloadBytes))).Build())
						seq++
					}
					st := time.Now()
					resps := c.DoMulti(ctx, cmds...)
					if measure {
						rawRound.Shard(i).Record(st, time.Since(st))
					}
					for _, res := range resps {
						if _, err := res.ToString(); err != nil {
							if errs[i] == nil {
								errs[i] = err
							}
							continue
						}
						counts[i]++
					}
					if errs[i] != nil {
						break
					}
				}
				ends[i] = time.Now()
			})
		}
		wg.Wait()
		cpu := processCPU() - cpu0
		m, err := snap.stop(ctx)
		if err != nil {
			return 0, err
		}
		var frames int64
		end := t0
		for i, key := range keys {
			frames += counts[i]
			if ends[i].After(end) {
				end = ends[i]
			}
			if errs[i] != nil {
				fail(&rawErrs, "raw slice %d: %s: %v", slice, key, errs[i])
			}
			if err := checkStream("raw", key, counts[i]); err != nil {
				return 0, err
			}
		}
		took := end.Sub(t0)
		if measure {
			rawT.add(frames, took, m, cpu)
		}
		return float64(frames) / took.Seconds(), nil
	}
	type side struct {
		name string
		run  func(time.Duration, bool) (float64, error)
	}
	sdkSide, rawSide := side{"sdk", runSDK}, side{"raw", runRaw}
	pairs := max(int(cfg.Duration/streamSlice), 4)
	var ratios []float64
	err = func() error {
		if cfg.Warmup > 0 {
			for _, v := range []side{sdkSide, rawSide} {
				r.prog.Detail(func() string { return fmt.Sprintf("%s: warm-up, %s", ScenarioStreamAppend, v.name) })
				if _, err := v.run(streamSlice, false); err != nil {
					return err
				}
			}
		}
		for i := range pairs {
			rate := map[string]float64{}
			for _, v := range abba(i, sdkSide, rawSide) {
				r.prog.Detail(func() string {
					return fmt.Sprintf("%s: slice %d/%d %s (%s each, %d streams)", ScenarioStreamAppend, i+1, pairs, v.name, streamSlice, streams)
				})
				x, err := v.run(streamSlice, true)
				if err != nil {
					return err
				}
				rate[v.name] = x
			}
			if rate["raw"] > 0 {
				ratios = append(ratios, rate["sdk"]/rate["raw"])
			}
		}
		return nil
	}()
	r.prog.Detail(nil)
	if err != nil && !errors.Is(err, errStranded) {
		return nil, err
	}
	stopFleetNow := func() sdk.WorkerStats {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_ = fleet.Stop(sctx)
		cancel()
		return fleet.Stats()
	}
	// throughputResults are the SDK and raw sides' results.
	throughputResults := func(fs sdk.WorkerStats, settled bool, diag string) (*Result, *Result) {
		sdkRes := sdkT.result("sdk", cfg.Partitions, streams)
		rawRes := rawT.result("raw", cfg.Partitions, streams)
		if s := Summarize(sdkObs.lat.Merge()); s.Count > 0 {
			sdkRes.Latency["append_round"] = s
		}
		if s := Summarize(rawRound.Merge()); s.Count > 0 {
			rawRes.Latency["append_round"] = s
		}
		sdkRes.RawCeiling = rawRes.Throughput
		if rawRes.Throughput > 0 {
			sdkRes.RatioToCeiling = round3(sdkRes.Throughput / rawRes.Throughput)
		}
		for _, x := range []*Result{sdkRes, rawRes} {
			x.Extra["slices"], x.Extra["slice_s"], x.Extra["payload_bytes"] = float64(pairs), streamSlice.Seconds(), float64(cfg.PayloadBytes)
			x.Extra["count_mismatches"] = float64(countMismatches.Load())
		}
		if len(ratios) > 0 {
			sdkRes.Extra["ratio_slice_min"], sdkRes.Extra["ratio_slice_max"] = round3(slices.Min(ratios)), round3(slices.Max(ratios))
		}
		if c := sdkObs.calls.Load(); c > 0 {
			sdkRes.Extra["frames_per_append"] = round3(float64(sdkObs.frames.Load()) / float64(c))
		}
		sdkRes.Extra["append_errors"] = float64(appendErrs.Load() + sdkObs.fails.Load())
		sdkRes.Extra["foreign_executions"] = float64(foreign.Load())
		sdkRes.Extra["claimed"], sdkRes.Extra["handoffs"], sdkRes.Extra["offers"] = float64(fs.Claimed), float64(fs.Handoffs), float64(fs.Offers)
		sdkRes.Extra["idle_wakeups_push"], sdkRes.Extra["idle_wakeups_poll"] = float64(fs.IdleWakeupsPush), float64(fs.IdleWakeupsPoll)
		rawRes.Extra["xadd_errors"] = float64(rawErrs.Load())
		sdkRes.Lost, sdkRes.Duplicated = sliceTrack.outcome()
		sdkRes.Note = fmt.Sprintf("%d streams (one execution per worker and slice; Task.Emit flat out, then Flush) against the same frames as raw XADD MAXLEN ~ %d, %d per DoMulti, "+
			"from as many goroutines; %d slices of %v each, ABBA", streams, streamRawMaxLen, streamRawBatch, pairs, streamSlice)
		if unclaimed > 0 {
			sdkRes.Extra["unclaimed"] = float64(unclaimed)
			sdkRes.Note += "; " + strandDiag + "; the scenario stopped there"
		} else if !settled {
			sdkRes.Note += fmt.Sprintf("; not settled after %v drain: %d of %d slice executions completed; %s", cfg.Drain,
				sliceTrack.completed.Load(), sliceTrack.submitted.Load(), diag)
		}
		if first := faults.first(); first != "" {
			sdkRes.Note += "; first failure: " + first
		}
		return sdkRes, rawRes
	}
	if unclaimed > 0 {
		sdkRes, rawRes := throughputResults(stopFleetNow(), false, "")
		return []*Result{sdkRes, rawRes}, nil
	}
	slicesSettled := sliceTrack.waitSettled(cfg.Drain)

	// --- Latency: one handler emits on a schedule, a tailer follows. ---
	rate := cfg.streamRate()
	t0 := time.Now().Add(200 * time.Millisecond) // the claim and the tailer settle first
	win := Window{From: t0.Add(cfg.Warmup)}
	win.To = win.From.Add(cfg.Duration)
	lat := map[string]*Latency{}
	for _, name := range []string{"append_tail", "append_tail_sched", "emit_lag", "append_round", "fcall_rtt"} {
		lat[name] = NewLatency(1, win)
	}
	var sched loadgen.Schedule = loadgen.Constant{PerSecond: rate}
	if cfg.Arrivals == "poisson" {
		sched = loadgen.NewPoisson(rate, cfg.Seed)
	}
	tr := &tailRun{t0: t0, end: win.To, sched: sched, size: cfg.PayloadBytes, win: win, emitLag: lat["emit_lag"]}
	tail.Store(tr)
	tailObs := &appendObs{lat: NewLatency(streams, win)}
	obs.Store(tailObs)
	tailSeq := execSeq.Add(1)
	res, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: benchLane, Kind: streamKindTail,
		Payload: encodePayload(tailSeq, time.Time{}, payloadHeader)})
	if err != nil {
		return nil, fmt.Errorf("submit the tailed execution: %w", err)
	}
	tailTrack.submit(tailSeq)
	// The tailer: from the stream's start, on its own client.
	var seen, windowSeen, dups, missing, bad atomic.Int64
	var tailErr error
	tailDone := make(chan struct{})
	tctx, stopTail := context.WithTimeout(ctx, time.Until(win.To)+cfg.Drain+5*time.Second)
	defer stopTail()
	go func() {
		defer close(tailDone)
		var next uint64
		for e, err := range sdk.NewClient(tailBE).Tail(tctx, res.ID, 0, "") {
			now := time.Now()
			if err != nil {
				tailErr = err
				return
			}
			seq, intended, ok := decodePayload(e.Payload)
			if !ok || e.Type != streamFrameType || intended.IsZero() {
				bad.Add(1)
				continue
			}
			switch {
			case seq == next:
				next++
			case seq < next:
				dups.Add(1)
				continue
			default:
				missing.Add(int64(seq - next))
				next = seq + 1
			}
			seen.Add(1)
			lat["append_tail_sched"].Shard(0).Record(intended, now.Sub(intended))
			sent := sentOf(e.Payload)
			if sent.IsZero() {
				sent = intended // a payload too short to carry it
			}
			lat["append_tail"].Shard(0).Record(intended, now.Sub(sent))
			if win.Contains(intended) {
				windowSeen.Add(1)
			}
		}
	}()
	stopProbe := loadProbe(ctx, r.t.serial, win, lat["fcall_rtt"])
	m, err := r.measure(ctx, win, func() string {
		return fmt.Sprintf("%s: tail at %.0f frames/s, %d emitted, %d seen", ScenarioStreamAppend, rate, tr.emitted.Load(), seen.Load())
	})
	probed := stopProbe()
	if err != nil {
		return nil, err
	}
	m.server.calls["fcall"] -= probed // the probe's calls are not the frames'
	if m.server.calls["fcall"] <= 0 {
		delete(m.server.calls, "fcall")
	}
	tailSettled := tailTrack.waitSettled(cfg.Drain)
	tailFinished := true
	select {
	case <-tailDone:
	case <-time.After(cfg.Drain + 3*time.Second): // Tail notices the end within about a second
		tailFinished = false
		stopTail()
		<-tailDone
	}
	obs.Store(nil)
	var diag string
	if !slicesSettled || !tailSettled {
		diag = r.strandedDiagnosis(ctx, be, cfg.Partitions)
	}
	fs := stopFleetNow()

	// --- Results. ---
	sdkRes, rawRes := throughputResults(fs, slicesSettled, diag)

	tailRes := &Result{Scenario: ScenarioStreamAppend, Variant: "tail", Partitions: cfg.Partitions, Workers: streams,
		DurationS: win.Seconds(), Unit: "frames", OfferedRate: round3(rate), Latency: map[string]*Summary{}}
	summarizeInto(tailRes.Latency, lat)
	if s := Summarize(tailObs.lat.Merge()); s.Count > 0 {
		tailRes.Latency["append_round"] = s
	}
	tailRes.AchievedRate = round3(float64(windowSeen.Load()) / win.Seconds())
	tailRes.Throughput = tailRes.AchievedRate
	tailRes.Ops = tr.inWindow.Load()
	tailRes.efficiency(m.server, m.mallocs, tailRes.Ops)
	tailRes.Lost, tailRes.Duplicated = tailTrack.outcome()
	emitted := tr.emitted.Load()
	if n := emitted - seen.Load() - missing.Load(); n > 0 {
		missing.Add(n) // emitted after the last frame the tailer saw
	}
	tailRes.Extra = map[string]float64{
		"frames_emitted": float64(emitted), "frames_seen": float64(seen.Load()), "frames_duplicated": float64(dups.Load()),
		"frames_missing": float64(missing.Load()), "frames_foreign": float64(bad.Load()), "probe_fcalls": float64(probed),
		"attempt_mismatches": float64(tr.badIndex.Load()), "payload_bytes": float64(cfg.PayloadBytes),
		"handler_errors": float64(fs.HandlerErrors), "lost_leases": float64(fs.LostLeases),
	}
	if !tailFinished {
		tailRes.Extra["tail_unfinished"] = 1
	}
	if tailErr != nil {
		tailRes.Extra["tail_errors"] = 1
	}
	if c := tailObs.calls.Load(); c > 0 {
		tailRes.Extra["frames_per_append"] = round3(float64(tailObs.frames.Load()) / float64(c))
	}
	at, lr := tailRes.Latency["append_tail"], tailRes.Latency["fcall_rtt"]
	if at != nil && lr != nil && lr.P50 > 0 {
		tailRes.Extra["tail_p50_over_loaded_rtt"] = round3(at.P50 / lr.P50)
	}
	tailRes.Note = fmt.Sprintf("one handler emits a frame at each intended time (%s arrivals at %.0f/s), a tailer (Client.Tail, its own client) follows the stream; "+
		"append_tail runs from the handler's Emit call to the tailer's receipt (append_tail_sched from the frame's intended time, so it adds emit_lag, the handler's lag behind the schedule); per-frame counts include the tailer's reads and leave out the load probe's %d ff_version calls",
		cfg.Arrivals, rate, probed)
	if tailErr != nil {
		tailRes.Note += "; the tailer failed: " + tailErr.Error()
	}
	if !tailFinished {
		tailRes.Note += fmt.Sprintf("; the tail did not end within %v of the window (the stream did not close?)", cfg.Drain+3*time.Second)
	}
	if !tailSettled {
		tailRes.Note += fmt.Sprintf("; the tailed execution did not complete within %v; %s", cfg.Drain, diag)
	}
	return []*Result{sdkRes, rawRes, tailRes}, nil
}

// streamFailure says why a stream-append result breaks its checks (every
// frame counted on the server, every emitted frame tailed once and in
// order); "" when they hold or the result is another scenario's.
func streamFailure(res *Result) string {
	if res.Scenario != ScenarioStreamAppend {
		return ""
	}
	e := res.Extra
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	switch res.Variant {
	case "sdk", "raw":
		if res.Ops == 0 {
			add("no frames appended")
		}
		if n := e["count_mismatches"]; n > 0 {
			add("%.0f streams whose entries on the server differ from the frames counted", n)
		}
		if n := e["append_errors"] + e["xadd_errors"]; n > 0 {
			add("%.0f failed appends", n)
		}
		if n := e["foreign_executions"]; n > 0 {
			add("%.0f executions ran outside their slice", n)
		}
	case "tail":
		if e["frames_emitted"] == 0 {
			add("no frames emitted")
		}
		if e["frames_seen"] != e["frames_emitted"] || e["frames_duplicated"] > 0 || e["frames_missing"] > 0 || e["frames_foreign"] > 0 {
			add("%.0f frames emitted, %.0f tailed in order, %.0f duplicated, %.0f missing or out of order, %.0f foreign",
				e["frames_emitted"], e["frames_seen"], e["frames_duplicated"], e["frames_missing"], e["frames_foreign"])
		}
		if e["tail_errors"] > 0 || e["tail_unfinished"] > 0 || e["attempt_mismatches"] > 0 {
			add("the tail failed or did not end")
		}
	}
	if len(probs) == 0 {
		return ""
	}
	return fmt.Sprintf("streams: %s (%s)", strings.Join(probs, "; "), res.Note)
}
