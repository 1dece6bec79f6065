package valkeybackend_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/sdk/sdktest"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// nsBackend empties namespace ns on addrs (its keys only: another
// namespace's work and libraries stay) and connects to it with opts.
func nsBackend(t *testing.T, addrs []string, ns string, opts valkeybackend.Options) *valkeybackend.Backend {
	t.Helper()
	dropNamespace(t, addrs, ns)
	opts.Addrs, opts.Namespace = addrs, ns
	return connectOpts(t, opts, 8)
}

// dropNamespace deletes every key of namespace ns on every primary.
func dropNamespace(t *testing.T, addrs []string, ns string) {
	t.Helper()
	err := valkeytest.EachPrimary(context.Background(), addrs, func(c valkey.Client) error {
		ctx := context.Background()
		var cursor uint64
		for {
			e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(ns+":*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				return err
			}
			for _, k := range e.Elements {
				if err := c.Do(ctx, c.B().Del().Key(k).Build()).Error(); err != nil {
					return err
				}
			}
			if e.Cursor == 0 {
				return nil
			}
			cursor = e.Cursor
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// nsKeyspace is keyspace(t, addrs) cut to namespace ns's keys.
func nsKeyspace(t *testing.T, addrs []string, ns string) map[string]string {
	t.Helper()
	all := keyspace(t, addrs)
	for k := range all {
		if !strings.HasPrefix(k, ns+":") {
			delete(all, k)
		}
	}
	return all
}

// libraries lists the Functions libraries of every primary, name ->
// sorted function names (the union over primaries).
func libraries(t *testing.T, addrs []string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := valkeytest.EachPrimary(context.Background(), addrs, func(c valkey.Client) error {
		libs, err := c.Do(context.Background(), c.B().FunctionList().Build()).ToArray()
		if err != nil {
			return err
		}
		for _, l := range libs {
			m, err := l.AsMap()
			if err != nil {
				return err
			}
			lib, fnList := m["library_name"], m["functions"]
			name, _ := lib.ToString()
			fns, _ := fnList.ToArray()
			var names []string
			for _, f := range fns {
				fm, _ := f.AsMap()
				fn := fm["name"]
				n, _ := fn.ToString()
				names = append(names, n)
			}
			slices.Sort(names)
			out[name] = names
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A namespace that is not 1 to 24 lowercase letters and digits, starting
// with a letter, fails Connect with invalid_input, and nothing is written:
// no key, no library.
func TestNamespaceRejected(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	flushAll(t, addrs)
	libsBefore := libraries(t, addrs)
	for _, ns := range []string{"FF", "a:b", "a{b", "a_b", "1a", "a-b", "a b", "é", strings.Repeat("a", 25), ":", "{p:1}"} {
		b, err := valkeybackend.Connect(t.Context(), valkeybackend.Options{Addrs: addrs, Namespace: ns})
		if err == nil {
			b.Close()
			t.Fatalf("namespace %q: Connect succeeded", ns)
		}
		var se *sdk.Error
		if !errors.As(err, &se) || se.Code != sdk.CodeInvalidInput {
			t.Fatalf("namespace %q: %v, want a %s sdk.Error", ns, err, sdk.CodeInvalidInput)
		}
	}
	if ks := keyspace(t, addrs); len(ks) != 0 {
		t.Fatalf("rejected namespaces wrote %d keys: %v", len(ks), ks)
	}
	if libs := libraries(t, addrs); len(libs) != len(libsBefore) {
		t.Fatalf("rejected namespaces loaded libraries: %v, before %v", libs, libsBefore)
	}
	// The longest accepted namespace connects.
	long := nsBackend(t, addrs, strings.Repeat("z", 24), valkeybackend.Options{})
	if long.Namespace() != strings.Repeat("z", 24) {
		t.Fatalf("Namespace() = %q", long.Namespace())
	}
}

// Two namespaces run the whole conformance suite at once on one server (and
// one cluster): neither sees the other's keys, work or offers, and each
// loads a library of its own.
func TestConformanceTwoNamespaces(t *testing.T) {
	const maxPayload = 64 << 10
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			addrs := topo.addrs(t)
			flushAll(t, addrs)
			if err := valkeytest.DeleteLibrary(t.Context(), addrs, "flowfabric"); err != nil {
				t.Fatal(err)
			}
			for _, ns := range []string{"a", "b"} {
				t.Run(ns, func(t *testing.T) {
					t.Parallel()
					opts := valkeybackend.Options{MaxPayloadBytes: maxPayload}
					sdktest.Run(t, sdktest.Harness{
						New: func(t *testing.T) sdk.EngineBackend {
							return nsBackend(t, addrs, ns, opts)
						},
						Snapshot:        func(t *testing.T) map[string]string { return nsKeyspace(t, addrs, ns) },
						MaxPayloadBytes: maxPayload,
					})
				})
			}
			t.Cleanup(func() {
				libs := libraries(t, addrs)
				if !slices.Contains(libs["flowfabric_a"], "a_create") || !slices.Contains(libs["flowfabric_b"], "b_create") {
					t.Errorf("libraries after both suites: %v", libs)
				}
				if _, ok := libs["flowfabric"]; ok {
					t.Errorf("the default library was loaded by namespaced backends: %v", libs)
				}
			})
		})
	}
}

// Work submitted in one namespace is never claimed, listed, read, offered
// to, recovered or scanned from another on the same server, though both use
// the same lane, worker instance and partition numbers.
func TestNamespaceIsolation(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			addrs := topo.addrs(t)
			flushAll(t, addrs)
			ctx := t.Context()
			a := nsBackend(t, addrs, "a", valkeybackend.Options{Partitions: 4})
			b := nsBackend(t, addrs, "b", valkeybackend.Options{Partitions: 2})
			if a.Partitions() != 4 || b.Partitions() != 2 {
				t.Fatalf("partitions a=%d b=%d: each namespace keeps its own", a.Partitions(), b.Partitions())
			}
			const lane sdk.LaneID = "shared"
			const inst sdk.WorkerInstanceID = "same-instance"
			claim := sdk.ClaimArgs{Lane: lane, WorkerID: "w", WorkerInstanceID: inst, LeaseTTL: 200 * time.Millisecond}

			// Both watch hand-offs for the same instance; b offers a slot on
			// the lane, which a's create must not take.
			handed := map[string]chan sdk.ClaimedTask{"a": make(chan sdk.ClaimedTask, 4), "b": make(chan sdk.ClaimedTask, 4)}
			for ns, be := range map[string]*valkeybackend.Backend{"a": a, "b": b} {
				ch := handed[ns]
				if err := be.WatchHandoffs(ctx, inst, func(c sdk.ClaimedTask) { ch <- c }); err != nil {
					t.Fatalf("%s watches hand-offs: %v", ns, err)
				}
			}
			offers, err := b.OfferClaims(ctx, sdk.OfferArgs{Lane: lane, LeaseIDs: []string{sdk.NewToken()}, WorkerID: "w",
				WorkerInstanceID: inst, TTL: time.Minute, LeaseTTL: time.Minute})
			if err != nil || len(offers) != 1 {
				t.Fatalf("b's offer: %v %v", offers, err)
			}
			// Both creates go to the partition b's offer serves (on a
			// cluster an offer serves one partition's creates).
			p := max(offers[0].Partition, 0)
			id := sdk.NewExecutionID(p)
			res, err := a.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: id, Lane: lane, Kind: "k", Payload: []byte("a's"),
				IdempotencyKey: "idem"})
			if err != nil || res.State != sdk.StateWaiting {
				t.Fatalf("a's create: %+v %v (want waiting: b's offer is not a's)", res, err)
			}

			// b sees none of it.
			if _, err := b.DescribeExecution(ctx, id); !errors.Is(err, sdk.ErrNotFound) {
				t.Fatalf("b describes a's execution: %v", err)
			}
			if got, err := b.ScanEligibleExecutions(ctx, sdk.ScanEligibleArgs{Lane: lane, Partition: p, Limit: 10}); err != nil || len(got) != 0 {
				t.Fatalf("b scans a's eligible set: %v %v", got, err)
			}
			if got, err := b.Claim(ctx, claim); err != nil || got != nil {
				t.Fatalf("b claims a's work: %+v %v", got, err)
			}
			for p := range b.Partitions() {
				if page, err := b.ListExecutions(ctx, p, "", 100); err != nil || len(page.IDs) != 0 {
					t.Fatalf("b lists partition %d: %+v %v", p, page, err)
				}
			}
			if page, err := b.ListLanes(ctx, "", 100); err != nil || len(page.Lanes) != 0 {
				t.Fatalf("b lists lanes: %+v %v", page, err)
			}
			// The same idempotency key in b makes a new execution of b's.
			bres, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: sdk.NewExecutionID(p), Lane: lane, Kind: "k", Payload: []byte("b's"),
				IdempotencyKey: "idem"})
			if err != nil || bres.Duplicate || bres.ID == id {
				t.Fatalf("b's create with a's idempotency key: %+v %v", bres, err)
			}
			if bres.State != sdk.StateActive {
				t.Fatalf("b's create: state %s, want active (handed to b's own offer)", bres.State)
			}
			select {
			case c := <-handed["b"]:
				if c.Handle.ExecutionID != bres.ID {
					t.Fatalf("b was handed %s, want %s", c.Handle.ExecutionID, bres.ID)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("b's hand-off never reached b's watcher")
			}

			// a claims its own, and lets the lease lapse: b's recovery finds
			// nothing due, a's reclaims it.
			got, err := a.Claim(ctx, claim)
			if err != nil || got == nil || got.Handle.ExecutionID != id {
				t.Fatalf("a claims: %+v %v", got, err)
			}
			time.Sleep(300 * time.Millisecond)
			for p := range b.Partitions() {
				if due, err := b.Due(ctx, p, valkeybackend.DueLeases, 100); err != nil || slices.Contains(due, id) {
					t.Fatalf("b finds a's lapsed lease due on partition %d: %v %v", p, due, err)
				}
			}
			_, _ = b.ReclaimExpired(ctx, []sdk.ExecutionID{id}, 3) // a's id means nothing to b
			if st, err := a.ReadExecutionState(ctx, id); err != nil || st != sdk.StateActive {
				t.Fatalf("a's execution after b's reclaim: %s %v", st, err)
			}
			due, err := a.Due(ctx, p, valkeybackend.DueLeases, 100)
			if err != nil || !slices.Contains(due, id) {
				t.Fatalf("a's lapsed lease not due in a: %v %v", due, err)
			}
			if counts, err := a.ReclaimExpired(ctx, due, 3); err != nil || len(counts) == 0 {
				t.Fatalf("a reclaims its execution: %+v %v", counts, err)
			}
			if st, err := a.ReadExecutionState(ctx, id); err != nil || st != sdk.StateWaiting {
				t.Fatalf("a's execution after its reclaim: %s %v", st, err)
			}
			// b's work is b's alone.
			if st, err := b.ReadExecutionState(ctx, bres.ID); err != nil || st != sdk.StateActive {
				t.Fatalf("b's execution: %s %v", st, err)
			}
			if _, err := a.DescribeExecution(ctx, bres.ID); !errors.Is(err, sdk.ErrNotFound) {
				t.Fatalf("a describes b's execution: %v", err)
			}
			select {
			case c := <-handed["a"]:
				t.Fatalf("a's watcher of the same instance was handed %+v", c)
			default:
			}
			// Every key is one namespace's.
			for k := range keyspace(t, addrs) {
				if !strings.HasPrefix(k, "a:") && !strings.HasPrefix(k, "b:") {
					t.Fatalf("key %q belongs to neither namespace", k)
				}
			}
			if a.EnginesKey() != "a:engines" || b.LaneIndexKeys(0, lane).Eligible != "b:i:{p:0}:shared:eligible" {
				t.Fatalf("EnginesKey %q, LaneIndexKeys %+v", a.EnginesKey(), b.LaneIndexKeys(0, lane))
			}
			if h, w := a.QuotaKeys("q"); !strings.HasPrefix(h, "a:q:{q:") || w != h+":win" {
				t.Fatalf("QuotaKeys %q %q", h, w)
			}
		})
	}
}

