package valkeytest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// Start a throwaway server outside a test (as the benchmark CLI does), talk to it with
// valkey-go, and remove it. In tests, valkeytest.NewServer(t) does the same and closes
// the server in t.Cleanup.
func Example() {
	ctx := context.Background()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{srv.Addr()}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if err := c.Do(ctx, c.B().Set().Key("greeting").Value("hello").Build()).Error(); err != nil {
		log.Fatal(err)
	}
	v, err := c.Do(ctx, c.B().Get().Key("greeting").Build()).ToString()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v)
	// Output: hello
}

// Start a 3-primary cluster and use it through a valkey-go cluster client.
func ExampleStartCluster() {
	ctx := context.Background()
	cl, err := valkeytest.StartCluster(ctx, valkeytest.ClusterOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()

	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: cl.Addrs()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	fmt.Println(len(c.Nodes()), "primaries")
	// Output: 3 primaries
}

// A 3-primary cluster with a replica each: fail a primary over to its replica with
// CLUSTER FAILOVER, and find the data there.
func ExampleCluster_Failover() {
	ctx := context.Background()
	cl, err := valkeytest.StartCluster(ctx, valkeytest.ClusterOptions{Replicas: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()

	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: cl.Addrs(), DisableCache: true})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		log.Fatal(err)
	}
	slot, _ := cl.KeySlot(ctx, "k")
	owner, _ := cl.SlotOwner(ctx, slot)
	replica, err := cl.ReplicaOf(ctx, owner)
	if err != nil {
		log.Fatal(err)
	}
	if err := cl.Failover(ctx, replica); err != nil {
		log.Fatal(err)
	}
	now, _ := cl.SlotOwner(ctx, slot)
	v, err := c.Do(ctx, c.B().Get().Key("k").Build()).ToString() // valkey-go follows the MOVED
	fmt.Println(len(cl.Nodes()), len(cl.Replicas()), now == replica, v, err)
	// Output: 3 3 true v <nil>
}
