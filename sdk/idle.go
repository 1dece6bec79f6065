package sdk

import (
	"context"
	"time"
)

// idleWait is how a worker with nothing to claim waits for work: a readiness
// push (the backend's cached heads changed), an arrival naming a new
// execution, a slot freed while offers are open, or the fallback poll.
type idleWait struct {
	watcher ReadinessWatcher // nil: no readiness pushes
	lanes   []LaneID
	report  func(error)
	freed   <-chan struct{}

	watch   <-chan struct{} // readiness pushes; nil until subscribed
	retryAt time.Time       // when to subscribe again after a failure
	arrive  <-chan Arrival  // nil without arrivals
	timer   *time.Timer
}

// wake says what ended a wait; the zero value is ctx's end or a push
// channel that closed.
type wake struct {
	push    bool     // a readiness push or an arrival
	poll    bool     // the timer
	freed   bool     // a slot freed while offers were open
	arrival *Arrival // the execution an arrival named
}

// newIdleWait subscribes to readiness pushes and arrivals where the
// backend has them; a failure is reported and readiness is retried later.
func newIdleWait(ctx context.Context, w *Worker) *idleWait {
	iw := &idleWait{watcher: w.roles.ReadinessWatcher, lanes: w.cfg.Lanes, report: w.reportError,
		freed: w.slots.freed, timer: time.NewTimer(time.Hour)}
	iw.timer.Stop()
	iw.subscribe(ctx)
	if a := w.roles.ArrivalWatcher; a != nil {
		ch, err := a.WatchArrivals(ctx, w.cfg.Lanes)
		if err != nil && ctx.Err() == nil {
			iw.report(err)
		}
		iw.arrive = ch
	}
	return iw
}

// subscribe (re)subscribes to readiness pushes when there is no
// subscription and the last failure is old enough.
func (iw *idleWait) subscribe(ctx context.Context) {
	if iw.watcher == nil || iw.watch != nil || time.Now().Before(iw.retryAt) {
		return
	}
	ch, err := iw.watcher.WatchReadiness(ctx, iw.lanes)
	if err != nil {
		if ctx.Err() == nil {
			iw.report(err)
		}
		iw.retryAt = time.Now().Add(watchRetryEvery)
		return
	}
	iw.watch = ch
}

// poll is the idle wait's length: IdlePoll, or at most IdlePollDefault
// while a backend with readiness pushes has no subscription (no push will
// come, so poll as a backend without them would).
func (iw *idleWait) poll(idlePoll time.Duration) time.Duration {
	if iw.watcher != nil && iw.watch == nil {
		return min(idlePoll, IdlePollDefault)
	}
	return idlePoll
}

// wait waits up to d. With wakeOnPush, a readiness push or an arrival ends
// it too, and so does a freed slot when offersOpen.
func (iw *idleWait) wait(ctx context.Context, d time.Duration, wakeOnPush, offersOpen bool) wake {
	iw.timer.Reset(d)
	defer iw.stopTimer()
	var pushCh <-chan struct{}
	var arriveCh <-chan Arrival
	var freedCh <-chan struct{}
	if wakeOnPush {
		pushCh, arriveCh = iw.watch, iw.arrive
		if offersOpen {
			freedCh = iw.freed
		}
	}
	select {
	case <-ctx.Done():
	case _, ok := <-pushCh:
		if !ok {
			iw.watch = nil // the subscription ended; subscribe again on the next idle wait
			return wake{}
		}
		return wake{push: true}
	case a, ok := <-arriveCh:
		if !ok {
			iw.arrive = nil
			return wake{}
		}
		return wake{push: true, arrival: &a}
	case <-freedCh:
		return wake{freed: true}
	case <-iw.timer.C:
		return wake{poll: true}
	}
	return wake{}
}

func (iw *idleWait) stopTimer() {
	if !iw.timer.Stop() {
		select {
		case <-iw.timer.C:
		default:
		}
	}
}
