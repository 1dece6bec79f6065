package ffotel_test

// The instrumentation's cost on end-to-end capacity, measured A/B in one
// process on one throwaway Valkey:
//
//	go test -run '^$' -bench BenchmarkObserverCost -benchtime 1x github.com/flowfabric/flowfabric-go/otel
//
// Each round submits FF_OTEL_BENCH_JOBS executions (default 4000) and
// times one worker (concurrency 32) draining them, once plain and once
// instrumented (ClientObserver on the submits, so every execution carries
// a traceparent; WorkerObserver with an SDK MeterProvider and a sampling
// TracerProvider; FF_OTEL_BENCH_TRACES=R below 1 samples the ratio R of
// the traces, 0 is a no-op TracerProvider: metrics only;
// FF_OTEL_BENCH_CARRIER=1 gives every submit a fixed carrier, so with
// metrics only it measures what carrying one costs), in ABBA order over FF_OTEL_BENCH_ROUNDS (default 4)
// pairs. It reports each variant's median jobs/s and their ratio, and
// the median CPU per job (this process's and the server's, submits
// included) with capacity_ratio = plain CPU / instrumented CPU: on a
// machine whose cores are the bottleneck capacity goes as its inverse, and
// unlike the wall-clock rate it barely moves with other load on a
// shared machine.

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	ffotel "github.com/flowfabric/flowfabric-go/otel"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func BenchmarkObserverCost(b *testing.B) {
	ctx := context.Background()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	jobs, rounds := envInt("FF_OTEL_BENCH_JOBS", 4000), envInt("FF_OTEL_BENCH_ROUNDS", 4)
	be, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Partitions: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	var tp trace.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	if r, err := strconv.ParseFloat(os.Getenv("FF_OTEL_BENCH_TRACES"), 64); err == nil && r < 1 {
		tp = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.TraceIDRatioBased(r)))
		if r <= 0 {
			tp = noop.NewTracerProvider() // metrics only: no spans, no carriers
		}
	}
	opts := ffotel.Options{MeterProvider: mp, TracerProvider: tp}
	wobs, err := ffotel.NewWorkerObserver(opts)
	if err != nil {
		b.Fatal(err)
	}
	cobs, err := ffotel.NewClientObserver(opts)
	if err != nil {
		b.Fatal(err)
	}
	var submitObs sdk.ClientObserver = cobs
	if os.Getenv("FF_OTEL_BENCH_CARRIER") == "1" {
		submitObs = fixedCarrier{cobs}
	}
	var plainServer, otelServer []float64
	// drain submits the jobs, then times a worker finishing them all; it
	// returns jobs/s of the drain and CPU µs per job (this process's and
	// the server's, submit included).
	drain := func(round int, instrumented bool) (rate, cpu float64) {
		self0, server0 := cpuSeconds(b, srv.Addr())
		lane := sdk.LaneID("bench-" + strconv.Itoa(round) + "-" + strconv.FormatBool(instrumented))
		copts := sdk.ClientOptions{}
		cfg := sdk.WorkerConfig{WorkerID: "bench", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 32}
		if instrumented {
			copts.Observer, cfg.Observer = submitObs, wobs
		}
		args := make([]sdk.CreateExecutionArgs, jobs)
		for i := range args {
			args[i] = sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte("payload")}
		}
		if _, err := sdk.NewClientWithOptions(be, copts).SubmitBatch(ctx, args); err != nil {
			b.Fatal(err)
		}
		var done atomic.Int64
		all := make(chan struct{})
		w, err := sdk.NewWorker(be, cfg)
		if err != nil {
			b.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		stopped := make(chan error, 1)
		start := time.Now()
		go func() {
			stopped <- w.Run(runCtx, sdk.HandlerFunc(func(context.Context, *sdk.Task) error {
				if done.Add(1) == int64(jobs) {
					close(all)
				}
				return nil
			}))
		}()
		select {
		case <-all:
		case <-time.After(2 * time.Minute):
			b.Fatalf("round %d: %d of %d done after 2m", round, done.Load(), jobs)
		}
		elapsed := time.Since(start)
		self1, server1 := cpuSeconds(b, srv.Addr())
		cpu = (self1 + server1 - self0 - server0) * 1e6 / float64(jobs)
		if instrumented {
			otelServer = append(otelServer, (server1-server0)*1e6/float64(jobs))
		} else {
			plainServer = append(plainServer, (server1-server0)*1e6/float64(jobs))
		}
		stop()
		<-stopped
		return float64(jobs) / elapsed.Seconds(), cpu
	}
	drain(-1, false) // warm-up: connections, library, caches
	var plain, otel, plainCPU, otelCPU []float64
	for r := range rounds {
		order := []bool{false, true}
		if r%2 == 1 {
			order = []bool{true, false}
		}
		for _, instrumented := range order {
			rate, cpu := drain(r, instrumented)
			if instrumented {
				otel, otelCPU = append(otel, rate), append(otelCPU, cpu)
			} else {
				plain, plainCPU = append(plain, rate), append(plainCPU, cpu)
			}
		}
	}
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		if len(s)%2 == 1 {
			return s[len(s)/2]
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	mp0, mo := median(plain), median(otel)
	cp, co := median(plainCPU), median(otelCPU)
	b.Logf("plain jobs/s %.0f, CPU µs/job %.1f", plain, plainCPU)
	b.Logf("otel  jobs/s %.0f, CPU µs/job %.1f", otel, otelCPU)
	b.ReportMetric(mp0, "plain_jobs/s")
	b.ReportMetric(mo, "otel_jobs/s")
	b.ReportMetric(mo/mp0, "otel/plain")
	b.Logf("server CPU µs/job: plain %.1f, instrumented %.1f (medians)", median(plainServer), median(otelServer))
	b.ReportMetric(cp, "plain_cpu_us/job")
	b.ReportMetric(co, "otel_cpu_us/job")
	// On a machine whose cores are the bottleneck, capacity goes as the
	// inverse of CPU per job (the server's included).
	b.ReportMetric(cp/co, "capacity_ratio")
}

