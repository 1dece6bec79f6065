package scanner_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// The fault tests run real worker processes (internal/faultworker) against
// real Valkey and kill them with SIGKILL. The engine runs in the test
// process; cmd/ffengine's tests kill engine processes.

var (
	buildOnce sync.Once
	workerBin string
	buildErr  error
)

// faultWorkerBinary builds internal/faultworker once per test binary.
func faultWorkerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "faultworker")
		if err != nil {
			buildErr = err
			return
		}
		workerBin = filepath.Join(dir, "faultworker")
		out, err := exec.Command("go", "build", "-o", workerBin, "./internal/faultworker").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build faultworker: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return workerBin
}

// workerProc is a running faultworker.
type workerProc struct {
	instance string
	cmd      *exec.Cmd
	waited   chan struct{}
}

// startWorker runs a faultworker and waits for its "ready" line.
func startWorker(t *testing.T, addr, instance string, args ...string) *workerProc {
	t.Helper()
	cmd := exec.Command(faultWorkerBinary(t), append([]string{"--addr", addr, "--instance", instance}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &workerProc{instance: instance, cmd: cmd, waited: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(ready)
			}
		}
		_ = cmd.Wait()
		close(w.waited)
	}()
	t.Cleanup(w.kill)
	select {
	case <-ready:
	case <-w.waited:
		t.Fatalf("worker %s exited before it was ready", instance)
	case <-time.After(15 * time.Second):
		t.Fatalf("worker %s not ready after 15s", instance)
	}
	return w
}

// kill SIGKILLs the worker and waits for it to be gone.
func (w *workerProc) kill() {
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.waited
}

// takenFromStalled counts the claims of the stalled instances whose
// execution another attempt completed: leases taken over while their holder
// was frozen, which it must find fenced off when it resumes.
func takenFromStalled(t *testing.T, b *valkeybackend.Backend, stalled map[string]bool) int {
	t.Helper()
	completedBy := map[string]string{}
	for _, r := range records(t, b, "fault:completions") {
		completedBy[r.id] = r.attempt
	}
	n := 0
	for _, c := range records(t, b, "fault:claims") {
		if at, ok := completedBy[c.id]; stalled[c.instance] && ok && at != c.attempt {
			n++
		}
	}
	return n
}

// record is one line a faultworker wrote.
type record struct{ id, attempt, detail, instance string }

func records(t *testing.T, b *valkeybackend.Backend, key string) []record {
	t.Helper()
	c := b.Client()
	lines, err := c.Do(context.Background(), c.B().Lrange().Key(key).Start(0).Stop(-1).Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]record, 0, len(lines))
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 4 {
			t.Fatalf("bad %s record %q", key, l)
		}
		out = append(out, record{id: f[0], attempt: f[1], detail: f[2], instance: f[3]})
	}
	return out
}

