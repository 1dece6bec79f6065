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
