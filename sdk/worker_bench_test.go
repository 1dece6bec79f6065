package sdk_test

// Measurements of the worker on a throwaway local Valkey (standalone). They
// run only with -bench, e.g.:
//
//	go test -run '^$' -bench 'BenchmarkWorkerClaim' -benchtime 10000x ./sdk
//	go test -run '^$' -bench 'BenchmarkIdlePickup' -benchtime 2000x ./sdk
//	go test -run '^$' -bench 'BenchmarkIdleWorker|BenchmarkRenew10k' -benchtime 1x ./sdk
//
// Commands come from INFO commandstats deltas, two ways: "srvcmds" counts
// every command the server ran (FCALL internals included), "cmds" only the
// commands clients send: FCALL, FCALL_RO, ZRANGE (the scan; ff_claim_fused
// also runs one ZRANGE inside, subtracted), ZCARD and CLIENT CACHING (the
// readiness reads; valkey-go sends CLIENT CACHING YES before a cached read),
// MULTI/EXEC/PTTL if any. (CLIENT LIST tot-cmds would be simpler but Valkey
// 8.0 counts script-internal commands there too.)

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

func benchServer(b *testing.B) string {
	b.Helper()
	srv, err := valkeytest.Start(context.Background(), valkeytest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv.Addr()
}

func benchConnect(b *testing.B, addr string) *valkeybackend.Backend {
	return benchConnectWith(b, addr, valkeybackend.Options{})
}

func benchConnectWith(b *testing.B, addr string, opts valkeybackend.Options) *valkeybackend.Backend {
	b.Helper()
	opts.Addrs, opts.Partitions = []string{addr}, e2ePartitions
	be, err := valkeybackend.Connect(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	return be
}

// clientCommands counts, in a commandstats delta, the commands clients
// send (see the file comment); fusedCalls is how many ff_claim_fused calls
// ran (each runs one ZRANGE inside).
func benchClientCommands(before, after map[string]int64, fusedCalls int64) int64 {
	var n int64
	for _, name := range []string{"fcall", "fcall_ro", "zrange", "zcard", "client|caching", "multi", "exec", "pttl"} {
		n += after[name] - before[name]
	}
	return n - fusedCalls
}

// serverCommands sums INFO commandstats calls, minus the admin connection's
// own INFO and CLIENT LIST.
func benchServerCommands(b *testing.B, addr string) (total int64, byName map[string]int64) {
	b.Helper()
	byName, err := valkeytest.CommandCalls(context.Background(), []string{addr})
	if err != nil {
		b.Fatal(err)
	}
	for name, n := range byName {
		switch name {
		case "info", "client|list", "hello", "client|setname", "client|setinfo":
			continue
		}
		total += n
	}
	return total, byName
}

func benchDiff(before, after map[string]int64) string {
	var names []string
	for k := range after {
		if after[k]-before[k] > 0 {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s=%d", k, after[k]-before[k]))
	}
	return strings.Join(parts, " ")
}

// BenchmarkWorkerClaim: b.N executions waiting on 16 partitions and two
// lanes; one worker of concurrency 32 claims and completes them all.
func BenchmarkWorkerClaim(b *testing.B) {
	for _, mode := range []sdk.ClaimMode{sdk.ClaimDirect, sdk.ClaimFused} {
		b.Run(mode.String(), func(b *testing.B) {
			addr := benchServer(b)
			ctx := context.Background()
			lanes := []sdk.LaneID{"bench-a", "bench-b"}
			producer := benchConnect(b, addr)
			args := make([]sdk.CreateExecutionArgs, b.N)
			for i := range args {
				args[i] = sdk.CreateExecutionArgs{Lane: lanes[i%2], Kind: "k", Payload: []byte("payload")}
			}
			if _, err := sdk.NewClient(producer).SubmitBatch(ctx, args); err != nil {
				b.Fatal(err)
			}
			producer.Close()

			be := benchConnect(b, addr)
			defer be.Close()
			var done atomic.Int64
			allDone := make(chan struct{})
			w, err := sdk.NewWorker(be, sdk.WorkerConfig{WorkerID: "bench", Lanes: lanes, MaxConcurrency: 32, ClaimMode: mode})
			if err != nil {
				b.Fatal(err)
			}
			srv0, by0 := benchServerCommands(b, addr)
			runCtx, stop := context.WithCancel(ctx)
			stopped := make(chan error, 1)
			b.ResetTimer()
			go func() {
				stopped <- w.Run(runCtx, sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
					err := t.Complete(ctx, nil)
					if done.Add(1) == int64(b.N) {
						close(allDone)
					}
					return err
				}))
			}()
			<-allDone
			b.StopTimer()
			srv1, by1 := benchServerCommands(b, addr)
			stop()
			if err := <-stopped; err != nil {
				b.Fatal(err)
			}
			n := float64(b.N)
			st := w.Stats()
			var fused int64
			if mode == sdk.ClaimFused {
				fused = int64(st.ClaimAttempts)
			}
			sent := benchClientCommands(by0, by1, fused)
			// The Complete FCALL is one command per execution; the rest is claiming.
			b.ReportMetric(float64(sent)/n, "cmds/exec")
			b.ReportMetric(float64(sent)/n-1, "cmds/claim")
			b.ReportMetric(float64(srv1-srv0)/n, "srvcmds/exec")
			b.ReportMetric(float64(st.ClaimConflicts)/n, "conflicts/claim")
			b.ReportMetric(n/b.Elapsed().Seconds(), "exec/s")
			b.Logf("N=%d %s: clients sent %d commands; server ran: %s; stats %+v", b.N, mode, sent, benchDiff(by0, by1), st)
		})
	}
}

// BenchmarkIdleWorker: what one idle worker costs the server per second,
// over one window of FF_IDLE_SECONDS (default 30s).
func BenchmarkIdleWorker(b *testing.B) {
	secs := 30
	if v, err := strconv.Atoi(os.Getenv("FF_IDLE_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	addr := benchServer(b)
	be := benchConnect(b, addr)
	defer be.Close()
	w, err := sdk.NewWorker(be, sdk.WorkerConfig{WorkerID: "bench", Lanes: []sdk.LaneID{"idle-a", "idle-b"}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(ctx, sdk.HandlerFunc(func(context.Context, *sdk.Task) error { return nil })) }()
	time.Sleep(500 * time.Millisecond) // let it settle into idle
	var sent, pings, srv int64
	var window time.Duration
	for range min(b.N, 1) { // one window whatever b.N is
		srv0, by0 := benchServerCommands(b, addr)
		t0 := time.Now()
		time.Sleep(time.Duration(secs) * time.Second)
		window += time.Since(t0)
		srv1, by1 := benchServerCommands(b, addr)
		// The registry heartbeat is an FCALL plus a ZADD of the index; PINGs
		// are valkey-go's keepalive on the backend's idle connections.
		d := benchClientCommands(by0, by1, 0) + by1["zadd"] - by0["zadd"]
		sent += d
		pings += by1["ping"] - by0["ping"]
		srv += srv1 - srv0
		b.Logf("idle %ds: worker sent %d commands and %d keepalive PINGs; server ran: %s", secs, d, by1["ping"]-by0["ping"], benchDiff(by0, by1))
	}
	stop()
	<-stopped
	b.ReportMetric(float64(sent)/window.Seconds(), "cmds/s")
	b.ReportMetric(float64(sent+pings)/window.Seconds(), "cmds+pings/s")
	b.ReportMetric(float64(srv)/window.Seconds(), "srvcmds/s")
	st := w.Stats()
	b.Logf("stats: rounds %d readiness %d push %d poll %d", st.ClaimRounds, st.ReadinessReads, st.IdleWakeupsPush, st.IdleWakeupsPoll)
}

// BenchmarkIdlePickup: submit to handler start with one idle worker, one
// execution at a time (b.N samples); reports p50/p99/max in µs. The
// no-arrivals variant turns arrivals off: the worker learns of the work
// from the readiness push and reads the set before claiming.
func BenchmarkIdlePickup(b *testing.B) {
	for _, v := range []struct {
		mode                 sdk.ClaimMode
		noArrivals, noOffers bool
	}{{sdk.ClaimDirect, false, false}, {sdk.ClaimDirect, false, true}, {sdk.ClaimDirect, true, true}, {sdk.ClaimFused, false, true}} {
		name := v.mode.String()
		if v.noOffers {
			name += "-no-handoff"
		}
		if v.noArrivals {
			name += "-no-arrivals"
		}
		mode := v.mode
		b.Run(name, func(b *testing.B) {
			addr := benchServer(b)
			producer := benchConnect(b, addr)
			defer producer.Close()
			be := benchConnectWith(b, addr, valkeybackend.Options{DisableArrivals: v.noArrivals})
			defer be.Close()
			started := make(chan time.Time, 1)
			w, err := sdk.NewWorker(be, sdk.WorkerConfig{WorkerID: "bench", Lanes: []sdk.LaneID{"pickup"}, ClaimMode: mode,
				DisableClaimOffers: v.noOffers})
			if err != nil {
				b.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			stopped := make(chan error, 1)
			go func() {
				stopped <- w.Run(ctx, sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
					started <- time.Now()
					return nil
				}))
			}()
			time.Sleep(200 * time.Millisecond)
			lat := make([]time.Duration, 0, b.N)
			sub := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				time.Sleep(5 * time.Millisecond) // idle again
				t0 := time.Now()
				if _, err := producer.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "pickup", Kind: "k"}); err != nil {
					b.Fatal(err)
				}
				sub = append(sub, time.Since(t0))
				select {
				case s := <-started:
					lat = append(lat, s.Sub(t0))
				case <-time.After(10 * time.Second):
					b.Fatal("not picked up within 10s")
				}
			}
			b.StopTimer()
			stop()
			<-stopped
			slices.Sort(lat)
			slices.Sort(sub)
			q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
			b.ReportMetric(q(0.5), "p50-µs")
			// For scale: how long the submit call itself took (its reply, not
			// the pickup), p50.
			b.ReportMetric(float64(sub[len(sub)/2].Microseconds()), "submit-p50-µs")
			b.ReportMetric(q(0.99), "p99-µs")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
			st := w.Stats()
			b.Logf("N=%d %s: p50 %v p99 %v max %v; wakeups push %d poll %d; arrivals %d, hand-offs %d, conflicts %d", b.N, name, time.Duration(q(0.5))*time.Microsecond,
				time.Duration(q(0.99))*time.Microsecond, lat[len(lat)-1], st.IdleWakeupsPush, st.IdleWakeupsPoll, st.Arrivals, st.Handoffs, st.ClaimConflicts)
		})
	}
}

