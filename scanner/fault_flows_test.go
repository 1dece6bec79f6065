package scanner_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// flowFaultLane is the lane every member of TestFaultFlowsWithKills runs on.
const flowFaultLane = "flowfault"

// flowDAG is one submitted DAG: its spec, each member's parents (by name)
// and, once submitted, its flow id and member ids.
type flowDAG struct {
	kind    string // "fan" (1 -> N -> 1) or "chain"
	spec    sdk.FlowSpec
	parents map[string][]string
	sub     sdk.FlowSubmission
}

// newFlowDAG draws a fan-out/fan-in (1 -> n -> 1, n in 5..10) or a chain
// (depth 5..10) from rng. Every member logs its lease events (lease
// history): the engine's own record of how many times it completed.
func newFlowDAG(rng *rand.Rand, fan bool) *flowDAG {
	d := &flowDAG{parents: map[string][]string{}}
	add := func(name string, parents ...string) {
		d.spec.Members = append(d.spec.Members, sdk.FlowMember{Name: name, Args: sdk.CreateExecutionArgs{
			Lane: flowFaultLane, Kind: "step", Payload: []byte(name), LeaseHistory: true}})
		for _, p := range parents {
			d.spec.Edges = append(d.spec.Edges, sdk.FlowEdge{From: p, To: name})
		}
		d.parents[name] = parents
	}
	n := 5 + rng.IntN(6)
	if fan {
		d.kind = "fan"
		add("root")
		mids := make([]string, n)
		for i := range mids {
			mids[i] = "f" + strconv.Itoa(i)
			add(mids[i], "root")
		}
		add("join", mids...)
		return d
	}
	d.kind = "chain"
	for i := range n {
		if i == 0 {
			add("c0")
		} else {
			add("c"+strconv.Itoa(i), "c"+strconv.Itoa(i-1))
		}
	}
	return d
}

// handlerStart is one line of a faultworker's --starts-dir log.
type handlerStart struct {
	at       time.Time
	attempt  string
	typ      string
	instance string
}

// readHandlerStarts reads every starts-*.log in dir, by execution id.
func readHandlerStarts(t *testing.T, dir string) map[sdk.ExecutionID][]handlerStart {
	t.Helper()
	out := map[sdk.ExecutionID][]handlerStart{}
	readWorkerRecords(t, dir, "starts", func(_ string, fs []string, at time.Time) {
		id := sdk.ExecutionID(fs[0])
		out[id] = append(out[id], handlerStart{at: at, attempt: fs[2], typ: fs[3], instance: fs[4]})
	})
	return out
}

// faultSeed is a fault test's random seed: the environment variable env's
// value when set (to replay a run), else the time; it is logged.
func faultSeed(t *testing.T, env string) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(env); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", env, err)
		}
		seed = v
	}
	t.Logf("seed %d (%s=%d replays it)", seed, env, seed)
	return seed
}

// readWorkerRecords calls fn with every record of the <kind>-*.log files
// the fault workers wrote in dir: five fields, the second a unix-ns time
// (at). A SIGKILL cannot cut a write(2) of a regular file in two, so a
// malformed record fails the test.
func readWorkerRecords(t *testing.T, dir, kind string, fn func(file string, fields []string, at time.Time)) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, kind+"-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) != 5 {
				t.Fatalf("%s: malformed record %q", filepath.Base(name), sc.Text())
			}
			ns, err := strconv.ParseInt(fs[1], 10, 64)
			if err != nil {
				t.Fatalf("%s: bad time in %q", filepath.Base(name), sc.Text())
			}
			fn(filepath.Base(name), fs, time.Unix(0, ns))
		}
		_ = f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// leaseCompletions counts, per execution, the lease events the engine
// logged with reason completed (a lease released by a completion) over
// every partition's lease history.
func leaseCompletions(t *testing.T, b *valkeybackend.Backend) (map[sdk.ExecutionID]int, int) {
	t.Helper()
	c := b.Client()
	out := map[sdk.ExecutionID]int{}
	events := 0
	for p := range b.Partitions() {
		key := "ff:i:" + sdk.PartitionTag(p) + ":lease_history"
		es, err := c.Do(context.Background(), c.B().Xrange().Key(key).Start("-").End("+").Build()).AsXRange()
		if err != nil {
			t.Fatal(err)
		}
		events += len(es)
		for _, e := range es {
			if e.FieldValues["ev"] == "released" && e.FieldValues["why"] == "completed" {
				out[sdk.ExecutionID(e.FieldValues["eid"])]++
			}
		}
	}
	return out, events
}

