package valkeybackend

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// handleTag validates a handle for this backend and returns its partition tag.
func (b *Backend) handleTag(op string, h sdk.Handle) (string, error) {
	p, err := b.handlePartition(op, h)
	if err != nil {
		return "", err
	}
	return sdk.PartitionTag(p), nil
}

// handlePartition checks a handle for this backend (sdk.Handle.CallPartition:
// what becomes a key name or a number) and returns its partition.
func (b *Backend) handlePartition(op string, h sdk.Handle) (int, error) {
	p, err := h.CallPartition()
	if err != nil {
		return 0, opError(op, err)
	}
	if h.Backend != sdk.BackendValkey {
		return 0, sdk.NewError(op, sdk.CodeHandleFromOtherBackend, "handle was minted by another backend")
	}
	if err := b.checkPartition(op, p); err != nil {
		return 0, err
	}
	return p, nil
}

func fenceArgs(h sdk.Handle) []string {
	return appendFence(make([]string, 0, 4), h)
}

// appendFence appends fenceArgs(h) to dst (no slice of its own).
func appendFence(dst []string, h sdk.Handle) []string {
	return append(dst, string(h.ExecutionID), h.LeaseID, strconv.FormatUint(h.Epoch, 10), h.AttemptID)
}

// Renew extends one lease by its TTL.
func (b *Backend) Renew(ctx context.Context, h sdk.Handle) (sdk.LeaseRenewal, error) {
	res, err := b.RenewBatch(ctx, []sdk.Handle{h})
	if err != nil {
		return sdk.LeaseRenewal{}, err
	}
	return res[0].Renewal, res[0].Err
}

