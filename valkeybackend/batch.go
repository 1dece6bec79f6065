package valkeybackend

import (
	"context"
	"strconv"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Bounds of one ff_create_batch: a call runs on the server's one thread, so
// it carries at most MaxCreatesPerCall creates and, past the first item,
// about maxCreateCallBytes of arguments; a larger group of one partition
// goes as several calls in the same round trip.
const (
	MaxCreatesPerCall  = 100
	maxCreateCallBytes = 1 << 20
)

var _ sdk.BatchSubmitter = (*Backend)(nil)

// CreateExecutions is sdk.BatchSubmitter: it creates many executions with
// one ff_create_batch per partition (at most MaxCreatesPerCall each), all
// partitions in one pipelined round trip. Items without an id or an
// idempotency key go to one partition per MaxCreatesPerCall of them (the
// next in turn), so they cost one call, and batches still spread over
// the partitions. Each item gets what its own
// CreateExecution would (the library runs the same create for both), in
// the order given: an idempotency key repeated in the batch makes the later
// items DUPLICATEs of the first. Items that fail (validation, an id in use,
// a transport error of their partition's call) have a zero result and
// their error in the returned *sdk.BatchError.
func (b *Backend) CreateExecutions(ctx context.Context, args []sdk.CreateExecutionArgs) ([]sdk.CreateExecutionResult, error) {
	const op = "create_execution" // per item, as CreateExecution reports it
	results := make([]sdk.CreateExecutionResult, len(args))
	errs := make([]error, len(args))
	failed := false
	lanes := make([]sdk.LaneID, len(args)) // each item's, resolved
	var calls []*createBatch
	open := map[int]*createBatch{} // the partition's call still taking items
	// Items without an id or idempotency key share a partition, so they
	// share a call (a call per partition is the cost of spreading them);
	// the next partition in turn takes over every MaxCreatesPerCall.
	shared, keyless := -1, 0
	for i, a := range args {
		solo := a.ID == "" && a.IdempotencyKey == ""
		if solo {
			if keyless%MaxCreatesPerCall == 0 {
				shared = int(b.next.Add(1) % uint64(b.partitions))
			}
			keyless++
		}
		a, id, part, err := b.placeCreate(a, shared)
		if err != nil {
			errs[i], failed = opError(op, err), true
			continue
		}
		lanes[i] = a.Lane
		// start opens the partition's next call, sized for the items left.
		start := func() *createBatch {
			// Per item: the idempotency key, then ff_create's ARGV.
			g := newCreateBatch(part, batchRoom(len(args)-i, MaxCreatesPerCall, !solo), 1+createArgvLen(a))
			open[part] = g
			calls = append(calls, g)
			return g
		}
		g := open[part]
		if g == nil || len(g.items) == MaxCreatesPerCall {
			g = start()
		}
		// The item's idempotency key and ARGV go straight into its call's.
		from := len(g.args)
		g.args = appendCreateArgv(append(g.args, a.IdempotencyKey), a, id)
		size := argsBytes(g.args[from+1:])
		if len(g.items) > 0 && g.bytes+size > maxCreateCallBytes {
			// Too big to join: it starts the partition's next call.
			ng := start()
			ng.args = append(ng.args, g.args[from:]...)
			clear(g.args[from:])
			g.args = g.args[:from]
			g, from = ng, 1
		}
		g.items = append(g.items, i)
		g.at = append(g.at, from+1)
		g.bytes += size
	}
	if len(calls) == 0 {
		if failed {
			return results, &sdk.BatchError{Errs: errs}
		}
		return results, nil
	}

	// The lane registry, as CreateExecution keeps it: a lane with an item
	// that always creates (a minted id, no idempotency key) joins it in
	// this round trip, before the call; a lane whose items may all end
	// without a create joins it after, once one was created.
	early, late := map[sdk.LaneID]bool{}, map[sdk.LaneID]bool{}
	quotas := map[sdk.LaneID]sdk.QuotaID{} // lanes whose hand-offs admit (handoffQuota)
	for _, g := range calls {
		for _, i := range g.items {
			lane := lanes[i]
			if _, seen := quotas[lane]; !seen {
				quotas[lane] = b.handoffQuota(ctx, lane)
			}
			if _, known := b.lanesSeen.Load(lane); known {
				continue
			}
			if args[i].ID == "" && args[i].IdempotencyKey == "" {
				early[lane] = true
			} else {
				late[lane] = true
			}
		}
	}
	cmds := make(valkey.Commands, 0, len(calls)+1)
	if len(early) > 0 {
		cmds = append(cmds, b.registerLanes(early))
	}
	for _, g := range calls {
		keys, argv := b.createBatchCall(g, lanes, quotas)
		cmds = append(cmds, b.fcall("ff_create_batch", keys, argv...))
	}
	res := b.doAckedMulti(ctx, op, cmds...)
	if len(early) > 0 {
		if err := res[0].Error(); err != nil {
			// Nothing was created without its lane registered: fail all.
			err = backendError(op, err)
			for i := range errs {
				if errs[i] == nil {
					errs[i] = err
				}
			}
			return results, &sdk.BatchError{Errs: errs}
		}
		for lane := range early {
			b.lanesSeen.Store(lane, struct{}{})
		}
		res = res[1:]
	}
	created := map[sdk.LaneID]bool{}
	for gi, g := range calls {
		r, err := decode(op, res[gi])
		if err == nil && (r.int(0) != int64(len(g.items)) || len(r.fields) != 1+3*len(g.items)) {
			err = &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "ff_create_batch answered another number of items"}
		}
		if err != nil {
			for _, i := range g.items {
				errs[i] = err
			}
			failed = true
			continue
		}
		for j, i := range g.items {
			status, id, state := r.field(1+3*j), r.field(2+3*j), r.field(3+3*j)
			switch status {
			case "OK":
				results[i] = sdk.CreateExecutionResult{ID: sdk.ExecutionID(id), State: sdk.PublicState(state)}
				created[lanes[i]] = true
			case "DUPLICATE":
				results[i] = sdk.CreateExecutionResult{ID: sdk.ExecutionID(id), Duplicate: true, State: sdk.PublicState(state)}
			default:
				errs[i], failed = sdk.NewError(op, status, ""), true
			}
		}
	}
	for lane := range late {
		if !created[lane] {
			delete(late, lane)
		}
	}
	if len(late) > 0 {
		if err := b.doAcked(ctx, op, b.registerLanes(late)).Error(); err != nil {
			// As CreateExecution: the create landed, its lane may be
			// unregistered, the caller hears of it.
			err = backendError(op, err)
			for i := range args {
				if errs[i] == nil && late[lanes[i]] && !results[i].Duplicate {
					results[i], errs[i], failed = sdk.CreateExecutionResult{}, err, true
				}
			}
		} else {
			for lane := range late {
				b.lanesSeen.Store(lane, struct{}{})
			}
		}
	}
	if failed {
		return results, &sdk.BatchError{Errs: errs}
	}
	return results, nil
}

