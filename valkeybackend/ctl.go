package valkeybackend

import (
	"context"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Operator reads (cmd/ffctl): a lane's executions in one state, and the
// depth of each state per lane. They read the state indexes the hot path
// keeps anyway and each listed execution's record; no create, claim or
// completion writes anything for them. Their cost is the reader's: see
// each method.

// ListLaneDefault and ListLaneMax bound a page of ListLaneExecutions.
const (
	ListLaneDefault = 100
	ListLaneMax     = listLimitMax
)

// ListLaneArgs asks for a page of executions by lane and state.
type ListLaneArgs struct {
	// Lane limits the page to one lane; "" lists every registered lane.
	Lane sdk.LaneID
	// State limits the page to one public state; "" lists every state.
	State sdk.PublicState
	// Cursor resumes after a page's NextCursor; "" starts at partition 0.
	Cursor sdk.ExecutionID
	// Limit is the page size. Default ListLaneDefault (0), at most
	// ListLaneMax; negative is invalid_input.
	Limit int
}

// LaneExecution is one execution of a ListLaneExecutions page: its
// record as read with the page.
type LaneExecution struct {
	ID    sdk.ExecutionID
	Lane  sdk.LaneID
	Kind  string
	State sdk.PublicState
	// BlockedReason is set on a waiting execution parked for routing.
	BlockedReason string
	Priority      int
	CreatedAt     time.Time
	// TransitionAt is when it last changed state.
	TransitionAt  time.Time
	TotalAttempts int
	RetryCount    int
	// DelayUntil: a delayed or rate_limited execution's next chance.
	DelayUntil time.Time
	// WorkerInstanceID and LeaseExpiresAt: an active execution's holder.
	WorkerInstanceID sdk.WorkerInstanceID
	LeaseExpiresAt   time.Time
	// EndedAt is when a terminal execution ended.
	EndedAt time.Time
	// FailureReason and FailureCategory: why its last attempt failed
	// (CancellationReason for a cancelled one).
	FailureReason, FailureCategory, CancellationReason string
}

// LaneExecutionsPage is one page of ListLaneExecutions.
type LaneExecutionsPage struct {
	Executions []LaneExecution
	// NextCursor is the last id of the page when more may follow, else "".
	NextCursor sdk.ExecutionID
}

// listStates are the public states ListLaneArgs.State accepts.
var listStates = []sdk.PublicState{sdk.StateWaiting, sdk.StateDelayed, sdk.StateRateLimited,
	sdk.StateWaitingChildren, sdk.StateActive, sdk.StateSuspended, sdk.StateCompleted, sdk.StateFailed,
	sdk.StateCancelled, sdk.StateExpired, sdk.StateSkipped}

// PublicStates lists every public state, in lifecycle order.
func PublicStates() []sdk.PublicState { return slices.Clone(listStates) }

// ListLaneExecutions pages executions in partition order, then id order
// within a partition (for SDK-minted ids, creation order), after
// args.Cursor. Each execution is listed with its record as read, and only
// when that record still has the lane and state asked for: one that moves
// while the pages are read is listed in the state it was read in, or not
// at all. The failed view (State sdk.StateFailed) is the dead-letter
// list: executions whose retries ran out.
//
// Cost: per partition visited, one read of each state index that can hold
// the state (the lane's eligible, blocked, delayed or terminal index; the
// partition's leases, suspended or dependency-blocked index), then the
// records of the candidates in id order, pipelined, until the page is
// full: a page of a state that is rare among its index (failed among many
// completed) reads more records.
func (b *Backend) ListLaneExecutions(ctx context.Context, a ListLaneArgs) (LaneExecutionsPage, error) {
	const op = "list_lane_executions"
	if a.Lane != "" {
		if err := a.Lane.Validate(); err != nil {
			return LaneExecutionsPage{}, opError(op, err)
		}
	}
	if a.State != "" && !slices.Contains(listStates, a.State) {
		return LaneExecutionsPage{}, sdk.NewError(op, sdk.CodeInvalidInput, "unknown state "+strconv.Quote(string(a.State)))
	}
	if a.Limit < 0 {
		return LaneExecutionsPage{}, sdk.NewError(op, sdk.CodeInvalidInput, "negative limit")
	}
	limit := a.Limit
	if limit == 0 {
		limit = ListLaneDefault
	}
	limit = min(limit, ListLaneMax)
	start := 0
	if a.Cursor != "" {
		p, err := b.partitionOf(op, a.Cursor)
		if err != nil {
			return LaneExecutionsPage{}, err
		}
		start = p
	}
	lanes, err := b.lanesOrAll(ctx, op, a.Lane)
	if err != nil {
		return LaneExecutionsPage{}, err
	}
	var out []LaneExecution
	for p := start; p < b.partitions && len(out) <= limit; p++ {
		ids, err := b.candidates(ctx, op, p, lanes, a.State)
		if err != nil {
			return LaneExecutionsPage{}, err
		}
		if p == start && a.Cursor != "" {
			i, _ := slices.BinarySearch(ids, string(a.Cursor))
			for i < len(ids) && ids[i] <= string(a.Cursor) {
				i++
			}
			ids = ids[i:]
		}
		// Read as many records as the page still needs, then twice as
		// many each time the previous read came up short (a state rare
		// among its index).
		step := 0
		for len(ids) > 0 && len(out) <= limit {
			step = min(len(ids), max(limit+1-len(out), 2*step), listLimitMax)
			rows, err := b.executionRows(ctx, op, ids[:step])
			if err != nil {
				return LaneExecutionsPage{}, err
			}
			ids = ids[step:]
			kept := len(out)
			for _, r := range rows {
				if r.State == "" || (a.Lane != "" && r.Lane != a.Lane) || (a.State != "" && r.State != a.State) {
					continue // gone, or moved since the index was read
				}
				if out = append(out, r); len(out) > limit {
					break
				}
			}
			if err := b.readKinds(ctx, op, out[kept:]); err != nil {
				return LaneExecutionsPage{}, err
			}
		}
	}
	page := LaneExecutionsPage{Executions: out}
	if len(out) > limit {
		page.Executions = out[:limit]
		page.NextCursor = out[limit-1].ID
	}
	return page, nil
}

// lanesOrAll returns [lane], or every registered lane when lane is "".
func (b *Backend) lanesOrAll(ctx context.Context, op string, lane sdk.LaneID) ([]sdk.LaneID, error) {
	if lane != "" {
		return []sdk.LaneID{lane}, nil
	}
	return sortedLanes(op, b.reads.Do(ctx, b.client.B().Smembers().Key(b.ks.lanes).Build()))
}

// stateIndexes returns the keys of partition p's indexes that can hold an
// execution of lanes in state ("" every state).
func (b *Backend) stateIndexes(p int, lanes []sdk.LaneID, state sdk.PublicState) []string {
	tag := sdk.PartitionTag(p)
	var keys []string
	perLane := func(pick func(laneKeys) []string) {
		for _, l := range lanes {
			keys = append(keys, pick(b.ks.laneKeysOf(tag, l))...)
		}
	}
	all := state == ""
	if all || state == sdk.StateWaiting {
		perLane(func(k laneKeys) []string { return []string{k.eligible, k.blocked} })
	}
	if all || state == sdk.StateDelayed || state == sdk.StateRateLimited {
		perLane(func(k laneKeys) []string { return []string{k.delayed} })
	}
	if all || state.Terminal() {
		perLane(func(k laneKeys) []string { return []string{k.terminal} })
	}
	if all || state == sdk.StateActive {
		keys = append(keys, b.ks.partKeysOf(tag).leases)
	}
	if all || state == sdk.StateSuspended {
		keys = append(keys, b.ks.waitKeysOf(tag).suspended)
	}
	if all || state == sdk.StateWaitingChildren {
		keys = append(keys, b.ks.flowIndexesOf(tag).depBlocked)
	}
	return keys
}

// candidates reads the indexes of partition p that can hold lanes' state
// and returns their members of the partition, sorted, once each.
func (b *Backend) candidates(ctx context.Context, op string, p int, lanes []sdk.LaneID, state sdk.PublicState) ([]string, error) {
	keys := b.stateIndexes(p, lanes, state)
	if len(keys) == 0 {
		return nil, nil
	}
	cmds := make(valkey.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = b.client.B().Zrange().Key(k).Min("0").Max("-1").Build()
	}
	tag := sdk.PartitionTag(p)
	var ids []string
	for _, res := range b.reads.DoMulti(ctx, cmds...) {
		ms, err := res.AsStrSlice()
		if err != nil {
			return nil, backendError(op, err)
		}
		for _, m := range ms {
			if sdk.ExecutionID(m).Tag() == tag {
				ids = append(ids, m)
			}
		}
	}
	sort.Strings(ids)
	return slices.Compact(ids), nil
}

// rowFields are the core fields executionRows reads, in order.
var rowFields = []string{"state", "lane", "blocked", "priority", "created_at", "last_transition_at",
	"total_attempts", "retry_count", "delay_until", "worker_instance", "lease_expires_at", "completed_at",
	"failure_reason", "failure_category", "cancel_reason"}

// executionRows reads ids' records in one pipelined round trip; an id
// whose record is gone has State "".
func (b *Backend) executionRows(ctx context.Context, op string, ids []string) ([]LaneExecution, error) {
	cmds := make(valkey.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = b.client.B().Hmget().Key(b.ks.coreKey(sdk.ExecutionID(id))).Field(rowFields...).Build()
	}
	out := make([]LaneExecution, len(ids))
	for i, res := range b.reads.DoMulti(ctx, cmds...) {
		v, err := res.ToArray()
		if err != nil {
			return nil, backendError(op, err)
		}
		f := make(map[string]string, len(rowFields))
		for j, name := range rowFields {
			if j < len(v) {
				f[name] = coreField(name, v[j])
			}
		}
		out[i] = LaneExecution{ID: sdk.ExecutionID(ids[i])}
		if f["state"] != "" {
			out[i] = rowOf(out[i].ID, f)
		}
	}
	return out, nil
}

// readKinds fills rows' kinds from their immutable contexts, in one
// pipelined round trip (only the rows a page keeps pay for it).
func (b *Backend) readKinds(ctx context.Context, op string, rows []LaneExecution) error {
	if len(rows) == 0 {
		return nil
	}
	cmds := make(valkey.Commands, len(rows))
	for i, r := range rows {
		cmds[i] = b.client.B().Hget().Key(b.ks.keysOf(r.ID).ctx).Field(ctxKind).Build()
	}
	for i, res := range b.reads.DoMulti(ctx, cmds...) {
		kind, err := res.ToString()
		if err != nil && !isNil(err) {
			return backendError(op, err)
		}
		rows[i].Kind = kind
	}
	return nil
}

// rowOf builds a row from its core fields (defaults applied).
func rowOf(id sdk.ExecutionID, f map[string]string) LaneExecution {
	n := func(k string) int64 { x, _ := strconv.ParseInt(f[k], 10, 64); return x }
	r := LaneExecution{ID: id, Lane: sdk.LaneID(f["lane"]), State: sdk.PublicState(f["state"]),
		BlockedReason: f["blocked"], Priority: int(n("priority")), CreatedAt: msTime(n("created_at")),
		TransitionAt: msTime(n("last_transition_at")), TotalAttempts: int(n("total_attempts")),
		RetryCount: int(n("retry_count")), FailureReason: f["failure_reason"],
		FailureCategory: f["failure_category"], CancellationReason: f["cancel_reason"]}
	switch {
	case r.State == sdk.StateDelayed || r.State == sdk.StateRateLimited:
		r.DelayUntil = msTime(n("delay_until"))
	case r.State == sdk.StateActive:
		r.WorkerInstanceID = sdk.WorkerInstanceID(f["worker_instance"])
		r.LeaseExpiresAt = msTime(n("lease_expires_at"))
	case r.State.Terminal():
		r.EndedAt = msTime(n("completed_at"))
	}
	return r
}

// LaneDepth is how many executions of a lane are in each state.
type LaneDepth struct {
	Lane sdk.LaneID
	// Counts per public state. Terminal states are counted only when
	// LaneDepths was asked to split them (else see Ended); a state with
	// none is absent.
	Counts map[sdk.PublicState]int
	// Blocked counts the waiting executions parked for routing (no
	// capable worker); they are in Counts[waiting] too.
	Blocked int
	// Ended counts the terminal executions still retained.
	Ended int
}

// LaneDepths counts lanes' executions per state over every partition
// (lanes nil: every registered lane, in name order). Waiting, blocked
// and ended come from index sizes; delayed and rate_limited (one index),
// active, suspended and waiting_children (partition-wide indexes) from
// reading each member's state and lane; terminal states, with
// splitEnded, from reading each ended execution's state. Cost: one
// pipelined round trip of every partition's index reads, plus one record
// read per execution in those read-through states.
func (b *Backend) LaneDepths(ctx context.Context, lanes []sdk.LaneID, splitEnded bool) ([]LaneDepth, error) {
	const op = "lane_depths"
	for _, l := range lanes {
		if err := l.Validate(); err != nil {
			return nil, opError(op, err)
		}
	}
	if lanes == nil {
		var err error
		if lanes, err = b.lanesOrAll(ctx, op, ""); err != nil {
			return nil, err
		}
	}
	out := make([]LaneDepth, len(lanes))
	at := make(map[sdk.LaneID]*LaneDepth, len(lanes))
	for i, l := range lanes {
		out[i] = LaneDepth{Lane: l, Counts: map[sdk.PublicState]int{}}
		at[l] = &out[i]
	}
	perLane := 4
	if splitEnded {
		perLane = 5
	}
	per := perLane*len(lanes) + 3 // commands per partition
	cmds := make(valkey.Commands, 0, per*b.partitions)
	for p := 0; p < b.partitions; p++ {
		tag := sdk.PartitionTag(p)
		for _, l := range lanes {
			k := b.ks.laneKeysOf(tag, l)
			cmds = append(cmds, b.client.B().Zcard().Key(k.eligible).Build(),
				b.client.B().Zcard().Key(k.blocked).Build(),
				b.client.B().Zcard().Key(k.terminal).Build(),
				b.client.B().Zrange().Key(k.delayed).Min("0").Max("-1").Build())
			if splitEnded {
				cmds = append(cmds, b.client.B().Zrange().Key(k.terminal).Min("0").Max("-1").Build())
			}
		}
		for _, k := range []string{b.ks.partKeysOf(tag).leases, b.ks.waitKeysOf(tag).suspended, b.ks.flowIndexesOf(tag).depBlocked} {
			cmds = append(cmds, b.client.B().Zrange().Key(k).Min("0").Max("-1").Build())
		}
	}
	all := b.reads.DoMulti(ctx, cmds...)
	for _, r := range all {
		if err := r.Error(); err != nil {
			return nil, backendError(op, err)
		}
	}
	for p := 0; p < b.partitions; p++ {
		tag := sdk.PartitionTag(p)
		res := all[p*per : (p+1)*per]
		var readThrough []string // members whose state and lane decide
		i := 0
		for _, l := range lanes {
			d := at[l]
			el, _ := res[i].AsInt64()
			bl, _ := res[i+1].AsInt64()
			te, _ := res[i+2].AsInt64()
			d.Counts[sdk.StateWaiting] += int(el + bl)
			d.Blocked += int(bl)
			d.Ended += int(te)
			ms, _ := res[i+3].AsStrSlice()
			readThrough = append(readThrough, ms...)
			i += 4
			if splitEnded {
				ms, _ := res[i].AsStrSlice()
				readThrough = append(readThrough, ms...)
				i++
			}
		}
		for ; i < len(res); i++ {
			ms, _ := res[i].AsStrSlice()
			readThrough = append(readThrough, ms...)
		}
		sort.Strings(readThrough) // one index read may catch a mover twice
		readThrough = slices.Compact(readThrough)
		for len(readThrough) > 0 {
			n := min(len(readThrough), listLimitMax)
			if err := b.countStates(ctx, op, tag, readThrough[:n], splitEnded, at); err != nil {
				return nil, err
			}
			readThrough = readThrough[n:]
		}
	}
	for i := range out {
		for s, n := range out[i].Counts {
			if n == 0 {
				delete(out[i].Counts, s)
			}
		}
	}
	return out, nil
}

// countStates reads ids' state and lane and counts the ones of lanes in
// at (waiting ones are counted from the index sizes already, terminal
// ones only with splitEnded).
func (b *Backend) countStates(ctx context.Context, op, tag string, ids []string, splitEnded bool, at map[sdk.LaneID]*LaneDepth) error {
	cmds := make(valkey.Commands, 0, len(ids))
	for _, id := range ids {
		if sdk.ExecutionID(id).Tag() != tag {
			continue
		}
		cmds = append(cmds, b.client.B().Hmget().Key(b.ks.coreKey(sdk.ExecutionID(id))).Field("state", "lane").Build())
	}
	for _, res := range b.reads.DoMulti(ctx, cmds...) {
		v, err := res.ToArray()
		if err != nil {
			return backendError(op, err)
		}
		if len(v) != 2 {
			continue
		}
		st, err1 := v[0].ToString()
		lane, err2 := v[1].ToString()
		d := at[sdk.LaneID(lane)]
		state := sdk.PublicState(st)
		if err1 != nil || err2 != nil || d == nil || state == sdk.StateWaiting || (state.Terminal() && !splitEnded) {
			continue
		}
		d.Counts[state]++
	}
	return nil
}
