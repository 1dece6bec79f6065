package sdk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ClaimMode selects how a worker claims work.
type ClaimMode uint8

const (
	// ClaimDirect scans partitions, then grants and claims each candidate: the
	// scheduler-bypass path composed of the DirectClaimer calls (or
	// WindowScanner + GrantClaimer when the backend has them).
	ClaimDirect ClaimMode = iota
	// ClaimFused picks, grants and claims up to ClaimBatch executions of a
	// partition in one call; the backend must implement FusedClaimer.
	ClaimFused
)

func (m ClaimMode) String() string {
	switch m {
	case ClaimDirect:
		return "direct"
	case ClaimFused:
		return "fused"
	}
	return "claim_mode(" + strconv.Itoa(int(m)) + ")"
}

// Defaults of WorkerConfig fields left zero.
const (
	MaxConcurrencyDefault = 16
	LeaseTTLDefault       = 30 * time.Second
	// RenewEvery defaults to LeaseTTL / RenewDivisorDefault.
	RenewDivisorDefault = 3
	ScanWindowDefault   = 32
	ClaimBatchDefault   = 32
	// IdlePollDefault is the idle poll of a backend without ReadinessWatcher;
	// IdlePollWatchedDefault the safety poll of one with it (pushes do the work).
	IdlePollDefault        = 250 * time.Millisecond
	IdlePollWatchedDefault = 5 * time.Second
	ShutdownGraceDefault   = 10 * time.Second
	GrantTTLDefault        = 5 * time.Second
	// HandoffLeaseTTL defaults to the lesser of this and LeaseTTL.
	HandoffLeaseTTLDefault = 5 * time.Second
	// RegistrationTTL defaults to LeaseTTL: a crashed worker's registration
	// dies with its leases. Heartbeats go every TTL/3.
	RegistrationTTLDivisor = 3
)

// Internal tuning.
const (
	maxScanLimit       = 16 // candidates read per partition per scan
	claimErrBackoffMin = 10 * time.Millisecond
	claimErrBackoffMax = time.Second      // transport errors back off up to this
	contendBackoffMin  = time.Millisecond // candidates seen, all taken by others
	contendBackoffMax  = 100 * time.Millisecond
	minCallTimeout     = 5 * time.Second
	abortTimeout       = 5 * time.Second // failing tasks at hard shutdown
	handlerExitWait    = time.Second     // after the abort, for handlers to return
	maxReasonBytes     = 4096
	watchRetryEvery    = time.Second
)

