package valkeybackend

import (
	"context"
	"sort"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// This file is the surface the scanners (package scanner) drive: find what is
// due in a partition index by server time, then act on a batch of ids with
// pipelined FCALLs. Every action re-checks its condition inside the library,
// so two engines acting on the same id at once do no harm.

// DueIndex names a partition-wide index of things that come due.
type DueIndex int

// Due indexes.
const (
	DueLeases      DueIndex = iota + 1 // lease expiry (and revoked leases, due at once)
	DueTimeouts                        // attempt timeouts
	DueDeadlines                       // execution deadlines
	DueSuspensions                     // suspension timeouts
)

func (b *Backend) dueKey(tag string, idx DueIndex) string {
	pk := b.ks.partKeysOf(tag)
	switch idx {
	case DueLeases:
		return pk.leases
	case DueTimeouts:
		return pk.timeouts
	case DueSuspensions:
		return b.ks.waitKeysOf(tag).suspTimeouts
	default:
		return pk.deadlines
	}
}

// Due returns up to limit ids of a partition index whose time has come.
func (b *Backend) Due(ctx context.Context, partition int, idx DueIndex, limit int) ([]sdk.ExecutionID, error) {
	const op = "due"
	if err := b.checkPartition(op, partition); err != nil {
		return nil, err
	}
	return b.due(ctx, op, b.dueKey(sdk.PartitionTag(partition), idx), limit, 0)
}

func (b *Backend) due(ctx context.Context, op, key string, limit int, age time.Duration) ([]sdk.ExecutionID, error) {
	if limit <= 0 {
		limit = 100
	}
	r, err := decode(op, b.reads.Do(ctx, b.fcallRO("ff_due", []string{key}, strconv.Itoa(limit), durMS(age))))
	if err != nil {
		return nil, err
	}
	return toIDs(r.fields), nil
}

// ActionCounts tallies what a batch action did, by outcome
// ("retry_scheduled", "terminal_failed", "expired", "stale", "not_due", …).
type ActionCounts map[string]int

// lanesOf reads the lanes of ids through the client-side cache (immutable).
func (b *Backend) lanesOf(ctx context.Context, op string, ids []sdk.ExecutionID) ([]sdk.LaneID, error) {
	cmds := make([]valkey.CacheableTTL, len(ids))
	for i, id := range ids {
		cmds[i] = valkey.CT(b.client.B().Hget().Key(b.ks.keysOf(id).ctx).Field(ctxLane).Cache().ToStaticTTL(), b.opts.ContextCacheTTL)
	}
	lanes := make([]sdk.LaneID, len(ids))
	for i, res := range b.client.DoMultiCache(ctx, cmds...) {
		s, err := res.ToString()
		if err != nil && !isNil(err) {
			return nil, backendError(op, err)
		}
		lanes[i] = sdk.LaneID(s) // "" for a trimmed execution: the action cleans its index entry
	}
	return lanes, nil
}

// act runs one FCALL per id, pipelined, and tallies the statuses.
func (b *Backend) act(ctx context.Context, op string, ids []sdk.ExecutionID,
	build func(id sdk.ExecutionID, tag string, lane sdk.LaneID) valkey.Completed) (ActionCounts, error) {
	if len(ids) == 0 {
		return ActionCounts{}, nil
	}
	lanes, err := b.lanesOf(ctx, op, ids)
	if err != nil {
		return nil, err
	}
	cmds := make(valkey.Commands, 0, len(ids))
	for i, id := range ids {
		p, err := b.partitionOf(op, id)
		if err != nil {
			return nil, err
		}
		lane := lanes[i]
		if lane == "" {
			lane = "-" // keys of a lane that cannot exist; the action only cleans up
		}
		cmds = append(cmds, build(id, sdk.PartitionTag(p), lane))
	}
	return tally(op, b.client.DoMulti(ctx, cmds...))
}

// tally counts the statuses of pipelined action calls; a business failure
// counts as "error:<code>", and a transport failure ends the tally with
// its error.
func tally(op string, results []valkey.ValkeyResult) (ActionCounts, error) {
	counts := ActionCounts{}
	for _, res := range results {
		r, err := decode(op, res)
		if err != nil {
			if sdk.KindOf(err) == sdk.KindTransport || sdk.KindOf(err) == sdk.KindTimeout {
				return counts, err
			}
			counts["error:"+sdk.CodeOf(err)]++
			continue
		}
		counts[r.field(0)]++
	}
	return counts, nil
}

// ReclaimExpired requeues (or, at the cap, fails) executions whose lease
// expired or was revoked. maxReclaims 0 means sdk.MaxReclaimsDefault.
func (b *Backend) ReclaimExpired(ctx context.Context, ids []sdk.ExecutionID, maxReclaims int) (ActionCounts, error) {
	if maxReclaims <= 0 {
		maxReclaims = sdk.MaxReclaimsDefault
	}
	capArg := strconv.Itoa(maxReclaims)
	return b.act(ctx, "reclaim_expired", ids, func(id sdk.ExecutionID, tag string, lane sdk.LaneID) valkey.Completed {
		lk, pk := b.ks.laneKeysOf(tag, lane), b.ks.partKeysOf(tag)
		ek := b.ks.keysOf(id)
		return b.fcall("ff_reclaim_expired", []string{ek.core, pk.leases, lk.active, lk.terminal,
			lk.delayed, pk.timeouts, pk.deadlines, lk.eligible, ek.grant, b.ks.arrivalsChannel(tag)}, string(id), capArg, string(lane))
	})
}

// Expire acts on due attempt timeouts (idx DueTimeouts: the attempt fails,
// the retry policy applies) or deadlines (idx DueDeadlines: the execution
// ends expired).
func (b *Backend) Expire(ctx context.Context, ids []sdk.ExecutionID, idx DueIndex) (ActionCounts, error) {
	which := "deadline"
	if idx == DueTimeouts {
		which = "attempt_timeout"
	}
	return b.act(ctx, "expire", ids, func(id sdk.ExecutionID, tag string, lane sdk.LaneID) valkey.Completed {
		ek, lk, pk := b.ks.keysOf(id), b.ks.laneKeysOf(tag, lane), b.ks.partKeysOf(tag)
		return b.fcall("ff_expire", []string{ek.core, pk.leases, lk.active, lk.terminal, lk.delayed,
			pk.timeouts, pk.deadlines, lk.eligible, lk.blocked, ek.grant, b.ks.arrivalsChannel(tag)}, string(id), which, string(lane))
	})
}

// BlockedExecution is an execution parked for routing.
type BlockedExecution struct {
	ID           sdk.ExecutionID
	Reason       string
	Capabilities []string // what it requires
}

// Blocked lists up to limit executions of a lane parked for routing on a
// partition, oldest first from offset, with what they require. Paging with
// offset keeps executions nobody can run from hiding newer ones.
func (b *Backend) Blocked(ctx context.Context, lane sdk.LaneID, partition, offset, limit int) ([]BlockedExecution, error) {
	const op = "blocked"
	if err := lane.Validate(); err != nil {
		return nil, opError(op, err)
	}
	if err := b.checkPartition(op, partition); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 100
	}
	if offset < 0 {
		return nil, sdk.NewError(op, sdk.CodeInvalidInput, "negative offset")
	}
	key := b.ks.laneKeysOf(sdk.PartitionTag(partition), lane).blocked
	ids, err := b.client.Do(ctx, b.client.B().Zrange().Key(key).Min(itoa(offset)).Max(itoa(offset+limit-1)).Build()).AsStrSlice()
	if err != nil {
		return nil, backendError(op, err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make(valkey.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = b.client.B().Hmget().Key(b.ks.keysOf(sdk.ExecutionID(id)).core).Field("blocked", "caps").Build()
	}
	out := make([]BlockedExecution, 0, len(ids))
	for i, res := range b.client.DoMulti(ctx, cmds...) {
		f, err := res.ToArray()
		if err != nil || len(f) != 2 {
			return nil, backendError(op, err)
		}
		reason, _ := f[0].ToString()
		capsCSV, _ := f[1].ToString()
		be := BlockedExecution{ID: sdk.ExecutionID(ids[i]), Reason: reason}
		if capsCSV != "" {
			be.Capabilities = splitCSV(capsCSV)
		}
		out = append(out, be)
	}
	return out, nil
}

// Unblock makes blocked executions eligible again, each only if it is still
// blocked for the reason the caller saw. Returns how many moved.
func (b *Backend) Unblock(ctx context.Context, lane sdk.LaneID, execs []BlockedExecution) (int, error) {
	const op = "unblock"
	if err := lane.Validate(); err != nil {
		return 0, opError(op, err)
	}
	if len(execs) == 0 {
		return 0, nil
	}
	cmds := make(valkey.Commands, 0, len(execs))
	for _, e := range execs {
		p, err := b.partitionOf(op, e.ID)
		if err != nil {
			return 0, err
		}
		tag := sdk.PartitionTag(p)
		lk := b.ks.laneKeysOf(tag, lane)
		cmds = append(cmds, b.fcall("ff_unblock", []string{b.ks.keysOf(e.ID).core, lk.blocked, lk.eligible, b.ks.arrivalsChannel(tag)},
			string(e.ID), e.Reason, string(lane)))
	}
	n := 0
	for _, res := range b.client.DoMulti(ctx, cmds...) {
		r, err := decode(op, res)
		if err != nil {
			return n, err
		}
		if r.field(0) == "unblocked" {
			n++
		}
	}
	return n, nil
}

// TrimTerminal deletes up to limit executions of a lane on a partition that
// ended more than retention ago, with all their keys and index entries.
// Returns how many were deleted.
func (b *Backend) TrimTerminal(ctx context.Context, lane sdk.LaneID, partition int, retention time.Duration, limit int) (int, error) {
	const op = "trim_terminal"
	if err := lane.Validate(); err != nil {
		return 0, opError(op, err)
	}
	if err := b.checkPartition(op, partition); err != nil {
		return 0, err
	}
	if err := validateDuration(op, "retention", retention); err != nil {
		return 0, err
	}
	tag := sdk.PartitionTag(partition)
	lk, pk := b.ks.laneKeysOf(tag, lane), b.ks.partKeysOf(tag)
	ids, err := b.due(ctx, op, lk.terminal, limit, retention)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	now, err := b.serverTimeMS(ctx)
	if err != nil {
		return 0, err
	}
	cutoff := strconv.FormatInt(now-retention.Milliseconds(), 10)
	cmds := make(valkey.Commands, 0, len(ids))
	for _, id := range ids {
		ek := b.ks.keysOf(id)
		cmds = append(cmds, b.fcall("ff_trim", []string{ek.core, ek.ctx, ek.result, ek.grant, lk.terminal, pk.all},
			string(id), cutoff))
	}
	n := 0
	for _, res := range b.client.DoMulti(ctx, cmds...) {
		r, err := decode(op, res)
		if err != nil {
			return n, err
		}
		if r.field(0) == "trimmed" {
			n++
		}
	}
	return n, nil
}

// Ownership modes of OwnPartition.
const (
	OwnAcquire = "acquire"
	OwnRenew   = "renew"
	OwnRelease = "release"
)

// OwnPartition takes, renews or releases an engine's ownership lease on a
// partition. It reports whether owner holds the partition afterwards.
func (b *Backend) OwnPartition(ctx context.Context, owner string, partition int, ttl time.Duration, mode string) (bool, error) {
	const op = "own_partition"
	if err := b.checkPartition(op, partition); err != nil {
		return false, err
	}
	if owner == "" || ttl <= 0 {
		return false, sdk.NewError(op, sdk.CodeInvalidInput, "owner and a positive ttl are required")
	}
	key := b.ks.ownKey(sdk.PartitionTag(partition))
	r, err := decode(op, b.client.Do(ctx, b.fcall("ff_own", []string{key}, owner, durMS(ttl), mode)))
	if err != nil {
		return false, err
	}
	return r.field(0) == "owned", nil
}

// LaneRegistryMaxAgeDefault is LaneRegistry's maxAge when none is given.
const LaneRegistryMaxAgeDefault = 10 * time.Second

// LaneRegistry reads the whole lane registry, sorted, for the scanners,
// which re-read it at the start of every cycle. The read goes through the
// client-side cache (RESP3 tracking): while the registry is unchanged it
// costs no round trip, and the SADD that registers a new lane (the first
// create on it, see CreateExecution) makes the server push an invalidation,
// so the next read sees the new lane. maxAge (default
// LaneRegistryMaxAgeDefault) bounds how long a cached read is trusted
// without a push, a safety net only. With client-side caching off every
// call reads the registry (one SMEMBERS).
func (b *Backend) LaneRegistry(ctx context.Context, maxAge time.Duration) ([]sdk.LaneID, error) {
	const op = "lane_registry"
	if maxAge <= 0 {
		maxAge = LaneRegistryMaxAgeDefault
	}
	var res valkey.ValkeyResult
	if b.opts.CacheSizeEachConn < 0 {
		res = b.client.Do(ctx, b.client.B().Smembers().Key(b.ks.lanes).Build())
	} else {
		// ff:lanes never carries a TTL: the static-TTL wire is exact.
		res = b.client.DoCache(ctx, b.client.B().Smembers().Key(b.ks.lanes).Cache().ToStaticTTL(), maxAge)
	}
	return sortedLanes(op, res)
}

// sortedLanes reads a reply of the lane registry (SMEMBERS) in name order.
func sortedLanes(op string, res valkey.ValkeyResult) ([]sdk.LaneID, error) {
	all, err := res.AsStrSlice()
	if err != nil {
		return nil, backendError(op, err)
	}
	sort.Strings(all)
	out := make([]sdk.LaneID, len(all))
	for i, l := range all {
		out[i] = sdk.LaneID(l)
	}
	return out, nil
}

// EngineHeartbeat marks engine live until now+ttl in the b.ks.engines ZSET,
// drops engines whose heartbeat ended before now, and returns how many are
// live at now. now is server time (the scanners' ownership reads it first).
func (b *Backend) EngineHeartbeat(ctx context.Context, engine string, now time.Time, ttl time.Duration) (int, error) {
	const op = "engine_heartbeat"
	c, ms := b.client, now.UnixMilli()
	res := c.DoMulti(ctx,
		c.B().Zadd().Key(b.ks.engines).ScoreMember().ScoreMember(float64(ms+ttl.Milliseconds()), engine).Build(),
		c.B().Zremrangebyscore().Key(b.ks.engines).Min("-inf").Max("("+strconv.FormatInt(ms, 10)).Build(),
		c.B().Zcount().Key(b.ks.engines).Min(strconv.FormatInt(ms, 10)).Max("+inf").Build())
	for _, r := range res[:2] {
		if err := r.Error(); err != nil {
			return 0, backendError(op, err)
		}
	}
	live, err := res[2].AsInt64()
	if err != nil {
		return 0, backendError(op, err)
	}
	return int(live), nil
}

// LiveEngines counts the engines whose heartbeat has not expired by the
// server's clock (sdk.EngineMonitor): one round trip, TIME and the latest
// heartbeat together.
func (b *Backend) LiveEngines(ctx context.Context) (int, error) {
	const op = "live_engines"
	c := b.client
	res := c.DoMulti(ctx, c.B().Time().Build(), c.B().Zrange().Key(b.ks.engines).Min("+inf").Max("-inf").Byscore().Rev().Withscores().Build())
	t, err := timeOf(op, res[0])
	if err != nil {
		return 0, err
	}
	now := float64(t.UnixMilli())
	zs, err := res[1].AsZScores()
	if err != nil {
		return 0, backendError(op, err)
	}
	live := 0
	for _, z := range zs {
		if z.Score >= now {
			live++
		}
	}
	return live, nil
}

// DropEngine removes engine's heartbeat, so a stopping engine is counted out
// at once instead of after its TTL.
func (b *Backend) DropEngine(ctx context.Context, engine string) error {
	err := b.client.Do(ctx, b.client.B().Zrem().Key(b.ks.engines).Member(engine).Build()).Error()
	if err != nil {
		return backendError("drop_engine", err)
	}
	return nil
}

// ServerTime reads the server clock (TIME), to the microsecond.
func (b *Backend) ServerTime(ctx context.Context) (time.Time, error) {
	return timeOf("time", b.client.Do(ctx, b.client.B().Time().Build()))
}

// timeOf reads a TIME reply (seconds, microseconds).
func timeOf(op string, res valkey.ValkeyResult) (time.Time, error) {
	t, err := res.AsIntSlice()
	if err != nil || len(t) != 2 {
		return time.Time{}, backendError(op, err)
	}
	return time.UnixMicro(t[0]*1_000_000 + t[1]), nil
}

func splitCSV(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
