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
