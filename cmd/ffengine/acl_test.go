package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/lua"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// The ACL users of the README's recipe.
const (
	deployUser = "ff-deploy"
	workerUser = "ff-worker"
	engineUser = "ff-engine"
)

// recipe reads the ACL SETUSER lines of the README: user → rules, with each
// password placeholder replaced by password(user).
func recipe(t *testing.T) map[string][]string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, m := range regexp.MustCompile(`(?m)^ACL SETUSER (ff-[a-z]+) (.+)$`).FindAllStringSubmatch(string(readme), -1) {
		rules := strings.Fields(m[2])
		for i, r := range rules {
			if strings.HasPrefix(r, ">") {
				rules[i] = ">" + password(m[1])
			}
		}
		out[m[1]] = rules
	}
	for _, u := range []string{deployUser, workerUser, engineUser} {
		if out[u] == nil {
			t.Fatalf("README has no ACL SETUSER line for %s", u)
		}
	}
	return out
}

func password(user string) string { return user + "-secret" }

// applyRecipe creates the README's users on every node, optionally changed
// by edit, and empties the ACL log.
func applyRecipe(t *testing.T, addrs []string, edit func(user string, rules []string) []string) {
	t.Helper()
	for user, rules := range recipe(t) {
		if edit != nil {
			rules = edit(user, rules)
		}
		if err := valkeytest.SetUser(t.Context(), addrs, user, rules...); err != nil {
			t.Fatal(err)
		}
	}
	if err := valkeytest.ResetACLLog(t.Context(), addrs); err != nil {
		t.Fatal(err)
	}
}

func connectAs(ctx context.Context, addrs []string, user string, opts valkeybackend.Options) (*valkeybackend.Backend, error) {
	opts.Addrs, opts.Username, opts.Password = addrs, user, password(user)
	return valkeybackend.Connect(ctx, opts)
}

// wantDenied checks err is a permission error naming cmd.
func wantDenied(t *testing.T, what string, err error, cmd string) {
	t.Helper()
	var se *sdk.Error
	if !errors.Is(err, sdk.ErrPermissionDenied) || !errors.As(err, &se) || len(se.Detail) == 0 || se.Detail[0] != cmd {
		t.Fatalf("%s: want a permission error naming %s, got %v", what, cmd, err)
	}
}

// runPrepareProc runs `ffengine prepare` as user and returns its exit code
// and log.
func runPrepareProc(t *testing.T, addrs []string, user string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"prepare", "--addr", strings.Join(addrs, ","),
		"--username", user}, args...)...)
	cmd.Env = append(os.Environ(), EnvPassword+"="+password(user))
	var out bytes.Buffer
	cmd.Stderr = &out
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// deleteLibrary removes the flowfabric library from every primary, as an
// admin would.
func deleteLibrary(t *testing.T, addrs []string) {
	t.Helper()
	if err := valkeytest.DeleteLibrary(t.Context(), addrs, lua.LibraryName); err != nil {
		t.Fatal(err)
	}
}

func TestACLRecipeStandalone(t *testing.T) {
	srv := valkeytest.NewServer(t)
	aclRecipe(t, []string{srv.Addr()})
}

func TestACLRecipeCluster(t *testing.T) {
	c := valkeytest.NewCluster(t)
	aclRecipe(t, c.Addrs())
}

