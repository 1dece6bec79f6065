package valkeybackend

import (
	"context"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// This file lets the scanners skip idle partitions without a round trip: a
// peek at the earliest entry of an index, served from the client-side cache.

// HeadIndex names an index whose earliest entry a scanner peeks at.
type HeadIndex int

// Head indexes. The first three and HeadSuspensions are per partition, the
// others per lane too.
const (
	HeadLeases    HeadIndex = iota + 1 // score: lease expiry (revoked: revoke time)
	HeadTimeouts                       // score: attempt timeout
	HeadDeadlines                      // score: execution deadline
	HeadDelayed                        // score: not-before time
	HeadTerminal                       // score: end time
	HeadBlocked                        // score: block time
	// HeadSuspensions is per partition (listed last to keep the values
	// above): score suspension timeout.
	HeadSuspensions
	// HeadDepBlocked and HeadFlowCancels are per partition: flow members
	// waiting for dependencies (score: since), flows with cancels pending
	// (score: since).
	HeadDepBlocked
	HeadFlowCancels
	// HeadSchedules is per partition: running schedules (score: next tick).
	HeadSchedules
)

// HeadQuery names one index of one partition; Lane is required for the
// per-lane indexes.
type HeadQuery struct {
	Partition int
	Lane      sdk.LaneID
	Index     HeadIndex
}

// Head is the earliest entry of an index: its score as a time, or Empty.
type Head struct {
	Empty bool
	At    time.Time
}

// IndexHeads returns the earliest entry of each index (ZRANGE key 0 0
// WITHSCORES), served from the client-side cache under RESP3 tracking: while
// an index is unchanged a peek costs nothing, and the server's invalidation
// push drops it the moment it changes. A head read just before a write can
// be stale for the push's flight time, so a scanner acting on it may be one
// cycle late, never wrong: the actions re-check in Lua. Unavailable when
// client-side caching is disabled.
func (b *Backend) IndexHeads(ctx context.Context, qs []HeadQuery) ([]Head, error) {
	const op = "index_heads"
	if b.opts.CacheSizeEachConn < 0 {
		return nil, sdk.Unavailable(op)
	}
	cmds := make([]valkey.CacheableTTL, 0, len(qs))
	for _, q := range qs {
		if err := b.checkPartition(op, q.Partition); err != nil {
			return nil, err
		}
		if q.Index >= HeadDelayed && q.Index < HeadSuspensions {
			if err := q.Lane.Validate(); err != nil {
				return nil, opError(op, err)
			}
		}
		tag := sdk.PartitionTag(q.Partition)
		lk, pk := b.ks.laneKeysOf(tag, q.Lane), b.ks.partKeysOf(tag)
		var key string
		switch q.Index {
		case HeadLeases:
			key = pk.leases
		case HeadTimeouts:
			key = pk.timeouts
		case HeadDeadlines:
			key = pk.deadlines
		case HeadDelayed:
			key = lk.delayed
		case HeadTerminal:
			key = lk.terminal
		case HeadBlocked:
			key = lk.blocked
		case HeadSuspensions:
			key = b.ks.waitKeysOf(tag).suspTimeouts
		case HeadDepBlocked:
			key = b.ks.flowIndexesOf(tag).depBlocked
		case HeadFlowCancels:
			key = b.ks.flowIndexesOf(tag).cancels
		case HeadSchedules:
			_, key = b.ks.scheduleIndexKeys(tag)
		default:
			return nil, sdk.NewError(op, sdk.CodeInvalidInput, "unknown head index")
		}
		cmds = append(cmds, valkey.CT(b.client.B().Zrange().Key(key).Min("0").Max("0").Withscores().
			Cache().ToStaticTTL(), b.opts.ReadinessCacheTTL))
	}
	out := make([]Head, len(qs))
	for i, res := range b.client.DoMultiCache(ctx, cmds...) {
		zs, err := res.AsZScores()
		if err != nil {
			return nil, backendError(op, err)
		}
		if len(zs) == 0 {
			out[i].Empty = true
			continue
		}
		out[i].At = time.UnixMilli(int64(zs[0].Score))
	}
	return out, nil
}
