package valkeytest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/valkeytest"
)

func newClient(t *testing.T, addrs ...string) valkey.Client {
	t.Helper()
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: addrs})
	if err != nil {
		t.Fatalf("valkey.NewClient(%v): %v", addrs, err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestNewServerSetGet(t *testing.T) {
	t.Parallel()
	srv := valkeytest.NewServer(t)
	if !strings.HasPrefix(srv.Addr(), "127.0.0.1:") && os.Getenv(valkeytest.EnvAddr) == "" {
		t.Fatalf("Addr() = %q, want 127.0.0.1:port", srv.Addr())
	}
	c := newClient(t, srv.Addr())
	ctx := t.Context()
	key := "valkeytest:" + t.Name()
	if err := c.Do(ctx, c.B().Set().Key(key).Value("v1").Build().Pin()).Error(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Do(ctx, c.B().Get().Key(key).Build().Pin()).ToString()
	if err != nil || got != "v1" {
		t.Fatalf("GET = %q, %v; want v1", got, err)
	}
}

func TestRestartKeepsAppendOnlyData(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	addr := srv.Addr()

	c := newClient(t, addr)
	for i := range 100 {
		if err := c.Do(ctx, c.B().Set().Key(fmt.Sprint("k", i)).Value(fmt.Sprint(i)).Build().Pin()).Error(); err != nil {
			t.Fatal(err)
		}
	}

	// A graceful restart, then a crash (SIGKILL) and restart: appendfsync always keeps
	// every acknowledged write through both.
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Set().Key("after-restart").Value("yes").Build().Pin()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != addr {
		t.Fatalf("Addr changed across Restart: %s -> %s", addr, srv.Addr())
	}
	n, err := c.Do(ctx, c.B().Dbsize().Build().Pin()).AsInt64()
	if err != nil || n != 101 {
		t.Fatalf("DBSIZE after restarts = %d, %v; want 101", n, err)
	}
	if got, err := c.Do(ctx, c.B().Get().Key("k42").Build().Pin()).ToString(); err != nil || got != "42" {
		t.Fatalf("GET k42 = %q, %v; want 42", got, err)
	}
	if got, err := c.Do(ctx, c.B().Get().Key("after-restart").Build().Pin()).ToString(); err != nil || got != "yes" {
		t.Fatalf("GET after-restart = %q, %v; want yes", got, err)
	}
}

func TestRestartWithoutPersistenceLosesData(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	c := newClient(t, srv.Addr())
	if err := c.Do(ctx, c.B().Set().Key("k").Value("v").Build().Pin()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Do(ctx, c.B().Dbsize().Build().Pin()).AsInt64(); err != nil || n != 0 {
		t.Fatalf("DBSIZE after restart = %d, %v; want 0 (no persistence by default)", n, err)
	}
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	c := newClient(t, srv.Addr())
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = c.Do(short, c.B().Ping().Build().Pin()).Error()
	cancel()
	if err == nil {
		t.Fatal("PING answered while the server was paused")
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Ping().Build().Pin()).Error(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
}

func TestCloseRemovesDirAndStopsServer(t *testing.T) {
	t.Parallel()
	srv, err := valkeytest.Start(t.Context(), valkeytest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := srv.Dir()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir %s still there after Close: %v", dir, err)
	}
	if err := srv.Restart(t.Context()); err == nil {
		t.Fatal("Restart after Close succeeded")
	}
}

func TestStartFailureIncludesLog(t *testing.T) {
	t.Parallel()
	_, err := valkeytest.Start(t.Context(), valkeytest.Options{ExtraArgs: []string{"--no-such-option", "1"}})
	if err == nil {
		t.Fatal("Start with a bad option succeeded")
	}
	if !strings.Contains(err.Error(), "no-such-option") {
		t.Fatalf("error does not quote the server's log: %v", err)
	}
}

func TestStartMissingBinary(t *testing.T) {
	t.Parallel()
	_, err := valkeytest.Start(t.Context(), valkeytest.Options{Binary: "valkey-server-does-not-exist"})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Start with a missing binary: %v; want a not found error", err)
	}
}

func TestParallelStarts(t *testing.T) {
	t.Parallel()
	const n = 8
	errs := make(chan error, n)
	servers := make(chan *valkeytest.Server, n)
	for range n {
		go func() {
			s, err := valkeytest.Start(t.Context(), valkeytest.Options{})
			if err != nil {
				errs <- err
				return
			}
			servers <- s
			errs <- nil
		}()
	}
	seen := map[string]bool{}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(servers)
	for s := range servers {
		if seen[s.Addr()] {
			t.Errorf("two servers on %s", s.Addr())
		}
		seen[s.Addr()] = true
		_ = s.Close()
	}
}

// TestContainerNeedsARuntime checks container mode without a registered runtime fails at
// once with an error that names the module to import.
func TestContainerNeedsARuntime(t *testing.T) {
	t.Setenv(valkeytest.EnvContainer, "1")
	srv, err := valkeytest.Start(t.Context(), valkeytest.Options{})
	if err == nil {
		srv.Close()
		t.Fatal("container mode started a server with no runtime registered")
	}
	if !strings.Contains(err.Error(), "valkeytest/container") {
		t.Fatalf("error does not name the container module: %v", err)
	}
}

func TestExternalServer(t *testing.T) {
	srv, err := valkeytest.Start(t.Context(), valkeytest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	t.Setenv(valkeytest.EnvAddr, srv.Addr())
	ext := valkeytest.NewServer(t)
	if ext.Addr() != srv.Addr() {
		t.Fatalf("NewServer with %s = %s, want %s", valkeytest.EnvAddr, ext.Addr(), srv.Addr())
	}
	if err := ext.Restart(t.Context()); !errors.Is(err, valkeytest.ErrNotOwned) {
		t.Fatalf("Restart on an external server: %v, want ErrNotOwned", err)
	}
	if err := ext.Close(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, srv.Addr())
	if err := c.Do(t.Context(), c.B().Ping().Build().Pin()).Error(); err != nil {
		t.Fatalf("external server stopped by Close: %v", err)
	}
}

func checkCluster(t *testing.T, cl *valkeytest.Cluster, primaries int) {
	t.Helper()
	ctx := t.Context()
	if len(cl.Addrs()) != primaries {
		t.Fatalf("Addrs() = %v, want %d addresses", cl.Addrs(), primaries)
	}
	for _, addr := range cl.Addrs() {
		c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true})
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Do(ctx, c.B().ClusterInfo().Build().Pin()).ToString()
		c.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			t.Fatalf("CLUSTER INFO on %s: %v\n%s", addr, err, info)
		}
	}

	c := newClient(t, cl.Addrs()...)
	// Keys spread over every slot range, so every primary serves some of them.
	owners := map[string]bool{}
	for i := range 200 {
		key := fmt.Sprint("key:", i)
		if err := c.Do(ctx, c.B().Set().Key(key).Value(fmt.Sprint(i)).Build().Pin()).Error(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
	}
	for i := range 200 {
		key := fmt.Sprint("key:", i)
		got, err := c.Do(ctx, c.B().Get().Key(key).Build().Pin()).ToString()
		if err != nil || got != fmt.Sprint(i) {
			t.Fatalf("GET %s = %q, %v", key, got, err)
		}
	}
	for addr, node := range c.Nodes() {
		n, err := node.Do(ctx, node.B().Dbsize().Build().Pin()).AsInt64()
		if err != nil {
			t.Fatalf("DBSIZE on %s: %v", addr, err)
		}
		if n > 0 {
			owners[addr] = true
		}
	}
	if len(owners) != primaries {
		t.Fatalf("keys landed on %d primaries (%v), want %d", len(owners), owners, primaries)
	}
	// A multi-key command inside one hash tag stays in one slot.
	if err := c.Do(ctx, c.B().Mset().KeyValue().KeyValue("{p:1}:a", "1").KeyValue("{p:1}:b", "2").Build().Pin()).Error(); err != nil {
		t.Fatalf("MSET within one hash tag: %v", err)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	start := time.Now()
	cl := valkeytest.NewCluster(t)
	t.Logf("3-primary cluster ready in %v", time.Since(start))
	checkCluster(t, cl, 3)
}

// TestClusterFewPrimaries covers the path that assigns slots by hand, since
// valkey-cli --cluster create needs at least 3 primaries.
func TestClusterFewPrimaries(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			cl, err := valkeytest.StartCluster(t.Context(), valkeytest.ClusterOptions{Primaries: n})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cl.Close() })
			t.Logf("%d-primary cluster ready in %v", n, time.Since(start))
			checkCluster(t, cl, n)
		})
	}
}

func TestClusterNodeRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cl, err := valkeytest.StartCluster(ctx, valkeytest.ClusterOptions{Primaries: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	node := cl.Nodes()[1]
	if err := node.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The restarted node keeps its slots from nodes.conf; wait for the cluster to agree.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{node.Addr()}, ForceSingleClient: true})
		if err == nil {
			info, err := c.Do(ctx, c.B().ClusterInfo().Build().Pin()).ToString()
			c.Close()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("restarted node never reported cluster_state:ok")
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkCluster(t, cl, 3)
}
