package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// Two engines of two namespaces on one server each own all of their own
// namespace's partitions (shared ownership keys would split them), and each
// recovers its namespace's lapsed leases alone: a lapsed lease in a third
// namespace, which no engine runs, stays lapsed.
func TestNamespaceEngines(t *testing.T) {
	t.Run("standalone", func(t *testing.T) { namespaceEngines(t, []string{valkeytest.NewServer(t).Addr()}) })
	t.Run("cluster", func(t *testing.T) { namespaceEngines(t, valkeytest.NewCluster(t).Addrs()) })
}

func namespaceEngines(t *testing.T, addrs []string) {
	seeds := strings.Join(addrs, ",")
	ea := startEngine(t, "ea", seeds, "--namespace", "a", "--partitions", "4", "--lease-expiry-interval", "50ms")
	eb := startEngine(t, "eb", seeds, "--namespace", "b", "--partitions", "6", "--lease-expiry-interval", "50ms")
	ea.waitLine(regexp.MustCompile(`msg="ffengine started".* namespace=a `), 10*time.Second)
	eb.waitLine(regexp.MustCompile(`msg="ffengine started".* namespace=b `), 10*time.Second)
	ea.waitLine(regexp.MustCompile(`msg="acquired partitions".* owned=4 `), 10*time.Second)
	eb.waitLine(regexp.MustCompile(`msg="acquired partitions".* owned=6 `), 10*time.Second)

	ctx := t.Context()
	lapse := func(ns string) (*valkeybackend.Backend, sdk.ExecutionID) {
		b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, Namespace: ns, Partitions: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "l", Kind: "k",
			Retry: sdk.RetryPolicy{MaxRetries: 1, Backoff: sdk.Backoff{ZeroDelay: true}}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.Claim(ctx, sdk.ClaimArgs{Lane: "l", WorkerID: "w", WorkerInstanceID: "i", LeaseTTL: 100 * time.Millisecond})
		if err != nil || got == nil || got.Handle.ExecutionID != res.ID {
			t.Fatalf("%s: claim %+v %v", ns, got, err)
		}
		return b, res.ID
	}
	a, aid := lapse("a")
	c, cid := lapse("c")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st, err := a.ReadExecutionState(ctx, aid); err == nil && st == sdk.StateWaiting {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("a's lapsed lease not recovered by a's engine: %s %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // six of b's cycles more
	if st, err := c.ReadExecutionState(ctx, cid); err != nil || st != sdk.StateActive {
		t.Fatalf("c's lapsed lease, which no engine of c runs: %s %v (want still active)", st, err)
	}
}

func TestBadNamespace(t *testing.T) {
	for _, args := range [][]string{{"--namespace", "A"}, {"--namespace", "a:b"}, {"prepare", "--namespace", "a_b"}} {
		var out bytes.Buffer
		if code := run(context.Background(), args, &out); code != exitUsage || !strings.Contains(out.String(), "--namespace") {
			t.Errorf("%v exited %d, want %d naming --namespace: %s", args, code, exitUsage, out.String())
		}
	}
}

// The README's ACL recipe with its key and channel patterns moved to a
// namespace ("~a:*", "&a:*", "~a:config", "~a:prepare") runs that
// namespace's deployment (prepare, engine, worker, client) with nothing
// refused, and keeps its users out of another namespace on the same server.
func TestACLRecipeNamespace(t *testing.T) {
	srv := valkeytest.NewServer(t)
	addrs := []string{srv.Addr()}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	other, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, Namespace: "b"})
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	applyRecipe(t, addrs, func(user string, rules []string) []string {
		out := make([]string, len(rules))
		for i, r := range rules {
			out[i] = r
			for _, pre := range []string{"~", "&"} {
				if rest, ok := strings.CutPrefix(r, pre+"ff:"); ok {
					out[i] = pre + "a:" + rest
				}
			}
		}
		return out
	})
	if code, out := runPrepareProc(t, addrs, deployUser, "--namespace", "a"); code != exitOK || !strings.Contains(out, "applied=true") {
		t.Fatalf("ffengine prepare --namespace a as %s: exit %d:\n%s", deployUser, code, out)
	}
	engine := startEngine(t, "engine", srv.Addr(), "--namespace", "a", "--username", engineUser, "--password", password(engineUser),
		"--status-interval", "100ms")
	engine.waitLine(regexp.MustCompile(`msg=status owned=16 partitions=16 engines=1 `), 20*time.Second)
	wb, err := connectAs(ctx, addrs, workerUser, valkeybackend.Options{Namespace: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer wb.Close()
	mux := sdk.NewMux()
	mux.HandleFunc("ok", func(ctx context.Context, t *sdk.Task) error { return t.Complete(ctx, []byte("done")) })
	w, err := sdk.NewWorker(wb, sdk.WorkerConfig{WorkerID: "acl", Lanes: []sdk.LaneID{"acl"}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx, mux) }()
	client := sdk.NewClient(wb)
	res, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: "acl", Kind: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := client.WaitResult(ctx, res.ID, 5*time.Millisecond); err != nil || string(got) != "done" {
		t.Fatalf("result %q, %v", got, err)
	}
	stopWorker()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	checkDenials(t, addrs)

	// Namespace a's worker may not reach namespace b's keys.
	if b, err := connectAs(ctx, addrs, workerUser, valkeybackend.Options{Namespace: "b"}); err == nil {
		b.Close()
		t.Fatal("namespace a's worker user connected to namespace b")
	} else if !errors.Is(err, sdk.ErrPermissionDenied) {
		t.Fatalf("namespace a's worker user connecting to b: %v, want permission denied", err)
	}
	denials, err := valkeytest.ACLDenials(t.Context(), addrs)
	if err != nil || len(denials) == 0 || !strings.Contains(strings.Join(denials, "\n"), workerUser+" key b:config") {
		t.Fatalf("denials %v %v, want %s's read of b:config", denials, err, workerUser)
	}
}
