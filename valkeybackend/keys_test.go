package valkeybackend

import (
	"testing"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// The key layout is what lua/flowfabric.lua's header documents, and a
// call's key set costs one allocation per group, not one per key.
func TestKeyLayout(t *testing.T) {
	const id sdk.ExecutionID = "{p:3}:0f8fad5b-d9cb-469f-a165-70867728950e"
	ek := defaultKeys.keysOf(id)
	if want := (execKeys{core: "ff:e:" + string(id) + ":core", ctx: "ff:e:" + string(id) + ":ctx",
		result: "ff:e:" + string(id) + ":result", grant: "ff:e:" + string(id) + ":grant"}); ek != want {
		t.Fatalf("keysOf = %+v, want %+v", ek, want)
	}
	if ek.core != defaultKeys.coreKey(id) {
		t.Fatalf("coreKey %q differs from keysOf's %q", defaultKeys.coreKey(id), ek.core)
	}
	lk := defaultKeys.laneKeysOf("{p:3}", "emails")
	if want := (laneKeys{eligible: "ff:i:{p:3}:emails:eligible", delayed: "ff:i:{p:3}:emails:delayed",
		active: "ff:i:{p:3}:emails:active", blocked: "ff:i:{p:3}:emails:blocked",
		terminal: "ff:i:{p:3}:emails:terminal"}); lk != want {
		t.Fatalf("laneKeysOf = %+v, want %+v", lk, want)
	}
	if got, want := LaneIndexKeys(3, "emails"), (LaneIndexes{Eligible: lk.eligible, Delayed: lk.delayed,
		Active: "ff:i:{p:3}:leases", Blocked: lk.blocked, Terminal: lk.terminal}); got != want {
		t.Fatalf("LaneIndexKeys = %+v, want %+v", got, want)
	}
	if lane, p, ok := defaultKeys.eligibleKeyParts(lk.eligible); !ok || lane != "emails" || p != 3 {
		t.Fatalf("defaultKeys.eligibleKeyParts(%q) = %q %d %v", lk.eligible, lane, p, ok)
	}
	pk := defaultKeys.partKeysOf("{p:3}")
	if want := (partKeys{leases: "ff:i:{p:3}:leases", timeouts: "ff:i:{p:3}:timeouts",
		deadlines: "ff:i:{p:3}:deadlines", all: "ff:i:{p:3}:all", noop: "ff:noop:{p:3}"}); pk != want {
		t.Fatalf("partKeysOf = %+v, want %+v", pk, want)
	}
	for name, f := range map[string]func(){
		"keysOf":     func() { ek = defaultKeys.keysOf(id) },
		"laneKeysOf": func() { lk = defaultKeys.laneKeysOf("{p:3}", "emails") },
	} {
		if n := testing.AllocsPerRun(100, f); n > 1 {
			t.Errorf("%s: %.0f allocations, want 1", name, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { pk = defaultKeys.partKeysOf("{p:3}") }); n > 2 {
		t.Errorf("partKeysOf: %.0f allocations, want 2 (the indexes, the noop key)", n)
	}
}
