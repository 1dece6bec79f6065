package valkeybackend_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// RenewCall's KEYS and ARGV, sent raw, renew the leases as RenewBatch does,
// in one FCALL; handles of two partitions or two TTLs are refused.
func TestRenewCall(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 2})
			for range 3 {
				if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: sdk.NewExecutionID(0), Lane: "renewcall", Kind: "k"}); err != nil {
					t.Fatal(err)
				}
			}
			tasks, err := b.ClaimFused(ctx, sdk.FusedClaimArgs{Lane: "renewcall", Partition: 0, Max: 3,
				WorkerID: "w", WorkerInstanceID: "w-1", LeaseTTL: 30 * time.Second})
			if err != nil || len(tasks) != 3 {
				t.Fatalf("claim: %d tasks, %v", len(tasks), err)
			}
			hs := make([]sdk.Handle, len(tasks))
			for i, tk := range tasks {
				hs[i] = tk.Handle
			}
			keys, args, err := b.RenewCall(hs)
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 4 || keys[0] != "ff:i:{p:0}:leases" || keys[1] != "ff:e:"+string(hs[0].ExecutionID)+":core" {
				t.Fatalf("keys %q", keys)
			}
			if len(args) != 13 || args[0] != "30000" || args[1] != string(hs[0].ExecutionID) {
				t.Fatalf("args %q", args)
			}

			c := b.Client()
			resetStats(t, addrs)
			arr, err := c.Do(ctx, c.B().Fcall().Function("ff_renew").Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()).ToArray()
			if err != nil || len(arr) < 3 {
				t.Fatalf("raw ff_renew: %v %v", arr, err)
			}
			if ok, _ := arr[0].AsInt64(); ok != 1 {
				t.Fatalf("raw ff_renew failed: %v", arr)
			}
			if n, _ := arr[2].AsInt64(); n != 3 {
				t.Fatalf("raw ff_renew: %d leases in the reply, want 3", n)
			}
			raw := commandCounts(t, addrs)
			resetStats(t, addrs)
			res, err := b.RenewBatch(ctx, hs)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range res {
				if r.Err != nil {
					t.Fatalf("lease %d after the raw renew: %v", i, r.Err)
				}
			}
			if sdkCounts := commandCounts(t, addrs); raw["fcall"] != 1 || sdkCounts["fcall"] != 1 {
				t.Fatalf("fcalls: raw %d, RenewBatch %d, want 1 each", raw["fcall"], sdkCounts["fcall"])
			}

			other := hs[1]
			other.ExecutionID = sdk.NewExecutionID(1)
			longer := hs[1]
			longer.LeaseTTL = time.Minute
			for name, bad := range map[string][]sdk.Handle{
				"none": nil, "two partitions": {hs[0], other}, "two ttls": {hs[0], longer},
			} {
				if _, _, err := b.RenewCall(bad); sdk.KindOf(err) != sdk.KindValidation {
					t.Errorf("%s: err %v, want a validation error", name, err)
				}
			}
		})
	}
}
