package valkeybackend

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sort"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Completion subscriptions (sdk.CompletionSubscriber) read what every
// terminal call writes already: each lane's terminal index per partition
// (ff:i:T:L:terminal, score = end time). Nothing is added to a job's path.
// A subscriber keeps one position per index (its score and member), so
// resuming misses nothing and repeats nothing whatever the order in which
// partitions (on different nodes, with different clocks) record their
// ends; retention bounds how far back a cursor reaches. An index is read
// only up to its server's current millisecond (ff_terminal_read): ends
// recorded at a millisecond that has passed are final, so an end that
// lands at the position's own score later, with a smaller id, cannot be
// passed over; the current millisecond's ends come a read later. It waits for
// changes through the client-side cache: a cached ZCARD of each index
// makes the server push an invalidation when the index changes.

var _ sdk.CompletionSubscriber = (*Backend)(nil)

// completionPos is a subscriber's position in one terminal index: past
// every member of lower score, and past members up to id at score.
type completionPos struct {
	Score int64  `json:"s"`
	ID    string `json:"i,omitempty"`
}

// completionRefresh is how often a subscription re-reads the lane registry
// and its indexes when no push came (a new lane's index, a lost push).
const completionRefresh = 5 * time.Second

// completionBatch bounds the entries one round reads per index.
const completionBatch = 512

// completionHeld is how soon a subscription reads again when an index
// had ends at its server's current millisecond (not final yet, so not
// read), no push being due for them.
const completionHeld = 2 * time.Millisecond

// SubscribeCompletions streams terminal outcomes (sdk.CompletionSubscriber).
// Unavailable when client-side caching is off.
func (b *Backend) SubscribeCompletions(ctx context.Context, filter sdk.CompletionFilter, cursor string, fn func(sdk.Completion) error) error {
	const op = "subscribe_completions"
	if b.opts.CacheSizeEachConn < 0 {
		return sdk.Unavailable(op)
	}
	for _, l := range filter.Lanes {
		if err := l.Validate(); err != nil {
			return opError(op, err)
		}
	}
	pos := map[string]completionPos{}
	fromStart := cursor != ""
	if cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || json.Unmarshal(raw, &pos) != nil {
			return sdk.NewError(op, sdk.CodeInvalidInput, "malformed completion cursor")
		}
	}
	wake := make(chan struct{}, 1)
	var unwatch func()
	defer func() {
		if unwatch != nil {
			unwatch()
		}
	}()
	for ctx.Err() == nil {
		keys, lanes, err := b.completionIndexes(ctx, op, filter.Lanes)
		if err != nil {
			return err
		}
		if unwatch != nil {
			unwatch()
		}
		unwatch = b.terminal.add(wake, keys...)
		// Track every index (the reads register the keys for invalidation).
		cmds := make([]valkey.CacheableTTL, len(keys))
		for i, k := range keys {
			cmds[i] = valkey.CT(b.client.B().Zcard().Key(k).Cache().ToStaticTTL(), completionRefresh)
		}
		for _, res := range b.client.DoMultiCache(ctx, cmds...) {
			if err := res.Error(); err != nil && ctx.Err() == nil {
				return backendError(op, err)
			}
		}
		// A subscription from now starts at each index's end; an index
		// first seen later (a new lane) is read from its start.
		if !fromStart {
			if err := b.completionTails(ctx, op, keys, pos); err != nil {
				return err
			}
			fromStart = true
		}
		got, advanced, held, err := b.completionsAfter(ctx, op, keys, lanes, pos, filter)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, c := range got {
			if err := fn(c); err != nil {
				return err
			}
		}
		if advanced {
			continue // more may be waiting past the batch (all of it filtered out, even)
		}
		wait := completionRefresh
		if held {
			wait = completionHeld // ends of the current millisecond: final in a moment
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-time.After(wait):
		}
	}
	return nil
}

// completionIndexes lists the terminal indexes to read: every partition's
// of each lane (the filter's, or the registry's).
func (b *Backend) completionIndexes(ctx context.Context, op string, only []sdk.LaneID) ([]string, []sdk.LaneID, error) {
	lanes := only
	if len(lanes) == 0 {
		var err error
		if lanes, err = b.LaneRegistry(ctx, completionRefresh); err != nil {
			return nil, nil, err
		}
	}
	keys := make([]string, 0, len(lanes)*b.partitions)
	keyLanes := make([]sdk.LaneID, 0, cap(keys))
	for _, l := range lanes {
		for p := range b.partitions {
			keys = append(keys, b.ks.laneKeysOf(sdk.PartitionTag(p), l).terminal)
			keyLanes = append(keyLanes, l)
		}
	}
	return keys, keyLanes, nil
}

// completionTails sets each index's position to its last final member
// (ff_terminal_read 'tail': ends before its server's current millisecond;
// later ones are delivered).
func (b *Backend) completionTails(ctx context.Context, op string, keys []string, pos map[string]completionPos) error {
	cmds := make(valkey.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = b.fcallRO("ff_terminal_read", []string{k}, "tail", "0", "1")
	}
	for i, res := range b.client.DoMulti(ctx, cmds...) {
		zs, _, err := terminalRead(op, res)
		if err != nil {
			return err
		}
		if len(zs) == 1 {
			pos[keys[i]] = zs[0]
		} else {
			pos[keys[i]] = completionPos{Score: -1}
		}
	}
	return nil
}

