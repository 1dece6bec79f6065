package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// TestWorkerFlowDAGs: workers run fan-out/fan-in DAGs and chains submitted
// with SubmitFlow; every flow completes, the join sees every fan-out
// member's result, and no member's handler starts before its upstreams
// completed (server completion times against handler start times).
func TestWorkerFlowDAGs(t *testing.T) {
	for _, topo := range e2eTopologies() {
		t.Run(topo.name, func(t *testing.T) {
			b := e2eConnect(t, topo.addrs(t))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			lane := e2eLane(t, "dag")
			var mu sync.Mutex
			started := map[sdk.ExecutionID]time.Time{}
			joins := map[sdk.ExecutionID]string{}
			h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
				mu.Lock()
				started[task.ID] = time.Now()
				mu.Unlock()
				ups, err := task.UpstreamResults(ctx)
				if err != nil {
					return err
				}
				var got []string
				for _, u := range ups {
					if u.State != sdk.StateCompleted {
						return fmt.Errorf("upstream %s is %s when its dependant runs", u.ID, u.State)
					}
					got = append(got, string(u.Result))
				}
				sort.Strings(got)
				if task.Kind == "join" {
					mu.Lock()
					joins[task.ID] = strings.Join(got, ",")
					mu.Unlock()
				}
				return task.Complete(ctx, task.Payload)
			})
			e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "dag", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 8}, h)
			client := sdk.NewClient(b)
			mk := func(name, kind string) sdk.FlowMember {
				return sdk.FlowMember{Name: name, Args: sdk.CreateExecutionArgs{Lane: lane, Kind: kind, Payload: []byte(name)}}
			}
			var specs []sdk.FlowSpec
			for range 8 { // 1 -> 5 -> 1
				s := sdk.FlowSpec{Members: []sdk.FlowMember{mk("root", "step"), mk("join", "join")}}
				for i := range 5 {
					name := fmt.Sprintf("f%d", i)
					s.Members = append(s.Members, mk(name, "step"))
					s.Edges = append(s.Edges, sdk.FlowEdge{From: "root", To: name}, sdk.FlowEdge{From: name, To: "join"})
				}
				specs = append(specs, s)
			}
			for range 4 { // chains of 6
				s := sdk.FlowSpec{}
				for i := range 6 {
					s.Members = append(s.Members, mk(fmt.Sprintf("c%d", i), "step"))
					if i > 0 {
						s.Edges = append(s.Edges, sdk.FlowEdge{From: fmt.Sprintf("c%d", i-1), To: fmt.Sprintf("c%d", i)})
					}
				}
				specs = append(specs, s)
			}
			subs := make([]sdk.FlowSubmission, len(specs))
			for i, s := range specs {
				sub, err := client.SubmitFlow(ctx, s)
				if err != nil {
					t.Fatal(err)
				}
				subs[i] = sub
			}
			for _, sub := range subs {
				if st, err := client.AwaitFlow(ctx, sub.ID); err != nil || st != sdk.FlowCompleted {
					t.Fatalf("AwaitFlow(%s) = %s, %v", sub.ID, st, err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for si, sub := range subs {
				if j, ok := sub.Members["join"]; ok && joins[j] != "f0,f1,f2,f3,f4" {
					t.Fatalf("join of flow %s saw %q", sub.ID, joins[j])
				}
				for _, e := range specs[si].Edges {
					up, down := sub.Members[e.From], sub.Members[e.To]
					s, err := b.DescribeExecution(ctx, up)
					if err != nil {
						t.Fatal(err)
					}
					if started[down].Before(s.CompletedAt) {
						t.Fatalf("%s started at %v, before its upstream %s completed at %v", down, started[down], up, s.CompletedAt)
					}
				}
			}
		})
	}
}

// TestWorkerWaitChildren: a handler fans out at run time: it adds children
// to its flow with edges to itself and waits for them; its attempt resumes
// once they all ended and reads their results.
func TestWorkerWaitChildren(t *testing.T) {
	for _, topo := range e2eTopologies() {
		t.Run(topo.name, func(t *testing.T) {
			b := e2eConnect(t, topo.addrs(t))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			lane := e2eLane(t, "children")
			// The children finish only once the parent waits for them, so
			// the wait is a real one (the already-ended case is the
			// conformance suite's).
			release := make(chan struct{})
			h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
				if task.Kind == "child" {
					select {
					case <-release:
					case <-ctx.Done():
						return ctx.Err()
					}
					return task.Complete(ctx, append([]byte("done "), task.Payload...))
				}
				if task.AttemptType == sdk.AttemptResumed {
					ups, err := task.UpstreamResults(ctx)
					if err != nil {
						return err
					}
					var got []string
					for _, u := range ups {
						got = append(got, string(u.Result))
					}
					sort.Strings(got)
					return task.Complete(ctx, []byte(strings.Join(got, ",")))
				}
				flow, err := b.ResolveExecutionFlowID(ctx, task.ID)
				if err != nil {
					return err
				}
				rev := uint64(0)
				for i := range 3 {
					r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: flow.NewMemberID(), Lane: lane, Kind: "child",
						Payload: []byte(fmt.Sprint(i))})
					if err != nil {
						return err
					}
					if _, err := b.AddExecutionToFlow(ctx, flow, r.ID); err != nil {
						return err
					}
					edge := sdk.EdgeID(fmt.Sprint("child", i))
					if rev, err = b.StageDependencyEdge(ctx, sdk.StageEdgeArgs{Flow: flow, Edge: edge, Upstream: r.ID,
						Downstream: task.ID, ExpectedRevision: rev}); err != nil {
						return err
					}
					if _, err := b.ApplyDependencyToChild(ctx, flow, edge); err != nil {
						return err
					}
				}
				waiting, err := task.WaitChildren(ctx)
				close(release)
				if err == nil && !waiting {
					return errors.New("WaitChildren did not wait while its children were held running")
				}
				return err
			})
			w, _ := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "parents", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 4}, h)
			client := sdk.NewClient(b)
			sub, err := client.SubmitFlow(ctx, sdk.FlowSpec{Members: []sdk.FlowMember{{Name: "parent",
				Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "parent"}}}})
			if err != nil {
				t.Fatal(err)
			}
			if st, err := client.AwaitFlow(ctx, sub.ID); err != nil || st != sdk.FlowCompleted {
				fs, _ := b.DescribeFlow(ctx, sub.ID)
				for _, m := range fs.Members {
					d, _ := b.DescribeExecution(ctx, m)
					t.Logf("member %s: %s %s %s", m, d.State, d.FailureReason, d.FailureCategory)
				}
				t.Fatalf("AwaitFlow = %s, %v (%+v)", st, err, fs)
			}
			res, err := b.GetExecutionResult(ctx, sub.Members["parent"])
			if err != nil || string(res) != "done 0,done 1,done 2" {
				t.Fatalf("parent result %q, %v", res, err)
			}
			// The flow ends when the parent's Complete lands on the server;
			// the worker counts it once the reply is back, a moment later.
			deadline := time.Now().Add(5 * time.Second)
			for s := w.Stats(); s.Completed != 4 || s.Suspended != 1; s = w.Stats() {
				if time.Now().After(deadline) {
					t.Fatalf("stats %+v: want 4 completed (parent and children), 1 wait", s)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// inlineRecorder is a worker's backend that records the hand-offs its
// completions bring back inline (CompleteOutcome.Handoffs): lease id →
// execution.
type inlineRecorder struct {
	*valkeybackend.Backend
	mu    sync.Mutex
	taken map[string]sdk.ExecutionID
}

func (r *inlineRecorder) CompleteBatch(ctx context.Context, items []sdk.CompleteItem) []sdk.CompleteOutcome {
	out := r.Backend.CompleteBatch(ctx, items)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range out {
		for _, h := range o.Handoffs {
			r.taken[h.Handle.LeaseID] = h.Handle.ExecutionID
		}
	}
	return out
}

// TestWorkerFlowInlineHandoff: two idle workers run chains; a member's
// completion hands its ready child to the offer it makes in the same call,
// and the child comes back in that call's reply: it runs exactly once, on
// the worker that completed its parent, on the offer's lease, as a
// hand-off.
func TestWorkerFlowInlineHandoff(t *testing.T) {
	for _, topo := range e2eTopologies() {
		t.Run(topo.name, func(t *testing.T) {
			b := e2eConnect(t, topo.addrs(t))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			lane := e2eLane(t, "inline")
			type run struct {
				worker    string
				lease     string
				handedOff bool
			}
			var mu sync.Mutex
			runs := map[sdk.ExecutionID][]run{}
			recs := map[string]*inlineRecorder{}
			for _, name := range []string{"w1", "w2"} {
				rec := &inlineRecorder{Backend: b, taken: map[string]sdk.ExecutionID{}}
				recs[name] = rec
				h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
					mu.Lock()
					runs[task.ID] = append(runs[task.ID], run{name, task.Handle.LeaseID, task.HandedOff})
					mu.Unlock()
					return task.Complete(ctx, nil)
				})
				e2eRunWorker(t, rec, sdk.WorkerConfig{WorkerID: sdk.WorkerID(name), Lanes: []sdk.LaneID{lane}, MaxConcurrency: 2}, h)
			}
			client := sdk.NewClient(b)
			var subs []sdk.FlowSubmission
			for range 4 {
				s := sdk.FlowSpec{}
				for i := range 10 {
					s.Members = append(s.Members, sdk.FlowMember{Name: fmt.Sprintf("c%d", i), Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "step"}})
					if i > 0 {
						s.Edges = append(s.Edges, sdk.FlowEdge{From: fmt.Sprintf("c%d", i-1), To: fmt.Sprintf("c%d", i)})
					}
				}
				sub, err := client.SubmitFlow(ctx, s)
				if err != nil {
					t.Fatal(err)
				}
				if st, err := client.AwaitFlow(ctx, sub.ID); err != nil || st != sdk.FlowCompleted {
					t.Fatalf("AwaitFlow(%s) = %s, %v", sub.ID, st, err)
				}
				subs = append(subs, sub)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, sub := range subs {
				for name, id := range sub.Members {
					if len(runs[id]) != 1 {
						t.Fatalf("member %s (%s) ran %d times: %+v", name, id, len(runs[id]), runs[id])
					}
				}
			}
			inline := 0
			for name, rec := range recs {
				rec.mu.Lock()
				for lease, id := range rec.taken {
					inline++
					r := runs[id]
					if len(r) != 1 || r[0].worker != name || r[0].lease != lease || !r[0].handedOff {
						t.Errorf("%s handed inline to %s on lease %s ran as %+v", id, name, lease, r)
					}
				}
				rec.mu.Unlock()
			}
			// 36 edges, sequential chains, idle workers: their completions
			// offer their slots, so children come inline.
			if inline == 0 {
				t.Fatal("no child came back inline in its parent's completion")
			}
			t.Logf("%d of 36 chain edges handed inline", inline)
		})
	}
}