// createBatch is one ff_create_batch in the making: its partition, its
// items (indexes in the caller's slice), its ARGV (the item count, then per
// item its idempotency key and ff_create's ARGV), where each item's
// ff_create ARGV starts in it, and the ARGV's bytes.
type createBatch struct {
	part  int
	items []int
	at    []int
	args  []string
	bytes int
}

// newCreateBatch starts partition part's call with room for room items of
// perItem arguments each (see batchRoom).
func newCreateBatch(part, room, perItem int) *createBatch {
	return &createBatch{part: part, items: make([]int, 0, room), at: make([]int, 0, room),
		args: append(make([]string, 0, 1+perItem*room), "")}
}

// batchRoom is how many items a batch call starting now makes room for,
// with left items still to place and at most most per call: all of them
// when they all come to this call, a few when spread over partitions (ids,
// idempotency keys, a cluster's completions), append growing it past that.
func batchRoom(left, most int, spread bool) int {
	room := min(left, most)
	if spread {
		room = min(room, 8)
	}
	return room
}

// registerLanes adds lanes to the lane registry in one SADD.
func (b *Backend) registerLanes(lanes map[sdk.LaneID]bool) valkey.Completed {
	members := make([]string, 0, len(lanes))
	for l := range lanes {
		members = append(members, string(l))
	}
	return b.client.B().Sadd().Key(b.ks.lanes).Member(members...).Build()
}

// createBatchCall builds the KEYS and finishes the ARGV of ff_create_batch
// g (lanes: every item's): the partition's indexes and the offers keys of
// its items' lanes (hand-offs on), each followed by its lane's quota keys
// when quotas names one (the lane's items then carry flag 8); the ARGV
// gets its item count.
func (b *Backend) createBatchCall(g *createBatch, lanes []sdk.LaneID, quotas map[sdk.LaneID]sdk.QuotaID) (keys, args []string) {
	tag := sdk.PartitionTag(g.part)
	pk := b.ks.partKeysOf(tag)
	keys = []string{pk.deadlines, pk.all, b.ks.arrivalsChannel(tag), pk.leases, pk.timeouts}
	if b.handoffOn() {
		seen := map[sdk.LaneID]bool{}
		for _, i := range g.items {
			if lane := lanes[i]; !seen[lane] {
				seen[lane] = true
				keys = append(keys, b.offersKeyFor(tag, lane))
				if q := quotas[lane]; q != "" {
					k := b.ks.quotaKeysOf(q)
					keys = append(keys, k.hash, k.win, k.run)
				}
			}
		}
	}
	g.args[0] = strconv.Itoa(len(g.items))
	for j, i := range g.items {
		if quotas[lanes[i]] != "" {
			markAdmits(g.args, g.at[j])
		}
	}
	return keys, g.args
}

func argsBytes(args []string) int {
	n := 0
	for _, a := range args {
		n += len(a)
	}
	return n
}