// WorkerConfig configures a Worker. Zero fields take the documented default.
type WorkerConfig struct {
	// WorkerID is the logical name of the deployment. Required.
	WorkerID WorkerID
	// InstanceID names this process and must be unique among live workers.
	// Default: "<hostname>-<pid>-<random hex>".
	InstanceID WorkerInstanceID
	// Lanes the worker claims from. At least one.
	Lanes []LaneID
	// Capabilities the worker advertises; executions requiring others are
	// blocked for routing instead of being retried here. Default none.
	Capabilities []string
	// MaxConcurrency bounds tasks running at once. Default 16.
	MaxConcurrency int
	// LeaseTTL is the lease length asked at claim. Default 30s.
	LeaseTTL time.Duration
	// RenewEvery is the renewal period of a held lease; it must be below
	// LeaseTTL. Default LeaseTTL/3.
	RenewEvery time.Duration
	// ClaimMode selects the claim path. Default ClaimDirect.
	ClaimMode ClaimMode
	// ScanWindow is how many partitions one scan round trip covers. Default 32.
	ScanWindow int
	// ClaimBatch caps executions claimed by one fused call (ClaimFused). Free
	// slots cap it too. Default 32.
	ClaimBatch int
	// IdlePoll is how long an idle worker waits before looking again when no
	// push wakes it. Default 5s when the backend implements ReadinessWatcher
	// (pushes wake the worker; the poll is a safety net), 250ms otherwise.
	IdlePoll time.Duration
	// ShutdownGrace is how long shutdown waits for in-flight tasks before it
	// cancels them and fails them with category "worker_shutdown" so they
	// retry elsewhere. Default 10s.
	ShutdownGrace time.Duration
	// DisableClaimOffers stops an idle worker from offering its free slots
	// to a backend with ClaimOfferer. Default false: idle slots are offered,
	// and a new execution is handed to the worker by the create that made
	// it, with no claim call (each offer stands 4×IdlePoll, refreshed
	// every other idle poll).
	DisableClaimOffers bool
	// HandoffLeaseTTL is the first lease of an execution handed to one of
	// this worker's offers; the first renewal (due at the same share of it
	// as RenewEvery is of LeaseTTL) extends it to LeaseTTL. Offers stand
	// while nobody watches them: should the worker die idle, what is handed
	// to its standing offers waits this long for the reclaim scanner, not a
	// whole LeaseTTL. Short tasks never renew, so it costs them nothing.
	// Default the lesser of 5s and LeaseTTL; at most LeaseTTL.
	HandoffLeaseTTL time.Duration
	// GrantTTL is how long a claim grant waits to be consumed. Default 5s.
	GrantTTL time.Duration
	// RegistrationTTL is the lifetime of the worker's registration (backends
	// with WorkerRegistry), extended by a heartbeat every TTL/3. Default
	// LeaseTTL.
	RegistrationTTL time.Duration
	// Logger receives the worker's logs. Default: discard.
	Logger *slog.Logger
	// OnError, when set, is called with errors the worker handles itself
	// (transport errors while claiming or renewing, settle failures). It must
	// not block.
	OnError func(error)
	// Alongside are services Run hosts for the worker's lifetime, such as the
	// scanners of a single-binary deployment (scanner.Alongside). Each runs
	// in its own goroutine with a context that ends after the worker has
	// drained; Run waits for them before it returns. An error is logged and
	// passed to OnError. Default none.
	Alongside []func(ctx context.Context) error
}

// WorkerStats are a worker's counters since it started.
type WorkerStats struct {
	Claimed   uint64 // leases obtained
	Completed uint64 // Complete landed
	Failed    uint64 // Fail landed, terminal
	Retried   uint64 // Fail landed, retry scheduled
	Cancelled uint64 // Cancel landed
	Delayed   uint64 // Delay landed

	HandlerErrors uint64 // handlers that returned an error
	HandlerPanics uint64 // handlers that panicked
	Aborted       uint64 // tasks taken over at hard shutdown

	LostLeases    uint64        // leases found lost (fenced renewal or write, local expiry)
	Renewals      uint64        // successful renewals
	RenewFailures uint64        // renewals that failed without losing the lease
	RenewRounds   uint64        // renewal rounds (one BatchRenewer call each)
	RenewLagAvg   time.Duration // how late renewals went out, on average
	RenewLagMax   time.Duration // … and at worst

	ClaimRounds      uint64 // passes over the lanes
	Scans            uint64 // scan calls (a window, or one partition)
	ReadinessReads   uint64 // ReadyPartitions calls
	ClaimAttempts    uint64 // grant+claim attempts (direct) or fused calls
	ClaimConflicts   uint64 // attempts lost to another worker or a state change
	CapabilityBlocks uint64 // executions blocked for routing
	ClaimErrors      uint64 // claim rounds ended by a transport error
	IdleWakeupsPush  uint64 // idle waits ended by a readiness push or an arrival
	Arrivals         uint64 // arrivals the worker tried to claim straight from the push
	IdleWakeupsPoll  uint64 // idle waits ended by the fallback poll
	Offers           uint64 // claim offers posted (ClaimOfferer)
	Handoffs         uint64 // executions handed to this worker's offers

	InFlight   int // slots in use now: tasks running and claims under way
	Offered    int // slots offered now (open, or taken with the hand-off still coming)
	HeldLeases int // leases the renewer holds now
}

type workerStats struct {
	claimed, completed, failed, retried, cancelled, delayed atomic.Uint64
	handlerErrors, handlerPanics, aborted, lostLeases       atomic.Uint64
	claimRounds, scans, readiness, attempts, conflicts      atomic.Uint64
	blocks, claimErrors, idlePush, idlePoll, arrivals       atomic.Uint64
	offers, handoffs                                        atomic.Uint64
}

