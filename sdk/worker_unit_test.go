package sdk

// Pure-logic tests of the worker: config defaults and validation, the
// renewer's heap, Mux dispatch, panic recovery, replay recognition. Anything
// that needs an engine runs against real Valkey in worker_e2e_test.go.

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestResolveConfigDefaults(t *testing.T) {
	cfg, err := resolveConfig(BackendRoles{}, WorkerConfig{WorkerID: "w", Lanes: []LaneID{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConcurrency != MaxConcurrencyDefault || cfg.LeaseTTL != LeaseTTLDefault ||
		cfg.RenewEvery != LeaseTTLDefault/RenewDivisorDefault || cfg.ScanWindow != ScanWindowDefault ||
		cfg.ClaimBatch != ClaimBatchDefault || cfg.ShutdownGrace != ShutdownGraceDefault ||
		cfg.GrantTTL != GrantTTLDefault || cfg.RegistrationTTL != LeaseTTLDefault || cfg.ClaimMode != ClaimDirect ||
		cfg.HandoffLeaseTTL != HandoffLeaseTTLDefault {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	// No ReadinessWatcher: the short idle poll.
	if cfg.IdlePoll != IdlePollDefault {
		t.Fatalf("IdlePoll = %v, want %v", cfg.IdlePoll, IdlePollDefault)
	}
	if cfg.Logger == nil {
		t.Fatal("Logger not defaulted")
	}
	if err := cfg.InstanceID.Validate(); err != nil {
		t.Fatalf("default instance id %q: %v", cfg.InstanceID, err)
	}
	cfg2, _ := resolveConfig(BackendRoles{}, WorkerConfig{WorkerID: "w", Lanes: []LaneID{"a"}})
	if cfg2.InstanceID == cfg.InstanceID {
		t.Fatalf("two default instance ids are equal: %q", cfg.InstanceID)
	}

	cfg, err = resolveConfig(BackendRoles{}, WorkerConfig{WorkerID: "w", Lanes: []LaneID{"a"}, LeaseTTL: 3 * time.Second,
		Capabilities: []string{"gpu", "cpu", "gpu"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RenewEvery != time.Second || cfg.RegistrationTTL != 3*time.Second || cfg.HandoffLeaseTTL != 3*time.Second {
		t.Fatalf("derived defaults: renew %v reg %v first lease %v", cfg.RenewEvery, cfg.RegistrationTTL, cfg.HandoffLeaseTTL)
	}
	if !slices.Equal(cfg.Capabilities, []string{"cpu", "gpu"}) {
		t.Fatalf("capabilities not normalized: %v", cfg.Capabilities)
	}
}

func TestResolveConfigValidation(t *testing.T) {
	ok := WorkerConfig{WorkerID: "w", Lanes: []LaneID{"a"}}
	cases := []struct {
		name  string
		mod   func(*WorkerConfig)
		field string
	}{
		{"no worker id", func(c *WorkerConfig) { c.WorkerID = "" }, "WorkerID"},
		{"bad instance", func(c *WorkerConfig) { c.InstanceID = "a b" }, "InstanceID"},
		{"no lanes", func(c *WorkerConfig) { c.Lanes = nil }, "Lanes"},
		{"bad lane", func(c *WorkerConfig) { c.Lanes = []LaneID{"{x}"} }, "Lanes"},
		{"dup lane", func(c *WorkerConfig) { c.Lanes = []LaneID{"a", "a"} }, "Lanes"},
		{"bad cap", func(c *WorkerConfig) { c.Capabilities = []string{"a,b"} }, "Capabilities"},
		{"neg concurrency", func(c *WorkerConfig) { c.MaxConcurrency = -1 }, "MaxConcurrency"},
		{"neg ttl", func(c *WorkerConfig) { c.LeaseTTL = -1 }, "LeaseTTL"},
		{"tiny ttl", func(c *WorkerConfig) { c.LeaseTTL = time.Millisecond }, "LeaseTTL"},
		{"sub-ms ttl", func(c *WorkerConfig) { c.LeaseTTL = time.Second + time.Microsecond }, "LeaseTTL"},
		{"renew >= ttl", func(c *WorkerConfig) { c.LeaseTTL = time.Second; c.RenewEvery = time.Second }, "RenewEvery"},
		{"neg window", func(c *WorkerConfig) { c.ScanWindow = -3 }, "ScanWindow"},
		{"neg batch", func(c *WorkerConfig) { c.ClaimBatch = -3 }, "ClaimBatch"},
		{"neg poll", func(c *WorkerConfig) { c.IdlePoll = -time.Second }, "IdlePoll"},
		{"neg grace", func(c *WorkerConfig) { c.ShutdownGrace = -time.Second }, "ShutdownGrace"},
		{"neg grant", func(c *WorkerConfig) { c.GrantTTL = -time.Second }, "GrantTTL"},
		{"bad mode", func(c *WorkerConfig) { c.ClaimMode = 9 }, "ClaimMode"},
		{"neg first lease", func(c *WorkerConfig) { c.HandoffLeaseTTL = -time.Second }, "HandoffLeaseTTL"},
		{"first lease > ttl", func(c *WorkerConfig) { c.LeaseTTL = time.Second; c.HandoffLeaseTTL = 2 * time.Second }, "HandoffLeaseTTL"},
		{"sub-ms first lease", func(c *WorkerConfig) { c.HandoffLeaseTTL = time.Second + time.Microsecond }, "HandoffLeaseTTL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			_, err := resolveConfig(BackendRoles{}, c)
			if !errors.Is(err, ErrValidation) {
				t.Fatalf("err = %v, want a validation error", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err %q does not name %s", err, tc.field)
			}
		})
	}
	// Fused without a FusedClaimer: unavailable, not silently direct.
	c := ok
	c.ClaimMode = ClaimFused
	if _, err := resolveConfig(BackendRoles{}, c); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("fused without FusedClaimer: %v", err)
	}
	if _, err := NewWorker(nil, ok); !errors.Is(err, ErrValidation) {
		t.Fatalf("nil backend: %v", err)
	}
}

func TestRenewerHeapOrder(t *testing.T) {
	r := newRenewer(nil, nil, time.Second, 3*time.Second)
	base := time.Unix(1000, 0)
	r.now = func() time.Time { return base }
	r.coalesce = 0
	var entries []*leaseEntry
	for _, off := range []int{5, 1, 4, 2, 3, 9, 0} {
		e := &leaseEntry{due: base.Add(time.Duration(off) * 100 * time.Millisecond)}
		r.mu.Lock()
		pushEntry(r, e)
		r.mu.Unlock()
		entries = append(entries, e)
	}
	// Remove one from the middle of the heap.
	r.remove(entries[2]) // off 4
	r.remove(entries[2]) // idempotent

	var got []time.Duration
	for {
		batch, wait := r.takeDue()
		if wait < 0 {
			break
		}
		if len(batch) == 0 {
			base = base.Add(wait)
			continue
		}
		for _, e := range batch {
			got = append(got, e.due.Sub(time.Unix(1000, 0)))
		}
	}
	want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond,
		500 * time.Millisecond, 900 * time.Millisecond}
	if !slices.Equal(got, want) {
		t.Fatalf("renewal order %v, want %v", got, want)
	}
}

func TestRenewerCoalescesDueLeases(t *testing.T) {
	r := newRenewer(nil, nil, time.Second, 3*time.Second)
	base := time.Unix(1000, 0)
	r.now = func() time.Time { return base }
	r.coalesce = 50 * time.Millisecond
	for _, off := range []time.Duration{0, 10, 40, 60, 200} {
		r.mu.Lock()
		pushEntry(r, &leaseEntry{due: base.Add(off * time.Millisecond)})
		r.mu.Unlock()
	}
	batch, _ := r.takeDue()
	if len(batch) != 3 {
		t.Fatalf("first batch has %d leases, want 3 (due within the coalesce window)", len(batch))
	}
	batch, wait := r.takeDue()
	if len(batch) != 0 || wait != 10*time.Millisecond {
		t.Fatalf("next: %d leases, wait %v; want none, 10ms", len(batch), wait)
	}
	if r.held() != 2 {
		t.Fatalf("held %d, want 2", r.held())
	}
}

// A lease event makes the named lease due at once; one that comes while
// the lease's renewal is in flight marks it to be renewed again as soon as
// that renewal is back; an event for a lease not held here changes nothing.
func TestRenewerRenewNow(t *testing.T) {
	r := newRenewer(nil, nil, time.Second, 3*time.Second)
	base := time.Unix(1000, 0)
	r.now = func() time.Time { return base }
	r.coalesce = 0
	a := &leaseEntry{handle: &Handle{ExecutionID: "a"}, due: base.Add(time.Second)}
	b := &leaseEntry{handle: &Handle{ExecutionID: "b"}, due: base.Add(time.Second)}
	r.mu.Lock()
	pushEntry(r, a)
	pushEntry(r, b)
	r.mu.Unlock()
	if r.renewNow("nobody") {
		t.Fatal("renewNow found a lease that is not held")
	}
	if !r.renewNow("b") {
		t.Fatal("renewNow did not find b")
	}
	batch, _ := r.takeDue()
	if len(batch) != 1 || batch[0] != b {
		t.Fatalf("due now: %v, want just b", batch)
	}
	// b's renewal is in flight: an event for it now marks it for a recheck.
	if !r.renewNow("b") || !b.recheck {
		t.Fatal("an event during the renewal did not mark b for a recheck")
	}
	if batch, wait := r.takeDue(); len(batch) != 0 || wait != time.Second {
		t.Fatalf("next: %d due, wait %v; want none, 1s", len(batch), wait)
	}
	// Released: no longer found.
	r.remove(b)
	if r.renewNow("b") {
		t.Fatal("renewNow found a released lease")
	}
}

// A lease granted shorter than LeaseTTL (a hand-off's first lease) is
// renewed at the same share of its own length: RenewEvery is a third of
// LeaseTTL here, so a 600ms first lease is renewed after 200ms.
func TestRenewerShortFirstLease(t *testing.T) {
	r := newRenewer(nil, nil, time.Second, 3*time.Second)
	base := time.Unix(1000, 0)
	full := r.add(&Task{h: Handle{ExecutionID: "full"}}, base, 3*time.Second)
	short := r.add(&Task{h: Handle{ExecutionID: "short"}}, base, 600*time.Millisecond)
	if got := short.due.Sub(base); got != 200*time.Millisecond || !short.expires.Equal(base.Add(600*time.Millisecond)) {
		t.Fatalf("short first lease: due after %v, expires %v; want 200ms, 600ms", got, short.expires.Sub(base))
	}
	if got := full.due.Sub(base); got != time.Second || !full.expires.Equal(base.Add(3*time.Second)) {
		t.Fatalf("full lease: due after %v, expires %v; want 1s, 3s", got, full.expires.Sub(base))
	}
	if r.heap[0] != short {
		t.Fatal("the short lease is not the first due")
	}
}

// With work in sight a worker keeps as many offers as creates take within
// offerTakenWithin at its recent hand-off rate, at least one while creates
// are seen coming (a hand-off or an arrival within createFlowWindow), none
// once they stop, and never all of them: a worker of one slot claims the
// work it sees (on a cluster its offer would serve one partition only).
func TestOfferCapFollowsHandoffRate(t *testing.T) {
	w := &Worker{cfg: WorkerConfig{MaxConcurrency: 8}, offers: newOfferBook()}
	if c := w.offerCap(); c != 0 {
		t.Fatalf("no create ever seen: cap %d, want 0", c)
	}
	w.offers.sawCreate()
	if c := w.offerCap(); c != 1 {
		t.Fatalf("creates seen just now, no hand-off: cap %d, want 1", c)
	}
	perWindow := func(n int, age time.Duration) {
		w.offers.mu.Lock()
		w.offers.winStart, w.offers.winCount, w.offers.lastCount = time.Now().Add(-age), n, 0
		w.offers.mu.Unlock()
	}
	// 4 offers' worth: creates take that many within offerTakenWithin.
	perWindow(4*int(handoffWindow/offerTakenWithin), 0)
	if c := w.offerCap(); c != 4 {
		t.Fatalf("hand-offs at 4 per %v: cap %d, want 4", offerTakenWithin, c)
	}
	perWindow(1000*int(handoffWindow/offerTakenWithin), 0)
	if c := w.offerCap(); c != 7 {
		t.Fatalf("hand-offs far faster than the slots: cap %d, want 7 (all but one)", c)
	}
	// The last full window counts while the next fills.
	perWindow(4*int(handoffWindow/offerTakenWithin), handoffWindow+handoffWindow/2)
	if c := w.offerCap(); c != 4 {
		t.Fatalf("hand-offs at 4 per %v in the last window: cap %d, want 4", offerTakenWithin, c)
	}
	perWindow(4*int(handoffWindow/offerTakenWithin), 3*handoffWindow)
	if c := w.offerCap(); c != 1 {
		t.Fatalf("no hand-off for two windows, creates still seen: cap %d, want 1", c)
	}
	w.offers.lastCreate.Store(time.Now().Add(-2 * createFlowWindow).UnixNano())
	if c := w.offerCap(); c != 0 {
		t.Fatalf("creates seen %v ago: cap %d, want 0", 2*createFlowWindow, c)
	}
	w.offers.sawCreate()
	perWindow(1000, 0)
	w.cfg.MaxConcurrency = 1
	if c := w.offerCap(); c != 0 {
		t.Fatalf("one slot, creates coming fast: cap %d, want 0", c)
	}
	w.cfg.MaxConcurrency = 2
	if c := w.offerCap(); c != 1 {
		t.Fatalf("two slots, creates coming fast: cap %d, want 1", c)
	}
}

func pushEntry(r *renewer, e *leaseEntry) {
	if e.handle == nil {
		e.handle = &Handle{}
	}
	heap.Push(&r.heap, e)
	r.byID[e.handle.ExecutionID] = e
}

func TestMuxDispatch(t *testing.T) {
	m := NewMux()
	var trace []string
	mw := func(name string) Middleware {
		return func(h Handler) Handler {
			return HandlerFunc(func(ctx context.Context, t *Task) error {
				trace = append(trace, name)
				return h.HandleTask(ctx, t)
			})
		}
	}
	m.Use(mw("outer"), mw("inner"))
	m.HandleFunc("email", func(ctx context.Context, t *Task) error { trace = append(trace, "email"); return nil })
	m.HandleFunc("sms", func(ctx context.Context, t *Task) error { return errors.New("boom") })

	if err := m.HandleTask(context.Background(), &Task{Kind: "email"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(trace, []string{"outer", "inner", "email"}) {
		t.Fatalf("trace %v", trace)
	}
	if err := m.HandleTask(context.Background(), &Task{Kind: "sms"}); err == nil || err.Error() != "boom" {
		t.Fatalf("sms: %v", err)
	}
	err := m.HandleTask(context.Background(), &Task{Kind: "fax"})
	if FailureCategory(err) != CategoryNoHandler {
		t.Fatalf("unknown kind: %v (category %q)", err, FailureCategory(err))
	}
	if _, ok := m.Handler("email"); !ok {
		t.Fatal("Handler(email) not found")
	}
	m.NotFound(HandlerFunc(func(context.Context, *Task) error { return nil }))
	if err := m.HandleTask(context.Background(), &Task{Kind: "fax"}); err != nil {
		t.Fatalf("custom not-found: %v", err)
	}

	mustPanic(t, "duplicate", func() { m.HandleFunc("email", func(context.Context, *Task) error { return nil }) })
	mustPanic(t, "bad kind", func() { m.HandleFunc("", func(context.Context, *Task) error { return nil }) })
	mustPanic(t, "nil handler", func() { m.Handle("x", nil) })
}

func mustPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatalf("%s: no panic", name)
		}
	}()
	f()
}

func TestFailureCategory(t *testing.T) {
	if c := FailureCategory(errors.New("x")); c != CategoryHandlerError {
		t.Fatal(c)
	}
	err := fmt.Errorf("wrapped: %w", &Failure{Category: "upstream_timeout", Err: context.DeadlineExceeded})
	if c := FailureCategory(err); c != "upstream_timeout" {
		t.Fatal(c)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("Failure does not unwrap")
	}
	if c := FailureCategory(&Failure{Err: errors.New("no category")}); c != CategoryHandlerError {
		t.Fatal(c)
	}
}

func TestInvokeRecoversPanic(t *testing.T) {
	w := &Worker{handler: HandlerFunc(func(context.Context, *Task) error { panic("kaboom") })}
	panicked, reason, err := w.invoke(context.Background(), &Task{ctx: context.Background()})
	if err != nil || !panicked || !strings.HasPrefix(reason, "panic: kaboom\n") || !strings.Contains(reason, "goroutine") {
		t.Fatalf("err %v panicked %v reason %q", err, panicked, reason)
	}
	w.handler = HandlerFunc(func(context.Context, *Task) error { return errors.New("plain") })
	if panicked, _, err := w.invoke(context.Background(), &Task{ctx: context.Background()}); panicked || err == nil {
		t.Fatalf("plain error: %v %v", err, panicked)
	}
	long := strings.Repeat("é", MaxReasonBytes)
	tr := truncateReason(long)
	if len(tr) > MaxReasonBytes || !strings.HasSuffix(tr, "[truncated]") || !strings.HasPrefix(tr, "é") {
		t.Fatalf("truncate: len %d", len(tr))
	}
	if truncateReason("short") != "short" {
		t.Fatal("short reason changed")
	}
}

func TestReplayRecognition(t *testing.T) {
	h := Handle{Epoch: 7, AttemptID: "att", LeaseID: "lease"}
	completed := func(s PublicState) bool { return s == StateCompleted }
	same := NewError("complete", CodeExecutionNotActive, "", "completed", "7", "att")
	if !isReplayOf(same, h, completed) {
		t.Fatal("own replay not recognised")
	}
	if !isReplayOf(NewError("complete", CodeExecutionNotActive, "", "completed", "7", "att", "lease"), h, completed) {
		t.Fatal("own replay (ended by this lease) not recognised")
	}
	for _, e := range []error{
		NewError("complete", CodeExecutionNotActive, "", "completed", "7", "att", "engine"), // a scanner ended it
		NewError("complete", CodeExecutionNotActive, "", "completed", "8", "att"),           // later epoch
		NewError("complete", CodeExecutionNotActive, "", "completed", "7", "other"),
		NewError("complete", CodeExecutionNotActive, "", "failed", "7", "att"), // other outcome
		NewError("complete", CodeStaleLease, ""),
		errors.New("plain"),
	} {
		if isReplayOf(e, h, completed) {
			t.Fatalf("%v taken for a replay", e)
		}
	}
}

func TestErrorClassesForWorker(t *testing.T) {
	if !isTransient(TransportError("x", errors.New("eof"))) || !isTransient(errors.New("untyped")) {
		t.Fatal("transport not transient")
	}
	if isTransient(context.Canceled) || isTransient(NewError("x", CodeStaleLease, "")) {
		t.Fatal("cancel or fencing taken for transient")
	}
	for _, c := range []string{CodeStaleLease, CodeLeaseExpired, CodeLeaseRevoked, CodeExecutionNotActive, CodeExecutionNotFound} {
		if !isFencing(NewError("renew", c, "")) {
			t.Fatalf("%s not fencing", c)
		}
	}
	if isFencing(TransportError("renew", errors.New("eof"))) {
		t.Fatal("transport taken for fencing")
	}
}

func TestRotateFrom(t *testing.T) {
	p := []int{1, 3, 5, 7}
	for _, tc := range []struct {
		cursor int
		want   []int
	}{{0, []int{1, 3, 5, 7}}, {3, []int{3, 5, 7, 1}}, {4, []int{5, 7, 1, 3}}, {8, []int{1, 3, 5, 7}}} {
		if got := rotateFrom(p, tc.cursor); !slices.Equal(got, tc.want) {
			t.Fatalf("cursor %d: %v, want %v", tc.cursor, got, tc.want)
		}
	}
}

// Lanes and partitions rotate independently: with an even number of lanes
// and windows, every lane still starts on every partition (the reference
// worker's aliasing bug).
func TestCursorsDoNotAlias(t *testing.T) {
	lanes := []LaneID{"a", "b"}
	c := newClaimCursor(8, "i", lanes)
	seen := map[LaneID]map[int]bool{"a": {}, "b": {}}
	for range 64 {
		li := c.nextLane()
		parts := rotateFrom(c.partitions, c.part[li])
		seen[lanes[li]][parts[0]] = true
		c.advance(li, parts[0]) // claimed from the first partition
	}
	for l, s := range seen {
		if len(s) != 8 {
			t.Fatalf("lane %s started on %d of 8 partitions", l, len(s))
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	got := []time.Duration{}
	for i := range 8 {
		got = append(got, backoffDelay(i, 10*time.Millisecond, 100*time.Millisecond))
	}
	want := []time.Duration{10, 20, 40, 80, 100, 100, 100, 100}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%v", got)
	}
}

func TestBatchError(t *testing.T) {
	e := &BatchError{Errs: []error{nil, ErrPayloadTooLarge, nil, NewError("create", CodeInvalidInput, "bad lane")}}
	if !errors.Is(e, ErrPayloadTooLarge) || !errors.Is(e, ErrValidation) {
		t.Fatal("errors.Is does not see items")
	}
	if !strings.HasPrefix(e.Error(), "item 1: ") || !strings.Contains(e.Error(), "1 more") {
		t.Fatal(e.Error())
	}
}

// Tasks run on runners that wait for the next task; closing the pool does
// not wait for a task that is still running (a handler may ignore its
// cancelled context), and a waiting runner takes the next task rather than
// a new goroutine starting.
func TestRunnerPool(t *testing.T) {
	release := make(chan struct{})
	ran := make(chan *Task, 4)
	p := newRunnerPool(func(t *Task) {
		if t.Kind == "stuck" {
			<-release
		}
		ran <- t
	})
	first := &Task{Kind: "quick"}
	p.run(first)
	if got := <-ran; got != first {
		t.Fatalf("ran %v, want the first task", got)
	}
	// The runner is waiting (or about to): the next task goes to it, so
	// after a moment the send below finds a receiver.
	deadline := time.Now().Add(5 * time.Second)
	second := &Task{Kind: "stuck"}
	for sent := false; !sent; {
		select {
		case p.queue <- second:
			sent = true
		default:
			if time.Now().After(deadline) {
				t.Fatal("no runner waited for a next task")
			}
			time.Sleep(time.Millisecond)
		}
	}
	closed := make(chan struct{})
	go func() { p.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close waited for a running task")
	}
	close(release)
	if got := <-ran; got != second {
		t.Fatalf("ran %v, want the stuck task once released", got)
	}
}

// The wait for overdue hand-offs ends at the earliest taken offer's
// deadline; with none taken there is nothing to wait for.
func TestOfferBookFirstGiveUp(t *testing.T) {
	b := &offerBook{taken: map[string]time.Time{}}
	if _, ok := b.firstGiveUp(); ok {
		t.Fatal("a deadline with no taken offer")
	}
	now := time.Now()
	b.taken["a"], b.taken["b"], b.taken["c"] = now.Add(3*time.Second), now.Add(time.Second), now.Add(2*time.Second)
	if at, ok := b.firstGiveUp(); !ok || !at.Equal(now.Add(time.Second)) {
		t.Fatalf("first give-up %v %v, want %v", at, ok, now.Add(time.Second))
	}
}
