package sdktest

import (
	"bytes"
	"maps"
	"slices"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// binaryPayload holds every byte value, so any text conversion on the way
// (UTF-8 repair, NUL truncation, CRLF handling) shows.
func binaryPayload() []byte {
	b := make([]byte, 0, 260)
	for i := range 256 {
		b = append(b, byte(i))
	}
	return append(b, '\r', '\n', 0x00, 0xff)
}

// requireContext checks ReadExecutionContext returns exactly what was submitted.
func (e *env) requireContext(id sdk.ExecutionID, lane sdk.LaneID, kind string, payload []byte, tags map[string]string) {
	e.t.Helper()
	c, err := e.b.ReadExecutionContext(e.ctx, id)
	if err != nil {
		e.t.Fatalf("ReadExecutionContext(%s) = %v", id, err)
	}
	e.checkContext("ReadExecutionContext("+string(id)+")", c, sdk.ExecutionContext{Lane: lane, Kind: kind, Payload: payload, Tags: tags})
}

// contextOf is the context a create with args stores.
func contextOf(args sdk.CreateExecutionArgs) sdk.ExecutionContext {
	return sdk.ExecutionContext{Lane: args.Lane, Kind: args.Kind, Payload: args.Payload, Tags: args.Tags}
}

// checkContext fails unless c is exactly want, byte for byte.
func (e *env) checkContext(what string, c, want sdk.ExecutionContext) {
	e.t.Helper()
	if c.Lane != want.Lane || c.Kind != want.Kind {
		e.t.Fatalf("%s: lane %q kind %q, want %q %q", what, c.Lane, c.Kind, want.Lane, want.Kind)
	}
	if !bytes.Equal(c.Payload, want.Payload) {
		e.t.Fatalf("%s: payload differs:\n got %d bytes % x\nwant %d bytes % x", what, len(c.Payload), c.Payload, len(want.Payload), want.Payload)
	}
	if len(c.Tags) != len(want.Tags) || (len(want.Tags) > 0 && !maps.Equal(c.Tags, want.Tags)) {
		e.t.Fatalf("%s: tags %q, want %q", what, c.Tags, want.Tags)
	}
}

func (e *env) requireAttempts(id sdk.ExecutionID, total int, current sdk.AttemptIndex) {
	e.t.Helper()
	n, err := e.b.ReadTotalAttemptCount(e.ctx, id)
	if err != nil || n != total {
		e.t.Fatalf("ReadTotalAttemptCount(%s) = %d, %v; want %d", id, n, err, total)
	}
	i, err := e.b.ReadCurrentAttemptIndex(e.ctx, id)
	if err != nil || i != current {
		e.t.Fatalf("ReadCurrentAttemptIndex(%s) = %d, %v; want %d", id, i, err, current)
	}
	s := e.describe(id)
	if s.TotalAttempts != total || s.CurrentAttemptIndex != current {
		e.t.Fatalf("DescribeExecution(%s): TotalAttempts %d CurrentAttemptIndex %d, want %d %d", id, s.TotalAttempts, s.CurrentAttemptIndex, total, current)
	}
}

// testLifecycle: create → scan → grant → claim → renew → progress → complete,
// and every read along the way.
func testLifecycle(e *env) {
	const lane sdk.LaneID = "sdktest-lifecycle"
	const kind = "email.send"
	payload := binaryPayload()
	tags := map[string]string{"tenant": "acme", "note": "spaces, commas and ünïcode", "empty": ""}
	created := time.Now()
	id := e.create(sdk.CreateExecutionArgs{Lane: lane, Kind: kind, Payload: payload, Priority: 3, Tags: tags})
	p := e.partition(id)

	e.requireState(id, sdk.StateWaiting, "after create")
	s := e.describe(id)
	if s.Lane != lane || s.Kind != kind || s.Priority != 3 || !maps.Equal(s.Tags, tags) {
		e.t.Fatalf("DescribeExecution after create: lane %q kind %q priority %d tags %q; want %q %q 3 %q", s.Lane, s.Kind, s.Priority, s.Tags, lane, kind, tags)
	}
	e.requireAround("CreatedAt", s.CreatedAt, created, time.Now())
	if !s.StartedAt.IsZero() || !s.CompletedAt.IsZero() || s.TotalAttempts != 0 {
		e.t.Fatalf("DescribeExecution after create: StartedAt %v CompletedAt %v TotalAttempts %d, want zero", s.StartedAt, s.CompletedAt, s.TotalAttempts)
	}
	e.requireContext(id, lane, kind, payload, tags)
	if r, err := e.b.GetExecutionResult(e.ctx, id); err != nil || r != nil {
		e.t.Fatalf("GetExecutionResult of a waiting execution = %q, %v; want nil, nil", r, err)
	}

	if got := e.scan(lane, p, 10); !slices.Equal(got, []sdk.ExecutionID{id}) {
		e.t.Fatalf("ScanEligibleExecutions(%q, %d) = %q, want [%s]", lane, p, got, id)
	}

	const ttl = 2 * time.Second
	c := e.claim(id, lane, ttl)
	h := c.Handle
	if c.AttemptType != sdk.AttemptInitial || h.AttemptIndex != 0 || h.Epoch < 1 {
		e.t.Fatalf("first claim: attempt type %q index %d epoch %d; want initial, 0, >=1", c.AttemptType, h.AttemptIndex, h.Epoch)
	}
	e.requireScannable(lane, id, false, "after claim")
	s = e.describe(id)
	if s.StartedAt.IsZero() || s.LeaseEpoch != h.Epoch || s.LeaseExpiresAt.IsZero() {
		e.t.Fatalf("DescribeExecution after claim: StartedAt %v LeaseEpoch %d LeaseExpiresAt %v; want set, %d, set", s.StartedAt, s.LeaseEpoch, s.LeaseExpiresAt, h.Epoch)
	}
	if s.WorkerInstanceID != workerInstance {
		e.t.Fatalf("DescribeExecution after claim: WorkerInstanceID %q, want %q", s.WorkerInstanceID, workerInstance)
	}
	e.requireAttempts(id, 1, 0)

	e.sleep(20 * time.Millisecond)
	before := time.Now()
	r, err := e.b.Renew(e.ctx, h)
	if err != nil {
		e.t.Fatalf("Renew = %v", err)
	}
	if r.Epoch != h.Epoch {
		e.t.Fatalf("Renew changed the epoch: %d, want %d", r.Epoch, h.Epoch)
	}
	if !r.ExpiresAt.After(c.ExpiresAt) {
		e.t.Fatalf("Renew did not move the expiry forward: %v, was %v", r.ExpiresAt, c.ExpiresAt)
	}
	e.requireAround("renewed lease expiry", r.ExpiresAt, before.Add(ttl), time.Now().Add(ttl))

	e.must("Progress", e.b.Progress(e.ctx, h, 50, "halfway, 50%"))
	if s := e.describe(id); s.ProgressPercent != 50 || s.ProgressMessage != "halfway, 50%" {
		e.t.Fatalf("after Progress: %d %q, want 50 %q", s.ProgressPercent, s.ProgressMessage, "halfway, 50%")
	}

	result := []byte{0x00, 0xff, 0x00, 'o', 'k', 0xfe, '\r', '\n'}
	e.must("Complete", e.b.Complete(e.ctx, h, result))
	e.requireState(id, sdk.StateCompleted, "after Complete")
	if s := e.describe(id); s.CompletedAt.IsZero() {
		e.t.Fatalf("DescribeExecution after Complete: CompletedAt is zero")
	}
	got, err := e.b.GetExecutionResult(e.ctx, id)
	if err != nil || !bytes.Equal(got, result) {
		e.t.Fatalf("GetExecutionResult = % x, %v; want % x", got, err, result)
	}
	e.requireAttempts(id, 1, 0)
	e.requireContext(id, lane, kind, payload, tags)
	e.requireScannable(lane, id, false, "after Complete")
}

// testRetryFixed: the retry policy decides between a delayed retry and a
// terminal failure; each retry is a new attempt under a higher epoch.
func testRetryFixed(e *env) {
	const lane sdk.LaneID = "sdktest-retry"
	const delay = 50 * time.Millisecond
	args := simple(lane)
	args.Retry = sdk.RetryPolicy{MaxRetries: 2, Backoff: sdk.Backoff{Kind: sdk.BackoffFixed, Initial: delay}}
	id := e.create(args)
	p := e.partition(id)

	prev := e.claim(id, lane, leaseTTL)
	for attempt := 1; attempt <= 3; attempt++ {
		out, t0, t1 := e.fail(prev.Handle, "boom", "transient")
		if attempt == 3 {
			if out.RetryScheduled || !out.RetryAt.IsZero() {
				e.t.Fatalf("third Fail with MaxRetries 2: %+v, want no retry", out)
			}
			break
		}
		if !out.RetryScheduled {
			e.t.Fatalf("Fail %d with MaxRetries 2: no retry scheduled", attempt)
		}
		e.requireAround("RetryAt", out.RetryAt, t0.Add(delay), t1.Add(delay))
		e.requireState(id, sdk.StateDelayed, "retry scheduled")
		e.requireScannable(lane, id, false, "retry scheduled")
		// The failed attempt's handle is dead.
		e.rejects("Renew with the failed attempt's handle", func() error {
			_, err := e.b.Renew(e.ctx, prev.Handle)
			return err
		}, sdk.ErrExecutionNotActive)

		promoted := e.promoteDue(lane, p, 1)
		if promoted.Before(out.RetryAt.Add(-clockSlack)) {
			e.t.Fatalf("retry due at %v was promoted early, at %v", out.RetryAt, promoted)
		}
		e.requireState(id, sdk.StateWaiting, "retry promoted")
		e.requireScannable(lane, id, true, "retry promoted")

		c := e.claim(id, lane, leaseTTL)
		if c.AttemptType != sdk.AttemptRetry || c.Handle.AttemptIndex != sdk.AttemptIndex(attempt) {
			e.t.Fatalf("claim after retry %d: attempt type %q index %d, want retry %d", attempt, c.AttemptType, c.Handle.AttemptIndex, attempt)
		}
		if c.Handle.Epoch <= prev.Handle.Epoch {
			e.t.Fatalf("claim after retry %d: epoch %d, not above %d", attempt, c.Handle.Epoch, prev.Handle.Epoch)
		}
		if c.Handle.AttemptID == prev.Handle.AttemptID || c.Handle.LeaseID == prev.Handle.LeaseID {
			e.t.Fatalf("claim after retry %d reused the attempt id or lease id", attempt)
		}
		// A zombie holder of the old attempt is fenced off.
		e.rejects("Complete with the previous attempt's handle", func() error {
			return e.b.Complete(e.ctx, prev.Handle, []byte("zombie"))
		}, sdk.ErrStaleLease)
		e.requireAttempts(id, attempt+1, sdk.AttemptIndex(attempt))
		prev = c
	}
	e.requireState(id, sdk.StateFailed, "retries exhausted")
	e.requireScannable(lane, id, false, "retries exhausted")
	if n := e.promote(lane, p); n != 0 {
		e.t.Fatalf("PromoteDelayed after terminal failure = %d, want 0", n)
	}
	e.requireAttempts(id, 3, 2)
	s := e.describe(id)
	if s.RetryCount != 2 || s.FailureReason != "boom" || s.FailureCategory != "transient" || s.CompletedAt.IsZero() {
		e.t.Fatalf("DescribeExecution after terminal failure: RetryCount %d FailureReason %q FailureCategory %q CompletedAt %v",
			s.RetryCount, s.FailureReason, s.FailureCategory, s.CompletedAt)
	}
	if r, err := e.b.GetExecutionResult(e.ctx, id); err != nil || r != nil {
		e.t.Fatalf("GetExecutionResult of a failed execution = %q, %v; want nil, nil", r, err)
	}
}

// testRetryExponential: exponential delays grow by Multiplier up to Max.
func testRetryExponential(e *env) {
	const lane sdk.LaneID = "sdktest-retry-exp"
	cases := []struct {
		name   string
		max    time.Duration
		delays []time.Duration
	}{
		{"uncapped", 10 * time.Second, []time.Duration{40 * time.Millisecond, 80 * time.Millisecond}},
		{"capped by Max", 55 * time.Millisecond, []time.Duration{40 * time.Millisecond, 55 * time.Millisecond}},
	}
	for _, tc := range cases {
		args := simple(lane)
		args.Retry = sdk.RetryPolicy{MaxRetries: 3, Backoff: sdk.Backoff{
			Kind: sdk.BackoffExponential, Initial: 40 * time.Millisecond, Multiplier: 2, Max: tc.max, Jitter: 0,
		}}
		id := e.create(args)
		p := e.partition(id)
		// measured[i] is RetryAt minus the local time Fail was sent;
		// slop[i] is how long that Fail took.
		var measured, slop []time.Duration
		for i, want := range tc.delays {
			c := e.claim(id, lane, leaseTTL)
			out, t0, t1 := e.fail(c.Handle, "boom", "")
			if !out.RetryScheduled {
				e.t.Fatalf("%s: Fail %d: no retry scheduled", tc.name, i+1)
			}
			e.requireAround(tc.name+": RetryAt", out.RetryAt, t0.Add(want), t1.Add(want))
			measured = append(measured, out.RetryAt.Sub(t0))
			slop = append(slop, t1.Sub(t0))
			e.promoteDue(lane, p, 1)
		}
		// The server-to-local clock offset cancels in the difference,
		// so the growth is checked to a few milliseconds.
		growth := measured[1] - measured[0]
		want := tc.delays[1] - tc.delays[0]
		tol := 3*time.Millisecond + slop[0] + slop[1]
		if growth < want-tol || growth > want+tol {
			e.t.Fatalf("%s: the second retry delay exceeds the first by %v, want %v ± %v (delays %v)", tc.name, growth, want, tol, measured)
		}
	}
}

// testRetryableCategories: only listed failure categories retry.
func testRetryableCategories(e *env) {
	const lane sdk.LaneID = "sdktest-retry-cats"
	args := simple(lane)
	args.Retry = sdk.RetryPolicy{
		MaxRetries:          3,
		Backoff:             sdk.Backoff{Kind: sdk.BackoffFixed, Initial: 10 * time.Millisecond},
		RetryableCategories: []string{"transient", "timeout"},
	}
	terminal := e.create(args)
	c := e.claim(terminal, lane, leaseTTL)
	if out, _, _ := e.fail(c.Handle, "bad input", "fatal"); out.RetryScheduled {
		e.t.Fatalf("Fail with a category outside RetryableCategories scheduled a retry: %+v", out)
	}
	e.requireState(terminal, sdk.StateFailed, "non-retryable category")
	if s := e.describe(terminal); s.FailureCategory != "fatal" || s.RetryCount != 0 {
		e.t.Fatalf("after a non-retryable failure: FailureCategory %q RetryCount %d, want fatal 0", s.FailureCategory, s.RetryCount)
	}

	retried := e.create(args)
	c = e.claim(retried, lane, leaseTTL)
	if out, _, _ := e.fail(c.Handle, "slow", "timeout"); !out.RetryScheduled {
		e.t.Fatalf("Fail with a listed category did not retry")
	}
	e.requireState(retried, sdk.StateDelayed, "retryable category")
}

// testZeroDelayRetry: Backoff{Initial: 0, ZeroDelay: true} retries at once;
// Initial 0 without ZeroDelay means the default delay (1s).
func testZeroDelayRetry(e *env) {
	const lane sdk.LaneID = "sdktest-zero-delay"
	args := simple(lane)
	args.Retry = sdk.RetryPolicy{MaxRetries: 1, Backoff: sdk.Backoff{Initial: 0, ZeroDelay: true}}
	id := e.create(args)
	p := e.partition(id)
	c := e.claim(id, lane, leaseTTL)
	out, t0, t1 := e.fail(c.Handle, "boom", "")
	if !out.RetryScheduled {
		e.t.Fatalf("zero-delay Fail: no retry scheduled")
	}
	e.requireAround("zero-delay RetryAt", out.RetryAt, t0, t1)
	// A backend may make the retry eligible at once or park it in the
	// delayed set already due; either way one PromoteDelayed call suffices.
	switch st := e.state(id); st {
	case sdk.StateDelayed:
		if n := e.promote(lane, p); n != 1 {
			e.t.Fatalf("PromoteDelayed right after a zero-delay retry = %d, want 1", n)
		}
	case sdk.StateWaiting:
		if n := e.promote(lane, p); n != 0 {
			e.t.Fatalf("PromoteDelayed with nothing delayed = %d, want 0", n)
		}
	default:
		e.t.Fatalf("after a zero-delay retry: state %q, want waiting or delayed", st)
	}
	e.requireState(id, sdk.StateWaiting, "zero-delay retry due")
	e.requireScannable(lane, id, true, "zero-delay retry due")
	c2 := e.claim(id, lane, leaseTTL)
	if c2.AttemptType != sdk.AttemptRetry || c2.Handle.AttemptIndex != 1 || c2.Handle.Epoch <= c.Handle.Epoch {
		e.t.Fatalf("claim of the zero-delay retry: type %q index %d epoch %d (was %d)", c2.AttemptType, c2.Handle.AttemptIndex, c2.Handle.Epoch, c.Handle.Epoch)
	}
	e.must("Complete", e.b.Complete(e.ctx, c2.Handle, []byte("ok")))
	e.requireState(id, sdk.StateCompleted, "after Complete")

	// Initial 0 without ZeroDelay is the default delay, one second.
	args.Retry = sdk.RetryPolicy{MaxRetries: 1}
	id = e.create(args)
	p = e.partition(id)
	c = e.claim(id, lane, leaseTTL)
	out, t0, t1 = e.fail(c.Handle, "boom", "")
	if !out.RetryScheduled {
		e.t.Fatalf("Fail with the default backoff: no retry scheduled")
	}
	e.requireAround("default-backoff RetryAt", out.RetryAt, t0.Add(time.Second), t1.Add(time.Second))
	e.requireState(id, sdk.StateDelayed, "default backoff")
	if n := e.promote(lane, p); n != 0 {
		e.t.Fatalf("PromoteDelayed before the default backoff passed = %d, want 0", n)
	}
}

// testDelay: executions created delayed, and delayed by their lease holder
// (which interrupts the attempt: the next claim must resume it).
func testDelay(e *env) {
	const lane sdk.LaneID = "sdktest-delay"
	until := time.Now().Add(300 * time.Millisecond)
	args := simple(lane)
	args.DelayUntil = until
	id := e.create(args)
	p := e.partition(id)
	e.requireState(id, sdk.StateDelayed, "created delayed")
	if s := e.describe(id); s.DelayUntil.Sub(until).Abs() > time.Millisecond {
		e.t.Fatalf("DescribeExecution: DelayUntil %v, want %v", s.DelayUntil, until)
	}
	e.requireScannable(lane, id, false, "created delayed")
	e.rejects("IssueClaimGrant on a delayed execution", func() error {
		_, err := e.b.IssueClaimGrant(e.ctx, grantArgs(id, lane, workerID))
		return err
	}, sdk.ErrContention, sdk.ErrState)
	if time.Until(until) > 100*time.Millisecond {
		if n := e.promote(lane, p); n != 0 {
			e.t.Fatalf("PromoteDelayed before the delay passed = %d, want 0", n)
		}
		e.requireState(id, sdk.StateDelayed, "promoted before due")
	}
	promoted := e.promoteDue(lane, p, 1)
	if promoted.Before(until.Add(-clockSlack)) {
		e.t.Fatalf("execution delayed until %v was promoted early, at %v", until, promoted)
	}
	e.requireState(id, sdk.StateWaiting, "delay passed")
	e.requireScannable(lane, id, true, "delay passed")
	if s := e.describe(id); !s.DelayUntil.IsZero() {
		e.t.Fatalf("DescribeExecution of a promoted execution: DelayUntil %v, want zero", s.DelayUntil)
	}

	// Delay by the lease holder.
	id = e.create(simple(lane))
	p = e.partition(id)
	c := e.claim(id, lane, leaseTTL)
	e.rejects("Delay with a zero time", func() error {
		return e.b.Delay(e.ctx, c.Handle, time.Time{})
	}, sdk.ErrValidation)
	until = time.Now().Add(200 * time.Millisecond)
	e.must("Delay", e.b.Delay(e.ctx, c.Handle, until))
	e.requireState(id, sdk.StateDelayed, "after Delay")
	e.requireScannable(lane, id, false, "after Delay")
	e.rejects("Renew after Delay released the lease", func() error {
		_, err := e.b.Renew(e.ctx, c.Handle)
		return err
	}, sdk.ErrExecutionNotActive)
	e.promoteDue(lane, p, 1)
	e.requireState(id, sdk.StateWaiting, "Delay passed")

	e.grant(id, lane)
	e.rejects("ClaimExecution of an interrupted attempt", func() error {
		_, err := e.b.ClaimExecution(e.ctx, claimArgs(id, lane, leaseTTL))
		return err
	}, sdk.ErrUseClaimResumed)
	// The rejected claim left the grant in place: claim with it.
	r := e.claimResumed(id, lane, leaseTTL, true)
	e.requireResumed("resumed claim", r.Handle, c.Handle)
	e.rejects("Complete with the pre-delay handle", func() error {
		return e.b.Complete(e.ctx, c.Handle, nil)
	}, sdk.ErrStaleLease)
	e.requireAttempts(id, 1, 0)
	e.must("Complete", e.b.Complete(e.ctx, r.Handle, []byte("done")))
	e.requireState(id, sdk.StateCompleted, "after Complete")

	// A fresh attempt cannot be claimed as resumed.
	id = e.create(simple(lane))
	e.grant(id, lane)
	e.rejects("ClaimResumedExecution of a fresh execution", func() error {
		_, err := e.b.ClaimResumedExecution(e.ctx, claimArgs(id, lane, leaseTTL))
		return err
	}, codeErr(sdk.CodeNotAResumedExecution))
}

// codeErr is a sentinel matching one code (for codes without an sdk sentinel).
func codeErr(code string) error { return &sdk.Error{Kind: sdk.KindOfCode(code), Code: code} }
