package scanner_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// freeOrOwnedBy reports, per partition, the partitions nobody else can take:
// a probe acquire by a stranger fails on every owned partition.
func allTaken(t *testing.T, b *valkeybackend.Backend) bool {
	t.Helper()
	for p := range b.Partitions() {
		ok, err := b.OwnPartition(context.Background(), "stranger", p, time.Millisecond*50, valkeybackend.OwnAcquire)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return false
		}
	}
	return true
}

// Two engines split the partitions fairly and disjointly; when one stops
// renewing (a crash), the survivor owns everything within one ownership
// lease plus one renew interval.
func TestOwnershipSplitAndTakeover(t *testing.T) {
	for _, topo := range both() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs)
			const ttl = 600 * time.Millisecond
			a := scanner.NewOwnership(b, "engine-a", ttl, testLogger(t))
			c := scanner.NewOwnership(connect(t, addrs), "engine-c", ttl, testLogger(t))
			a.Tick(ctx)
			if n := len(a.Owned()); n != 16 {
				t.Fatalf("a lone engine owns %d of 16", n)
			}
			c.Tick(ctx) // sees 2 engines; everything is taken
			a.Tick(ctx) // sees 2 engines; releases down to 8
			c.Tick(ctx) // takes the freed 8
			ao, co := a.Owned(), c.Owned()
			if len(ao) != 8 || len(co) != 8 || a.LiveEngines() != 2 {
				t.Fatalf("split a=%v c=%v live=%d", ao, co, a.LiveEngines())
			}
			seen := map[int]bool{}
			for _, p := range append(ao, co...) {
				if seen[p] {
					t.Fatalf("partition %d owned twice: a=%v c=%v", p, ao, co)
				}
				seen[p] = true
			}
			a.Tick(ctx)
			c.Tick(ctx)
			if len(a.Owned()) != 8 || len(c.Owned()) != 8 {
				t.Fatalf("split not stable: a=%v c=%v", a.Owned(), c.Owned())
			}
			// a crashes: it stops ticking. c ticks every ttl/3 as Run would.
			crash := time.Now()
			for len(c.Owned()) < 16 {
				if time.Since(crash) > 3*ttl {
					t.Fatalf("survivor owns %d after %v", len(c.Owned()), time.Since(crash))
				}
				time.Sleep(ttl / 3)
				c.Tick(ctx)
			}
			took := time.Since(crash)
			t.Logf("takeover after a crash: %v (ttl %v, renew every %v)", took, ttl, ttl/3)
			if took > ttl+ttl/3+150*time.Millisecond {
				t.Fatalf("takeover took %v, over one lease + one renew interval", took)
			}
			if !allTaken(t, b) {
				t.Fatal("a partition is free after the takeover")
			}
		})
	}
}

// Supervisors started with Start split the partitions, and one stopping
// gracefully hands its partitions over at the others' next renewal.
func TestSupervisorsShareAndHandOver(t *testing.T) {
	addrs := standalone(t)
	b := freshBackend(t, addrs)
	cfg := testConfig(t)
	cfg.EngineID = "one"
	ctx1, stop1 := context.WithCancel(context.Background())
	defer stop1()
	s1, err := scanner.Start(ctx1, b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.EngineID = "two"
	s2 := runEngineNoWait(t, connect(t, addrs), cfg)
	eventually(t, 5*time.Second, "an 8/8 split", func() bool {
		return s1.Stats().OwnedPartitions == 8 && s2.Stats().OwnedPartitions == 8
	})
	stop1()
	<-s1.Done()
	took := eventually(t, 5*time.Second, "hand-over", func() bool { return s2.Stats().OwnedPartitions == 16 })
	t.Logf("graceful hand-over took %v (ttl %v)", took, cfg.OwnershipTTL)
	if st := s2.Stats(); st.LiveEngines != 1 || st.Partitions != 16 || st.EngineID != "two" {
		t.Fatalf("stats %+v", st)
	}
}

func runEngineNoWait(t *testing.T, b *valkeybackend.Backend, cfg scanner.Config) *scanner.Supervisor {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := scanner.Start(ctx, b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-s.Done()
	})
	return s
}
