package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// These tests crash the real server (SIGKILL, then a restart from its
// append-only file, appendfsync always) while handlers finish their work,
// and check the promise a durable engine makes: work that succeeded stays
// succeeded. Every execution allows no retry, so an outage that turned a
// success into a handler failure would leave it failed, and one that
// consumed an attempt shows in its attempt count.

// outageServer starts a server whose every acknowledged write survives a
// SIGKILL.
func outageServer(t *testing.T) *valkeytest.Server {
	t.Helper()
	srv, err := valkeytest.Start(t.Context(), valkeytest.Options{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// crash kills srv and restarts it after down. It returns how long the
// server was out: down plus the restart (loading the append-only file),
// which on a loaded machine can take far longer than down.
func crash(t *testing.T, srv *valkeytest.Server, down time.Duration) time.Duration {
	t.Helper()
	killed := time.Now()
	if err := srv.Kill(); err != nil {
		t.Errorf("kill: %v", err)
		return 0
	}
	time.Sleep(down)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Restart(ctx); err != nil {
		t.Errorf("restart: %v", err)
	}
	return time.Since(killed)
}

// outageCompletions records what handlers saw: an explicit Complete's
// outcome per execution.
type outageCompletions struct {
	mu       sync.Mutex
	ok       map[sdk.ExecutionID]int
	failures []error
}

func (c *outageCompletions) record(id sdk.ExecutionID, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.failures = append(c.failures, fmt.Errorf("%s: %w", id, err))
		return
	}
	c.ok[id]++
}

// outageHandler completes explicitly (t.Complete) when the payload says
// "explicit", else returns nil; gate, when not nil, holds every handler
// until it is closed.
func outageHandler(c *outageCompletions, reached func(), gate <-chan struct{}) sdk.Handler {
	return sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
		if reached != nil {
			reached()
		}
		if gate != nil {
			<-gate
		}
		if string(t.Payload) != "explicit" {
			return nil
		}
		err := t.Complete(ctx, []byte("done"))
		c.record(t.ID, err)
		return err
	})
}

// requireAllCompletedOnce checks every execution completed in its first
// attempt, with no failure recorded and no completion landing twice.
//
// firstAttempt also requires every execution to finish in its first
// attempt. Without it, an execution may have taken a second: a claim that
// landed just as the server died never told its worker (the reply was lost
// with the connection), and the lease-expiry scanner requeued it once its
// lease ran out, an interruption that consumes no retry.
func requireAllCompletedOnce(t *testing.T, b sdk.EngineBackend, ids []sdk.ExecutionID, explicit map[sdk.ExecutionID]bool,
	c *outageCompletions, firstAttempt bool, workers ...*sdk.Worker) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		left := map[sdk.PublicState][]sdk.ExecutionID{}
		for id, st := range e2eStates(t, b, ids) {
			if st != sdk.StateCompleted {
				left[st] = append(left[st], id)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for st, ids := range left {
				info, _ := b.ReadExecutionInfo(ctx, ids[0])
				t.Errorf("%d executions %s, e.g. %s: %v", len(ids), st, ids[0], info)
			}
			for _, w := range workers {
				t.Logf("worker stats: %+v", w.Stats())
			}
			t.FailNow()
		}
		time.Sleep(20 * time.Millisecond)
	}
	requeued := 0
	for _, id := range ids {
		n, err := b.ReadTotalAttemptCount(ctx, id)
		if err != nil || (firstAttempt && n != 1) {
			t.Errorf("%s: %d attempts (%v), want 1: an outage consumed an attempt", id, n, err)
		}
		if n > 1 {
			requeued++
		}
		info, err := b.ReadExecutionInfo(ctx, id)
		if err != nil || info == nil || info.Fields["retry_count"] != "0" {
			t.Errorf("%s: %v (%v): an outage consumed a retry", id, info, err)
		}
	}
	if requeued > 0 {
		t.Logf("%d executions took a second attempt (a claim's reply lost in a crash)", requeued)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, err := range c.failures {
		t.Errorf("an explicit Complete returned an error: %v", err)
	}
	for id := range explicit {
		if c.ok[id] != 1 {
			t.Errorf("%s: explicit Complete succeeded %d times, want 1", id, c.ok[id])
		}
	}
	var completed, failed, retried uint64
	for _, w := range workers {
		s := w.Stats()
		completed, failed, retried = completed+s.Completed, failed+s.Failed, retried+s.Retried
	}
	if completed != uint64(len(ids)) || failed != 0 || retried != 0 {
		t.Errorf("workers landed %d completes, %d failures, %d retries; want %d, 0, 0", completed, failed, retried, len(ids))
	}
}

// TestOutageAtCompletion kills the server at the moment handlers complete,
// for outages from 0.2s to 3s, with handlers that call Complete and
// handlers that return nil.
func TestOutageAtCompletion(t *testing.T) {
	if testing.Short() {
		t.Skip("crashes a server")
	}
	for _, down := range []time.Duration{200 * time.Millisecond, time.Second, 3 * time.Second} {
		t.Run(down.String(), func(t *testing.T) { testOutageAtCompletion(t, down) })
	}
}

