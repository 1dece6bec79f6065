// Command recoverybench measures what the scanners cost and how fast they
// recover crashed work.
//
// Mode "recovery" (the default) reports crash-to-completion latency for a
// lease TTL and lease-expiry scan interval. In-process claim loops
// (--workers) claim executions; a fresh (initial) attempt is "crashed": the
// loop stops renewing it at a uniformly random moment of its renew period, as
// a process killed at a random time would, and never completes it. The
// lease-expiry scanner requeues it, a loop (woken by the readiness push)
// claims the reclaim attempt and completes it at once. Latency is crash to
// completion. Unlike ffbench's recovery scenario, which kills a whole fleet
// at once, crashes are single and spread over the renew period and the scan
// cycle, so the latencies can be checked against the model it prints.
//
// Mode "idle" reports the scanners' own cost: Valkey commands per second of
// an engine over idle partitions (INFO commandstats deltas, commands run
// inside functions included), with and without the cached index peek.
//
// With no --addr it starts a throwaway local valkey-server.
//
//	go run ./cmd/recoverybench --lease-ttl 1s --scan-interval 100ms
//	go run ./cmd/recoverybench --mode idle --duration 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

func main() {
	mode := flag.String("mode", "recovery", "recovery or idle")
	addr := flag.String("addr", "", "Valkey addresses, comma-separated; empty starts a throwaway local server")
	cluster := flag.Bool("cluster", false, "with no --addr, start a 3-primary cluster")
	partitions := flag.Int("partitions", 16, "partition count (a new deployment; an existing one must agree)")
	ttl := flag.Duration("lease-ttl", time.Second, "recovery: lease TTL of the crashing worker")
	scan := flag.Duration("scan-interval", 100*time.Millisecond, "recovery: lease-expiry scan interval")
	n := flag.Int("n", 300, "recovery: crashes to measure")
	inflight := flag.Int("inflight", 20, "recovery: crashed executions in flight at once")
	workers := flag.Int("workers", 4, "recovery: worker goroutines claiming (and crashing or completing)")
	dur := flag.Duration("duration", 10*time.Second, "idle: measuring window")
	lanes := flag.Int("lanes", 1, "idle: lanes in the registry")
	flag.Parse()

	ctx := context.Background()
	addrs, closeSrv, err := server(ctx, *addr, *cluster)
	if err != nil {
		fail(err)
	}
	defer closeSrv()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, Partitions: *partitions})
	if err != nil {
		fail(err)
	}
	defer b.Close()
	switch *mode {
	case "recovery":
		err = recovery(ctx, b, *ttl, *scan, *n, *inflight, *workers)
	case "idle":
		err = idle(ctx, b, addrs, *dur, *lanes)
	default:
		err = fmt.Errorf("unknown --mode %q", *mode)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "recoverybench:", err)
	os.Exit(1)
}

