package sdk

import (
	"context"
	"time"
)

// Flows through the Client and the Task (needs a backend with RoleFlows;
// without one every call returns an Unavailable error).

func (c *Client) flows(op string) (Flower, error) {
	if f := RolesOf(c.backend).Flows; f != nil {
		return f, nil
	}
	return nil, Unavailable(op)
}

// SubmitFlow submits a whole DAG in one call (see FlowSpec): members
// without dependencies start at once, the others as soon as their
// dependencies allow, pushed by the ends of their upstreams. Submitting
// the same spec again (same ID) changes nothing and returns the same
// member ids. The client's observer (ClientOptions.Observer) hears each
// member as a submit (elapsed: the whole call's).
func (c *Client) SubmitFlow(ctx context.Context, spec FlowSpec) (FlowSubmission, error) {
	f, err := c.flows("submit_flow")
	if err != nil {
		return FlowSubmission{}, err
	}
	if c.obs == nil {
		return f.SubmitFlow(ctx, spec)
	}
	start := time.Now()
	spec.Members = append([]FlowMember(nil), spec.Members...) // carriers go in a copy, not the caller's slice
	ctxs := make([]context.Context, len(spec.Members))
	for i := range spec.Members {
		ctxs[i] = c.obs.SubmitStarted(ctx, &spec.Members[i].Args)
	}
	sub, err := f.SubmitFlow(ctx, spec)
	elapsed := time.Since(start)
	for i := range spec.Members {
		m := &spec.Members[i]
		res := CreateExecutionResult{ID: sub.Members[m.Name], State: sub.States[m.Name], Duplicate: sub.Existed}
		c.obs.SubmitEnded(ctxs[i], &m.Args, res, err, elapsed)
	}
	return sub, err
}

// AwaitFlow waits until the flow has ended and returns how: completed,
// failed or cancelled. The backend wakes it when the flow ends (no
// polling with client-side caching on). An unknown flow is
// flow_not_found.
func (c *Client) AwaitFlow(ctx context.Context, id FlowID) (FlowState, error) {
	f, err := c.flows("await_flow")
	if err != nil {
		return "", err
	}
	return f.AwaitFlow(ctx, id)
}

// CancelFlow cancels a flow (see CancelFlowPolicy). With wait, it also
// cancels every member the first call left in the flow's backlog before
// it returns (Pending 0); without, the flow scanner drains the backlog.
func (c *Client) CancelFlow(ctx context.Context, args CancelFlowArgs, wait bool) (CancelFlowHeader, error) {
	f, err := c.flows("cancel_flow")
	if err != nil {
		return CancelFlowHeader{}, err
	}
	h, err := f.CancelFlowHeader(ctx, args)
	for err == nil && wait && h.Pending > 0 {
		var n int
		n, h.Pending, err = f.CancelFlowMembers(ctx, args.Flow, 1000)
		h.Cancelled += n
	}
	return h, err
}

func waitingChildrenState(s PublicState) bool { return s == StateWaitingChildren }

// WaitChildren waits for this member's inbound dependencies (children it
// added to its flow with edges to itself, or any upstream) to end,
// whatever their outcomes. When some are still running, the lease is
// released and the task is finished (return from the handler): the
// attempt resumes on a worker (AttemptResumed) once the last of them
// ended; UpstreamResults then has their outcomes. It returns false, and
// the task goes on holding its lease, when they had all ended already.
func (t *Task) WaitChildren(ctx context.Context) (bool, error) {
	f := t.w.roles.Flows
	if f == nil {
		return false, Unavailable("wait_children")
	}
	var waiting bool
	err := t.terminal(ctx, &terminalCall{op: "wait_children", replayOK: waitingChildrenState, count: &t.w.stats.suspended, outcome: TaskSuspended,
		call: func(ctx context.Context) error {
			w, err := f.WaitChildren(ctx, t.h)
			waiting = w
			return err
		},
		keptLease: func() bool { return !waiting }})
	return waiting, err
}

// UpstreamResults returns this member's dependencies with their states
// and, for the completed ones, their results.
func (t *Task) UpstreamResults(ctx context.Context) ([]UpstreamResult, error) {
	f := t.w.roles.Flows
	if f == nil {
		return nil, Unavailable("upstream_results")
	}
	return f.UpstreamResults(ctx, t.ID)
}
