package valkeybackend_test

// Promises of the core execution lifecycle (README "Writing a worker",
// sdk/types.go, sdk/client.go, sdk/recovery.go, sdk/validate.go) that the
// conformance suite covers only partly: a producer's order within a
// priority through SubmitBatch, concurrent Submits sharing an idempotency
// key, the key's life through Client.Submit, jitter and exponential backoff
// bounds, the result limit, the reason limit's boundary, ChangePriority of
// an ended execution, the default replay limit, and a worker's second
// Complete of one attempt.

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

func cpStandalone(t *testing.T) []string {
	t.Helper()
	return topologies()[0].addrs(t)
}

func cpCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// cpClaim claims the head of lane with the backend's own claim, failing t
// when nothing is claimed.
func cpClaim(t *testing.T, ctx context.Context, b *valkeybackend.Backend, lane sdk.LaneID) *sdk.ClaimedExecution {
	t.Helper()
	// The claim reads heads through the client-side cache, whose
	// invalidation may trail a write by a moment: try for up to 2s.
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := b.Claim(ctx, sdk.ClaimArgs{Lane: lane, WorkerID: "cp-worker", WorkerInstanceID: "cp-worker-1", LeaseTTL: 30 * time.Second})
		if err == nil && c != nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("Claim(%s) = %v, %v; want a claimed execution", lane, c, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// README.md "Writing a worker", Priority: "Higher Priority runs first, then
// older first ... ids the SDK mints are time-ordered uuids (version 7), so
// one producer's executions keep their order"; sdk/types.go MinPriority:
// "higher runs first; equal priorities run in creation order".
func TestCorePromiseSubmitBatchPriorityThenProducerOrder(t *testing.T) {
	ctx := cpCtx(t)
	b := freshBackend(t, cpStandalone(t), valkeybackend.Options{Partitions: 1, DisableHandoff: true})
	c := sdk.NewClient(b)
	const lane sdk.LaneID = "cp-order"
	const n = 60
	args := make([]sdk.CreateExecutionArgs, n)
	for i := range args {
		args[i] = sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Priority: []int{0, 7, 3}[i%3] * 1000}
	}
	res, err := c.SubmitBatch(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	// Expected: priority descending, then submit order.
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return args[b].Priority - args[a].Priority })
	want := make([]sdk.ExecutionID, n)
	for i, j := range idx {
		want[i] = res[j].ID
	}
	got, err := b.ScanEligibleExecutions(ctx, sdk.ScanEligibleArgs{Lane: lane, Partition: 0, Limit: n})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("eligible order after SubmitBatch:\n got %q\nwant %q", got, want)
	}
	// The claims follow the same order.
	for i := range 6 {
		if cl := cpClaim(t, ctx, b, lane); cl.Handle.ExecutionID != want[i] {
			t.Fatalf("claim %d took %s, want %s", i, cl.Handle.ExecutionID, want[i])
		}
	}
}

// sdk/types.go:116 "IdempotencyKey makes a repeated create return the first
// id while the key lives"; sdk/client.go:128 concurrent Submits "each
// answered as its own CreateExecution would be".
func TestCorePromiseConcurrentSubmitsShareOneKey(t *testing.T) {
	ctx := cpCtx(t)
	b := freshBackend(t, cpStandalone(t), valkeybackend.Options{})
	c := sdk.NewClient(b)
	const lane sdk.LaneID = "cp-key"
	const n = 32
	res := make([]sdk.CreateExecutionResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = c.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", IdempotencyKey: "same", Payload: []byte{byte(i)}})
		}()
	}
	wg.Wait()
	firsts := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Submit %d = %v", i, errs[i])
		}
		if res[i].ID != res[0].ID {
			t.Fatalf("Submit %d got id %s, Submit 0 got %s: one key, two executions", i, res[i].ID, res[0].ID)
		}
		if !res[i].Duplicate {
			firsts++
		}
	}
	if firsts != 1 {
		t.Fatalf("%d Submits were answered as the first (Duplicate false), want exactly 1", firsts)
	}
	total := 0
	for p := range b.Partitions() {
		page, err := b.ListExecutions(ctx, p, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		total += len(page.IDs)
	}
	if total != 1 {
		t.Fatalf("%d executions listed after %d Submits with one key, want 1", total, n)
	}
}