// Worker claims executions from its lanes and runs them through a Handler,
// holding and renewing their leases. Build one with NewWorker, start it with
// Run, stop it by cancelling Run's context or with Shutdown.
type Worker struct {
	backend EngineBackend
	cfg     WorkerConfig
	log     *slog.Logger

	grantClaimer  GrantClaimer
	windowScanner WindowScanner
	fused         FusedClaimer
	watcher       ReadinessWatcher
	arrivals      ArrivalWatcher
	leaseEvents   LeaseEventWatcher
	registry      WorkerRegistry
	offerer       ClaimOfferer // nil when disabled, absent or unavailable
	// completeOfferer is the backend's CompleteOfferer once offers work.
	completeOfferer CompleteOfferer
	offers          offerBook

	renewer *renewer
	stats   workerStats

	// A role the backend implements but answers "unavailable" for (e.g.
	// readiness with client-side caching disabled) is dropped at run time.
	idlePollDefaulted bool        // cfg.IdlePoll was left zero
	grantClaimerOff   atomic.Bool // GrantAndClaim answered unavailable

	inFlight  atomic.Int64
	slotFreed chan struct{}

	tasksMu    sync.Mutex
	tasks      map[*Task]struct{}
	runningIDs map[ExecutionID]struct{} // ids of the tasks in tasks
	taskWG     sync.WaitGroup
	runners    *runnerPool

	handler Handler
	baseCtx context.Context // Run's context without its cancellation

	// claim-loop state, owned by the claim loop
	partitions     []int
	laneCursor     int
	partCursor     []int
	watcherDropped bool

	mu       sync.Mutex
	started  bool
	stopCh   chan struct{} // closed by Shutdown: stop claiming, drain
	stopOnce sync.Once
	hardCh   chan struct{} // closed when Shutdown's ctx ends: skip the rest of the grace
	hardOnce sync.Once
	doneCh   chan struct{} // closed when Run returns
}

// NewWorker validates cfg, fills its defaults and detects the backend's
// optional roles. It returns a validation *Error naming the bad field.
func NewWorker(backend EngineBackend, cfg WorkerConfig) (*Worker, error) {
	if backend == nil {
		return nil, configError("backend is nil")
	}
	idleDefaulted := cfg.IdlePoll == 0
	cfg, err := resolveConfig(backend, cfg)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		backend:           backend,
		idlePollDefaulted: idleDefaulted,
		cfg:               cfg,
		log:               cfg.Logger,
		slotFreed:         make(chan struct{}, 1),
		tasks:             make(map[*Task]struct{}),
		runningIDs:        make(map[ExecutionID]struct{}),
		stopCh:            make(chan struct{}),
		hardCh:            make(chan struct{}),
		doneCh:            make(chan struct{}),
		offers: offerBook{open: make(map[string]ClaimOffer), taken: make(map[string]time.Time),
			arrived: make(chan struct{}, 1)},
	}
	w.grantClaimer, _ = backend.(GrantClaimer)
	w.windowScanner, _ = backend.(WindowScanner)
	w.fused, _ = backend.(FusedClaimer)
	w.watcher, _ = backend.(ReadinessWatcher)
	w.arrivals, _ = backend.(ArrivalWatcher)
	w.leaseEvents, _ = backend.(LeaseEventWatcher)
	w.registry, _ = backend.(WorkerRegistry)
	if !cfg.DisableClaimOffers {
		w.offerer, _ = backend.(ClaimOfferer)
	}
	w.renewer = newRenewer(backend, cfg.RenewEvery, cfg.LeaseTTL)
	w.renewer.onError = w.reportError
	w.runners = newRunnerPool(w.runTask)
	return w, nil
}

// leaseLength reports whether d can be a lease's length: whole milliseconds
// (the wire's unit), at least 10ms.
func leaseLength(d time.Duration) bool {
	return d >= 10*time.Millisecond && d%time.Millisecond == 0
}

