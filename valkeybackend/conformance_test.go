package valkeybackend_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/sdk/sdktest"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// The conformance suite every backend passes, against standalone Valkey, a
// 3-primary cluster and a 3-primary cluster with a replica each (replicas
// change what the client discovers and where FUNCTION LOAD lands).
func TestConformance(t *testing.T) {
	const maxPayload = 64 << 10
	opts := valkeybackend.Options{MaxPayloadBytes: maxPayload}
	// The suite skips the subtests of a role the backend does not list, so
	// pin the roles each topology lists: one turned off by mistake fails
	// here instead of skipping its subtests.
	roles := []sdk.Role{sdk.RoleBatchRenew, sdk.RoleWindowScan, sdk.RoleGrantClaim, sdk.RoleFusedClaim,
		sdk.RoleWorkerRegistry, sdk.RoleReadiness, sdk.RoleTerminalWatch, sdk.RoleCompletions, sdk.RoleArrivals, sdk.RoleLeaseEvents, sdk.RoleEngineMonitor,
		sdk.RoleBatchSubmit, sdk.RoleCompleteBatch, sdk.RoleWaiting, sdk.RoleStreams, sdk.RoleLeaseHistory, sdk.RoleFlows, sdk.RoleAdmission, sdk.RoleSchedules}
	wantRoles := map[string][]sdk.Role{
		"standalone": append(slices.Clone(roles), sdk.RoleClaimOffers, sdk.RoleCompleteOffer),
		"cluster":    append(slices.Clone(roles), sdk.RoleClaimOffers, sdk.RoleCompleteOffer),
	}
	wantRoles["cluster-replicas"] = wantRoles["cluster"]
	for _, topo := range append(topologies(), topology{"cluster-replicas", replicatedCluster}) {
		t.Run(topo.name, func(t *testing.T) {
			addrs := topo.addrs(t)
			got := slices.Sorted(slices.Values(freshBackend(t, addrs, opts).Features().Roles))
			if want := slices.Sorted(slices.Values(wantRoles[topo.name])); !slices.Equal(got, want) {
				t.Fatalf("Features().Roles = %q, want %q", got, want)
			}
			sdktest.Run(t, sdktest.Harness{
				New: func(t *testing.T) sdk.EngineBackend {
					return freshBackend(t, addrs, opts)
				},
				Snapshot:        func(t *testing.T) map[string]string { return keyspace(t, addrs) },
				MaxPayloadBytes: maxPayload,
			})
		})
	}
}

// keyspace dumps every key of every primary as type + digest of its DUMP
// serialization (which leaves TTLs out).
func keyspace(t *testing.T, addrs []string) map[string]string {
	t.Helper()
	clients := nodeClients(t, addrs)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	return keyspaceOf(t, clients)
}

// nodeClients connects to each address alone (no cluster routing, no cache).
func nodeClients(t *testing.T, addrs []string) []valkey.Client {
	t.Helper()
	clients := make([]valkey.Client, 0, len(addrs))
	for _, a := range addrs {
		c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{a}, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			for _, c := range clients {
				c.Close()
			}
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	return clients
}

// keyspaceOf is keyspace over open node clients.
func keyspaceOf(t *testing.T, clients []valkey.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, c := range clients {
		var cursor uint64
		for {
			e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Count(1000).Build()).AsScanEntry()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range e.Elements {
				typ, _ := c.Do(ctx, c.B().Type().Key(k).Build()).ToString()
				sum := sha256.Sum256([]byte(canonicalValue(t, c, typ, k)))
				out[k] = typ + ":" + hex.EncodeToString(sum[:8])
			}
			if e.Cursor == 0 {
				break
			}
			cursor = e.Cursor
		}
	}
	return out
}

// canonicalValue returns key k's value (of type typ) in a form that only a
// write changes. DUMP is that for most types, but not for a hash or set
// stored as a hash table: a read can take a step of its incremental rehash
// and so reorder its DUMP. Those are read member by member, sorted.
func canonicalValue(t *testing.T, c valkey.Client, typ, k string) string {
	t.Helper()
	ctx := context.Background()
	var items []string
	switch typ {
	case "hash":
		m, err := c.Do(ctx, c.B().Hgetall().Key(k).Build()).AsStrMap()
		if err != nil {
			t.Fatal(err)
		}
		for f, v := range m {
			items = append(items, strconv.Quote(f)+"="+strconv.Quote(v))
		}
	case "set":
		m, err := c.Do(ctx, c.B().Smembers().Key(k).Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range m {
			items = append(items, strconv.Quote(v))
		}
	default:
		dump, err := c.Do(ctx, c.B().Dump().Key(k).Build()).ToString()
		if err != nil && !valkey.IsValkeyNil(err) {
			t.Fatal(err)
		}
		return dump
	}
	sort.Strings(items)
	return strings.Join(items, "\n")
}