// RenewBatch renews many leases: one ff_renew per partition (and lease TTL),
// all partitions in one pipelined round trip.
func (b *Backend) RenewBatch(ctx context.Context, handles []sdk.Handle) ([]sdk.RenewResult, error) {
	const op = "renew"
	out := make([]sdk.RenewResult, len(handles))
	// Group by partition and TTL without building strings per lease: this
	// runs for every held lease every renewal round.
	type groupKey struct {
		partition int
		ttl       time.Duration
	}
	type group struct {
		groupKey
		indexes []int
	}
	var groups []*group
	byKey := make(map[groupKey]*group)
	for i, h := range handles {
		p, err := b.handlePartition(op, h)
		if err != nil {
			out[i].Err = err
			continue
		}
		k := groupKey{p, h.LeaseTTL}
		g := byKey[k]
		if g == nil {
			g = &group{groupKey: k}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.indexes = append(g.indexes, i)
	}
	if len(groups) == 0 {
		return out, nil
	}
	cmds := make(valkey.Commands, 0, len(groups))
	for _, g := range groups {
		keys, args := b.ks.renewCall(g.partition, g.ttl, handles, g.indexes)
		cmds = append(cmds, b.fcall("ff_renew", keys, args...))
	}
	// A failing group (one shard failing over) fails its own leases only:
	// the others were renewed and must not be reported lost. The call fails
	// as a whole only when every group hit a transport error.
	var transport error
	failedGroups := 0
	for gi, res := range b.client.DoMulti(ctx, cmds...) {
		g := groups[gi]
		r, err := decode(op, res)
		if err != nil {
			if sdk.KindOf(err) == sdk.KindTransport || sdk.KindOf(err) == sdk.KindTimeout {
				transport = err
				failedGroups++
			}
			for _, i := range g.indexes {
				out[i].Err = err
			}
			continue
		}
		for j, i := range g.indexes {
			const width = 6 // code, expires_at, detail×4
			code, exp := r.field(1+width*j), r.field(2+width*j)
			if code != "" {
				var detail []string
				if code == sdk.CodeExecutionNotActive {
					detail = []string{r.field(3 + width*j), r.field(4 + width*j), r.field(5 + width*j), r.field(6 + width*j)}
				}
				out[i].Err = sdk.NewError(op, code, "", detail...)
				continue
			}
			ms, _ := strconv.ParseInt(exp, 10, 64)
			out[i].Renewal = sdk.LeaseRenewal{ExpiresAt: msTime(ms), Epoch: handles[i].Epoch}
		}
	}
	if failedGroups == len(groups) {
		return nil, transport
	}
	return out, nil
}

// renewCall builds the KEYS and ARGV of one ff_renew: the leases
// handles[i] for i in indexes, all of partition p with lease TTL ttl.
// KEYS = the partition's leases index, then each execution's core hash;
// ARGV = ttl ms, then (eid, lease_id, epoch, attempt_id) per lease.
func (k *keyspace) renewCall(p int, ttl time.Duration, handles []sdk.Handle, indexes []int) (keys, args []string) {
	keys = make([]string, 0, 1+len(indexes))
	keys = append(keys, k.partKeysOf(sdk.PartitionTag(p)).leases)
	args = make([]string, 0, 1+4*len(indexes))
	args = append(args, durMS(ttl))
	for _, i := range indexes {
		h := &handles[i]
		keys = append(keys, k.coreKey(h.ExecutionID))
		args = append(args, string(h.ExecutionID), h.LeaseID, strconv.FormatUint(h.Epoch, 10), h.AttemptID)
	}
	return keys, args
}

// RenewCall returns the KEYS and ARGV of the ff_renew RenewBatch sends for
// hs, leases of one partition with one LeaseTTL (RenewBatch sends one such
// call per partition and TTL). The harness sends it raw, to measure the
// same server work without the SDK.
func (b *Backend) RenewCall(hs []sdk.Handle) (keys, args []string, err error) {
	const op = "renew"
	if len(hs) == 0 {
		return nil, nil, sdk.NewError(op, sdk.CodeInvalidInput, "no handles")
	}
	indexes := make([]int, len(hs))
	p := -1
	for i, h := range hs {
		hp, err := b.handlePartition(op, h)
		if err != nil {
			return nil, nil, err
		}
		if i > 0 && (hp != p || h.LeaseTTL != hs[0].LeaseTTL) {
			return nil, nil, sdk.NewError(op, sdk.CodeInvalidInput, "handles of more than one partition or lease TTL")
		}
		p, indexes[i] = hp, i
	}
	keys, args = b.ks.renewCall(p, hs[0].LeaseTTL, hs, indexes)
	return keys, args, nil
}

// Progress records percent and message on the execution.
func (b *Backend) Progress(ctx context.Context, h sdk.Handle, percent int, message string) error {
	const op = "progress"
	if _, err := b.handleTag(op, h); err != nil {
		return err
	}
	if percent < 0 || percent > 100 {
		return sdk.NewError(op, sdk.CodeInvalidInput, "percent out of range 0..100")
	}
	if err := sdk.CheckReason("progress message", message); err != nil {
		return opError(op, err)
	}
	args := append(fenceArgs(h), strconv.Itoa(percent), message)
	_, err := decode(op, b.client.Do(ctx, b.fcall("ff_progress", []string{b.ks.keysOf(h.ExecutionID).core}, args...)))
	return err
}

// Complete ends the execution successfully and stores result (nil stores none).
func (b *Backend) Complete(ctx context.Context, h sdk.Handle, result []byte) error {
	const op = "complete"
	keys, args, err := b.completeCall(op, h, result)
	if err != nil {
		return err
	}
	_, err = decode(op, b.doAcked(ctx, op, b.fcall("ff_complete", keys, args...)))
	return err
}

// completeCall validates a complete and builds ff_complete's KEYS and ARGV.
func (b *Backend) completeCall(op string, h sdk.Handle, result []byte) ([]string, []string, error) {
	tag, err := b.handleTag(op, h)
	if err != nil {
		return nil, nil, err
	}
	if len(result) > b.opts.MaxPayloadBytes {
		return nil, nil, sdk.NewError(op, sdk.CodePayloadTooLarge, "result too large")
	}
	ek, lk, pk := b.ks.keysOf(h.ExecutionID), b.ks.laneKeysOf(tag, h.Lane), b.ks.partKeysOf(tag)
	has := "0"
	if result != nil {
		has = "1"
	}
	args := append(fenceArgs(h), string(result), has, string(h.Lane))
	return []string{ek.core, ek.result, pk.leases, lk.active, lk.terminal, pk.timeouts, pk.deadlines}, args, nil
}

// Fail ends the attempt; the retry policy stored with the execution decides.
func (b *Backend) Fail(ctx context.Context, h sdk.Handle, reason, category string) (sdk.FailOutcome, error) {
	const op = "fail"
	tag, err := b.handleTag(op, h)
	if err != nil {
		return sdk.FailOutcome{}, err
	}
	if err := sdk.CheckReason("failure reason", reason); err != nil {
		return sdk.FailOutcome{}, opError(op, err)
	}
	if len(category) > sdk.MaxIDLength {
		return sdk.FailOutcome{}, sdk.NewError(op, sdk.CodeInvalidInput, "failure category too long")
	}
	ek, lk, pk := b.ks.keysOf(h.ExecutionID), b.ks.laneKeysOf(tag, h.Lane), b.ks.partKeysOf(tag)
	args := append(fenceArgs(h), reason, category, strconv.FormatFloat(rand.Float64(), 'f', 6, 64), string(h.Lane))
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_fail",
		[]string{ek.core, pk.leases, lk.active, lk.terminal, lk.delayed, pk.timeouts, pk.deadlines, lk.eligible, ek.grant,
			b.ks.arrivalsChannel(tag)}, args...)))
	if err != nil {
		return sdk.FailOutcome{}, err
	}
	if r.field(0) == "retry_scheduled" {
		return sdk.FailOutcome{RetryScheduled: true, RetryAt: r.time(1)}, nil
	}
	return sdk.FailOutcome{}, nil
}

