package loadgen

import (
	"context"
	"errors"
	"sync"
)

// RenewGate pauses the RenewBatch calls of the backends that share it, so a
// harness can interleave a fleet's renewer with another load on the same
// leases (the raw ceiling) in one run: Pause holds new calls at the gate and
// waits for those already sent to return, Resume lets them through. The
// zero value is open.
type RenewGate struct {
	mu       sync.Mutex
	closed   chan struct{} // non-nil while paused; closed by Resume
	inflight int
	drained  chan struct{} // closed when inflight reaches 0 during a Pause
	renewed  uint64        // leases renewed by calls that passed the gate
}

// Renewed is how many leases the calls that passed the gate renewed. Read
// after Pause, it counts every call that returned, which the worker's own
// counters (updated after the call returns) cannot promise.
func (g *RenewGate) Renewed() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.renewed
}

// errGateAbandoned is enter's answer when abandon closes first.
var errGateAbandoned = errors.New("loadgen: renew gate abandoned")

// enter waits until the gate is open (or ctx ends, or abandon closes) and
// counts the call in.
func (g *RenewGate) enter(ctx context.Context, abandon <-chan struct{}) error {
	for {
		g.mu.Lock()
		if g.closed == nil {
			g.inflight++
			g.mu.Unlock()
			return nil
		}
		wait := g.closed
		g.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		case <-abandon:
			return errGateAbandoned
		}
	}
}

// leave counts a call out, with the leases it renewed.
func (g *RenewGate) leave(renewed int) {
	g.mu.Lock()
	g.renewed += uint64(renewed)
	g.inflight--
	if g.inflight == 0 && g.drained != nil {
		close(g.drained)
		g.drained = nil
	}
	g.mu.Unlock()
}

// Pause closes the gate and waits until no call is in flight (or ctx
// ends). Calls that arrive while paused wait for Resume.
func (g *RenewGate) Pause(ctx context.Context) error {
	g.mu.Lock()
	if g.closed == nil {
		g.closed = make(chan struct{})
	}
	if g.inflight == 0 {
		g.mu.Unlock()
		return nil
	}
	if g.drained == nil {
		g.drained = make(chan struct{})
	}
	wait := g.drained
	g.mu.Unlock()
	select {
	case <-wait:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Resume opens the gate.
func (g *RenewGate) Resume() {
	g.mu.Lock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
	g.mu.Unlock()
}
