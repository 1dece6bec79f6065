package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/loadgen"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// The raw side of the same-run anchors: the ff_renew valkeybackend.RenewBatch
// sends, its KEYS and ARGV from valkeybackend's RenewCall, built as a pinned
// FCALL with valkey-go, so the SDK is compared with the very same server work
// minus the SDK.

// renewCommand builds the pinned (reusable) ff_renew FCALL for hs, leases
// of one partition with one TTL held through be.
func renewCommand(c valkey.Client, be *valkeybackend.Backend, hs []sdk.Handle) (valkey.Completed, error) {
	keys, args, err := be.RenewCall(hs)
	if err != nil {
		return valkey.Completed{}, err
	}
	return c.B().Fcall().Function("ff_renew").Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build().Pin(), nil
}

// renewCommands groups hs by partition (one FCALL each), as RenewBatch does.
func renewCommands(c valkey.Client, be *valkeybackend.Backend, hs []sdk.Handle) ([]valkey.Completed, error) {
	byPart := map[int][]sdk.Handle{}
	var order []int
	for _, h := range hs {
		p, _ := h.ExecutionID.Partition()
		if _, ok := byPart[p]; !ok {
			order = append(order, p)
		}
		byPart[p] = append(byPart[p], h)
	}
	cmds := make([]valkey.Completed, 0, len(order))
	for _, p := range order {
		cmd, err := renewCommand(c, be, byPart[p])
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

// renewedIn counts the leases an ff_renew reply renewed: {1, OK, n, then
// per lease a record whose first field is the error code, "" on success}.
func renewedIn(res valkey.ValkeyResult) (int, error) {
	arr, err := res.ToArray()
	if err != nil {
		return 0, err
	}
	if len(arr) < 3 {
		return 0, fmt.Errorf("ff_renew: short reply")
	}
	if flag, _ := arr[0].AsInt64(); flag != 1 {
		code, _ := arr[1].ToString()
		return 0, fmt.Errorf("ff_renew failed: %s", code)
	}
	// ok(n, then n equal-width records whose first field is the error code):
	// the width comes from the reply, so a wider record does not break this.
	leases, _ := arr[2].AsInt64()
	if leases <= 0 || (len(arr)-3)%int(leases) != 0 {
		return 0, fmt.Errorf("ff_renew: reply of %d fields for %d leases", len(arr), leases)
	}
	width := (len(arr) - 3) / int(leases)
	n := 0
	for i := 3; i < len(arr); i += width {
		if code, _ := arr[i].ToString(); code == "" {
			n++
		}
	}
	return n, nil
}

// holdLeases creates n executions and claims them with the fused claim (as
// a worker instance named "ffbench-raw"), returning their handles.
func holdLeases(ctx context.Context, be *valkeybackend.Backend, lane sdk.LaneID, n int, ttl time.Duration) ([]sdk.Handle, error) {
	if _, err := submitN(ctx, be, lane, n, 0); err != nil {
		return nil, err
	}
	var hs []sdk.Handle
	for round := 0; len(hs) < n && round < 100; round++ {
		var mu sync.Mutex
		var wg sync.WaitGroup
		errs := make([]error, be.Partitions())
		for p := range be.Partitions() {
			wg.Go(func() {
				ts, err := be.ClaimFused(ctx, sdk.FusedClaimArgs{Lane: lane, Partition: p, Max: 256,
					WorkerID: "ffbench", WorkerInstanceID: "ffbench-raw", LeaseTTL: ttl})
				errs[p] = err
				mu.Lock()
				for _, t := range ts {
					hs = append(hs, t.Handle)
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
	}
	if len(hs) < n {
		return nil, fmt.Errorf("claimed %d of %d leases", len(hs), n)
	}
	return hs, nil
}

// submitN creates n executions (payload: sequence from first, no intended
// time) through the SDK client, pipelined.
func submitN(ctx context.Context, be sdk.EngineBackend, lane sdk.LaneID, n int, first uint64) ([]sdk.ExecutionID, error) {
	cl := sdk.NewClient(be)
	ids := make([]sdk.ExecutionID, 0, n)
	const chunk = 2048
	for off := 0; off < n; off += chunk {
		args := make([]sdk.CreateExecutionArgs, 0, min(chunk, n-off))
		for i := off; i < min(off+chunk, n); i++ {
			args = append(args, sdk.CreateExecutionArgs{Lane: lane, Kind: "noop",
				Payload: encodePayload(first+uint64(i), time.Time{}, payloadHeader)})
		}
		res, err := cl.SubmitBatch(ctx, args)
		if err != nil {
			return nil, err
		}
		for _, r := range res {
			ids = append(ids, r.ID)
		}
	}
	return ids, nil
}

// measureSerial sends cmd serially on one connection for d and records
// each round trip.
func measureSerial(ctx context.Context, c valkey.Client, cmd valkey.Completed, d time.Duration) (*hdrhistogram.Histogram, error) {
	h := newHist()
	end := time.Now().Add(d)
	for {
		t0 := time.Now()
		if !t0.Before(end) {
			return h, nil
		}
		err := c.Do(ctx, cmd).Error()
		took := time.Since(t0)
		if err != nil {
			return nil, err
		}
		_ = h.RecordValue(max(took.Microseconds(), 1))
	}
}

// rawSlice sends each group of commands as one pipelined DoMulti, flat out,
// one goroutine per group, for d: the raw renew ceiling on the same leases
// the SDK renews. It returns the leases renewed and the time from the first
// send to the last reply (rounds started before d ends run to completion).
func rawSlice(ctx context.Context, c valkey.Client, groups [][]valkey.Completed, d time.Duration, lat *Latency) (uint64, time.Duration, error) {
	var firstErr atomic.Value
	storm := &loadgen.RenewStorm{
		Concurrency: len(groups),
		Duration:    d,
		Round: func(ctx context.Context, g int) (int, error) {
			n := 0
			for _, res := range c.DoMulti(ctx, groups[g]...) {
				k, err := renewedIn(res)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return n, err
				}
				n += k
			}
			return n, nil
		},
	}
	if lat != nil {
		storm.OnRound = func(g int, start time.Time, took time.Duration, _ int) { lat.Shard(g).Record(start, took) }
	}
	st, err := storm.Run(ctx)
	if err != nil {
		return 0, 0, err
	}
	if e, _ := firstErr.Load().(error); e != nil || st.Errors > 0 {
		return 0, 0, fmt.Errorf("raw renew: %d failed rounds: %v", st.Errors, e)
	}
	return st.Renewed, st.Elapsed, nil
}
