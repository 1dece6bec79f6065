package valkeybackend_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// BenchmarkLibraryCost measures what the library's hot functions cost the
// server: microseconds inside FCALL per operation (INFO commandstats usec,
// inner commands included; the network and parsing are not), and of
// those the inner commands' own (the rest is the Lua interpreter), on one
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
	addrs := []string{srv.Addr()}
	// usec returns the server's microseconds inside FCALL, and inside the
	// commands that FCALLs ran (every other command: nothing else runs
	// during a phase but INFO), since the last reset.
	usec := func() (fcall, inner float64) {
		us, err := valkeytest.CommandUsec(ctx, addrs)
		if err != nil {
			b.Fatal(err)
		}
		for name, n := range us {
			switch name {
			case "fcall":
				fcall += float64(n)
			case "info", "config|resetstat":
			default:
				inner += float64(n)
			}
		}
		return fcall, inner
	}
	const lane sdk.LaneID = "libcost"
	var ids []sdk.ExecutionID
	var handles []sdk.Handle
	// Each phase runs once (the next needs what it made); its sub-benchmark
	// only reports the figures.
	phase := func(name string, n int, op func(i int)) {
		if err := valkeytest.ResetStats(ctx, addrs); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := range n {
			op(i)
		}
		fcall, inner := usec()
		fcall, inner = fcall/float64(n), inner/float64(n)
		wall := float64(time.Since(start).Microseconds()) / float64(n)
		b.Run(name, func(b *testing.B) {
			b.ReportMetric(fcall, "fcall-µs/op")
			b.ReportMetric(inner, "inner-µs/op")
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
	handoffCycle(ctx, b, srv.Addr(), phase)
	waitCycle(ctx, b, be, phase)
	appendCycle(ctx, b, be, phase)
	flowEdgeCycle(ctx, b, srv.Addr(), phase)
}

// appendCycle adds attempt streams to BenchmarkLibraryCost, per frame of
// 64 bytes: appends of sdk.MaxFramesPerAppend frames (what Task.Emit sends
// flat out), then appends of one frame (what it sends at a low rate).
func appendCycle(ctx context.Context, b *testing.B, be *valkeybackend.Backend, phase func(string, int, func(int))) {
	const lane sdk.LaneID = "stream"
	r, err := be.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
	if err != nil {
		b.Fatal(err)
	}
	c, err := be.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1"}, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	frames := make([]sdk.Frame, sdk.MaxFramesPerAppend)
	for i := range frames {
		frames[i] = sdk.Frame{Type: "token", Payload: make([]byte, 64)}
	}
	const batches = 100
	phase("append_256_per_frame", batches*len(frames), func(i int) {
		if i%len(frames) != 0 {
			return
		}
		if _, err := be.AppendFrames(ctx, c.Handle, sdk.AppendArgs{Frames: frames, LastIDOnly: true}); err != nil {
			b.Fatal(err)
		}
	})
	phase("append_1", 2000, func(int) {
		if _, err := be.AppendFrames(ctx, c.Handle, sdk.AppendArgs{Frames: frames[:1], LastIDOnly: true}); err != nil {
			b.Fatal(err)
		}
	})
}

// waitCycle adds durable waiting to BenchmarkLibraryCost: suspends of
// claimed executions, then the signals that resume them (no offer: each
// resume is announced).
func waitCycle(ctx context.Context, b *testing.B, be *valkeybackend.Backend, phase func(string, int, func(int))) {
	const lane sdk.LaneID = "wait"
	const n = 1000
	if _, err := be.SeedWaitpointSecret(ctx, "bench", []byte("library-cost-benchmark-secret")); err != nil {
		b.Fatal(err)
	}
	handles := make([]sdk.Handle, n)
	for i := range handles {
		r, err := be.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
		if err != nil {
			b.Fatal(err)
		}
		c, err := be.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1"}, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		handles[i] = c.Handle
	}
	tokens := make([]string, n)
	phase("suspend", n, func(i int) {
		out, err := be.Suspend(ctx, handles[i], sdk.SuspendArgs{})
		if err != nil {
			b.Fatal(err)
		}
		tokens[i] = out.Waitpoints[0].Token
	})
	phase("signal_resume", n, func(i int) {
		r, err := be.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: tokens[i], Name: "go"})
		if err != nil || r.Effect != sdk.EffectResumed {
			b.Fatalf("signal: %+v, %v", r, err)
		}
	})
}

// handoffCycle adds the closed loop's path to BenchmarkLibraryCost, per
// job, in two phases: batches of 16 creates, each handed off to a posted
// offer of one worker instance, then batches of 16 completes that offer
// the freed slots again.
func handoffCycle(ctx context.Context, b *testing.B, addr string, phase func(string, int, func(int))) {
	be, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{addr}, Partitions: 8})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	const lane sdk.LaneID = "cycle"
	const batch, rounds = 16, 500
	got := make(chan sdk.ClaimedTask, batch*rounds)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := be.WatchHandoffs(wctx, "cycle-1", func(t sdk.ClaimedTask) { got <- t }); err != nil {
		b.Fatal(err)
	}
	offer := func(n int) *sdk.OfferArgs {
		a := &sdk.OfferArgs{Lane: lane, WorkerID: "w", WorkerInstanceID: "cycle-1", LeaseTTL: time.Minute, TTL: time.Minute}
		for range n {
			a.LeaseIDs = append(a.LeaseIDs, sdk.NewToken())
		}
		return a
	}
	for range rounds {
		if _, err := be.OfferClaims(ctx, *offer(batch)); err != nil {
			b.Fatal(err)
		}
	}
	items := make([]sdk.CreateExecutionArgs, batch)
	for i := range items {
		items[i] = sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte("payload")}
	}
	phase("handoff_create_per_job", rounds*batch, func(i int) {
		if i%batch != 0 {
			return
		}
		rs, err := be.CreateExecutions(ctx, items)
		if err != nil {
			b.Fatal(err)
		}
		for k := range rs {
			if rs[k].State != sdk.StateActive {
				b.Fatalf("item %d: %s, not handed off", k, rs[k].State)
			}
		}
	})
	phase("handoff_complete_per_job", rounds*batch, func(i int) {
		if i%batch != 0 {
			return
		}
		done := make([]sdk.CompleteItem, batch)
		for k := range done {
			t := <-got
			done[k] = sdk.CompleteItem{Handle: t.Handle, Offer: offer(1)}
		}
		for _, o := range be.CompleteBatch(ctx, done) {
			if o.Err != nil || o.OfferErr != nil {
				b.Fatal(o.Err, o.OfferErr)
			}
		}
	})
}
