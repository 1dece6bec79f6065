package valkeybackend_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// The subscriptions survive the subscriber's connection being killed: the
// subscriber resumes from the last cursor it was given and gets everything
// after it, nothing twice (completions and signal deliveries; standalone
// and cluster). CLIENT KILL drops every client connection of the server,
// the subscriber's included.
func TestSubscriptionsResumeAfterKill(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			addrs := topo.addrs(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			producer := freshBackend(t, addrs, valkeybackend.Options{})
			sub := connectBackend(t, addrs)
			const lane sdk.LaneID = "resume-kill"
			if _, err := producer.SeedWaitpointSecret(ctx, "k", []byte("resume-after-kill-secret")); err != nil {
				t.Fatal(err)
			}
			if _, err := producer.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}); err != nil {
				t.Fatal(err) // registers the lane
			}
			// One round: n executions suspend, are signalled, resume and complete.
			round := func(n int) []sdk.ExecutionID {
				var ids []sdk.ExecutionID
				for range n {
					r, err := producer.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", LeaseHistory: true})
					if err != nil {
						t.Fatal(err)
					}
					c, err := producer.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1"}, time.Minute)
					if err != nil {
						t.Fatal(err)
					}
					out, err := producer.Suspend(ctx, c.Handle, sdk.SuspendArgs{})
					if err != nil {
						t.Fatal(err)
					}
					if _, err := producer.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: out.Waitpoints[0].Token, Name: "go"}); err != nil {
						t.Fatal(err)
					}
					rc, err := producer.ClaimFromResumeGrant(ctx, sdk.ResumeToken{ExecutionID: r.ID, Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1", LeaseTTL: time.Minute})
					if err != nil || rc == nil {
						t.Fatalf("resume: %v", err)
					}
					if err := producer.Complete(ctx, rc.Handle, nil); err != nil {
						t.Fatal(err)
					}
					ids = append(ids, r.ID)
				}
				return ids
			}
			var mu sync.Mutex
			completions := map[sdk.ExecutionID]int{}
			deliveries := map[sdk.ExecutionID]int{}
			leaseEvents := map[sdk.ExecutionID][]string{}
			var lastCompletion, lastDelivery, lastLease string
			run := func(sctx context.Context) (done chan struct{}) {
				done = make(chan struct{})
				var wg sync.WaitGroup
				wg.Go(func() {
					mu.Lock()
					cur := lastCompletion
					mu.Unlock()
					_ = sub.SubscribeCompletions(sctx, sdk.CompletionFilter{Lanes: []sdk.LaneID{lane}}, cur, func(c sdk.Completion) error {
						mu.Lock()
						completions[c.ExecutionID]++
						lastCompletion = c.Cursor
						mu.Unlock()
						return nil
					})
				})
				wg.Go(func() {
					mu.Lock()
					cur := lastDelivery
					mu.Unlock()
					_ = sub.SignalDeliveries(sctx, cur, func(d sdk.SignalDelivery) error {
						mu.Lock()
						deliveries[d.ExecutionID]++
						lastDelivery = d.Cursor
						mu.Unlock()
						return nil
					})
				})
				wg.Go(func() {
					mu.Lock()
					cur := lastLease
					mu.Unlock()
					_ = sub.SubscribeLeaseHistory(sctx, sdk.LeaseHistoryFilter{Lanes: []sdk.LaneID{lane}}, cur, func(ev sdk.LeaseEvent) error {
						mu.Lock()
						leaseEvents[ev.ExecutionID] = append(leaseEvents[ev.ExecutionID], string(ev.Kind)+" "+ev.Reason)
						lastLease = ev.Cursor
						mu.Unlock()
						return nil
					})
				})
				go func() { wg.Wait(); close(done) }()
				return done
			}
			waitAll := func(ids []sdk.ExecutionID, what string) {
				deadline := time.Now().Add(10 * time.Second)
				for {
					mu.Lock()
					missing := 0
					for _, id := range ids {
						if completions[id] == 0 || deliveries[id] == 0 || len(leaseEvents[id]) < 4 {
							missing++
						}
					}
					mu.Unlock()
					if missing == 0 {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: %d of %d executions not seen by both subscriptions", what, missing, len(ids))
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			sctx, stop := context.WithCancel(ctx)
			done := run(sctx)
			time.Sleep(200 * time.Millisecond) // the subscriptions from now stand
			first := round(5)
			waitAll(first, "before the kill")
			// Kill every client connection: the subscriber loses its own.
			killed := int64(0)
			for _, c := range nodeClients(t, addrs) {
				n, err := c.Do(ctx, c.B().ClientKill().TypeNormal().Build()).AsInt64()
				if err != nil {
					t.Fatal(err)
				}
				killed += n
				c.Close()
			}
			if killed == 0 {
				t.Fatal("CLIENT KILL killed no connection")
			}
			t.Logf("killed %d connections", killed)
			stop()
			<-done
			second := round(5) // while nobody subscribes
			done = run(ctx)    // resumed from the last cursors
			third := round(5)
			waitAll(append(second, third...), "after the kill")
			mu.Lock()
			defer mu.Unlock()
			// Each execution's lease events: claimed, suspended, claimed to
			// resume, completed; once each.
			wantLease := "[acquired  released suspended acquired  released completed]"
			for _, id := range append(append(first, second...), third...) {
				if completions[id] != 1 || deliveries[id] != 1 {
					t.Fatalf("%s: %d completions and %d deliveries seen, want one each", id, completions[id], deliveries[id])
				}
				if got := fmt.Sprint(leaseEvents[id]); got != wantLease {
					t.Fatalf("%s: lease events %s, want %s", id, got, wantLease)
				}
			}
			_ = done
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				t.Fatal("test timed out")
			}
		})
	}
}

// connectBackend connects another backend to addrs without flushing.
func connectBackend(t *testing.T, addrs []string) *valkeybackend.Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, Partitions: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// SubscribeInstanceTags is Unavailable (instances carry no tags here).
func TestSubscribeInstanceTagsUnavailable(t *testing.T) {
	b := freshBackend(t, topologies()[0].addrs(t), valkeybackend.Options{})
	err := b.SubscribeInstanceTags(context.Background(), "", func(sdk.WorkerInstanceID, map[string]string) error {
		t.Fatal("called")
		return nil
	})
	if !errors.Is(err, sdk.ErrUnavailable) || sdk.CodeOf(err) != sdk.CodeUnavailable {
		t.Fatalf("SubscribeInstanceTags = %v, want unavailable", err)
	}
}
