// Command faultworker is a minimal worker process for the scanner's fault
// tests: it claims with the backend directly (window scan, then grant and
// claim in one round trip), renews every lease from one renewer at TTL/3,
// "works" by sleeping, completes, and records each step in Valkey so a test
// can tell what happened even after the process was SIGKILLed:
//
//	RPUSH fault:claims      "<id> <attempt_id> <epoch> <instance> <attempt_type>"
//	RPUSH fault:intent      "<id> <attempt_id> <epoch> <instance>"  before Complete
//	SADD  fault:done        <id>                                    } after Complete returned nil,
//	RPUSH fault:completions "<id> <attempt_id> <epoch> <instance>"  } in one MULTI/EXEC
//	RPUSH fault:rejected    "<id> <attempt_id> <code> <instance>"   Complete failed
//	RPUSH fault:lost        "<id> <attempt_id> <code> <instance>"   renewal failed; task dropped
//
// It prints "ready" on stdout once connected. With --sdk it runs an
// sdk.Worker instead (claim offers and hand-offs included), records claims
// and completions the same way, and prints "ready" once its slots are
// offered. With --sdk --suspend each task first waits for a signal: it
// creates a pending waitpoint, records its token, suspends on it, and
// completes once resumed (a task whose execution already had its signal
// completes at once), recording the signal that resumed it; each run of
// the task works (sleeps) first:
//
//	RPUSH fault:tokens      "<id> <token>"                          before Suspend
//	RPUSH fault:resumedby   "<id> <signal_id>"                      with the completion's MULTI
//
// With --sdk --starts-dir DIR (flow members) each run of the handler first
// appends a line to DIR/starts-<instance>.log, one write(2) on an O_APPEND
// file (so a SIGKILL after it returns cannot lose it):
//
//	"<id> <unix_nanoseconds> <attempt_id> <attempt_type> <instance>"
//
// then reads its upstreams' states and records how many had completed,
// and only then records its claim, works and completes as above; "ready"
// comes at once:
//
//	RPUSH fault:upstreams   "<id> <attempt_id> <completed>/<n> <instance>"
//
// (--upstreams=false skips that read, for work that is no flow member.)
// With --starts-dir and --ends each run of the handler also appends its end
// to DIR/ends-<instance>.log the same way, as the last thing it does before
// it returns (after its Complete, whatever came of it):
//
//	"<id> <unix_nanoseconds> <attempt_id> <outcome> <instance>"
//
// where outcome is "completed" (its Complete returned nil) or
// "error:<code>" ("error:other" for an error with no code). A handler the
// process's SIGKILL cut short has a start and no end.
//
// With --sdk --payload-work a task whose payload is "work=<duration>"
// works that long instead of --work-min..--work-max.
//
// With --master-set NAME it connects through the Sentinel(s) at --addr to
// the primary of master set NAME, and follows its failovers.
//
// With --engine it runs no worker: it runs the standard scanners
// (scanner.Start) with the --scan-interval, --flow-grace and
// --ownership-ttl given, prints "ready" once it owns every partition, and
// scans until it is killed (or stops cleanly on SIGTERM).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

type task struct {
	h          sdk.Handle
	cancel     context.CancelFunc
	completing atomic.Bool // Complete is in flight: a failed renewal is expected
}

