package valkeybackend_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// replicated is a primary and one replica of it, both real valkey-servers.
type replicated struct {
	primary, replica *valkeytest.Server
	rc               valkey.Client // bound to the replica, for reading what it holds
}

// startReplicated starts a primary and a replica (--replicaof) and waits
// until the replica's link is up and the primary counts it.
func startReplicated(t *testing.T, extra ...string) *replicated {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// No diskless-sync delay: the replica's first sync starts at once.
	p, err := valkeytest.Start(ctx, valkeytest.Options{ExtraArgs: append([]string{"--repl-diskless-sync-delay", "0"}, extra...)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	host, port, _ := strings.Cut(p.Addr(), ":")
	r, err := valkeytest.Start(ctx, valkeytest.Options{ExtraArgs: append([]string{"--replicaof", host, port}, extra...)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	rc, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{r.Addr()}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	rs := &replicated{primary: p, replica: r, rc: rc}
	rs.waitLinked(t, ctx)
	return rs
}

// waitLinked waits for the replica's link to be up and the primary to count it.
func (rs *replicated) waitLinked(t *testing.T, ctx context.Context) {
	t.Helper()
	pc, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{rs.primary.Addr()}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for {
		ri, _ := rs.rc.Do(ctx, rs.rc.B().Info().Section("replication").Build()).ToString()
		pi, _ := pc.Do(ctx, pc.B().Info().Section("replication").Build()).ToString()
		if strings.Contains(ri, "master_link_status:up") && strings.Contains(pi, "connected_slaves:1") {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("replica never linked:\n%s\n%s", ri, pi)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// replicaState reads an execution's state as the replica holds it (the
// default namespace's record key, keys.go coreKey).
func (rs *replicated) replicaState(t *testing.T, id sdk.ExecutionID) string {
	t.Helper()
	s, err := rs.rc.Do(context.Background(), rs.rc.B().Hget().Key("ff:e:"+string(id)+":core").Field("state").Build()).ToString()
	if err != nil && !valkey.IsValkeyNil(err) {
		t.Fatal(err)
	}
	return s
}

func connectTo(t *testing.T, addr string, opts valkeybackend.Options) *valkeybackend.Backend {
	t.Helper()
	opts.Addrs = []string{addr}
	return connectOpts(t, opts, 4)
}

// TestWaitReplicasCompleteWaitsForTheReplica: with WaitReplicas 1, a
// completion returns only once the replica holds it. The replica is
// stopped (SIGSTOP) first, so an unacknowledged completion would return at
// once; it must still be waiting, and return when the replica resumes,
// with the replica holding the completed state.
func TestWaitReplicasCompleteWaitsForTheReplica(t *testing.T) {
	rs := startReplicated(t)
	ctx := context.Background()
	b := connectTo(t, rs.primary.Addr(), valkeybackend.Options{WaitReplicas: 1, WaitTimeout: time.Minute})
	id, task := claimOne(t, b, sdk.CreateExecutionArgs{Payload: []byte("p")}, time.Minute)
	// The create was acknowledged (the claim after it was not: a claim
	// never waits), so the replica knows the execution.
	if got := rs.replicaState(t, id); got == "" {
		t.Fatal("the replica does not hold an acknowledged create")
	}

	if err := rs.replica.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			rs.replica.Resume()
		}
	}()
	done := make(chan error, 1)
	go func() { done <- b.Complete(ctx, task.Handle, []byte("r")) }()
	select {
	case err := <-done:
		t.Fatalf("Complete returned (%v) while the replica was stopped", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := rs.replica.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := rs.replicaState(t, id); got != "completed" {
		t.Fatalf("replica holds state %q right after Complete returned; want completed", got)
	}
}

// TestWaitReplicasReportsNotReplicated: with the replica stopped, a
// completion lands on the primary but reports sdk.CodeNotReplicated (kind
// timeout, retryable) once WaitTimeout passes; the Worker's retry of it
// meets its own landed completion (execution_not_active of its epoch).
func TestWaitReplicasReportsNotReplicated(t *testing.T) {
	rs := startReplicated(t)
	ctx := context.Background()
	// The execution is made through a backend that waits long for the
	// replica (a loaded machine can starve it), then judged through one
	// with a short timeout.
	setup := connectTo(t, rs.primary.Addr(), valkeybackend.Options{WaitReplicas: 1, WaitTimeout: 30 * time.Second})
	id, task := claimOne(t, setup, sdk.CreateExecutionArgs{Payload: []byte("p")}, time.Minute)
	const timeout = 300 * time.Millisecond
	b := connectTo(t, rs.primary.Addr(), valkeybackend.Options{WaitReplicas: 1, WaitTimeout: timeout})
	if err := rs.replica.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := b.Complete(ctx, task.Handle, nil)
	took := time.Since(start)
	var se *sdk.Error
	if !errors.As(err, &se) || se.Code != sdk.CodeNotReplicated || se.Kind != sdk.KindTimeout || !sdk.Retryable(err) {
		t.Fatalf("Complete with the replica gone: %v; want a retryable not_replicated timeout", err)
	}
	if se.Op != "complete" || len(se.Detail) != 2 || se.Detail[0] != "0" || se.Detail[1] != "1" {
		t.Fatalf("error fields: op %q detail %v; want complete [0 1]", se.Op, se.Detail)
	}
	// Not before the timeout, and not long after it (a generous bound on
	// a shared machine: the call must not hang on the missing replica).
	if took < timeout || took > timeout+5*time.Second {
		t.Fatalf("not_replicated after %v; want it once the %v timeout passed", took, timeout)
	}
	// The write landed on the primary: the outcome was unknown, not failed.
	st, err := b.ReadExecutionState(ctx, id)
	if err != nil || st != sdk.StateCompleted {
		t.Fatalf("state on the primary: %v %v; want completed", st, err)
	}
	err = b.Complete(ctx, task.Handle, nil)
	if d, ok := notActive(err); !ok || d.Epoch != task.Handle.Epoch || d.State != sdk.StateCompleted {
		t.Fatalf("retried Complete: %v; want execution_not_active of its own completion", err)
	}
	// A create is judged the same way, and bad input still writes nothing
	// and says so without waiting.
	if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "rec", Kind: "k"}); sdk.CodeOf(err) != sdk.CodeNotReplicated {
		t.Fatalf("create with the replica gone: %v", err)
	}
	if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "", Kind: "k"}); !errors.Is(err, sdk.ErrValidation) {
		t.Fatalf("bad create: %v", err)
	}
}

func notActive(err error) (sdk.NotActiveDetail, bool) {
	var se *sdk.Error
	if !errors.As(err, &se) {
		return sdk.NotActiveDetail{}, false
	}
	return se.NotActive()
}

// TestWaitReplicasCost: a job's create and complete send one WAIT each with
// the setting, and none without it (a plain deployment pays nothing).
func TestWaitReplicasCost(t *testing.T) {
	rs := startReplicated(t)
	addrs := []string{rs.primary.Addr()}
	for _, n := range []int{0, 1} {
		t.Run("wait"+strconv.Itoa(n), func(t *testing.T) {
			flushAll(t, addrs)
			b := connectTo(t, rs.primary.Addr(), valkeybackend.Options{WaitReplicas: n, WaitTimeout: 30 * time.Second})
			resetStats(t, addrs)
			_, task := claimOne(t, b, sdk.CreateExecutionArgs{Payload: []byte("p")}, time.Minute)
			if err := b.Complete(context.Background(), task.Handle, nil); err != nil {
				t.Fatal(err)
			}
			calls := commandCounts(t, addrs)
			// claimOne's create registers its lane in the same call (a SADD
			// before the FCALL: one WAIT covers both); the claim never waits.
			if want := int64(2 * n); calls["wait"] != want {
				t.Fatalf("WAITs: %d, want %d (all: %v)", calls["wait"], want, calls)
			}
		})
	}
}

// TestWaitReplicasLaneRegistry: a PutSchedule, and a batch create whose
// items may end without a create (an idempotency key), register a lane
// the backend has not seen after their call; that SADD is acknowledged
// too: one more WAIT, and the replica holds the lane when the call
// returns. A lane the backend knows costs no SADD and no WAIT.
func TestWaitReplicasLaneRegistry(t *testing.T) {
	rs := startReplicated(t)
	ctx := context.Background()
	addrs := []string{rs.primary.Addr()}
	b := connectTo(t, rs.primary.Addr(), valkeybackend.Options{WaitReplicas: 1, WaitTimeout: 30 * time.Second})
	replicaHasLane := func(lane string) bool {
		t.Helper()
		n, err := rs.rc.Do(ctx, rs.rc.B().Sismember().Key("ff:lanes").Member(lane).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	check := func(what, lane string, wantWaits int64, call func() error) {
		t.Helper()
		resetStats(t, addrs)
		if err := call(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		calls := commandCounts(t, addrs)
		if calls["wait"] != wantWaits {
			t.Fatalf("%s: %d WAITs, want %d (all: %v)", what, calls["wait"], wantWaits, calls)
		}
		if wantWaits == 2 && calls["sadd"] != 1 {
			t.Fatalf("%s: %d SADDs, want the lane's one (all: %v)", what, calls["sadd"], calls)
		}
		if !replicaHasLane(lane) {
			t.Fatalf("%s: the replica does not hold lane %q when the call returned", what, lane)
		}
	}
	put := func(id sdk.ScheduleID) func() error {
		return func() error {
			_, err := b.PutSchedule(ctx, sdk.Schedule{ID: id, Every: time.Hour, Lane: "sched-lane", Kind: "k"})
			return err
		}
	}
	check("first PutSchedule of a lane", "sched-lane", 2, put("s1"))
	check("PutSchedule of a known lane", "sched-lane", 1, put("s2"))
	batch := func(key string) func() error {
		return func() error {
			_, err := b.CreateExecutions(ctx, []sdk.CreateExecutionArgs{{Lane: "batch-lane", Kind: "k", IdempotencyKey: key}})
			return err
		}
	}
	check("first keyed batch of a lane", "batch-lane", 2, batch("i1"))
	check("keyed batch of a known lane", "batch-lane", 1, batch("i2"))
}

// TestWaitReplicasClusterPinsWaitToTheSlot: on a cluster, each WAIT goes to
// the primary of its FCALL's slot (WAIT has no key: it is pinned with
// SetSlot). The shared cluster has no replicas, so each acknowledged call
// reports not_replicated; what is checked is where the WAITs ran.
func TestWaitReplicasClusterPinsWaitToTheSlot(t *testing.T) {
	addrs := topologies()[1].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{WaitReplicas: 1, WaitTimeout: 5 * time.Millisecond})
	ctx := context.Background()
	for p := range 8 {
		// One create per partition; an explicit id fixes the partition.
		resetStats(t, addrs)
		id := sdk.ExecutionID(sdk.PartitionTag(p) + ":0000000" + strconv.Itoa(p) + "-0000-4000-8000-000000000000")
		_, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: id, Lane: "pin", Kind: "k"})
		if sdk.CodeOf(err) != sdk.CodeNotReplicated {
			t.Fatalf("create on a cluster without replicas: %v", err)
		}
		var where []string
		for _, a := range addrs {
			calls := commandCounts(t, []string{a})
			if calls["fcall"] > 0 || calls["wait"] > 0 {
				where = append(where, a+": fcall "+strconv.FormatInt(calls["fcall"], 10)+" wait "+strconv.FormatInt(calls["wait"], 10))
			}
			if calls["wait"] != calls["fcall"] {
				t.Fatalf("partition %d: node %s ran %d FCALLs and %d WAITs; want the WAIT where the FCALL ran", p, a, calls["fcall"], calls["wait"])
			}
		}
		if len(where) != 1 {
			t.Fatalf("partition %d: FCALL and WAIT ran on %v; want one node", p, where)
		}
	}
}

// TestWaitAOF: WaitAOF needs appendonly on the primary (Connect refuses
// otherwise, writing nothing), and with it a completion returns once the
// primary and the replica fsynced it.
func TestWaitAOF(t *testing.T) {
	plain := startReplicated(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{plain.primary.Addr()}, WaitAOF: true}); !errors.Is(err, sdk.ErrValidation) {
		t.Fatalf("WaitAOF without appendonly: %v; want a validation error", err)
	}
	rs := startReplicated(t, "--appendonly", "yes", "--appendfsync", "everysec")
	b := connectTo(t, rs.primary.Addr(), valkeybackend.Options{WaitAOF: true, WaitReplicas: 1, WaitTimeout: 30 * time.Second})
	resetStats(t, []string{rs.primary.Addr()})
	id, task := claimOne(t, b, sdk.CreateExecutionArgs{Payload: []byte("p")}, time.Minute)
	if err := b.Complete(ctx, task.Handle, nil); err != nil {
		t.Fatal(err)
	}
	if got := rs.replicaState(t, id); got != "completed" {
		t.Fatalf("replica holds %q after an fsync-acknowledged Complete", got)
	}
	if calls := commandCounts(t, []string{rs.primary.Addr()}); calls["waitaof"] != 2 {
		t.Fatalf("WAITAOFs: %d, want 2 (%v)", calls["waitaof"], calls)
	}
}

// TestWaitOptionsValidated: negative settings are refused before dialing.
func TestWaitOptionsValidated(t *testing.T) {
	for _, o := range []valkeybackend.Options{{WaitReplicas: -1}, {WaitTimeout: -time.Second}} {
		if _, err := valkeybackend.Connect(context.Background(), o); !errors.Is(err, sdk.ErrValidation) {
			t.Fatalf("%+v: %v; want a validation error", o, err)
		}
	}
}

// replicaCalls reads INFO commandstats calls on the replica.
func (rs *replicated) replicaCalls(t *testing.T) map[string]int64 {
	t.Helper()
	info, err := rs.rc.Do(context.Background(), rs.rc.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	return valkeytest.ParseCommandStats(info)
}

func (rs *replicated) resetReplicaStats(t *testing.T) {
	t.Helper()
	if err := rs.rc.Do(context.Background(), rs.rc.B().ConfigResetstat().Build()).Error(); err != nil {
		t.Fatal(err)
	}
}

// TestReadFromReplicas: with ReadFromReplicas, snapshot reads and the
// scanners' due-list reads are served by the replica (its commandstats
// count them, the primary's do not), and after an acknowledged write they
// read what it wrote. Without the option the replica serves nothing.
func TestReadFromReplicas(t *testing.T) {
	rs := startReplicated(t)
	ctx := context.Background()
	primary := []string{rs.primary.Addr()}

	// A single server's replicas must be named.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := valkeybackend.Connect(cctx, valkeybackend.Options{Addrs: primary, ReadFromReplicas: true}); !errors.Is(err, sdk.ErrValidation) {
		t.Fatalf("ReadFromReplicas without ReplicaAddrs: %v", err)
	}

	plain := connectTo(t, rs.primary.Addr(), valkeybackend.Options{WaitReplicas: 1, WaitTimeout: 30 * time.Second})
	b := connectTo(t, rs.primary.Addr(), valkeybackend.Options{WaitReplicas: 1, WaitTimeout: 30 * time.Second, ReadFromReplicas: true,
		ReplicaAddrs: []string{rs.replica.Addr()}})
	id, task := claimOne(t, b, sdk.CreateExecutionArgs{Payload: []byte("p")}, time.Minute)
	if err := b.Complete(ctx, task.Handle, []byte("r")); err != nil {
		t.Fatal(err)
	}

	// Without the option: the primary serves the reads.
	rs.resetReplicaStats(t)
	if s, err := plain.DescribeExecution(ctx, id); err != nil || s.State != sdk.StateCompleted {
		t.Fatalf("describe: %+v %v", s, err)
	}
	if calls := rs.replicaCalls(t); calls["hgetall"] != 0 {
		t.Fatalf("the replica served a read of a backend without ReadFromReplicas: %v", calls)
	}

	resetStats(t, primary)
	rs.resetReplicaStats(t)
	s, err := b.DescribeExecution(ctx, id)
	if err != nil || s.State != sdk.StateCompleted {
		t.Fatalf("describe from the replica: %+v %v", s, err)
	}
	info, err := b.ReadExecutionInfo(ctx, id)
	if err != nil || info.Snapshot.State != sdk.StateCompleted {
		t.Fatalf("execution info from the replica: %+v %v", info, err)
	}
	p, err := id.Partition()
	if err != nil {
		t.Fatal(err)
	}
	page, err := b.ListExecutions(ctx, p, "", 10)
	if err != nil || len(page.IDs) != 1 || page.IDs[0] != id {
		t.Fatalf("list from the replica: %+v %v", page, err)
	}
	if _, err := b.Due(ctx, p, valkeybackend.DueLeases, 10); err != nil {
		t.Fatal(err)
	}
	rc, pc := rs.replicaCalls(t), commandCounts(t, primary)
	if rc["hgetall"] < 2 || rc["fcall_ro"] != 2 || rc["smembers"] != 1 {
		t.Fatalf("replica served %v; want the core reads, ff_list and ff_due, and the lane registry", rc)
	}
	if pc["fcall_ro"] != 0 || pc["smembers"] != 0 {
		t.Fatalf("primary served %v; want no snapshot reads", pc)
	}
}

// TestMinReplicasToWriteIsTransient: a primary with min-replicas-to-write
// and no replica refuses every write (NOREPLICAS); a create reports it as
// a retryable transport error, not a bug, and writes nothing.
func TestMinReplicasToWriteIsTransient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := connectTo(t, s.Addr(), valkeybackend.Options{})
	if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "l", Kind: "k"}); err != nil {
		t.Fatal(err)
	}
	c := b.Client()
	if err := c.Do(ctx, c.B().ConfigSet().ParameterValue().ParameterValue("min-replicas-to-write", "1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	_, err = b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "l", Kind: "k"})
	if !errors.Is(err, sdk.ErrTransport) || !sdk.Retryable(err) || !strings.Contains(err.Error(), "NOREPLICAS") {
		t.Fatalf("create under min-replicas-to-write without replicas: %v; want a retryable transport error", err)
	}
	page, err := b.ListExecutions(ctx, 0, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	n := len(page.IDs)
	for p := 1; p < b.Partitions(); p++ {
		pg, err := b.ListExecutions(ctx, p, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		n += len(pg.IDs)
	}
	if n != 1 {
		t.Fatalf("%d executions after a refused create; want the first alone", n)
	}
}
