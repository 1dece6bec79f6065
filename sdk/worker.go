package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Worker claims executions from its lanes and runs them through a Handler,
// holding and renewing their leases. Build one with NewWorker, start it with
// Run, stop it by cancelling Run's context or with Shutdown.
//
// Its parts, each in its own file: the configuration (config.go), the slot
// ledger (slots.go), the claim loop and its paths (claim.go), the idle wait
// (idle.go), claim offers and hand-offs (offers.go), the renewer
// (renewer.go), the tasks and their one end path (task.go), task runners
// (runners.go).
type Worker struct {
	backend EngineBackend
	roles   BackendRoles
	cfg     WorkerConfig
	log     *slog.Logger

	slots   *slotLedger
	offers  offerBook
	cursor  claimCursor // owned by the claim loop
	renewer *renewer
	// completer batches completions (nil without CompleteBatcher).
	completer *groupCommit[CompleteItem, CompleteOutcome]
	running   *runningSet
	runners   *runnerPool
	adm       admissionState // lanes refused for now, quota holds of running tasks
	stats     workerStats
	// engineChecked is when (unix ns) delayedWork last asked for live engines.
	engineChecked atomic.Int64

	handler Handler
	baseCtx context.Context // Run's context without its cancellation
	obs     WorkerObserver  // cfg.Observer (nil: none)

	mu       sync.Mutex
	started  bool
	stopCh   chan struct{} // closed by Shutdown: stop claiming, drain
	stopOnce sync.Once
	hardCh   chan struct{} // closed when Shutdown's ctx ends: skip the rest of the grace
	hardOnce sync.Once
	doneCh   chan struct{} // closed when Run returns
}

// NewWorker validates cfg, fills its defaults and discovers the backend's
// optional roles (RolesOf). It returns a validation *Error naming the bad
// field.
func NewWorker(backend EngineBackend, cfg WorkerConfig) (*Worker, error) {
	if backend == nil {
		return nil, configError("backend is nil")
	}
	roles := RolesOf(backend)
	if cfg.DisableClaimOffers {
		roles.ClaimOfferer, roles.CompleteOfferer = nil, nil
	}
	cfg, err := resolveConfig(roles, cfg)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		backend: backend,
		roles:   roles,
		cfg:     cfg,
		log:     cfg.Logger,
		obs:     cfg.Observer,
		slots:   newSlotLedger(cfg.MaxConcurrency),
		offers:  newOfferBook(),
		running: newRunningSet(),
		stopCh:  make(chan struct{}),
		hardCh:  make(chan struct{}),
		doneCh:  make(chan struct{}),
	}
	w.renewer = newRenewer(backend, roles.BatchRenewer, cfg.RenewEvery, cfg.LeaseTTL)
	w.renewer.onError = w.reportError
	w.renewer.obs = cfg.Observer
	w.runners = newRunnerPool(w.runTask)
	if cb := roles.CompleteBatcher; cb != nil {
		w.completer = &groupCommit[CompleteItem, CompleteOutcome]{send: cb.CompleteBatch, op: "complete",
			failed:  func(err error) CompleteOutcome { return CompleteOutcome{Err: err} },
			timeout: minCallTimeout, max: groupCommitMax}
	}
	return w, nil
}

// Config returns the worker's configuration with defaults filled in.
func (w *Worker) Config() WorkerConfig { return w.cfg }

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
	w.cursor = newClaimCursor(n, w.cfg.InstanceID, w.cfg.Lanes)
	reg := WorkerRegistration{WorkerID: w.cfg.WorkerID, InstanceID: w.cfg.InstanceID,
		Lanes: w.cfg.Lanes, Capabilities: w.cfg.Capabilities, TTL: w.cfg.RegistrationTTL}
	if r := w.roles.WorkerRegistry; r != nil {
		if err := r.RegisterWorker(ctx, reg); err != nil {
			return err
		}
	}
	w.log.Info("worker started", "worker", w.cfg.WorkerID, "instance", w.cfg.InstanceID,
		"lanes", w.cfg.Lanes, "claim_mode", w.cfg.ClaimMode.String(), "partitions", n,
		"readiness", w.roles.ReadinessWatcher != nil, "batch_renew", w.roles.BatchRenewer != nil)

	stopBackground := w.startBackground(reg)
	w.claimUntilStopped(ctx)
	w.closeOffers()
	w.log.Info("worker stopping", "in_flight", w.slots.inUse())
	w.drain()
	w.runners.close()
	stopBackground()
	w.deregister()
	w.log.Info("worker stopped")
	return nil
}

