package sdk_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestWorkerObserverOutcomes: the observer hears the outcomes TestWorkerObserver
// does not reach, each as the TaskOutcome docs name it: a Delay (delayed), a
// Cancel by the handler (cancelled), an execution cancelled by someone else
// while its handler runs (the handler's lease is lost: lease_lost, with the
// fencing error as LeaseLost's cause), a typed transport or timeout error the
// handler returns (given_back, no retry consumed: the same attempt runs again
// and completes), and a Suspend (suspended, the handler's return value after
// it ignored; the resumed attempt completes).
func TestWorkerObserverOutcomes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := e2eConnect(t, []string{valkeytest.NewServer(t).Addr()})
	if _, err := b.SeedWaitpointSecret(ctx, "k1", []byte("observer-outcomes-test-secret")); err != nil {
		t.Fatal(err)
	}
	obs := newRecordingObserver()
	client := sdk.NewClient(b)
	lane := e2eLane(t, "outcomes")
	kinds := []string{"delay", "cancel-self", "cancel-other", "transport", "timeout", "suspend"}
	ids := map[string]sdk.ExecutionID{}
	for _, kind := range kinds {
		res, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		ids[kind] = res.ID
	}
	var mu sync.Mutex
	attempts := map[sdk.ExecutionID][]sdk.AttemptIndex{} // attempt index per run
	running := make(chan sdk.ExecutionID, 1)
	tokens := make(chan string, 1)
	errSuspended := errors.New("returned after the suspend")
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		mu.Lock()
		attempts[task.ID] = append(attempts[task.ID], task.AttemptIndex)
		runs := len(attempts[task.ID])
		mu.Unlock()
		switch task.Kind {
		case "delay":
			return task.Delay(ctx, time.Now().Add(time.Hour))
		case "cancel-self":
			return task.Cancel(ctx, "not needed")
		case "cancel-other":
			running <- task.ID
			<-ctx.Done()
			return context.Cause(ctx)
		case "transport":
			if runs == 1 {
				return sdk.TransportError("upstream", errors.New("connection reset"))
			}
		case "timeout":
			if runs == 1 {
				return &sdk.Error{Kind: sdk.KindTimeout, Code: sdk.CodeTimeout, Op: "upstream"}
			}
		case "suspend":
			if task.AttemptType != sdk.AttemptResumed {
				out, err := task.Suspend(ctx, sdk.SuspendArgs{Condition: sdk.ResumeCondition{Names: []string{"go"}}})
				if err != nil {
					return err
				}
				tokens <- out.Waitpoints[0].Token
				return errSuspended // ignored: the suspend ended the attempt
			}
		}
		return nil
	})
	e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "outcomes", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 8,
		LeaseTTL: 2 * time.Second, Observer: obs}, h)

	select {
	case id := <-running:
		if _, err := client.Cancel(ctx, id, "operator"); err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the cancel-other handler never ran")
	}
	select {
	case tok := <-tokens:
		r, err := client.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: tok, Name: "go"})
		if err != nil || r.Effect != sdk.EffectResumed {
			t.Fatalf("DeliverSignal = %+v, %v", r, err)
		}
	case <-ctx.Done():
		t.Fatal("the suspend handler never suspended")
	}

	want := map[string][]sdk.TaskOutcome{
		"delay":        {sdk.TaskDelayed},
		"cancel-self":  {sdk.TaskCancelled},
		"cancel-other": {sdk.TaskLeaseLost},
		"transport":    {sdk.TaskGivenBack, sdk.TaskCompleted},
		"timeout":      {sdk.TaskGivenBack, sdk.TaskCompleted},
		"suspend":      {sdk.TaskSuspended, sdk.TaskCompleted},
	}
	e2eWaitFor(t, 30*time.Second, "every outcome", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		for kind, w := range want {
			if len(obs.ended[ids[kind]]) < len(w) {
				return false
			}
		}
		return true
	})
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for kind, w := range want {
		got := obs.ended[ids[kind]]
		outcomes := make([]sdk.TaskOutcome, len(got))
		for i, e := range got {
			outcomes[i] = e.Outcome
		}
		if len(outcomes) != len(w) {
			t.Errorf("%s: outcomes %v, want %v", kind, outcomes, w)
			continue
		}
		for i := range w {
			if outcomes[i] != w[i] {
				t.Errorf("%s: outcomes %v, want %v", kind, outcomes, w)
				break
			}
		}
	}
	if c := obs.lost[ids["cancel-other"]]; sdk.CodeOf(c) != sdk.CodeExecutionNotActive && sdk.CodeOf(c) != sdk.CodeLeaseRevoked {
		t.Errorf("cancel-other: lease lost with cause %v, want the fencing error of the cancel", c)
	}
	if len(obs.lost) != 1 {
		t.Errorf("leases lost: %v, want only the cancelled execution's", obs.lost)
	}
	if e := obs.ended[ids["transport"]][0]; sdk.KindOf(e.HandlerErr) != sdk.KindTransport {
		t.Errorf("transport: first end %+v, want the handler's transport error", e)
	}
	if e := obs.ended[ids["suspend"]][0]; !errors.Is(e.HandlerErr, errSuspended) {
		t.Errorf("suspend: first end %+v, want the (ignored) error the handler returned", e)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, kind := range []string{"transport", "timeout"} {
		// Given back unchanged: the second run is the same attempt.
		if a := attempts[ids[kind]]; len(a) != 2 || a[0] != a[1] {
			t.Errorf("%s: attempt indexes of its runs %v, want the same attempt twice", kind, a)
		}
	}
	states := e2eStates(t, b, []sdk.ExecutionID{ids["delay"], ids["cancel-self"], ids["cancel-other"], ids["transport"], ids["timeout"], ids["suspend"]})
	for kind, st := range map[string]sdk.PublicState{"delay": sdk.StateDelayed, "cancel-self": sdk.StateCancelled,
		"cancel-other": sdk.StateCancelled, "transport": sdk.StateCompleted, "timeout": sdk.StateCompleted, "suspend": sdk.StateCompleted} {
		if states[ids[kind]] != st {
			t.Errorf("%s: state %q, want %q", kind, states[ids[kind]], st)
		}
	}
}
