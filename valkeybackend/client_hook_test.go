package valkeybackend_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// roundTrip submits, claims and completes one execution through b.
func roundTrip(t *testing.T, b *valkeybackend.Backend, lane sdk.LaneID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Complete(ctx, c.Handle, []byte("ok")); err != nil {
		t.Fatal(err)
	}
}

// TestConnectRotatingCredentials: with Options.ConfigureClient setting
// valkey-go's AuthCredentialsFn, a backend keeps working across a password
// rotation: the server drops the old password and the connections using
// it, and the reconnects authenticate with the new one.
func TestConnectRotatingCredentials(t *testing.T) {
	srv := valkeytest.NewServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	acl := func(args ...string) {
		t.Helper()
		if err := admin.Do(ctx, admin.B().Arbitrary("ACL", "SETUSER").Args(args...).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	acl("rotating", "reset", "on", ">first-password", "~*", "&*", "+@all")
	var password atomic.Value
	password.Store("first-password")
	var asked atomic.Int64
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()},
		ConfigureClient: func(co *valkey.ClientOption) {
			co.AuthCredentialsFn = func(valkey.AuthCredentialsContext) (valkey.AuthCredentials, error) {
				asked.Add(1)
				return valkey.AuthCredentials{Username: "rotating", Password: password.Load().(string)}, nil
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	roundTrip(t, b, "rotate")
	// Rotate: the new password joins, the old one leaves, its connections go.
	acl("rotating", ">second-password")
	password.Store("second-password")
	acl("rotating", "<first-password")
	if err := admin.Do(ctx, admin.B().ClientKill().User("rotating").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	before := asked.Load()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "rotate", Kind: "k"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no call succeeded after the rotation: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	roundTrip(t, b, "rotate")
	if asked.Load() <= before {
		t.Fatalf("the credentials function was not asked again after the rotation (%d then %d)", before, asked.Load())
	}
}

// TestConnectThroughSentinel: a backend connects through a Sentinel
// (valkey-server --sentinel, monitoring a local primary) with
// Options.ConfigureClient setting the master set, and runs executions.
func TestConnectThroughSentinel(t *testing.T) {
	primary := valkeytest.NewServer(t)
	host, port, _ := net.SplitHostPort(primary.Addr())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sport := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor ffmaster %s %s 1\nsentinel down-after-milliseconds ffmaster 5000\n",
		sport, host, port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath("valkey-server")
	if err != nil {
		t.Skip("valkey-server not installed")
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	saddr := "127.0.0.1:" + strconv.Itoa(sport)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b *valkeybackend.Backend
	for {
		b, err = valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{saddr},
			ConfigureClient: func(co *valkey.ClientOption) { co.Sentinel = valkey.SentinelOption{MasterSet: "ffmaster"} }})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Connect through the sentinel: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // the sentinel is starting
	}
	defer b.Close()
	if b.Client().Mode() != valkey.ClientModeSentinel {
		t.Fatalf("client mode %v, want sentinel", b.Client().Mode())
	}
	roundTrip(t, b, "sentinel")
	// The work landed on the primary the sentinel named.
	direct, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{primary.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	n, err := direct.Do(ctx, direct.B().Dbsize().Build()).AsInt64()
	if err != nil || n == 0 {
		t.Fatalf("DBSIZE on the primary = %d, %v; want the work there", n, err)
	}
}
