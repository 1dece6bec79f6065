package valkeybackend_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// The schedule functions refuse malformed keys and arguments with
// invalid_input and the keyspace unchanged; well-formed calls pass the
// checks.
func TestScheduleFunctionsRefuseMalformedInput(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{})
			t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
			if _, err := b.PutSchedule(ctx, sdk.Schedule{ID: "s1", Every: time.Second, Start: t0, Lane: "sl", Kind: "k"}); err != nil {
				t.Fatal(err)
			}
			raw := rawClient(t, addrs)
			nodes := nodeClients(t, addrs)
			t.Cleanup(func() {
				for _, c := range nodes {
					c.Close()
				}
			})
			rec, all, due, p := b.ScheduleKeysForTest("s1")
			tag := sdk.PartitionTag(p)
			st, err := b.GetSchedule(ctx, "s1")
			if err != nil {
				t.Fatal(err)
			}
			rev := strconv.FormatUint(st.Revision, 10)
			next := strconv.FormatInt(st.NextTick.UnixMilli(), 10)
			after := strconv.FormatInt(st.NextTick.Add(time.Second).UnixMilli(), 10)
			eid := string(sdk.NewExecutionID(p))
			ek := func(s string) string { return "ff:e:" + eid + ":" + s }
			lk := func(s string) string { return "ff:i:" + tag + ":sl:" + s }
			pk := func(s string) string { return "ff:i:" + tag + ":" + s }
			idem := "ff:idem:" + tag + ":sched:s1:" + next
			createKeys := []string{ek("core"), ek("ctx"), lk("eligible"), lk("delayed"), idem, pk("deadlines"), pk("all"),
				"ff:arrivals:" + tag, "ff:noop:" + tag, pk("leases"), lk("active"), pk("timeouts")}
			createArgs := []string{eid, "sl", "k", "0", "0", "", "0", "exponential", "1000", "60000", "2", "0", "", "0", "0",
				"86400000", "payload", "0", "0"}
			fireKeys := append([]string{rec, due}, createKeys...)
			fireArgs := append([]string{"s1", rev, next, next, after, "0"}, createArgs...)
			calls := []struct {
				what       string
				fn         string
				keys, args []string
			}{
				{"set: record of another id", "ff_schedule_set", []string{rec, all, due}, []string{"s2", rev, "0", "sl", "cron", ""}},
				{"set: id with a colon", "ff_schedule_set", []string{"ff:sched:" + tag + ":a:b", all, due}, []string{"a:b", rev, "0", "sl", "cron", ""}},
				{"set: indexes swapped", "ff_schedule_set", []string{rec, due, all}, []string{"s1", rev, "0", "sl", "cron", ""}},
				{"set: a state field", "ff_schedule_set", []string{rec, all, due}, []string{"s1", rev, "0", "sl", "fired", "99"}},
				{"set: the rev field", "ff_schedule_set", []string{rec, all, due}, []string{"s1", rev, "0", "sl", "rev", "0"}},
				{"set: bad lane", "ff_schedule_set", []string{rec, all, due}, []string{"s1", rev, "0", "bad lane", "cron", ""}},
				{"set: odd pairs", "ff_schedule_set", []string{rec, all, due}, []string{"s1", rev, "0", "sl", "cron"}},
				{"set: negative next", "ff_schedule_set", []string{rec, all, due}, []string{"s1", rev, "-5", "sl", "cron", ""}},
				{"set: keep next on a create", "ff_schedule_set", []string{rec, all, due}, []string{"s1", "0", "", "sl", "cron", ""}},
				{"set: too few keys", "ff_schedule_set", []string{rec, all}, []string{"s1", rev, "0", "sl", "cron", ""}},
				{"state: unknown mode", "ff_schedule_state", []string{rec, due}, []string{"s1", "stop", "0"}},
				{"state: the listing index", "ff_schedule_state", []string{rec, all}, []string{"s1", "pause", "0"}},
				{"state: bad next", "ff_schedule_state", []string{rec, due}, []string{"s1", "resume", "x"}},
				{"state: bad rev", "ff_schedule_state", []string{rec, due}, []string{"s1", "resume", "0", "x"}},
				{"state: extra argument", "ff_schedule_state", []string{rec, due}, []string{"s1", "resume", "0", rev, "x"}},
				{"delete: another id", "ff_schedule_delete", []string{rec, all, due}, []string{"s2"}},
				{"delete: indexes swapped", "ff_schedule_delete", []string{rec, due, all}, []string{"s1"}},
				{"fire: the listing index", "ff_schedule_fire", append([]string{rec, all}, createKeys...), fireArgs},
				{"fire: idempotency key of another tick", "ff_schedule_fire", fireKeys,
					append([]string{"s1", rev, next, after, after, "0"}, createArgs...)},
				{"fire: no idempotency key", "ff_schedule_fire",
					append([]string{rec, due}, append(append([]string{}, createKeys[:4]...), append([]string{"ff:noop:" + tag}, createKeys[5:]...)...)...), fireArgs},
				{"fire: execution of another partition", "ff_schedule_fire", fireKeys,
					append([]string{"s1", rev, next, next, after, "0", string(sdk.NewExecutionID(p + 1))}, createArgs[1:]...)},
				{"fire: lane other than the keys'", "ff_schedule_fire", fireKeys,
					append([]string{"s1", rev, next, next, after, "0", eid, "other"}, createArgs[2:]...)},
				{"fire: malformed create", "ff_schedule_fire", fireKeys, append([]string{"s1", rev, next, next, after, "0"}, createArgs[:10]...)},
				{"fire: keys without a tick", "ff_schedule_fire", fireKeys, []string{"s1", rev, next, "0", after, "0"}},
				{"fire: create args without a tick", "ff_schedule_fire", []string{rec, due}, append([]string{"s1", rev, next, "0", after, "0"}, createArgs...)},
				{"fire: negative skipped", "ff_schedule_fire", []string{rec, due}, []string{"s1", rev, next, "0", after, "-1"}},
			}
			if topo.name == "standalone" { // on a cluster the keys' slots differ
				calls = append(calls, struct {
					what       string
					fn         string
					keys, args []string
				}{"set: record of another partition", "ff_schedule_set", []string{"ff:sched:{p:99}:s1", all, due},
					[]string{"s1", rev, "0", "sl", "cron", ""}})
			}
			before := keyspaceOf(t, nodes)
			for _, c := range calls {
				code, detail, err := fcallRaw(ctx, raw, c.fn, c.keys, c.args)
				if err != nil || code != sdk.CodeInvalidInput {
					t.Fatalf("%s: %s = %q %q, %v; want invalid_input", c.what, c.fn, code, detail, err)
				}
				requireSameKeyspace(t, c.what, before, keyspaceOf(t, nodes))
			}
			// The well-formed calls pass the checks (and a stale one is told
			// so, writing nothing).
			stale := append([]string{"s1", rev, after, next, after, "0"}, createArgs...)
			if code, _, err := fcallRaw(ctx, raw, "ff_schedule_fire", fireKeys, stale); err != nil || code != sdk.CodeScheduleChanged {
				t.Fatalf("stale fire = %q, %v; want schedule_changed", code, err)
			}
			requireSameKeyspace(t, "stale fire", before, keyspaceOf(t, nodes))
			if code, _, err := fcallRaw(ctx, raw, "ff_schedule_state", []string{rec, due}, []string{"s1", "pause", "0", rev + "0"}); err != nil || code != sdk.CodeScheduleChanged {
				t.Fatalf("state at a stale rev = %q, %v; want schedule_changed", code, err)
			}
			requireSameKeyspace(t, "state at a stale rev", before, keyspaceOf(t, nodes))
			for _, c := range []struct {
				fn         string
				keys, args []string
			}{
				{"ff_schedule_fire", fireKeys, fireArgs},
				{"ff_schedule_state", []string{rec, due}, []string{"s1", "pause", "0"}},
				{"ff_schedule_set", []string{rec, all, due}, []string{"s1", strconv.FormatUint(st.Revision+1, 10), "", "sl", "cron", ""}},
				{"ff_schedule_delete", []string{rec, all, due}, []string{"s1"}},
			} {
				if code, detail, err := fcallRaw(ctx, raw, c.fn, c.keys, c.args); err != nil || code != "" {
					t.Fatalf("well-formed %s = %q %q, %v; want success", c.fn, code, detail, err)
				}
			}
		})
	}
}
