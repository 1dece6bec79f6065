package valkeytest_test

import (
	"context"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// single connects to one node alone (no cluster routing, no cache).
func single(t *testing.T, addr string) valkey.Client {
	t.Helper()
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// role returns what INFO replication says a node is.
func role(t *testing.T, addr string) string {
	t.Helper()
	c := single(t, addr)
	r, err := c.Do(t.Context(), c.B().Role().Build().Pin()).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	s, _ := r[0].ToString()
	return s
}

// TestClusterReplicasFailover: a 3x1 cluster has three primaries and a replica
// of each; a manual failover, a SIGKILLed primary and a slot moved to a node
// added later each leave the data where a cluster client finds it.
func TestClusterReplicasFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cl, err := valkeytest.StartCluster(ctx, valkeytest.ClusterOptions{Replicas: 1, NodeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	if len(cl.Nodes()) != 3 || len(cl.Replicas()) != 3 {
		t.Fatalf("%d primaries and %d replicas, want 3 and 3", len(cl.Nodes()), len(cl.Replicas()))
	}
	for _, s := range cl.Nodes() {
		if r := role(t, s.Addr()); r != "master" {
			t.Fatalf("%s is %s, want master", s.Addr(), r)
		}
	}
	for _, s := range cl.Replicas() {
		if r := role(t, s.Addr()); r != "slave" {
			t.Fatalf("%s is %s, want slave", s.Addr(), r)
		}
	}
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: cl.Addrs(), DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	set := func(k, v string) {
		t.Helper()
		if err := c.Do(ctx, c.B().Set().Key(k).Value(v).Build().Pin()).Error(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	get := func(k string) string {
		t.Helper()
		var v string
		var err error
		for range 50 { // the client learns the new topology from MOVED
			if v, err = c.Do(ctx, c.B().Get().Key(k).Build().Pin()).ToString(); err == nil {
				return v
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("GET %s: %v", k, err)
		return ""
	}
	slot, err := cl.KeySlot(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	set("k1", "a")
	owner, err := cl.SlotOwner(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}
	replica, err := cl.ReplicaOf(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Failover(ctx, replica); err != nil {
		t.Fatal(err)
	}
	if now, _ := cl.SlotOwner(ctx, slot); now != replica {
		t.Fatalf("after CLUSTER FAILOVER slot %d is served by %v, want %s", slot, now, replica.Addr())
	}
	if v := get("k1"); v != "a" {
		t.Fatalf("k1 = %q after the manual failover, want a", v)
	}
	set("k1", "b")
	// Kill the new primary: the old one, now its replica, is promoted.
	start := time.Now()
	promoted, err := cl.KillPrimary(ctx, replica)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILL to promotion everywhere: %v", time.Since(start))
	if promoted != owner {
		t.Fatalf("promoted %s, want the old primary %s", promoted.Addr(), owner.Addr())
	}
	if v := get("k1"); v != "b" {
		t.Fatalf("k1 = %q after the kill, want b", v)
	}
	// A slot moves to a node added later, key by key.
	added, err := cl.AddPrimary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		set("{k1}"+string(rune('a'+i)), "x")
	}
	if err := cl.MigrateSlot(ctx, slot, added, valkeytest.MigrateOptions{Batch: 4}); err != nil {
		t.Fatal(err)
	}
	if now, _ := cl.SlotOwner(ctx, slot); now != added {
		t.Fatalf("after MigrateSlot slot %d is served by %v, want %s", slot, now, added.Addr())
	}
	if n, err := single(t, added.Addr()).Do(ctx, c.B().Dbsize().Build().Pin()).AsInt64(); err != nil || n != 26 {
		t.Fatalf("DBSIZE on the new owner = %d, %v; want 26", n, err)
	}
	if v := get("{k1}c"); v != "x" {
		t.Fatalf("{k1}c = %q after the migration, want x", v)
	}
}

// TestReplicatedSentinelFailover: the Sentinel names the primary, moves it to
// the replica on SENTINEL FAILOVER and again when that primary is SIGKILLed,
// and the data written before each switch is on the new primary.
func TestReplicatedSentinelFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	began := time.Now()
	r := valkeytest.NewReplicated(t, valkeytest.ReplicatedOptions{})
	t.Logf("started in %v", time.Since(began))
	first, err := r.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first != r.Servers()[0] {
		t.Fatalf("the sentinel names %s, want %s", first.Addr(), r.Servers()[0].Addr())
	}
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{r.SentinelAddr()}, DisableCache: true,
		Sentinel: valkey.SentinelOption{MasterSet: r.MasterName()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Do(ctx, c.B().Set().Key("k").Value("1").Build().Pin()).Error(); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	second, err := r.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SENTINEL FAILOVER settled in %v", time.Since(began))
	if second == first || role(t, second.Addr()) != "master" || role(t, first.Addr()) != "slave" {
		t.Fatalf("after SENTINEL FAILOVER: primary %s (was %s)", second.Addr(), first.Addr())
	}
	if v, err := single(t, second.Addr()).Do(ctx, c.B().Get().Key("k").Build().Pin()).ToString(); err != nil || v != "1" {
		t.Fatalf("k on the new primary = %q, %v", v, err)
	}
	start := time.Now()
	third, err := r.KillPrimary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILL to promotion: %v", time.Since(start))
	if third != first {
		t.Fatalf("promoted %s, want %s", third.Addr(), first.Addr())
	}
}
