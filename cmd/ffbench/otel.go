package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/flowfabric/flowfabric-go/bench"
	ffotel "github.com/flowfabric/flowfabric-go/otel"
)

// otelHelp documents --otel.
const otelHelp = "instrument the e2e and claim-latency pipelines' workers and producers with ffotel, to measure\n" +
	"what it costs (run it interleaved with a run without): off, metrics (every metric, kept in memory),\n" +
	"traces (metrics and a span per submit and per task, every one recorded and exported to a discarding\n" +
	"exporter through the SDK's batcher) or traces=R (spans sampled at ratio R, 0 < R <= 1)"

// applyOtel sets cfg's observers for mode (see otelHelp).
func applyOtel(cfg *bench.Config, mode string) error {
	mode = strings.TrimSpace(mode)
	if mode == "" || mode == "off" {
		return nil
	}
	ratio := -1.0 // no spans
	switch {
	case mode == "metrics":
	case mode == "traces":
		ratio = 1
	case strings.HasPrefix(mode, "traces="):
		r, err := strconv.ParseFloat(strings.TrimPrefix(mode, "traces="), 64)
		if err != nil || !(r > 0 && r <= 1) {
			return fmt.Errorf("--otel %q: the trace ratio must be a number in (0, 1]", mode)
		}
		ratio = r
	default:
		return fmt.Errorf("--otel %q: want off, metrics, traces or traces=R", mode)
	}
	opts := ffotel.Options{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))}
	if ratio > 0 {
		opts.TracerProvider = sdktrace.NewTracerProvider(
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
			sdktrace.WithBatcher(discardSpans{}))
	} else {
		opts.TracerProvider = tracenoop.NewTracerProvider() // metrics alone: no tracing configured
	}
	w, err := ffotel.NewWorkerObserver(opts)
	if err != nil {
		return err
	}
	c, err := ffotel.NewClientObserver(opts)
	if err != nil {
		return err
	}
	cfg.Otel, cfg.WorkerObserver, cfg.ClientObserver = mode, w, c
	return nil
}

// discardSpans is a span exporter that drops what it is given: the spans'
// cost up to the export, without a collector.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }
