package ffotel_test

import (
	"context"
	"fmt"
	"log"
	"sort"

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

// A submit's span travels with the execution: the worker's process span
// links to it. Both observers record their metrics on the same provider.
func Example() {
	ctx := context.Background()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	backend, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()

	reader := sdkmetric.NewManualReader()
	spans := tracetest.NewSpanRecorder()
	opts := ffotel.Options{
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
	}
	cobs, err := ffotel.NewClientObserver(opts)
	if err != nil {
		log.Fatal(err)
	}
	wobs, err := ffotel.NewWorkerObserver(opts)
	if err != nil {
		log.Fatal(err)
	}

	client := sdk.NewClientWithOptions(backend, sdk.ClientOptions{Observer: cobs})
	if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: "emails", Kind: "welcome"}); err != nil {
		log.Fatal(err)
	}
	w, err := sdk.NewWorker(backend, sdk.WorkerConfig{WorkerID: "mailer", Lanes: []sdk.LaneID{"emails"}, Observer: wobs})
	if err != nil {
		log.Fatal(err)
	}
	handled := make(chan struct{})
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() {
		stopped <- w.Run(runCtx, sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
			defer close(handled)
			fmt.Println("handler span recording:", trace.SpanFromContext(ctx).IsRecording())
			return nil
		}))
	}()
	<-handled
	stop() // Run returns once the task ended
	<-stopped

	var submit, process sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindProducer:
			submit = s
		case trace.SpanKindConsumer:
			process = s
		}
	}
	fmt.Println(submit.Name(), "->", process.Name(),
		"linked:", process.Links()[0].SpanContext.SpanID() == submit.SpanContext().SpanID())

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	var names []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			names = append(names, m.Name+" "+m.Unit)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Println(n)
	}
	// Output:
	// handler span recording: true
	// submit emails -> process emails linked: true
	// flowfabric.claim.latency s
	// flowfabric.task.outcomes {task}
	// flowfabric.tasks.active {task}
	// messaging.client.consumed.messages {message}
	// messaging.client.operation.duration s
	// messaging.client.sent.messages {message}
	// messaging.process.duration s
}

// The engine's gauges: each lane's backlog, read from Valkey at every
// collection (ffengine --http serves them as Prometheus text).
func ExampleRegisterGauges() {
	ctx := context.Background()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	backend, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()
	for range 3 {
		if _, err := backend.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "emails", Kind: "welcome"}); err != nil {
			log.Fatal(err)
		}
	}

	reader := sdkmetric.NewManualReader()
	reg, err := ffotel.RegisterGauges(ffotel.Options{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))},
		backend, func(err error) { log.Print(err) })
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == ffotel.MetricLaneEligible {
			lane, _ := g.DataPoints[0].Attributes.Value(ffotel.KeyDestination)
			fmt.Println(m.Name, lane.AsString(), g.DataPoints[0].Value)
		}
	}
	// Output:
	// flowfabric.lane.eligible emails 3
}
