package sdk_test

// Tests of the documented promises of the Task's durable waiting
// (sdk/task_waiting.go, README "Waiting for a signal: suspend and resume")
// through a real Worker against a real server, that the existing tests
// (worker_waiting_test.go, sdk/sdktest/waiting.go) leave unchecked.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// wpSetup connects to a fresh server and seeds the waitpoint secret.
func wpSetup(t *testing.T) (*valkeybackend.Backend, context.Context) {
	t.Helper()
	b := e2eConnect(t, []string{valkeytest.NewServer(t).Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if _, err := b.SeedWaitpointSecret(ctx, "k1", []byte("waiting-promises-sdk-secret")); err != nil {
		t.Fatal(err)
	}
	return b, ctx
}

// recv takes one value from ch or fails after 10s.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("nothing within 10s: %s", what)
	}
	var zero T
	return zero
}

// Promise (Task.Suspend: "the handler should return once it has handed
// the tokens out (its return value is then ignored)"): a handler that
// returns an error after its Suspend landed leaves the execution
// suspended (not failed, no retry), counted as suspended; the signal then
// resumes it and it completes.
func TestWaitPromiseTaskReturnAfterSuspendIgnored(t *testing.T) {
	b, ctx := wpSetup(t)
	lane := e2eLane(t, "wp-ignored")
	tokens := make(chan string, 1)
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		if task.AttemptType != sdk.AttemptResumed {
			out, err := task.Suspend(ctx, sdk.SuspendArgs{})
			if err != nil {
				return err
			}
			tokens <- out.Waitpoints[0].Token
			return errors.New("returned after the suspend: must be ignored")
		}
		return task.Complete(ctx, []byte("done"))
	})
	w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "wp-ignored", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 2}, h)
	client := sdk.NewClient(b)
	r, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "wait", Payload: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	tok := recv(t, tokens, "the handler's suspend")
	e2eWaitFor(t, 10*time.Second, "the handler returned", func() bool { s := w.Stats(); return s.Suspended == 1 })
	time.Sleep(100 * time.Millisecond) // let the worker settle the handler's return
	if st, err := b.ReadExecutionState(ctx, r.ID); err != nil || st != sdk.StateSuspended {
		t.Fatalf("after the handler returned an error post-suspend: %s, %v; want suspended", st, err)
	}
	if s := w.Stats(); s.Failed != 0 || s.Retried != 0 {
		t.Fatalf("stats %+v: the ignored return was counted as a failure", s)
	}
	if res, err := client.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: tok, Name: "go"}); err != nil || res.Effect != sdk.EffectResumed {
		t.Fatalf("DeliverSignal = %+v, %v", res, err)
	}
	res, err := client.WaitResult(ctx, r.ID, 5*time.Millisecond)
	if err != nil || string(res) != "done" {
		t.Fatalf("WaitResult = %q, %v", res, err)
	}
}

