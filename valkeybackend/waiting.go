package valkeybackend

import (
	"context"
	"encoding/hex"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Durable waiting (sdk.Waiter): ff_waitpoint, ff_suspend, ff_signal,
// ff_suspension_timeout and ff_hmac in lua/flowfabric.lua. Every call is one
// FCALL on the execution's (or waitpoint's) slot; seeding and rotation one
// per partition, pipelined.

var _ sdk.Waiter = (*Backend)(nil)

// Suspend suspends h's attempt (sdk.Waiter).
func (b *Backend) Suspend(ctx context.Context, h sdk.Handle, args sdk.SuspendArgs) (sdk.SuspendOutcome, error) {
	const op = "suspend"
	if _, err := b.handleTag(op, h); err != nil {
		return sdk.SuspendOutcome{}, err
	}
	return b.suspend(ctx, op, h.ExecutionID, h.Fence(), args)
}

// SuspendByTriple suspends by execution id and lease triple (sdk.Waiter).
func (b *Backend) SuspendByTriple(ctx context.Context, id sdk.ExecutionID, fence sdk.LeaseFence, args sdk.SuspendArgs) (sdk.SuspendOutcome, error) {
	const op = "suspend_by_triple"
	if _, err := b.partitionOf(op, id); err != nil {
		return sdk.SuspendOutcome{}, err
	}
	if fence.LeaseID == "" || fence.AttemptID == "" {
		return sdk.SuspendOutcome{}, sdk.NewError(op, sdk.CodeInvalidInput, "partial lease triple")
	}
	if err := sdk.CheckReason("lease id", fence.LeaseID); err != nil {
		return sdk.SuspendOutcome{}, opError(op, err)
	}
	if err := sdk.CheckReason("attempt id", fence.AttemptID); err != nil {
		return sdk.SuspendOutcome{}, opError(op, err)
	}
	return b.suspend(ctx, op, id, fence, args)
}

func (b *Backend) suspend(ctx context.Context, op string, id sdk.ExecutionID, fence sdk.LeaseFence, args sdk.SuspendArgs) (sdk.SuspendOutcome, error) {
	args, err := args.Resolve()
	if err != nil {
		return sdk.SuspendOutcome{}, opError(op, err)
	}
	for _, w := range args.Pending {
		if w.Validate() != nil || !strings.HasPrefix(string(w), id.Tag()+":") {
			return sdk.SuspendOutcome{}, sdk.NewError(op, sdk.CodeInvalidInput, "waitpoint "+string(w)+" is not on the execution's partition")
		}
	}
	tag := id.Tag()
	wk, pk := b.ks.waitKeysOf(tag), b.ks.partKeysOf(tag)
	timeoutAt := "0"
	if args.Timeout > 0 {
		timeoutAt = strconv.FormatInt(time.Now().Add(args.Timeout).UnixMilli(), 10)
	}
	n := len(args.Waitpoints) + len(args.Pending)
	argv := make([]string, 0, 14+3*n)
	argv = append(argv, string(id), fence.LeaseID, strconv.FormatUint(fence.Epoch, 10), fence.AttemptID,
		args.SuspensionID, args.Reason, "worker", timeoutAt, string(args.OnTimeout), string(args.Condition.Mode),
		strconv.Itoa(args.Condition.Count), strings.Join(args.Condition.Names, ","), args.DedupKey, strconv.Itoa(n))
	for _, label := range args.Waitpoints {
		argv = append(argv, string(sdk.NewWaitpointID(id)), label, "0")
	}
	for _, w := range args.Pending {
		argv = append(argv, string(w), "-", "1") // a pending waitpoint keeps its own label
	}
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_suspend", []string{b.ks.keysOf(id).core, b.ks.suspKey(id), wk.sec,
		pk.leases, pk.timeouts, wk.suspended, wk.suspTimeouts, wk.wpPending}, argv...)))
	if err != nil {
		return sdk.SuspendOutcome{}, err
	}
	out := sdk.SuspendOutcome{AlreadySatisfied: r.field(0) == "already_satisfied", SuspensionID: r.field(1)}
	for i := 3; i+2 < len(r.fields); i += 3 {
		out.Waitpoints = append(out.Waitpoints, sdk.Waitpoint{ID: sdk.WaitpointID(r.field(i)), Label: r.field(i + 1), Token: r.field(i + 2)})
	}
	return out, nil
}

