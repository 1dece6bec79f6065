package valkeybackend_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestLibraryOnNewPrimary: a primary that joins the cluster after the
// backend connected (CLUSTER MEET, so it holds no library) and takes a
// partition's slot over answers "Function not found", which the backend
// turns into a retryable transport error while it loads the library there
// by itself; the partition works again without a call to Prepare.
func TestLibraryOnNewPrimary(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cl, err := valkeytest.StartCluster(ctx, valkeytest.ClusterOptions{NodeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: cl.Addrs(), Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	added, err := cl.AddPrimary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slot, err := cl.KeySlot(ctx, sdk.PartitionTag(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.MigrateSlot(ctx, slot, added, valkeytest.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Creates go round the partitions; one in four lands on the new owner.
	refused, healedAfter := 0, time.Duration(0)
	start := time.Now()
	for onNew := 0; onNew < 3; {
		r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "l", Kind: "k"})
		switch {
		case sdk.CodeOf(err) == sdk.CodeTransport && strings.Contains(err.Error(), "being loaded"):
			// Refused before anything ran, and retryable (a worker's
			// completion retries it): the library is on its way.
			refused++
		case err != nil:
			t.Fatal(err)
		case strings.HasPrefix(string(r.ID), sdk.PartitionTag(0)+":"):
			if onNew == 0 {
				healedAfter = time.Since(start)
			}
			onNew++
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("partition 0 still refused after 10s (%d refusals)", refused)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if refused == 0 {
		t.Fatal("the new owner never answered Function not found: the test did not reach a primary without the library")
	}
	t.Logf("%d creates refused on the new owner before the library was loaded there; the first create on it succeeded %v after the migration",
		refused, healedAfter.Round(time.Millisecond))
	direct := nodeClients(t, []string{added.Addr()})[0]
	defer direct.Close()
	v, err := direct.Do(ctx, direct.B().FcallRo().Function("ff_version").Numkeys(0).Build()).ToArray()
	if err != nil || len(v) < 3 {
		t.Fatalf("ff_version on the new owner: %v, %v", v, err)
	}
}

// TestCompletionThroughLibraryLoss: the library disappears from the server
// while a handler runs (as on a primary that took a slot over without it).
// The handler's Complete meets "Function not found", which is retryable:
// the backend loads the library again and the retried completion lands.
// The job ends completed on its first attempt, and Complete returned nil:
// a success never turns into a failure for the server's missing library.
func TestCompletionThroughLibraryLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	addrs := []string{srv.Addr()}
	b := connectTo(t, srv.Addr(), valkeybackend.Options{})
	client := sdk.NewClient(b)
	res, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: "l", Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	started, proceed, completed := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	w, err := sdk.NewWorker(b, sdk.WorkerConfig{WorkerID: "w", Lanes: []sdk.LaneID{"l"}, MaxConcurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = w.Run(runCtx, sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
			close(started)
			<-proceed
			err := task.Complete(ctx, []byte("done"))
			completed <- err
			return err
		}))
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the handler never started")
	}
	if err := valkeytest.DeleteLibrary(ctx, addrs, "flowfabric"); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	if err := <-completed; err != nil {
		t.Fatalf("Complete with the library gone: %v, want nil (retried until the library was loaded again)", err)
	}
	snap, err := client.Describe(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if snap.State != sdk.StateCompleted || snap.TotalAttempts != 1 {
		t.Fatalf("state %s after %d attempts, want completed after 1", snap.State, snap.TotalAttempts)
	}
	if st := w.Stats(); st.Completed != 1 || st.Failed != 0 {
		t.Fatalf("worker stats %+v, want 1 completed, 0 failed", st)
	}
}