// sdk/types.go:116-119: a repeated create returns the first id "while the
// key lives (DedupTTL ...)"; after it, a new execution.
func TestCorePromiseDedupTTLThroughClient(t *testing.T) {
	ctx := cpCtx(t)
	b := freshBackend(t, cpStandalone(t), valkeybackend.Options{})
	c := sdk.NewClient(b)
	args := sdk.CreateExecutionArgs{Lane: "cp-ttl", Kind: "k", IdempotencyKey: "ttl", DedupTTL: 300 * time.Millisecond}
	first, err := c.Submit(ctx, args)
	if err != nil || first.Duplicate {
		t.Fatalf("first Submit = %+v, %v", first, err)
	}
	again, err := c.Submit(ctx, args)
	if err != nil || !again.Duplicate || again.ID != first.ID || again.State != sdk.StateWaiting {
		t.Fatalf("Submit within DedupTTL = %+v, %v; want Duplicate of %s, waiting", again, err, first.ID)
	}
	time.Sleep(450 * time.Millisecond)
	later, err := c.Submit(ctx, args)
	if err != nil || later.Duplicate || later.ID == first.ID {
		t.Fatalf("Submit after DedupTTL = %+v, %v; want a new execution", later, err)
	}
}

// sdk/types.go:75-77 "Jitter in [0,1]: each delay is reduced by a random
// fraction up to Jitter"; :64-73 fixed: Initial is every delay.
func TestCorePromiseRetryJitterBounds(t *testing.T) {
	ctx := cpCtx(t)
	b := freshBackend(t, cpStandalone(t), valkeybackend.Options{DisableHandoff: true})
	const lane sdk.LaneID = "cp-jitter"
	const d = 2 * time.Second
	const slack = 60 * time.Millisecond
	for _, jitter := range []float64{0, 0.5, 1} {
		for range 6 {
			if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k",
				Retry: sdk.RetryPolicy{MaxRetries: 1, Backoff: sdk.Backoff{Kind: sdk.BackoffFixed, Initial: d, Jitter: jitter}}}); err != nil {
				t.Fatal(err)
			}
			cl := cpClaim(t, ctx, b, lane)
			before := time.Now()
			out, err := b.Fail(ctx, cl.Handle, "flaky", "c")
			after := time.Now()
			if err != nil || !out.RetryScheduled {
				t.Fatalf("Fail = %+v, %v; want a retry", out, err)
			}
			lo := before.Add(time.Duration(float64(d) * (1 - jitter))).Add(-slack)
			hi := after.Add(d).Add(slack)
			if out.RetryAt.Before(lo) || out.RetryAt.After(hi) {
				t.Fatalf("jitter %.1f: retry at +%v, want within [%v, %v] of the Fail", jitter, out.RetryAt.Sub(before),
					time.Duration(float64(d)*(1-jitter)), d)
			}
		}
	}
}