// aclRecipe runs a deployment under the README's users only: the deployer
// loads the library; a client and a worker under ff-worker and an ffengine
// process under ff-engine do real work, a retry included (the engine's
// delayed scanner promotes it); nothing else is refused; and the ones that
// may not load the library get permission errors naming the command.
func aclRecipe(t *testing.T, addrs []string) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if err := valkeytest.FlushAll(ctx, addrs); err != nil {
		t.Fatal(err)
	}
	deleteLibrary(t, addrs)
	applyRecipe(t, addrs, nil)

	// A new deployment: only the deployer may fix it. ff-worker is refused
	// at the partition count, and ffengine prepare says so with exit 3.
	if _, err := connectAs(ctx, addrs, workerUser, valkeybackend.Options{}); err != nil {
		wantDenied(t, "worker connect to a new deployment", err, "hsetnx")
	} else {
		t.Fatal("worker connected to a new deployment")
	}
	if code, out := runPrepareProc(t, addrs, workerUser); code != exitPermission || !strings.Contains(out, "hsetnx") {
		t.Fatalf("ffengine prepare as %s: exit %d, want %d naming hsetnx:\n%s", workerUser, code, exitPermission, out)
	}
	code, out := runPrepareProc(t, addrs, deployUser, "--partitions", "8")
	if code != exitOK || !strings.Contains(out, "applied=true") {
		t.Fatalf("ffengine prepare as %s: exit %d:\n%s", deployUser, code, out)
	}
	if code, out := runPrepareProc(t, addrs, deployUser); code != exitOK || !strings.Contains(out, "applied=false") ||
		!strings.Contains(out, "already loaded") {
		t.Fatalf("second ffengine prepare as %s: exit %d, want a no-op:\n%s", deployUser, code, out)
	}

	// With the library current, Prepare under the least-privilege users
	// has nothing to load and succeeds; with it gone, it names the command.
	deleteLibrary(t, addrs)
	if _, err := connectAs(ctx, addrs, workerUser, valkeybackend.Options{}); err != nil {
		wantDenied(t, "worker Prepare with no library", err, "function|load")
	} else {
		t.Fatal("worker connected with no library loaded")
	}
	if code, out := runEngineOnce(t, addrs); code != exitPermission || !strings.Contains(out, "function|load") {
		t.Fatalf("ffengine as %s with no library: exit %d, want %d naming function|load:\n%s", engineUser, code, exitPermission, out)
	}
	skipper := startEngine(t, "skipper", strings.Join(addrs, ","), "--username", engineUser, "--password", password(engineUser), "--skip-prepare")
	skipper.waitLine(regexp.MustCompile(`msg="ffengine started"`), 20*time.Second)
	_ = skipper.cmd.Process.Kill()
	<-skipper.exited
	if code, out := runPrepareProc(t, addrs, deployUser); code != exitOK || !strings.Contains(out, "applied=true") {
		t.Fatalf("ffengine prepare as %s after the library was deleted: exit %d:\n%s", deployUser, code, out)
	}

	// The refusals so far are the ones asked for, and no others.
	checkDenials(t, addrs, workerUser+" command hsetnx", workerUser+" command function|load", engineUser+" command function|load")

	// Real work under the least-privilege users.
	engine := startEngine(t, "engine", strings.Join(addrs, ","), "--username", engineUser, "--password", password(engineUser),
		"--delayed-interval", "50ms", "--status-interval", "100ms")
	engine.waitLine(regexp.MustCompile(`msg=status owned=8 partitions=8 engines=1 `), 20*time.Second)
	cb, err := connectAs(ctx, addrs, workerUser, valkeybackend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if cb.IsCluster() != (len(addrs) > 1) {
		t.Fatalf("cluster mode %v against %d nodes", cb.IsCluster(), len(addrs))
	}
	wb, err := connectAs(ctx, addrs, workerUser, valkeybackend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer wb.Close()
	for _, b := range []*valkeybackend.Backend{cb, wb} {
		if err := b.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}
	client := sdk.NewClient(cb)
	var workerErr atomic.Value
	var tries atomic.Int32
	mux := sdk.NewMux()
	mux.HandleFunc("ok", func(ctx context.Context, t *sdk.Task) error { return t.Complete(ctx, []byte("done")) })
	mux.HandleFunc("flaky", func(ctx context.Context, t *sdk.Task) error {
		if tries.Add(1) == 1 {
			return errors.New("first attempt fails")
		}
		if err := t.Progress(ctx, 50, "half way"); err != nil {
			return err
		}
		return nil
	})
	w, err := sdk.NewWorker(wb, sdk.WorkerConfig{WorkerID: "acl", Lanes: []sdk.LaneID{"acl"},
		OnError: func(err error) { workerErr.Store(err) }})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx, mux) }()

	okRes, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: "acl", Kind: "ok", Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	flaky, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: "acl", Kind: "flaky",
		Retry: sdk.RetryPolicy{MaxRetries: 1, Backoff: sdk.Backoff{Kind: sdk.BackoffFixed, Initial: 200 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: "acl-idle", Kind: "never"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := client.WaitResult(ctx, okRes.ID, 5*time.Millisecond); err != nil || string(got) != "done" {
		t.Fatalf("result %q, %v", got, err)
	}
	snap, err := client.Wait(ctx, flaky.ID, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if snap.State != sdk.StateCompleted || snap.RetryCount != 1 || tries.Load() != 2 {
		t.Fatalf("flaky: state %s, %d retries, %d attempts run; want completed after 1 retry", snap.State, snap.RetryCount, tries.Load())
	}
	if _, err := client.Cancel(ctx, other.ID, "not needed"); err != nil {
		t.Fatal(err)
	}
	if st, err := client.State(ctx, other.ID); err != nil || st != sdk.StateCancelled {
		t.Fatalf("cancelled execution: %s, %v", st, err)
	}
	stopWorker()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if err, _ := workerErr.Load().(error); err != nil {
		t.Fatalf("worker reported: %v", err)
	}
	// The engine promoted the retry: it ran the delayed scanner.
	engine.waitLine(regexp.MustCompile(`delayed="promoted=1 `), 5*time.Second)
	if err := engine.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	<-engine.exited

	checkDenials(t, addrs)
}

// checkDenials fails on an ACL log entry other than allowed ones, then
// empties the log. (A stopping worker closes its blocked hand-off read's
// connection: no CLIENT UNBLOCK, which the recipe does not grant.)
func checkDenials(t *testing.T, addrs []string, allowed ...string) {
	t.Helper()
	denials, err := valkeytest.ACLDenials(t.Context(), addrs)
	if err != nil {
		t.Fatal(err)
	}
	denials = slices.DeleteFunc(denials, func(d string) bool { return slices.Contains(allowed, d) })
	if len(denials) > 0 {
		t.Fatalf("the recipe lacks what these need: %v", denials)
	}
	if err := valkeytest.ResetACLLog(t.Context(), addrs); err != nil {
		t.Fatal(err)
	}
}

// runEngineOnce runs the ffengine daemon as ff-engine until it exits (it
// should fail at start) and returns its exit code and log.
func runEngineOnce(t *testing.T, addrs []string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary(t), "--addr", strings.Join(addrs, ","), "--username", engineUser,
		"--password", password(engineUser), "--connect-timeout", "20s")
	var out bytes.Buffer
	cmd.Stderr = &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("ffengine did not exit:\n%s", out.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// Without the topology command, valkey-go would take a cluster for a single
// node (from one seed address) or fail to connect (from several): either way
// Connect reports the command.
func TestACLClusterTopologyDenied(t *testing.T) {
	c := valkeytest.NewCluster(t)
	addrs := c.Addrs()
	if err := valkeytest.FlushAll(t.Context(), addrs); err != nil {
		t.Fatal(err)
	}
	applyRecipe(t, addrs, func(user string, rules []string) []string {
		return slices.DeleteFunc(rules, func(r string) bool { return r == "+cluster|shards" })
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, seeds := range [][]string{addrs[:1], addrs} {
		b, err := connectAs(ctx, seeds, deployUser, valkeybackend.Options{SkipPrepare: true, CacheSizeEachConn: -1})
		if err == nil {
			b.Close()
			t.Fatalf("connected from %d seeds without cluster|shards", len(seeds))
		}
		wantDenied(t, "connect without cluster|shards", err, "cluster|shards")
	}
}

// Valkey checks the commands a function runs against its caller, so the
// worker and engine users must be allowed every command the library calls.
func TestACLRecipeCoversTheLibrary(t *testing.T) {
	r := recipe(t)
	calls := regexp.MustCompile(`redis\.p?call\(\s*'([A-Za-z_]+)'`).FindAllStringSubmatch(lua.Source(), -1)
	if len(calls) < 10 {
		t.Fatalf("found only %d redis.call sites", len(calls))
	}
	if n := len(regexp.MustCompile(`redis\.p?call\(`).FindAllString(lua.Source(), -1)); n != len(calls) {
		t.Fatalf("%d redis.call sites, %d with a literal command: the test cannot check the others", n, len(calls))
	}
	for _, user := range []string{workerUser, engineUser} {
		for _, c := range calls {
			if cmd := "+" + strings.ToLower(c[1]); !slices.Contains(r[user], cmd) {
				t.Errorf("%s lacks %s, which the library calls", user, cmd)
			}
		}
	}
}
