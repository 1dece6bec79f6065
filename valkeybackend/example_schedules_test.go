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

// The tick times of a cron schedule in a time zone, across the autumn DST
// change: 01:30 exists twice that night, and each is a tick.
func ExampleNextTicks() {
	ny, _ := time.LoadLocation("America/New_York")
	s := sdk.Schedule{ID: "nightly", Cron: "30 1 * * *", TimeZone: "America/New_York", Lane: "reports", Kind: "build"}
	ticks, err := valkeybackend.NextTicks(s, time.Date(2026, 10, 31, 12, 0, 0, 0, ny), 3)
	if err != nil {
		log.Fatal(err)
	}
	for _, at := range ticks {
		fmt.Println(at.Format(time.RFC3339))
	}
	// Output:
	// 2026-11-01T01:30:00-04:00
	// 2026-11-01T01:30:00-05:00
	// 2026-11-02T01:30:00-05:00
}

// A schedule put, fired by hand with a fixed clock (the engines' schedules
// scanner does this with the server's), and read back.
func ExampleBackend_PutSchedule() {
	ctx := context.Background()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Partitions: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	created, err := b.PutSchedule(ctx, sdk.Schedule{ID: "heartbeat", Every: 10 * time.Second, Start: start,
		CatchUp: sdk.CatchUpAll, Lane: "ops", Kind: "ping", TickTag: "tick"})
	if err != nil {
		log.Fatal(err)
	}
	r, err := b.FireDueSchedules(ctx, sdk.FireSchedulesArgs{Partition: 0, Now: start.Add(35 * time.Second)})
	if err != nil {
		log.Fatal(err)
	}
	st, _ := b.GetSchedule(ctx, "heartbeat")
	fmt.Println(created, r.Fired, st.Fired, st.NextTick.UTC().Format(time.TimeOnly))
	// Output: true 3 3 00:00:40
}
