package sdk

import (
	"context"
	"errors"
	"iter"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SubmitBatchConcurrencyDefault bounds the creates SubmitBatch keeps in
// flight. A pipelining client (valkey-go) sends concurrent calls together, so
// this is also the pipeline depth.
const SubmitBatchConcurrencyDefault = 128

// WaitPollDefault is the poll interval of Client.Wait when none is given.
const WaitPollDefault = 50 * time.Millisecond

// BatchSubmitter is an optional backend role: create many executions in as
// few round trips as the backend can. SubmitBatch uses it when present. The
// per-item errors are in the returned *BatchError; the results are in order.
// The caller may reuse args once CreateExecutions returns: it is not kept.
type BatchSubmitter interface {
	CreateExecutions(ctx context.Context, args []CreateExecutionArgs) ([]CreateExecutionResult, error)
}

// BatchError reports the items of a batch that failed. Errs[i] is nil for
// an item that succeeded. errors.Is and errors.As look through every item.
type BatchError struct {
	Errs []error
}

func (e *BatchError) Error() string {
	var b strings.Builder
	n := 0
	for i, err := range e.Errs {
		if err == nil {
			continue
		}
		if n == 0 {
			b.WriteString("item " + strconv.Itoa(i) + ": " + err.Error())
		}
		n++
	}
	if n > 1 {
		b.WriteString(" (and " + strconv.Itoa(n-1) + " more failed items)")
	}
	return b.String()
}

// Unwrap returns the failed items' errors.
func (e *BatchError) Unwrap() []error {
	out := make([]error, 0, len(e.Errs))
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// Client is the producer and operator side: submit executions, read them,
// cancel them, change their priority, fetch results. It is safe for
// concurrent use.
type Client struct {
	backend EngineBackend
	// submits batches concurrent Submits (nil without BatchSubmitter).
	submits *groupCommit[CreateExecutionArgs, submitOutcome]
	obs     ClientObserver // nil: none
}

// submitOutcome is one Submit's answer.
type submitOutcome struct {
	res CreateExecutionResult
	err error
}

// NewClient returns a Client over backend. With the BatchSubmitter role
// (RolesOf), concurrent Submits share round trips: one that finds no batch
// of creates in flight is sent at once, alone; those that come while one
// is in flight go together in the next (see Submit).
func NewClient(backend EngineBackend) *Client {
	return NewClientWithOptions(backend, ClientOptions{})
}

// NewClientWithOptions is NewClient with options (ClientOptions).
func NewClientWithOptions(backend EngineBackend, opts ClientOptions) *Client {
	c := &Client{backend: backend, obs: opts.Observer}
	if bs := RolesOf(backend).BatchSubmitter; bs != nil {
		c.submits = &groupCommit[CreateExecutionArgs, submitOutcome]{op: "submit", timeout: submitCallTimeout,
			max: groupCommitMax, send: func(ctx context.Context, args []CreateExecutionArgs) []submitOutcome {
				return submitBatchOutcomes(bs, ctx, args)
			},
			failed: func(err error) submitOutcome { return submitOutcome{err: err} }}
	}
	return c
}

// submitCallTimeout bounds one batch of Submits.
const submitCallTimeout = 5 * time.Second

// submitBatchOutcomes runs one CreateExecutions and answers each item as
// its own CreateExecution would have.
func submitBatchOutcomes(bs BatchSubmitter, ctx context.Context, args []CreateExecutionArgs) []submitOutcome {
	res, err := bs.CreateExecutions(ctx, args)
	out := make([]submitOutcome, len(args))
	var be *BatchError
	perItem := errors.As(err, &be) && len(be.Errs) == len(args)
	for i := range out {
		switch {
		case perItem:
			out[i].err = be.Errs[i]
		case err != nil:
			out[i].err = err
		}
		if out[i].err == nil && i < len(res) {
			out[i].res = res[i]
		}
	}
	return out
}

// Backend returns the client's backend.
func (c *Client) Backend() EngineBackend { return c.backend }

// Submit creates one execution. With the BatchSubmitter role, Submits made
// while a batch of them is in flight wait for it (and only for it) and go
// together in the next: under load each round trip carries many creates,
// each answered as its own CreateExecution would be. A Submit whose ctx
// ends before its batch goes out is withdrawn (nothing is created) and
// returns a timeout error; one already sent waits for its answer.
func (c *Client) Submit(ctx context.Context, args CreateExecutionArgs) (CreateExecutionResult, error) {
	if c.obs != nil {
		return c.observedSubmit(ctx, args)
	}
	return c.submit(ctx, args)
}

// observedSubmit is Submit told to the observer.
func (c *Client) observedSubmit(ctx context.Context, args CreateExecutionArgs) (CreateExecutionResult, error) {
	start := time.Now()
	ctx = c.obs.SubmitStarted(ctx, &args)
	res, err := c.submit(ctx, args)
	c.obs.SubmitEnded(ctx, &args, res, err, time.Since(start))
	return res, err
}

func (c *Client) submit(ctx context.Context, args CreateExecutionArgs) (CreateExecutionResult, error) {
	if c.submits == nil {
		return c.backend.CreateExecution(ctx, args)
	}
	if err := ctx.Err(); err != nil {
		return CreateExecutionResult{}, &Error{Kind: KindTimeout, Code: CodeTimeout, Op: "submit", Err: err}
	}
	o := c.submits.call(ctx, args)
	return o.res, o.err
}

// SubmitBatch creates many executions and returns their results in the
// order of args. Creates run concurrently (bounded by
// SubmitBatchConcurrencyDefault), so a pipelining backend sends them in few
// round trips; a backend with the BatchSubmitter role (RolesOf) gets the
// batch in one call. When some items fail, the error is a *BatchError and
// the results of the failed items are zero.
func (c *Client) SubmitBatch(ctx context.Context, args []CreateExecutionArgs) ([]CreateExecutionResult, error) {
	if len(args) == 0 {
		return nil, nil
	}
	if c.obs != nil {
		return c.observedBatch(ctx, args)
	}
	return c.submitBatch(ctx, args)
}

// observedBatch is SubmitBatch told to the observer, item by item (each
// item's elapsed time is the batch's).
func (c *Client) observedBatch(ctx context.Context, args []CreateExecutionArgs) ([]CreateExecutionResult, error) {
	start := time.Now()
	args = append([]CreateExecutionArgs(nil), args...) // the observer may set carriers: not in the caller's slice
	ctxs := make([]context.Context, len(args))
	for i := range args {
		ctxs[i] = c.obs.SubmitStarted(ctx, &args[i])
	}
	res, err := c.submitBatch(ctx, args)
	elapsed := time.Since(start)
	var be *BatchError
	perItem := errors.As(err, &be) && len(be.Errs) == len(args)
	for i := range args {
		var r CreateExecutionResult
		if i < len(res) {
			r = res[i]
		}
		ierr := err
		if perItem {
			ierr = be.Errs[i]
		}
		c.obs.SubmitEnded(ctxs[i], &args[i], r, ierr, elapsed)
	}
	return res, err
}

func (c *Client) submitBatch(ctx context.Context, args []CreateExecutionArgs) ([]CreateExecutionResult, error) {
	if b := RolesOf(c.backend).BatchSubmitter; b != nil {
		return b.CreateExecutions(ctx, args)
	}
	results := make([]CreateExecutionResult, len(args))
	errs := make([]error, len(args))
	sem := make(chan struct{}, min(SubmitBatchConcurrencyDefault, len(args)))
	var wg sync.WaitGroup
	failed := false
	for i := range args {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			for j := i; j < len(args); j++ {
				errs[j] = ctx.Err()
			}
			failed = true
		}
		if failed {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i], errs[i] = c.backend.CreateExecution(ctx, args[i])
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return results, &BatchError{Errs: errs}
		}
	}
	return results, nil
}