func configError(format string, args ...any) *Error {
	return &Error{Kind: KindValidation, Code: CodeInvalidInput, Op: "new_worker", Msg: fmt.Sprintf(format, args...)}
}

// resolveConfig validates cfg and fills defaults.
func resolveConfig(backend EngineBackend, cfg WorkerConfig) (WorkerConfig, error) {
	if err := cfg.WorkerID.Validate(); err != nil {
		return cfg, configError("WorkerConfig.WorkerID: %s", err.(*Error).Msg)
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = defaultInstanceID()
	}
	if err := cfg.InstanceID.Validate(); err != nil {
		return cfg, configError("WorkerConfig.InstanceID: %s", err.(*Error).Msg)
	}
	if len(cfg.Lanes) == 0 {
		return cfg, configError("WorkerConfig.Lanes: at least one lane is required")
	}
	seen := make(map[LaneID]bool, len(cfg.Lanes))
	lanes := make([]LaneID, 0, len(cfg.Lanes))
	for _, l := range cfg.Lanes {
		if err := l.Validate(); err != nil {
			return cfg, configError("WorkerConfig.Lanes: %s", err.(*Error).Msg)
		}
		if seen[l] {
			return cfg, configError("WorkerConfig.Lanes: lane %q listed twice", l)
		}
		seen[l] = true
		lanes = append(lanes, l)
	}
	cfg.Lanes = lanes
	caps, err := NormalizeCapabilities(cfg.Capabilities)
	if err != nil {
		return cfg, configError("WorkerConfig.Capabilities: %s", err.(*Error).Msg)
	}
	cfg.Capabilities = caps

	negative := func(name string, v int64) error {
		if v < 0 {
			return configError("WorkerConfig.%s is negative", name)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxConcurrency", int64(cfg.MaxConcurrency)}, {"LeaseTTL", int64(cfg.LeaseTTL)},
		{"RenewEvery", int64(cfg.RenewEvery)}, {"ScanWindow", int64(cfg.ScanWindow)},
		{"ClaimBatch", int64(cfg.ClaimBatch)}, {"IdlePoll", int64(cfg.IdlePoll)},
		{"ShutdownGrace", int64(cfg.ShutdownGrace)}, {"GrantTTL", int64(cfg.GrantTTL)},
		{"RegistrationTTL", int64(cfg.RegistrationTTL)}, {"HandoffLeaseTTL", int64(cfg.HandoffLeaseTTL)},
	} {
		if err := negative(f.name, f.v); err != nil {
			return cfg, err
		}
	}
	if cfg.MaxConcurrency == 0 {
		cfg.MaxConcurrency = MaxConcurrencyDefault
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = LeaseTTLDefault
	}
	if !leaseLength(cfg.LeaseTTL) {
		return cfg, configError("WorkerConfig.LeaseTTL %v: must be a whole number of milliseconds, at least 10ms", cfg.LeaseTTL)
	}
	if cfg.RenewEvery == 0 {
		cfg.RenewEvery = cfg.LeaseTTL / RenewDivisorDefault
	}
	if cfg.RenewEvery >= cfg.LeaseTTL {
		return cfg, configError("WorkerConfig.RenewEvery %v must be below LeaseTTL %v", cfg.RenewEvery, cfg.LeaseTTL)
	}
	switch cfg.ClaimMode {
	case ClaimDirect:
	case ClaimFused:
		if _, ok := backend.(FusedClaimer); !ok {
			return cfg, &Error{Kind: KindUnavailable, Code: CodeUnavailable, Op: "new_worker",
				Msg: "WorkerConfig.ClaimMode is ClaimFused, but the backend does not implement FusedClaimer"}
		}
	default:
		return cfg, configError("WorkerConfig.ClaimMode %d is unknown", cfg.ClaimMode)
	}
	if cfg.HandoffLeaseTTL == 0 {
		cfg.HandoffLeaseTTL = min(HandoffLeaseTTLDefault, cfg.LeaseTTL)
	}
	if !leaseLength(cfg.HandoffLeaseTTL) || cfg.HandoffLeaseTTL > cfg.LeaseTTL {
		return cfg, configError("WorkerConfig.HandoffLeaseTTL %v: must be a whole number of milliseconds, 10ms..LeaseTTL (%v)",
			cfg.HandoffLeaseTTL, cfg.LeaseTTL)
	}
	if cfg.ScanWindow == 0 {
		cfg.ScanWindow = ScanWindowDefault
	}
	if cfg.ClaimBatch == 0 {
		cfg.ClaimBatch = ClaimBatchDefault
	}
	if cfg.IdlePoll == 0 {
		if _, ok := backend.(ReadinessWatcher); ok {
			cfg.IdlePoll = IdlePollWatchedDefault
		} else {
			cfg.IdlePoll = IdlePollDefault
		}
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = ShutdownGraceDefault
	}
	if cfg.GrantTTL == 0 {
		cfg.GrantTTL = GrantTTLDefault
	}
	if cfg.GrantTTL < time.Millisecond {
		return cfg, configError("WorkerConfig.GrantTTL %v: below 1ms", cfg.GrantTTL)
	}
	if cfg.RegistrationTTL == 0 {
		cfg.RegistrationTTL = cfg.LeaseTTL
	}
	if cfg.RegistrationTTL < 3*time.Millisecond {
		return cfg, configError("WorkerConfig.RegistrationTTL %v: below 3ms", cfg.RegistrationTTL)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// defaultInstanceID is "<hostname>-<pid>-<8 random hex>", with bytes a name
// may not hold replaced by '-'.
func defaultInstanceID() WorkerInstanceID {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	b := []byte(host)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || c == ',' || c == '{' || c == '}' {
			b[i] = '-'
		}
	}
	if len(b) > 200 {
		b = b[:200]
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	return WorkerInstanceID(string(b) + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(r[:]))
}

// Config returns the worker's configuration with defaults filled in.
func (w *Worker) Config() WorkerConfig { return w.cfg }

// Stats returns a snapshot of the worker's counters.
func (w *Worker) Stats() WorkerStats {
	s := &w.stats
	r := &w.renewer.stats
	open, taken := w.offers.counts()
	offered := open + taken
	avg, mx := r.lag()
	return WorkerStats{
		Claimed: s.claimed.Load(), Completed: s.completed.Load(), Failed: s.failed.Load(),
		Retried: s.retried.Load(), Cancelled: s.cancelled.Load(), Delayed: s.delayed.Load(),
		HandlerErrors: s.handlerErrors.Load(), HandlerPanics: s.handlerPanics.Load(), Aborted: s.aborted.Load(),
		LostLeases: s.lostLeases.Load(), Renewals: r.renewals.Load(), RenewFailures: r.failures.Load(),
		RenewRounds: r.batches.Load(), RenewLagAvg: avg, RenewLagMax: mx,
		ClaimRounds: s.claimRounds.Load(), Scans: s.scans.Load(), ReadinessReads: s.readiness.Load(),
		ClaimAttempts: s.attempts.Load(), ClaimConflicts: s.conflicts.Load(), CapabilityBlocks: s.blocks.Load(),
		ClaimErrors: s.claimErrors.Load(), IdleWakeupsPush: s.idlePush.Load(), IdleWakeupsPoll: s.idlePoll.Load(),
		Arrivals: s.arrivals.Load(), Offers: s.offers.Load(), Handoffs: s.handoffs.Load(), InFlight: int(w.inFlight.Load()) - offered, Offered: offered, HeldLeases: w.renewer.held(),
	}
}

// Run claims and runs tasks until ctx is cancelled or Shutdown is called,
// then shuts down gracefully: it stops claiming, waits up to ShutdownGrace for
// in-flight tasks, cancels and fails (category "worker_shutdown") those still
// running, stops renewing, deregisters, and returns nil. It returns an error
// at once if the worker cannot start (ErrWorkerInstanceInUse when another
// live worker has the instance id). A Worker runs once.
func (w *Worker) Run(ctx context.Context, h Handler) error {
	if h == nil {
		return configError("Run: nil handler")
	}
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return &Error{Kind: KindState, Code: CodeInvalidInput, Op: "run", Msg: "a Worker runs once"}
	}
	w.started = true
	w.mu.Unlock()
	defer close(w.doneCh)

	n := w.backend.Partitions()
	if n <= 0 {
		return &Error{Kind: KindBug, Code: CodeBug, Op: "run", Msg: "backend reports " + strconv.Itoa(n) + " partitions"}
	}
	w.handler = h
	w.baseCtx = context.WithoutCancel(ctx)
	w.initCursors(n)

	reg := WorkerRegistration{WorkerID: w.cfg.WorkerID, InstanceID: w.cfg.InstanceID,
		Lanes: w.cfg.Lanes, Capabilities: w.cfg.Capabilities, TTL: w.cfg.RegistrationTTL}
	if w.registry != nil {
		if err := w.registry.RegisterWorker(ctx, reg); errors.Is(err, ErrUnavailable) {
			w.log.Warn("worker registry unavailable; running unregistered", "err", err)
			w.registry = nil
		} else if err != nil {
			return err
		}
	}
	w.log.Info("worker started", "worker", w.cfg.WorkerID, "instance", w.cfg.InstanceID,
		"lanes", w.cfg.Lanes, "claim_mode", w.cfg.ClaimMode.String(), "partitions", n,
		"readiness", w.watcher != nil, "batch_renew", w.renewer.batch != nil)

	var bg sync.WaitGroup
	renewCtx, stopRenew := context.WithCancel(w.baseCtx)
	bg.Go(func() { w.renewer.run(renewCtx) })
	if w.leaseEvents != nil {
		if events, err := w.leaseEvents.WatchLeaseEvents(renewCtx); err == nil {
			bg.Go(func() { w.followLeaseEvents(renewCtx, events) })
		} else if !errors.Is(err, ErrUnavailable) {
			w.reportError(err)
		}
	}
	w.startOffers(renewCtx)
	hbCtx, stopHB := context.WithCancel(w.baseCtx)
	if w.registry != nil {
		bg.Go(func() { w.heartbeat(hbCtx, reg) })
	}

	sideCtx, stopSide := context.WithCancel(w.baseCtx)
	for _, run := range w.cfg.Alongside {
		bg.Go(func() {
			if err := run(sideCtx); err != nil && sideCtx.Err() == nil {
				w.log.Error("service alongside the worker failed", "err", err)
				w.reportError(err)
			}
		})
	}

	claimCtx, stopClaim := context.WithCancel(ctx)
	select {
	case <-w.stopCh: // Shutdown came first: do not claim at all
		stopClaim()
	default:
	}
	go func() {
		select {
		case <-w.stopCh:
		case <-claimCtx.Done():
		}
		stopClaim()
	}()
	w.claimLoop(claimCtx)
	stopClaim()
	w.closeOffers()

	w.log.Info("worker stopping", "in_flight", w.inFlight.Load())
	w.drain()
	w.runners.close()

	stopHB()
	stopRenew()
	stopSide()
	bg.Wait()
	if w.registry != nil {
		dctx, cancel := context.WithTimeout(w.baseCtx, minCallTimeout)
		if err := w.registry.DeregisterWorker(dctx, w.cfg.InstanceID); err != nil {
			w.reportError(err)
		}
		cancel()
	}
	w.log.Info("worker stopped")
	return nil
}

// Shutdown stops the worker gracefully (as cancelling Run's context does)
// and waits for Run to return. When ctx ends first, the grace period is cut
// short (in-flight tasks are cancelled and failed at once) and Shutdown
// returns ctx.Err(); Run still returns after that work. Calling Shutdown on a
// worker that never ran makes a later Run return at once.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.stopOnce.Do(func() { close(w.stopCh) })
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if !started {
		return nil
	}
	select {
	case <-w.doneCh:
		return nil
	case <-ctx.Done():
		w.hardOnce.Do(func() { close(w.hardCh) })
		return ctx.Err()
	}
}

// drain waits for in-flight tasks up to the grace period, then takes the
// rest over: cancel their contexts and fail their attempts.
func (w *Worker) drain() {
	idle := make(chan struct{})
	go func() { w.taskWG.Wait(); close(idle) }()
	grace := time.NewTimer(w.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-idle:
		return
	case <-grace.C:
	case <-w.hardCh:
	}

	w.tasksMu.Lock()
	tasks := make([]*Task, 0, len(w.tasks))
	for t := range w.tasks {
		tasks = append(tasks, t)
	}
	w.tasksMu.Unlock()
	w.log.Warn("shutdown grace over; failing in-flight tasks", "tasks", len(tasks))
	ctx, cancel := context.WithTimeout(w.baseCtx, abortTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, t := range tasks {
		if !t.abort() {
			continue
		}
		w.stats.aborted.Add(1)
		wg.Go(func() {
			if _, err := t.Fail(ctx, "worker shutdown: the task did not finish within the grace period", CategoryWorkerShutdown); err != nil {
				w.log.Warn("failing task at shutdown", "execution", t.ID, "err", err)
			}
		})
	}
	wg.Wait()
	// Handlers were cancelled; give them a moment to return. One that ignores
	// its context keeps running, but holds no lease.
	t := time.NewTimer(handlerExitWait)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}

// followLeaseEvents renews at once each lease an event says was taken
// away, so a revoked or cancelled task's context ends now rather than at
// its next renewal (the renewal's fencing error cancels it).
func (w *Worker) followLeaseEvents(ctx context.Context, events <-chan ExecutionID) {
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-events:
			w.renewer.renewNow(id)
		}
	}
}