// startBackground starts the renewer, the lease-event follower, the
// hand-off watch, the heartbeat and the Alongside services; the function it
// returns stops them and waits for them.
func (w *Worker) startBackground(reg WorkerRegistration) (stop func()) {
	var bg sync.WaitGroup
	renewCtx, stopRenew := context.WithCancel(w.baseCtx)
	bg.Go(func() { w.renewer.run(renewCtx) })
	if le := w.roles.LeaseEventWatcher; le != nil {
		if events, err := le.WatchLeaseEvents(renewCtx); err == nil {
			bg.Go(func() { w.followLeaseEvents(renewCtx, events) })
		} else {
			w.reportError(err)
		}
	}
	w.startOffers(renewCtx)
	if w.roles.Admission != nil {
		bg.Go(func() { w.refreshAdmissions(renewCtx) })
	}
	hbCtx, stopHB := context.WithCancel(w.baseCtx)
	if w.roles.WorkerRegistry != nil {
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
	return func() {
		stopHB()
		stopRenew()
		stopSide()
		bg.Wait()
	}
}

// claimUntilStopped runs the claim loop until ctx ends or Shutdown is
// called (before Run, Shutdown means no claim at all).
func (w *Worker) claimUntilStopped(ctx context.Context) {
	claimCtx, stopClaim := context.WithCancel(ctx)
	defer stopClaim()
	select {
	case <-w.stopCh:
		return
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
}

func (w *Worker) deregister() {
	r := w.roles.WorkerRegistry
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(w.baseCtx, minCallTimeout)
	defer cancel()
	if err := r.DeregisterWorker(ctx, w.cfg.InstanceID); err != nil {
		w.reportError(err)
	}
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
	idle := w.running.allDone()
	grace := time.NewTimer(w.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-idle:
		return
	case <-grace.C:
	case <-w.hardCh:
	}
	tasks := w.running.snapshot()
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
		err := w.roles.WorkerRegistry.HeartbeatWorker(cctx, reg)
		if err != nil && !isTransient(err) && ctx.Err() == nil {
			err = w.roles.WorkerRegistry.RegisterWorker(cctx, reg)
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			w.reportError(err)
		}
	}
}

func (w *Worker) reportError(err error) {
	w.log.Warn("worker error", "err", err)
	if w.obs != nil {
		w.obs.WorkerError(err)
	}
	if w.cfg.OnError != nil {
		w.cfg.OnError(err)
	}
}

// startTask hands a claimed execution (its slot already reserved) to the
// handler on a task runner (runnerPool), with its lease under renewal.
// sent is when the claim call went out: the lease cannot have started
// earlier, so renewals and local expiry count from it. The lease granted
// may be shorter than LeaseTTL (a hand-off's first lease); renewals ask
// for LeaseTTL. handedOff marks a lease a claim offer received.
func (w *Worker) startTask(ct ClaimedTask, sent time.Time, handedOff bool) {
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
		Handle: h, ClaimedAt: now, HandedOff: handedOff, TraceParent: ct.Context.TraceParent, h: h, w: w,
	}
	if t.Lane == "" {
		t.Lane = ct.Context.Lane
	}
	t.ctx, t.cancel = context.WithCancelCause(w.baseCtx)
	t.lease = w.renewer.add(t, sent, granted)
	w.stats.claimed.Add(1)
	w.running.add(t)
	w.runners.run(t)
}

