package bench

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestWaitLinkedReplicasEnds: the durability scenario's wait for its
// replicas to link ends when the run is cancelled and when its bound
// passes, also while the primary does not answer (SIGSTOP), each with an
// error that says how many replicas linked and wraps the context's.
func TestWaitLinkedReplicasEnds(t *testing.T) {
	srv := valkeytest.NewServer(t) // a primary without replicas: never enough
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{srv.Addr()}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wait := func(ctx context.Context, within time.Duration) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- waitLinkedReplicas(ctx, c, 1, within) }()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second): // far past every bound below: the wait ignored them
			t.Fatal("the wait for replicas did not end")
			return nil
		}
	}
	check := func(what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) || !strings.Contains(err.Error(), "0 of 1 replicas linked") {
			t.Fatalf("%s: %v; want the linked count and %v", what, err, want)
		}
	}
	// A run cancelled early: one without a deadline, and one with a far
	// deadline of its own (valkey-go lets a call under a deadline run to
	// it, cancellation aside).
	cancelled := func(deadline bool) context.Context {
		parent := context.Background()
		if deadline {
			var stop context.CancelFunc
			parent, stop = context.WithTimeout(parent, time.Hour)
			t.Cleanup(stop)
		}
		ctx, cancel := context.WithCancel(parent)
		t.Cleanup(cancel)
		time.AfterFunc(200*time.Millisecond, cancel)
		return ctx
	}

	check("answering primary, run cancelled", wait(cancelled(false), time.Minute), context.Canceled)
	check("answering primary, run with a deadline cancelled", wait(cancelled(true), time.Minute), context.Canceled)
	check("answering primary, bound passed", wait(context.Background(), 300*time.Millisecond), context.DeadlineExceeded)
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	defer srv.Resume()
	check("stopped primary, run cancelled", wait(cancelled(false), time.Minute), context.Canceled)
	check("stopped primary, run with a deadline cancelled", wait(cancelled(true), time.Minute), context.Canceled)
	check("stopped primary, bound passed", wait(context.Background(), 300*time.Millisecond), context.DeadlineExceeded)
}