// pauseOnInline is a worker's backend that pauses lane when a completion
// first brings a hand-off back inline, before the worker sees it.
type pauseOnInline struct {
	*valkeybackend.Backend
	lane   sdk.LaneID
	mu     sync.Mutex
	first  *sdk.ClaimedTask
	paused chan struct{}
}

func (p *pauseOnInline) CompleteBatch(ctx context.Context, items []sdk.CompleteItem) []sdk.CompleteOutcome {
	out := p.Backend.CompleteBatch(ctx, items)
	for _, o := range out {
		for _, h := range o.Handoffs {
			p.mu.Lock()
			first := p.first == nil
			if first {
				p.first = &h
			}
			p.mu.Unlock()
			if !first {
				continue
			}
			if err := p.SetLanePolicy(ctx, p.lane, sdk.LanePolicy{Paused: true}); err != nil {
				panic(err)
			}
			time.Sleep(100 * time.Millisecond) // the worker hears of it
			close(p.paused)
		}
	}
	return out
}

// TestWorkerFlowInlineHandBack: a child that comes back inline to a
// worker whose lane was paused meanwhile is handed back as an inbox
// hand-off would be: it does not run on that lease, waits while the lane
// is paused, and runs exactly once after the resume.
func TestWorkerFlowInlineHandBack(t *testing.T) {
	b := e2eConnect(t, e2eTopologies()[0].addrs(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lane := e2eLane(t, "inline-back")
	be := &pauseOnInline{Backend: b, lane: lane, paused: make(chan struct{})}
	var mu sync.Mutex
	runs := map[sdk.ExecutionID][]string{}
	h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
		mu.Lock()
		runs[task.ID] = append(runs[task.ID], task.Handle.LeaseID)
		mu.Unlock()
		return task.Complete(ctx, nil)
	})
	e2eRunWorker(t, be, sdk.WorkerConfig{WorkerID: "back", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 2}, h)
	client := sdk.NewClient(b)
	spec := sdk.FlowSpec{}
	for i := range 8 {
		spec.Members = append(spec.Members, sdk.FlowMember{Name: fmt.Sprintf("c%d", i), Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}})
		if i > 0 {
			spec.Edges = append(spec.Edges, sdk.FlowEdge{From: fmt.Sprintf("c%d", i-1), To: fmt.Sprintf("c%d", i)})
		}
	}
	sub, err := client.SubmitFlow(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-be.paused:
	case <-ctx.Done():
		t.Fatal("no child came back inline")
	}
	be.mu.Lock()
	child, lease := be.first.Handle.ExecutionID, be.first.Handle.LeaseID
	be.mu.Unlock()
	e2eWaitFor(t, 10*time.Second, "the inline child handed back, waiting", func() bool {
		s, err := b.DescribeExecution(ctx, child)
		return err == nil && s.State == sdk.StateWaiting
	})
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	if len(runs[child]) != 0 {
		t.Fatalf("the inline child ran while its lane was paused: %v", runs[child])
	}
	mu.Unlock()
	if err := b.SetLanePolicy(ctx, lane, sdk.LanePolicy{}); err != nil {
		t.Fatal(err)
	}
	if st, err := client.AwaitFlow(ctx, sub.ID); err != nil || st != sdk.FlowCompleted {
		t.Fatalf("AwaitFlow = %s, %v", st, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for name, id := range sub.Members {
		if len(runs[id]) != 1 {
			t.Fatalf("member %s ran %d times", name, len(runs[id]))
		}
	}
	if runs[child][0] == lease {
		t.Fatalf("the handed-back child ran on the inline lease %s", lease)
	}
}