// CreateWaitpoint creates a pending waitpoint for h's attempt (sdk.Waiter).
func (b *Backend) CreateWaitpoint(ctx context.Context, h sdk.Handle, label string, ttl time.Duration) (sdk.PendingWaitpoint, error) {
	const op = "create_waitpoint"
	tag, err := b.handleTag(op, h)
	if err != nil {
		return sdk.PendingWaitpoint{}, err
	}
	if label == "" {
		label = "default"
	}
	if _, err := (sdk.SuspendArgs{Waitpoints: []string{label}}).Resolve(); err != nil {
		return sdk.PendingWaitpoint{}, opError(op, err)
	}
	if ttl < 0 {
		return sdk.PendingWaitpoint{}, sdk.NewError(op, sdk.CodeInvalidInput, "negative waitpoint TTL")
	}
	if ttl == 0 {
		ttl = sdk.DefaultPendingWaitpointTTL
	}
	w := sdk.NewWaitpointID(h.ExecutionID)
	wk := b.ks.waitKeysOf(tag)
	args := append(fenceArgs(h), string(w), label, strconv.FormatInt(max(1, ttl.Milliseconds()), 10))
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_waitpoint", []string{b.ks.keysOf(h.ExecutionID).core, wk.sec, wk.wpPending}, args...)))
	if err != nil {
		return sdk.PendingWaitpoint{}, err
	}
	return sdk.PendingWaitpoint{Waitpoint: sdk.Waitpoint{ID: w, Label: label, Token: r.field(1)}, ExpiresAt: r.time(2)}, nil
}

// DeliverSignal delivers one signal to the waitpoint its token names
// (sdk.Waiter).
func (b *Backend) DeliverSignal(ctx context.Context, args sdk.DeliverSignalArgs) (sdk.DeliverSignalResult, error) {
	const op = "deliver_signal"
	args, err := args.Resolve()
	if err != nil {
		return sdk.DeliverSignalResult{}, opError(op, err)
	}
	w, _ := sdk.TokenWaitpoint(args.Token)
	p, err := sdk.ExecutionID(w).Partition()
	if err != nil || p >= b.partitions {
		// A token of another deployment: no such waitpoint here.
		return sdk.DeliverSignalResult{}, &sdk.Error{Kind: sdk.KindValidation, Code: sdk.CodeInvalidToken, Op: op}
	}
	tag := sdk.PartitionTag(p)
	wk, pk := b.ks.waitKeysOf(tag), b.ks.partKeysOf(tag)
	offers := "none"
	if b.handoffOn() {
		offers = b.offersScope()
	}
	res := b.doAcked(ctx, op, b.fcall("ff_signal", []string{b.ks.waitpointKey(w), wk.sec, pk.leases, pk.timeouts,
		wk.suspended, wk.suspTimeouts, wk.signals, b.ks.arrivalsChannel(tag)},
		args.Token, args.SignalID, args.Name, string(args.Payload), args.Source, args.DedupKey,
		strconv.FormatInt(max(1, args.DedupTTL.Milliseconds()), 10), offers))
	r, err := decode(op, res)
	if err != nil {
		return sdk.DeliverSignalResult{}, err
	}
	if r.status == "DUPLICATE" {
		return sdk.DeliverSignalResult{SignalID: r.field(0), Duplicate: true}, nil
	}
	return sdk.DeliverSignalResult{SignalID: r.field(0), Effect: r.field(1), ExecutionID: sdk.ExecutionID(r.field(2))}, nil
}

// ObserveSignals returns the execution's last suspension with the signals
// that counted towards it (sdk.Waiter); nil when it never suspended.
func (b *Backend) ObserveSignals(ctx context.Context, id sdk.ExecutionID) (*sdk.Suspension, error) {
	const op = "observe_signals"
	if _, err := b.partitionOf(op, id); err != nil {
		return nil, err
	}
	m, err := b.client.Do(ctx, b.client.B().Hgetall().Key(b.ks.suspKey(id)).Build()).AsStrMap()
	if err != nil {
		return nil, backendError(op, err)
	}
	if len(m) == 0 || m["id"] == "" {
		exists, err := b.client.Do(ctx, b.client.B().Exists().Key(b.ks.keysOf(id).core).Build()).AsInt64()
		if err != nil {
			return nil, backendError(op, err)
		}
		if exists == 0 {
			return nil, sdk.NewError(op, sdk.CodeExecutionNotFound, "")
		}
		return nil, nil
	}
	return suspensionOf(id, m), nil
}

