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

// recordingObserver keeps what a WorkerObserver and a ClientObserver are
// told, for the test to read.
type recordingObserver struct {
	mu        sync.Mutex
	started   map[sdk.ExecutionID]*sdk.Task
	ended     map[sdk.ExecutionID][]sdk.TaskEnd
	handlerOK map[sdk.ExecutionID]bool // the handler saw TaskStarted's context
	renewals  map[sdk.ExecutionID]int
	lost      map[sdk.ExecutionID]error
	submitted map[sdk.ExecutionID]string // id -> carrier the submit set
	submitErr []error
}

type observedKey struct{}

func newRecordingObserver() *recordingObserver {
	return &recordingObserver{started: map[sdk.ExecutionID]*sdk.Task{}, ended: map[sdk.ExecutionID][]sdk.TaskEnd{},
		handlerOK: map[sdk.ExecutionID]bool{}, renewals: map[sdk.ExecutionID]int{}, lost: map[sdk.ExecutionID]error{},
		submitted: map[sdk.ExecutionID]string{}}
}

func (o *recordingObserver) TaskStarted(ctx context.Context, t *sdk.Task) context.Context {
	o.mu.Lock()
	o.started[t.ID] = t
	o.mu.Unlock()
	return context.WithValue(ctx, observedKey{}, t.ID)
}

func (o *recordingObserver) TaskEnded(ctx context.Context, t *sdk.Task, end sdk.TaskEnd) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ctx.Value(observedKey{}) != t.ID {
		end.Outcome = "wrong context"
	}
	o.ended[t.ID] = append(o.ended[t.ID], end)
}

func (o *recordingObserver) LeaseRenewing(t *sdk.Task, lag time.Duration) {
	o.mu.Lock()
	o.renewals[t.ID]++
	o.mu.Unlock()
}

func (o *recordingObserver) LeaseLost(t *sdk.Task, cause error) {
	o.mu.Lock()
	o.lost[t.ID] = cause
	o.mu.Unlock()
}

func (o *recordingObserver) WorkerError(error) {}

func (o *recordingObserver) SubmitStarted(ctx context.Context, args *sdk.CreateExecutionArgs) context.Context {
	args.TraceParent = "carrier-" + args.Kind
	return context.WithValue(ctx, observedKey{}, args.Kind)
}

func (o *recordingObserver) SubmitEnded(ctx context.Context, args *sdk.CreateExecutionArgs, res sdk.CreateExecutionResult, err error, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ctx.Value(observedKey{}) != args.Kind {
		err = errors.New("SubmitEnded got another context than SubmitStarted returned")
	}
	if err != nil {
		o.submitErr = append(o.submitErr, err)
		return
	}
	o.submitted[res.ID] = args.TraceParent
}

// The observers hear every task's start and end with its outcome
// (completed, retried then failed, a panic, a lost lease), the renewals of
// a long task, the lease loss, and every submit (a flow's member too); the handler runs under
// the context TaskStarted returned; the carrier a submit's observer set
// reaches the task (Task.TraceParent).
func TestWorkerObserver(t *testing.T) {
	ctx := context.Background()
	addrs := []string{valkeytest.NewServer(t).Addr()}
	b := e2eConnect(t, addrs)
	obs := newRecordingObserver()
	client := sdk.NewClientWithOptions(b, sdk.ClientOptions{Observer: obs})
	lane := e2eLane(t, "observed")
	retry := sdk.RetryPolicy{MaxRetries: 1, Backoff: sdk.Backoff{Kind: sdk.BackoffFixed, ZeroDelay: true}}
	ids := map[string]sdk.ExecutionID{}
	for _, kind := range []string{"ok", "fail", "panic", "slow", "lose"} {
		res, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: kind, Retry: retry})
		if err != nil {
			t.Fatal(err)
		}
		ids[kind] = res.ID
	}
	if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: "bad lane", Kind: "x"}); err == nil {
		t.Fatal("a bad lane was accepted")
	}
	batch, err := client.SubmitBatch(ctx, []sdk.CreateExecutionArgs{{Lane: lane, Kind: "ok"}, {Lane: lane, Kind: "ok"}})
	if err != nil {
		t.Fatal(err)
	}
	flow, err := client.SubmitFlow(ctx, sdk.FlowSpec{Members: []sdk.FlowMember{{Name: "m", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "member"}}}})
	if err != nil {
		t.Fatal(err)
	}
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		obs.mu.Lock()
		obs.handlerOK[task.ID] = ctx.Value(observedKey{}) == task.ID
		obs.mu.Unlock()
		switch task.Kind {
		case "fail":
			return errors.New("boom")
		case "panic":
			panic("kaboom")
		case "slow":
			time.Sleep(350 * time.Millisecond)
		case "lose":
			if _, err := b.RevokeLease(ctx, sdk.RevokeLeaseArgs{ExecutionID: task.ID, Reason: "test"}); err != nil {
				return err
			}
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "obs", Lanes: []sdk.LaneID{lane}, LeaseTTL: 300 * time.Millisecond,
		Observer: obs}, h)
	want := map[sdk.ExecutionID][]sdk.TaskOutcome{
		ids["ok"]: {sdk.TaskCompleted}, ids["fail"]: {sdk.TaskRetried, sdk.TaskFailed},
		ids["panic"]: {sdk.TaskRetried, sdk.TaskFailed}, ids["slow"]: {sdk.TaskCompleted},
		ids["lose"]: {sdk.TaskLeaseLost}, batch[0].ID: {sdk.TaskCompleted}, batch[1].ID: {sdk.TaskCompleted},
		flow.Members["m"]: {sdk.TaskCompleted},
	}
	e2eWaitFor(t, 20*time.Second, "every outcome", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		for id, w := range want {
			if len(obs.ended[id]) < len(w) {
				return false
			}
		}
		return true
	})
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for id, w := range want {
		got := obs.ended[id]
		for i := range w {
			if got[i].Outcome != w[i] {
				t.Errorf("%s (%s): outcomes %+v, want %v", id, obs.started[id].Kind, got, w)
			}
		}
		if task := obs.started[id]; task == nil || task.TraceParent != "carrier-"+task.Kind || obs.submitted[id] != task.TraceParent {
			t.Errorf("%s: task %+v, submit carrier %q", id, task, obs.submitted[id])
		}
		if !obs.handlerOK[id] {
			t.Errorf("%s: the handler did not get TaskStarted's context", id)
		}
	}
	if e := obs.ended[ids["fail"]][0]; e.HandlerErr == nil || e.Panicked {
		t.Errorf("fail: %+v, want the handler's error", e)
	}
	if e := obs.ended[ids["panic"]][0]; !e.Panicked {
		t.Errorf("panic: %+v, want Panicked", e)
	}
	if e := obs.ended[ids["slow"]][0]; e.HandlerDuration < 350*time.Millisecond {
		t.Errorf("slow: handler duration %v, want at least 350ms", e.HandlerDuration)
	}
	if obs.renewals[ids["slow"]] == 0 {
		t.Error("no renewal of the slow task's lease was observed")
	}
	if c := obs.lost[ids["lose"]]; sdk.CodeOf(c) != sdk.CodeLeaseRevoked {
		t.Errorf("lost lease cause %v, want lease_revoked", c)
	}
	if len(obs.lost) != 1 {
		t.Errorf("leases lost: %v, want only the revoked one", obs.lost)
	}
	if len(obs.submitErr) != 1 || sdk.KindOf(obs.submitErr[0]) != sdk.KindValidation {
		t.Errorf("submit errors %v, want the bad lane's validation error", obs.submitErr)
	}
}