// TestFaultFlowsWithKills: 200 DAGs (fan-out/fan-in 1 -> N -> 1 and
// chains, 5..10 wide or deep) submitted with SubmitFlow while 4 sdk worker
// processes (internal/faultworker --sdk --starts-dir) run their members
// and are SIGKILLed at random and restarted, and the engine (a faultworker
// --engine process running the scanners) is SIGKILLed once mid-run and
// restarted a little later; short leases (500ms) make recovery quick.
// Each handler appends its start time and execution id to a per-process
// file before it works. Checks:
//   - every flow's AwaitFlow returns completed before the deadline, and
//     DescribeFlow counts every member ended, none otherwise;
//   - every member ended completed, exactly once: the engine logged one
//     completion (lease history: released, completed) per member and the
//     worker-side completion log holds no id twice;
//   - the completing attempt of each member has a recorded handler start;
//   - no handler start of a member (first or repeated) came before the
//     server-recorded completion time (CompletedAt) of any of its parents.
//     No clock slack: the workers and Valkey read the same host clock, the
//     start is taken after the claim returned, and a parent's completed_at
//     is the server's TIME (in ms, rounded down) at the start of the very
//     script that then made the child runnable. The rounding leaves this
//     check blind within the parent's last millisecond; so, too,
//   - each handler, right after recording its start, reads its upstreams'
//     states (UpstreamResults, in the worker): all of them completed,
//     every time (a causal check, no clocks).
//
// It runs on the standalone server and on the 3-primary cluster (about 8s
// each on 2 vCPUs); -short runs 40 DAGs instead of 200. FF_FLOWFAULT_SEED
// replays the DAG shapes and the kill schedule of a logged seed (not the
// timings).
func TestFaultFlowsWithKills(t *testing.T) {
	for _, topo := range both() {
		t.Run(topo.name, func(t *testing.T) { runFlowFault(t, topo.addrs(t)) })
	}
}