func doneCount(t *testing.T, b *valkeybackend.Backend) int64 {
	t.Helper()
	c := b.Client()
	n, err := c.Do(context.Background(), c.B().Scard().Key("fault:done").Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func faultConfig(t *testing.T) scanner.Config {
	cfg := testConfig(t)
	cfg.LeaseExpiryInterval = 100 * time.Millisecond
	cfg.TimeoutInterval = 100 * time.Millisecond
	cfg.DelayedInterval = 100 * time.Millisecond
	cfg.OwnershipTTL = time.Second
	return cfg
}

// (a) A worker killed with SIGKILL mid-task: the execution is reclaimed and
// completes exactly once on another worker. The recovery time (kill to
// completion) is measured.
func TestFaultWorkerKilledMidTask(t *testing.T) {
	addr := standalone(t)[0]
	b := freshBackend(t, []string{addr})
	runEngine(t, b, faultConfig(t))
	const ttl = time.Second
	victim := startWorker(t, addr, "victim", "--lease-ttl", ttl.String(), "--work-min", "1m")
	id := create(t, b, sdk.CreateExecutionArgs{Lane: "fault", Kind: "k"})
	eventually(t, 10*time.Second, "the victim's claim", func() bool {
		d := describe(t, b, id)
		return d.State == sdk.StateActive && d.WorkerInstanceID == "victim"
	})
	startWorker(t, addr, "rescuer", "--lease-ttl", ttl.String(), "--work-min", "20ms")
	time.Sleep(ttl / 2) // the victim renews at least once: the lease is mid-life when it dies
	victim.kill()
	recovery := eventually(t, 10*time.Second, "completion by the rescuer", func() bool { return doneCount(t, b) == 1 })
	t.Logf("recovery (SIGKILL to completion): %v with lease TTL %v, lease-expiry scan every %v, 20ms of work",
		recovery, ttl, faultConfig(t).LeaseExpiryInterval)
	if recovery > ttl+time.Second {
		t.Fatalf("recovery took %v", recovery)
	}
	done := records(t, b, "fault:completions")
	if len(done) != 1 || done[0].id != string(id) || done[0].instance != "rescuer" {
		t.Fatalf("completions %+v, want exactly one by the rescuer", done)
	}
	if rej := records(t, b, "fault:rejected"); len(rej) != 0 {
		t.Fatalf("rejected completions: %+v", rej)
	}
	info, err := b.ReadExecutionInfo(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Snapshot.State != sdk.StateCompleted || info.Snapshot.TotalAttempts != 2 ||
		info.Fields["attempt_type"] != string(sdk.AttemptReclaim) || info.Fields["attempt_id"] != done[0].attempt {
		t.Fatalf("final record: state %s attempts %d type %s attempt %s (completed %s)", info.Snapshot.State,
			info.Snapshot.TotalAttempts, info.Fields["attempt_type"], info.Fields["attempt_id"], done[0].attempt)
	}
}

// (b) 1,000 executions, 4 worker processes, workers SIGKILLed at random and
// restarted while they run, and some frozen (SIGSTOP) past their leases and
// resumed as zombies. Exactly once, in the strongest form that holds:
//   - every execution ends completed (the engine's record);
//   - no execution had two completions accepted (fencing rejects the
//     second: the completions log has each id at most once);
//   - every accepted completion is the attempt the engine recorded;
//   - an id missing from the log was completed by a worker killed between
//     Complete and its log write: its intent record names the recorded
//     attempt, and there are no more such ids than kills;
//   - every completion or renewal refused to a zombie was of an attempt the
//     engine did not keep (fencing stopped it; it did not stop the winner).
func TestFaultThousandWithRandomKills(t *testing.T) {
	addr := standalone(t)[0]
	b := freshBackend(t, []string{addr})
	runEngine(t, b, faultConfig(t))
	const n, workers = 1000, 4
	ids := make([]sdk.ExecutionID, 0, n)
	for range n {
		ids = append(ids, create(t, b, sdk.CreateExecutionArgs{Lane: "fault", Kind: "k"}))
	}
	args := []string{"--lease-ttl", "500ms", "--work-min", "20ms", "--work-max", "80ms", "--concurrency", "8", "--poll", "10ms"}
	start := time.Now()
	procs := make([]*workerProc, workers)
	gen := 0
	spawn := func(slot int) {
		gen++
		procs[slot] = startWorker(t, addr, fmt.Sprintf("w%d-g%d", slot, gen), args...)
	}
	for i := range procs {
		spawn(i)
	}
	remaining := map[sdk.ExecutionID]bool{}
	for _, id := range ids {
		remaining[id] = true
	}
	kills, stalls := 0, 0
	killed := map[string]bool{}
	var stalled sync.WaitGroup
	var frozenMu sync.Mutex
	frozen := map[int]bool{} // slots stalled now: not killed, so they come back as zombies
	stalledInstances := map[string]bool{}
	for event := 0; len(remaining) > 0; event++ {
		if time.Since(start) > 60*time.Second {
			t.Fatalf("%d of %d executions not completed after 60s (%d kills)", len(remaining), n, kills)
		}
		time.Sleep(time.Duration(100+rand.IntN(200)) * time.Millisecond)
		slot := rand.IntN(workers)
		frozenMu.Lock()
		busy := frozen[slot]
		frozenMu.Unlock()
		switch {
		case event >= 15 || busy:
		case event%3 == 2:
			// A stall longer than the lease: the worker comes back as a
			// zombie whose leases were reclaimed; fencing must stop it.
			p := procs[slot]
			stalls++
			stalledInstances[p.instance] = true
			frozenMu.Lock()
			frozen[slot] = true
			frozenMu.Unlock()
			_ = p.cmd.Process.Signal(syscall.SIGSTOP)
			stalled.Go(func() {
				time.Sleep(1500 * time.Millisecond) // three lease TTLs: reclaimed even on a loaded machine
				_ = p.cmd.Process.Signal(syscall.SIGCONT)
				frozenMu.Lock()
				delete(frozen, slot)
				frozenMu.Unlock()
			})
		default:
			killed[procs[slot].instance] = true
			procs[slot].kill()
			kills++
			spawn(slot)
		}
		for id := range remaining {
			if state(t, b, id) == sdk.StateCompleted {
				delete(remaining, id)
			}
		}
	}
	elapsed := time.Since(start)
	stalled.Wait()
	if taken := takenFromStalled(t, b, stalledInstances); taken > 0 {
		// A resumed zombie renews or completes at once and is refused; on a
		// loaded machine it may take a while to run again.
		eventually(t, 30*time.Second, fmt.Sprintf("a zombie fenced out after %d of its leases were taken over", taken), func() bool {
			return len(records(t, b, "fault:rejected"))+len(records(t, b, "fault:lost")) > 0
		})
	} else if stalls > 0 {
		t.Logf("the %d stalled workers held no lease another worker took over: no zombie to fence", stalls)
	}
	time.Sleep(300 * time.Millisecond) // let the other resumed zombies try to renew and complete
	for _, p := range procs {
		p.kill()
	}

	byID := map[string]record{}
	for _, r := range records(t, b, "fault:completions") {
		if prev, dup := byID[r.id]; dup {
			t.Fatalf("execution %s completed twice: %+v and %+v", r.id, prev, r)
		}
		byID[r.id] = r
	}
	intents := map[string][]record{}
	for _, r := range records(t, b, "fault:intent") {
		intents[r.id] = append(intents[r.id], r)
	}
	reclaims, unlogged := 0, 0
	for _, id := range ids {
		info, err := b.ReadExecutionInfo(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if info.Snapshot.State != sdk.StateCompleted {
			t.Fatalf("%s ended %s", id, info.Snapshot.State)
		}
		reclaims += info.Snapshot.TotalAttempts - 1
		final := info.Fields["attempt_id"]
		if r, ok := byID[string(id)]; ok {
			if r.attempt != final {
				t.Fatalf("%s: logged completion of attempt %s, engine recorded %s", id, r.attempt, final)
			}
			continue
		}
		unlogged++
		found := false
		for _, in := range intents[string(id)] {
			if in.attempt == final && killed[in.instance] {
				found = true
			}
		}
		if !found {
			t.Fatalf("%s completed (attempt %s) but no killed worker's intent names that attempt: %+v", id, final, intents[string(id)])
		}
	}
	if unlogged > kills {
		t.Fatalf("%d completions unlogged, more than the %d kills", unlogged, kills)
	}
	if got := doneCount(t, b); got != int64(len(byID)) {
		t.Fatalf("fault:done has %d members, the log %d", got, len(byID))
	}
	rejected, lost := records(t, b, "fault:rejected"), records(t, b, "fault:lost")
	for _, r := range append(rejected, lost...) {
		if info, _ := b.ReadExecutionInfo(context.Background(), sdk.ExecutionID(r.id)); info.Fields["attempt_id"] == r.attempt {
			t.Fatalf("the recorded attempt %s of %s was fenced out (%s)", r.attempt, r.id, r.detail)
		}
	}
	t.Logf("%d executions completed exactly once in %v with %d SIGKILLs and %d SIGSTOP stalls: %d reclaimed attempts, %d completions committed by a worker killed before it logged them; zombies fenced out: %d completions rejected, %d renewals refused",
		n, elapsed.Round(time.Millisecond), kills, stalls, reclaims, unlogged, len(rejected), len(lost))
}

// (c) Valkey killed (SIGKILL) and restarted with appendonly yes and
// appendfsync always: every submission acknowledged before the kill exists
// afterwards, the library is still loaded, and the in-process engine carries
// on (it reclaims a lease abandoned before the crash).
func TestFaultValkeyRestartKeepsAcknowledged(t *testing.T) {
	srv, err := valkeytest.Start(context.Background(), valkeytest.Options{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	b := connect(t, []string{srv.Addr()})
	runEngine(t, b, faultConfig(t))
	abandoned := create(t, b, sdk.CreateExecutionArgs{Lane: "aof"})
	claim(t, b, abandoned, "aof", "w", 500*time.Millisecond)

	var mu sync.Mutex
	var acked []sdk.ExecutionID
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				r, err := b.CreateExecution(cctx, sdk.CreateExecutionArgs{Lane: "aof", Kind: "k", Payload: []byte("x")})
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, r.ID)
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	stop()
	wg.Wait()
	if err := srv.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if before < 50 {
		t.Fatalf("only %d submissions acknowledged before the kill", before)
	}
	lost := 0
	for _, id := range acked {
		if d, err := b.DescribeExecution(context.Background(), id); err != nil || d == nil {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged submissions lost in the restart", lost, len(acked))
	}
	t.Logf("all %d acknowledged submissions survived SIGKILL + restart (appendfsync always)", len(acked))
	if _, err := b.CreateExecution(context.Background(), sdk.CreateExecutionArgs{Lane: "aof", Kind: "k"}); err != nil {
		t.Fatalf("create after restart (library loaded?): %v", err)
	}
	eventually(t, 10*time.Second, "the engine to reclaim the lease abandoned before the crash", func() bool {
		s, err := b.ReadExecutionState(context.Background(), abandoned)
		return err == nil && s == sdk.StateWaiting
	})
}

// (e) An execution past its deadline ends expired even while a worker
// process holds it; the worker's lease is fenced out, so it never completes.
func TestFaultDeadlineWhileRunning(t *testing.T) {
	addr := standalone(t)[0]
	b := freshBackend(t, []string{addr})
	runEngine(t, b, faultConfig(t))
	startWorker(t, addr, "slow", "--lease-ttl", "600ms", "--work-min", "1500ms")
	deadline := time.Now().Add(500 * time.Millisecond)
	id := create(t, b, sdk.CreateExecutionArgs{Lane: "fault", Kind: "k", Deadline: deadline})
	eventually(t, 5*time.Second, "the claim", func() bool { return state(t, b, id) == sdk.StateActive })
	eventually(t, 5*time.Second, "expiry", func() bool { return state(t, b, id) == sdk.StateExpired })
	t.Logf("expired %v after the deadline", time.Since(deadline).Round(time.Millisecond))
	eventually(t, 5*time.Second, "the worker to notice", func() bool {
		return len(records(t, b, "fault:lost"))+len(records(t, b, "fault:rejected")) > 0
	})
	if done := records(t, b, "fault:completions"); len(done) != 0 {
		t.Fatalf("an expired execution completed: %+v", done)
	}
	if state(t, b, id) != sdk.StateExpired {
		t.Fatal("state left expired")
	}
	lost := append(records(t, b, "fault:lost"), records(t, b, "fault:rejected")...)
	codes := make([]string, 0, len(lost))
	for _, r := range lost {
		codes = append(codes, r.detail)
	}
	sort.Strings(codes)
	t.Logf("the worker was fenced out with %v", codes)
}

// (f) 500 executions suspend and are signalled while sdk worker processes
// are SIGKILLed at random and restarted. Each task waits on a pending
// waitpoint whose token it records before suspending; a signaller delivers
// one signal per token (and repeats it with the same dedup key). Checks:
//   - every execution ends completed, and no completion was accepted twice;
//   - no signal lost: each execution's result is the id of a signal the
//     signaller saw resume that execution (or buffered for its suspend,
//     which then found its condition met);
//   - none applied twice: each repeat came back Duplicate with the first
//     signal's id, and no signal id resumed two executions (or one twice).
func TestFaultSuspendSignalWithKills(t *testing.T) {
	addr := standalone(t)[0]
	b := freshBackend(t, []string{addr})
	runEngine(t, b, faultConfig(t))
	ctx := context.Background()
	if _, err := b.SeedWaitpointSecret(ctx, "fault", []byte("fault-test-waitpoint-secret")); err != nil {
		t.Fatal(err)
	}
	const n, workers = 500, 4
	ids := make([]sdk.ExecutionID, 0, n)
	for range n {
		ids = append(ids, create(t, b, sdk.CreateExecutionArgs{Lane: "fault", Kind: "k"}))
	}
	args := []string{"--sdk", "--suspend", "--lease-ttl", "500ms", "--concurrency", "4", "--work-min", "100ms", "--work-max", "300ms"}
	procs := make([]*workerProc, workers)
	gen := 0
	spawn := func(slot int) {
		gen++
		procs[slot] = startWorker(t, addr, fmt.Sprintf("s%d-g%d", slot, gen), args...)
	}
	for i := range procs {
		spawn(i)
	}

	// The signaller: one signal per recorded token, then its repeat.
	var mu sync.Mutex
	resumedBy := map[string][]string{} // execution -> ids of signals that resumed it (or were buffered for its suspend)
	sigCtx, stopSignals := context.WithCancel(ctx)
	var sigDone sync.WaitGroup
	sigErr := make(chan error, 1)
	sigDone.Go(func() {
		c := b.Client()
		read := 0
		for sigCtx.Err() == nil {
			lines, err := c.Do(sigCtx, c.B().Lrange().Key("fault:tokens").Start(int64(read)).Stop(-1).Build()).AsStrSlice()
			if err != nil {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			for _, l := range lines {
				read++
				id, tok, _ := strings.Cut(l, " ")
				w, err := sdk.TokenWaitpoint(tok)
				if err != nil {
					sigErr <- fmt.Errorf("recorded token %q: %v", tok, err)
					return
				}
				key := "sig-" + string(w)[strings.Index(string(w), "}:")+2:]
				first, err := b.DeliverSignal(sigCtx, sdk.DeliverSignalArgs{Token: tok, Name: "go", DedupKey: key})
				if err != nil {
					sigErr <- fmt.Errorf("signal for %s: %v", id, err)
					return
				}
				again, err := b.DeliverSignal(sigCtx, sdk.DeliverSignalArgs{Token: tok, Name: "go", DedupKey: key})
				if err != nil || !again.Duplicate || again.SignalID != first.SignalID {
					sigErr <- fmt.Errorf("repeated signal for %s: %+v, %v (first %s)", id, again, err, first.SignalID)
					return
				}
				// A signal a pending waitpoint buffered resumes at the suspend
				// (already satisfied) instead of at delivery.
				if first.Effect == sdk.EffectResumed || first.Effect == sdk.EffectBuffered {
					mu.Lock()
					resumedBy[id] = append(resumedBy[id], first.SignalID)
					mu.Unlock()
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	start := time.Now()
	remaining := map[sdk.ExecutionID]bool{}
	for _, id := range ids {
		remaining[id] = true
	}
	kills := 0
	for event := 0; len(remaining) > 0; event++ {
		select {
		case err := <-sigErr:
			t.Fatal(err)
		default:
		}
		if time.Since(start) > 90*time.Second {
			t.Fatalf("%d of %d executions not completed after 90s (%d kills)", len(remaining), n, kills)
		}
		time.Sleep(time.Duration(100+rand.IntN(200)) * time.Millisecond)
		if event < 12 {
			slot := rand.IntN(workers)
			procs[slot].kill()
			kills++
			spawn(slot)
			continue // the kills first; completions are read after them
		}
		for id := range remaining {
			if state(t, b, id) == sdk.StateCompleted {
				delete(remaining, id)
			}
		}
	}
	elapsed := time.Since(start)
	stopSignals()
	sigDone.Wait()
	for _, p := range procs {
		p.kill()
	}

	seen := map[string]bool{}
	for _, r := range records(t, b, "fault:completions") {
		if seen[r.id] {
			t.Fatalf("execution %s completed twice", r.id)
		}
		seen[r.id] = true
	}
	usedBy := map[string]string{}
	resumes := 0
	for id, sigs := range resumedBy {
		for _, s := range sigs {
			if other, dup := usedBy[s]; dup {
				t.Fatalf("signal %s resumed %s and %s", s, other, id)
			}
			usedBy[s] = id
			resumes++
		}
	}
	for _, id := range ids {
		res, err := b.GetExecutionResult(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if usedBy[string(res)] != string(id) {
			t.Fatalf("%s completed with signal %q, which the signaller did not see resume it (resumes: %v)", id, res, resumedBy[string(id)])
		}
	}
	t.Logf("%d executions suspended, signalled and completed exactly once in %v with %d SIGKILLs: %d resumes for %d tokens",
		n, elapsed.Round(time.Millisecond), kills, resumes, len(records2(t, b, "fault:tokens")))
}

// records2 returns a list's raw lines.
func records2(t *testing.T, b *valkeybackend.Backend, key string) []string {
	t.Helper()
	c := b.Client()
	lines, err := c.Do(context.Background(), c.B().Lrange().Key(key).Start(0).Stop(-1).Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	return lines
}