// sdk/types.go:64-73: exponential delays Initial*Multiplier^n capped at
// Max; sdk/types.go:84 "MaxRetries is how many retries follow the first
// attempt".
func TestCorePromiseExponentialBackoffCapAndRetryCount(t *testing.T) {
	ctx := cpCtx(t)
	b := freshBackend(t, cpStandalone(t), valkeybackend.Options{Partitions: 1, DisableHandoff: true})
	const lane sdk.LaneID = "cp-exp"
	res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k",
		Retry: sdk.RetryPolicy{MaxRetries: 3, Backoff: sdk.Backoff{Initial: 100 * time.Millisecond, Multiplier: 3, Max: 250 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond}
	for i := 0; ; i++ {
		cl := cpClaim(t, ctx, b, lane)
		before := time.Now()
		out, err := b.Fail(ctx, cl.Handle, "flaky", "c")
		if err != nil {
			t.Fatal(err)
		}
		if i == len(want) {
			if out.RetryScheduled {
				t.Fatalf("failure %d of MaxRetries 3 scheduled another retry", i+1)
			}
			break
		}
		if !out.RetryScheduled {
			t.Fatalf("failure %d: no retry scheduled, want one (MaxRetries 3)", i+1)
		}
		if got := out.RetryAt.Sub(before); got < want[i]-60*time.Millisecond || got > want[i]+60*time.Millisecond {
			t.Fatalf("retry %d after %v, want %v", i+1, got, want[i])
		}
		time.Sleep(time.Until(out.RetryAt) + 20*time.Millisecond)
		if n, err := b.PromoteDelayed(ctx, sdk.PromoteDelayedArgs{Lane: lane, Partition: 0}); err != nil || n != 1 {
			t.Fatalf("PromoteDelayed = %d, %v; want 1", n, err)
		}
	}
	s, err := b.DescribeExecution(ctx, res.ID)
	if err != nil || s.State != sdk.StateFailed || s.TotalAttempts != 4 {
		t.Fatalf("after 4 failures: %+v, %v; want failed after 4 attempts", s, err)
	}
}

// README.md "Writing a worker", Limits: "an execution's whole context
// (payload plus tags) and its result are bounded by
// valkeybackend.Options.MaxPayloadBytes ... Past a limit the call fails with
// a validation error and writes nothing."
func TestCorePromiseResultLimitWritesNothing(t *testing.T) {
	ctx := cpCtx(t)
	addrs := cpStandalone(t)
	const limit = 1024
	b := freshBackend(t, addrs, valkeybackend.Options{MaxPayloadBytes: limit, DisableHandoff: true})
	const lane sdk.LaneID = "cp-result"
	res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	cl := cpClaim(t, ctx, b, lane)
	before := keyspace(t, addrs)
	err = b.Complete(ctx, cl.Handle, bytes.Repeat([]byte{1}, limit+1))
	if sdk.KindOf(err) != sdk.KindValidation {
		t.Fatalf("Complete with a result of MaxPayloadBytes+1 = %v, want a validation error", err)
	}
	if after := keyspace(t, addrs); !maps.Equal(before, after) {
		t.Fatalf("a refused Complete changed the keyspace")
	}
	if outs := b.CompleteBatch(ctx, []sdk.CompleteItem{{Handle: cl.Handle, Result: bytes.Repeat([]byte{1}, limit+1)}}); len(outs) != 1 || sdk.KindOf(outs[0].Err) != sdk.KindValidation {
		t.Fatalf("CompleteBatch with a result of MaxPayloadBytes+1 = %+v, want a validation error", outs)
	}
	if after := keyspace(t, addrs); !maps.Equal(before, after) {
		t.Fatalf("a refused CompleteBatch item changed the keyspace")
	}
	full := bytes.Repeat([]byte{2}, limit)
	if err := b.Complete(ctx, cl.Handle, full); err != nil {
		t.Fatalf("Complete with a result of exactly MaxPayloadBytes = %v", err)
	}
	if r, err := b.GetExecutionResult(ctx, res.ID); err != nil || !bytes.Equal(r, full) {
		t.Fatalf("GetExecutionResult = %d bytes, %v; want the %d-byte result", len(r), err, limit)
	}
}

// sdk/validate.go:31-33 MaxReasonBytes "bounds a failure, cancel, revoke or
// routing reason": one of exactly MaxReasonBytes is accepted and kept whole.
func TestCorePromiseReasonAtLimitKeptWhole(t *testing.T) {
	ctx := cpCtx(t)
	b := freshBackend(t, cpStandalone(t), valkeybackend.Options{})
	res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "cp-reason", Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	reason := strings.Repeat("é", sdk.MaxReasonBytes/2)
	if _, err := b.CancelExecution(ctx, sdk.CancelExecutionArgs{ExecutionID: res.ID, Reason: reason}); err != nil {
		t.Fatalf("CancelExecution with a reason of MaxReasonBytes = %v", err)
	}
	if s, err := b.DescribeExecution(ctx, res.ID); err != nil || s.CancellationReason != reason {
		t.Fatalf("CancellationReason: %d bytes, %v; want the %d given", len(s.CancellationReason), err, len(reason))
	}
}

// sdk/backend.go:81 / sdk/client.go:258 "ChangePriority re-scores a waiting
// execution": an ended one is refused and keeps its priority.
func TestCorePromiseChangePriorityOfEndedExecution(t *testing.T) {
	ctx := cpCtx(t)
	addrs := cpStandalone(t)
	b := freshBackend(t, addrs, valkeybackend.Options{DisableHandoff: true})
	const lane sdk.LaneID = "cp-prio"
	res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Priority: 5})
	if err != nil {
		t.Fatal(err)
	}
	cl := cpClaim(t, ctx, b, lane)
	if err := b.Complete(ctx, cl.Handle, nil); err != nil {
		t.Fatal(err)
	}
	before := keyspace(t, addrs)
	if r, err := b.ChangePriority(ctx, sdk.ChangePriorityArgs{ExecutionID: res.ID, Priority: 9}); err == nil {
		t.Fatalf("ChangePriority of a completed execution = %+v, nil; want an error", r)
	}
	if !maps.Equal(before, keyspace(t, addrs)) {
		t.Fatalf("a refused ChangePriority changed the keyspace")
	}
}

