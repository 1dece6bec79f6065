package valkeybackend_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// The library trusts no caller (issue 12, point 9): every function that
// writes checks the execution ids, lanes and key names it receives before
// its first write. These tests send raw FCALLs, as a buggy or hostile
// client would, and require invalid_input with the keyspace unchanged.

// rawCall is one write function of the library and how a well-formed call
// of it is built.
type rawCall struct {
	fn string
	// build returns KEYS and ARGV of a call on execution eid on lane.
	build func(eid, lane string) (keys, args []string)
	// eid is the execution the call is built for; eidArg and laneArg are
	// the ARGV indexes of the execution id and the lane (-1: none).
	eid             string
	eidArg, laneArg int
	// laneKeys: the keys name the lane (build rebuilds them for a bad one).
	laneKeys bool
	// extra are malformed calls particular to the function.
	extra []malformed
	// slot is the hash tag of the keys when not the partition's.
	slot string
}

// malformed is a call that must be refused.
type malformed struct {
	what       string
	keys, args []string
}

// hostileFixture is the state the raw calls run against: an active
// execution (active, with lease), a waiting one (waiting) and a registered
// worker instance, all on one partition and lane, so that a call that got
// past its checks would have something to change.
type hostileFixture struct {
	tag, lane, inst  string
	active, waiting  string
	fresh            string // an id no execution has
	flow             string // an id no flow has
	lease, epoch, at string // the active execution's lease
}