// heartbeat extends the registration every TTL/3, registering again when
// the registration was lost.
func (w *Worker) heartbeat(ctx context.Context, reg WorkerRegistration) {
	tick := time.NewTicker(max(reg.TTL/RegistrationTTLDivisor, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(ctx, max(reg.TTL, time.Second))
		err := w.registry.HeartbeatWorker(cctx, reg)
		if err != nil && !isTransient(err) && ctx.Err() == nil {
			err = w.registry.RegisterWorker(cctx, reg)
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			w.reportError(err)
		}
	}
}

// dropWatcher stops using readiness tracking the backend turned out not to
// offer: scan every partition, and poll as a backend without it would.
func (w *Worker) dropWatcher(err error) {
	w.log.Warn("readiness tracking unavailable; scanning all partitions", "err", err)
	w.watcher = nil
	w.watcherDropped = true
}

// idlePoll is the idle wait: IdlePoll, or IdlePollDefault once readiness
// tracking was dropped and IdlePoll was left to its default.
func (w *Worker) idlePoll() time.Duration {
	if w.watcherDropped && w.idlePollDefaulted {
		return IdlePollDefault
	}
	return w.cfg.IdlePoll
}

func (w *Worker) reportError(err error) {
	w.log.Warn("worker error", "err", err)
	if w.cfg.OnError != nil {
		w.cfg.OnError(err)
	}
}

// Slots: inFlight counts reserved slots (claims in flight and running tasks).

// reserve takes up to n free slots and returns how many it took.
func (w *Worker) reserve(n int) int {
	for {
		cur := w.inFlight.Load()
		free := int64(w.cfg.MaxConcurrency) - cur
		if free <= 0 || n <= 0 {
			return 0
		}
		k := min(int64(n), free)
		if w.inFlight.CompareAndSwap(cur, cur+k) {
			return int(k)
		}
	}
}

func (w *Worker) release(n int) {
	if n <= 0 {
		return
	}
	w.inFlight.Add(-int64(n))
	select {
	case w.slotFreed <- struct{}{}:
	default:
	}
}

func (w *Worker) freeSlots() int {
	return max(w.cfg.MaxConcurrency-int(w.inFlight.Load()), 0)
}

// startTask hands a claimed execution (its slot already reserved) to the
// handler on a task runner (runnerPool), with its lease under renewal.
// sent is when the claim call went out: the lease cannot have started
// earlier, so renewals and local expiry count from it. The lease granted
// may be shorter than LeaseTTL (a hand-off's first lease); renewals ask
// for LeaseTTL.
func (w *Worker) startTask(ct ClaimedTask, sent time.Time) {
	now := time.Now()
	h := ct.Handle
	granted := h.LeaseTTL
	if granted <= 0 || granted > w.cfg.LeaseTTL {
		granted = w.cfg.LeaseTTL
	}
	h.LeaseTTL = w.cfg.LeaseTTL
	t := &Task{
		ID: h.ExecutionID, Kind: ct.Context.Kind, Payload: ct.Context.Payload, Tags: ct.Context.Tags,
		Lane: h.Lane, AttemptIndex: h.AttemptIndex, AttemptType: ct.AttemptType,
		Handle: h, ClaimedAt: now, h: h, w: w,
	}
	if t.Lane == "" {
		t.Lane = ct.Context.Lane
	}
	t.ctx, t.cancel = context.WithCancelCause(w.baseCtx)
	t.lease = w.renewer.add(t, sent, granted)
	w.stats.claimed.Add(1)
	w.tasksMu.Lock()
	w.tasks[t] = struct{}{}
	w.runningIDs[t.ID] = struct{}{}
	w.tasksMu.Unlock()
	w.taskWG.Add(1)
	w.runners.run(t)
}

func (w *Worker) runTask(t *Task) {
	defer w.endTask(t)
	err, panicked, stack := w.invoke(t)
	switch {
	case panicked:
		w.stats.handlerPanics.Add(1)
		w.log.Error("handler panicked", "execution", t.ID, "kind", t.Kind, "panic", stack)
	case err != nil:
		w.stats.handlerErrors.Add(1)
	}
	settle, unlanded := t.settleState()
	if !settle {
		return
	}
	ctx, cancel := context.WithTimeout(w.baseCtx, max(w.cfg.LeaseTTL, minCallTimeout))
	defer cancel()
	var serr error
	switch {
	case panicked:
		_, serr = t.Fail(ctx, truncateReason(stack), CategoryHandlerPanic)
	case err != nil:
		_, serr = t.Fail(ctx, truncateReason(err.Error()), FailureCategory(err))
	case unlanded != nil:
		_, serr = t.Fail(ctx, truncateReason("the handler's terminal call did not land: "+unlanded.Error()), CategoryHandlerError)
	default:
		serr = t.Complete(ctx, nil)
	}
	if serr != nil {
		w.log.Warn("settling task", "execution", t.ID, "err", serr)
	}
}

// invoke runs the handler, turning a panic into (panicked, "panic: v\nstack").
func (w *Worker) invoke(t *Task) (err error, panicked bool, reason string) {
	defer func() {
		if r := recover(); r != nil {
			err, panicked, reason = nil, true, fmt.Sprintf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return w.handler.HandleTask(t.ctx, t), false, ""
}

func (w *Worker) endTask(t *Task) {
	w.renewer.remove(t.lease)
	t.cancel(context.Canceled)
	w.tasksMu.Lock()
	delete(w.tasks, t)
	delete(w.runningIDs, t.ID)
	w.tasksMu.Unlock()
	if !t.slotOffered.Load() { // else its complete passed the slot to an offer
		w.release(1)
	}
	w.taskWG.Done()
}

func truncateReason(s string) string {
	if len(s) <= maxReasonBytes {
		return s
	}
	const marker = "…[truncated]"
	cut := maxReasonBytes - len(marker)
	for cut > 0 && s[cut]&0xc0 == 0x80 { // keep UTF-8 whole
		cut--
	}
	return s[:cut] + marker
}

// initCursors spreads workers' starting partitions by instance id, so two
// workers do not scan (and contend on) the same heads in the same order.
func (w *Worker) initCursors(partitions int) {
	w.partitions = make([]int, partitions)
	for i := range w.partitions {
		w.partitions[i] = i
	}
	w.partCursor = make([]int, len(w.cfg.Lanes))
	for i, l := range w.cfg.Lanes {
		f := fnv.New64a()
		f.Write([]byte(w.cfg.InstanceID))
		f.Write([]byte{0})
		f.Write([]byte(l))
		w.partCursor[i] = int(f.Sum64() % uint64(partitions))
	}
}