// sdk/recovery.go:42 "MaxReplays default 10": ten replays, then
// replay_limit_exceeded.
func TestCorePromiseDefaultReplayLimit(t *testing.T) {
	ctx := cpCtx(t)
	b := freshBackend(t, cpStandalone(t), valkeybackend.Options{DisableHandoff: true})
	const lane sdk.LaneID = "cp-replay"
	res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		cl := cpClaim(t, ctx, b, lane)
		if err := b.Complete(ctx, cl.Handle, nil); err != nil {
			t.Fatal(err)
		}
		_, err := b.ReplayExecution(ctx, sdk.ReplayExecutionArgs{ExecutionID: res.ID})
		if i < 10 {
			if err != nil {
				t.Fatalf("replay %d = %v; want it allowed (default MaxReplays 10)", i+1, err)
			}
			continue
		}
		var se *sdk.Error
		if !errors.As(err, &se) || se.Code != sdk.CodeReplayLimitExceeded {
			t.Fatalf("replay 11 = %v; want replay_limit_exceeded", err)
		}
		break
	}
}

// sdk/task.go:126-131 Complete "ends the execution successfully and stores
// result"; README "exactly once": a second Complete of the same attempt is
// refused and the first result stays.
func TestCorePromiseWorkerSecondCompleteRefused(t *testing.T) {
	ctx := cpCtx(t)
	b := freshBackend(t, cpStandalone(t), valkeybackend.Options{})
	lane := sdk.LaneID("cp-twice")
	c := sdk.NewClient(b)
	second := make(chan error, 1)
	mux := sdk.NewMux()
	mux.HandleFunc("k", func(ctx context.Context, task *sdk.Task) error {
		if err := task.Complete(ctx, []byte("one")); err != nil {
			return err
		}
		second <- task.Complete(ctx, []byte("two"))
		return errors.New("an error after the attempt completed")
	})
	w, err := sdk.NewWorker(b, sdk.WorkerConfig{WorkerID: "cp", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx, mux) }()
	defer func() { stop(); <-done }()
	sub, err := c.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k",
		Retry: sdk.RetryPolicy{MaxRetries: 3, Backoff: sdk.Backoff{ZeroDelay: true}}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-second:
		if err == nil {
			t.Fatalf("a second Complete of the same attempt returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not run")
	}
	r, err := c.WaitResult(ctx, sub.ID, 0)
	if err != nil || string(r) != "one" {
		t.Fatalf("WaitResult = %q, %v; want the first result", r, err)
	}
	time.Sleep(100 * time.Millisecond)
	if s, err := c.Describe(ctx, sub.ID); err != nil || s.State != sdk.StateCompleted || s.TotalAttempts != 1 {
		t.Fatalf("Describe = %+v, %v; want completed after 1 attempt", s, err)
	}
}

// sdk/types.go:114 "Deadline bounds the whole execution": one still
// delayed (DelayUntil past its deadline) or blocked for routing when the
// deadline passes ends expired and is never promoted.
func TestCorePromiseDeadlineExpiresDelayedAndBlocked(t *testing.T) {
	ctx := cpCtx(t)
	b := freshBackend(t, cpStandalone(t), valkeybackend.Options{Partitions: 1, DisableHandoff: true})
	const lane sdk.LaneID = "cp-deadline"
	deadline := time.Now().Add(200 * time.Millisecond)
	delayed, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", DelayUntil: time.Now().Add(400 * time.Millisecond), Deadline: deadline})
	if err != nil || delayed.State != sdk.StateDelayed {
		t.Fatalf("create delayed = %+v, %v", delayed, err)
	}
	blocked, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Deadline: deadline})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := b.BlockRoute(ctx, sdk.BlockRouteArgs{ExecutionID: blocked.ID, Lane: lane}); err != nil || !out.Blocked {
		t.Fatalf("BlockRoute = %+v, %v", out, err)
	}
	time.Sleep(time.Until(deadline) + 30*time.Millisecond)
	due, err := b.Due(ctx, 0, valkeybackend.DueDeadlines, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []sdk.ExecutionID{delayed.ID, blocked.ID} {
		if !slices.Contains(due, id) {
			t.Fatalf("Due(deadlines) = %q after the deadline passed; missing %s", due, id)
		}
	}
	if _, err := b.Expire(ctx, due, valkeybackend.DueDeadlines); err != nil {
		t.Fatal(err)
	}
	for _, id := range []sdk.ExecutionID{delayed.ID, blocked.ID} {
		if s, err := b.ReadExecutionState(ctx, id); err != nil || s != sdk.StateExpired {
			t.Fatalf("state of %s after its deadline = %q, %v; want expired", id, s, err)
		}
	}
	time.Sleep(250 * time.Millisecond) // past DelayUntil
	if n, err := b.PromoteDelayed(ctx, sdk.PromoteDelayedArgs{Lane: lane, Partition: 0}); err != nil || n != 0 {
		t.Fatalf("PromoteDelayed after expiry = %d, %v; want 0", n, err)
	}
}