func runFlowFault(t *testing.T, addrs []string) {
	dags, workers, maxKills := 200, 4, 20
	if testing.Short() {
		dags, maxKills = 40, 6
	}
	seed := faultSeed(t, "FF_FLOWFAULT_SEED")
	rng := rand.New(rand.NewPCG(seed, 0x666c6f77))

	ctx := context.Background()
	b := freshBackend(t, addrs)
	client := sdk.NewClient(b)
	addr := strings.Join(addrs, ",")
	dir := t.TempDir()

	engineArgs := []string{"--engine", "--scan-interval", "100ms", "--flow-grace", "300ms", "--ownership-ttl", "1s"}
	engineGen := 1
	engine := startWorker(t, addr, "engine-g1", engineArgs...)
	workerArgs := []string{"--sdk", "--lane", flowFaultLane, "--starts-dir", dir, "--lease-ttl", "500ms",
		"--concurrency", "6", "--work-min", "5ms", "--work-max", "40ms"}
	procs := make([]*workerProc, workers)
	gen := 0
	spawn := func(slot int) {
		gen++
		procs[slot] = startWorker(t, addr, fmt.Sprintf("fw%d-g%d", slot, gen), workerArgs...)
	}
	for i := range procs {
		spawn(i)
	}

	all := make([]*flowDAG, dags)
	for i := range all {
		all[i] = newFlowDAG(rng, i%2 == 0)
	}

	// The submitter: one DAG every 25ms (about 5s of submissions, so the
	// kills land while work flows), each awaited by its own goroutine.
	const deadline = 45 * time.Second
	start := time.Now()
	awaitCtx, cancelAwait := context.WithTimeout(ctx, deadline)
	defer cancelAwait()
	type outcome struct {
		state sdk.FlowState
		err   error
		took  time.Duration
	}
	outcomes := make([]outcome, dags)
	var ended atomic.Int64
	var awaits sync.WaitGroup
	subErr := make(chan error, 1)
	var submitted atomic.Int64
	var subDone sync.WaitGroup
	subDone.Go(func() {
		for i, d := range all {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			sub, err := client.SubmitFlow(sctx, d.spec)
			cancel()
			if err != nil {
				subErr <- fmt.Errorf("SubmitFlow of DAG %d (%s): %v", i, d.kind, err)
				return
			}
			if sub.Existed || len(sub.Members) != len(d.spec.Members) {
				subErr <- fmt.Errorf("SubmitFlow of DAG %d: existed %v, %d member ids for %d members", i, sub.Existed,
					len(sub.Members), len(d.spec.Members))
				return
			}
			d.sub = sub
			submitted.Add(1)
			awaits.Go(func() {
				at := time.Now()
				st, err := client.AwaitFlow(awaitCtx, sub.ID)
				outcomes[i] = outcome{st, err, time.Since(at)}
				ended.Add(1)
			})
			time.Sleep(25 * time.Millisecond)
		}
	})

	// The chaos: a random worker SIGKILLed (and restarted) every 100-300ms
	// for the first maxKills events while flows are open, and the engine
	// SIGKILLed once 40% of the DAGs are in, restarted 1.5s later (after
	// its partition ownership, 1s, lapsed: the new engine takes every
	// partition at once). Leases of workers killed meanwhile wait for it.
	kills, killsEngineDown := 0, 0
	var engineKilled, engineRestarted time.Time
	for ended.Load() < int64(dags) || engineRestarted.IsZero() {
		select {
		case err := <-subErr:
			t.Fatal(err)
		default:
		}
		if time.Since(start) > deadline+5*time.Second {
			t.Fatalf("%d of %d flows ended after %v (awaits time out after %v)", ended.Load(), dags, time.Since(start), deadline)
		}
		time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond)
		switch {
		case engineKilled.IsZero() && submitted.Load() >= int64(dags*2/5):
			engine.kill()
			engineKilled = time.Now()
		case !engineKilled.IsZero() && engineRestarted.IsZero() && time.Since(engineKilled) > 1500*time.Millisecond:
			engineGen++
			engine = startWorker(t, addr, fmt.Sprintf("engine-g%d", engineGen), engineArgs...)
			engineRestarted = time.Now()
		case kills < maxKills && ended.Load() < int64(dags):
			slot := rng.IntN(workers)
			procs[slot].kill()
			kills++
			if !engineKilled.IsZero() && engineRestarted.IsZero() {
				killsEngineDown++
			}
			spawn(slot)
		}
	}
	subDone.Wait()
	select {
	case err := <-subErr:
		t.Fatal(err)
	default:
	}
	awaits.Wait()
	elapsed := time.Since(start)
	for _, p := range procs {
		p.kill()
	}
	engine.kill()

	// Every flow completed in time.
	var open []string
	var slowest time.Duration
	for i, d := range all {
		o := outcomes[i]
		slowest = max(slowest, o.took)
		if o.err != nil || o.state != sdk.FlowCompleted {
			open = append(open, fmt.Sprintf("%s %s: %s %v", d.kind, d.sub.ID, o.state, o.err))
		}
	}
	if len(open) > 0 {
		for i, d := range all { // the first open flow's members, to see where it stuck
			if outcomes[i].state == sdk.FlowCompleted {
				continue
			}
			for _, m := range d.spec.Members {
				if s := describe(t, b, d.sub.Members[m.Name]); s != nil {
					t.Logf("  %s %s %s: %s (%s) attempts %d, worker %s", d.kind, d.sub.ID, m.Name, s.State, s.BlockedReason,
						s.TotalAttempts, s.WorkerInstanceID)
				}
			}
			break
		}
		t.Fatalf("%d of %d flows did not complete within %v (%d kills): %v", len(open), dags, deadline, kills, open[:min(len(open), 10)])
	}

	// Exactly once, by the engine's records and the workers'.
	engineDone, events := leaseCompletions(t, b)
	workerDone := map[string]int{}
	for _, r := range records(t, b, "fault:completions") {
		workerDone[r.id]++
	}
	starts := readHandlerStarts(t, dir)
	upChecks := map[string][]record{}
	for _, r := range records(t, b, "fault:upstreams") {
		upChecks[r.id] = append(upChecks[r.id], r)
	}
	checked, checkErrs := 0, 0
	members, edges, handlerStarts, dupMembers, reclaims, early, late := 0, 0, 0, 0, 0, 0, 0
	minGap := time.Duration(1 << 62)
	for _, d := range all {
		f, err := b.DescribeFlow(ctx, d.sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		if f.State != sdk.FlowCompleted || f.Nodes != len(d.spec.Members) || f.Ended != f.Nodes || f.NotOK != 0 ||
			len(f.Members) != f.Nodes {
			t.Fatalf("flow %s (%s): %s, %d nodes (%d members), %d ended, %d not ok; want completed, %d each, 0 not ok",
				d.sub.ID, d.kind, f.State, f.Nodes, len(f.Members), f.Ended, f.NotOK, len(d.spec.Members))
		}
		completedAt := map[string]time.Time{}
		for _, m := range d.spec.Members {
			id := d.sub.Members[m.Name]
			info, err := b.ReadExecutionInfo(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			s := info.Snapshot
			if s.State != sdk.StateCompleted || s.CompletedAt.IsZero() {
				t.Fatalf("%s %s member %s (%s) ended %s (completed at %v)", d.kind, d.sub.ID, m.Name, id, s.State, s.CompletedAt)
			}
			if n := engineDone[id]; n != 1 {
				t.Fatalf("%s %s member %s (%s): the engine logged %d completions, want 1", d.kind, d.sub.ID, m.Name, id, n)
			}
			if n := workerDone[string(id)]; n > 1 {
				t.Fatalf("%s %s member %s (%s): %d completions accepted by workers", d.kind, d.sub.ID, m.Name, id, n)
			}
			completedAt[m.Name] = s.CompletedAt
			reclaims += s.TotalAttempts - 1
			final := info.Fields["attempt_id"]
			found := false
			for _, st := range starts[id] {
				found = found || st.attempt == final
			}
			if !found {
				t.Fatalf("%s %s member %s (%s): completed by attempt %s, which has no recorded handler start: %+v",
					d.kind, d.sub.ID, m.Name, id, final, starts[id])
			}
			for _, r := range upChecks[string(id)] {
				if strings.HasPrefix(r.detail, "error:") {
					checkErrs++
					continue
				}
				checked++
				if want := fmt.Sprintf("%d/%d", len(d.parents[m.Name]), len(d.parents[m.Name])); r.detail != want {
					t.Errorf("%s %s member %s (%s): attempt %s on %s found %s of its upstreams completed when it started, want %s",
						d.kind, d.sub.ID, m.Name, id, r.attempt, r.instance, r.detail, want)
				}
			}
			for _, st := range starts[id] {
				if st.at.After(s.CompletedAt.Add(time.Millisecond)) {
					late++ // a claim that ran its handler after another attempt completed: logged, allowed
				}
			}
			members++
			handlerStarts += len(starts[id])
			if len(starts[id]) > 1 {
				dupMembers++
			}
		}
		// No handler start before a parent's completion.
		for _, m := range d.spec.Members {
			id := d.sub.Members[m.Name]
			for _, p := range d.parents[m.Name] {
				edges++
				for _, st := range starts[id] {
					gap := st.at.Sub(completedAt[p])
					minGap = min(minGap, gap)
					if gap < 0 {
						if early++; early > 10 {
							continue
						}
						t.Errorf("%s %s: member %s (%s) started at %s (attempt %s %s on %s), %v BEFORE its parent %s (%s) completed at %s",
							d.kind, d.sub.ID, m.Name, id, st.at.Format(time.StampMicro), st.attempt, st.typ, st.instance, -gap,
							p, d.sub.Members[p], completedAt[p].Format(time.StampMilli))
					}
				}
			}
		}
	}
	if t.Failed() || early > 0 {
		t.Fatalf("%d handler starts came before a parent's completion by the clocks, others found an upstream not completed (seed %d)", early, seed)
	}
	if len(engineDone) != members {
		t.Fatalf("the engine logged completions of %d executions, the flows have %d members", len(engineDone), members)
	}
	var totalStarts int
	for _, ss := range starts {
		totalStarts += len(ss)
	}
	if totalStarts != handlerStarts {
		t.Fatalf("%d handler starts recorded, %d of them of the flows' members", totalStarts, handlerStarts)
	}
	t.Logf("%d DAGs (%d fan-out/fan-in, %d chains), %d members, %d edges: all completed in %v (slowest flow %v after its submit)",
		dags, (dags+1)/2, dags/2, members, edges, elapsed.Round(time.Millisecond), slowest.Round(time.Millisecond))
	t.Logf("upstream states read by %d handler starts right after they were recorded: all completed (%d reads failed)", checked, checkErrs)
	t.Logf("%d worker SIGKILLs (%d while the engine was down), 1 engine SIGKILL (down %v); %d handler starts, %d duplicate starts over %d members (%d after the member had completed), %d reclaimed attempts; %d lease events; closest child start after a parent's completion: %v",
		kills, killsEngineDown, engineRestarted.Sub(engineKilled).Round(time.Millisecond), handlerStarts, handlerStarts-members,
		dupMembers, late, reclaims, events, minGap)
}
