package sdk_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// gatedBackend is the real backend whose CompleteBatch calls wait at a gate
// while it is shut, and are recorded (their sizes) once through.
type gatedBackend struct {
	*valkeybackend.Backend
	mu      sync.Mutex
	shut    bool
	open    chan struct{}
	entered chan int // the size of every call as it reaches the gate
	sizes   []int
}

func (g *gatedBackend) CompleteBatch(ctx context.Context, items []sdk.CompleteItem) []sdk.CompleteOutcome {
	g.entered <- len(items)
	g.mu.Lock()
	shut, open := g.shut, g.open
	g.mu.Unlock()
	if shut {
		<-open
	}
	out := g.Backend.CompleteBatch(ctx, items)
	g.mu.Lock()
	g.sizes = append(g.sizes, len(items))
	g.mu.Unlock()
	return out
}

// TestCompletionsBatch: a completion that finds no batch in flight goes at
// once, alone; those that come while one is in flight wait for it, and
// only for it, then go together in one call. A completion whose context
// ends while it waits is withdrawn: it is never sent, so the Fail its
// handler sends next lands, and that execution ends failed, not
// completed.
func TestCompletionsBatch(t *testing.T) {
	ctx := context.Background()
	addrs := []string{valkeytest.NewServer(t).Addr()}
	g := &gatedBackend{Backend: e2eConnect(t, addrs), shut: true, open: make(chan struct{}), entered: make(chan int, 64)}
	lane := e2eLane(t, "completer")
	const n = 6
	releaseFirst, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(n)
	w, stop := e2eRunWorker(t, g, sdk.WorkerConfig{WorkerID: "e2e", Lanes: []sdk.LaneID{lane}, MaxConcurrency: n},
		sdk.HandlerFunc(func(hctx context.Context, task *sdk.Task) error {
			wg.Done()
			if string(task.Payload) == "first" {
				<-releaseFirst
			} else {
				<-release
			}
			if string(task.Payload) == "withdraw" {
				// Gives up while its completion waits behind the blocked batch.
				cctx, cancel := context.WithTimeout(hctx, 300*time.Millisecond)
				defer cancel()
				if err := task.Complete(cctx, []byte("r")); err == nil {
					t.Error("a Complete held behind a blocked batch returned no error when its context ended")
				}
				_, err := task.Fail(hctx, "gave up", "handler_error")
				return err
			}
			return task.Complete(hctx, []byte("r"))
		}))
	var ids []sdk.ExecutionID
	for i := range n {
		payload := "ok"
		switch i {
		case 0:
			payload = "first"
		case n - 1:
			payload = "withdraw"
		}
		r, err := g.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte(payload)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	wg.Wait() // every handler is running
	// The first completion goes alone and is held at the gate; the others
	// queue behind it.
	close(releaseFirst)
	if first := <-g.entered; first != 1 {
		t.Fatalf("the first batch carried %d completions, want 1 (none was in flight)", first)
	}
	close(release)
	e2eWaitFor(t, 10*time.Second, "the withdrawn completion's Fail", func() bool { return w.Stats().Failed == 1 })
	g.mu.Lock()
	g.shut = false
	close(g.open)
	g.mu.Unlock()
	e2eWaitFor(t, 20*time.Second, "every execution ended", func() bool {
		st := e2eStates(t, g, ids)
		for i, id := range ids {
			if want := map[bool]sdk.PublicState{false: sdk.StateCompleted, true: sdk.StateFailed}[i == n-1]; st[id] != want {
				return false
			}
		}
		return true
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	sizes := slices.Clone(g.sizes)
	g.mu.Unlock()
	// 1 (alone), then the n-2 that queued while it was in flight, together;
	// the withdrawn one was never sent.
	if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != n-2 {
		t.Fatalf("batch sizes %v, want [1 %d]", sizes, n-2)
	}
	s := w.Stats()
	if s.Completed != n-1 || s.Failed != 1 || s.CompleteBatches != 2 || s.BatchedCompletes != n-1 ||
		s.CompleteBatchMax != n-2 || s.LostLeases != 0 {
		t.Fatalf("stats %+v: want %d completed in 2 batches (the largest %d) and 1 failed", s, n-1, n-2)
	}
}
