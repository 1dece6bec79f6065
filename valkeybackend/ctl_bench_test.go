package valkeybackend_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// BenchmarkOperatorReads measures what ffctl's reads cost a deployment of
// 16 partitions holding one lane's 10,000 waiting, 200 active and 2,200
// ended executions (one in 11 failed, the rest cancelled): per call, the
// wall time, the server commands (cmds/op) and the server's microseconds
// in them (server-us/op). A page of a state rare among its index (the
// dead letters) reads the records of the ended executions until it is
// full.
//
//	go test -run '^$' -bench OperatorReads -benchtime 20x ./valkeybackend/
func BenchmarkOperatorReads(b *testing.B) {
	ctx := context.Background()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	addrs := []string{srv.Addr()}
	be, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, Partitions: 16, DisableHandoff: true})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	const lane sdk.LaneID = "ops"
	create := func(n int) []sdk.ExecutionID {
		var ids []sdk.ExecutionID
		for n > 0 {
			args := make([]sdk.CreateExecutionArgs, min(n, 500))
			for i := range args {
				args[i] = sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}
			}
			res, err := be.CreateExecutions(ctx, args)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range res {
				ids = append(ids, r.ID)
			}
			n -= len(args)
		}
		return ids
	}
	claim := func(id sdk.ExecutionID) sdk.Handle {
		t, err := be.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: lane, WorkerID: "w",
			WorkerInstanceID: "w-1"}, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		return t.Handle
	}
	// One ended execution in 11 failed (no retries), spread among the
	// cancelled ones as it would be.
	for i, id := range create(2200) {
		if i%11 == 0 {
			if _, err := be.Fail(ctx, claim(id), "boom", "c"); err != nil {
				b.Fatal(err)
			}
		} else if _, err := be.CancelExecution(ctx, sdk.CancelExecutionArgs{ExecutionID: id}); err != nil {
			b.Fatal(err)
		}
	}
	for _, id := range create(200) {
		claim(id)
	}
	create(10000)

	measure := func(b *testing.B, call func() error) {
		if err := valkeytest.ResetStats(ctx, addrs); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			if err := call(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		calls, err := valkeytest.CommandCalls(ctx, addrs)
		if err != nil {
			b.Fatal(err)
		}
		usec, err := valkeytest.CommandUsec(ctx, addrs)
		if err != nil {
			b.Fatal(err)
		}
		var n, us float64
		for name := range calls {
			if name == "info" || name == "config|resetstat" {
				continue
			}
			n += float64(calls[name])
			us += float64(usec[name])
		}
		b.ReportMetric(n/float64(b.N), "cmds/op")
		b.ReportMetric(us/float64(b.N), "server-us/op")
	}
	list := func(st sdk.PublicState) func() error {
		return func() error {
			p, err := be.ListLaneExecutions(ctx, valkeybackend.ListLaneArgs{Lane: lane, State: st, Limit: 100})
			if err == nil && len(p.Executions) != 100 {
				b.Fatalf("%s: page of %d", st, len(p.Executions))
			}
			return err
		}
	}
	b.Run("list-waiting-100", func(b *testing.B) { measure(b, list(sdk.StateWaiting)) })
	b.Run("list-active-100", func(b *testing.B) { measure(b, list(sdk.StateActive)) })
	b.Run("dead-letters-100", func(b *testing.B) { measure(b, list(sdk.StateFailed)) })
	b.Run("depths", func(b *testing.B) {
		measure(b, func() error { _, err := be.LaneDepths(ctx, []sdk.LaneID{lane}, false); return err })
	})
	b.Run("depths-ended", func(b *testing.B) {
		measure(b, func() error { _, err := be.LaneDepths(ctx, []sdk.LaneID{lane}, true); return err })
	})
}