type worker struct {
	b        *valkeybackend.Backend
	instance string
	lane     sdk.LaneID
	ttl      time.Duration
	workMin  time.Duration
	workMax  time.Duration

	suspend bool

	startsMu  sync.Mutex
	starts    *os.File // --starts-dir: this process's handler-start log; nil without
	ends      *os.File // --starts-dir --ends: its handler-end log; nil without
	upstreams bool     // --upstreams: a started handler reads its upstreams' states

	payloadWork bool // --payload-work: a payload "work=<duration>" sets the task's work time

	mu    sync.Mutex
	tasks map[sdk.ExecutionID]*task
	wg    sync.WaitGroup
}

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "comma-separated Valkey addresses")
	lane := flag.String("lane", "fault", "lane to claim from")
	instance := flag.String("instance", "fw-"+strconv.Itoa(os.Getpid()), "worker instance id")
	ttl := flag.Duration("lease-ttl", time.Second, "lease TTL")
	workMin := flag.Duration("work-min", 50*time.Millisecond, "shortest work time")
	workMax := flag.Duration("work-max", 50*time.Millisecond, "longest work time")
	conc := flag.Int("concurrency", 1, "tasks at once")
	poll := flag.Duration("poll", 20*time.Millisecond, "pause after an empty scan")
	useSDK := flag.Bool("sdk", false, "run an sdk.Worker (claim offers, hand-offs) instead of the minimal claim loop;\n"+
		"\"ready\" comes once its free slots are offered")
	handoffTTL := flag.Duration("handoff-lease-ttl", 0, "with --sdk: WorkerConfig.HandoffLeaseTTL (0: its default)")
	suspend := flag.Bool("suspend", false, "with --sdk: each task suspends until a signal before it completes")
	startsDir := flag.String("starts-dir", "", "with --sdk: append each handler start to DIR/starts-<instance>.log first")
	ends := flag.Bool("ends", false, "with --starts-dir: append each handler end to DIR/ends-<instance>.log last")
	upstreams := flag.Bool("upstreams", true, "with --starts-dir: each started handler reads its upstreams' states (flow members)")
	payloadWork := flag.Bool("payload-work", false, "with --sdk: a task whose payload is \"work=<duration>\" works that long\n"+
		"(instead of --work-min..--work-max; not with --suspend)")
	engine := flag.Bool("engine", false, "run the standard scanners (an engine process) instead of a worker")
	scanEvery := flag.Duration("scan-interval", 100*time.Millisecond, "with --engine: every scanner's interval")
	flowGrace := flag.Duration("flow-grace", 500*time.Millisecond, "with --engine: scanner.Config.FlowGrace")
	ownTTL := flag.Duration("ownership-ttl", time.Second, "with --engine: scanner.Config.OwnershipTTL")
	masterSet := flag.String("master-set", "", "connect through the Sentinel(s) at --addr to the primary of this master set")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	opts := valkeybackend.Options{Addrs: strings.Split(*addr, ",")}
	if *masterSet != "" {
		opts.ConfigureClient = func(co *valkey.ClientOption) { co.Sentinel = valkey.SentinelOption{MasterSet: *masterSet} }
	}
	b, err := valkeybackend.Connect(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultworker:", err)
		os.Exit(1)
	}
	defer b.Close()
	if *engine {
		if err := runEngine(ctx, b, *instance, *scanEvery, *flowGrace, *ownTTL); err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "faultworker:", err)
			os.Exit(1)
		}
		return
	}
	w := &worker{b: b, instance: *instance, lane: sdk.LaneID(*lane), ttl: *ttl,
		workMin: *workMin, workMax: max(*workMax, *workMin), tasks: map[sdk.ExecutionID]*task{}, suspend: *suspend,
		upstreams: *upstreams, payloadWork: *payloadWork}
	if *startsDir != "" {
		w.starts = openLog(filepath.Join(*startsDir, "starts-"+*instance+".log"))
		defer w.starts.Close()
		if *ends {
			w.ends = openLog(filepath.Join(*startsDir, "ends-"+*instance+".log"))
			defer w.ends.Close()
		}
	}
	if *useSDK {
		if err := w.runSDK(ctx, *conc, *handoffTTL); err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "faultworker:", err)
			os.Exit(1)
		}
		return
	}
	go w.renewer(ctx)
	fmt.Println("ready")
	parts := make([]int, b.Partitions())
	for i := range parts {
		parts[i] = i
	}
	for ctx.Err() == nil {
		free := *conc - w.inFlight()
		if free <= 0 {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		got := w.claimSome(ctx, parts, free)
		if got == 0 {
			time.Sleep(*poll)
		}
	}
	w.wg.Wait()
}

