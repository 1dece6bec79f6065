package scanner_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/lua"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// The failover tests run work through a topology change: sdk worker
// processes (internal/faultworker --sdk, logging each handler's start and
// end to files, which a failover cannot lose), the engine in the test
// process, executions submitted open loop, and a primary failed over,
// killed or a slot moved halfway through. Each checks, for every execution
// whose create was acknowledged:
//
//   - lost: it ends completed (a create retried after an error carries its
//     idempotency key, so a retry never makes a second execution);
//   - duplicated: no more than one handler run ended with its Complete
//     returning nil, and the engine's lease history holds at most one
//     completion for it;
//   - successes turned into failures: none ends failed or in any state but
//     completed.
//
// With -short each runs 600 executions instead of 2,000 (1,000 for the
// Sentinel). It logs the time from the fault to claims resuming on the partitions
// the fault touched (the end of the longest pause in handler starts there
// after the fault) and how many
// handler runs ended in an error (their lease was lost while their node
// was away, and another attempt ran them).

// failoverLane is the lane of the failover tests' executions.
const failoverLane = "failover"

// failoverScenario is one failover test's setup.
type failoverScenario struct {
	n, rate    int      // executions, submitted at rate per second
	workerAddr string   // the workers' --addr
	workerArgs []string // more faultworker flags (--master-set)
	opts       valkeybackend.Options
	// before, when set, runs once the workers and the engine are connected.
	before func(t *testing.T)
	// fault changes the topology once half the executions are submitted
	// and returns when it is done, with the partitions whose slot it
	// touched and the instant it began.
	fault func(t *testing.T, ctx context.Context, b *valkeybackend.Backend) (affected []int, at time.Time)
}

// failoverResult is what runFailover measured.
type failoverResult struct {
	resume    time.Duration // fault to claims resuming on the affected partitions
	faultTook time.Duration // fault's own duration (until the new topology settled)
	elapsed   time.Duration // first submission to the last completion
	handbacks int           // handler runs that ended in an error
	retries   int           // create calls retried after an error
	dups      int           // executions with more than one successful completion
}

