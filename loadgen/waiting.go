package loadgen

import (
	"context"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// waitingBackend is a worker's Backend over a backend that also suspends
// attempts and delivers signals (sdk.Waiter, RoleWaiting): without it the
// wrapper would hide the role, and a fleet's tasks could not Suspend. The
// writes go through the kill switch as the Backend's do; reads pass
// through.
type waitingBackend struct {
	*Backend
	w sdk.Waiter
}

var _ sdk.Waiter = (*waitingBackend)(nil)

// forWorker is what a fleet's worker runs on: b itself, or b with the
// inner backend's Waiter and Streamer when it has them.
func forWorker(b *Backend, inner FullBackend) sdk.EngineBackend {
	w, waits := inner.(sdk.Waiter)
	s, appends := inner.(sdk.Streamer)
	switch {
	case waits && appends:
		return &waitingStreamingBackend{waitingBackend: &waitingBackend{Backend: b, w: w}, streams: streams{b: b, s: s}}
	case appends:
		return &streamingBackend{Backend: b, streams: streams{b: b, s: s}}
	case waits:
		return &waitingBackend{Backend: b, w: w}
	}
	return b
}

func (b *waitingBackend) Suspend(ctx context.Context, h sdk.Handle, a sdk.SuspendArgs) (sdk.SuspendOutcome, error) {
	if err := b.dead(); err != nil {
		return sdk.SuspendOutcome{}, err
	}
	return b.w.Suspend(ctx, h, a)
}

func (b *waitingBackend) SuspendByTriple(ctx context.Context, id sdk.ExecutionID, f sdk.LeaseFence, a sdk.SuspendArgs) (sdk.SuspendOutcome, error) {
	if err := b.dead(); err != nil {
		return sdk.SuspendOutcome{}, err
	}
	return b.w.SuspendByTriple(ctx, id, f, a)
}

func (b *waitingBackend) CreateWaitpoint(ctx context.Context, h sdk.Handle, label string, ttl time.Duration) (sdk.PendingWaitpoint, error) {
	if err := b.dead(); err != nil {
		return sdk.PendingWaitpoint{}, err
	}
	return b.w.CreateWaitpoint(ctx, h, label, ttl)
}

func (b *waitingBackend) ObserveSignals(ctx context.Context, id sdk.ExecutionID) (*sdk.Suspension, error) {
	return b.w.ObserveSignals(ctx, id)
}

func (b *waitingBackend) DeliverSignal(ctx context.Context, a sdk.DeliverSignalArgs) (sdk.DeliverSignalResult, error) {
	if err := b.dead(); err != nil {
		return sdk.DeliverSignalResult{}, err
	}
	return b.w.DeliverSignal(ctx, a)
}

func (b *waitingBackend) ListSuspended(ctx context.Context, partition int, cursor sdk.ExecutionID, limit int) (sdk.ListSuspendedPage, error) {
	return b.w.ListSuspended(ctx, partition, cursor, limit)
}

func (b *waitingBackend) ListPendingWaitpoints(ctx context.Context, partition int, cursor sdk.WaitpointID, limit int) (sdk.ListPendingWaitpointsPage, error) {
	return b.w.ListPendingWaitpoints(ctx, partition, cursor, limit)
}

func (b *waitingBackend) SeedWaitpointSecret(ctx context.Context, kid string, secret []byte) (sdk.SeedOutcome, error) {
	if err := b.dead(); err != nil {
		return sdk.SeedOutcome{}, err
	}
	return b.w.SeedWaitpointSecret(ctx, kid, secret)
}

func (b *waitingBackend) RotateWaitpointSecret(ctx context.Context, kid string, secret []byte, grace time.Duration) (sdk.RotateOutcome, error) {
	if err := b.dead(); err != nil {
		return sdk.RotateOutcome{}, err
	}
	return b.w.RotateWaitpointSecret(ctx, kid, secret, grace)
}

func (b *waitingBackend) ExpireDueSuspensions(ctx context.Context, partition, limit int) (map[string]int, error) {
	if err := b.dead(); err != nil {
		return nil, err
	}
	return b.w.ExpireDueSuspensions(ctx, partition, limit)
}

func (b *waitingBackend) SignalDeliveries(ctx context.Context, cursor string, fn func(sdk.SignalDelivery) error) error {
	return b.w.SignalDeliveries(ctx, cursor, fn)
}
