package loadgen

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Pause waits for the calls in flight and holds new ones until Resume.
func TestRenewGatePausesAndDrains(t *testing.T) {
	t.Parallel()
	var g RenewGate
	ctx := context.Background()
	if err := g.enter(ctx, nil); err != nil {
		t.Fatal(err)
	}
	paused := make(chan error, 1)
	go func() { paused <- g.Pause(ctx) }()
	select {
	case err := <-paused:
		t.Fatalf("Pause returned (%v) with a call in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.leave(3)
	if err := <-paused; err != nil {
		t.Fatal(err)
	}
	entered := make(chan error, 1)
	go func() { entered <- g.enter(ctx, nil) }()
	select {
	case err := <-entered:
		t.Fatalf("a call passed a paused gate (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.Resume()
	if err := <-entered; err != nil {
		t.Fatal(err)
	}
	g.leave(0)
	// Paused again with nothing in flight: Pause returns at once.
	if err := g.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	// A held call gives up when its context ends or it is abandoned.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := g.enter(cctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("enter on a paused gate with an expiring context: %v", err)
	}
	abandon := make(chan struct{})
	close(abandon)
	if err := g.enter(ctx, abandon); !errors.Is(err, errGateAbandoned) {
		t.Fatalf("enter abandoned: %v", err)
	}
	g.Resume()
	if err := g.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	g.Resume()
	if n := g.Renewed(); n != 3 {
		t.Fatalf("Renewed %d, want 3", n)
	}
}