func runFailover(t *testing.T, sc failoverScenario) failoverResult {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if testing.Short() { // the fault still lands halfway, with less work around it
		sc.n = min(sc.n, 600)
	}
	sc.opts.Partitions = 16
	b, err := valkeybackend.Connect(ctx, sc.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	engine := runEngine(t, b, faultConfig(t))
	dir := t.TempDir()
	args := append([]string{"--sdk", "--starts-dir", dir, "--ends", "--upstreams=false", "--lane", failoverLane,
		"--concurrency", "8", "--lease-ttl", "2s", "--work-min", "5ms", "--work-max", "20ms"}, sc.workerArgs...)
	for i := range 2 {
		startWorker(t, sc.workerAddr, fmt.Sprintf("fo-w%d", i), args...)
	}
	if sc.before != nil {
		sc.before(t)
	}

	var (
		mu       sync.Mutex
		acked    = map[sdk.ExecutionID]bool{}
		retries  int
		failures []string
		wg       sync.WaitGroup
		affected []int
		faultAt  time.Time
		faultEnd time.Time
		faultWG  sync.WaitGroup
	)
	sem := make(chan struct{}, 64)
	start := time.Now()
	for i := range sc.n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(sc.rate))))
		if i == sc.n/2 {
			faultWG.Go(func() {
				a, at := sc.fault(t, ctx, b)
				mu.Lock()
				affected, faultAt, faultEnd = a, at, time.Now()
				mu.Unlock()
			})
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			key := fmt.Sprintf("fo-%d", i)
			for try := 0; ; try++ {
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				r, err := b.CreateExecution(cctx, sdk.CreateExecutionArgs{Lane: failoverLane, Kind: "k",
					IdempotencyKey: key, LeaseHistory: true})
				ccancel()
				mu.Lock()
				if err == nil {
					acked[r.ID] = true
				} else if try > 0 && time.Since(start) > time.Minute {
					failures = append(failures, fmt.Sprintf("create %s: %v", key, err))
					err = nil
				} else {
					retries++
				}
				mu.Unlock()
				if err == nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	faultWG.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d creates never acknowledged; first: %s", len(failures), failures[0])
	}
	submitted := time.Since(start)

	// Wait for every acknowledged execution to end.
	remaining := map[sdk.ExecutionID]bool{}
	for id := range acked {
		remaining[id] = true
	}
	deadline := time.Now().Add(45 * time.Second)
	for len(remaining) > 0 && time.Now().Before(deadline) {
		for id := range remaining {
			s, err := b.ReadExecutionState(ctx, id)
			if err == nil && (s == sdk.StateCompleted || s == sdk.StateFailed || s == sdk.StateCancelled || s == sdk.StateExpired) {
				delete(remaining, id)
			}
		}
		if len(remaining) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	elapsed := time.Since(start)

	// What the workers' logs say.
	completedRuns := map[sdk.ExecutionID]int{}
	handbacks := 0
	outcomes := map[string]int{}
	readWorkerRecords(t, dir, "ends", func(_ string, fs []string, _ time.Time) {
		if fs[3] == "completed" {
			completedRuns[sdk.ExecutionID(fs[0])]++
		} else {
			handbacks++
			outcomes[fs[3]]++
		}
	})
	inAffected := map[string]bool{}
	for _, p := range affected {
		inAffected[sdk.PartitionTag(p)] = true
	}
	// Claims resuming: the end of the longest pause in handler starts on
	// the affected partitions after the fault (a claim in flight when the
	// fault began may still start a handler just after it).
	var startsAfter []time.Time
	readWorkerRecords(t, dir, "starts", func(_ string, fs []string, at time.Time) {
		tag, _, _ := strings.Cut(fs[0], "}")
		if at.After(faultAt) && inAffected[tag+"}"] {
			startsAfter = append(startsAfter, at)
		}
	})
	sort.Slice(startsAfter, func(i, j int) bool { return startsAfter[i].Before(startsAfter[j]) })
	// An execution whose first handler run is a reclaim lost its first
	// lease unstarted: a hand-off or claim that never reached a handler
	// (the worker missed it while a node was away), recovered when the
	// lease lapsed.
	firstRun := map[string]handlerStart{}
	readWorkerRecords(t, dir, "starts", func(_ string, fs []string, at time.Time) {
		if f, ok := firstRun[fs[0]]; !ok || at.Before(f.at) {
			firstRun[fs[0]] = handlerStart{at: at, typ: fs[3]}
		}
	})
	unstarted := 0
	for _, f := range firstRun {
		if f.typ == string(sdk.AttemptReclaim) {
			unstarted++
		}
	}
	var resume time.Duration = -1
	prev, longest := faultAt, time.Duration(-1)
	for _, at := range startsAfter {
		if gap := at.Sub(prev); gap > longest {
			longest, resume = gap, at.Sub(faultAt)
		}
		prev = at
	}
	history, _ := leaseCompletions(t, b)

	var lost, turned, dups []string
	for id := range acked {
		s, err := b.ReadExecutionState(ctx, id)
		switch {
		case err != nil:
			lost = append(lost, fmt.Sprintf("%s (%v)", id, err))
		case s == sdk.StateFailed || s == sdk.StateCancelled || s == sdk.StateExpired:
			turned = append(turned, fmt.Sprintf("%s ended %s", id, s))
		case s != sdk.StateCompleted:
			lost = append(lost, fmt.Sprintf("%s still %s", id, s))
		}
		if completedRuns[id] > 1 || history[id] > 1 {
			dups = append(dups, fmt.Sprintf("%s: %d runs completed, %d completions in the lease history", id, completedRuns[id], history[id]))
		}
	}
	sort.Strings(lost)
	sort.Strings(dups)
	res := failoverResult{resume: resume, faultTook: faultEnd.Sub(faultAt), elapsed: elapsed, handbacks: handbacks,
		retries: retries, dups: len(dups)}
	t.Logf("%d executions acknowledged (submitted in %v, %d create retries), all ended %v after the first submission; "+
		"fault took %v; claims resumed on the %d affected partitions %v after the fault; "+
		"%d handler runs ended in an error and were run again %v; %d executions first ran as a reclaim (a first lease "+
		"that never reached a handler)",
		len(acked), submitted.Round(time.Millisecond), retries, elapsed.Round(time.Millisecond), res.faultTook.Round(time.Millisecond),
		len(affected), resume.Round(time.Millisecond), handbacks, outcomes, unstarted)
	// The engine owns every partition again: ownership lost while a node
	// was away is taken back.
	octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
	defer ocancel()
	if err := engine.WaitOwned(octx, b.Partitions()); err != nil {
		t.Errorf("the engine does not own all %d partitions after the fault: %v", b.Partitions(), err)
	}
	if len(acked) != sc.n {
		t.Errorf("%d of %d creates acknowledged", len(acked), sc.n)
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged executions lost; first: %s", len(lost), strings.Join(lost[:min(5, len(lost))], "; "))
	}
	if len(dups) > 0 {
		t.Errorf("%d executions completed more than once; first: %s", len(dups), strings.Join(dups[:min(5, len(dups))], "; "))
	}
	if len(turned) > 0 {
		t.Errorf("%d successes turned into failures; first: %s", len(turned), strings.Join(turned[:min(5, len(turned))], "; "))
	}
	if len(affected) > 0 && resume < 0 {
		t.Errorf("no handler started on the %d affected partitions after the fault", len(affected))
	}
	return res
}

// failoverCluster starts a 3-primary cluster with a replica each, with a
// 1s cluster-node-timeout so a dead primary's replica takes over in about
// two seconds, and closes it when the test ends.
func failoverCluster(t *testing.T) *valkeytest.Cluster {
	t.Helper()
	cl, err := valkeytest.StartCluster(t.Context(), valkeytest.ClusterOptions{Replicas: 1, NodeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// partitionsOn returns the partitions (of 16) whose slot owner is s.
func partitionsOn(t *testing.T, ctx context.Context, cl *valkeytest.Cluster, s *valkeytest.Server) []int {
	t.Helper()
	var out []int
	for p := range 16 {
		slot, err := cl.KeySlot(ctx, sdk.PartitionTag(p))
		if err != nil {
			t.Error(err)
			return nil
		}
		if owner, err := cl.SlotOwner(ctx, slot); err == nil && owner == s {
			out = append(out, p)
		}
	}
	return out
}

// checkLibrary fails the test unless the node at addr holds this build's
// library version (a promoted replica got it by replication).
func checkLibrary(t *testing.T, ctx context.Context, addr string) {
	t.Helper()
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	v, err := c.Do(ctx, c.B().FcallRo().Function("ff_version").Numkeys(0).Build()).ToArray()
	if err != nil || len(v) < 3 {
		t.Errorf("ff_version on %s: %v, %v", addr, v, err)
		return
	}
	if got, _ := v[2].ToString(); got != lua.Version {
		t.Errorf("%s holds library v%s, want v%s", addr, got, lua.Version)
	}
}

// TestFailoverClusterPrimaryKilled: 2,000 executions submitted at 500/s on
// a 3x1 cluster; halfway the primary of partition 0 is SIGKILLed and its
// replica promoted by the cluster.
func TestFailoverClusterPrimaryKilled(t *testing.T) {
	cl := failoverCluster(t)
	runFailover(t, failoverScenario{n: 2000, rate: 500, workerAddr: strings.Join(cl.Addrs(), ","),
		opts: valkeybackend.Options{Addrs: cl.Addrs()},
		fault: func(t *testing.T, ctx context.Context, _ *valkeybackend.Backend) ([]int, time.Time) {
			slot, _ := cl.KeySlot(ctx, sdk.PartitionTag(0))
			victim, err := cl.SlotOwner(ctx, slot)
			if err != nil {
				t.Error(err)
				return nil, time.Now()
			}
			affected := partitionsOn(t, ctx, cl, victim)
			at := time.Now()
			promoted, err := cl.KillPrimary(ctx, victim)
			if err != nil {
				t.Error(err)
			} else {
				t.Logf("SIGKILL of %s: %s promoted everywhere after %v", victim.Addr(), promoted.Addr(), time.Since(at).Round(time.Millisecond))
				checkLibrary(t, ctx, promoted.Addr())
			}
			return affected, at
		}})
}

// TestFailoverClusterManual: as TestFailoverClusterPrimaryKilled with a
// manual CLUSTER FAILOVER on the replica instead of a kill.
func TestFailoverClusterManual(t *testing.T) {
	cl := failoverCluster(t)
	runFailover(t, failoverScenario{n: 2000, rate: 500, workerAddr: strings.Join(cl.Addrs(), ","),
		opts: valkeybackend.Options{Addrs: cl.Addrs()},
		fault: func(t *testing.T, ctx context.Context, _ *valkeybackend.Backend) ([]int, time.Time) {
			slot, _ := cl.KeySlot(ctx, sdk.PartitionTag(0))
			owner, err := cl.SlotOwner(ctx, slot)
			if err == nil {
				var replica *valkeytest.Server
				if replica, err = cl.ReplicaOf(ctx, owner); err == nil {
					affected := partitionsOn(t, ctx, cl, owner)
					at := time.Now()
					if err = cl.Failover(ctx, replica); err == nil {
						checkLibrary(t, ctx, replica.Addr())
						return affected, at
					}
				}
			}
			t.Error(err)
			return nil, time.Now()
		}})
}

// TestFailoverClusterSlotMigration: as TestFailoverClusterPrimaryKilled,
// with partition 0's slot moved, 10 keys per MIGRATE, to a primary that
// joined the cluster (CLUSTER MEET) after every process connected, so it
// holds no Functions library: each process loads it there when it first
// meets "Function not found".
func TestFailoverClusterSlotMigration(t *testing.T) {
	cl := failoverCluster(t)
	var added *valkeytest.Server
	runFailover(t, failoverScenario{n: 2000, rate: 500, workerAddr: strings.Join(cl.Addrs(), ","),
		opts: valkeybackend.Options{Addrs: cl.Addrs()},
		before: func(t *testing.T) {
			var err error
			if added, err = cl.AddPrimary(t.Context()); err != nil {
				t.Fatal(err)
			}
		},
		fault: func(t *testing.T, ctx context.Context, _ *valkeybackend.Backend) ([]int, time.Time) {
			slot, _ := cl.KeySlot(ctx, sdk.PartitionTag(0))
			at := time.Now()
			if err := cl.MigrateSlot(ctx, slot, added, valkeytest.MigrateOptions{Batch: 10, Pause: 5 * time.Millisecond}); err != nil {
				t.Error(err)
			}
			t.Logf("slot %d moved to %s in %v", slot, added.Addr(), time.Since(at).Round(time.Millisecond))
			return []int{0}, at
		}})
}

// TestFailoverSentinel: 1,000 executions at 500/s through a Sentinel (the
// workers and the engine connect through it); halfway the primary is
// SIGKILLed and the Sentinel promotes the replica.
func TestFailoverSentinel(t *testing.T) {
	r := valkeytest.NewReplicated(t, valkeytest.ReplicatedOptions{})
	runFailover(t, failoverScenario{n: 1000, rate: 500, workerAddr: r.SentinelAddr(),
		workerArgs: []string{"--master-set", r.MasterName()},
		opts: valkeybackend.Options{Addrs: []string{r.SentinelAddr()}, ConfigureClient: func(co *valkey.ClientOption) {
			co.Sentinel = valkey.SentinelOption{MasterSet: r.MasterName()}
		}},
		fault: func(t *testing.T, ctx context.Context, _ *valkeybackend.Backend) ([]int, time.Time) {
			at := time.Now()
			p, err := r.KillPrimary(ctx)
			if err != nil {
				t.Error(err)
			} else {
				t.Logf("SIGKILL of the primary: the Sentinel promoted %s after %v", p.Addr(), time.Since(at).Round(time.Millisecond))
				checkLibrary(t, ctx, p.Addr())
			}
			all := make([]int, 16)
			for i := range all {
				all[i] = i
			}
			return all, at
		}})
}

// TestFailoverEngineAfterSlotMigration: the engine's scanners read their
// partitions' indexes through the client-side cache. Partition 0's slot
// moves to another primary while its lease index is empty (the engine has
// read it empty from the old owner), then a worker that connected after
// the move claims an execution there and never renews: the engine must
// still see the lease expire and reclaim the execution.
func TestFailoverEngineAfterSlotMigration(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cl, err := valkeytest.StartCluster(ctx, valkeytest.ClusterOptions{NodeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	b := connect(t, cl.Addrs())
	runEngine(t, b, faultConfig(t))
	time.Sleep(300 * time.Millisecond) // a few scan rounds: partition 0's empty indexes are cached
	slot, err := cl.KeySlot(ctx, sdk.PartitionTag(0))
	if err != nil {
		t.Fatal(err)
	}
	owner, err := cl.SlotOwner(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}
	var to *valkeytest.Server
	for _, s := range cl.Nodes() {
		if s != owner {
			to = s
			break
		}
	}
	if err := cl.MigrateSlot(ctx, slot, to, valkeytest.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	w := connect(t, cl.Addrs())
	var id sdk.ExecutionID
	for i := 0; id == ""; i++ { // creates go round the partitions
		r, err := w.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "moved", Kind: "k"})
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(string(r.ID), sdk.PartitionTag(0)+":") {
			id = r.ID
		}
	}
	c, err := w.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: "moved", WorkerID: "w", WorkerInstanceID: "w-1"},
		500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 20*time.Second, "the engine reclaiming the lease that lapsed on the moved slot", func() bool {
		d := describe(t, b, id)
		return d != nil && d.TotalAttempts > 1 || d != nil && d.State != sdk.StateActive
	})
	t.Logf("lease of 500ms on the moved slot reclaimed %v after the claim (attempt %s)", took.Round(time.Millisecond), c.Handle.AttemptID)
}