func (w *worker) inFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.tasks)
}

// claimSome scans every partition in one round trip and claims up to free.
func (w *worker) claimSome(ctx context.Context, parts []int, free int) int {
	heads, err := w.b.ScanEligibleWindow(ctx, w.lane, parts, 4)
	if err != nil {
		return 0
	}
	got := 0
	for _, ids := range heads {
		for _, r := range ids {
			id := r.ID
			if got == free {
				return got
			}
			t, err := w.b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: w.lane,
				WorkerID: "faultworker", WorkerInstanceID: sdk.WorkerInstanceID(w.instance)}, w.ttl)
			if err != nil {
				continue // someone else won it, or it moved on
			}
			got++
			w.record("RPUSH", "fault:claims", fmt.Sprintf("%s %s %d %s %s", id, t.Handle.AttemptID,
				t.Handle.Epoch, w.instance, t.AttemptType))
			w.start(ctx, t.Handle)
		}
	}
	return got
}

func (w *worker) start(ctx context.Context, h sdk.Handle) {
	tctx, cancel := context.WithCancel(ctx)
	t := &task{h: h, cancel: cancel}
	w.mu.Lock()
	w.tasks[h.ExecutionID] = t
	w.mu.Unlock()
	w.wg.Go(func() {
		defer func() {
			cancel()
			w.mu.Lock()
			delete(w.tasks, h.ExecutionID)
			w.mu.Unlock()
		}()
		select {
		case <-tctx.Done():
			return // lease lost or shutting down: never complete
		case <-time.After(w.workTime()):
		}
		t.completing.Store(true)
		line := fmt.Sprintf("%s %s %d %s", h.ExecutionID, h.AttemptID, h.Epoch, w.instance)
		w.record("RPUSH", "fault:intent", line)
		if err := w.b.Complete(context.WithoutCancel(ctx), h, []byte("done by "+w.instance)); err != nil {
			w.record("RPUSH", "fault:rejected", fmt.Sprintf("%s %s %s %s", h.ExecutionID, h.AttemptID, sdk.CodeOf(err), w.instance))
			return
		}
		w.recordDone(string(h.ExecutionID), line)
	})
}

// taskWorkTime is how long an sdk task works: what its payload says with
// --payload-work when it is "work=<duration>", else workTime.
func (w *worker) taskWorkTime(t *sdk.Task) time.Duration {
	if w.payloadWork {
		if s, ok := strings.CutPrefix(string(t.Payload), "work="); ok {
			if d, err := time.ParseDuration(s); err == nil {
				return d
			}
		}
	}
	return w.workTime()
}

// workTime is how long one task works: between workMin and workMax.
func (w *worker) workTime() time.Duration {
	if w.workMax > w.workMin {
		return w.workMin + time.Duration(rand.Int64N(int64(w.workMax-w.workMin)))
	}
	return w.workMin
}

// renewer renews every held lease at TTL/3 in one batch; a lease that fails
// to renew is dropped and its task stopped.
func (w *worker) renewer(ctx context.Context) {
	tick := time.NewTicker(w.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.mu.Lock()
		tasks := make([]*task, 0, len(w.tasks))
		handles := make([]sdk.Handle, 0, len(w.tasks))
		for _, t := range w.tasks {
			tasks = append(tasks, t)
			handles = append(handles, t.h)
		}
		w.mu.Unlock()
		if len(handles) == 0 {
			continue
		}
		res, err := w.b.RenewBatch(ctx, handles)
		if err != nil {
			continue
		}
		for i, r := range res {
			if r.Err != nil && !tasks[i].completing.Load() {
				tasks[i].cancel()
				w.record("RPUSH", "fault:lost", fmt.Sprintf("%s %s %s %s", handles[i].ExecutionID,
					handles[i].AttemptID, sdk.CodeOf(r.Err), w.instance))
			}
		}
	}
}

