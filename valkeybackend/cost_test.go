package valkeybackend_test

import (
	"context"
	"testing"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// The hot path's cost in Valkey commands is a counter noise cannot move:
// these tests pin it, so an added round trip fails CI.
func TestCommandsPerOperation(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{})
			const n = 50
			// Warm the lane registry so steady-state creates are measured.
			if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "cost", Kind: "k"}); err != nil {
				t.Fatal(err)
			}
			resetStats(t, addrs)
			ids := make([]sdk.ExecutionID, 0, n)
			for i := 0; i < n; i++ {
				r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "cost", Kind: "k", Payload: []byte("x")})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, r.ID)
			}
			c := commandCounts(t, addrs)
			if got := c["fcall"]; got != n {
				t.Fatalf("create: %d FCALLs for %d creates, want exactly 1 each (all counts %v)", got, n, c)
			}
			// Commands the library runs inside the FCALL (commandstats counts
			// them too): the server-side work per create.
			t.Logf("create: 1 FCALL, %.1f commands inside it", float64(sum(c)-c["fcall"]-setup(c))/n)

			// Direct path: scan (1 ZRANGE) + grant and claim pipelined (2 FCALLs).
			resetStats(t, addrs)
			for _, id := range ids {
				p, _ := id.Partition()
				heads, err := b.ScanEligibleExecutions(ctx, sdk.ScanEligibleArgs{Lane: "cost", Partition: p, Limit: 1})
				if err != nil || len(heads) == 0 {
					t.Fatalf("scan: %v %v", heads, err)
				}
				if _, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: heads[0], Lane: "cost",
					WorkerID: "w", WorkerInstanceID: "w-1"}, 0); err != nil {
					t.Fatal(err)
				}
			}
			c = commandCounts(t, addrs)
			if c["fcall"] != 2*n || c["zrange"] != n {
				t.Fatalf("claim: fcall=%d zrange=%d for %d claims, want 2 and 1 each (%v)", c["fcall"], c["zrange"], n, c)
			}
			t.Logf("claim: 1 ZRANGE + 2 FCALLs in 2 round trips, %.1f commands inside the FCALLs",
				float64(sum(c)-c["fcall"]-c["zrange"]-setup(c))/n)
		})
	}
}

func sum(m map[string]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

// setup counts the connection and bookkeeping commands of the test itself.
func setup(c map[string]int64) int64 {
	return c["hello"] + c["client|setinfo"] + c["client|tracking"] + c["ping"] + c["config|resetstat"] + c["info"] + c["role"]
}

// The immutable context is read once; repeats are served by the client-side
// cache with no command sent.
func TestContextReadsAreCached(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{})
			r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "cache", Kind: "k", Payload: []byte("p"), Tags: map[string]string{"t": "v"}})
			if err != nil {
				t.Fatal(err)
			}
			first, err := b.ReadExecutionContext(ctx, r.ID)
			if err != nil || string(first.Payload) != "p" || first.Tags["t"] != "v" {
				t.Fatalf("first read: %+v %v", first, err)
			}
			resetStats(t, addrs)
			for i := 0; i < 20; i++ {
				c, err := b.ReadExecutionContext(ctx, r.ID)
				if err != nil || string(c.Payload) != "p" || c.Kind != "k" {
					t.Fatalf("cached read: %+v %v", c, err)
				}
			}
			if c := commandCounts(t, addrs); c["hgetall"] != 0 {
				t.Fatalf("20 repeated context reads sent %d HGETALLs, want 0 (%v)", c["hgetall"], c)
			}
		})
	}
}