func (f hostileFixture) calls() []rawCall {
	tag := f.tag
	ek := func(eid, s string) string { return "ff:e:" + eid + ":" + s }
	lk := func(lane, s string) string { return "ff:i:" + tag + ":" + lane + ":" + s }
	pk := func(s string) string { return "ff:i:" + tag + ":" + s }
	arr, noop := "ff:arrivals:"+tag, "ff:noop:"+tag
	uuid := func() string { return sdk.NewToken() }
	fence := func(eid string) []string { return []string{eid, f.lease, f.epoch, f.at} }
	workerKeys := func(inst string) []string {
		return []string{"ff:w:{w:" + inst + "}:alive", "ff:w:{w:" + inst + "}:info"}
	}
	badWorker := func(keys, args []string, at int) []malformed {
		return []malformed{
			{"worker id with a space", keys, with(args, at, "bad worker")},
			{"instance id with a brace", keys, with(args, at+1, "w{1}")},
		}
	}
	calls := []rawCall{
		{fn: "ff_create", eid: f.fresh, eidArg: 0, laneArg: 1, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), ek(e, "ctx"), lk(l, "eligible"), lk(l, "delayed"), noop, pk("deadlines"),
						pk("all"), arr, noop, pk("leases"), lk(l, "active"), pk("timeouts")},
					[]string{e, l, "k", "0", "0", "", "0", "exponential", "1000", "60000", "2", "0", "", "0", "0",
						"86400000", "payload", "1", "0"}
			}},
		{fn: "ff_create_batch", eid: f.fresh, eidArg: 2, laneArg: 3,
			build: func(e, l string) ([]string, []string) {
				return []string{pk("deadlines"), pk("all"), arr, pk("leases"), pk("timeouts")},
					[]string{"1", "", e, l, "k", "0", "0", "", "0", "exponential", "1000", "60000", "2", "0", "", "0", "0",
						"86400000", "payload", "1", "0"}
			}},
		{fn: "ff_issue_claim_grant", eid: f.waiting, eidArg: 0, laneArg: -1, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), ek(e, "grant"), lk(l, "eligible")}, []string{e, "w", "w-1", "5000", ""}
			}},
		{fn: "ff_claim", eid: f.waiting, eidArg: 0, laneArg: 8, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), ek(e, "grant"), lk(l, "eligible"), pk("leases"), lk(l, "active"),
					pk("timeouts"), ek(e, "ctx")}, []string{e, "w", "w-1", uuid(), uuid(), "60000", "new", "1", l}
			}},
		{fn: "ff_claim_fused", eidArg: -1, laneArg: 5, laneKeys: true,
			build: func(_, l string) ([]string, []string) {
				return []string{lk(l, "eligible"), pk("leases"), lk(l, "active"), pk("timeouts"), lk(l, "blocked")},
					[]string{"w", "w-1", "60000", "1", "", l, uuid(), uuid()}
			}},
		{fn: "ff_offer", eidArg: -1, laneArg: -1, laneKeys: true,
			build: func(_, l string) ([]string, []string) {
				return []string{"ff:offers:" + l}, []string{"60000", "new", uuid() + " " + uuid() + " 60000 w w-1 "}
			}},
		{fn: "ff_renew", eid: f.active, eidArg: 1, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{pk("leases"), ek(e, "core")}, append([]string{"60000"}, fence(e)...)
			}},
		{fn: "ff_progress", eid: f.active, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{ek(e, "core")}, append(fence(e), "50", "half")
			}},
		{fn: "ff_complete", eid: f.active, eidArg: 0, laneArg: 6, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), ek(e, "result"), pk("leases"), lk(l, "active"), lk(l, "terminal"),
					pk("timeouts"), pk("deadlines")}, append(fence(e), "result", "1", l)
			}},
		{fn: "ff_fail", eid: f.active, eidArg: 0, laneArg: 7, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), pk("leases"), lk(l, "active"), lk(l, "terminal"), lk(l, "delayed"),
					pk("timeouts"), pk("deadlines"), lk(l, "eligible"), ek(e, "grant"), arr}, append(fence(e), "boom", "x", "0.5", l)
			}},
		{fn: "ff_delay", eid: f.active, eidArg: 0, laneArg: 5, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				until := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
				return []string{ek(e, "core"), pk("leases"), lk(l, "active"), lk(l, "delayed"), pk("timeouts"),
					lk(l, "eligible"), arr}, append(fence(e), until, l)
			}},
		{fn: "ff_cancel", eid: f.waiting, eidArg: 0, laneArg: 6, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), ek(e, "grant"), pk("leases"), lk(l, "eligible"), lk(l, "delayed"),
						lk(l, "active"), lk(l, "blocked"), lk(l, "terminal"), pk("timeouts"), pk("deadlines"), arr},
					[]string{e, "reason", "op", "", "0", "", l}
			}},
		{fn: "ff_change_priority", eid: f.waiting, eidArg: 0, laneArg: -1, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), lk(l, "eligible")}, []string{e, "5"}
			}},
		{fn: "ff_revoke", eid: f.active, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{ek(e, "core"), pk("leases"), arr}, []string{e, "", "reason"}
			}},
		{fn: "ff_block_route", eid: f.waiting, eidArg: 0, laneArg: -1, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), lk(l, "eligible"), lk(l, "blocked")}, []string{e, "reason"}
			}},
		{fn: "ff_promote", eid: f.waiting, eidArg: 1, laneArg: 0, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{lk(l, "delayed"), lk(l, "eligible"), arr, ek(e, "core")}, []string{l, e}
			}},
		{fn: "ff_reclaim_expired", eid: f.active, eidArg: 0, laneArg: 2, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), pk("leases"), lk(l, "active"), lk(l, "terminal"), lk(l, "delayed"),
					pk("timeouts"), pk("deadlines"), lk(l, "eligible"), ek(e, "grant"), arr}, []string{e, "100", l}
			}},
		{fn: "ff_expire", eid: f.active, eidArg: 0, laneArg: 2, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), pk("leases"), lk(l, "active"), lk(l, "terminal"), lk(l, "delayed"),
					pk("timeouts"), pk("deadlines"), lk(l, "eligible"), lk(l, "blocked"), ek(e, "grant"), arr}, []string{e, "deadline", l}
			}},
		{fn: "ff_unblock", eid: f.waiting, eidArg: 0, laneArg: 2, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), lk(l, "blocked"), lk(l, "eligible"), arr}, []string{e, "capability_mismatch", l}
			}},
		{fn: "ff_trim", eid: f.active, eidArg: 0, laneArg: -1, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), ek(e, "ctx"), ek(e, "result"), ek(e, "grant"), lk(l, "terminal"), pk("all")},
					[]string{e, strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)}
			}},
		{fn: "ff_replay", eid: f.active, eidArg: 0, laneArg: 2, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), lk(l, "terminal"), lk(l, "eligible"), ek(e, "result"), arr}, []string{e, "10", l}
			}},
		{fn: "ff_issue_reclaim_grant", eid: f.active, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{ek(e, "core"), ek(e, "grant")}, []string{e, "w", "w-1", "5000", ""}
			}},
		{fn: "ff_reclaim", eid: f.active, eidArg: 0, laneArg: 6, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), ek(e, "grant"), lk(l, "eligible"), pk("leases"), lk(l, "active"),
						pk("timeouts"), ek(e, "ctx"), lk(l, "terminal"), pk("deadlines")},
					[]string{e, "w", "w-1", uuid(), uuid(), "60000", l, "100"}
			}},
		{fn: "ff_drop_strays", eidArg: -1, laneArg: -1, laneKeys: true,
			build: func(_, l string) ([]string, []string) {
				return []string{lk(l, "eligible")}, []string{"not-an-id"}
			}},
		{fn: "ff_waitpoint", eid: f.active, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{ek(e, "core"), "ff:sec:" + tag, pk("wp_pending")},
					append(fence(e), string(sdk.NewWaitpointID(sdk.ExecutionID(f.active))), "label", "60000")
			}},
		{fn: "ff_suspend", eid: f.active, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{ek(e, "core"), ek(e, "susp"), "ff:sec:" + tag, pk("leases"), pk("timeouts"),
						pk("suspended"), pk("susp_timeouts"), pk("wp_pending")},
					append(fence(e), uuid(), "reason", "worker", "0", "fail", "any", "0", "", "", "1",
						string(sdk.NewWaitpointID(sdk.ExecutionID(f.active))), "label", "0")
			}},
		{fn: "ff_signal", eidArg: -1, laneArg: -1,
			build: func(_, _ string) ([]string, []string) {
				w := tag + ":" + f.fresh[len(tag)+1:]
				return []string{"ff:wp:" + w, "ff:sec:" + tag, pk("leases"), pk("timeouts"), pk("suspended"),
						pk("susp_timeouts"), pk("signals"), arr},
					[]string{w + ".k1." + strings.Repeat("a", 40), uuid(), "go", "payload", "src", "", "60000", "global"}
			}},
		{fn: "ff_suspension_timeout", eid: f.active, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{ek(e, "core"), ek(e, "susp"), pk("susp_timeouts"), pk("deadlines"), arr}, []string{e}
			}},
		{fn: "ff_append", eid: f.active, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{ek(e, "core"), ek(e, "stream:0")},
					append(fence(e), "0", "durable", "100", "0", "", "0", "1", "1", "token", "payload", "")
			}},
		{fn: "ff_hmac", eidArg: -1, laneArg: -1,
			build: func(_, _ string) ([]string, []string) {
				return []string{"ff:sec:" + tag}, []string{"seed", "k1", strings.Repeat("ab", 16), "0"}
			}},
		{fn: "ff_own", eidArg: -1, laneArg: -1,
			build: func(_, _ string) ([]string, []string) {
				return []string{"ff:own:" + tag}, []string{"engine-1", "5000", "acquire"}
			}},
	}
	for _, fn := range []string{"ff_register_worker", "ff_heartbeat_worker"} {
		keys, args := workerKeys(f.inst), []string{"token", "60000", "w", f.lane, ""}
		extra := append(badWorker(keys, args, 2)[:1],
			malformed{"instance id with a brace in the keys", workerKeys("w{1}"), args},
			malformed{"lanes with a malformed lane", keys, with(args, 3, f.lane+",bad lane")})
		calls = append(calls, rawCall{fn: fn, eidArg: -1, laneArg: -1, extra: extra, slot: "{w:" + f.inst + "}",
			build: func(_, _ string) ([]string, []string) { return keys, args }})
	}
	calls = append(calls, rawCall{fn: "ff_deregister_worker", eidArg: -1, laneArg: -1, slot: "{w:" + f.inst + "}",
		extra: []malformed{{"instance id with a brace in the keys", workerKeys("w{1}"), []string{"token"}}},
		build: func(_, _ string) ([]string, []string) { return workerKeys(f.inst), []string{"token"} }})
	// Keys shaped like a quota's but in the partition's slot (not {q:N}),
	// so a cluster runs the call too.
	notQuota := []string{"ff:q:" + tag + ":q1", "ff:q:" + tag + ":q1:win", "ff:q:" + tag + ":q1:run"}
	// Function-specific malformations.
	for i := range calls {
		c := &calls[i]
		keys, args := c.build(c.eid, f.lane)
		switch c.fn {
		case "ff_create":
			c.extra = append(c.extra,
				malformed{"an idempotency key of another tag", with(keys, 4, "ff:idem:"+tag+"x:k"), args},
				malformed{"a malformed kind", keys, with(args, 2, "bad kind")},
				// ARGV 18 (index 17) holds the flags; 4 says a trace carrier follows the tags.
				malformed{"a carrier flag without the carrier", keys, with(args, 17, "5")},
				malformed{"an empty carrier", keys, append(with(args, 17, "5"), "")},
				malformed{"a carrier over its limit", keys, append(with(args, 17, "5"), strings.Repeat("0", sdk.MaxTraceParentBytes+1))},
				malformed{"a carrier without its flag", keys, append(args, "00-ab")},
				malformed{"an unknown flag", keys, with(args, 17, "17")},
				// Flag 8: the lane's quota keys follow as KEYS 13..15.
				malformed{"a quota flag without the quota keys", keys, with(args, 17, "9")},
				malformed{"quota keys without the quota flag", append(keys, notQuota...), args},
				malformed{"keys that are not a quota's after the quota flag", append(keys, notQuota...), with(args, 17, "9")})
		case "ff_create_batch":
			second := append([]string{"", string(sdk.NewExecutionID(0)), f.lane}, args[4:]...)
			c.extra = append(c.extra,
				malformed{"a second item of another partition", keys, append(with(args, 0, "2"), second...)},
				malformed{"more items than sent", keys, with(args, 0, "2")},
				malformed{"no items", keys, with(args, 0, "0")},
				malformed{"a trailing argument", keys, append(args, "x")},
				malformed{"a malformed kind", keys, with(args, 4, "bad kind")},
				malformed{"a carrier flag without the carrier", keys, with(args, 19, "5")},
				malformed{"an offers key naming a malformed lane", append(keys, "ff:offers:x"+tag), args},
				malformed{"an item with the quota flag, its lane without quota keys", append(keys, lk(f.lane, "offers")), with(args, 19, "9")},
				malformed{"keys that are not a quota's after an offers key", append(append(keys, lk(f.lane, "offers")), notQuota...), with(args, 19, "9")})
		case "ff_issue_claim_grant", "ff_issue_reclaim_grant":
			c.extra = append(c.extra, badWorker(keys, args, 1)...)
		case "ff_claim_fused":
			c.extra = append(c.extra, badWorker(keys, args, 0)...)
		case "ff_offer":
			c.extra = append(c.extra, malformed{"an offer naming a malformed instance", keys,
				with(args, 2, uuid()+" "+uuid()+" 60000 w w{1} ")})
		case "ff_renew":
			c.extra = append(c.extra, malformed{"a second lease of another partition", append(keys, ek(f.waiting, "core")),
				append(args, "{p:0}:"+uuid(), f.lease, f.epoch, f.at)})
		case "ff_suspend":
			c.extra = append(c.extra,
				malformed{"a waitpoint of another partition", keys, with(args, 14, string(sdk.NewWaitpointID(sdk.NewExecutionID(0))))},
				malformed{"a waitpoint label with a space", keys, with(args, 15, "bad label")},
				malformed{"more waitpoints than sent", keys, with(args, 13, "2")},
				malformed{"an unknown match mode", keys, with(args, 9, "some")},
				malformed{"an unknown timeout behaviour", keys, with(args, 8, "explode")},
				malformed{"a signal name with a brace", keys, with(args, 11, "a,{b}")})
		case "ff_waitpoint":
			c.extra = append(c.extra, malformed{"a waitpoint of another partition", keys,
				with(args, 4, string(sdk.NewWaitpointID(sdk.NewExecutionID(0))))})
		case "ff_signal":
			w := tag + ":" + uuid()
			c.extra = append(c.extra,
				malformed{"the key of another waitpoint than the token's", with(keys, 0, "ff:wp:"+w), args},
				malformed{"a signal name with a space", keys, with(args, 2, "bad name")},
				malformed{"an unknown offers scope", keys, with(args, 7, "everywhere")})
		case "ff_append":
			c.extra = append(c.extra,
				malformed{"the stream of another attempt", with(keys, 1, ek(c.eid, "stream:1")), args},
				malformed{"more frames than sent", keys, with(args, 10, "2")},
				malformed{"a malformed ids flag", keys, with(args, 11, "all")},
				malformed{"an unknown mode", keys, with(args, 5, "forever")},
				malformed{"a live stream without a TTL", keys, with(args, 5, "live")})
		case "ff_hmac":
			c.extra = append(c.extra,
				malformed{"a kid with a space", keys, with(args, 1, "k 1")},
				malformed{"a short secret", keys, with(args, 2, "abcd")},
				malformed{"a secret that is not hex", keys, with(args, 2, strings.Repeat("zz", 16))},
				malformed{"an unknown mode", keys, with(args, 0, "reveal")})
		case "ff_own":
			c.extra = append(c.extra, malformed{"an own key with a leading zero", []string{"ff:own:{p:0" + tag[3:]}, args},
				malformed{"an own key without a tag", []string{"ff:own:x" + tag}, args})
		}
	}
	fk := func(fid, s string) string { return "ff:f:" + fid + ":" + s }
	calls = append(calls,
		rawCall{fn: "ff_flow_submit", eid: f.flow, eidArg: 0, laneArg: 6,
			build: func(e, l string) ([]string, []string) {
				return []string{pk("deadlines"), pk("all"), arr, pk("leases"), pk("timeouts"), fk(e, "core")},
					[]string{e, "", "1", "0", "", f.fresh, l, "k", "0", "0", "", "0", "exponential", "1000", "60000", "2", "0",
						"", "0", "0", "86400000", "payload", "1", "0"}
			}},
		rawCall{fn: "ff_flow_create", eid: f.flow, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) { return []string{fk(e, "core")}, []string{e, ""} }},
		rawCall{fn: "ff_flow_add", eid: f.flow, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{fk(e, "core"), ek(f.waiting, "core")}, []string{e, f.waiting}
			}},
		rawCall{fn: "ff_flow_stage_edge", eid: f.flow, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{fk(e, "core"), fk(e, "members"), fk(e, "edges"), ek(f.waiting, "core")},
					[]string{e, "e1", f.active, f.waiting, "0"}
			}},
		rawCall{fn: "ff_flow_apply_edge", eid: f.flow, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{fk(e, "core"), fk(e, "edges"), ek(f.active, "core"), ek(f.waiting, "core")},
					[]string{e, "e1", f.active, f.waiting}
			}},
		rawCall{fn: "ff_flow_edge_policy", eid: f.flow, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{fk(e, "core"), ek(f.waiting, "core")}, []string{e, f.waiting, "any"}
			}},
		rawCall{fn: "ff_flow_wait_children", eid: f.active, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{ek(e, "core"), pk("leases"), pk("timeouts")}, fence(e)
			}},
		rawCall{fn: "ff_flow_cancel", eid: f.flow, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{fk(e, "core"), fk(e, "members"), fk(e, "cancels"), pk("flow_cancels")},
					[]string{e, "cancel_all", "r"}
			}},
		rawCall{fn: "ff_flow_cancel_more", eid: f.flow, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{fk(e, "cancels"), pk("flow_cancels")}, []string{e, "10"}
			}},
		rawCall{fn: "ff_flow_ack_cancel", eid: f.flow, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{fk(e, "cancels"), pk("flow_cancels")}, []string{e, f.waiting}
			}},
		rawCall{fn: "ff_park", eid: f.waiting, eidArg: 0, laneArg: 3, laneKeys: true,
			build: func(e, l string) ([]string, []string) {
				return []string{ek(e, "core"), lk(l, "eligible"), lk(l, "delayed")}, []string{e, "1", "budget", l}
			}},
		rawCall{fn: "ff_fence", eid: f.active, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) { return []string{ek(e, "core")}, fence(e) }},
		rawCall{fn: "ff_flow_reconcile", eid: f.waiting, eidArg: 0, laneArg: -1,
			build: func(e, _ string) ([]string, []string) {
				return []string{ek(e, "core"), pk("dep_blocked")}, []string{e}
			}},
	)
	return calls
}

// with returns a copy of ss with ss[i] = v.
func with(ss []string, i int, v string) []string {
	out := append([]string(nil), ss...)
	out[i] = v
	return out
}

// malformedCalls lists the refused variants of c: each key replaced by
// another key of the same slot, the execution id replaced by malformed ids
// (and, standalone only, the keys built from them: on a cluster their
// slots differ), the lane by malformed lanes and by another lane.
func (f hostileFixture) malformedCalls(c rawCall, standalone bool) []malformed {
	keys, args := c.build(c.eid, f.lane)
	slot := c.slot
	if slot == "" {
		slot = f.tag
	}
	var out []malformed
	for i := range keys {
		out = append(out, malformed{"key " + strconv.Itoa(i+1) + " replaced", with(keys, i, "ff:bogus:"+slot), args})
	}
	if c.eidArg >= 0 {
		uuid := c.eid[len(f.tag)+1:]
		num := f.tag[3 : len(f.tag)-1]
		other := "{p:" + num + "7}:" + uuid // well-formed, of another partition than the keys
		for _, bad := range []string{"not-an-id", "", f.tag + ":" + strings.ToUpper(uuid), c.eid + "0",
			"{p:0" + num + "}:" + uuid, f.tag + uuid, other} {
			out = append(out, malformed{"execution id " + strconv.Quote(bad), keys, with(args, c.eidArg, bad)})
			if standalone && bad != "" && bad != other {
				bk, ba := c.build(bad, f.lane)
				out = append(out, malformed{"execution id " + strconv.Quote(bad) + " with its keys", bk, ba})
			}
		}
	}
	if c.laneKeys || c.laneArg >= 0 {
		for _, bad := range []string{"bad lane", "bad,lane", "x{y}", "", strings.Repeat("l", sdk.MaxIDLength+1), "caf\xc3\xa9"} {
			bk, ba := c.build(c.eid, bad)
			out = append(out, malformed{"lane " + strconv.Quote(bad), bk, ba})
		}
	}
	if c.laneKeys && c.laneArg >= 0 {
		out = append(out, malformed{"a lane other than the keys'", keys, with(args, c.laneArg, "other-lane")})
	}
	return append(out, c.extra...)
}

