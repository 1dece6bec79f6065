// Package ffotel exports FlowFabric's workers, clients and engine to
// OpenTelemetry: metrics with messaging semantic-convention names where
// they fit, and traces whose submit span travels with the execution to the
// handler's span in whatever process claims it.
//
// It is its own module (github.com/flowfabric/flowfabric-go/otel), so the
// sdk stays free of OpenTelemetry: the sdk calls the small observer
// interfaces (sdk.WorkerObserver, sdk.ClientObserver) this package
// implements, and calls nothing when none is set.
//
//	obs, _ := ffotel.NewWorkerObserver(ffotel.Options{})
//	w, _ := sdk.NewWorker(backend, sdk.WorkerConfig{..., Observer: obs})
//	client := sdk.NewClientWithOptions(backend, sdk.ClientOptions{Observer: ffotel.MustClientObserver(ffotel.Options{})})
//
// Attributes are bounded: the lane (messaging.destination.name), fixed
// operation names, outcomes and error codes; never an execution id (spans
// carry it, metrics do not).
package ffotel

import (
	"context"
	"encoding/hex"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// ScopeName is the instrumentation scope of every meter and tracer here.
const ScopeName = "github.com/flowfabric/flowfabric-go/otel"

// SystemName is the messaging.system attribute's value.
const SystemName = "flowfabric"

// Attribute keys.
const (
	// Semantic conventions (messaging, general).
	KeySystem        = attribute.Key("messaging.system")
	KeyDestination   = attribute.Key("messaging.destination.name") // the lane
	KeyOperationName = attribute.Key("messaging.operation.name")   // submit, process, renew
	KeyOperationType = attribute.Key("messaging.operation.type")   // send, receive, process
	KeyMessageID     = attribute.Key("messaging.message.id")       // spans only
	KeyErrorType     = attribute.Key("error.type")
	// FlowFabric's own.
	KeyClaimPath   = attribute.Key("flowfabric.claim.path")   // "handoff" or "claim"
	KeyOutcome     = attribute.Key("flowfabric.task.outcome") // sdk.TaskOutcome
	KeyErrorSource = attribute.Key("flowfabric.error.source") // handler, worker, submit
	KeyAttemptType = attribute.Key("flowfabric.attempt.type") // spans only
	KeyKind        = attribute.Key("flowfabric.kind")         // spans only
)

// Options configures the observers and the engine gauges.
type Options struct {
	// MeterProvider makes the meter. Default otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// TracerProvider makes the tracer. Default otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
}

func (o Options) meter() metric.Meter {
	mp := o.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	return mp.Meter(ScopeName)
}

func (o Options) tracer() trace.Tracer {
	tp := o.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(ScopeName)
}

// durationBuckets are the seconds histograms' bucket bounds: 100µs to 60s
// (the SDK's default bounds suit milliseconds, not seconds).
var durationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// formatTraceParent renders sc as a W3C traceparent (version 00), "" when
// sc is invalid.
func formatTraceParent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	tid, sid, f := sc.TraceID(), sc.SpanID(), [1]byte{byte(sc.TraceFlags())}
	b := [55]byte{'0', '0', '-', 35: '-', 52: '-'}
	hex.Encode(b[3:35], tid[:])
	hex.Encode(b[36:52], sid[:])
	hex.Encode(b[53:55], f[:])
	return string(b[:])
}

// parseTraceParent reads a W3C traceparent into a remote span context;
// the result is invalid when s is not one (version 00 layout; a later
// version's first 55 bytes, as the spec allows).
func parseTraceParent(s string) trace.SpanContext {
	if len(s) < 55 || (len(s) > 55 && (s[55] != '-' || s[:2] == "00")) || s[2] != '-' || s[35] != '-' ||
		s[52] != '-' || s[:2] == "ff" {
		return trace.SpanContext{}
	}
	tid, err := trace.TraceIDFromHex(s[3:35])
	if err != nil {
		return trace.SpanContext{}
	}
	sid, err := trace.SpanIDFromHex(s[36:52])
	if err != nil {
		return trace.SpanContext{}
	}
	var f [1]byte
	if _, err := hex.Decode(f[:], []byte(s[53:55])); err != nil {
		return trace.SpanContext{}
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid,
		TraceFlags: trace.TraceFlags(f[0]) & trace.FlagsSampled, Remote: true})
}

// attrKey names one cached attribute set: a lane and up to two more
// attribute values, by slot.
type attrKey struct {
	lane sdk.LaneID
	a, b string
}

// attrCache holds the histogram options of attribute sets built once per
// distinct key (bounded: lanes × outcomes), so recording a measurement
// neither rebuilds its set nor allocates: the options are kept as the slice
// the variadic call takes (get(k).rec...).
type attrCache struct {
	m     sync.Map // attrKey -> *measureOpts
	build func(attrKey) attribute.Set
}

// measureOpts are one attribute set as Record's options.
type measureOpts struct {
	rec []metric.RecordOption
}

func (c *attrCache) get(k attrKey) *measureOpts {
	if v, ok := c.m.Load(k); ok {
		return v.(*measureOpts)
	}
	v, _ := c.m.LoadOrStore(k, &measureOpts{rec: []metric.RecordOption{metric.WithAttributeSet(c.build(k))}})
	return v.(*measureOpts)
}

// errorType is an error's error.type: its sdk code, "_OTHER" when it has
// none (an error of the handler's own, not one of the bounded codes).
func errorType(err error) string {
	if c := sdk.CodeOf(err); c != "" {
		return c
	}
	return "_OTHER"
}

// tally is a counter kept in memory per attribute set and reported when
// the meter collects, through an observable instrument: a task pays one
// atomic add for it, where a synchronous counter would pay the SDK's
// attribute resolution, exemplar filter and aggregation on every
// measurement (ffbench e2e capacity under metrics alone: 0.92-0.94 of
// uninstrumented with synchronous counters, 0.99 with tallies). Observations of the same set from several
// observers' callbacks are summed by the SDK, so observers sharing a
// MeterProvider report their totals.
type tally struct {
	m     sync.Map // attrKey -> *tallyEntry
	build func(attrKey) attribute.Set
}

type tallyEntry struct {
	n   atomic.Int64
	opt []metric.ObserveOption
}

// add adds d to k's count.
func (t *tally) add(k attrKey, d int64) {
	if v, ok := t.m.Load(k); ok {
		v.(*tallyEntry).n.Add(d)
		return
	}
	e := &tallyEntry{opt: []metric.ObserveOption{metric.WithAttributeSet(t.build(k))}}
	v, _ := t.m.LoadOrStore(k, e)
	v.(*tallyEntry).n.Add(d)
}

// tallyCounter registers an observable counter (or up-down counter) that
// reports t. The callback is registered apart from the instrument
// (RegisterCallback): an instrument made again under the same name (a second
// observer on the same MeterProvider) keeps only its first creation's
// callbacks, but every registered callback runs.
func tallyCounter(m metric.Meter, name, unit, desc string, upDown bool, t *tally) error {
	var inst metric.Int64Observable
	var err error
	if upDown {
		inst, err = m.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	} else {
		inst, err = m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	}
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		t.m.Range(func(_, v any) bool {
			e := v.(*tallyEntry)
			o.ObserveInt64(inst, e.n.Load(), e.opt...)
			return true
		})
		return nil
	}, inst)
	return err
}