// cpuSeconds is this process's CPU time (user and system) and the
// server's (INFO cpu), in seconds.
func cpuSeconds(b *testing.B, addr string) (self, server float64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	err := valkeytest.EachPrimary(context.Background(), []string{addr}, func(c valkey.Client) error {
		info, err := c.Do(context.Background(), c.B().Info().Section("cpu").Build()).ToString()
		for _, line := range strings.Split(info, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
				f, _ := strconv.ParseFloat(v, 64)
				server += f
			}
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return self, server
}

// BenchmarkObserverPerTask is the CPU one task's instrumentation costs
// the worker (TaskStarted, one renewal, TaskEnded) and the client (one
// submit), with an SDK MeterProvider and a sampling TracerProvider (spans
// dropped at end, no exporter):
//
//	go test -run '^$' -bench BenchmarkObserverPerTask -benchmem github.com/flowfabric/flowfabric-go/otel
func BenchmarkObserverPerTask(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	traced := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Run("traced", func(b *testing.B) { benchPerTask(b, ffotel.Options{MeterProvider: mp, TracerProvider: traced}) })
	b.Run("metrics", func(b *testing.B) {
		benchPerTask(b, ffotel.Options{MeterProvider: mp, TracerProvider: noop.NewTracerProvider()})
	})
}

func benchPerTask(b *testing.B, opts ffotel.Options) {
	wobs, err := ffotel.NewWorkerObserver(opts)
	if err != nil {
		b.Fatal(err)
	}
	cobs, err := ffotel.NewClientObserver(opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("worker", func(b *testing.B) {
		task := &sdk.Task{ID: sdk.NewExecutionID(3), Kind: "k", Lane: "lane", AttemptType: sdk.AttemptInitial,
			ClaimedAt: time.Now(), TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
		b.ReportAllocs()
		for b.Loop() {
			tctx := wobs.TaskStarted(ctx, task)
			wobs.LeaseRenewing(task, time.Millisecond)
			wobs.TaskEnded(tctx, task, sdk.TaskEnd{Outcome: sdk.TaskCompleted, HandlerDuration: time.Millisecond})
		}
	})
	b.Run("client", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			args := sdk.CreateExecutionArgs{Lane: "lane", Kind: "k"}
			sctx := cobs.SubmitStarted(ctx, &args)
			cobs.SubmitEnded(sctx, &args, sdk.CreateExecutionResult{ID: "{p:1}:x"}, nil, time.Millisecond)
		}
	})
}

// fixedCarrier gives every submit a sampled carrier of its own before the
// wrapped observer sees it: with metrics only, the instrumented variant
// then pays for the carrier (stored, returned, parsed, linked) without
// recording spans.
type fixedCarrier struct{ sdk.ClientObserver }

func (f fixedCarrier) SubmitStarted(ctx context.Context, args *sdk.CreateExecutionArgs) context.Context {
	args.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	return f.ClientObserver.SubmitStarted(ctx, args)
}
