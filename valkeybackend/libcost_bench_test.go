package valkeybackend_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// BenchmarkLibraryCost measures what the library's hot functions cost the
// server: microseconds inside FCALL per operation (INFO commandstats usec,
// inner commands included; the network and parsing are not), on one
// server, one caller at a time, so the figure is the function's own and
// moves only with the library (run it A/B on one machine).
//
//	go test -run '^$' -bench LibraryCost -benchtime 1x ./valkeybackend/
func BenchmarkLibraryCost(b *testing.B) {
	ctx := context.Background()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	be, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Partitions: 8, DisableHandoff: true})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	raw, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	fcallUsec := func() float64 {
		info, err := raw.Do(ctx, raw.B().Info().Section("commandstats").Build()).ToString()
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_fcall:"); ok {
				for _, kv := range strings.Split(rest, ",") {
					if v, ok := strings.CutPrefix(kv, "usec="); ok {
						n, _ := strconv.ParseFloat(v, 64)
						return n
					}
				}
			}
		}
		return 0
	}
	const lane sdk.LaneID = "libcost"
	var ids []sdk.ExecutionID
	var handles []sdk.Handle
	// Each phase runs once (the next needs what it made); its sub-benchmark
	// only reports the figures.
	phase := func(name string, n int, op func(i int)) {
		if err := raw.Do(ctx, raw.B().ConfigResetstat().Build()).Error(); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := range n {
			op(i)
		}
		fcall, wall := fcallUsec()/float64(n), float64(time.Since(start).Microseconds())/float64(n)
		b.Run(name, func(b *testing.B) {
			b.ReportMetric(fcall, "fcall-µs/op")
			b.ReportMetric(wall, "wall-µs/op")
		})
	}
	const n = 4000
	phase("create", n, func(int) {
		r, err := be.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte("payload")})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, r.ID)
	})
	phase("create_batch_of_1", n, func(int) {
		r, err := be.CreateExecutions(ctx, []sdk.CreateExecutionArgs{{Lane: lane, Kind: "k", Payload: []byte("payload")}})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, r[0].ID)
	})
	phase("grant_and_claim", n, func(i int) {
		c, err := be.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: ids[i], Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1"}, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		handles = append(handles, c.Handle)
	})
	phase("complete", n/2, func(i int) {
		if err := be.Complete(ctx, handles[i], nil); err != nil {
			b.Fatal(err)
		}
	})
	phase("complete_batch_of_8", (n-n/2)/8, func(i int) {
		items := make([]sdk.CompleteItem, 8)
		for k := range items {
			items[k].Handle = handles[n/2+8*i+k]
		}
		for _, o := range be.CompleteBatch(ctx, items) {
			if o.Err != nil {
				b.Fatal(o.Err)
			}
		}
	})
}
