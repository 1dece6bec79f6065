package valkeybackend

import (
	"context"
	"strconv"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// IssueReclaimGrant runs ff_issue_reclaim_grant.
func (b *Backend) IssueReclaimGrant(ctx context.Context, a sdk.IssueReclaimGrantArgs) (sdk.ClaimGrant, error) {
	const op = "issue_reclaim_grant"
	if _, err := b.partitionOf(op, a.ExecutionID); err != nil {
		return sdk.ClaimGrant{}, err
	}
	a, err := a.Resolve()
	if err != nil {
		return sdk.ClaimGrant{}, opError(op, err)
	}
	ek := b.ks.keysOf(a.ExecutionID)
	r, err := decode(op, b.client.Do(ctx, b.fcall("ff_issue_reclaim_grant", []string{ek.core, ek.grant},
		string(a.ExecutionID), string(a.WorkerID), string(a.WorkerInstanceID), durMS(a.GrantTTL), joinCSV(a.Capabilities))))
	if err != nil {
		return sdk.ClaimGrant{}, err
	}
	return sdk.ClaimGrant{ExecutionID: a.ExecutionID, ExpiresAt: r.time(0)}, nil
}

// ReclaimExecution consumes a reclaim grant: a new attempt under the
// caller's lease, or terminal failure at the interruption cap.
func (b *Backend) ReclaimExecution(ctx context.Context, a sdk.ReclaimExecutionArgs) (sdk.ReclaimOutcome, error) {
	const op = "reclaim_execution"
	p, err := b.partitionOf(op, a.ExecutionID)
	if err != nil {
		return sdk.ReclaimOutcome{}, err
	}
	if a, err = a.Resolve(); err != nil {
		return sdk.ReclaimOutcome{}, opError(op, err)
	}
	tag := sdk.PartitionTag(p)
	ek, lk, pk := b.ks.keysOf(a.ExecutionID), b.ks.laneKeysOf(tag, a.Lane), b.ks.partKeysOf(tag)
	res := b.client.Do(ctx, b.fcall("ff_reclaim",
		[]string{ek.core, ek.grant, lk.eligible, pk.leases, lk.active, pk.timeouts, ek.ctx, lk.terminal, pk.deadlines},
		string(a.ExecutionID), string(a.WorkerID), string(a.WorkerInstanceID), sdk.NewToken(), sdk.NewToken(),
		durMS(a.LeaseTTL), string(a.Lane), strconv.Itoa(a.MaxReclaims)))
	r, err := decode(op, res)
	if err != nil {
		return sdk.ReclaimOutcome{}, err
	}
	if r.status == "TERMINAL_FAILED" {
		return sdk.ReclaimOutcome{TerminalFailed: true}, nil
	}
	t, err := decodeClaim(op, sdk.ClaimExecutionArgs{ExecutionID: a.ExecutionID, Lane: a.Lane,
		WorkerID: a.WorkerID, WorkerInstanceID: a.WorkerInstanceID, LeaseTTL: a.LeaseTTL}, res, true)
	if err != nil {
		return sdk.ReclaimOutcome{}, err
	}
	t.Handle.Kind = sdk.HandleReclaimed
	return sdk.ReclaimOutcome{Task: &t}, nil
}

// ReplayExecution runs a terminal execution again as a new attempt.
func (b *Backend) ReplayExecution(ctx context.Context, a sdk.ReplayExecutionArgs) (sdk.ReplayExecutionResult, error) {
	const op = "replay_execution"
	if a.MaxReplays < 0 {
		return sdk.ReplayExecutionResult{}, sdk.NewError(op, sdk.CodeInvalidInput, "MaxReplays is negative")
	}
	lane, tag, err := b.laneOf(ctx, op, a.ExecutionID)
	if err != nil {
		return sdk.ReplayExecutionResult{}, err
	}
	maxN := a.MaxReplays
	if maxN == 0 {
		maxN = sdk.MaxReplaysDefault
	}
	lk := b.ks.laneKeysOf(tag, lane)
	ek := b.ks.keysOf(a.ExecutionID)
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_replay", []string{ek.core, lk.terminal, lk.eligible, ek.result,
		b.ks.arrivalsChannel(tag)}, string(a.ExecutionID), strconv.Itoa(maxN), string(lane))))
	if err != nil {
		return sdk.ReplayExecutionResult{}, err
	}
	return sdk.ReplayExecutionResult{PreviousState: sdk.PublicState(r.field(0))}, nil
}

// ClaimFromResumeGrant grants and claims an interrupted attempt in one round
// trip; (nil, nil) when the execution is not resumable now.
func (b *Backend) ClaimFromResumeGrant(ctx context.Context, t sdk.ResumeToken) (*sdk.ClaimedTask, error) {
	const op = "claim_from_resume_grant"
	gc, err := b.grantCmd(op, sdk.IssueClaimGrantArgs{ExecutionID: t.ExecutionID, Lane: t.Lane, WorkerID: t.WorkerID,
		WorkerInstanceID: t.WorkerInstanceID, Capabilities: t.Capabilities})
	if err != nil {
		return nil, err
	}
	ca, err := sdk.ClaimExecutionArgs{ExecutionID: t.ExecutionID, Lane: t.Lane, WorkerID: t.WorkerID,
		WorkerInstanceID: t.WorkerInstanceID, LeaseTTL: t.LeaseTTL}.Resolve()
	if err != nil {
		return nil, opError(op, err)
	}
	cc, err := b.claimCmd(op, ca, "resume", true)
	if err != nil {
		return nil, err
	}
	res := b.client.DoMulti(ctx, gc, cc)
	if _, err := decode(op, res[0]); err != nil {
		switch sdk.CodeOf(err) {
		case sdk.CodeExecutionNotEligible, sdk.CodeExecutionNotInEligibleSet, sdk.CodeExecutionNotFound:
			return nil, nil
		}
		return nil, err
	}
	task, err := decodeClaim(op, ca, res[1], true)
	if err != nil {
		if sdk.CodeOf(err) == sdk.CodeNotAResumedExecution {
			// The grant we just wrote must not block others.
			b.client.Do(ctx, b.client.B().Del().Key(b.ks.keysOf(t.ExecutionID).grant).Build())
			return nil, nil
		}
		return nil, err
	}
	return &task, nil
}

// ReadExecutionInfo returns the snapshot, every raw core field and the
// attempt history (attempts.go); an unknown id is ErrExecutionNotFound.
func (b *Backend) ReadExecutionInfo(ctx context.Context, id sdk.ExecutionID) (*sdk.ExecutionInfo, error) {
	const op = "read_execution_info"
	s, err := b.DescribeExecution(ctx, id)
	if err != nil {
		return nil, err
	}
	fields, err := b.reads.Do(ctx, b.client.B().Hgetall().Key(b.ks.keysOf(id).core).Build()).AsStrMap()
	if err != nil {
		return nil, backendError(op, err)
	}
	fields = withCoreDefaults(fields)
	return &sdk.ExecutionInfo{Snapshot: *s, Fields: fields, Attempts: attemptsOf(fields)}, nil
}
