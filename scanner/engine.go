package scanner

import (
	"context"
	"time"
)

// New builds a supervisor of the eight standard scanners (lease expiry,
// delayed, unblock, timeouts, suspensions, flows, retention, schedules)
// over the partitions this engine owns through ownership leases. Call
// Run, or use Start.
func New(b Backend, cfg Config) (*Supervisor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	own := NewOwnership(b, cfg.EngineID, cfg.OwnershipTTL, cfg.Logger)
	var pk *peeker
	if !cfg.DisablePeek {
		pk = &peeker{heads: b, clock: own.clock}
	}
	lanes := &laneList{b: b, maxAge: cfg.LaneRefresh}
	scanners := []Scanner{
		&LeaseExpiry{b: b, peek: pk, interval: cfg.LeaseExpiryInterval, batch: cfg.BatchSize,
			maxBatches: cfg.MaxBatches, maxReclaims: cfg.MaxReclaims},
		&Delayed{b: b, lanes: lanes, peek: pk, interval: cfg.DelayedInterval, batch: cfg.BatchSize,
			maxBatches: cfg.MaxBatches},
		&Unblock{b: b, lanes: lanes, peek: pk, interval: cfg.UnblockInterval, batch: cfg.BatchSize,
			maxBatches: cfg.MaxBatches},
		&Timeouts{b: b, peek: pk, interval: cfg.TimeoutInterval, batch: cfg.BatchSize, maxBatches: cfg.MaxBatches},
		&Suspensions{b: b, peek: pk, interval: cfg.TimeoutInterval, batch: cfg.BatchSize, maxBatches: cfg.MaxBatches},
		&Flows{b: b, peek: pk, interval: cfg.FlowInterval, minAge: cfg.FlowGrace, batch: cfg.BatchSize,
			maxBatches: cfg.MaxBatches},
		&Retention{b: b, lanes: lanes, peek: pk, interval: cfg.RetentionInterval, retention: cfg.Retention,
			batch: cfg.BatchSize, maxBatches: cfg.MaxBatches},
		&Schedules{b: b, peek: pk, interval: cfg.ScheduleInterval, batch: cfg.BatchSize, maxBatches: cfg.MaxBatches,
			now: scheduleClock(cfg.ScheduleClock, own.clock)},
	}
	return NewSupervisor(own, SupervisorOptions{Logger: cfg.Logger, Concurrency: cfg.Concurrency,
		PanicBackoff: cfg.PanicBackoff}, scanners...), nil
}

// scheduleClock is the schedules scanner's clock: clock when set, else the
// estimate of the server's.
func scheduleClock(clock func() time.Time, server *serverClock) func(context.Context) (time.Time, error) {
	if clock != nil {
		return func(context.Context) (time.Time, error) { return clock(), nil }
	}
	return server.now
}

// Start runs the standard scanners in the background until ctx ends, for a
// worker binary that hosts them in-process. Wait on Done for the shutdown
// (partitions released) to finish.
func Start(ctx context.Context, b Backend, cfg Config) (*Supervisor, error) {
	s, err := New(b, cfg)
	if err != nil {
		return nil, err
	}
	go func() { _ = s.Run(ctx) }()
	return s, nil
}

// WaitOwned blocks until this engine owns at least n partitions or ctx ends
// (tests and benchmarks use it to know scanning has begun).
func (s *Supervisor) WaitOwned(ctx context.Context, n int) error {
	for len(s.parts.Owned()) < n {
		if !sleep(ctx, 10*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

// Alongside returns the scanners as a service for sdk.WorkerConfig.Alongside,
// so one binary runs workers and the engine: they start with the worker and
// stop (releasing their partitions) after it drained.
func Alongside(b Backend, cfg Config) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		s, err := New(b, cfg)
		if err != nil {
			return err
		}
		return s.Run(ctx)
	}
}
