package loadgen

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Arrival is one scheduled submission: its sequence number (from 0, dense)
// and the time it was meant to be sent. Latency is measured from Intended.
type Arrival struct {
	Seq      uint64
	Intended time.Time
}

// Defaults of Producer fields left zero.
const (
	SendersDefault = 64
	BacklogDefault = 1 << 16
)

// Producer is an open-loop generator: arrivals follow Schedule for Duration,
// and each is handed to Submit on one of Senders goroutines. When every
// sender is busy, arrivals wait in a backlog with their intended time
// unchanged, so the wait counts as latency.
type Producer struct {
	Schedule Schedule
	// Duration bounds the intended times to [start, start+Duration).
	Duration time.Duration
	// Senders is how many goroutines call Submit. Default 64.
	Senders int
	// Backlog bounds arrivals waiting for a sender; beyond it the schedule
	// itself is held back (counted in ProducerStats.Stalled). Default 65536.
	Backlog int
	// Submit sends one arrival. Required. Errors are counted, not fatal.
	Submit func(ctx context.Context, a Arrival) error
}

// ProducerStats counts what a Producer did.
type ProducerStats struct {
	Start   time.Time
	Offered uint64 // arrivals scheduled
	Sent    uint64 // Submit returned nil
	Failed  uint64 // Submit returned an error
	Stalled uint64 // arrivals that found the backlog full
}

// Run produces until Duration has passed (or ctx ends) and every queued
// arrival was submitted.
func (p *Producer) Run(ctx context.Context) (ProducerStats, error) {
	if p.Schedule == nil || p.Submit == nil || p.Duration <= 0 {
		return ProducerStats{}, errors.New("loadgen: Producer needs Schedule, Submit and a positive Duration")
	}
	senders, backlog := p.Senders, p.Backlog
	if senders <= 0 {
		senders = SendersDefault
	}
	if backlog <= 0 {
		backlog = BacklogDefault
	}
	queue := make(chan Arrival, backlog)
	var sent, failed atomic.Uint64
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for a := range queue {
				// The arrival came dispatchLead early: this sender is
				// awake and waits out the rest itself, so no goroutine
				// hand-off sits between the intended time and the send.
				if !waitUntil(ctx, timer, a.Intended) {
					failed.Add(1)
					continue
				}
				if err := p.Submit(ctx, a); err != nil {
					failed.Add(1)
				} else {
					sent.Add(1)
				}
			}
		})
	}
	st := ProducerStats{Start: time.Now()}
	end := st.Start.Add(p.Duration)
	next := st.Start
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var seq uint64
loop:
	for next.Before(end) {
		if !waitUntil(ctx, timer, next.Add(-dispatchLead)) {
			break loop
		}
		// Catch up on everything due by now in one go.
		now := time.Now().Add(dispatchLead)
		for !next.After(now) && next.Before(end) {
			a := Arrival{Seq: seq, Intended: next}
			select {
			case queue <- a:
			default:
				st.Stalled++
				select {
				case queue <- a:
				case <-ctx.Done():
					break loop
				}
			}
			seq++
			next = next.Add(p.Schedule.Gap(next.Sub(st.Start)))
		}
	}
	close(queue)
	wg.Wait()
	st.Offered, st.Sent, st.Failed = seq, sent.Load(), failed.Load()
	return st, ctx.Err()
}

// ClosedLoop keeps InFlight submissions outstanding for Duration: a new
// arrival is sent only when Done returns a token. It measures capacity, not
// latency (a closed loop hides stalls).
type ClosedLoop struct {
	InFlight int
	Duration time.Duration
	Senders  int // default InFlight
	Submit   func(ctx context.Context, a Arrival) error
	tokens   chan struct{}
	once     sync.Once
}

func (c *ClosedLoop) init() {
	c.once.Do(func() { c.tokens = make(chan struct{}, max(c.InFlight, 1)) })
}

// Done returns one token (call it when a submission's work completed, or
// when its submit failed).
func (c *ClosedLoop) Done() {
	c.init()
	select {
	case <-c.tokens:
	default:
	}
}

// Run sends until Duration has passed or ctx ends.
func (c *ClosedLoop) Run(ctx context.Context) (ProducerStats, error) {
	if c.InFlight <= 0 || c.Submit == nil || c.Duration <= 0 {
		return ProducerStats{}, errors.New("loadgen: ClosedLoop needs InFlight, Submit and a positive Duration")
	}
	c.init()
	senders := c.Senders
	if senders <= 0 {
		senders = c.InFlight
	}
	queue := make(chan Arrival, c.InFlight)
	var sent, failed atomic.Uint64
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for a := range queue {
				if err := c.Submit(ctx, a); err != nil {
					failed.Add(1)
					c.Done()
				} else {
					sent.Add(1)
				}
			}
		})
	}
	st := ProducerStats{Start: time.Now()}
	deadline := time.NewTimer(c.Duration)
	defer deadline.Stop()
	var seq uint64
loop:
	for {
		select {
		case c.tokens <- struct{}{}:
		case <-deadline.C:
			break loop
		case <-ctx.Done():
			break loop
		}
		queue <- Arrival{Seq: seq, Intended: time.Now()}
		seq++
	}
	close(queue)
	wg.Wait()
	st.Offered, st.Sent, st.Failed = seq, sent.Load(), failed.Load()
	return st, ctx.Err()
}

// dispatchLead is how early the producer hands an arrival to a sender,
// which then sleeps until the intended time and sends: a hand-off between
// goroutines wakes a thread (tens of microseconds on a VM, more under
// load), and done at the intended time it would be the producer's lag.
const dispatchLead = time.Millisecond

// preciseMargin is the last stretch before an arrival that the producer
// sleeps with sleepPrecise instead of a Go timer: a timer of an idle
// process wakes on the netpoller's whole milliseconds, so it would make
// the producer itself up to a millisecond late (its lag is timed too, as
// send_lag, and counts against the latency it measures).
const preciseMargin = 1500 * time.Microsecond

// waitUntil waits until t (a Go timer for the bulk, sleepPrecise for the
// last preciseMargin); false when ctx ended first.
func waitUntil(ctx context.Context, timer *time.Timer, t time.Time) bool {
	for {
		d := time.Until(t)
		switch {
		case d <= 0:
			return ctx.Err() == nil
		case d <= preciseMargin:
			sleepPrecise(d)
			return ctx.Err() == nil
		}
		timer.Reset(d - preciseMargin + 500*time.Microsecond)
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
		}
	}
}

// SleepUntil waits until t as the producer's senders do (a Go timer for the
// bulk, a precise sleep for the last stretch), so work due at a time fixed
// in advance (a signal's intended delivery) starts on time; false when ctx
// ended first.
func SleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	return waitUntil(ctx, timer, t)
}