func TestLibraryRefusesMalformedInput(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{DisableHandoff: true})
			raw := rawClient(t, addrs)
			nodes := nodeClients(t, addrs)
			t.Cleanup(func() {
				for _, c := range nodes {
					c.Close()
				}
			})
			f := newHostileFixture(t, b, 5)

			before := keyspaceOf(t, nodes)
			for _, c := range f.calls() {
				for _, m := range f.malformedCalls(c, topo.name == "standalone") {
					code, detail, err := fcallRaw(ctx, raw, c.fn, m.keys, m.args)
					if err != nil || code != sdk.CodeInvalidInput {
						t.Fatalf("%s with %s = %q %q, %v; want invalid_input", c.fn, m.what, code, detail, err)
					}
					requireSameKeyspace(t, c.fn+" with "+m.what, before, keyspaceOf(t, nodes))
				}
			}
			// The well-formed calls pass the checks: the refusals above came
			// from what was malformed.
			for _, c := range f.calls() {
				keys, args := c.build(c.eid, f.lane)
				if code, detail, err := fcallRaw(ctx, raw, c.fn, keys, args); err != nil || code == sdk.CodeInvalidInput {
					t.Fatalf("well-formed %s = %q %q, %v; want it past the input checks", c.fn, code, detail, err)
				}
			}
		})
	}
}