// BenchmarkRenew10k: 10,000 leases held over 16 partitions by one worker
// whose renewer is asked to renew each every 250ms (40,000/s demanded;
// FF_RENEW_EVERY overrides); reports the renewals per second achieved, the
// rounds and the lag, and the backend's raw RenewBatch ceiling.
func BenchmarkRenew10k(b *testing.B) {
	const leases = 10000
	every := 250 * time.Millisecond
	if d, err := time.ParseDuration(os.Getenv("FF_RENEW_EVERY")); err == nil && d > 0 {
		every = d
	}
	addr := benchServer(b)
	ctx := context.Background()
	producer := benchConnect(b, addr)
	args := make([]sdk.CreateExecutionArgs, leases)
	for i := range args {
		args[i] = sdk.CreateExecutionArgs{Lane: "renew-raw", Kind: "k"}
	}
	if _, err := sdk.NewClient(producer).SubmitBatch(ctx, args); err != nil {
		b.Fatal(err)
	}
	be := benchConnect(b, addr)
	defer be.Close()

	// The backend's ceiling first: claim 10,000 leases by hand and renew them
	// all with RenewBatch (16 FCALLs in one flush), back to back.
	var hs []sdk.Handle
	for p := range be.Partitions() {
		for {
			ts, err := be.ClaimFused(ctx, sdk.FusedClaimArgs{Lane: "renew-raw", Partition: p, Max: 256,
				WorkerID: "bench", WorkerInstanceID: "raw", LeaseTTL: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			for _, t := range ts {
				hs = append(hs, t.Handle)
			}
			if len(ts) == 0 {
				break
			}
		}
	}
	const rounds = 10
	t0 := time.Now()
	for range rounds {
		res, err := be.RenewBatch(ctx, hs)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	el := time.Since(t0)
	raw := float64(rounds*len(hs)) / el.Seconds()
	b.Logf("raw RenewBatch of %d handles: %v per batch, %.0f renewals/s", len(hs), el/rounds, float64(rounds*len(hs))/el.Seconds())
	for _, h := range hs {
		_ = be.Complete(ctx, h, nil)
	}

	// Then the worker's renewer.
	for i := range args {
		args[i] = sdk.CreateExecutionArgs{Lane: "renew", Kind: "k"}
	}
	if _, err := sdk.NewClient(producer).SubmitBatch(ctx, args); err != nil {
		b.Fatal(err)
	}
	producer.Close()
	release := make(chan struct{})
	var held atomic.Int64
	w, err := sdk.NewWorker(be, sdk.WorkerConfig{WorkerID: "bench", Lanes: []sdk.LaneID{"renew"}, MaxConcurrency: leases,
		LeaseTTL: max(5*time.Second, 4*every), RenewEvery: every})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() {
		stopped <- w.Run(runCtx, sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
			held.Add(1)
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}))
	}()
	for held.Load() < leases {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second) // renewals spread out
	var rate float64
	b.ResetTimer()
	for range min(b.N, 1) { // one 5s window whatever b.N is
		s0 := w.Stats()
		t0 := time.Now()
		time.Sleep(5 * time.Second)
		s1 := w.Stats()
		el := time.Since(t0)
		rate = float64(s1.Renewals-s0.Renewals) / el.Seconds()
		b.Logf("%d leases: %.0f renewals/s in %.1f rounds/s (%.0f per round); lag avg %v max %v; failures %d lost %d",
			leases, rate, float64(s1.RenewRounds-s0.RenewRounds)/el.Seconds(),
			float64(s1.Renewals-s0.Renewals)/float64(max(s1.RenewRounds-s0.RenewRounds, 1)),
			s1.RenewLagAvg, s1.RenewLagMax, s1.RenewFailures, s1.LostLeases)
	}
	b.StopTimer()
	b.ReportMetric(rate, "renewals/s")
	b.ReportMetric(raw, "raw-renewals/s")

	close(release)
	stop()
	<-stopped
}