func testOutageAtCompletion(t *testing.T, down time.Duration) {
	const n = 24
	srv := outageServer(t)
	addrs := []string{srv.Addr()}
	client := e2eConnect(t, addrs)
	b := e2eConnect(t, addrs)
	lane := e2eLane(t, "outage")
	ctx := context.Background()
	ids := make([]sdk.ExecutionID, 0, n)
	explicit := map[sdk.ExecutionID]bool{}
	for i := range n {
		payload := "nil"
		if i%2 == 0 {
			payload = "explicit"
		}
		res, err := client.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte(payload)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
		if payload == "explicit" {
			explicit[res.ID] = true
		}
	}
	var reached atomic.Int64
	gate := make(chan struct{})
	c := &outageCompletions{ok: map[sdk.ExecutionID]int{}}
	w, stop := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "outage", Lanes: []sdk.LaneID{lane},
		MaxConcurrency: n, LeaseTTL: 15 * time.Second}, outageHandler(c, func() { reached.Add(1) }, gate))
	e2eWaitFor(t, 30*time.Second, "every handler to start", func() bool { return reached.Load() == n })
	close(gate) // the handlers complete now, and the server dies as they do
	crash(t, srv, down)
	requireAllCompletedOnce(t, client, ids, explicit, c, true, w)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestOutageSoak submits 2,000 executions at 1,000/s while the server is
// killed and restarted five times; producers retry their submits with an
// idempotency key, so a submit that landed before a crash is not doubled.
// The scanners run as in any deployment: what a crash hid from every
// worker (a claim or hand-off that landed as the server died) is requeued
// when its lease expires.
//
// The leases (soakLeaseTTL) outlast every outage, restarts on a loaded CI
// machine included (a restart under the race detector has taken over a
// second): a terminal call keeps trying while its lease can be saved, so
// every explicit Complete must succeed.
func TestOutageSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("crashes a server")
	}
	const total, rate, crashes = 2000, 1000, 5
	srv := outageServer(t)
	addrs := []string{srv.Addr()}
	client := e2eConnect(t, addrs)
	lane := e2eLane(t, "soak")
	c := &outageCompletions{ok: map[sdk.ExecutionID]int{}}
	if _, err := scanner.Start(t.Context(), e2eConnect(t, addrs), scanner.Config{LeaseExpiryInterval: 100 * time.Millisecond,
		OwnershipTTL: time.Second, LaneRefresh: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	var workers []*sdk.Worker
	var stops []func() error
	for i := range 2 {
		w, stop := e2eRunWorker(t, e2eConnect(t, addrs), sdk.WorkerConfig{WorkerID: sdk.WorkerID(fmt.Sprintf("soak-%d", i)),
			Lanes: []sdk.LaneID{lane}, MaxConcurrency: 32, LeaseTTL: soakLeaseTTL}, outageHandler(c, nil, nil))
		workers, stops = append(workers, w), append(stops, stop)
	}

	ids := make([]sdk.ExecutionID, total)
	start := time.Now()
	// Five crashes spread over the two seconds of arrivals: each after
	// 100-300ms of service, down for 100-300ms.
	var chaos sync.WaitGroup
	chaos.Go(func() {
		for k := range crashes {
			time.Sleep(time.Duration(100+rand.IntN(200)) * time.Millisecond)
			out := crash(t, srv, time.Duration(100+rand.IntN(200))*time.Millisecond)
			t.Logf("crash %d over at %v, out for %v", k+1, time.Since(start).Round(time.Millisecond), out.Round(time.Millisecond))
		}
	})
	var produce sync.WaitGroup
	for i := range total {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
		produce.Go(func() { ids[i] = submitUntilLanded(t, client, lane, i) })
	}
	produce.Wait()
	chaos.Wait()
	explicit := map[sdk.ExecutionID]bool{}
	seen := map[sdk.ExecutionID]bool{}
	for i, id := range ids {
		if seen[id] {
			t.Fatalf("submit %d returned an id already returned: %s", i, id)
		}
		seen[id] = true
		if i%2 == 0 {
			explicit[id] = true
		}
	}
	requireAllCompletedOnce(t, client, ids, explicit, c, false, workers...)
	for _, stop := range stops {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// soakLeaseTTL is the soak's lease: longer than any outage it causes.
const soakLeaseTTL = 5 * time.Second

// submitUntilLanded creates execution i, retrying transport errors under
// its idempotency key until the create lands.
func submitUntilLanded(t *testing.T, b *valkeybackend.Backend, lane sdk.LaneID, i int) sdk.ExecutionID {
	payload := "nil"
	if i%2 == 0 {
		payload = "explicit"
	}
	args := sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte(payload), IdempotencyKey: fmt.Sprintf("soak-%d", i)}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := b.CreateExecution(ctx, args)
		cancel()
		if err == nil {
			return res.ID
		}
		if !sdk.Retryable(err) && !errors.Is(err, context.DeadlineExceeded) || time.Now().After(deadline) {
			t.Errorf("submit %d: %v", i, err)
			return ""
		}
		time.Sleep(20 * time.Millisecond)
	}
}