// suspensionOf reads a suspension record (lua: the ff:e:E:susp fields).
func suspensionOf(id sdk.ExecutionID, m map[string]string) *sdk.Suspension {
	atoi := func(k string) int64 { return parseInt(m[k]) }
	s := &sdk.Suspension{ID: m["id"], ExecutionID: id, Reason: m["reason"], SuspendedAt: msTime(atoi("at")),
		TimeoutAt: msTime(atoi("timeout_at")), OnTimeout: sdk.TimeoutBehavior(m["on_timeout"]),
		Open: m["state"] == "open", CloseReason: m["close_reason"], AttemptIndex: sdk.AttemptIndex(atoi("attempt"))}
	s.Condition.Mode = sdk.MatchMode(m["mode"])
	if m["names"] != "" {
		s.Condition.Names = strings.Split(m["names"], ",")
	}
	if s.Condition.Mode == sdk.MatchCount {
		s.Condition.Count = int(atoi("need"))
	}
	for _, w := range strings.Fields(m["wps"]) {
		s.Waitpoints = append(s.Waitpoints, sdk.WaitpointID(w))
	}
	for i := 1; ; i++ {
		rec, ok := m["sig:"+strconv.Itoa(i)]
		if !ok {
			break
		}
		f, ok := unframe(rec)
		if !ok || len(f) != 6 {
			continue
		}
		at, _ := strconv.ParseInt(f[4], 10, 64)
		s.Signals = append(s.Signals, sdk.ResumeSignal{ID: f[0], Name: f[1], Payload: []byte(f[2]), Source: f[3],
			DeliveredAt: msTime(at), Waitpoint: sdk.WaitpointID(f[5])})
	}
	return s
}

// ListSuspended pages a partition's suspended executions in id order
// (sdk.Waiter).
func (b *Backend) ListSuspended(ctx context.Context, partition int, cursor sdk.ExecutionID, limit int) (sdk.ListSuspendedPage, error) {
	const op = "list_suspended"
	if err := b.checkPartition(op, partition); err != nil {
		return sdk.ListSuspendedPage{}, err
	}
	if cursor != "" {
		if err := cursor.Validate(); err != nil {
			return sdk.ListSuspendedPage{}, opError(op, err)
		}
	}
	if limit < 0 {
		return sdk.ListSuspendedPage{}, sdk.NewError(op, sdk.CodeInvalidInput, "negative limit")
	}
	if limit == 0 {
		return sdk.ListSuspendedPage{}, nil
	}
	limit = min(limit, listLimitMax)
	from := "-"
	if cursor != "" {
		from = "(" + string(cursor)
	}
	key := b.ks.waitKeysOf(sdk.PartitionTag(partition)).suspended
	ids, err := b.reads.Do(ctx, b.client.B().Zrange().Key(key).Min(from).Max("+").Bylex().Limit(0, int64(limit+1)).Build()).AsStrSlice()
	if err != nil {
		return sdk.ListSuspendedPage{}, backendError(op, err)
	}
	var page sdk.ListSuspendedPage
	if len(ids) > limit {
		ids = ids[:limit]
		page.NextCursor = sdk.ExecutionID(ids[limit-1])
	}
	cmds := make(valkey.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = b.client.B().Hmget().Key(b.ks.suspKey(sdk.ExecutionID(id))).Field("reason", "at", "timeout_at").Build()
	}
	for i, res := range b.reads.DoMulti(ctx, cmds...) {
		v, err := res.ToArray()
		if err != nil {
			return sdk.ListSuspendedPage{}, backendError(op, err)
		}
		e := sdk.SuspendedEntry{ExecutionID: sdk.ExecutionID(ids[i])}
		if len(v) == 3 {
			e.Reason, _ = v[0].ToString()
			at, _ := v[1].ToString()
			to, _ := v[2].ToString()
			e.SuspendedAt, e.TimeoutAt = msTime(parseInt(at)), msTime(parseInt(to))
		}
		page.Entries = append(page.Entries, e)
	}
	return page, nil
}

func parseInt(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }

// ListPendingWaitpoints pages a partition's live pending waitpoints in id
// order (sdk.Waiter).
func (b *Backend) ListPendingWaitpoints(ctx context.Context, partition int, cursor sdk.WaitpointID, limit int) (sdk.ListPendingWaitpointsPage, error) {
	const op = "list_pending_waitpoints"
	if err := b.checkPartition(op, partition); err != nil {
		return sdk.ListPendingWaitpointsPage{}, err
	}
	if cursor != "" {
		if err := cursor.Validate(); err != nil {
			return sdk.ListPendingWaitpointsPage{}, opError(op, err)
		}
	}
	if limit < 0 {
		return sdk.ListPendingWaitpointsPage{}, sdk.NewError(op, sdk.CodeInvalidInput, "negative limit")
	}
	if limit == 0 {
		return sdk.ListPendingWaitpointsPage{}, nil
	}
	limit = min(limit, listLimitMax)
	key := b.ks.waitKeysOf(sdk.PartitionTag(partition)).wpPending
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	all, err := b.reads.Do(ctx, b.client.B().Zrange().Key(key).Min("("+now).Max("+inf").Byscore().Build()).AsStrSlice()
	if err != nil {
		return sdk.ListPendingWaitpointsPage{}, backendError(op, err)
	}
	ids := all[:0]
	for _, w := range all {
		if w > string(cursor) {
			ids = append(ids, w)
		}
	}
	sort.Strings(ids)
	var page sdk.ListPendingWaitpointsPage
	if len(ids) > limit {
		ids = ids[:limit]
		page.NextCursor = sdk.WaitpointID(ids[limit-1])
	}
	cmds := make(valkey.Commands, len(ids))
	for i, w := range ids {
		cmds[i] = b.client.B().Hmget().Key(b.ks.waitpointKey(sdk.WaitpointID(w))).Field("eid", "state", "key", "exp", "n").Build()
	}
	var live []sdk.PendingWaitpointEntry
	for i, res := range b.reads.DoMulti(ctx, cmds...) {
		arr, err := res.ToArray()
		if err != nil {
			return sdk.ListPendingWaitpointsPage{}, backendError(op, err)
		}
		v := make([]string, len(arr))
		for j := range arr {
			v[j], _ = arr[j].ToString() // an absent field reads ""
		}
		if len(v) != 5 || v[1] != "pending" {
			continue // activated (or gone) since the index was read
		}
		live = append(live, sdk.PendingWaitpointEntry{ID: sdk.WaitpointID(ids[i]),
			ExecutionID: sdk.ExecutionID(v[0]), Label: v[2], ExpiresAt: msTime(parseInt(v[3])), Signals: int(parseInt(v[4]))})
	}
	// A pending waitpoint closes with its execution (ff_signal refuses
	// it then): one whose execution ended is not listed.
	states := make(valkey.Commands, len(live))
	for i, e := range live {
		states[i] = b.client.B().Hget().Key(b.ks.keysOf(e.ExecutionID).core).Field("state").Build()
	}
	for i, res := range b.reads.DoMulti(ctx, states...) {
		st, err := res.ToString()
		if err != nil && !isNil(err) {
			return sdk.ListPendingWaitpointsPage{}, backendError(op, err)
		}
		if st != "" && !sdk.PublicState(st).Terminal() {
			page.Entries = append(page.Entries, live[i])
		}
	}
	return page, nil
}

// SeedWaitpointSecret installs the first waitpoint secret on every
// partition (sdk.Waiter). A partition that has one keeps it.
func (b *Backend) SeedWaitpointSecret(ctx context.Context, kid string, secret []byte) (sdk.SeedOutcome, error) {
	const op = "seed_waitpoint_secret"
	if err := sdk.CheckSecret(kid, secret); err != nil {
		return sdk.SeedOutcome{}, opError(op, err)
	}
	var out sdk.SeedOutcome
	same := true
	err := b.eachPartitionSecret(ctx, op, "seed", kid, secret, 0, func(r reply) {
		if r.field(0) == "already_seeded" {
			out.AlreadySeeded, out.CurrentKID = true, r.field(1)
			same = same && r.field(2) == "1"
		}
	})
	out.SameSecret = out.AlreadySeeded && same
	return out, err
}