// The default namespace is the layout from before namespaces: "ff:" keys,
// the "flowfabric" library, "ff_" functions, Namespace "ff"; and another
// namespace's keys are the default's with the prefix swapped, key for key.
func TestNamespaceDefaultUnchanged(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	work := func(b *valkeybackend.Backend) {
		ctx := t.Context()
		ids := []sdk.ExecutionID{"{p:1}:0f8fad5b-d9cb-469f-a165-70867728950e", "{p:2}:7c9e6679-7425-40de-944b-e07fc1f90ae7"}
		for i, id := range ids {
			if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: id, Lane: "l", Kind: "k", Payload: []byte("p"),
				IdempotencyKey: "k" + string(id), Tags: map[string]string{"t": "v"}, LeaseHistory: true}); err != nil {
				t.Fatal(err)
			}
			if i > 0 {
				break // the second stays waiting
			}
			got, err := b.Claim(ctx, sdk.ClaimArgs{Lane: "l", WorkerID: "w", WorkerInstanceID: "i"})
			if err != nil || got == nil || got.Handle.ExecutionID != id {
				t.Fatalf("claim: %+v %v", got, err)
			}
			if err := b.Complete(ctx, got.Handle, []byte("r")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b.EngineHeartbeat(ctx, "e", time.Now(), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	names := func() []string {
		var out []string
		for k := range keyspace(t, addrs) {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}

	flushAll(t, addrs)
	if err := valkeytest.DeleteLibrary(t.Context(), addrs, "flowfabric"); err != nil {
		t.Fatal(err)
	}
	def := freshBackend(t, addrs, valkeybackend.Options{DisableHandoff: true})
	if def.Namespace() != valkeybackend.DefaultNamespace || valkeybackend.DefaultNamespace != "ff" {
		t.Fatalf("default namespace %q (%q)", def.Namespace(), valkeybackend.DefaultNamespace)
	}
	work(def)
	defKeys := names()
	for _, k := range defKeys {
		if !strings.HasPrefix(k, "ff:") {
			t.Fatalf("default namespace key %q", k)
		}
	}
	if fns := libraries(t, addrs)["flowfabric"]; !slices.Contains(fns, "ff_create") || !slices.Contains(fns, "ff_version") {
		t.Fatalf("default library's functions: %v", fns)
	}
	// An explicit "ff" is the default.
	explicit := freshBackend(t, addrs, valkeybackend.Options{Namespace: "ff", DisableHandoff: true})
	work(explicit)
	if got := names(); !slices.Equal(got, defKeys) {
		t.Fatalf("Namespace \"ff\" keys differ from the default's:\n%v\n%v", got, defKeys)
	}

	flushAll(t, addrs)
	x := freshBackend(t, addrs, valkeybackend.Options{Namespace: "x", DisableHandoff: true})
	work(x)
	var swapped []string
	for _, k := range names() {
		rest, ok := strings.CutPrefix(k, "x:")
		if !ok {
			t.Fatalf("namespace x key %q", k)
		}
		swapped = append(swapped, "ff:"+rest)
	}
	slices.Sort(swapped)
	if !slices.Equal(swapped, defKeys) {
		t.Fatalf("namespace x's keys, prefix swapped, differ from the default's:\n%v\n%v", swapped, defKeys)
	}
	if len(defKeys) < 10 {
		t.Fatalf("the workload wrote only %d keys", len(defKeys))
	}
}

// Each namespace loads, versions and locks its own library: Prepare in one
// is a no-op once loaded, never touches the other's, waits for its own
// load lock only, and a namespace whose library is gone answers a
// retryable transport error while it loads it again (unavailable when told
// not to prepare) while the other keeps working.
func TestNamespacePrepare(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	ctx := t.Context()
	flushAll(t, addrs)
	for _, lib := range []string{"flowfabric_pa", "flowfabric_pb"} {
		if err := valkeytest.DeleteLibrary(ctx, addrs, lib); err != nil {
			t.Fatal(err)
		}
	}
	pa := nsBackend(t, addrs, "pa", valkeybackend.Options{})
	if out, err := pa.Prepare(ctx); err != nil || out.Applied {
		t.Fatalf("a second Prepare in pa: %+v %v, want a no-op", out, err)
	}
	pb := nsBackend(t, addrs, "pb", valkeybackend.Options{})
	libs := libraries(t, addrs)
	if !slices.Contains(libs["flowfabric_pa"], "pa_version") || !slices.Contains(libs["flowfabric_pb"], "pb_version") {
		t.Fatalf("libraries: %v", libs)
	}
	create := func(b *valkeybackend.Backend) error {
		_, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "l", Kind: "k"})
		return err
	}
	if err := valkeytest.DeleteLibrary(ctx, addrs, "flowfabric_pb"); err != nil {
		t.Fatal(err)
	}
	if err := create(pb); sdk.KindOf(err) != sdk.KindTransport || !sdk.Retryable(err) ||
		!strings.Contains(err.Error(), "being loaded") {
		t.Fatalf("pb's create with its library gone: %v, want a retryable transport error (pb loads it again)", err)
	}
	if err := create(pa); err != nil {
		t.Fatalf("pa's create with pb's library gone: %v", err)
	}
	// pb's refused create started a Prepare in the background (heal.go),
	// which loads pb's library again; take it away once more for the lock
	// check below.
	for deadline := time.Now().Add(5 * time.Second); !slices.Contains(libraries(t, addrs)["flowfabric_pb"], "pb_version"); {
		if time.Now().After(deadline) {
			t.Fatal("pb's library not loaded again within 5s of the refused create")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := valkeytest.DeleteLibrary(ctx, addrs, "flowfabric_pb"); err != nil {
		t.Fatal(err)
	}
	// A backend told not to prepare loads nothing: its call is refused as
	// unavailable ("call Prepare"), and the library stays gone.
	skip := connectOpts(t, valkeybackend.Options{Addrs: addrs, Namespace: "pb", SkipPrepare: true}, 8)
	if err := create(skip); sdk.KindOf(err) != sdk.KindUnavailable || !strings.Contains(err.Error(), "call Prepare") {
		t.Fatalf("create through a SkipPrepare backend with the library gone: %v, want unavailable", err)
	}
	time.Sleep(100 * time.Millisecond)
	if slices.Contains(libraries(t, addrs)["flowfabric_pb"], "pb_version") {
		t.Fatal("a SkipPrepare backend's refused call loaded the library")
	}
	// pa's load lock held: pb's Prepare does not wait for it.
	raw := nodeClients(t, addrs)[0]
	defer raw.Close()
	if err := raw.Do(ctx, raw.B().Set().Key("pa:prepare").Value("someone").Px(time.Minute).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if out, err := pb.Prepare(pctx); err != nil || !out.Applied {
		t.Fatalf("pb's Prepare while pa's lock is held: %+v %v", out, err)
	}
	if err := create(pb); err != nil {
		t.Fatalf("pb's create after its Prepare: %v", err)
	}
}