// terminalRead decodes an ff_terminal_read reply: its entries as
// positions, and whether ends at the current millisecond were held back.
func terminalRead(op string, res valkey.ValkeyResult) ([]completionPos, bool, error) {
	r, err := decode(op, res)
	if err != nil {
		return nil, false, err
	}
	if len(r.fields) < 2 || len(r.fields)%2 != 0 {
		return nil, false, &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "malformed ff_terminal_read reply"}
	}
	out := make([]completionPos, 0, len(r.fields)/2-1)
	for j := 2; j < len(r.fields); j += 2 {
		score, err := strconv.ParseFloat(r.fields[j+1], 64)
		if err != nil {
			return nil, false, &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "malformed ff_terminal_read score"}
		}
		out = append(out, completionPos{Score: int64(score), ID: r.fields[j]})
	}
	return out, r.fields[1] == "1", nil
}

// completionsAfter reads each index past its position, looks up the
// executions' states (and tags, with a tag filter), advances the
// positions and returns the completions in end-time order, each with its
// cursor; advanced reports that a position moved (more may follow), held
// that an index had ends at its current millisecond, left for a later read.
func (b *Backend) completionsAfter(ctx context.Context, op string, keys []string, lanes []sdk.LaneID,
	pos map[string]completionPos, filter sdk.CompletionFilter) (out []sdk.Completion, advanced, held bool, err error) {
	cmds := make(valkey.Commands, len(keys))
	for i, k := range keys {
		p, ok := pos[k]
		if !ok {
			p = completionPos{Score: -1}
		}
		// Members at the position's score sort by name: those up to p.ID
		// were delivered (the score's ends were final then: see the top).
		// Reading from the score itself and skipping them keeps the read
		// exact.
		cmds[i] = b.fcallRO("ff_terminal_read", []string{k}, "after", strconv.FormatInt(max(p.Score, 0), 10),
			strconv.Itoa(completionBatch))
	}
	type found struct {
		key   string
		lane  sdk.LaneID
		id    string
		score int64
	}
	var all []found
	for i, res := range b.client.DoMulti(ctx, cmds...) {
		zs, h, err := terminalRead(op, res)
		if err != nil {
			return nil, false, false, err
		}
		held = held || h
		p, ok := pos[keys[i]]
		if !ok {
			p = completionPos{Score: -1}
		}
		for _, z := range zs {
			if z.Score < p.Score || (z.Score == p.Score && z.ID <= p.ID) {
				continue
			}
			all = append(all, found{key: keys[i], lane: lanes[i], id: z.ID, score: z.Score})
		}
	}
	if len(all) == 0 {
		return nil, false, held, nil
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].score != all[j].score {
			return all[i].score < all[j].score
		}
		return all[i].id < all[j].id
	})
	// States and flows (and tags) of what ended, pipelined.
	reads := make(valkey.Commands, 0, 2*len(all))
	tagFields := tagFilterFields(filter.Tags)
	for _, f := range all {
		id := sdk.ExecutionID(f.id)
		reads = append(reads, b.client.B().Hmget().Key(b.ks.keysOf(id).core).Field("state", "flow").Build())
		if len(tagFields) > 0 {
			reads = append(reads, b.client.B().Hmget().Key(b.ks.keysOf(id).ctx).Field(tagFields...).Build())
		}
	}
	res := b.client.DoMulti(ctx, reads...)
	per := 1
	if len(tagFields) > 0 {
		per = 2
	}
	out = make([]sdk.Completion, 0, len(all))
	for i, f := range all {
		pos[f.key] = completionPos{Score: f.score, ID: f.id}
		sf, err := res[i*per].ToArray()
		if err != nil {
			return nil, false, false, backendError(op, err)
		}
		if len(sf) != 2 {
			return nil, false, false, &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "HMGET state, flow is not two values"}
		}
		state, _ := sf[0].ToString() // absent (trimmed): not terminal
		flow, _ := sf[1].ToString()  // absent: outside flows
		if !sdk.PublicState(state).Terminal() {
			continue // replayed (or trimmed) since: not an outcome any more
		}
		if per == 2 {
			vals, err := res[i*per+1].ToArray()
			if err != nil {
				return nil, false, false, backendError(op, err)
			}
			if !tagsEqual(vals, tagFields, filter.Tags) {
				continue
			}
		}
		raw, _ := json.Marshal(pos)
		out = append(out, sdk.Completion{ExecutionID: sdk.ExecutionID(f.id), Lane: f.lane, State: sdk.PublicState(state),
			FlowID: sdk.FlowID(flow), At: msTime(f.score), Cursor: base64.RawURLEncoding.EncodeToString(raw)})
	}
	return out, true, held, nil
}

// tagFilterFields returns the ctx fields of a tag filter's names, sorted
// (the order an HMGET of them answers in).
func tagFilterFields(want map[string]string) []string {
	fields := make([]string, 0, len(want))
	for name := range want {
		fields = append(fields, tagFieldPrefix+name)
	}
	sort.Strings(fields)
	return fields
}

// tagsEqual reports whether vals, an HMGET of fields (tagFilterFields),
// holds every tag of want with its value.
func tagsEqual(vals []valkey.ValkeyMessage, fields []string, want map[string]string) bool {
	if len(vals) != len(fields) {
		return false
	}
	for j, f := range fields {
		v, err := vals[j].ToString()
		if err != nil || v != want[f[len(tagFieldPrefix):]] {
			return false
		}
	}
	return true
}

// SubscribeInstanceTags is the trait's subscribe_instance_tags. It is
// Unavailable here, by design rather than for want of work: worker
// instances carry no tags in this engine (the registry keeps an instance's
// worker id, lanes and capabilities, see sdk.WorkerRegistry), so there is
// no tag change to stream. fn is never called.
func (b *Backend) SubscribeInstanceTags(ctx context.Context, cursor string, fn func(sdk.WorkerInstanceID, map[string]string) error) error {
	return &sdk.Error{Kind: sdk.KindUnavailable, Code: sdk.CodeUnavailable, Op: "subscribe_instance_tags",
		Msg: "worker instances carry no tags in this engine"}
}