// Cancel ends the execution as cancelled, on behalf of the lease holder.
func (b *Backend) Cancel(ctx context.Context, h sdk.Handle, reason string) error {
	const op = "cancel"
	tag, err := b.handleTag(op, h)
	if err != nil {
		return err
	}
	if err := sdk.CheckReason("cancel reason", reason); err != nil {
		return opError(op, err)
	}
	_, err = decode(op, b.doAcked(ctx, op, b.cancelCmd(h.ExecutionID, tag, h.Lane, reason, "worker:"+string(h.WorkerInstanceID), &h)))
	return err
}

// cancelCmd builds ff_cancel; holder is nil for an operator's cancel.
func (b *Backend) cancelCmd(id sdk.ExecutionID, tag string, lane sdk.LaneID, reason, by string, holder *sdk.Handle) valkey.Completed {
	ek, lk, pk := b.ks.keysOf(id), b.ks.laneKeysOf(tag, lane), b.ks.partKeysOf(tag)
	fence := []string{"", "0", ""}
	if holder != nil {
		fence = fenceArgs(*holder)[1:]
	}
	args := append([]string{string(id), reason, by}, fence...)
	args = append(args, string(lane))
	return b.fcall("ff_cancel", []string{ek.core, ek.grant, pk.leases, lk.eligible, lk.delayed, lk.active,
		lk.blocked, lk.terminal, pk.timeouts, pk.deadlines, b.ks.arrivalsChannel(tag)}, args...)
}

// Delay releases the lease and parks the execution until until.
func (b *Backend) Delay(ctx context.Context, h sdk.Handle, until time.Time) error {
	const op = "delay"
	tag, err := b.handleTag(op, h)
	if err != nil {
		return err
	}
	if until.IsZero() || until.UnixMilli() <= 0 {
		return sdk.NewError(op, sdk.CodeInvalidInput, "delay time is zero")
	}
	ek, lk, pk := b.ks.keysOf(h.ExecutionID), b.ks.laneKeysOf(tag, h.Lane), b.ks.partKeysOf(tag)
	args := append(fenceArgs(h), msString(until), string(h.Lane))
	_, err = decode(op, b.doAcked(ctx, op, b.fcall("ff_delay",
		[]string{ek.core, pk.leases, lk.active, lk.delayed, pk.timeouts, lk.eligible, b.ks.arrivalsChannel(tag)}, args...)))
	return err
}
