package valkeybackend

import (
	"context"
	"strconv"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// fusedMax caps FusedClaimArgs.Max.
const fusedMax = 256

// ClaimFused picks, grants and claims up to Max executions of a lane on one
// partition in a single FCALL (ff_claim_fused) and returns their context
// inline. Executions the worker lacks capabilities for are blocked for
// routing on the way.
func (b *Backend) ClaimFused(ctx context.Context, a sdk.FusedClaimArgs) ([]sdk.ClaimedTask, error) {
	const op = "claim_fused"
	a, err := a.Resolve()
	if err != nil {
		return nil, opError(op, err)
	}
	if err := b.checkPartition(op, a.Partition); err != nil {
		return nil, err
	}
	n := min(a.Max, fusedMax)
	tag := sdk.PartitionTag(a.Partition)
	lk, pk := b.ks.laneKeysOf(tag, a.Lane), b.ks.partKeysOf(tag)
	args := make([]string, 0, 6+2*n)
	args = append(args, string(a.WorkerID), string(a.WorkerInstanceID), durMS(a.LeaseTTL), strconv.Itoa(n),
		joinCSV(a.Capabilities), string(a.Lane))
	for i := 0; i < n; i++ {
		args = append(args, sdk.NewToken(), sdk.NewToken())
	}
	r, err := decode(op, b.client.Do(ctx, b.fcall("ff_claim_fused",
		[]string{lk.eligible, pk.leases, lk.active, pk.timeouts, lk.blocked}, args...)))
	if err != nil {
		return nil, err
	}
	count := int(r.int(0))
	out := make([]sdk.ClaimedTask, 0, count)
	defer func() { // no idle worker of this process is to chase them now
		ids := make([]sdk.ExecutionID, len(out))
		for i, t := range out {
			ids[i] = t.Handle.ExecutionID
		}
		b.arrive.claimed(a.Lane, ids...)
	}()
	f := r.fields[1:]
	for i := 0; i < count; i++ {
		if len(f) < 8 {
			return out, &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "short fused claim reply"}
		}
		pairs, _ := strconv.Atoi(f[7])
		if pairs < 0 || len(f) < 8+2*pairs {
			return out, &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "short fused claim context"}
		}
		out = append(out, sdk.ClaimedTask{
			ClaimedExecution: leaseFrom(sdk.ExecutionID(f[0]), a.Lane, a.WorkerInstanceID, a.LeaseTTL, reply{fields: f[1:7]}),
			Context:          contextFromPairs(f[8 : 8+2*pairs]),
		})
		f = f[8+2*pairs:]
	}
	return out, nil
}