// runTask runs t's handler, then ends the attempt itself when the handler
// left it open (see settle), then ends the task.
func (w *Worker) runTask(t *Task) {
	defer w.endTask(t)
	ctx, obs := t.ctx, w.obs
	var began time.Time
	if obs != nil {
		ctx = obs.TaskStarted(ctx, t)
		began = time.Now()
	}
	panicked, stack, err := w.invoke(ctx, t)
	var ran time.Duration
	if obs != nil {
		ran = time.Since(began)
	}
	switch {
	case panicked:
		w.stats.handlerPanics.Add(1)
		w.log.Error("handler panicked", "execution", t.ID, "kind", t.Kind, "panic", stack)
	case err != nil:
		w.stats.handlerErrors.Add(1)
	}
	w.settle(t, err, panicked, stack)
	if obs != nil {
		obs.TaskEnded(ctx, t, TaskEnd{Outcome: t.endOutcome(), HandlerDuration: ran, HandlerErr: err, Panicked: panicked})
	}
}

// settle ends an attempt the handler returned from without a terminal call
// that landed. The handler's own terminal call, when it made one that did
// not land, is finished first (its outcome is what the handler asked for);
// else a panic or an error fails the attempt and nil completes it. A
// transport error is never the handler's failure: a typed transport or
// timeout error the handler passes on, and a settling call that cannot
// land while the lease lasts, give the attempt back unchanged (no retry
// consumed); when even that cannot land, the lease expires and the reclaim
// scanner requeues the attempt.
func (w *Worker) settle(t *Task, err error, panicked bool, stack string) {
	open, pending := t.settleState()
	if !open {
		return
	}
	ctx, cancel := context.WithTimeout(w.baseCtx, w.cfg.LeaseTTL+minCallTimeout)
	defer cancel()
	var serr error
	switch {
	case pending != nil:
		serr = t.terminal(ctx, pending)
		if refused(serr) { // e.g. a result over the backend's limit: the handler's own doing
			_, serr = t.Fail(ctx, truncateReason("the handler's "+pending.op+" was refused: "+serr.Error()), CategoryHandlerError)
		}
	case panicked:
		_, serr = t.Fail(ctx, truncateReason(stack), CategoryHandlerPanic)
	case err != nil && !isTransportKind(err):
		_, serr = t.Fail(ctx, truncateReason(err.Error()), FailureCategory(err))
	case err != nil:
		serr = t.giveBack(ctx)
	default:
		serr = t.Complete(ctx, nil)
	}
	if serr != nil && isTransient(serr) && ctx.Err() == nil {
		serr = t.giveBack(ctx)
	}
	if serr != nil {
		w.log.Warn("settling task", "execution", t.ID, "err", serr)
	}
}

// refused reports an error that no retry of the same call can change:
// neither a transport error nor the lease's loss.
func refused(err error) bool { return err != nil && !isTransient(err) && !isFencing(err) }

// isTransportKind reports a typed transport or timeout error (one the SDK or
// a backend made), as opposed to an error of the handler's own.
func isTransportKind(err error) bool {
	k := KindOf(err)
	return k == KindTransport || k == KindTimeout
}

// invoke runs the handler, turning a panic into (panicked, "panic: v\nstack").
func (w *Worker) invoke(ctx context.Context, t *Task) (panicked bool, reason string, err error) {
	defer func() {
		if r := recover(); r != nil {
			panicked, reason, err = true, fmt.Sprintf("panic: %v\n%s", r, debug.Stack()), nil
		}
	}()
	return false, "", w.handler.HandleTask(ctx, t)
}

// endTask is the end of every task, whatever ended it: the lease leaves the
// renewer (once: a terminal call that landed already took it out), the
// context ends, and the slot is released unless Complete handed it to an
// offer.
func (w *Worker) endTask(t *Task) {
	t.stopRenewing()
	t.cancel(context.Canceled)
	w.releaseAdmission(t)
	w.running.remove(t)
	w.slots.endTask(&t.slot)
	w.running.done()
}

// truncateReason cuts s to MaxReasonBytes, keeping UTF-8 whole and marking
// the cut.
func truncateReason(s string) string {
	if len(s) <= MaxReasonBytes {
		return s
	}
	const marker = "…[truncated]"
	cut := MaxReasonBytes - len(marker)
	for cut > 0 && s[cut]&0xc0 == 0x80 { // keep UTF-8 whole
		cut--
	}
	return s[:cut] + marker
}