// Describe returns a snapshot of the execution; an unknown id gives
// ErrExecutionNotFound.
func (c *Client) Describe(ctx context.Context, id ExecutionID) (*ExecutionSnapshot, error) {
	return c.backend.DescribeExecution(ctx, id)
}

// State returns the execution's public state; an unknown id gives
// ErrExecutionNotFound.
func (c *Client) State(ctx context.Context, id ExecutionID) (PublicState, error) {
	return c.backend.ReadExecutionState(ctx, id)
}

// Cancel cancels the execution from any non-terminal state. An execution
// that already ended gives ErrExecutionTerminal (its state in the detail);
// an unknown id ErrExecutionNotFound.
func (c *Client) Cancel(ctx context.Context, id ExecutionID, reason string) (CancelExecutionResult, error) {
	return c.backend.CancelExecution(ctx, CancelExecutionArgs{ExecutionID: id, Reason: reason})
}

// ChangePriority re-scores a waiting execution.
func (c *Client) ChangePriority(ctx context.Context, id ExecutionID, priority int) (ChangePriorityResult, error) {
	return c.backend.ChangePriority(ctx, ChangePriorityArgs{ExecutionID: id, Priority: priority})
}

// Result returns the result an execution completed with: nil, nil when it
// has none or has not completed; an unknown id gives ErrExecutionNotFound.
func (c *Client) Result(ctx context.Context, id ExecutionID) ([]byte, error) {
	return c.backend.GetExecutionResult(ctx, id)
}

