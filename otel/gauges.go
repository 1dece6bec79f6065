package ffotel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// Metric names of the engine's gauges.
const (
	MetricLaneEligible  = "flowfabric.lane.eligible"       // {execution}, per lane
	MetricLaneDelayed   = "flowfabric.lane.delayed"        // {execution}, per lane
	MetricLaneBlocked   = "flowfabric.lane.blocked"        // {execution}, per lane
	MetricLaneOldestAge = "flowfabric.lane.oldest_waiting" // s, per lane (valkeybackend.LaneGauge.OldestWaiting)
	MetricActive        = "flowfabric.active"              // {execution}, the deployment's
	MetricSuspended     = "flowfabric.suspended"           // {execution}, the deployment's
)

// GaugeSource reads a deployment's backlog (valkeybackend.Backend does).
type GaugeSource interface {
	Gauges(ctx context.Context) (valkeybackend.Gauges, error)
}

// GaugeReadTimeoutDefault bounds one read of the gauges at collection.
const GaugeReadTimeoutDefault = 5 * time.Second

// RegisterGauges makes the engine's gauges, read from src at each
// collection (a Prometheus scrape, a periodic reader's tick): per lane
// eligible, delayed, blocked and the oldest waiting age; for the whole
// deployment active and suspended. A failed read (Valkey down) reports
// nothing for that collection and the error to onError when it is set.
// Unregister the returned registration to stop.
func RegisterGauges(o Options, src GaugeSource, onError func(error)) (metric.Registration, error) {
	m := o.meter()
	var err error
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, e := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err == nil {
			err = e
		}
		return g
	}
	eligible := gauge(MetricLaneEligible, "{execution}", "Executions waiting to be claimed, per lane.")
	delayed := gauge(MetricLaneDelayed, "{execution}", "Executions delayed (delay, retry backoff), per lane.")
	blocked := gauge(MetricLaneBlocked, "{execution}", "Executions parked for routing or admission, per lane.")
	active := gauge(MetricActive, "{execution}", "Leased executions.")
	suspended := gauge(MetricSuspended, "{execution}", "Executions waiting for a signal.")
	oldest, e := m.Float64ObservableGauge(MetricLaneOldestAge, metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest execution at the head of the lane's eligible set."))
	if err == nil {
		err = e
	}
	if err != nil {
		return nil, err
	}
	sys := KeySystem.String(SystemName)
	all := metric.WithAttributeSet(attribute.NewSet(sys))
	return m.RegisterCallback(func(ctx context.Context, ob metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, GaugeReadTimeoutDefault)
		defer cancel()
		g, err := src.Gauges(ctx)
		if err != nil {
			if onError != nil {
				onError(err)
			}
			return nil // the other instruments still report
		}
		ob.ObserveInt64(active, g.Active, all)
		ob.ObserveInt64(suspended, g.Suspended, all)
		for _, l := range g.Lanes {
			a := metric.WithAttributeSet(attribute.NewSet(sys, KeyDestination.String(string(l.Lane))))
			ob.ObserveInt64(eligible, l.Eligible, a)
			ob.ObserveInt64(delayed, l.Delayed, a)
			ob.ObserveInt64(blocked, l.Blocked, a)
			ob.ObserveFloat64(oldest, l.OldestWaiting.Seconds(), a)
		}
		return nil
	}, eligible, delayed, blocked, active, suspended, oldest)
}