// sdk/client.go:131-133 "A Submit whose ctx ends before its batch goes out
// is withdrawn (nothing is created) and returns a timeout error".
func TestCorePromiseSubmitWithEndedContextCreatesNothing(t *testing.T) {
	ctx := cpCtx(t)
	addrs := cpStandalone(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	c := sdk.NewClient(b)
	if _, err := c.Submit(ctx, sdk.CreateExecutionArgs{Lane: "cp-ended", Kind: "k"}); err != nil {
		t.Fatal(err)
	}
	before := keyspace(t, addrs)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	_, err := c.Submit(ended, sdk.CreateExecutionArgs{Lane: "cp-ended", Kind: "k"})
	if err == nil {
		t.Fatal("Submit with an ended context = nil error")
	}
	if k := sdk.KindOf(err); k != sdk.KindTimeout {
		t.Fatalf("Submit with an ended context = %v (kind %q), want kind timeout", err, k)
	}
	if !maps.Equal(before, keyspace(t, addrs)) {
		t.Fatal("a withdrawn Submit changed the keyspace")
	}
}

// sdk/config.go:84 "MaxConcurrency bounds tasks running at once".
func TestCorePromiseWorkerMaxConcurrency(t *testing.T) {
	ctx := cpCtx(t)
	b := freshBackend(t, cpStandalone(t), valkeybackend.Options{})
	const lane sdk.LaneID = "cp-conc"
	const limit, n = 3, 15
	var mu sync.Mutex
	running, peak, done := 0, 0, 0
	all := make(chan struct{})
	mux := sdk.NewMux()
	mux.HandleFunc("k", func(ctx context.Context, task *sdk.Task) error {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		time.Sleep(30 * time.Millisecond)
		mu.Lock()
		running--
		done++
		if done == n {
			close(all)
		}
		mu.Unlock()
		return nil
	})
	w, err := sdk.NewWorker(b, sdk.WorkerConfig{WorkerID: "cp", Lanes: []sdk.LaneID{lane}, MaxConcurrency: limit})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	exited := make(chan error, 1)
	go func() { exited <- w.Run(wctx, mux) }()
	defer func() { stop(); <-exited }()
	args := make([]sdk.CreateExecutionArgs, n)
	for i := range args {
		args[i] = sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}
	}
	if _, err := sdk.NewClient(b).SubmitBatch(ctx, args); err != nil {
		t.Fatal(err)
	}
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		t.Fatal("tasks did not all run within 10s")
	}
	if peak > limit {
		t.Fatalf("%d handlers ran at once, MaxConcurrency %d", peak, limit)
	}
}

// sdk/backend.go:81 "ChangePriority re-scores a waiting execution": an
// active one is not waiting; the call must not change its record.
func TestCorePromiseChangePriorityOfActiveExecution(t *testing.T) {
	ctx := cpCtx(t)
	addrs := cpStandalone(t)
	b := freshBackend(t, addrs, valkeybackend.Options{DisableHandoff: true})
	const lane sdk.LaneID = "cp-prio-active"
	res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Priority: 5})
	if err != nil {
		t.Fatal(err)
	}
	cpClaim(t, ctx, b, lane)
	before := keyspace(t, addrs)
	if r, err := b.ChangePriority(ctx, sdk.ChangePriorityArgs{ExecutionID: res.ID, Priority: 9}); err == nil || sdk.KindOf(err) != sdk.KindState {
		t.Fatalf("ChangePriority of an active execution = %+v, %v; want a state error", r, err)
	}
	if !maps.Equal(before, keyspace(t, addrs)) {
		t.Fatal("a refused ChangePriority changed the keyspace")
	}
	if ids, _ := b.ScanEligibleExecutions(ctx, sdk.ScanEligibleArgs{Lane: lane, Partition: mustPartition(t, res.ID), Limit: 10}); slices.Contains(ids, res.ID) {
		t.Fatal("ChangePriority of an active execution made it eligible again")
	}
}