// RotateWaitpointSecret makes kid current on every partition (sdk.Waiter);
// the previous kid keeps verifying for grace. A failure on some partitions
// leaves the others rotated: running it again completes the rotation.
func (b *Backend) RotateWaitpointSecret(ctx context.Context, kid string, secret []byte, grace time.Duration) (sdk.RotateOutcome, error) {
	const op = "rotate_waitpoint_secret"
	if err := sdk.CheckSecret(kid, secret); err != nil {
		return sdk.RotateOutcome{}, opError(op, err)
	}
	if grace < 0 {
		return sdk.RotateOutcome{}, sdk.NewError(op, sdk.CodeInvalidInput, "negative grace")
	}
	var out sdk.RotateOutcome
	err := b.eachPartitionSecret(ctx, op, "rotate", kid, secret, grace, func(r reply) {
		if r.field(0) == "rotated" {
			out.Rotated++
			if r.field(1) != "" {
				out.PreviousKID = r.field(1)
			}
		} else {
			out.Unchanged++
		}
	})
	return out, err
}

// eachPartitionSecret runs ff_hmac on every partition, pipelined, and
// hands each success to fn; the first failure is returned (the others ran).
func (b *Backend) eachPartitionSecret(ctx context.Context, op, mode, kid string, secret []byte, grace time.Duration, fn func(reply)) error {
	hexSecret := hex.EncodeToString(secret)
	cmds := make(valkey.Commands, b.partitions)
	for p := range b.partitions {
		cmds[p] = b.fcall("ff_hmac", []string{b.ks.waitKeysOf(sdk.PartitionTag(p)).sec}, mode, kid, hexSecret,
			strconv.FormatInt(grace.Milliseconds(), 10))
	}
	var first error
	for _, res := range b.doAckedMulti(ctx, op, cmds...) {
		r, err := decode(op, res)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		fn(r)
	}
	return first
}

// SignalDeliveries streams the partitions' delivery logs from cursor
// (sdk.Waiter); see followLogs for how it waits.
func (b *Backend) SignalDeliveries(ctx context.Context, cursor string, fn func(sdk.SignalDelivery) error) error {
	const op = "signal_deliveries"
	keys := make([]string, b.partitions)
	for p := range keys {
		keys[p] = b.ks.waitKeysOf(sdk.PartitionTag(p)).signals
	}
	return b.followLogs(ctx, op, keys, cursor, func(e valkey.XRangeEntry, cursor func() string) error {
		at, _ := strconv.ParseInt(e.FieldValues["at"], 10, 64)
		return fn(sdk.SignalDelivery{ExecutionID: sdk.ExecutionID(e.FieldValues["eid"]),
			Waitpoint: sdk.WaitpointID(e.FieldValues["wp"]), SignalID: e.FieldValues["sig"],
			Name: e.FieldValues["name"], Effect: e.FieldValues["effect"], DeliveredAt: msTime(at),
			Cursor: cursor()})
	})
}

// followLogs streams the entries of keys, one stream per partition, from
// cursor (one stream id per partition, comma-separated; "" = from each
// stream's current end) until ctx ends or fn returns an error (returned).
// fn gets each entry and the cursor right after it. On one server it
// blocks on every stream at once (XREAD BLOCK, on a connection of its
// own, not the shared pipeline); on a cluster it reads each stream in one
// pipelined round and, when nothing came, waits for the server's
// invalidation of a tracked stream (without client-side caching:
// deliveryPoll) before the next.
func (b *Backend) followLogs(ctx context.Context, op string, keys []string, cursor string,
	fn func(e valkey.XRangeEntry, cursor func() string) error) error {
	ids, err := b.logCursor(ctx, op, keys, cursor)
	if err != nil {
		return err
	}
	// A cluster cannot block on every partition's log in one XREAD: the
	// logs are tracked instead (a cached TYPE of each: any cached read of a
	// key has the server track it), and the server's
	// invalidation when one grows wakes the subscriber.
	var wake chan struct{}
	if b.cluster && b.opts.CacheSizeEachConn >= 0 {
		wake = make(chan struct{}, 1)
		defer b.terminal.add(wake, keys...)()
	}
	here := func() string { return strings.Join(ids, ",") }
	for ctx.Err() == nil {
		var got []valkey.ValkeyResult
		if wake != nil {
			track := make([]valkey.CacheableTTL, len(keys))
			for p, k := range keys {
				track[p] = valkey.CT(b.client.B().Type().Key(k).Cache().ToStaticTTL(), completionRefresh)
			}
			for _, res := range b.client.DoMultiCache(ctx, track...) {
				if err := res.Error(); err != nil && ctx.Err() == nil {
					return backendError(op, err)
				}
			}
		}
		if b.cluster {
			cmds := make(valkey.Commands, len(keys))
			for p := range cmds {
				cmds[p] = b.client.B().Xread().Count(deliveryBatch).Streams().Key(keys[p]).Id(ids[p]).Build()
			}
			got = b.client.DoMulti(ctx, cmds...)
		} else {
			got = []valkey.ValkeyResult{b.client.Do(ctx, b.client.B().Xread().Count(deliveryBatch).
				Block(deliveryBlock.Milliseconds()).Streams().Key(keys...).Id(ids...).Build())}
		}
		n := 0
		for _, res := range got {
			streams, err := res.AsXRead()
			if err != nil {
				if isNil(err) {
					continue
				}
				if ctx.Err() != nil {
					return nil
				}
				return backendError(op, err)
			}
			for key, entries := range streams {
				p := partitionOfKey(keys, key)
				if p < 0 {
					continue
				}
				for _, e := range entries {
					ids[p] = e.ID
					n++
					if err := fn(e, here); err != nil {
						return err
					}
				}
			}
		}
		if n == 0 && b.cluster {
			var after <-chan time.Time
			if wake == nil {
				after = time.After(deliveryPoll) // no cache: poll
			} else {
				after = time.After(completionRefresh) // a safety net for a lost push
			}
			select {
			case <-ctx.Done():
			case <-wake:
			case <-after:
			}
		}
	}
	return nil
}