// recordDone writes fault:done and fault:completions in one MULTI/EXEC, so a
// kill cannot leave one without the other.
func (w *worker) recordDone(id, line string, extra ...valkey.Completed) {
	c := w.b.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmds := append(valkey.Commands{c.B().Multi().Build(),
		c.B().Sadd().Key("fault:done").Member(id).Build(),
		c.B().Rpush().Key("fault:completions").Element(line).Build()}, extra...)
	for _, r := range c.DoMulti(ctx, append(cmds, c.B().Exec().Build())...) {
		if err := r.Error(); err != nil {
			fmt.Fprintln(os.Stderr, "faultworker: record:", err)
		}
	}
}

func (w *worker) record(cmd, key, member string) {
	c := w.b.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if cmd == "SADD" {
		err = c.Do(ctx, c.B().Sadd().Key(key).Member(member).Build()).Error()
	} else {
		err = c.Do(ctx, c.B().Rpush().Key(key).Element(member).Build()).Error()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultworker: record:", err)
	}
}

// runSDK runs an sdk.Worker: each task is recorded in fault:claims, works,
// and is completed by the worker (recorded in fault:done and
// fault:completions).
func (w *worker) runSDK(ctx context.Context, conc int, handoffTTL time.Duration) error {
	sw, err := sdk.NewWorker(w.b, sdk.WorkerConfig{WorkerID: "faultworker", InstanceID: sdk.WorkerInstanceID(w.instance),
		Lanes: []sdk.LaneID{w.lane}, MaxConcurrency: conc, LeaseTTL: w.ttl, HandoffLeaseTTL: handoffTTL})
	if err != nil {
		return err
	}
	go func() {
		// A --suspend or --starts-dir worker joins a backlog: its slots
		// fill at once, so it is ready as soon as it runs.
		for !w.suspend && w.starts == nil && sw.Stats().Offers < uint64(conc) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		fmt.Println("ready")
	}()
	return sw.Run(ctx, sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) (err error) {
		h := t.Handle
		if w.starts != nil {
			w.recordStart(time.Now(), h, t.AttemptType)
			if w.ends != nil {
				defer func() { w.recordEnd(h, err) }()
			}
			if w.upstreams {
				w.checkUpstreams(ctx, t)
			}
		}
		w.record("RPUSH", "fault:claims", fmt.Sprintf("%s %s %d %s %s", h.ExecutionID, h.AttemptID, h.Epoch, w.instance, t.AttemptType))
		if w.suspend {
			return w.suspendThenComplete(ctx, t)
		}
		select {
		case <-time.After(w.taskWorkTime(t)):
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := t.Complete(ctx, nil); err != nil {
			return err
		}
		w.recordDone(string(h.ExecutionID), fmt.Sprintf("%s %s %d %s", h.ExecutionID, h.AttemptID, h.Epoch, w.instance))
		return nil
	}))
}

// suspendThenComplete runs a --suspend task: complete when the execution's
// last suspension was satisfied, else wait for a signal on a pending
// waitpoint whose token is recorded first (a kill between the two leaves a
// token whose signal is buffered for nobody: the reclaimed attempt records
// a new one).
func (w *worker) suspendThenComplete(ctx context.Context, t *sdk.Task) error {
	h := t.Handle
	select {
	case <-time.After(w.workTime()):
	case <-ctx.Done():
		return ctx.Err()
	}
	s, err := t.Signals(ctx)
	if err != nil {
		return err
	}
	if s == nil || s.Open || len(s.Signals) == 0 {
		pw, err := t.CreateWaitpoint(ctx, "go", time.Minute)
		if err != nil {
			return err
		}
		w.record("RPUSH", "fault:tokens", string(h.ExecutionID)+" "+pw.Token)
		out, err := t.Suspend(ctx, sdk.SuspendArgs{Pending: []sdk.WaitpointID{pw.ID}})
		if err != nil || !out.AlreadySatisfied {
			return err
		}
		if s, err = t.Signals(ctx); err != nil {
			return err
		}
	}
	sig := s.Signals[0].ID
	if err := t.Complete(ctx, []byte(sig)); err != nil {
		return err
	}
	c := w.b.Client()
	w.recordDone(string(h.ExecutionID), fmt.Sprintf("%s %s %d %s", h.ExecutionID, h.AttemptID, h.Epoch, w.instance),
		c.B().Rpush().Key("fault:resumedby").Element(string(h.ExecutionID)+" "+sig).Build())
	return nil
}