func server(ctx context.Context, addr string, cluster bool) ([]string, func(), error) {
	if addr != "" {
		return strings.Split(addr, ","), func() {}, nil
	}
	if cluster {
		c, err := valkeytest.StartCluster(ctx, valkeytest.ClusterOptions{})
		if err != nil {
			return nil, nil, err
		}
		return c.Addrs(), func() { c.Close() }, nil
	}
	s, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		return nil, nil, err
	}
	return []string{s.Addr()}, func() { s.Close() }, nil
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// recovery runs n crashes, inflight at a time, and prints the latencies.
func recovery(ctx context.Context, b *valkeybackend.Backend, ttl, scan time.Duration, n, inflight, workers int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	eng, err := scanner.Start(ctx, b, scanner.Config{LeaseExpiryInterval: scan, Logger: quietLogger(),
		EngineID: "recoverybench"})
	if err != nil {
		return err
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	err = eng.WaitOwned(wctx, b.Partitions())
	wcancel()
	if err != nil {
		return err
	}
	lane := sdk.LaneID("recoverybench-" + strconv.FormatUint(rand.Uint64(), 36))
	parts := make([]int, b.Partitions())
	for i := range parts {
		parts[i] = i
	}

	var mu sync.Mutex
	crashedAt := map[sdk.ExecutionID]time.Time{} // local time the worker "died"
	expiresAt := map[sdk.ExecutionID]time.Time{} // local estimate of the lease's end
	var latency, overExpiry []time.Duration
	slots := make(chan struct{}, inflight)
	done := make(chan struct{})

	// Submitter: keeps up to inflight executions in play, paced so crashes
	// fall at uniformly spread moments relative to the scan cycle (a burst
	// would make the samples move together).
	pace := (ttl + scan) / time.Duration(max(inflight, 1))
	go func() {
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for range n {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "crash"}); err != nil {
				fmt.Fprintln(os.Stderr, "create:", err)
			}
		}
	}()

	watch, err := b.WatchReadiness(ctx, []sdk.LaneID{lane})
	if err != nil {
		return err
	}
	start := time.Now()
	var doneOnce sync.Once
	for range workers {
		go func() {
			for ctx.Err() == nil {
				ready, err := b.ReadyPartitions(ctx, lane, parts)
				if err != nil || len(ready) == 0 {
					select {
					case <-watch:
					case <-time.After(50 * time.Millisecond):
					case <-ctx.Done():
					}
					continue
				}
				heads, err := b.ScanEligibleWindow(ctx, lane, ready, 8)
				if err != nil {
					continue
				}
				for _, ids := range heads {
					for _, r := range ids {
						id := r.ID
						t, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: lane,
							WorkerID: "bench", WorkerInstanceID: "bench-1"}, ttl)
						if err != nil {
							continue
						}
						claimed := time.Now()
						if t.AttemptType == sdk.AttemptInitial {
							// Crash at a uniform moment of the renew period: the last
							// "renewal" is the claim; the lease ends a TTL after it.
							mu.Lock()
							crashedAt[id] = claimed.Add(time.Duration(rand.Int64N(int64(ttl / 3))))
							expiresAt[id] = claimed.Add(ttl)
							mu.Unlock()
							continue
						}
						if err := b.Complete(ctx, t.Handle, nil); err != nil {
							fmt.Fprintln(os.Stderr, "complete:", err)
							continue
						}
						now := time.Now()
						mu.Lock()
						latency = append(latency, now.Sub(crashedAt[id]))
						overExpiry = append(overExpiry, now.Sub(expiresAt[id]))
						finished := len(latency)
						mu.Unlock()
						<-slots
						if finished == n {
							doneOnce.Do(func() { close(done) })
						}
					}
				}
			}
		}()
	}
	select {
	case <-done:
	case <-time.After(time.Duration(n/max(inflight, 1)+10) * (ttl + scan + time.Second)):
		return fmt.Errorf("only %d of %d crashes recovered", len(latency), n)
	}
	elapsed := time.Since(start)
	cancel()
	<-eng.Done()

	fmt.Printf("recoverybench: %d crashes (%d in flight, %d workers), lease TTL %v (renewed every %v), lease-expiry scan every %v, %d partitions, %s, %v\n",
		n, inflight, workers, ttl, ttl/3, scan, b.Partitions(), topology(b), elapsed.Round(time.Millisecond))
	fmt.Printf("crash to completion:   %s\n", summarize(latency))
	fmt.Printf("lease end to completion (scanner + pickup): %s\n", summarize(overExpiry))
	fmt.Printf("model: lease left after the crash U(%v, %v) + scan wait U(0, %v) + pickup; expected mean %v\n",
		ttl-ttl/3, ttl, scan, (ttl - ttl/6 + scan/2).Round(time.Millisecond))
	return nil
}

func topology(b *valkeybackend.Backend) string {
	if b.IsCluster() {
		return "cluster"
	}
	return "standalone"
}

func summarize(ds []time.Duration) string {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(p float64) time.Duration {
		return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(time.Millisecond)
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return fmt.Sprintf("p50 %v  p90 %v  p99 %v  max %v  mean %v", q(0.50), q(0.90), q(0.99),
		ds[len(ds)-1].Round(time.Millisecond), (sum / time.Duration(len(ds))).Round(time.Millisecond))
}

// idle measures an engine with default intervals over idle partitions, with
// the cached peek and without.
func idle(ctx context.Context, b *valkeybackend.Backend, addrs []string, dur time.Duration, lanes int) error {
	// A realistic idle deployment: lanes in the registry, each with one
	// finished execution (young, so retention has nothing to do).
	for i := range lanes {
		lane := sdk.LaneID(fmt.Sprintf("idle-%d", i))
		r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
		if err != nil {
			return err
		}
		if _, err := b.CancelExecution(ctx, sdk.CancelExecutionArgs{ExecutionID: r.ID, Reason: "idle bench"}); err != nil {
			return err
		}
	}
	fmt.Printf("recoverybench idle: %d partitions, %d lane(s), %s, default intervals (lease expiry %v, delayed %v, unblock %v, timeouts %v, retention %v, ownership renew %v), %v window\n",
		b.Partitions(), lanes, topology(b), scanner.LeaseExpiryIntervalDefault, scanner.DelayedIntervalDefault,
		scanner.UnblockIntervalDefault, scanner.TimeoutIntervalDefault, scanner.RetentionIntervalDefault,
		scanner.OwnershipTTLDefault/3, dur)
	for _, peek := range []bool{true, false} {
		// A fresh connection per run, so the peek starts with a cold cache.
		eb, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs})
		if err != nil {
			return err
		}
		rctx, cancel := context.WithCancel(ctx)
		eng, err := scanner.Start(rctx, eb, scanner.Config{DisablePeek: !peek, Logger: quietLogger(),
			EngineID: "idle-bench"})
		if err != nil {
			cancel()
			return err
		}
		time.Sleep(3 * time.Second) // warm up: ownership settled, lanes read, heads cached
		if err := valkeytest.ResetStats(ctx, addrs); err != nil {
			cancel()
			return err
		}
		time.Sleep(dur)
		calls, err := valkeytest.CommandCalls(ctx, addrs)
		cancel()
		<-eng.Done()
		eb.Close()
		if err != nil {
			return err
		}
		for _, own := range []string{"info", "config|resetstat", "hello", "client|setinfo", "role"} {
			delete(calls, own) // this program's measuring connections
		}
		total := int64(0)
		for _, v := range calls {
			total += v
		}
		// Commands the engine sent itself, as opposed to those its functions
		// ran. Idle, functions run only TIME and ZRANGEBYSCORE (ff_due, once
		// each) and GET, SET, TIME (ff_own; TIME and SET only when it owns).
		sent := calls["fcall"] + calls["fcall_ro"] + calls["zadd"] + calls["zremrangebyscore"] +
			calls["zcount"] + calls["smembers"] + calls["client|caching"] + calls["zrange"] +
			(calls["time"] - calls["fcall_ro"] - calls["set"])
		secs := dur.Seconds()
		p := float64(b.Partitions())
		fmt.Printf("peek=%-5v  %7.1f commands/s  = %5.2f per partition per second   (engine round-trip commands ≈ %.2f per partition per second)\n",
			peek, float64(total)/secs, float64(total)/secs/p, float64(sent)/secs/p)
		fmt.Printf("           breakdown per second: %s\n", breakdown(calls, secs))
	}
	return nil
}

func breakdown(calls map[string]int64, secs float64) string {
	keys := make([]string, 0, len(calls))
	for k := range calls {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return calls[keys[i]] > calls[keys[j]] })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%.2f", k, float64(calls[k])/secs))
	}
	return strings.Join(parts, " ")
}
