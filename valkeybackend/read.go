package valkeybackend

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// listLimitMax caps a page of ListExecutions and ListLanes.
const listLimitMax = 1000

func isNil(err error) bool { return valkey.IsValkeyNil(err) }

// ReadExecutionContext returns the immutable context through the client-side
// cache: after the first read, repeats cost no round trip.
func (b *Backend) ReadExecutionContext(ctx context.Context, id sdk.ExecutionID) (sdk.ExecutionContext, error) {
	const op = "read_execution_context"
	if _, err := b.partitionOf(op, id); err != nil {
		return sdk.ExecutionContext{}, err
	}
	kv, err := b.readContextPairs(ctx, op, id)
	if err != nil {
		return sdk.ExecutionContext{}, err
	}
	if len(kv) == 0 {
		return sdk.ExecutionContext{}, sdk.NewError(op, sdk.CodeExecutionNotFound, string(id))
	}
	return contextFromPairs(kv), nil
}

// readContextPairs reads the ctx hash through the client-side cache. The key
// never carries a TTL, so the cheap static-TTL wire (CLIENT CACHING YES +
// HGETALL, no MULTI/PTTL) is exact.
func (b *Backend) readContextPairs(ctx context.Context, op string, id sdk.ExecutionID) ([]string, error) {
	cmd := b.client.B().Hgetall().Key(b.ks.keysOf(id).ctx).Cache().ToStaticTTL()
	m, err := b.client.DoCache(ctx, cmd, b.opts.ContextCacheTTL).AsStrMap()
	if err != nil {
		return nil, backendError(op, err)
	}
	kv := make([]string, 0, 2*len(m))
	for k, v := range m {
		kv = append(kv, k, v)
	}
	return kv, nil
}

// DescribeExecution returns a snapshot; an unknown id is
// ErrExecutionNotFound.
func (b *Backend) DescribeExecution(ctx context.Context, id sdk.ExecutionID) (*sdk.ExecutionSnapshot, error) {
	const op = "describe_execution"
	if _, err := b.partitionOf(op, id); err != nil {
		return nil, err
	}
	core, err := b.reads.Do(ctx, b.client.B().Hgetall().Key(b.ks.keysOf(id).core).Build()).AsStrMap()
	if err != nil {
		return nil, backendError(op, err)
	}
	core = withCoreDefaults(core)
	if len(core) == 0 {
		return nil, sdk.NewError(op, sdk.CodeExecutionNotFound, string(id))
	}
	kv, err := b.readContextPairs(ctx, op, id)
	if err != nil {
		return nil, err
	}
	c := contextFromPairs(kv)
	num := func(f string) int64 { n, _ := strconv.ParseInt(core[f], 10, 64); return n }
	s := &sdk.ExecutionSnapshot{
		ID: id, Lane: c.Lane, Kind: c.Kind, Tags: c.Tags,
		State:               sdk.PublicState(core["state"]),
		BlockedReason:       core["blocked"],
		Priority:            int(num("priority")),
		CreatedAt:           msTime(num("created_at")),
		StartedAt:           msTime(num("started_at")),
		CompletedAt:         msTime(num("completed_at")),
		DelayUntil:          msTime(num("delay_until")),
		Deadline:            msTime(num("deadline_at")),
		CurrentAttemptIndex: sdk.AttemptIndex(num("attempt_index")),
		TotalAttempts:       int(num("total_attempts")),
		RetryCount:          int(num("retry_count")),
		LeaseEpoch:          uint64(num("lease_epoch")),
		ProgressPercent:     int(num("progress_pct")),
		ProgressMessage:     core["progress_msg"],
		FailureReason:       core["failure_reason"],
		FailureCategory:     core["failure_category"],
		CancellationReason:  core["cancel_reason"],
	}
	if caps := core["caps"]; caps != "" {
		s.RequiredCapabilities = strings.Split(caps, ",")
	}
	if s.State == sdk.StateActive {
		s.LeaseExpiresAt = msTime(num("lease_expires_at"))
		s.WorkerInstanceID = sdk.WorkerInstanceID(core["worker_instance"])
	}
	return s, nil
}

// hget reads one core field (its default when absent); a missing
// execution is execution_not_found.
func (b *Backend) hget(ctx context.Context, op string, id sdk.ExecutionID, field string) (string, error) {
	if _, err := b.partitionOf(op, id); err != nil {
		return "", err
	}
	v, err := b.client.Do(ctx, b.client.B().Hmget().Key(b.ks.keysOf(id).core).Field("state", field).Build()).ToArray()
	if err != nil {
		return "", backendError(op, err)
	}
	if len(v) != 2 || v[0].IsNil() { // every record has a state
		return "", sdk.NewError(op, sdk.CodeExecutionNotFound, string(id))
	}
	return coreField(field, v[1]), nil
}

// ReadExecutionState returns the public state.
func (b *Backend) ReadExecutionState(ctx context.Context, id sdk.ExecutionID) (sdk.PublicState, error) {
	s, err := b.hget(ctx, "read_execution_state", id, "state")
	return sdk.PublicState(s), err
}

// ReadCurrentAttemptIndex returns the index of the current (or last) attempt.
func (b *Backend) ReadCurrentAttemptIndex(ctx context.Context, id sdk.ExecutionID) (sdk.AttemptIndex, error) {
	s, err := b.hget(ctx, "read_current_attempt_index", id, "attempt_index")
	n, _ := strconv.ParseUint(s, 10, 32)
	return sdk.AttemptIndex(n), err
}

