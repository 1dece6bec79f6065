package scanner_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// topology is one server layout the tests run against.
type topology struct {
	name  string
	addrs func(t *testing.T) []string
}

var (
	sharedMu      sync.Mutex
	sharedServer  *valkeytest.Server
	sharedCluster *valkeytest.Cluster
)

func standalone(t *testing.T) []string {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedServer == nil {
		s, err := valkeytest.Start(context.Background(), valkeytest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		sharedServer = s
	}
	return []string{sharedServer.Addr()}
}

func cluster(t *testing.T) []string {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedCluster == nil {
		c, err := valkeytest.StartCluster(context.Background(), valkeytest.ClusterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sharedCluster = c
	}
	return sharedCluster.Addrs()
}

// both is standalone and a 3-primary cluster, each started once per test
// binary (tests flush before use, so they do not run in parallel).
func both() []topology {
	return []topology{{"standalone", standalone}, {"cluster", cluster}}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedServer != nil {
		sharedServer.Close()
	}
	if sharedCluster != nil {
		sharedCluster.Close()
	}
	os.Exit(code)
}

// freshBackend flushes every primary and connects with 16 partitions.
func freshBackend(t *testing.T, addrs []string) *valkeybackend.Backend {
	t.Helper()
	flushAll(t, addrs)
	return connect(t, addrs)
}

func connect(t *testing.T, addrs []string) *valkeybackend.Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, Partitions: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// eachPrimary calls f with a client for each primary of addrs.
func eachPrimary(t *testing.T, addrs []string, f func(c valkey.Client)) {
	t.Helper()
	if err := valkeytest.EachPrimary(context.Background(), addrs, func(c valkey.Client) error { f(c); return nil }); err != nil {
		t.Fatal(err)
	}
}

func flushAll(t *testing.T, addrs []string) {
	t.Helper()
	if err := valkeytest.FlushAll(context.Background(), addrs); err != nil {
		t.Fatal(err)
	}
}

// commandCalls sums INFO commandstats calls over every primary.
func commandCalls(t *testing.T, addrs []string) map[string]int64 {
	t.Helper()
	calls, err := valkeytest.CommandCalls(context.Background(), addrs)
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

// testConfig is a fast configuration for tests.
func testConfig(t *testing.T) scanner.Config {
	return scanner.Config{
		LeaseExpiryInterval: 50 * time.Millisecond,
		DelayedInterval:     50 * time.Millisecond,
		UnblockInterval:     50 * time.Millisecond,
		TimeoutInterval:     50 * time.Millisecond,
		RetentionInterval:   50 * time.Millisecond,
		OwnershipTTL:        600 * time.Millisecond,
		Logger:              testLogger(t),
	}
}

// testLogger logs to the test at warn level and above (-v shows them).
func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runEngine starts the standard scanners and waits until they own every
// partition; they stop (and release) when the test ends.
func runEngine(t *testing.T, b *valkeybackend.Backend, cfg scanner.Config) *scanner.Supervisor {
	t.Helper()
	return runEngineCtx(t, context.Background(), b, cfg)
}

// runEngineCtx is runEngine under ctx.
func runEngineCtx(t *testing.T, ctx context.Context, b *valkeybackend.Backend, cfg scanner.Config) *scanner.Supervisor {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	s, err := scanner.Start(ctx, b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-s.Done()
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := s.WaitOwned(wctx, b.Partitions()); err != nil {
		t.Fatalf("engine never owned all %d partitions: %v", b.Partitions(), err)
	}
	return s
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func state(t *testing.T, b *valkeybackend.Backend, id sdk.ExecutionID) sdk.PublicState {
	t.Helper()
	s, err := b.ReadExecutionState(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// describe returns id's snapshot, or nil once it is gone.
func describe(t *testing.T, b *valkeybackend.Backend, id sdk.ExecutionID) *sdk.ExecutionSnapshot {
	t.Helper()
	s, err := b.DescribeExecution(context.Background(), id)
	if errors.Is(err, sdk.ErrExecutionNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func create(t *testing.T, b *valkeybackend.Backend, a sdk.CreateExecutionArgs) sdk.ExecutionID {
	t.Helper()
	if a.Kind == "" {
		a.Kind = "k"
	}
	r, err := b.CreateExecution(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}

// claim grants and claims id the three-step way, as worker w.
func claim(t *testing.T, b *valkeybackend.Backend, id sdk.ExecutionID, lane sdk.LaneID, w string, ttl time.Duration) sdk.ClaimedExecution {
	t.Helper()
	ctx := context.Background()
	if _, err := b.IssueClaimGrant(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: lane,
		WorkerID: sdk.WorkerID(w), WorkerInstanceID: sdk.WorkerInstanceID(w + "-1")}); err != nil {
		t.Fatalf("grant %s: %v", id, err)
	}
	c, err := b.ClaimExecution(ctx, sdk.ClaimExecutionArgs{ExecutionID: id, Lane: lane,
		WorkerID: sdk.WorkerID(w), WorkerInstanceID: sdk.WorkerInstanceID(w + "-1"), LeaseTTL: ttl})
	if err != nil {
		t.Fatalf("claim %s: %v", id, err)
	}
	return c
}