// recordStart appends a handler start to the --starts-dir log: one write
// on an O_APPEND file, in the kernel once it returns, so it outlives a
// SIGKILL of this process. A start it cannot record ends the process (the
// execution is reclaimed), so no handler works without its start on record.
func (w *worker) recordStart(at time.Time, h sdk.Handle, typ sdk.AttemptType) {
	line := fmt.Sprintf("%s %d %s %s %s\n", h.ExecutionID, at.UnixNano(), h.AttemptID, typ, w.instance)
	w.startsMu.Lock()
	defer w.startsMu.Unlock()
	if _, err := w.starts.WriteString(line); err != nil {
		fmt.Fprintln(os.Stderr, "faultworker: record start:", err)
		os.Exit(1)
	}
}

// recordEnd appends a handler's end to the --ends log, as recordStart
// does its start: the handler returns err right after.
func (w *worker) recordEnd(h sdk.Handle, err error) {
	outcome := "completed"
	if err != nil {
		code := sdk.CodeOf(err)
		if code == "" {
			code = "other"
		}
		outcome = "error:" + code
		fmt.Fprintf(os.Stderr, "faultworker: %s: handler of %s ended: %v\n", w.instance, h.ExecutionID, err)
	}
	w.startsMu.Lock()
	defer w.startsMu.Unlock()
	// Stamped under the lock, right before the write: as late as it can be.
	line := fmt.Sprintf("%s %d %s %s %s\n", h.ExecutionID, time.Now().UnixNano(), h.AttemptID, outcome, w.instance)
	if _, err := w.ends.WriteString(line); err != nil {
		fmt.Fprintln(os.Stderr, "faultworker: record end:", err)
		os.Exit(1)
	}
}

// openLog opens an append-only log file, or ends the process.
func openLog(name string) *os.File {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultworker:", err)
		os.Exit(1)
	}
	return f
}

// checkUpstreams reads the task's upstreams once its start is on record
// and logs how many had completed (all of them, for a member that rightly
// runs) in fault:upstreams: "<id> <attempt_id> <completed>/<upstreams>
// <instance>", or "<id> <attempt_id> error:<code> <instance>" when the
// read failed. The handler goes on either way.
func (w *worker) checkUpstreams(ctx context.Context, t *sdk.Task) {
	ups, err := t.UpstreamResults(ctx)
	detail := "error:" + sdk.CodeOf(err)
	if err == nil {
		done := 0
		for _, u := range ups {
			if u.State == sdk.StateCompleted {
				done++
			}
		}
		detail = fmt.Sprintf("%d/%d", done, len(ups))
	}
	w.record("RPUSH", "fault:upstreams", fmt.Sprintf("%s %s %s %s", t.ID, t.Handle.AttemptID, detail, w.instance))
}

// runEngine runs the standard scanners until ctx ends: every interval is
// every, flows re-checked after grace, partitions owned under ttl.
func runEngine(ctx context.Context, b *valkeybackend.Backend, instance string, every, grace, ttl time.Duration) error {
	cfg := scanner.Config{LeaseExpiryInterval: every, DelayedInterval: every, UnblockInterval: every,
		TimeoutInterval: every, RetentionInterval: time.Minute, FlowInterval: every, FlowGrace: grace,
		OwnershipTTL: ttl, EngineID: instance + "-" + strconv.Itoa(os.Getpid()),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	s, err := scanner.Start(ctx, b, cfg)
	if err != nil {
		return err
	}
	if err := s.WaitOwned(ctx, b.Partitions()); err != nil {
		return err
	}
	fmt.Println("ready")
	<-s.Done()
	return nil
}
