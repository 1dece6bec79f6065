package loadgen

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// FullBackend is a backend with every optional role the worker uses, so a
// wrapper around it keeps the worker on its fast paths.
type FullBackend interface {
	sdk.EngineBackend
	sdk.BatchRenewer
	sdk.WindowScanner
	sdk.GrantClaimer
	sdk.FusedClaimer
	sdk.ReadinessWatcher
	sdk.ArrivalWatcher
	sdk.WorkerRegistry
	sdk.ClaimOfferer
	sdk.CompleteOfferer
	sdk.CompleteBatcher
}

// ErrKilled is what a killed Backend answers every call with: a transport
// error, as a crashed process or a cut network would look to the worker.
var ErrKilled = sdk.TransportError("loadgen", errors.New("worker killed by the fault injector"))

// Hooks instrument and perturb a Backend. Zero fields do nothing.
type Hooks struct {
	// OnClaimCall observes each claim call (GrantAndClaim or ClaimFused):
	// when it started, how long it took and how many executions it got.
	OnClaimCall func(start time.Time, took time.Duration, claimed int)
	// OnRenewBatch observes each RenewBatch call (one renewer round).
	OnRenewBatch func(start time.Time, took time.Duration, handles int)
	// RenewDelay is added to every RenewBatch call: a planted regression.
	RenewDelay time.Duration
	// BeforeClaim runs before every claim call, every claim offer and every
	// hand-off (a claim without a claim call): a planted regression (an
	// extra round trip per claim) when it sends a command.
	BeforeClaim func(ctx context.Context) error
	// RenewGate, when set, holds RenewBatch calls while it is paused; share
	// one gate across a fleet to pause the fleet's renewers together.
	RenewGate *RenewGate
	// OnAppend observes each AppendFrames call (a task's Emit batch, or
	// UpdateSummary): when it started, how long it took, how many frames
	// it carried and its error.
	OnAppend func(start time.Time, took time.Duration, frames int, err error)
}

// Backend wraps a FullBackend for one worker: a kill switch and Hooks.
// Killed, every call fails at once with ErrKilled and nothing reaches the
// server, so the worker's leases are abandoned exactly as in a crash.
type Backend struct {
	FullBackend
	hooks    Hooks
	killed   atomic.Bool
	killOnce sync.Once
	killedCh chan struct{} // closed by Kill
}

// Wrap returns a Backend over b.
func Wrap(b FullBackend, h Hooks) *Backend {
	return &Backend{FullBackend: b, hooks: h, killedCh: make(chan struct{})}
}

// Kill makes every later call fail with ErrKilled; a RenewBatch held at a
// paused RenewGate fails too, without waiting for Resume.
func (b *Backend) Kill() {
	b.killed.Store(true)
	b.killOnce.Do(func() { close(b.killedCh) })
}

// Killed reports whether Kill was called.
func (b *Backend) Killed() bool { return b.killed.Load() }

func (b *Backend) dead() error {
	if b.killed.Load() {
		return ErrKilled
	}
	return nil
}

// Calls that write or claim go through the kill switch; reads pass through.

func (b *Backend) CreateExecution(ctx context.Context, a sdk.CreateExecutionArgs) (sdk.CreateExecutionResult, error) {
	if err := b.dead(); err != nil {
		return sdk.CreateExecutionResult{}, err
	}
	return b.FullBackend.CreateExecution(ctx, a)
}

func (b *Backend) IssueClaimGrant(ctx context.Context, a sdk.IssueClaimGrantArgs) (sdk.ClaimGrant, error) {
	if err := b.dead(); err != nil {
		return sdk.ClaimGrant{}, err
	}
	return b.FullBackend.IssueClaimGrant(ctx, a)
}

func (b *Backend) ClaimExecution(ctx context.Context, a sdk.ClaimExecutionArgs) (sdk.ClaimedExecution, error) {
	if err := b.dead(); err != nil {
		return sdk.ClaimedExecution{}, err
	}
	return b.FullBackend.ClaimExecution(ctx, a)
}

