package bench

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/loadgen"
)

// asynq's keys for its default queue: the harness reads them after a run to
// check that every job left the queue and was counted as processed (asynq
// keeps its key layout in an internal package).
const (
	asynqPendingKey   = "asynq:{default}:pending"
	asynqActiveKey    = "asynq:{default}:active"
	asynqProcessedKey = "asynq:{default}:processed"
)

// asynqVersion is the asynq module this binary was built with.
func asynqVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/hibiken/asynq" {
				return d.Version
			}
		}
	}
	return "v0.26.0"
}

// runAsynq measures asynq in this process on the emptied server:
// Config.Workers asynq servers (each its own connection pool, its own
// dequeue loop) of Config.Concurrency handlers each, and one asynq client
// submitting no-op tasks, in open loop at pr.rate or closed loop with
// pr.inFlight outstanding. The handler counts each task and times its
// start from the arrival's intended time; asynq marks the task done when
// the handler returns. checkInterval is asynq's TaskCheckInterval (0: its
// default, 1s).
func (r *Runner) runAsynq(ctx context.Context, pr peerRun) (*Result, error) {
	cfg := r.cfg
	cfg.Duration, cfg.Warmup = pr.window, pr.warmup
	if err := r.t.empty(ctx); err != nil {
		return nil, err
	}
	addr := r.t.Addrs[0]
	track := newTracker()
	// The servers start (connect, register) until t0, when the producer
	// starts; the window follows the warm-up.
	t0 := time.Now().Add(200 * time.Millisecond)
	win := Window{From: t0.Add(cfg.Warmup)}
	win.To = win.From.Add(cfg.Duration)
	lat := map[string]*Latency{}
	for _, name := range []string{"handler_start", "send_lag", "submit"} {
		lat[name] = NewLatency(cfg.Workers, win)
	}
	var windowOps, windowDone atomic.Int64
	var closed *loadgen.ClosedLoop
	if !pr.open {
		closed = &loadgen.ClosedLoop{InFlight: pr.inFlight, Duration: cfg.Warmup + cfg.Duration}
	}

	servers := make([]*asynq.Server, 0, cfg.Workers)
	shutdown := func() {
		var wg sync.WaitGroup
		for _, s := range servers {
			wg.Go(s.Shutdown)
		}
		wg.Wait()
	}
	defer func() { shutdown(); servers = nil }()
	for i := range cfg.Workers {
		srv := asynq.NewServer(asynq.RedisClientOpt{Addr: addr}, asynq.Config{
			Concurrency: cfg.Concurrency, TaskCheckInterval: pr.checkInterval,
			LogLevel: asynq.ErrorLevel, ShutdownTimeout: 5 * time.Second,
		})
		h := asynq.HandlerFunc(func(_ context.Context, t *asynq.Task) error {
			start := time.Now()
			seq, intended, ok := decodePayload(t.Payload())
			if !ok {
				return fmt.Errorf("bench: foreign payload")
			}
			lat["handler_start"].Shard(i).Record(intended, start.Sub(intended))
			track.complete(seq)
			if win.Contains(start) {
				windowDone.Add(1)
			}
			if closed != nil {
				closed.Done()
			}
			return nil
		})
		if err := srv.Start(h); err != nil {
			return nil, fmt.Errorf("asynq server: %w", err)
		}
		servers = append(servers, srv)
	}
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: addr})
	defer client.Close()
	submit := timedSubmit(win, pr.open, &windowOps, lat, track, func(ctx context.Context, a loadgen.Arrival) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask("noop", encodePayload(a.Seq, a.Intended, cfg.PayloadBytes)))
		return err
	})
	if !sleepUntil(ctx, t0) {
		return nil, ctx.Err()
	}
	pdone := r.startProducer(ctx, pr.open, pr.rate, closed, cfg.Warmup+cfg.Duration, submit)
	m, err := r.measure(ctx, win, func() string {
		return fmt.Sprintf("%s %s  completed %d", ScenarioPeers, pr.variant, track.completed.Load())
	})
	if err != nil {
		return nil, err
	}
	po := <-pdone
	if po.err != nil {
		return nil, po.err
	}
	settled := track.waitSettled(cfg.Drain)
	shutdown()
	servers = nil

	// What the server holds after the servers stopped: nothing pending or
	// active, and every submitted task counted as processed.
	res := newPeerResult(pr, cfg, win, lat)
	raw := r.t.raw
	pending, err1 := raw.Do(ctx, raw.B().Llen().Key(asynqPendingKey).Build()).AsInt64()
	active, err2 := raw.Do(ctx, raw.B().Llen().Key(asynqActiveKey).Build()).AsInt64()
	processed, err3 := raw.Do(ctx, raw.B().Get().Key(asynqProcessedKey).Build()).AsInt64()
	if valkey.IsValkeyNil(err3) {
		processed, err3 = 0, nil
	}
	for _, e := range []error{err1, err2, err3} {
		if e != nil {
			return nil, fmt.Errorf("asynq queue check: %w", e)
		}
	}
	lost, dups := track.outcome()
	res.finishPeer(peerCounts{submitted: track.submitted.Load(), completed: track.completed.Load(), lost: lost, dups: dups,
		failed: int64(po.st.Failed), windowDone: windowDone.Load(), windowOps: windowOps.Load(), settled: settled}, pr, m, cfg.Drain)
	res.Extra["server_processed"] = float64(processed)
	left := pending + active + max(0, track.submitted.Load()-processed)
	if left > 0 {
		res.Extra["unclaimed"] = float64(left)
		res.Note = joinNote(res.Note, fmt.Sprintf("asynq left %d pending, %d active; %d processed of %d submitted",
			pending, active, processed, track.submitted.Load()))
	}
	return res, nil
}