// newHostileFixture creates the fixture's executions on partition p.
func newHostileFixture(t *testing.T, b *valkeybackend.Backend, p int) hostileFixture {
	t.Helper()
	ctx := context.Background()
	f := hostileFixture{tag: sdk.PartitionTag(p), lane: "hostile", inst: "hostile-1", fresh: string(sdk.NewExecutionID(p)),
		flow: string(sdk.NewFlowID(p))}
	create := func() string {
		r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: sdk.NewExecutionID(p), Lane: sdk.LaneID(f.lane), Kind: "k", Payload: []byte("p")})
		if err != nil {
			t.Fatal(err)
		}
		return string(r.ID)
	}
	f.active = create()
	c, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: sdk.ExecutionID(f.active), Lane: sdk.LaneID(f.lane),
		WorkerID: "w", WorkerInstanceID: "w-1"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f.lease, f.epoch, f.at = c.Handle.LeaseID, strconv.FormatUint(c.Handle.Epoch, 10), c.Handle.AttemptID
	f.waiting = create()
	if err := b.RegisterWorker(ctx, sdk.WorkerRegistration{InstanceID: sdk.WorkerInstanceID(f.inst), WorkerID: "w",
		Lanes: []sdk.LaneID{sdk.LaneID(f.lane)}, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	return f
}

// rawClient is a plain valkey-go client of the deployment (cluster
// routing, no cache): what a caller bypassing the backend would use.
func rawClient(t *testing.T, addrs []string) valkey.Client {
	t.Helper()
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// fcallRaw sends an FCALL and returns its failure code ("" on success) and
// detail; err is a server error (a library bug) or a malformed envelope.
func fcallRaw(ctx context.Context, c valkey.Client, fn string, keys, args []string) (code string, detail []string, err error) {
	arr, err := c.Do(ctx, c.B().Fcall().Function(fn).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()).ToArray()
	if err != nil {
		return "", nil, err
	}
	if len(arr) < 2 {
		return "", nil, errors.New("short envelope")
	}
	if flag, _ := arr[0].AsInt64(); flag == 1 {
		return "", nil, nil
	}
	code, _ = arr[1].ToString()
	for _, m := range arr[2:] {
		s, _ := m.ToString()
		detail = append(detail, s)
	}
	return code, detail, nil
}

// requireSameKeyspace fails with the keys that differ.
func requireSameKeyspace(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	var diff []string
	for k, v := range before {
		if w, ok := after[k]; !ok || v != w {
			diff = append(diff, k+" changed or deleted")
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			diff = append(diff, k+" created")
		}
	}
	if len(diff) > 0 {
		t.Fatalf("%s: refused, but the keyspace changed: %s", what, strings.Join(diff, "; "))
	}
}

// A member of an eligible set that is not an execution of its partition
// (written raw: the library writes none) is dropped by the claim path that
// meets it, direct or fused, and work behind it still flows; the worker
// reports nothing about it.
func TestStraysInEligibleSetsAreDropped(t *testing.T) {
	for _, topo := range topologies() {
		for _, mode := range []sdk.ClaimMode{sdk.ClaimDirect, sdk.ClaimFused} {
			t.Run(topo.name+"/"+mode.String(), func(t *testing.T) {
				testStraysDropped(t, topo.addrs(t), mode)
			})
		}
	}
}

func testStraysDropped(t *testing.T, addrs []string, mode sdk.ClaimMode) {
	ctx := context.Background()
	const lane sdk.LaneID = "strays"
	b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 4, DisableHandoff: true})
	raw := rawClient(t, addrs)
	parts := []int{1, 2}
	for _, p := range parts {
		key := valkeybackend.LaneIndexKeys(p, lane).Eligible
		// Ahead of any real execution (lower score): not an id, an id of
		// another partition, and an id of this one without a record.
		for _, m := range []string{"not-an-id", string(sdk.NewExecutionID(3)), string(sdk.NewExecutionID(p))} {
			if err := raw.Do(ctx, raw.B().Zadd().Key(key).ScoreMember().ScoreMember(-1e15, m).Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	var reported atomic.Int64
	var last atomic.Value
	w, err := sdk.NewWorker(b, sdk.WorkerConfig{WorkerID: "w", Lanes: []sdk.LaneID{lane}, ClaimMode: mode,
		DisableClaimOffers: true, IdlePoll: 50 * time.Millisecond,
		OnError: func(err error) { reported.Add(1); last.Store(err.Error()) }})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- w.Run(runCtx, sdk.HandlerFunc(func(context.Context, *sdk.Task) error { return nil }))
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	var ids []sdk.ExecutionID
	for i := range 6 {
		r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: sdk.NewExecutionID(parts[i%2]), Lane: lane, Kind: "k"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	waitUntil(t, 10*time.Second, "the executions behind the strays to complete", func() bool {
		for _, id := range ids {
			if st, err := b.ReadExecutionState(ctx, id); err != nil || st != sdk.StateCompleted {
				return false
			}
		}
		return true
	})
	waitUntil(t, 5*time.Second, "the strays to leave the eligible sets", func() bool {
		for _, p := range parts {
			n, err := raw.Do(ctx, raw.B().Zcard().Key(valkeybackend.LaneIndexKeys(p, lane).Eligible).Build()).AsInt64()
			if err != nil || n != 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond) // idle rounds: nothing left to fail on
	if n := reported.Load(); n != 0 {
		t.Fatalf("the worker reported %d errors, the last %v; want none", n, last.Load())
	}
}

// A scan and a promotion that meet strays leave them out and remove them.
func TestScanAndPromoteDropStrays(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			const lane sdk.LaneID = "strays"
			const p = 2
			b := freshBackend(t, topo.addrs(t), valkeybackend.Options{Partitions: 4, DisableHandoff: true})
			raw := rawClient(t, topo.addrs(t))
			keys := valkeybackend.LaneIndexKeys(p, lane)
			strays := []string{"not-an-id", string(sdk.NewExecutionID(3))}
			plant := func(key string, score float64) {
				for _, m := range strays {
					if err := raw.Do(ctx, raw.B().Zadd().Key(key).ScoreMember().ScoreMember(score, m).Build()).Error(); err != nil {
						t.Fatal(err)
					}
				}
			}
			members := func(key string) []string {
				ms, err := raw.Do(ctx, raw.B().Zrange().Key(key).Min("0").Max("-1").Build()).AsStrSlice()
				if err != nil {
					t.Fatal(err)
				}
				return ms
			}

			waiting, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: sdk.NewExecutionID(p), Lane: lane, Kind: "k"})
			if err != nil {
				t.Fatal(err)
			}
			plant(keys.Eligible, -1e15)
			ids, err := b.ScanEligibleExecutions(ctx, sdk.ScanEligibleArgs{Lane: lane, Partition: p, Limit: 10})
			if err != nil || len(ids) != 1 || ids[0] != waiting.ID {
				t.Fatalf("scan = %v, %v; want [%s]", ids, err, waiting.ID)
			}
			if ms := members(keys.Eligible); len(ms) != 1 || ms[0] != string(waiting.ID) {
				t.Fatalf("eligible set after the scan: %q, want [%s]", ms, waiting.ID)
			}

			delayed, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{ID: sdk.NewExecutionID(p), Lane: lane, Kind: "k",
				DelayUntil: time.Now().Add(50 * time.Millisecond)})
			if err != nil {
				t.Fatal(err)
			}
			plant(keys.Delayed, 0)
			time.Sleep(100 * time.Millisecond)
			n, err := b.PromoteDelayed(ctx, sdk.PromoteDelayedArgs{Lane: lane, Partition: p})
			if err != nil || n != 1 {
				t.Fatalf("PromoteDelayed = %d, %v; want 1", n, err)
			}
			if ms := members(keys.Delayed); len(ms) != 0 {
				t.Fatalf("delayed set after the promotion: %q, want empty", ms)
			}
			if st, err := b.ReadExecutionState(ctx, delayed.ID); err != nil || st != sdk.StateWaiting {
				t.Fatalf("promoted execution: %q, %v", st, err)
			}
		})
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The quota and budget functions refuse malformed keys and arguments with
// invalid_input and the keyspace unchanged.
func TestPolicyFunctionsRefuseMalformedInput(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{})
			if err := b.CreateQuotaPolicy(ctx, sdk.QuotaPolicy{ID: "q1", Rate: 5, Window: time.Second}); err != nil {
				t.Fatal(err)
			}
			if err := b.CreateBudget(ctx, sdk.Budget{ID: "b1", Limits: map[string]sdk.BudgetLimit{"t": {Hard: 10}}}); err != nil {
				t.Fatal(err)
			}
			raw := rawClient(t, addrs)
			nodes := nodeClients(t, addrs)
			t.Cleanup(func() {
				for _, c := range nodes {
					c.Close()
				}
			})
			q := valkeybackend.QuotaKeyForTest("q1")
			bg := valkeybackend.BudgetKeyForTest("b1")
			eid := string(sdk.NewExecutionID(0))
			before := keyspaceOf(t, nodes)
			for _, c := range []struct {
				fn         string
				keys, args []string
			}{
				{"ff_quota_set", []string{"ff:q:nope"}, []string{"1", "1000", "0"}},
				{"ff_quota_set", []string{q}, []string{"1", "0", "0"}},  // a rate without a window
				{"ff_quota_set", []string{q}, []string{"0", "0", "0"}},  // no limit at all
				{"ff_quota_set", []string{q}, []string{"-1", "1", "1"}}, // negative
				{"ff_quota_admit", []string{q, q + ":win", q + ":other"}, []string{eid, "1000"}},
				{"ff_quota_admit", []string{q, q + ":win", q + ":run"}, []string{"not-an-id", "1000"}},
				{"ff_quota_admit", []string{q, q + ":win", q + ":run"}, []string{eid, "0"}},
				{"ff_quota_release", []string{q}, []string{eid}},
				{"ff_quota_release", []string{q + ":run"}, []string{"bad id"}},
				{"ff_quota_refresh", []string{q + ":run"}, []string{"0", eid}},
				{"ff_quota_giveback", []string{q + ":win", q + ":other"}, []string{eid, ""}},
				{"ff_quota_giveback", []string{q + ":win", q + ":run"}, []string{eid, "someone-else 1"}},
				{"ff_quota_admit", []string{q, q + ":win", q + ":run"}, []string{eid, "1000", "bad token"}},
				{"ff_budget_set", []string{bg}, []string{"1", "t", "5", "9"}}, // soft over hard
				{"ff_budget_set", []string{bg}, []string{"1", "bad dim", "5", "1"}},
				{"ff_budget_set", []string{"ff:bg:{q:1}:b1"}, []string{"1", "t", "5", "1"}},
				{"ff_budget_report", []string{bg, bg + ":other"}, []string{"", "1", "t", "1"}},
				{"ff_budget_report", []string{bg, bg + ":dedup"}, []string{"", "1", "t", "x"}},
				{"ff_budget_report", []string{bg, bg + ":dedup"}, []string{"", "2", "t", "1"}},
				{"ff_budget_reset", []string{"ff:bg:b1"}, nil},
			} {
				code, detail, err := fcallRaw(ctx, raw, c.fn, c.keys, c.args)
				if err != nil || code != sdk.CodeInvalidInput {
					t.Fatalf("%s %v %v = %q %q, %v; want invalid_input", c.fn, c.keys, c.args, code, detail, err)
				}
				requireSameKeyspace(t, c.fn, before, keyspaceOf(t, nodes))
			}
		})
	}
}
