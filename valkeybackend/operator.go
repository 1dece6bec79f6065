package valkeybackend

import (
	"context"
	"strconv"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// laneOf reads an execution's lane from its immutable context, through the
// client-side cache (a repeat costs no round trip).
func (b *Backend) laneOf(ctx context.Context, op string, id sdk.ExecutionID) (sdk.LaneID, string, error) {
	p, err := b.partitionOf(op, id)
	if err != nil {
		return "", "", err
	}
	cmd := b.client.B().Hget().Key(b.ks.keysOf(id).ctx).Field(ctxLane).Cache().ToStaticTTL()
	lane, err := b.client.DoCache(ctx, cmd, b.opts.ContextCacheTTL).ToString()
	if err != nil {
		if isNil(err) {
			return "", "", sdk.NewError(op, sdk.CodeExecutionNotFound, string(id))
		}
		return "", "", backendError(op, err)
	}
	return sdk.LaneID(lane), sdk.PartitionTag(p), nil
}

// CancelExecution cancels from any non-terminal state, as an operator.
func (b *Backend) CancelExecution(ctx context.Context, a sdk.CancelExecutionArgs) (sdk.CancelExecutionResult, error) {
	const op = "cancel_execution"
	if err := sdk.CheckReason("cancel reason", a.Reason); err != nil {
		return sdk.CancelExecutionResult{}, opError(op, err)
	}
	lane, tag, err := b.laneOf(ctx, op, a.ExecutionID)
	if err != nil {
		return sdk.CancelExecutionResult{}, err
	}
	by := a.RequestedBy
	if by == "" {
		by = "operator"
	}
	r, err := decode(op, b.doAcked(ctx, op, b.cancelCmd(a.ExecutionID, tag, lane, a.Reason, by, nil)))
	if err != nil {
		return sdk.CancelExecutionResult{}, err
	}
	return sdk.CancelExecutionResult{PreviousState: sdk.PublicState(r.field(0))}, nil
}

// ChangePriority re-scores a waiting (or delayed) execution.
func (b *Backend) ChangePriority(ctx context.Context, a sdk.ChangePriorityArgs) (sdk.ChangePriorityResult, error) {
	const op = "change_priority"
	if _, err := b.partitionOf(op, a.ExecutionID); err != nil {
		return sdk.ChangePriorityResult{}, err
	}
	if a.Priority < sdk.MinPriority || a.Priority > sdk.MaxPriority {
		return sdk.ChangePriorityResult{}, sdk.NewError(op, sdk.CodeInvalidInput, "priority out of range")
	}
	lane, tag, err := b.laneOf(ctx, op, a.ExecutionID)
	if err != nil {
		return sdk.ChangePriorityResult{}, err
	}
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_change_priority",
		[]string{b.ks.keysOf(a.ExecutionID).core, b.ks.laneKeysOf(tag, lane).eligible},
		string(a.ExecutionID), strconv.Itoa(a.Priority))))
	if err != nil {
		return sdk.ChangePriorityResult{}, err
	}
	return sdk.ChangePriorityResult{Old: int(r.int(0)), New: int(r.int(1))}, nil
}

// RevokeLease takes the lease from its holder.
func (b *Backend) RevokeLease(ctx context.Context, a sdk.RevokeLeaseArgs) (sdk.RevokeLeaseResult, error) {
	const op = "revoke_lease"
	p, err := b.partitionOf(op, a.ExecutionID)
	if err != nil {
		return sdk.RevokeLeaseResult{}, err
	}
	if err := sdk.CheckReason("revoke reason", a.Reason); err != nil {
		return sdk.RevokeLeaseResult{}, opError(op, err)
	}
	tag := sdk.PartitionTag(p)
	pk := b.ks.partKeysOf(tag)
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_revoke", []string{b.ks.keysOf(a.ExecutionID).core, pk.leases, b.ks.arrivalsChannel(tag)},
		string(a.ExecutionID), a.ExpectedLeaseID, a.Reason)))
	if err != nil {
		return sdk.RevokeLeaseResult{}, err
	}
	return sdk.RevokeLeaseResult{LeaseID: r.field(0), Epoch: r.uint(1)}, nil
}

// PromoteDelayedDefaultLimit is PromoteDelayedArgs.Limit's default.
const PromoteDelayedDefaultLimit = 100

// PromoteDelayed moves due delayed executions of a lane on a partition back to
// eligible: one read-only FCALL finds the due ids by server time, one FCALL
// promotes them (re-checking each).
func (b *Backend) PromoteDelayed(ctx context.Context, a sdk.PromoteDelayedArgs) (int, error) {
	const op = "promote_delayed"
	if err := a.Lane.Validate(); err != nil {
		return 0, opError(op, err)
	}
	if err := b.checkPartition(op, a.Partition); err != nil {
		return 0, err
	}
	limit := a.Limit
	if limit <= 0 {
		limit = PromoteDelayedDefaultLimit
	}
	tag := sdk.PartitionTag(a.Partition)
	lk := b.ks.laneKeysOf(tag, a.Lane)
	due, err := decode(op, b.reads.Do(ctx, b.fcallRO("ff_due", []string{lk.delayed}, strconv.Itoa(limit))))
	if err != nil || len(due.fields) == 0 {
		return 0, err
	}
	keys := make([]string, 0, 3+len(due.fields))
	keys = append(keys, lk.delayed, lk.eligible, b.ks.arrivalsChannel(tag))
	noop := b.ks.partKeysOf(tag).noop
	for _, id := range due.fields {
		// A member that is no execution of this partition (a stray) has no
		// core key in this slot: the noop key stands in, and ff_promote
		// removes the member.
		core := noop
		if p, err := sdk.ExecutionID(id).Partition(); err == nil && p == a.Partition {
			core = b.ks.coreKey(sdk.ExecutionID(id))
		}
		keys = append(keys, core)
	}
	r, err := decode(op, b.client.Do(ctx, b.fcall("ff_promote", keys, append([]string{string(a.Lane)}, due.fields...)...)))
	if err != nil {
		return 0, err
	}
	return int(r.int(0)), nil
}
