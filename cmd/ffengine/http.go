package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	ffotel "github.com/flowfabric/flowfabric-go/otel"
	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// readyTimeout bounds /readyz's round trip to Valkey.
const readyTimeout = time.Second

// Metric names of the engine's own (ffotel's gauges join them).
const (
	metricScannerActions = "flowfabric.scanner.actions" // {execution}, per scanner and action
	metricOwned          = "flowfabric.engine.owned_partitions"
)

// serveHTTP serves /metrics (Prometheus text through the OpenTelemetry
// Prometheus exporter: ffotel's lane gauges and the scanners' actions),
// /healthz (the process is up) and /readyz (Valkey answers; 503 while it
// does not) on ln until ctx ends.
func serveHTTP(ctx context.Context, ln net.Listener, log *slog.Logger, b *valkeybackend.Backend, sup *scanner.Supervisor, engineID string) error {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(resource.NewSchemaless(
		attribute.String("service.name", "ffengine"), attribute.String("service.instance.id", engineID))))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	opts := ffotel.Options{MeterProvider: mp}
	if _, err := ffotel.RegisterGauges(opts, b, func(err error) { log.Warn("metrics: cannot read the lane gauges", "err", err) }); err != nil {
		return err
	}
	if err := registerScannerMetrics(opts, sup); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if _, err := b.ServerTime(rctx); err != nil {
			http.Error(w, "valkey unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("http endpoints", "addr", ln.Addr().String(), "paths", "/metrics /healthz /readyz")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// registerScannerMetrics exports the supervisor's counters: each
// scanner's actions (by scanner and action) and the partitions this
// engine owns.
func registerScannerMetrics(o ffotel.Options, sup *scanner.Supervisor) error {
	m := o.MeterProvider.Meter(ffotel.ScopeName)
	actions, err := m.Int64ObservableCounter(metricScannerActions, metric.WithUnit("{execution}"),
		metric.WithDescription("Executions the engine's scanners acted on, by scanner and action."))
	if err != nil {
		return err
	}
	owned, err := m.Int64ObservableGauge(metricOwned, metric.WithUnit("{partition}"),
		metric.WithDescription("Partitions this engine scans."))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		st := sup.Stats()
		ob.ObserveInt64(owned, int64(st.OwnedPartitions))
		for _, sc := range st.Scanners {
			for action, n := range sc.Acted {
				ob.ObserveInt64(actions, int64(n), metric.WithAttributes(ffotel.KeySystem.String(ffotel.SystemName),
					scannerKey.String(sc.Name), actionKey.String(action)))
			}
		}
		return nil
	}, actions, owned)
	return err
}

// Attributes of the scanner metrics: bounded (the scanners and their
// actions are fixed sets).
const (
	scannerKey = attribute.Key("flowfabric.scanner")
	actionKey  = attribute.Key("flowfabric.scanner.action")
)
