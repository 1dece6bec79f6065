package valkeybackend_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestLibraryOnNewPrimary: a primary that joins the cluster after the
// backend connected (CLUSTER MEET, so it holds no library) and takes a
// partition's slot over answers "Function not found"; the backend loads
// the library there by itself, and the partition works again without a
// call to Prepare.
func TestLibraryOnNewPrimary(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cl, err := valkeytest.StartCluster(ctx, valkeytest.ClusterOptions{NodeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: cl.Addrs(), Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	added, err := cl.AddPrimary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slot, err := cl.KeySlot(ctx, sdk.PartitionTag(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.MigrateSlot(ctx, slot, added, valkeytest.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Creates go round the partitions; one in four lands on the new owner.
	refused, healedAfter := 0, time.Duration(0)
	start := time.Now()
	for onNew := 0; onNew < 3; {
		r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "l", Kind: "k"})
		switch {
		case sdk.CodeOf(err) == sdk.CodeUnavailable:
			refused++
		case err != nil:
			t.Fatal(err)
		case strings.HasPrefix(string(r.ID), sdk.PartitionTag(0)+":"):
			if onNew == 0 {
				healedAfter = time.Since(start)
			}
			onNew++
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("partition 0 still refused after 10s (%d refusals)", refused)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if refused == 0 {
		t.Fatal("the new owner never answered Function not found: the test did not reach a primary without the library")
	}
	t.Logf("%d creates refused on the new owner before the library was loaded there; the first create on it succeeded %v after the migration",
		refused, healedAfter.Round(time.Millisecond))
	direct := nodeClients(t, []string{added.Addr()})[0]
	defer direct.Close()
	v, err := direct.Do(ctx, direct.B().FcallRo().Function("ff_version").Numkeys(0).Build()).ToArray()
	if err != nil || len(v) < 3 {
		t.Fatalf("ff_version on the new owner: %v, %v", v, err)
	}
}
