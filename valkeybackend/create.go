package valkeybackend

import (
	"context"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// CreateExecution validates args, picks the partition and runs ff_create.
// A repeated idempotency key returns the first id with Duplicate set and
// that execution's state now. An explicit ID an execution already has is
// ErrExecutionIDInUse, and nothing is written.
func (b *Backend) CreateExecution(ctx context.Context, a sdk.CreateExecutionArgs) (sdk.CreateExecutionResult, error) {
	const op = "create_execution"
	keys, args, err := b.createCall(a)
	if err != nil {
		return sdk.CreateExecutionResult{}, opError(op, err)
	}
	if q := b.handoffQuota(ctx, a.Lane); q != "" {
		k := b.ks.quotaKeysOf(q)
		keys = append(keys, k.hash, k.win, k.run)
		markAdmits(args, 0)
	}
	cmd := b.fcall("ff_create", keys, args...)
	var r reply
	_, known := b.lanesSeen.Load(a.Lane)
	switch {
	case known:
		r, err = decode(op, b.doAcked(ctx, op, cmd))
	case a.ID == "" && a.IdempotencyKey == "":
		// A minted id always creates: the lane joins the registry in the
		// same round trip, before its first execution exists.
		res := b.doAckedMulti(ctx, op, b.registerLane(a.Lane), cmd)
		if err := res[0].Error(); err != nil {
			return sdk.CreateExecutionResult{}, backendError(op, err)
		}
		if r, err = decode(op, res[1]); err == nil {
			b.lanesSeen.Store(a.Lane, struct{}{})
		}
	default:
		// An explicit id or an idempotency key may end without a create
		// (a collision, a repeat), which must write nothing: the lane
		// joins the registry once its execution was created.
		r, err = decode(op, b.doAcked(ctx, op, cmd))
		if err == nil && r.status != "DUPLICATE" {
			if err := b.doAcked(ctx, op, b.registerLane(a.Lane)).Error(); err != nil {
				return sdk.CreateExecutionResult{}, backendError(op, err)
			}
			b.lanesSeen.Store(a.Lane, struct{}{})
		}
	}
	if err != nil {
		return sdk.CreateExecutionResult{}, err
	}
	if r.status == "DUPLICATE" {
		return sdk.CreateExecutionResult{ID: sdk.ExecutionID(r.field(0)), Duplicate: true, State: sdk.PublicState(r.field(1))}, nil
	}
	return sdk.CreateExecutionResult{ID: sdk.ExecutionID(r.field(0)), State: sdk.PublicState(r.field(1))}, nil
}

// registerLane adds lane to the lane registry.
func (b *Backend) registerLane(lane sdk.LaneID) valkey.Completed {
	return b.client.B().Sadd().Key(b.ks.lanes).Member(string(lane)).Build()
}

// createCall validates a create and builds ff_create's KEYS and ARGV. Nothing
// reaches Valkey when it returns an error.
func (b *Backend) createCall(a sdk.CreateExecutionArgs) ([]string, []string, error) {
	c, err := b.planCreate(a, true, -1)
	return c.keys, c.args, err
}

// createPlan is one validated create: ff_create's KEYS (when asked for)
// and ARGV, its partition and its resolved arguments.
type createPlan struct {
	keys, args []string
	part       int
	a          sdk.CreateExecutionArgs
}

// planCreate validates a create (sdk's Resolve and the payload limit),
// picks its partition and builds ff_create's ARGV, and its KEYS when
// withKeys (a batch builds its own). An item with neither id nor
// idempotency key goes to partition shared when it is one (a batch keeps
// such items together), else to the next partition in turn.
func (b *Backend) planCreate(a sdk.CreateExecutionArgs, withKeys bool, shared int) (createPlan, error) {
	a, id, part, err := b.placeCreate(a, shared)
	if err != nil {
		return createPlan{}, err
	}
	return b.createPlanOf(a, id, part, withKeys), nil
}

// placeCreate validates a create (resolveCreate) and picks its id and
// partition, as planCreate says.
func (b *Backend) placeCreate(a sdk.CreateExecutionArgs, shared int) (sdk.CreateExecutionArgs, sdk.ExecutionID, int, error) {
	a, err := b.resolveCreate(a)
	if err != nil {
		return a, "", 0, err
	}
	id := a.ID
	var part int
	switch {
	case id != "":
		if part, err = b.partitionOf("", id); err != nil {
			return a, "", 0, err
		}
	case a.IdempotencyKey != "":
		// The key decides the partition, so a retried create meets its first.
		h := fnv.New32a()
		h.Write([]byte(a.IdempotencyKey))
		part = int(h.Sum32() % uint32(b.partitions))
		id = sdk.NewExecutionID(part)
	case shared >= 0:
		part = shared
		id = sdk.NewExecutionID(part)
	default:
		part = int(b.next.Add(1) % uint64(b.partitions))
		id = sdk.NewExecutionID(part)
	}
	return a, id, part, nil
}

// resolveCreate validates a create: sdk's Resolve and the payload limit.
func (b *Backend) resolveCreate(a sdk.CreateExecutionArgs) (sdk.CreateExecutionArgs, error) {
	a, err := a.Resolve()
	if err != nil {
		return a, err
	}
	if n := len(a.Payload) + sdk.TagsBytes(a.Tags); n > b.opts.MaxPayloadBytes {
		return a, sdk.Validationf(sdk.CodePayloadTooLarge, "context (payload plus tags) is %d bytes, over the %d byte limit", n, b.opts.MaxPayloadBytes)
	}
	return a, nil
}

// createPlanOf builds the plan of resolved create a as execution id on
// partition part; a.ID set means the id is the caller's (ff_create checks
// it is new), else id was minted here.
func (b *Backend) createPlanOf(a sdk.CreateExecutionArgs, id sdk.ExecutionID, part int, withKeys bool) createPlan {
	var keys []string
	if withKeys {
		tag := sdk.PartitionTag(part)
		ek, lk, pk := b.ks.keysOf(id), b.ks.laneKeysOf(tag, a.Lane), b.ks.partKeysOf(tag)
		idem := pk.noop
		if a.IdempotencyKey != "" {
			idem = b.ks.idemKey(tag, a.IdempotencyKey)
		}
		offers := pk.noop
		if b.handoffOn() {
			offers = b.offersKeyFor(tag, a.Lane)
		}
		keys = []string{ek.core, ek.ctx, lk.eligible, lk.delayed, idem, pk.deadlines, pk.all, b.ks.arrivalsChannel(tag),
			offers, pk.leases, lk.active, pk.timeouts}
	}
	args := appendCreateArgv(make([]string, 0, createArgvLen(a)), a, id)
	return createPlan{keys: keys, args: args, part: part, a: a}
}

// createArgvLen is the length of resolved create a's ff_create ARGV.
func createArgvLen(a sdk.CreateExecutionArgs) int {
	n := 19 + 2*len(a.Tags)
	if a.TraceParent != "" {
		n++
	}
	return n
}

// appendCreateArgv appends ff_create's ARGV of resolved create a, as
// execution id, to dst: a batch builds its items' into the call's ARGV
// itself, with no slice of each item's own.
func appendCreateArgv(dst []string, a sdk.CreateExecutionArgs, id sdk.ExecutionID) []string {
	retry := defaultRetryArgs
	if !a.Retry.IsZero() {
		retry = renderRetryArgs(a.Retry)
	}
	// The wire carries whole milliseconds: round sub-millisecond values up
	// rather than turn them into 0 (no timeout, or an invalid PX).
	dedup := ceilMS(a.DedupTTL)
	attemptTimeout := ceilMS(a.AttemptTimeout)
	// An id the caller chose may exist already (ff_create checks); one
	// generated here is fresh.
	// ARGV 18 is a sum of flags: 1 the id is the caller's, 2 lease history,
	// 4 a trace carrier.
	flags := 0
	if a.ID != "" {
		flags |= 1
	}
	if a.LeaseHistory {
		flags |= 2
	}
	if a.TraceParent != "" {
		flags |= 4 // the carrier follows the tags
	}
	idGiven := string(rune('0' + flags))
	dst = append(dst, string(id), string(a.Lane), a.Kind, strconv.Itoa(a.Priority),
		msString(a.DelayUntil), joinCSV(a.RequiredCapabilities))
	dst = append(dst, retry...)
	dst = append(dst, durMS(attemptTimeout), msString(a.Deadline), durMS(dedup),
		string(a.Payload), idGiven, strconv.Itoa(len(a.Tags)))
	for k, v := range a.Tags {
		dst = append(dst, k, v)
	}
	if a.TraceParent != "" {
		dst = append(dst, a.TraceParent)
	}
	return dst
}

// createFlagsArg is the index of the flags in ff_create's ARGV.
const createFlagsArg = 17

// markAdmits sets flag 8 (the lane's quota keys follow: hand-offs admit
// first) on the ff_create ARGV that starts at args[at].
func markAdmits(args []string, at int) {
	f, _ := strconv.Atoi(args[at+createFlagsArg])
	args[at+createFlagsArg] = strconv.Itoa(f | 8)
}

// renderRetryArgs renders a resolved policy (RetryPolicy.Resolve) as ARGV
// 7..13 of ff_create.
func renderRetryArgs(p sdk.RetryPolicy) []string {
	bo := p.Backoff
	return []string{strconv.Itoa(p.MaxRetries), string(bo.Kind), durMS(bo.Initial), durMS(bo.Max),
		strconv.FormatFloat(bo.Multiplier, 'g', -1, 64), strconv.FormatFloat(bo.Jitter, 'g', -1, 64),
		joinCSV(p.RetryableCategories)}
}

// defaultRetryArgs is the zero policy rendered; most creates use it
// (callers copy it, never change it).
var defaultRetryArgs = renderRetryArgs(mustResolve(sdk.RetryPolicy{}))

func mustResolve(p sdk.RetryPolicy) sdk.RetryPolicy {
	r, err := p.Resolve()
	if err != nil {
		panic(err)
	}
	return r
}

// ceilMS rounds a positive duration up to whole milliseconds.
func ceilMS(d time.Duration) time.Duration {
	if d > 0 && d%time.Millisecond != 0 {
		d = d.Truncate(time.Millisecond) + time.Millisecond
	}
	return d
}
