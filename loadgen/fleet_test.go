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
	srv := valkeytest.NewServer(t)
	ctx := context.Background()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "l", Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	var started atomic.Bool
	var claims atomic.Int64
	f, err := loadgen.StartFleet(ctx, loadgen.FleetConfig{Backend: b, Workers: 1,
		Worker: sdk.WorkerConfig{Lanes: []sdk.LaneID{"l"}, LeaseTTL: 2 * time.Second, ShutdownGrace: 10 * time.Millisecond},
		Hooks: func(int) loadgen.Hooks {
			return loadgen.Hooks{OnClaimCall: func(time.Time, time.Duration, int) { claims.Add(1) }}
		},
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
	for !started.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	f.Kill(0)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := f.Stop(sctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	st, err := b.ReadExecutionState(ctx, res.ID)
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
