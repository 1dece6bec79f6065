package valkeybackend_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// TestEngineHeartbeat: heartbeats count live engines, lapsed ones are
// dropped by the next heartbeat, and DropEngine counts one out at once.
func TestEngineHeartbeat(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			b := freshBackend(t, topo.addrs(t), valkeybackend.Options{})
			now, err := b.ServerTime(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(now); d < -time.Minute || d > time.Minute {
				t.Fatalf("server time %v is %v off the local clock", now, d)
			}
			beat := func(engine string, at time.Time, want int) {
				t.Helper()
				live, err := b.EngineHeartbeat(ctx, engine, at, 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if live != want {
					t.Fatalf("%s heartbeat at %v: %d live, want %d", engine, at, live, want)
				}
			}
			beat("a", now, 1)
			beat("b", now, 2)
			beat("lapsed", now.Add(-20*time.Second), 3) // its heartbeat ended 10s ago
			beat("a", now, 2)
			if err := b.DropEngine(ctx, "b"); err != nil {
				t.Fatal(err)
			}
			beat("a", now, 1)
		})
	}
}

// TestLaneRegistryCachedAndInvalidated: an unchanged registry is served from
// the client-side cache (no command), and a lane another process registers
// is seen within a push's flight time, whatever maxAge says.
func TestLaneRegistryCachedAndInvalidated(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			reader := freshBackend(t, addrs, valkeybackend.Options{})
			writer, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, Partitions: 8})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(writer.Close)
			lanes := func() []sdk.LaneID {
				t.Helper()
				l, err := reader.LaneRegistry(ctx, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			if _, err := writer.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "b", Kind: "k"}); err != nil {
				t.Fatal(err)
			}
			if got := lanes(); len(got) != 1 || got[0] != "b" {
				t.Fatalf("registry %v, want [b]", got)
			}
			resetStats(t, addrs)
			for range 10 {
				lanes()
			}
			if n := commandCounts(t, addrs)["smembers"]; n != 0 {
				t.Fatalf("an unchanged registry was read %d times from the server", n)
			}
			if _, err := writer.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "a", Kind: "k"}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Second)
			for got := lanes(); len(got) != 2 || got[0] != "a" || got[1] != "b"; got = lanes() {
				if time.Now().After(deadline) {
					t.Fatalf("registry %v a second after lane a was registered, want [a b]", got)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}
