package valkeybackend

import (
	"slices"
	"testing"
	"time"
)

// An invalidation that lands while a read is in flight keeps the partition
// unknown (the read's answer may predate the change); a flush forgets all;
// known answers expire with the TTL.
func TestReadyStateKeepsInvalidationsOverReads(t *testing.T) {
	var r readyState
	const lane = "l"
	key := func(p int) string { return defaultKeys.laneKeysOf("{p:"+itoa(p)+"}", lane).eligible }

	ready, unknown, gens := r.split(lane, []int{0, 1, 2}, 4, time.Minute)
	if len(ready) != 0 || !slices.Equal(unknown, []int{0, 1, 2}) {
		t.Fatalf("first split: ready %v unknown %v, want all unknown", ready, unknown)
	}
	// Partition 1 changes while the read is in flight.
	r.invalidate(defaultKeys.eligibleRefs([]string{key(1)}))
	r.store(lane, unknown, gens, []bool{true, true, false})
	ready, unknown, _ = r.split(lane, []int{0, 1, 2}, 4, time.Minute)
	if !slices.Equal(ready, []int{0}) || !slices.Equal(unknown, []int{1}) {
		t.Fatalf("after a read overtaken on 1: ready %v unknown %v, want [0] and [1]", ready, unknown)
	}
	// Another lane's key, a foreign key and an out-of-range partition change nothing.
	r.invalidate(defaultKeys.eligibleRefs([]string{defaultKeys.laneKeysOf("{p:0}", "other").eligible, "ff:e:x:core", key(99)}))
	if ready, _, _ = r.split(lane, []int{0}, 4, time.Minute); !slices.Equal(ready, []int{0}) {
		t.Fatalf("unrelated invalidations moved partition 0: ready %v", ready)
	}
	// A later invalidation of 0 makes it unknown again.
	r.invalidate(defaultKeys.eligibleRefs([]string{key(0)}))
	if _, unknown, _ = r.split(lane, []int{0, 2}, 4, time.Minute); !slices.Equal(unknown, []int{0}) {
		t.Fatalf("after invalidating 0: unknown %v, want [0]", unknown)
	}
	// A flush (reconnect) forgets everything.
	r.forget()
	if _, unknown, _ = r.split(lane, []int{0, 1, 2}, 4, time.Minute); !slices.Equal(unknown, []int{0, 1, 2}) {
		t.Fatalf("after a flush: unknown %v, want all", unknown)
	}
	// Answers older than the TTL are read again.
	_, unknown, gens = r.split(lane, []int{3}, 4, time.Minute)
	r.store(lane, unknown, gens, []bool{true})
	if _, unknown, _ = r.split(lane, []int{3}, 4, 0); !slices.Equal(unknown, []int{3}) {
		t.Fatalf("with a zero TTL: unknown %v, want [3]", unknown)
	}
}

func TestEligibleKeyParts(t *testing.T) {
	for key, want := range map[string]int{"ff:i:{p:0}:l:eligible": 0, "ff:i:{p:1023}:l:eligible": 1023} {
		if lane, p, ok := defaultKeys.eligibleKeyParts(key); !ok || p != want || lane != "l" {
			t.Fatalf("%s: %s %d %v", key, lane, p, ok)
		}
	}
	for _, key := range []string{"ff:i:l:eligible", "ff:i:{p:x}:l:eligible", "ff:i:{p:-1}:l:eligible", "ff:i:{p:3",
		"ff:i:{p:3}:l:delayed"} {
		if _, _, ok := defaultKeys.eligibleKeyParts(key); ok {
			t.Fatalf("%s parsed", key)
		}
	}
}