func mustPartition(t *testing.T, id sdk.ExecutionID) int {
	t.Helper()
	p, err := id.Partition()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sdk/types.go CreateExecutionArgs.IdempotencyKey: "the key is kept on the
// partition the create lands on, so a repeat finds it when it lands there
// too: one with no ID ... or with an ID on the first's partition (the same
// ID, say)". With a caller-chosen ID on each partition: a repeat with the
// same ID, or another ID on that partition, is a Duplicate of the first.
func TestCorePromiseIdempotencyKeyWithCallerID(t *testing.T) {
	ctx := cpCtx(t)
	b := freshBackend(t, cpStandalone(t), valkeybackend.Options{})
	c := sdk.NewClient(b)
	for p := range b.Partitions() {
		key := "caller-id-" + string(rune('a'+p))
		id := sdk.NewExecutionID(p)
		first, err := c.Submit(ctx, sdk.CreateExecutionArgs{ID: id, Lane: "cp-keyid", Kind: "k", IdempotencyKey: key})
		if err != nil || first.ID != id || first.Duplicate {
			t.Fatalf("first Submit with id %s and key = %+v, %v", id, first, err)
		}
		again, err := c.Submit(ctx, sdk.CreateExecutionArgs{ID: id, Lane: "cp-keyid", Kind: "k", IdempotencyKey: key})
		if err != nil || again.ID != id || !again.Duplicate {
			t.Fatalf("partition %d: the same create repeated = %+v, %v; want Duplicate of %s", p, again, err, id)
		}
		sameP, err := c.Submit(ctx, sdk.CreateExecutionArgs{ID: sdk.NewExecutionID(p), Lane: "cp-keyid", Kind: "k", IdempotencyKey: key})
		if err != nil || sameP.ID != id || !sameP.Duplicate {
			t.Fatalf("partition %d: repeat of the key with another id on the same partition = %+v, %v; want Duplicate of %s", p, sameP, err, id)
		}
	}
}

// sdk/types.go:243-247 RevokeLeaseArgs.ExpectedLeaseID "when set, revokes
// only that lease": another lease id is refused and writes nothing.
func TestCorePromiseRevokeExpectedLeaseID(t *testing.T) {
	ctx := cpCtx(t)
	addrs := cpStandalone(t)
	b := freshBackend(t, addrs, valkeybackend.Options{DisableHandoff: true})
	const lane sdk.LaneID = "cp-revoke"
	res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	cl := cpClaim(t, ctx, b, lane)
	other := cl.Handle.LeaseID
	other = other[:len(other)-1] + map[bool]string{true: "0", false: "1"}[other[len(other)-1] != '0']
	before := keyspace(t, addrs)
	if r, err := b.RevokeLease(ctx, sdk.RevokeLeaseArgs{ExecutionID: res.ID, ExpectedLeaseID: other, Reason: "x"}); err == nil {
		t.Fatalf("RevokeLease with another lease id = %+v, nil; want an error", r)
	}
	if !maps.Equal(before, keyspace(t, addrs)) {
		t.Fatal("a refused RevokeLease changed the keyspace")
	}
	if _, err := b.Renew(ctx, cl.Handle); err != nil {
		t.Fatalf("renewal after a refused revoke = %v", err)
	}
	r, err := b.RevokeLease(ctx, sdk.RevokeLeaseArgs{ExecutionID: res.ID, ExpectedLeaseID: cl.Handle.LeaseID, Reason: "x"})
	if err != nil || r.LeaseID != cl.Handle.LeaseID {
		t.Fatalf("RevokeLease with the holder's lease id = %+v, %v", r, err)
	}
	if err := b.Complete(ctx, cl.Handle, nil); !errors.Is(err, sdk.ErrLeaseRevoked) {
		t.Fatalf("Complete after the revoke = %v, want lease_revoked", err)
	}
}
