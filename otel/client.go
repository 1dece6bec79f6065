package ffotel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Metric names of the client.
const (
	// MetricSubmitDuration: seconds a submit took, by lane and error.type
	// (set when it failed). Operation name submit, type send.
	MetricSubmitDuration = "messaging.client.operation.duration"
	// MetricSent: executions submitted (created or deduplicated).
	MetricSent = "messaging.client.sent.messages"
)

// ClientObserver is an sdk.ClientObserver that records submit metrics and
// a producer span per submit, whose context it stores with the execution
// when the span is sampled (sdk.CreateExecutionArgs.TraceParent, unless
// the caller set one) so the handler's span links to it. Set it in sdk.ClientOptions.Observer. Safe
// for concurrent use.
type ClientObserver struct {
	tracer   trace.Tracer
	duration metric.Float64Histogram
	ok       attrCache // lane
	failed   attrCache // lane, error type
	sent     tally     // lane (reported at collection, see tally)
	errs     tally     // lane, error type
	spans    spanCache
}

var _ sdk.ClientObserver = (*ClientObserver)(nil)

// NewClientObserver makes the client's instruments.
func NewClientObserver(o Options) (*ClientObserver, error) {
	m := o.meter()
	c := &ClientObserver{tracer: o.tracer(), spans: spanCache{op: "submit", opType: "send", kind: trace.SpanKindProducer}}
	var err error
	if c.duration, err = m.Float64Histogram(MetricSubmitDuration, metric.WithUnit("s"),
		metric.WithDescription("Time a submit took."), metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	base := func(lane sdk.LaneID, more ...attribute.KeyValue) attribute.Set {
		return attribute.NewSet(append([]attribute.KeyValue{KeySystem.String(SystemName),
			KeyDestination.String(string(lane)), KeyOperationName.String("submit"),
			KeyOperationType.String("send")}, more...)...)
	}
	c.ok.build = func(k attrKey) attribute.Set { return base(k.lane) }
	c.failed.build = func(k attrKey) attribute.Set { return base(k.lane, KeyErrorType.String(k.a)) }
	c.sent.build = c.ok.build
	c.errs.build = func(k attrKey) attribute.Set {
		return attribute.NewSet(KeySystem.String(SystemName), KeyDestination.String(string(k.lane)),
			KeyErrorType.String(k.a), KeyErrorSource.String("submit"))
	}
	if err := tallyCounter(m, MetricSent, "{message}", "Executions submitted.", false, &c.sent); err != nil {
		return nil, err
	}
	if err := tallyCounter(m, MetricErrors, "{error}", "Errors, by code and source.", false, &c.errs); err != nil {
		return nil, err
	}
	return c, nil
}

// MustClientObserver is NewClientObserver that panics on an error (one
// only a broken MeterProvider gives), for package-level setup.
func MustClientObserver(o Options) *ClientObserver {
	c, err := NewClientObserver(o)
	if err != nil {
		panic(err)
	}
	return c
}

// SubmitStarted starts the submit's producer span and, when it is
// sampled, stores its context in args.TraceParent unless the caller set
// one.
func (c *ClientObserver) SubmitStarted(ctx context.Context, args *sdk.CreateExecutionArgs) context.Context {
	ls := c.spans.of(args.Lane)
	ctx, span := c.tracer.Start(ctx, ls.name, ls.opts...)
	if span.IsRecording() {
		span.SetAttributes(ls.attrs...)
		span.SetAttributes(KeyKind.String(args.Kind))
	}
	if sc := span.SpanContext(); args.TraceParent == "" && sc.IsSampled() {
		// An unsampled submit records no span to link to: its execution
		// carries nothing, and costs nothing for it.
		args.TraceParent = formatTraceParent(sc)
	}
	return ctx
}

// SubmitEnded records the submit's duration and outcome and ends its span.
func (c *ClientObserver) SubmitEnded(ctx context.Context, args *sdk.CreateExecutionArgs, res sdk.CreateExecutionResult, err error, elapsed time.Duration) {
	span := trace.SpanFromContext(ctx)
	if err != nil {
		et := errorType(err)
		c.duration.Record(ctx, elapsed.Seconds(), c.failed.get(attrKey{lane: args.Lane, a: et}).rec...)
		c.errs.add(attrKey{lane: args.Lane, a: et}, 1)
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	} else {
		k := attrKey{lane: args.Lane}
		c.duration.Record(ctx, elapsed.Seconds(), c.ok.get(k).rec...)
		c.sent.add(k, 1)
		if span.IsRecording() {
			span.SetAttributes(KeyMessageID.String(string(res.ID)))
		}
	}
	span.End()
}
