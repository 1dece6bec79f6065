package ffotel

import (
	"context"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Metric names of the worker.
const (
	// MetricClaimLatency: seconds from an execution's submit (the time in
	// its SDK-minted id) to its lease, initial attempts only; a delayed
	// submit's delay is part of it. Attributes: system, lane, claim path.
	MetricClaimLatency = "flowfabric.claim.latency"
	// MetricConsumed: leases the worker received, by claim path (handoff
	// or claim): the hand-off share is handoff / all.
	MetricConsumed = "messaging.client.consumed.messages"
	// MetricProcessDuration: seconds a handler ran. Attributes: system,
	// lane, operation process, outcome.
	MetricProcessDuration = "messaging.process.duration"
	// MetricOutcomes: tasks ended, by outcome (sdk.TaskOutcome).
	MetricOutcomes = "flowfabric.task.outcomes"
	// MetricRenewalLag: seconds a lease renewal went out after it was due.
	MetricRenewalLag = "flowfabric.lease.renewal.lag"
	// MetricLeaseLost: leases lost, by error.type (the cause's code).
	MetricLeaseLost = "flowfabric.lease.lost"
	// MetricErrors: errors by error.type (sdk code, "_OTHER" without one)
	// and source (handler, worker, submit).
	MetricErrors = "flowfabric.errors"
	// MetricTasksActive: the worker's tasks running now, per lane (summed over
	// workers: the lane's active executions, which the engine's gauges
	// count for the deployment only).
	MetricTasksActive = "flowfabric.tasks.active"
)

// WorkerObserver is an sdk.WorkerObserver that records the worker's
// metrics and a process span per task, linked to the submit's span when
// the execution carries one (sdk.CreateExecutionArgs.TraceParent). Set it
// in sdk.WorkerConfig.Observer. Safe for concurrent use.
type WorkerObserver struct {
	tracer trace.Tracer

	claimLatency, process, renewLag metric.Float64Histogram

	spans   spanCache
	lane    attrCache // lane
	path    attrCache // lane, claim path
	outcome attrCache // lane, outcome

	// The counters, reported at collection (see tally).
	consumed tally // lane, claim path
	outcomes tally // lane, outcome
	lost     tally // lane, error type, source
	errs     tally // lane (may be ""), error type, source
	active   tally // lane
}

var _ sdk.WorkerObserver = (*WorkerObserver)(nil)

// NewWorkerObserver makes the worker's instruments.
func NewWorkerObserver(o Options) (*WorkerObserver, error) {
	m := o.meter()
	w := &WorkerObserver{tracer: o.tracer(), spans: spanCache{op: "process", opType: "process", kind: trace.SpanKindConsumer}}
	var err error
	hist := func(name, desc string) metric.Float64Histogram {
		h, e := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		if err == nil {
			err = e
		}
		return h
	}
	w.claimLatency = hist(MetricClaimLatency, "Time from an execution's submit to its lease (initial attempts).")
	w.process = hist(MetricProcessDuration, "Time a handler ran.")
	w.renewLag = hist(MetricRenewalLag, "How late lease renewals went out.")
	if err != nil {
		return nil, err
	}
	base := func(lane sdk.LaneID, more ...attribute.KeyValue) attribute.Set {
		kv := append([]attribute.KeyValue{KeySystem.String(SystemName)}, more...)
		if lane != "" {
			kv = append(kv, KeyDestination.String(string(lane)))
		}
		return attribute.NewSet(kv...)
	}
	w.lane.build = func(k attrKey) attribute.Set { return base(k.lane) }
	w.path.build = func(k attrKey) attribute.Set {
		return base(k.lane, KeyOperationName.String("receive"), KeyOperationType.String("receive"), KeyClaimPath.String(k.a))
	}
	w.outcome.build = func(k attrKey) attribute.Set {
		return base(k.lane, KeyOperationName.String("process"), KeyOperationType.String("process"), KeyOutcome.String(k.a))
	}
	code := func(k attrKey) attribute.Set {
		return base(k.lane, KeyErrorType.String(k.a), KeyErrorSource.String(k.b))
	}
	w.consumed.build, w.outcomes.build, w.active.build = w.path.build, w.outcome.build, w.lane.build
	w.lost.build, w.errs.build = code, code
	for _, c := range []struct {
		name, unit, desc string
		upDown           bool
		t                *tally
	}{
		{MetricConsumed, "{message}", "Leases received, by claim path (handoff or claim).", false, &w.consumed},
		{MetricOutcomes, "{task}", "Tasks ended, by outcome.", false, &w.outcomes},
		{MetricLeaseLost, "{lease}", "Leases lost, by cause.", false, &w.lost},
		{MetricErrors, "{error}", "Errors, by code and source.", false, &w.errs},
		{MetricTasksActive, "{task}", "Tasks running now, per lane.", true, &w.active},
	} {
		if err := tallyCounter(m, c.name, c.unit, c.desc, c.upDown, c.t); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// laneSpans are one lane's span name, start options and attributes, built
// once. The attributes are set on recording spans only, after the start:
// given as start options, the tracer would copy them for every span,
// sampled or not (a tenth of the client's CPU under traces=0.1 went to
// building start configurations), at the price of samplers not seeing them.
type laneSpans struct {
	name  string
	opts  []trace.SpanStartOption
	attrs []attribute.KeyValue
}

// spanCache holds each lane's laneSpans of one operation: span name
// "<op> <lane>", kind, messaging.operation.name op and .type opType.
type spanCache struct {
	m          sync.Map // sdk.LaneID -> *laneSpans
	op, opType string
	kind       trace.SpanKind
}

func (c *spanCache) of(lane sdk.LaneID) *laneSpans {
	if v, ok := c.m.Load(lane); ok {
		return v.(*laneSpans)
	}
	ls := &laneSpans{name: c.op + " " + string(lane), opts: []trace.SpanStartOption{trace.WithSpanKind(c.kind)},
		attrs: []attribute.KeyValue{KeySystem.String(SystemName), KeyDestination.String(string(lane)),
			KeyOperationName.String(c.op), KeyOperationType.String(c.opType)}}
	v, _ := c.m.LoadOrStore(lane, ls)
	return v.(*laneSpans)
}

// TaskStarted records the lease (claim path, claim latency) and starts the
// task's process span, linked to the submit's span when the execution
// carries one. A span the tracer does not record gets no attributes.
func (w *WorkerObserver) TaskStarted(ctx context.Context, t *sdk.Task) context.Context {
	path := "claim"
	if t.HandedOff {
		path = "handoff"
	}
	pk := attrKey{lane: t.Lane, a: path}
	w.consumed.add(pk, 1)
	w.active.add(attrKey{lane: t.Lane}, 1)
	if t.AttemptType == sdk.AttemptInitial {
		if minted, ok := mintedAt(t.ID); ok {
			w.claimLatency.Record(ctx, max(t.ClaimedAt.Sub(minted), 0).Seconds(), w.path.get(pk).rec...)
		}
	}
	ls := w.spans.of(t.Lane)
	ctx, span := w.tracer.Start(ctx, ls.name, ls.opts...)
	if span.IsRecording() {
		span.SetAttributes(ls.attrs...)
		span.SetAttributes(KeyMessageID.String(string(t.ID)), KeyKind.String(t.Kind),
			KeyAttemptType.String(string(t.AttemptType)), KeyClaimPath.String(path))
		if sc := parseTraceParent(t.TraceParent); sc.IsValid() {
			span.AddLink(trace.Link{SpanContext: sc})
		}
	}
	return ctx
}

// TaskEnded records the handler's duration, the outcome and a handler
// error, and ends the span.
func (w *WorkerObserver) TaskEnded(ctx context.Context, t *sdk.Task, end sdk.TaskEnd) {
	ok := attrKey{lane: t.Lane, a: string(end.Outcome)}
	w.process.Record(ctx, end.HandlerDuration.Seconds(), w.outcome.get(ok).rec...)
	w.outcomes.add(ok, 1)
	w.active.add(attrKey{lane: t.Lane}, -1)
	span := trace.SpanFromContext(ctx)
	switch {
	case end.Panicked:
		w.errs.add(attrKey{lane: t.Lane, a: "handler_panic", b: "handler"}, 1)
		span.SetStatus(codes.Error, "handler panicked")
	case end.HandlerErr != nil:
		w.errs.add(attrKey{lane: t.Lane, a: errorType(end.HandlerErr), b: "handler"}, 1)
		span.RecordError(end.HandlerErr)
		span.SetStatus(codes.Error, end.HandlerErr.Error())
	}
	if span.IsRecording() {
		span.SetAttributes(KeyOutcome.String(string(end.Outcome)))
	}
	span.End()
}

// LeaseRenewing records a renewal's lag.
func (w *WorkerObserver) LeaseRenewing(t *sdk.Task, lag time.Duration) {
	w.renewLag.Record(context.Background(), lag.Seconds(), w.lane.get(attrKey{lane: t.Lane}).rec...)
}

// LeaseLost counts a lost lease by its cause's code.
func (w *WorkerObserver) LeaseLost(t *sdk.Task, cause error) {
	w.lost.add(attrKey{lane: t.Lane, a: errorType(cause), b: "worker"}, 1)
}

// WorkerError counts an error the worker handled by its code.
func (w *WorkerObserver) WorkerError(err error) {
	w.errs.add(attrKey{a: errorType(err), b: "worker"}, 1)
}

// mintedAt reads the creation time in an execution id's version-7 uuid
// ("{p:N}:<uuid>", sdk.NewExecutionID): its first 48 bits are Unix
// milliseconds. ok is false for an id of another uuid version (a caller's
// own id).
func mintedAt(id sdk.ExecutionID) (time.Time, bool) {
	s := string(id)
	i := strings.LastIndexByte(s, ':')
	u := s[i+1:]
	if len(u) != 36 || u[14] != '7' || u[8] != '-' {
		return time.Time{}, false
	}
	var b [6]byte
	if _, err := hex.Decode(b[:4], []byte(u[:8])); err != nil {
		return time.Time{}, false
	}
	if _, err := hex.Decode(b[4:], []byte(u[9:13])); err != nil {
		return time.Time{}, false
	}
	ms := int64(b[0])<<40 | int64(b[1])<<32 | int64(b[2])<<24 | int64(b[3])<<16 | int64(b[4])<<8 | int64(b[5])
	return time.UnixMilli(ms), true
}
