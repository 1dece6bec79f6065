package main

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// (d) Two engine processes split the partitions; one is killed with SIGKILL
// (no release): the survivor owns its partitions within one ownership lease
// plus one renew interval, and scans them: leases abandoned on every
// partition just before the kill are all reclaimed.
func TestFaultEngineKilledPartitionsTakenOver(t *testing.T) {
	srv := valkeytest.NewServer(t)
	ctx := context.Background()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Partitions: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const ttl = time.Second
	args := []string{"--ownership-ttl", ttl.String(), "--lease-expiry-interval", "100ms", "--status-interval", "100ms"}
	victim := startEngine(t, "victim", srv.Addr(), args...)
	victim.waitLine(regexp.MustCompile(`msg="acquired partitions".* owned=16 `), 10*time.Second)
	survivor := startEngine(t, "survivor", srv.Addr(), args...)
	split := regexp.MustCompile(`msg=status owned=8 partitions=16 engines=2 `)
	survivor.waitLine(split, 10*time.Second)
	victim.waitLine(split, 10*time.Second)

	// One abandoned lease per partition: half of them only the victim scans.
	ids := make([]sdk.ExecutionID, 16)
	for p := range ids {
		r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: sdk.NewExecutionID(p), Lane: "d", Kind: "k"})
		if err != nil {
			t.Fatal(err)
		}
		ids[p] = r.ID
		if _, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: "d", WorkerID: "w",
			WorkerInstanceID: "w-1"}, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	killed := time.Now()
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.exited

	at, line := survivor.waitLine(regexp.MustCompile(`msg="acquired partitions".* owned=16 `), 5*time.Second)
	takeover := at.Sub(killed)
	t.Logf("takeover %v after SIGKILL (ownership TTL %v, renew every %v): %s", takeover.Round(time.Millisecond), ttl, ttl/3, line)
	if takeover > ttl+ttl/3+300*time.Millisecond {
		t.Fatalf("takeover took %v, over one lease + one renew interval", takeover)
	}
	survivor.waitLine(regexp.MustCompile(`msg=status owned=16 partitions=16 engines=1 `), 5*time.Second)

	var last time.Duration
	for p, id := range ids {
		for {
			s, err := b.ReadExecutionState(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if s == sdk.StateWaiting {
				break
			}
			if time.Since(killed) > 5*time.Second {
				t.Fatalf("partition %d: abandoned lease not reclaimed %v after the kill (state %s)", p, time.Since(killed), s)
			}
			time.Sleep(10 * time.Millisecond)
		}
		last = max(last, time.Since(killed))
	}
	t.Logf("every partition's abandoned lease reclaimed within %v of the kill", last.Round(time.Millisecond))
	for p := range b.Partitions() {
		if ok, _ := b.OwnPartition(ctx, "stranger", p, 10*time.Millisecond, valkeybackend.OwnAcquire); ok {
			t.Fatalf("partition %d is free after the takeover", p)
		}
	}
}