func (b *Backend) ClaimResumedExecution(ctx context.Context, a sdk.ClaimExecutionArgs) (sdk.ClaimedExecution, error) {
	if err := b.dead(); err != nil {
		return sdk.ClaimedExecution{}, err
	}
	return b.FullBackend.ClaimResumedExecution(ctx, a)
}

func (b *Backend) Claim(ctx context.Context, a sdk.ClaimArgs) (*sdk.ClaimedExecution, error) {
	if err := b.dead(); err != nil {
		return nil, err
	}
	return b.FullBackend.Claim(ctx, a)
}

func (b *Backend) GrantAndClaim(ctx context.Context, g sdk.IssueClaimGrantArgs, ttl time.Duration) (sdk.ClaimedTask, error) {
	if err := b.beforeClaim(ctx); err != nil {
		return sdk.ClaimedTask{}, err
	}
	start := time.Now()
	t, err := b.FullBackend.GrantAndClaim(ctx, g, ttl)
	if b.hooks.OnClaimCall != nil {
		n := 0
		if err == nil {
			n = 1
		}
		b.hooks.OnClaimCall(start, time.Since(start), n)
	}
	return t, err
}

func (b *Backend) ClaimFused(ctx context.Context, a sdk.FusedClaimArgs) ([]sdk.ClaimedTask, error) {
	if err := b.beforeClaim(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	ts, err := b.FullBackend.ClaimFused(ctx, a)
	if b.hooks.OnClaimCall != nil {
		b.hooks.OnClaimCall(start, time.Since(start), len(ts))
	}
	return ts, err
}

func (b *Backend) beforeClaim(ctx context.Context) error {
	if err := b.dead(); err != nil {
		return err
	}
	if b.hooks.BeforeClaim != nil {
		return b.hooks.BeforeClaim(ctx)
	}
	return nil
}

func (b *Backend) OfferClaims(ctx context.Context, a sdk.OfferArgs) ([]sdk.ClaimOffer, error) {
	if err := b.beforeClaim(ctx); err != nil {
		return nil, err
	}
	return b.FullBackend.OfferClaims(ctx, a)
}

// WatchHandoffs passes the hand-offs through; with BeforeClaim set, each
// runs it first (a hand-off is a claim without a claim call).
func (b *Backend) WatchHandoffs(ctx context.Context, inst sdk.WorkerInstanceID, deliver func(sdk.ClaimedTask)) error {
	if b.hooks.BeforeClaim != nil {
		inner := deliver
		deliver = func(t sdk.ClaimedTask) {
			_ = b.hooks.BeforeClaim(ctx)
			inner(t)
		}
	}
	return b.FullBackend.WatchHandoffs(ctx, inst, deliver)
}

func (b *Backend) RefreshOffers(ctx context.Context, o []sdk.ClaimOffer, ttl time.Duration) ([]bool, error) {
	if err := b.dead(); err != nil {
		return nil, err
	}
	return b.FullBackend.RefreshOffers(ctx, o, ttl)
}

func (b *Backend) WithdrawOffers(ctx context.Context, o []sdk.ClaimOffer) ([]bool, error) {
	if err := b.dead(); err != nil {
		return nil, err
	}
	return b.FullBackend.WithdrawOffers(ctx, o)
}

func (b *Backend) Renew(ctx context.Context, h sdk.Handle) (sdk.LeaseRenewal, error) {
	if err := b.dead(); err != nil {
		return sdk.LeaseRenewal{}, err
	}
	return b.FullBackend.Renew(ctx, h)
}

func (b *Backend) RenewBatch(ctx context.Context, hs []sdk.Handle) ([]sdk.RenewResult, error) {
	if err := b.dead(); err != nil {
		return nil, err
	}
	if g := b.hooks.RenewGate; g != nil {
		if err := b.passGate(ctx, g); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	if d := b.hooks.RenewDelay; d > 0 {
		time.Sleep(d)
	}
	res, err := b.FullBackend.RenewBatch(ctx, hs)
	if g := b.hooks.RenewGate; g != nil {
		renewed := 0
		for _, r := range res {
			if r.Err == nil {
				renewed++
			}
		}
		if err != nil {
			renewed = 0
		}
		g.leave(renewed)
	}
	if b.hooks.OnRenewBatch != nil {
		b.hooks.OnRenewBatch(start, time.Since(start), len(hs))
	}
	return res, err
}

// passGate waits at g until it opens, ctx ends or the backend is killed.
func (b *Backend) passGate(ctx context.Context, g *RenewGate) error {
	if err := g.enter(ctx, b.killedCh); err != nil {
		if b.killed.Load() {
			return ErrKilled
		}
		return err
	}
	if b.killed.Load() {
		g.leave(0)
		return ErrKilled
	}
	return nil
}

func (b *Backend) Progress(ctx context.Context, h sdk.Handle, pct int, msg string) error {
	if err := b.dead(); err != nil {
		return err
	}
	return b.FullBackend.Progress(ctx, h, pct, msg)
}

func (b *Backend) Complete(ctx context.Context, h sdk.Handle, result []byte) error {
	if err := b.dead(); err != nil {
		return err
	}
	return b.FullBackend.Complete(ctx, h, result)
}

func (b *Backend) CompleteAndOffer(ctx context.Context, h sdk.Handle, result []byte, o sdk.OfferArgs) ([]sdk.ClaimOffer, error, error) {
	if err := b.dead(); err != nil {
		return nil, err, err
	}
	return b.FullBackend.CompleteAndOffer(ctx, h, result, o)
}

func (b *Backend) CompleteBatch(ctx context.Context, items []sdk.CompleteItem) []sdk.CompleteOutcome {
	if err := b.dead(); err != nil {
		out := make([]sdk.CompleteOutcome, len(items))
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	return b.FullBackend.CompleteBatch(ctx, items)
}

func (b *Backend) Fail(ctx context.Context, h sdk.Handle, reason, category string) (sdk.FailOutcome, error) {
	if err := b.dead(); err != nil {
		return sdk.FailOutcome{}, err
	}
	return b.FullBackend.Fail(ctx, h, reason, category)
}

func (b *Backend) Cancel(ctx context.Context, h sdk.Handle, reason string) error {
	if err := b.dead(); err != nil {
		return err
	}
	return b.FullBackend.Cancel(ctx, h, reason)
}

func (b *Backend) Delay(ctx context.Context, h sdk.Handle, until time.Time) error {
	if err := b.dead(); err != nil {
		return err
	}
	return b.FullBackend.Delay(ctx, h, until)
}

func (b *Backend) ScanEligibleWindow(ctx context.Context, lane sdk.LaneID, parts []int, limit int) ([][]sdk.RankedID, error) {
	if err := b.dead(); err != nil {
		return nil, err
	}
	return b.FullBackend.ScanEligibleWindow(ctx, lane, parts, limit)
}

func (b *Backend) ReadyPartitions(ctx context.Context, lane sdk.LaneID, parts []int) ([]int, error) {
	if err := b.dead(); err != nil {
		return nil, err
	}
	return b.FullBackend.ReadyPartitions(ctx, lane, parts)
}

func (b *Backend) RegisterWorker(ctx context.Context, r sdk.WorkerRegistration) error {
	if err := b.dead(); err != nil {
		return err
	}
	return b.FullBackend.RegisterWorker(ctx, r)
}

func (b *Backend) HeartbeatWorker(ctx context.Context, r sdk.WorkerRegistration) error {
	if err := b.dead(); err != nil {
		return err
	}
	return b.FullBackend.HeartbeatWorker(ctx, r)
}

func (b *Backend) DeregisterWorker(ctx context.Context, id sdk.WorkerInstanceID) error {
	if err := b.dead(); err != nil {
		return err
	}
	return b.FullBackend.DeregisterWorker(ctx, id)
}