const (
	deliveryBatch = 256                   // entries read per log and round
	deliveryBlock = time.Second           // one server: how long one XREAD blocks
	deliveryPoll  = 20 * time.Millisecond // a cluster without client-side caching: the pause after a round that read nothing
)

func partitionOfKey(keys []string, key string) int {
	for p, k := range keys {
		if k == key {
			return p
		}
	}
	return -1
}

// logCursor parses a followLogs cursor: one stream id per key,
// comma-separated. "" starts at the streams' current ends.
func (b *Backend) logCursor(ctx context.Context, op string, keys []string, cursor string) ([]string, error) {
	ids := make([]string, len(keys))
	if cursor != "" {
		parts := strings.Split(cursor, ",")
		if len(parts) != len(keys) {
			return nil, sdk.NewError(op, sdk.CodeInvalidInput, "cursor is not one of this deployment's")
		}
		for p, id := range parts {
			if id == "" || sdk.CheckStreamCursor(id) != nil {
				return nil, sdk.NewError(op, sdk.CodeInvalidInput, "malformed cursor")
			}
			ids[p] = id
		}
		return ids, nil
	}
	cmds := make(valkey.Commands, len(keys))
	for p, k := range keys {
		cmds[p] = b.client.B().Xrevrange().Key(k).End("+").Start("-").Count(1).Build()
	}
	for p, res := range b.client.DoMulti(ctx, cmds...) {
		es, err := res.AsXRange()
		if err != nil {
			return nil, backendError(op, err)
		}
		ids[p] = "0-0"
		if len(es) > 0 {
			ids[p] = es[0].ID
		}
	}
	return ids, nil
}

// ExpireDueSuspensions applies the timeout behaviour of up to limit due
// suspensions of partition (sdk.Waiter).
func (b *Backend) ExpireDueSuspensions(ctx context.Context, partition, limit int) (map[string]int, error) {
	ids, err := b.Due(ctx, partition, DueSuspensions, limit)
	if err != nil {
		return nil, err
	}
	return b.ExpireSuspensions(ctx, ids)
}

// ExpireSuspensions applies the timeout behaviour of due suspensions (the
// suspension scanner's action), one FCALL each, pipelined.
func (b *Backend) ExpireSuspensions(ctx context.Context, ids []sdk.ExecutionID) (ActionCounts, error) {
	const op = "expire_suspensions"
	cmds := make(valkey.Commands, 0, len(ids))
	for _, id := range ids {
		if _, err := b.partitionOf(op, id); err != nil {
			return nil, err
		}
		tag := id.Tag()
		cmds = append(cmds, b.fcall("ff_suspension_timeout", []string{b.ks.keysOf(id).core, b.ks.suspKey(id),
			b.ks.waitKeysOf(tag).suspTimeouts, b.ks.partKeysOf(tag).deadlines, b.ks.arrivalsChannel(tag)}, string(id)))
	}
	if len(cmds) == 0 {
		return ActionCounts{}, nil
	}
	return tally(op, b.client.DoMulti(ctx, cmds...))
}