// ReadTotalAttemptCount returns how many attempts were started.
func (b *Backend) ReadTotalAttemptCount(ctx context.Context, id sdk.ExecutionID) (int, error) {
	s, err := b.hget(ctx, "read_total_attempt_count", id, "total_attempts")
	n, _ := strconv.Atoi(s)
	return n, err
}

// GetExecutionResult returns the stored result of a completed execution,
// and nil, nil for a known execution that has none (not completed, or
// completed without a result); an unknown id is ErrExecutionNotFound.
func (b *Backend) GetExecutionResult(ctx context.Context, id sdk.ExecutionID) ([]byte, error) {
	const op = "get_execution_result"
	if _, err := b.partitionOf(op, id); err != nil {
		return nil, err
	}
	_, res, err := b.stateAndResult(ctx, op, id)
	return res, err
}

// stateAndResult reads an execution's state and, when it completed, its
// result (nil when it has none), in one pipelined round trip (HGET state,
// GET result); an unknown id is ErrExecutionNotFound. The id is checked.
func (b *Backend) stateAndResult(ctx context.Context, op string, id sdk.ExecutionID) (sdk.PublicState, []byte, error) {
	k := b.ks.keysOf(id)
	res := b.client.DoMulti(ctx, b.client.B().Hget().Key(k.core).Field("state").Build(),
		b.client.B().Get().Key(k.result).Build())
	state, err := res[0].ToString()
	if err != nil {
		if isNil(err) {
			return "", nil, sdk.NewError(op, sdk.CodeExecutionNotFound, string(id))
		}
		return "", nil, backendError(op, err)
	}
	if sdk.PublicState(state) != sdk.StateCompleted {
		return sdk.PublicState(state), nil, nil
	}
	v, err := res[1].AsBytes()
	if err != nil {
		if isNil(err) {
			return sdk.StateCompleted, nil, nil
		}
		return "", nil, backendError(op, err)
	}
	return sdk.StateCompleted, v, nil
}

// ListExecutions pages a partition's executions in id order after cursor.
// It reads the partition's state indexes of every registered lane in one
// call (ff_list): a page costs the server a read of all the partition's
// executions, which no create pays for with an index of its own.
func (b *Backend) ListExecutions(ctx context.Context, partition int, cursor sdk.ExecutionID, limit int) (sdk.ListExecutionsPage, error) {
	const op = "list_executions"
	if err := b.checkPartition(op, partition); err != nil {
		return sdk.ListExecutionsPage{}, err
	}
	if cursor != "" {
		if err := cursor.Validate(); err != nil {
			return sdk.ListExecutionsPage{}, opError(op, err)
		}
	}
	if limit < 0 {
		return sdk.ListExecutionsPage{}, sdk.NewError(op, sdk.CodeInvalidInput, "negative limit")
	}
	if limit == 0 {
		return sdk.ListExecutionsPage{}, nil
	}
	limit = min(limit, listLimitMax)
	lanes, err := b.reads.Do(ctx, b.client.B().Smembers().Key(b.ks.lanes).Build()).AsStrSlice()
	if err != nil {
		return sdk.ListExecutionsPage{}, backendError(op, err)
	}
	tag := sdk.PartitionTag(partition)
	keys := make([]string, 0, 1+4*len(lanes))
	keys = append(keys, b.ks.partKeysOf(tag).leases)
	for _, l := range lanes {
		lk := b.ks.laneKeysOf(tag, sdk.LaneID(l))
		keys = append(keys, lk.eligible, lk.delayed, lk.blocked, lk.terminal)
	}
	r, err := decode(op, b.reads.Do(ctx, b.fcallRO("ff_list", keys, string(cursor), strconv.Itoa(limit+1))))
	if err != nil {
		return sdk.ListExecutionsPage{}, err
	}
	ids := r.fields
	page := sdk.ListExecutionsPage{}
	if len(ids) > limit {
		ids = ids[:limit]
		page.NextCursor = sdk.ExecutionID(ids[limit-1])
	}
	page.IDs = toIDs(ids)
	return page, nil
}

// ListLanes pages the lane registry in name order after cursor.
func (b *Backend) ListLanes(ctx context.Context, cursor sdk.LaneID, limit int) (sdk.ListLanesPage, error) {
	const op = "list_lanes"
	if limit < 0 {
		return sdk.ListLanesPage{}, sdk.NewError(op, sdk.CodeInvalidInput, "negative limit")
	}
	if limit == 0 {
		return sdk.ListLanesPage{}, nil
	}
	limit = min(limit, listLimitMax)
	all, err := b.reads.Do(ctx, b.client.B().Smembers().Key(b.ks.lanes).Build()).AsStrSlice()
	if err != nil {
		return sdk.ListLanesPage{}, backendError(op, err)
	}
	sort.Strings(all)
	i := sort.SearchStrings(all, string(cursor))
	if i < len(all) && all[i] == string(cursor) {
		i++
	}
	rest := all[i:]
	page := sdk.ListLanesPage{}
	if len(rest) > limit {
		rest = rest[:limit]
		page.NextCursor = sdk.LaneID(rest[limit-1])
	}
	for _, l := range rest {
		page.Lanes = append(page.Lanes, sdk.LaneID(l))
	}
	return page, nil
}
