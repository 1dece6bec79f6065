package valkeybackend_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// Gauges counts each lane's backlog over every partition, in one round
// trip, for dashboards.
func ExampleBackend_Gauges() {
	ctx := context.Background()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Partitions: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	for i := range 3 {
		args := sdk.CreateExecutionArgs{Lane: "emails", Kind: "welcome"}
		if i == 2 {
			args.DelayUntil = time.Now().Add(time.Hour)
		}
		if _, err := b.CreateExecution(ctx, args); err != nil {
			log.Fatal(err)
		}
	}
	g, err := b.Gauges(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range g.Lanes {
		fmt.Println(l.Lane, "eligible", l.Eligible, "delayed", l.Delayed, "blocked", l.Blocked)
	}
	fmt.Println("active", g.Active, "suspended", g.Suspended)
	// Output:
	// emails eligible 2 delayed 1 blocked 0
	// active 0 suspended 0
}