// Promise (Task.Suspend: "When the pending waitpoints ... met the
// condition already, the outcome is AlreadySatisfied: the lease is kept
// and the handler goes on"; the default dedup key only recognises a retry
// of the same call): a handler that goes on after an AlreadySatisfied
// outcome and suspends again (new waitpoint, new condition) is suspended
// by that second call, with a new waitpoint and token.
func TestWaitPromiseTaskSuspendAgainAfterAlreadySatisfied(t *testing.T) {
	b, ctx := wpSetup(t)
	lane := e2eLane(t, "wp-again")
	client := sdk.NewClient(b)
	type second struct {
		first, again sdk.SuspendOutcome
		pending      sdk.WaitpointID
		err          error
	}
	got := make(chan second, 1)
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		if task.AttemptType == sdk.AttemptResumed {
			return task.Complete(ctx, []byte("resumed"))
		}
		pw, err := task.CreateWaitpoint(ctx, "early", time.Minute)
		if err != nil {
			got <- second{err: err}
			return err
		}
		if _, err := client.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: pw.Token, Name: "early"}); err != nil {
			got <- second{err: err}
			return err
		}
		first, err := task.Suspend(ctx, sdk.SuspendArgs{Pending: []sdk.WaitpointID{pw.ID}})
		if err != nil {
			got <- second{err: err}
			return err
		}
		again, err := task.Suspend(ctx, sdk.SuspendArgs{Waitpoints: []string{"later"}, Condition: sdk.ResumeCondition{Names: []string{"later"}}})
		got <- second{first: first, again: again, pending: pw.ID, err: err}
		if err != nil || again.AlreadySatisfied {
			return task.Complete(ctx, []byte("never suspended"))
		}
		return nil
	})
	e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "wp-again", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 2}, h)
	r, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "wait", Payload: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	g := recv(t, got, "the handler's two suspends")
	if g.err != nil {
		t.Fatalf("handler: %v", g.err)
	}
	if !g.first.AlreadySatisfied {
		t.Fatalf("first Suspend = %+v, want already satisfied", g.first)
	}
	if g.again.AlreadySatisfied || g.again.SuspensionID == g.first.SuspensionID || len(g.again.Waitpoints) != 1 ||
		g.again.Waitpoints[0].ID == g.pending || g.again.Waitpoints[0].Label != "later" {
		t.Fatalf("second Suspend in the same lease = %+v; want a new suspension on a new waitpoint \"later\" (first was %+v)", g.again, g.first)
	}
	if st, err := b.ReadExecutionState(ctx, r.ID); err != nil || st != sdk.StateSuspended {
		t.Fatalf("after the second Suspend: %s, %v; want suspended", st, err)
	}
	if res, err := client.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: g.again.Waitpoints[0].Token, Name: "later"}); err != nil || res.Effect != sdk.EffectResumed {
		t.Fatalf("DeliverSignal to the second suspension = %+v, %v", res, err)
	}
	if res, err := client.WaitResult(ctx, r.ID, 5*time.Millisecond); err != nil || string(res) != "resumed" {
		t.Fatalf("WaitResult = %q, %v", res, err)
	}
}

// Promise (README: the execution resumes "on any worker"; a worker killed
// while an execution it suspended waits): the suspension does not depend
// on the worker that suspended it. That worker stops; a second worker,
// another instance, gets the resumed attempt (AttemptResumed) when the
// signal comes, reads the signal and completes it, once.
func TestWaitPromiseResumeOnAnotherWorker(t *testing.T) {
	b, ctx := wpSetup(t)
	lane := e2eLane(t, "wp-other")
	tokens := make(chan string, 1)
	first := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		out, err := task.Suspend(ctx, sdk.SuspendArgs{})
		if err != nil {
			return err
		}
		tokens <- out.Waitpoints[0].Token
		return nil
	})
	w1, stop1 := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "wp-first", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 1}, first)
	client := sdk.NewClient(b)
	r, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "wait", Payload: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	tok := recv(t, tokens, "the first worker's suspend")
	e2eWaitFor(t, 10*time.Second, "the first worker counted the suspend", func() bool { return w1.Stats().Suspended == 1 })
	if err := stop1(); err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("first worker's Run returned %v", err)
	}
	type resumed struct {
		typ    sdk.AttemptType
		signal string
	}
	got := make(chan resumed, 2)
	second := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		s, err := task.Signals(ctx)
		if err != nil {
			return err
		}
		name := ""
		if s != nil && len(s.Signals) == 1 {
			name = string(s.Signals[0].Payload)
		}
		got <- resumed{task.AttemptType, name}
		return task.Complete(ctx, []byte(name))
	})
	w2, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "wp-second", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 1}, second)
	if res, err := client.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: tok, Name: "go", Payload: []byte("p1")}); err != nil || res.Effect != sdk.EffectResumed {
		t.Fatalf("DeliverSignal = %+v, %v", res, err)
	}
	g := recv(t, got, "the resumed attempt on the second worker")
	if g.typ != sdk.AttemptResumed || g.signal != "p1" {
		t.Fatalf("second worker ran %+v; want the resumed attempt reading signal p1", g)
	}
	if res, err := client.WaitResult(ctx, r.ID, 5*time.Millisecond); err != nil || string(res) != "p1" {
		t.Fatalf("WaitResult = %q, %v", res, err)
	}
	if s := w2.Stats(); s.Completed != 1 || s.Claimed != 1 {
		t.Fatalf("second worker stats %+v; want one claim, one completion", s)
	}
	if n, err := b.ReadTotalAttemptCount(ctx, r.ID); err != nil || n != 1 {
		t.Fatalf("attempts %d, %v; want 1 (the same attempt resumed)", n, err)
	}
}

// noWaiting hides RoleWaiting from a backend's features.
type noWaiting struct{ *valkeybackend.Backend }

