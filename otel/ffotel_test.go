package ffotel_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	ffotel "github.com/flowfabric/flowfabric-go/otel"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// The submitting process: the test binary run again with these set.
const (
	envSubmitAddr = "FFOTEL_TEST_SUBMIT_ADDR"
	envSubmitLane = "FFOTEL_TEST_SUBMIT_LANE"
	helperSubmits = 3
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(envSubmitAddr); addr != "" {
		if err := submitHelper(addr, sdk.LaneID(os.Getenv(envSubmitLane))); err != nil {
			fmt.Fprintln(os.Stderr, "submit helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const partitions = 4

// submitHelper submits helperSubmits executions through a ClientObserver
// and prints one line per submit span: "<execution id> <trace id> <span id>".
func submitHelper(addr string, lane sdk.LaneID) error {
	ctx := context.Background()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{addr}, Partitions: partitions})
	if err != nil {
		return err
	}
	defer b.Close()
	rec := tracetest.NewSpanRecorder()
	obs, err := ffotel.NewClientObserver(ffotel.Options{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	if err != nil {
		return err
	}
	client := sdk.NewClientWithOptions(b, sdk.ClientOptions{Observer: obs})
	for range helperSubmits {
		if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "remote"}); err != nil {
			return err
		}
	}
	for _, s := range rec.Ended() {
		var id string
		for _, a := range s.Attributes() {
			if a.Key == ffotel.KeyMessageID {
				id = a.Value.AsString()
			}
		}
		fmt.Println(id, s.SpanContext().TraceID(), s.SpanContext().SpanID())
	}
	return nil
}

// metricsOf collects r and indexes its metrics by name.
func metricsOf(t *testing.T, r sdkmetric.Reader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// attrSets returns every data point's attribute set of m.
func attrSets(m metricdata.Metrics) []attribute.Set {
	var out []attribute.Set
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	}
	return out
}

// total sums an int64 counter's points whose attribute key k is v (any
// point when k is "").
func total(m metricdata.Metrics, k attribute.Key, v string) int64 {
	var n int64
	if d, ok := m.Data.(metricdata.Sum[int64]); ok {
		for _, p := range d.DataPoints {
			if got, has := p.Attributes.Value(k); k == "" || (has && got.AsString() == v) {
				n += p.Value
			}
		}
	}
	return n
}

// histCount counts a histogram's recordings over its points.
func histCount(m metricdata.Metrics) uint64 {
	var n uint64
	if d, ok := m.Data.(metricdata.Histogram[float64]); ok {
		for _, p := range d.DataPoints {
			n += p.Count
		}
	}
	return n
}

// gaugeOf reads an int64 gauge's point for lane ("" for the point
// without a lane).
func gaugeOf(m metricdata.Metrics, lane sdk.LaneID) (int64, bool) {
	if d, ok := m.Data.(metricdata.Gauge[int64]); ok {
		for _, p := range d.DataPoints {
			got, has := p.Attributes.Value(ffotel.KeyDestination)
			if (lane == "" && !has) || (has && got.AsString() == string(lane)) {
				return p.Value, true
			}
		}
	}
	return 0, false
}

// A worker instrumented by ffotel against an in-memory reader and a span
// recorder: every metric of the worker, the client and the engine's
// gauges appears with its unit and only bounded attributes (never an
// execution id); the gauges follow the backlog; and each handler span
// links to its submit span made in ANOTHER process (the test binary run
// again as the submitter), whose context the execution carried.
func TestWorkerMetricsAndTraces(t *testing.T) {
	ctx := context.Background()
	srv := valkeytest.NewServer(t)
	lane := sdk.LaneID(fmt.Sprintf("otel-%d", time.Now().UnixNano()%1e9))

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envSubmitAddr+"="+srv.Addr(), envSubmitLane+"="+string(lane))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("submitting process: %v\n%s", err, stderr.String())
	}
	type remote struct{ trace, span string }
	remoteSpans := map[sdk.ExecutionID]remote{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 {
			remoteSpans[sdk.ExecutionID(f[0])] = remote{f[1], f[2]}
		}
	}
	if len(remoteSpans) != helperSubmits {
		t.Fatalf("submitting process printed %q, want %d submit spans", out, helperSubmits)
	}

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	opts := ffotel.Options{MeterProvider: mp, TracerProvider: tp}
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	reg, err := ffotel.RegisterGauges(opts, b, func(err error) { t.Errorf("gauges: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	cobs, err := ffotel.NewClientObserver(opts)
	if err != nil {
		t.Fatal(err)
	}
	client := sdk.NewClientWithOptions(b, sdk.ClientOptions{Observer: cobs})
	kinds := []string{"ok", "ok", "fail", "slow", "lose"}
	for _, k := range kinds {
		if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: k}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "bad kind"}); err == nil {
		t.Fatal("a bad kind was accepted")
	}
	submitted := len(kinds) + helperSubmits
	ms := metricsOf(t, reader)
	if n, _ := gaugeOf(ms[ffotel.MetricLaneEligible], lane); n != int64(submitted) {
		t.Fatalf("eligible gauge before the worker: %d, want %d", n, submitted)
	}
	if age := ms[ffotel.MetricLaneOldestAge]; len(attrSets(age)) == 0 {
		t.Fatal("no oldest-waiting gauge")
	}

	wobs, err := ffotel.NewWorkerObserver(opts)
	if err != nil {
		t.Fatal(err)
	}
	var ended atomic.Int64
	release := make(chan struct{})
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		defer ended.Add(1)
		if !trace.SpanContextFromContext(ctx).IsValid() {
			return errors.New("the handler's context holds no span")
		}
		switch task.Kind {
		case "fail":
			return errors.New("boom")
		case "slow":
			<-release
		case "lose":
			if _, err := b.RevokeLease(ctx, sdk.RevokeLeaseArgs{ExecutionID: task.ID, Reason: "test"}); err != nil {
				return err
			}
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	w, err := sdk.NewWorker(b, sdk.WorkerConfig{WorkerID: "otel", Lanes: []sdk.LaneID{lane}, LeaseTTL: 300 * time.Millisecond,
		Observer: wobs})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx, h) }()
	defer func() {
		stop()
		<-done
	}()
	began := time.Now()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		defer func() { t.Logf("%v: %s", time.Since(began), what) }()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The slow task holds its lease while the gauges are read: active 1.
	waitFor("all but the slow task to end", func() bool { return ended.Load() == int64(submitted-1) })
	// A handler's return comes before its task's completion call ends, and
	// the task counts as active until then: wait for the last of those.
	waitFor("the worker's active tasks down to the slow one", func() bool {
		return total(metricsOf(t, reader)[ffotel.MetricTasksActive], ffotel.KeyDestination, string(lane)) == 1
	})
	ms = metricsOf(t, reader)
	// Active: the slow task and the revoked one (its lease stays indexed
	// until the reclaim scanner, not running here, requeues it).
	if n, _ := gaugeOf(ms[ffotel.MetricActive], ""); n != 2 {
		t.Fatalf("active gauge with the slow task running: %d, want 2", n)
	}
	if n, _ := gaugeOf(ms[ffotel.MetricLaneEligible], lane); n != 0 {
		t.Fatalf("eligible gauge with everything claimed: %d, want 0", n)
	}
	waitFor("renewals of the slow task's lease", func() bool {
		return histCount(metricsOf(t, reader)[ffotel.MetricRenewalLag]) >= 2
	})
	close(release)
	waitFor("every outcome", func() bool {
		return total(metricsOf(t, reader)[ffotel.MetricOutcomes], "", "") == int64(submitted)
	})

	ms = metricsOf(t, reader)
	units := map[string]string{
		ffotel.MetricClaimLatency: "s", ffotel.MetricConsumed: "{message}", ffotel.MetricProcessDuration: "s",
		ffotel.MetricOutcomes: "{task}", ffotel.MetricRenewalLag: "s", ffotel.MetricLeaseLost: "{lease}",
		ffotel.MetricErrors: "{error}", ffotel.MetricSubmitDuration: "s", ffotel.MetricSent: "{message}",
		ffotel.MetricTasksActive:  "{task}",
		ffotel.MetricLaneEligible: "{execution}", ffotel.MetricLaneDelayed: "{execution}",
		ffotel.MetricLaneBlocked: "{execution}", ffotel.MetricLaneOldestAge: "s",
		ffotel.MetricActive: "{execution}", ffotel.MetricSuspended: "{execution}",
	}
	bounded := []attribute.Key{ffotel.KeySystem, ffotel.KeyDestination, ffotel.KeyOperationName, ffotel.KeyOperationType,
		ffotel.KeyErrorType, ffotel.KeyClaimPath, ffotel.KeyOutcome, ffotel.KeyErrorSource}
	for name, unit := range units {
		m, ok := ms[name]
		if !ok {
			t.Errorf("metric %s is missing", name)
			continue
		}
		if m.Unit != unit {
			t.Errorf("metric %s: unit %q, want %q", name, m.Unit, unit)
		}
		sets := attrSets(m)
		if len(sets) == 0 {
			t.Errorf("metric %s has no data points", name)
		}
		for _, s := range sets {
			if v, _ := s.Value(ffotel.KeySystem); v.AsString() != ffotel.SystemName {
				t.Errorf("metric %s: point %v without messaging.system", name, s.ToSlice())
			}
			for _, kv := range s.ToSlice() {
				if !slices.Contains(bounded, kv.Key) {
					t.Errorf("metric %s: unbounded attribute %s=%s", name, kv.Key, kv.Value.String())
				}
				if kv.Key == ffotel.KeyDestination && kv.Value.AsString() != string(lane) {
					t.Errorf("metric %s: lane %q, want %q", name, kv.Value.AsString(), lane)
				}
			}
		}
	}
	if n := total(ms[ffotel.MetricConsumed], "", ""); n != int64(submitted) {
		t.Errorf("leases received %d, want %d", n, submitted)
	}
	if n := histCount(ms[ffotel.MetricClaimLatency]); n != uint64(submitted) {
		t.Errorf("claim latencies %d, want %d (every attempt is an initial one)", n, submitted)
	}
	if n := total(ms[ffotel.MetricOutcomes], ffotel.KeyOutcome, string(sdk.TaskCompleted)); n != int64(submitted-2) {
		t.Errorf("completed %d, want %d", n, submitted-2)
	}
	if n := total(ms[ffotel.MetricOutcomes], ffotel.KeyOutcome, string(sdk.TaskFailed)); n != 1 {
		t.Errorf("failed %d, want 1", n)
	}
	if n := total(ms[ffotel.MetricLeaseLost], ffotel.KeyErrorType, sdk.CodeLeaseRevoked); n != 1 {
		t.Errorf("leases lost to a revoke %d, want 1", n)
	}
	if n := total(ms[ffotel.MetricErrors], ffotel.KeyErrorSource, "handler"); n < 1 {
		t.Errorf("handler errors %d, want at least the failing one", n)
	}
	if n := total(ms[ffotel.MetricErrors], ffotel.KeyErrorSource, "submit"); n != 1 {
		t.Errorf("submit errors %d, want the bad kind's", n)
	}
	if n := total(ms[ffotel.MetricSent], "", ""); n != int64(len(kinds)) {
		t.Errorf("sent %d, want %d (this process's submits)", n, len(kinds))
	}
	if n := total(ms[ffotel.MetricTasksActive], "", ""); n != 0 {
		t.Errorf("active tasks after every end: %d, want 0", n)
	}
	if n := histCount(ms[ffotel.MetricProcessDuration]); n != uint64(submitted) {
		t.Errorf("handler durations %d, want %d", n, submitted)
	}

	// Spans: each remote submit's process span links to it.
	linked := 0
	processSpans := 0
	for _, s := range rec.Ended() {
		if s.SpanKind() != trace.SpanKindConsumer {
			continue
		}
		processSpans++
		var id string
		for _, a := range s.Attributes() {
			if a.Key == ffotel.KeyMessageID {
				id = a.Value.AsString()
			}
		}
		r, remoteSubmit := remoteSpans[sdk.ExecutionID(id)]
		if !remoteSubmit {
			continue
		}
		if len(s.Links()) != 1 {
			t.Fatalf("process span of %s: links %+v, want one to its submit", id, s.Links())
		}
		l := s.Links()[0].SpanContext
		if l.TraceID().String() != r.trace || l.SpanID().String() != r.span || !l.IsRemote() {
			t.Fatalf("process span of %s links to %s/%s (remote %v), want the submit span %s/%s",
				id, l.TraceID(), l.SpanID(), l.IsRemote(), r.trace, r.span)
		}
		linked++
	}
	if linked != helperSubmits || processSpans != submitted {
		t.Fatalf("%d process spans, %d linked to a remote submit; want %d and %d", processSpans, linked, submitted, helperSubmits)
	}
}
