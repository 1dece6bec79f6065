package loadgen_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/loadgen"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// A killed worker abandons its lease: nothing completes or fails it, and
// the execution stays active until its lease expires.
func TestKillAbandonsLeases(t *testing.T) {
	ctx := context.Background()
	var claims atomic.Int64
	b, f, id, started := startHolder(t, sdk.WorkerConfig{}, loadgen.Hooks{
		OnClaimCall: func(time.Time, time.Duration, int) { claims.Add(1) }})
	for !started.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	f.Kill(0)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := f.Stop(sctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	st, err := b.ReadExecutionState(ctx, id)
	if err != nil || st != sdk.StateActive {
		t.Fatalf("after the kill: %v %v, want active (lease abandoned)", st, err)
	}
	if s := f.Stats(); s.Completed != 0 || s.Failed != 0 || s.Retried != 0 || claims.Load() == 0 {
		t.Fatalf("killed worker settled its task: %+v (claims %d)", s, claims.Load())
	}
}

func TestPauseServer(t *testing.T) {
	srv := valkeytest.NewServer(t)
	ctx := context.Background()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := loadgen.PauseServer(ctx, b.Client(), 200*time.Millisecond, false); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "l", Kind: "k"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 100*time.Millisecond {
		t.Fatalf("a write during CLIENT PAUSE returned after %v", d)
	}
}

// A paused RenewGate holds the fleet's renewals: none reach the server
// while it is paused, they resume on Resume, and a kill releases a renewal
// held at the gate at once (the worker sees ErrKilled, not a hang).
func TestRenewGateHoldsTheFleetsRenewals(t *testing.T) {
	ctx := context.Background()
	gate := &loadgen.RenewGate{}
	_, f, _, held := startHolder(t, sdk.WorkerConfig{RenewEvery: 5 * time.Millisecond}, loadgen.Hooks{RenewGate: gate})
	waitFor(t, "the lease to be held and renewed", func() bool { return held.Load() && gate.Renewed() > 0 })
	if err := gate.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	before := gate.Renewed()
	time.Sleep(100 * time.Millisecond) // 20 renew periods
	if n := gate.Renewed(); n != before {
		t.Fatalf("%d renewals passed a paused gate", n-before)
	}
	gate.Resume()
	waitFor(t, "renewals after Resume", func() bool { return gate.Renewed() > before })
	if err := gate.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() {
		f.KillAll()
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		stopped <- f.Stop(sctx)
	}()
	select {
	case err := <-stopped:
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("the killed fleet did not stop: a renewal stayed held at the paused gate")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the killed fleet did not stop")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startHolder starts a throwaway server with one execution on lane "l" and
// a one-worker fleet (wc, hooks; lease TTL 2s) whose handler holds the lease
// until its worker stops; started turns true once the handler runs.
func startHolder(t *testing.T, wc sdk.WorkerConfig, hooks loadgen.Hooks) (b *valkeybackend.Backend, f *loadgen.Fleet,
	id sdk.ExecutionID, started *atomic.Bool) {
	t.Helper()
	srv := valkeytest.NewServer(t)
	ctx := context.Background()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "l", Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	started = new(atomic.Bool)
	wc.Lanes, wc.LeaseTTL, wc.ShutdownGrace = []sdk.LaneID{"l"}, 2*time.Second, 10*time.Millisecond
	f, err = loadgen.StartFleet(ctx, loadgen.FleetConfig{Backend: b, Workers: 1, Worker: wc,
		Hooks: func(int) loadgen.Hooks { return hooks },
		Handler: func(int) sdk.Handler {
			return sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
				started.Store(true)
				<-ctx.Done()
				return ctx.Err()
			})
		}})
	if err != nil {
		t.Fatal(err)
	}
	return b, f, res.ID, started
}