func (n noWaiting) Features() sdk.Features {
	f := n.Backend.Features()
	f.Roles = slices.DeleteFunc(slices.Clone(f.Roles), func(r sdk.Role) bool { return r == sdk.RoleWaiting })
	return f
}

// Promise (sdk/task_waiting.go "needs a backend with RoleWaiting; without
// one the calls return an Unavailable error"; Client.DeliverSignal "Needs
// a backend with RoleWaiting (else an Unavailable error)"): Task.Suspend,
// CreateWaitpoint and Signals, and Client.DeliverSignal, are kind
// unavailable without the role, and the task keeps its lease (it can
// still complete).
func TestWaitPromiseUnavailableWithoutRole(t *testing.T) {
	b, ctx := wpSetup(t)
	nb := noWaiting{b}
	lane := e2eLane(t, "wp-norole")
	errs := make(chan []error, 1)
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		_, e1 := task.Suspend(ctx, sdk.SuspendArgs{})
		_, e2 := task.CreateWaitpoint(ctx, "x", time.Minute)
		_, e3 := task.Signals(ctx)
		errs <- []error{e1, e2, e3}
		return task.Complete(ctx, []byte("ok"))
	})
	e2eRunWorker(t, nb, sdk.WorkerConfig{WorkerID: "wp-norole", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 1}, h)
	client := sdk.NewClient(nb)
	if _, err := client.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: "x", Name: "x"}); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Client.DeliverSignal without RoleWaiting = %v, want unavailable", err)
	}
	r, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range recv(t, errs, "the handler's calls") {
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("Task call %d without RoleWaiting = %v, want unavailable", i, err)
		}
	}
	if res, err := client.WaitResult(ctx, r.ID, 5*time.Millisecond); err != nil || string(res) != "ok" {
		t.Fatalf("WaitResult = %q, %v; the task should have kept its lease", res, err)
	}
}

// Promise (Task.CreateWaitpoint: "Not terminal; a fencing error means the
// lease is lost and cancels Context"; and after a terminal call, the Task
// refuses with task_finished): a CreateWaitpoint after the lease was
// revoked fails with a fence error and cancels the task's context; one
// after Complete is task_finished (kind state).
func TestWaitPromiseTaskCreateWaitpointFenceAndFinished(t *testing.T) {
	b, ctx := wpSetup(t)
	lane := e2eLane(t, "wp-cwp")
	type result struct {
		err       error
		cancelled bool
	}
	got := make(chan result, 2)
	h := sdk.HandlerFunc(func(hctx context.Context, task *sdk.Task) error {
		if string(task.Payload) == "revoke" {
			if _, err := b.RevokeLease(ctx, sdk.RevokeLeaseArgs{ExecutionID: task.ID, Reason: "test"}); err != nil {
				got <- result{err: fmt.Errorf("RevokeLease: %w", err)}
				return err
			}
			_, err := task.CreateWaitpoint(hctx, "x", time.Minute)
			cancelled := false
			select {
			case <-task.Context().Done():
				cancelled = true
			case <-time.After(5 * time.Second):
			}
			got <- result{err: err, cancelled: cancelled}
			return err
		}
		if err := task.Complete(hctx, nil); err != nil {
			got <- result{err: fmt.Errorf("Complete: %w", err)}
			return err
		}
		_, err := task.CreateWaitpoint(hctx, "x", time.Minute)
		got <- result{err: err}
		return nil
	})
	e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "wp-cwp", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 1}, h)
	client := sdk.NewClient(b)
	if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte("revoke")}); err != nil {
		t.Fatal(err)
	}
	g := recv(t, got, "CreateWaitpoint after a revoke")
	if g.err == nil || sdk.KindOf(g.err) != sdk.KindState || !g.cancelled {
		t.Fatalf("CreateWaitpoint after the lease was revoked: %v (kind %s), context cancelled %v; want a fence error and a cancelled context",
			g.err, sdk.KindOf(g.err), g.cancelled)
	}
	if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte("complete")}); err != nil {
		t.Fatal(err)
	}
	g = recv(t, got, "CreateWaitpoint after Complete")
	if sdk.CodeOf(g.err) != sdk.CodeTaskFinished || !errors.Is(g.err, sdk.ErrState) {
		t.Fatalf("CreateWaitpoint after Complete = %v, want task_finished", g.err)
	}
}
