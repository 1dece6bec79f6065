package sdk_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestWorkerSuspendResume: handlers suspend, a client signals, and the
// executions resume on a worker that never polls (IdlePoll of a minute):
// the resume reaches it by hand-off or arrival push, as a resumed task
// that reads the signal that resumed it. Standalone and cluster.
func TestWorkerSuspendResume(t *testing.T) {
	for _, topo := range e2eTopologies() {
		t.Run(topo.name, func(t *testing.T) {
			b := e2eConnect(t, topo.addrs(t))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if _, err := b.SeedWaitpointSecret(ctx, "k1", []byte("worker-waiting-test-secret")); err != nil {
				t.Fatal(err)
			}
			const n = 40
			lane := e2eLane(t, "suspend")
			tokens := make(chan string, n)
			var mu sync.Mutex
			resumedBy := map[sdk.ExecutionID]string{}
			h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
				if task.AttemptType != sdk.AttemptResumed {
					out, err := task.Suspend(ctx, sdk.SuspendArgs{Condition: sdk.ResumeCondition{Names: []string{"go"}}})
					if err != nil {
						return err
					}
					tokens <- out.Waitpoints[0].Token
					return nil // ignored: the suspend ended the attempt's hold
				}
				s, err := task.Signals(ctx)
				if err != nil {
					return err
				}
				if s == nil || len(s.Signals) != 1 {
					return fmt.Errorf("resumed with %+v", s)
				}
				mu.Lock()
				resumedBy[task.ID] = string(s.Signals[0].Payload)
				mu.Unlock()
				return task.Complete(ctx, s.Signals[0].Payload)
			})
			w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "waiter", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 8, IdlePoll: time.Minute}, h)
			client := sdk.NewClient(b)
			ids := make([]sdk.ExecutionID, n)
			for i := range ids {
				r, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "wait", Payload: []byte("{}")})
				if err != nil {
					t.Fatal(err)
				}
				ids[i] = r.ID
			}
			for range n {
				var tok string
				select {
				case tok = <-tokens:
				case <-ctx.Done():
					t.Fatalf("not every handler suspended: %+v", w.Stats())
				}
				r, err := client.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: tok, Name: "go", Payload: []byte("p-" + tok[len(tok)-8:])})
				if err != nil || r.Effect != sdk.EffectResumed {
					t.Fatalf("DeliverSignal = %+v, %v", r, err)
				}
			}
			e2eWaitFor(t, 30*time.Second, "every execution completed", func() bool { return w.Stats().Completed == n })
			for _, id := range ids {
				res, err := b.GetExecutionResult(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				want := resumedBy[id]
				mu.Unlock()
				if want == "" || string(res) != want {
					t.Fatalf("%s: result %q, want the signal's payload %q", id, res, want)
				}
			}
			if s := w.Stats(); s.Suspended != n || s.Completed != n || s.Failed != 0 {
				t.Fatalf("stats %+v: want %d suspended and completed", s, n)
			}
		})
	}
}

// TestWorkerSuspendAlreadySatisfied: a signal delivered to a pending
// waitpoint before the suspend makes the suspend already satisfied; the
// handler keeps its lease and completes in the same attempt.
func TestWorkerSuspendAlreadySatisfied(t *testing.T) {
	b := e2eConnect(t, []string{valkeytest.NewServer(t).Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.SeedWaitpointSecret(ctx, "k1", []byte("worker-waiting-test-secret")); err != nil {
		t.Fatal(err)
	}
	lane := e2eLane(t, "satisfied")
	client := sdk.NewClient(b)
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		pw, err := task.CreateWaitpoint(ctx, "callback", time.Minute)
		if err != nil {
			return err
		}
		if _, err := client.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: pw.Token, Name: "done", Payload: []byte("early")}); err != nil {
			return err
		}
		out, err := task.Suspend(ctx, sdk.SuspendArgs{Pending: []sdk.WaitpointID{pw.ID}})
		if err != nil {
			return err
		}
		if !out.AlreadySatisfied {
			return fmt.Errorf("suspend not already satisfied: %+v", out)
		}
		s, err := task.Signals(ctx)
		if err != nil {
			return err
		}
		return task.Complete(ctx, s.Signals[0].Payload)
	})
	w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "waiter", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 2}, h)
	r, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "wait", Payload: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	e2eWaitFor(t, 20*time.Second, "the execution completed", func() bool { return w.Stats().Completed == 1 })
	res, err := b.GetExecutionResult(ctx, r.ID)
	if err != nil || string(res) != "early" {
		t.Fatalf("result %q, %v; want early", res, err)
	}
	if s := w.Stats(); s.Suspended != 0 || s.Claimed != 1 {
		t.Fatalf("stats %+v: want one claim and no suspension", s)
	}
}
