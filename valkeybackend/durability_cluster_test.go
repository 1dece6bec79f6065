package valkeybackend_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestDurabilityOnClusterWithReplicas: on a 3-primary cluster with a
// replica each, acknowledged completions on every partition return
// success and the replica of each execution's slot owner holds the
// completed state when they do; with ReadFromReplicas the snapshot reads
// are served by the replicas (their commandstats), none by the primaries.
func TestDurabilityOnClusterWithReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := valkeytest.StartCluster(ctx, valkeytest.ClusterOptions{Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := freshBackend(t, c.Addrs(), valkeybackend.Options{WaitReplicas: 1, WaitTimeout: 30 * time.Second, ReadFromReplicas: true})

	stateOn := func(s *valkeytest.Server, key string) string {
		t.Helper()
		rc, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{s.Addr()}, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		res := rc.DoMulti(ctx, rc.B().Readonly().Build(), rc.B().Hget().Key(key).Field("state").Build())
		v, err := res[1].ToString()
		if err != nil && !valkey.IsValkeyNil(err) {
			t.Fatal(err)
		}
		return v
	}
	var ids []sdk.ExecutionID
	for p := range b.Partitions() {
		id := sdk.ExecutionID(sdk.PartitionTag(p) + ":0000000" + strconv.Itoa(p) + "-0000-4000-8000-000000000000")
		if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: id, Lane: "dur", Kind: "k"}); err != nil {
			t.Fatalf("partition %d: create: %v", p, err)
		}
		task, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: "dur", WorkerID: "w", WorkerInstanceID: "w-1"}, time.Minute)
		if err != nil {
			t.Fatalf("partition %d: claim: %v", p, err)
		}
		if err := b.Complete(ctx, task.Handle, nil); err != nil {
			t.Fatalf("partition %d: complete: %v", p, err)
		}
		key := "ff:e:" + string(id) + ":core"
		slot, err := c.KeySlot(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		owner, err := c.SlotOwner(ctx, slot)
		if err != nil {
			t.Fatal(err)
		}
		replica, err := c.ReplicaOf(ctx, owner)
		if err != nil {
			t.Fatal(err)
		}
		if got := stateOn(replica, key); got != "completed" {
			t.Fatalf("partition %d: the replica of the slot's owner holds %q right after Complete", p, got)
		}
		ids = append(ids, id)
	}

	// A replica not yet online when the replica client read the topology
	// is used after its next refresh (every 5s): the reads move to the
	// replicas within a few refreshes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		onPrimaries, onReplicas := readsServed(t, ctx, b, c, ids)
		if onPrimaries == 0 && onReplicas >= int64(2*len(ids)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot reads: %d on primaries, %d on replicas; want none and every one", onPrimaries, onReplicas)
		}
		time.Sleep(time.Second)
	}
}

// readsServed resets every node's stats, twice reads each execution's snapshot
// and lists each partition, and counts the reads (HGETALL, FCALL_RO) the
// primaries and the replicas served.
func readsServed(t *testing.T, ctx context.Context, b *valkeybackend.Backend, c *valkeytest.Cluster, ids []sdk.ExecutionID) (onPrimaries, onReplicas int64) {
	t.Helper()
	roles := map[string]string{}
	for _, s := range append(c.Nodes(), c.Replicas()...) {
		rc, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{s.Addr()}, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		role, _ := rc.Do(ctx, rc.B().Role().Build()).ToArray()
		r, _ := role[0].ToString()
		roles[s.Addr()] = r
		if err := rc.Do(ctx, rc.B().ConfigResetstat().Build()).Error(); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	for range 2 {
		for _, id := range ids {
			s, err := b.DescribeExecution(ctx, id)
			if err != nil || s.State != sdk.StateCompleted {
				t.Fatalf("describe %s: %+v %v", id, s, err)
			}
		}
		for p := range b.Partitions() {
			page, err := b.ListExecutions(ctx, p, "", 10)
			if err != nil || len(page.IDs) != 1 {
				t.Fatalf("list partition %d: %+v %v", p, page, err)
			}
		}
	}
	for addr, role := range roles {
		rc, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		info, _ := rc.Do(ctx, rc.B().Info().Section("commandstats").Build()).ToString()
		rc.Close()
		calls := valkeytest.ParseCommandStats(info)
		if role == "master" {
			onPrimaries += calls["fcall_ro"]
		} else {
			onReplicas += calls["fcall_ro"] + calls["hgetall"]
		}
	}
	return onPrimaries, onReplicas
}
