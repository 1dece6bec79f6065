package valkeybackend_test

import (
	"context"
	"testing"
	"time"

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
