package valkeybackend

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Lease history (sdk.LeaseHistorySubscriber). The library appends an
// execution's lease events to its partition's stream (leaseHistoryKey)
// only when the execution was created with lease history on (lua:
// log_lease), so an execution without it costs nothing. A subscriber
// follows every partition's stream (followLogs): its cursor is one stream
// id per partition, so resuming misses nothing and repeats nothing while
// the streams retain the events (MAXLEN ~ 10,000 per partition).

var _ sdk.LeaseHistorySubscriber = (*Backend)(nil)

// SubscribeLeaseHistory streams lease events (sdk.LeaseHistorySubscriber).
// A tag filter reads each event's execution context (one HMGET per event;
// the context is immutable).
func (b *Backend) SubscribeLeaseHistory(ctx context.Context, filter sdk.LeaseHistoryFilter, cursor string, fn func(sdk.LeaseEvent) error) error {
	const op = "subscribe_lease_history"
	lanes := make(map[sdk.LaneID]bool, len(filter.Lanes))
	for _, l := range filter.Lanes {
		if err := l.Validate(); err != nil {
			return opError(op, err)
		}
		lanes[l] = true
	}
	tagFields := tagFilterFields(filter.Tags)
	keys := make([]string, b.partitions)
	for p := range keys {
		keys[p] = b.ks.leaseHistoryKey(sdk.PartitionTag(p))
	}
	return b.followLogs(ctx, op, keys, cursor, func(e valkey.XRangeEntry, cursor func() string) error {
		v := e.FieldValues
		ev := sdk.LeaseEvent{ExecutionID: sdk.ExecutionID(v["eid"]), Lane: sdk.LaneID(v["lane"]),
			Kind: sdk.LeaseEventKind(v["ev"]), LeaseID: v["lid"], Reason: v["why"],
			WorkerInstance: sdk.WorkerInstanceID(v["w"]), At: streamIDTime(e.ID)}
		ev.Epoch, _ = strconv.ParseUint(v["ep"], 10, 64)
		if len(lanes) > 0 && !lanes[ev.Lane] {
			return nil
		}
		if len(tagFields) > 0 {
			match, err := b.tagsMatch(ctx, op, ev.ExecutionID, tagFields, filter.Tags)
			if err != nil || !match {
				return err
			}
		}
		ev.Cursor = cursor()
		return fn(ev)
	})
}

// tagsMatch reports whether execution id carries every tag of want
// (fields: their ctx field names, sorted). A trimmed execution matches
// nothing.
func (b *Backend) tagsMatch(ctx context.Context, op string, id sdk.ExecutionID, fields []string, want map[string]string) (bool, error) {
	if id.Validate() != nil {
		return false, nil
	}
	vals, err := b.client.Do(ctx, b.client.B().Hmget().Key(b.ks.keysOf(id).ctx).Field(fields...).Build()).ToArray()
	if err != nil {
		return false, backendError(op, err)
	}
	return tagsEqual(vals, fields, want), nil
}

// streamIDTime is the server time in a stream entry id ("<ms>-<seq>").
func streamIDTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	at, _ := strconv.ParseInt(ms, 10, 64)
	return msTime(at)
}