// Wait returns the execution's final snapshot once it reaches a terminal
// state, or ctx's error. With a backend that has RoleTerminalWatch (Valkey
// with client-side caching, the default) the server wakes it when the
// execution's record changes: no polling, no added delay, and poll is not
// used. Otherwise it reads the state every poll (WaitPollDefault when 0).
func (c *Client) Wait(ctx context.Context, id ExecutionID, poll time.Duration) (*ExecutionSnapshot, error) {
	if tw := RolesOf(c.backend).TerminalWatcher; tw != nil {
		if _, err := tw.AwaitTerminal(ctx, id); err != nil {
			return nil, err
		}
		return c.Describe(ctx, id)
	}
	if poll <= 0 {
		poll = WaitPollDefault
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		st, err := c.backend.ReadExecutionState(ctx, id)
		if err != nil && !isTransient(err) {
			return nil, err
		}
		if err == nil && st.Terminal() {
			return c.Describe(ctx, id)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// ExecutionError is what WaitResult returns for an execution that ended
// without completing.
type ExecutionError struct {
	ID       ExecutionID
	State    PublicState
	Reason   string // failure or cancellation reason
	Category string // failure category
}

func (e *ExecutionError) Error() string {
	s := "execution " + string(e.ID) + " ended " + string(e.State)
	if e.Category != "" {
		s += " (" + e.Category + ")"
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// WaitResult waits (see Wait: pushed, not polled, where the backend can)
// and returns the execution's result when it completed, or an
// *ExecutionError when it ended otherwise.
func (c *Client) WaitResult(ctx context.Context, id ExecutionID, poll time.Duration) ([]byte, error) {
	if tw := RolesOf(c.backend).TerminalWatcher; tw != nil {
		// Woken by the server; a completed execution needs its result alone,
		// which comes with the read that saw the end, not the whole record.
		st, res, err := tw.AwaitResult(ctx, id)
		if err != nil {
			return nil, err
		}
		if st == StateCompleted {
			return res, nil
		}
	}
	s, err := c.Wait(ctx, id, poll)
	if err != nil {
		return nil, err
	}
	if s.State != StateCompleted {
		reason := s.FailureReason
		if s.State == StateCancelled {
			reason = s.CancellationReason
		}
		return nil, &ExecutionError{ID: id, State: s.State, Reason: reason, Category: s.FailureCategory}
	}
	return c.backend.GetExecutionResult(ctx, id)
}

// DeliverSignal delivers a signal with a waitpoint's token (Task.Suspend
// returns them): when it meets the suspension's condition, the execution
// resumes at once, handed to an idle worker where one offers. A token
// that does not verify is invalid_token and nothing is written; a
// repeated args.DedupKey returns the first signal's id as Duplicate. Needs
// a backend with RoleWaiting (else an Unavailable error).
func (c *Client) DeliverSignal(ctx context.Context, args DeliverSignalArgs) (DeliverSignalResult, error) {
	w := RolesOf(c.backend).Waiter
	if w == nil {
		return DeliverSignalResult{}, Unavailable("deliver_signal")
	}
	return w.DeliverSignal(ctx, args)
}

// tailWait is how long one Tail read waits for new frames before it checks
// whether the stream closed.
const tailWait = time.Second

// Tail yields the frames of attempt's stream of execution id after cursor
// ("" = from the start), waiting for new ones as they are appended (each
// wait holds a connection of its own, not the shared pipeline's). It ends
// when the stream is closed (the attempt ended) and read to its end, within
// about tailWait of that; when ctx ends; or when the loop breaks. A
// transport error is retried from the last frame yielded, so a reconnect
// resumes where it stopped; any other error is yielded once and ends it.
// Each entry's ID is the cursor to resume after it. Needs a backend with
// RoleStreams.
func (c *Client) Tail(ctx context.Context, id ExecutionID, attempt AttemptIndex, cursor string) iter.Seq2[StreamEntry, error] {
	return func(yield func(StreamEntry, error) bool) {
		s := RolesOf(c.backend).Streamer
		if s == nil {
			yield(StreamEntry{}, Unavailable("tail_stream"))
			return
		}
		failures := 0
		for ctx.Err() == nil {
			es, err := s.TailStream(ctx, id, attempt, cursor, tailWait, 0)
			if err == nil && len(es) == 0 {
				var page StreamPage
				page, err = s.ReadStream(ctx, id, attempt, cursor, 1)
				if err == nil && page.Closed && len(page.Entries) == 0 {
					return
				}
			}
			if err != nil {
				if !isTransient(err) || ctx.Err() != nil {
					if ctx.Err() == nil {
						yield(StreamEntry{}, err)
					}
					return
				}
				failures++
				if !sleepCtx(ctx, backoffDelay(failures, 10*time.Millisecond, time.Second)) {
					return
				}
				continue
			}
			failures = 0
			for _, e := range es {
				cursor = e.ID
				if !yield(e, nil) {
					return
				}
			}
		}
	}
}
