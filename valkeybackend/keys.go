package valkeybackend

import (
	"strconv"
	"strings"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// The key layout, in one place. lua/flowfabric.lua mirrors it in its header.
//
// Per execution (E = "{p:N}:<uuid>", so the id's tag decides the slot):
//
//	ff:e:E:core      HASH   the execution record (mutable)
//	ff:e:E:ctx       HASH   immutable context: kind, lane, payload, "t:<tag>"
//	ff:e:E:result    STRING result bytes
//	ff:e:E:grant     HASH   the claim grant (expires)
//	ff:e:E:susp      HASH   the current (or last) suspension (waiting.go)
//	ff:e:E:stream:I  STREAM attempt I's frames (streams.go); ":summary" HASH
//	                 its summary document and version
//
// Per waitpoint (W = "{p:N}:<uuid>", its execution's tag):
//
//	ff:wp:W          HASH   execution, state, label, expiry, signal count
//	ff:wp:W:signals  STREAM the signals it received
//	ff:wp:W:dedup:K  STRING first signal id of dedup key K (PX)
//
// Per partition (T = "{p:N}") and lane L:
//
//	ff:i:T:L:eligible | delayed | active | blocked | terminal   ZSETs
//	ff:i:T:leases | timeouts | deadlines | all                  ZSETs
//	(active is no longer written since library v16 — leases holds every
//	leased execution — nor all since v19 — ListExecutions pages the state
//	indexes — but both are still passed, so KEYS keep their shape)
//	ff:idem:T:K      STRING idempotency key K → first execution id
//	ff:own:T         STRING the engine process that scans partition T (PX lease)
//	ff:noop:T        never written; stands in for an absent optional key
//	ff:sec:T         HASH   waitpoint HMAC secrets (the same on every partition)
//	ff:i:T:suspended | susp_timeouts | wp_pending  ZSETs (waiting.go)
//	ff:i:T:signals   STREAM the partition's signal deliveries (capped)
//	ff:arrivals:T    shard channel: "<lane> <eid>" when an execution fills an
//	                 empty eligible set: created, requeued at once, promoted,
//	                 reclaimed, unblocked or replayed (arrivals.go)
//
// Global (untagged; read at connect or rarely):
//
//	ff:config        HASH   partitions (fixed per deployment)
//	ff:lanes         SET    lane registry
//	ff:w:{w:I}:alive STRING owner token of live worker instance I (PX TTL)
//	ff:w:{w:I}:info  HASH   its worker id, lanes and capabilities (same TTL)
//	ff:workers       ZSET   instance → registration expiry
//	ff:engines       ZSET   engine process (scanner) id → heartbeat expiry (ms)
//	ff:prepare       STRING Prepare's lock while it loads the library (PX)
//
// Hand-offs (handoff.go). One server (ff_create reads them from every
// partition):
//
//	ff:offers:L      ZSET   idle workers' claim offers on lane L → expiry (ms)
//	ff:inbox:I       LIST   executions claimed for worker instance I's offers,
//	                 PX = their lease TTL
//
// A cluster (a create reaches its own slot only):
//
//	ff:i:T:L:offers        ZSET   claim offers on lane L for partition T's creates
//	ff:handoff:T:I         shard channel: hand-offs of T's creates to instance I
const (
	configKey = "ff:config"
	lanesKey  = "ff:lanes"
	// prepareLockKey serialises library loads (prepare.go).
	prepareLockKey = "ff:prepare"
	// ctx hash fields; tags are stored as tagFieldPrefix+name.
	ctxKind        = "kind"
	ctxLane        = "lane"
	ctxPayload     = "payload"
	tagFieldPrefix = "t:"
)

// execKeys are the per-execution keys.
type execKeys struct {
	core, ctx, result, grant string
}

// coreKey is keysOf(id).core without building the other three.
func coreKey(id sdk.ExecutionID) string { return "ff:e:" + string(id) + ":core" }

func keysOf(id sdk.ExecutionID) execKeys {
	k := sharedKeys([]string{"ff:e:", string(id), ":"}, "core", "ctx", "result", "grant")
	return execKeys{core: k[0], ctx: k[1], result: k[2], grant: k[3]}
}

// sharedKeys returns the prefix (the concatenation of pre) followed by each
// suffix, all cut from one allocation: the hot path builds a call's whole
// key set per call, and one allocation per key was a third of a job's
// client allocations.
func sharedKeys(pre []string, suffixes ...string) [5]string {
	plen := 0
	for _, p := range pre {
		plen += len(p)
	}
	n := 0
	for _, s := range suffixes {
		n += plen + len(s)
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range suffixes {
		for _, p := range pre {
			b.WriteString(p)
		}
		b.WriteString(s)
	}
	all := b.String()
	var out [5]string
	at := 0
	for i, s := range suffixes {
		end := at + plen + len(s)
		out[i] = all[at:end]
		at = end
	}
	return out
}

// laneKeys are one lane's indexes on one partition.
type laneKeys struct {
	eligible, delayed, active, blocked, terminal string
}

func laneKeysOf(tag string, lane sdk.LaneID) laneKeys {
	k := sharedKeys([]string{"ff:i:", tag, ":", string(lane), ":"}, "eligible", "delayed", "active", "blocked", "terminal")
	return laneKeys{eligible: k[0], delayed: k[1], active: k[2], blocked: k[3], terminal: k[4]}
}

// LaneIndexes names one lane's index ZSETs on one partition.
type LaneIndexes struct {
	Eligible, Delayed, Blocked, Terminal string
	// Active is the partition's leases ZSET, which holds every leased
	// execution of every lane: the lane's own active index is no longer
	// written (library v16), and the harness runs one lane.
	Active string
}

// LaneIndexKeys names lane's index ZSETs on partition p, for diagnostics
// (the harness reads their sizes to say where unfinished work sits).
func LaneIndexKeys(p int, lane sdk.LaneID) LaneIndexes {
	tag := sdk.PartitionTag(p)
	k := laneKeysOf(tag, lane)
	return LaneIndexes{Eligible: k.eligible, Delayed: k.delayed, Active: partKeysOf(tag).leases,
		Blocked: k.blocked, Terminal: k.terminal}
}

// eligibleKeyParts parses laneKeysOf's eligible key,
// "ff:i:{p:N}:<lane>:eligible", back into its lane and partition (the
// invalidation pushes name keys, readiness needs both).
func eligibleKeyParts(key string) (lane sdk.LaneID, partition int, ok bool) {
	rest, ok := strings.CutPrefix(key, "ff:i:{p:")
	if !ok {
		return "", 0, false
	}
	if rest, ok = strings.CutSuffix(rest, ":eligible"); !ok {
		return "", 0, false
	}
	num, l, ok := strings.Cut(rest, "}:")
	if !ok {
		return "", 0, false
	}
	p, err := strconv.Atoi(num)
	if err != nil || p < 0 {
		return "", 0, false
	}
	return sdk.LaneID(l), p, true
}

// partKeys are a partition's lane-independent indexes.
type partKeys struct {
	leases, timeouts, deadlines, all, noop string
}

func partKeysOf(tag string) partKeys {
	k := sharedKeys([]string{"ff:i:", tag, ":"}, "leases", "timeouts", "deadlines", "all")
	return partKeys{leases: k[0], timeouts: k[1], deadlines: k[2], all: k[3], noop: "ff:noop:" + tag}
}

// waitKeys are a partition's keys of the waiting calls (lua: ff_suspend's
// header): the HMAC secrets, the suspended and suspension-timeout
// indexes, the pending waitpoints and the delivery log.
type waitKeys struct {
	sec, suspended, suspTimeouts, wpPending, signals string
}

func waitKeysOf(tag string) waitKeys {
	return waitKeys{sec: "ff:sec:" + tag, suspended: "ff:i:" + tag + ":suspended",
		suspTimeouts: "ff:i:" + tag + ":susp_timeouts", wpPending: "ff:i:" + tag + ":wp_pending",
		signals: "ff:i:" + tag + ":signals"}
}

// suspKey is execution id's suspension record; waitpointKey a waitpoint's
// record ("<key>:signals" its signal stream).
func suspKey(id sdk.ExecutionID) string     { return "ff:e:" + string(id) + ":susp" }
func waitpointKey(w sdk.WaitpointID) string { return "ff:wp:" + string(w) }

// flowKeys are a flow's keys (lua: the flows section). The flow id
// starts with its partition's tag, so they share the partition's slot.
type flowKeys struct {
	core, members, edges, outcome, cancels string
}

func flowKeysOf(f sdk.FlowID) flowKeys {
	k := "ff:f:" + string(f) + ":"
	return flowKeys{core: k + "core", members: k + "members", edges: k + "edges", outcome: k + "outcome", cancels: k + "cancels"}
}

// flowIndexes are a partition's flow indexes: its flows (score 0, in id
// order), the flows with cancels pending, the members waiting for
// dependencies.
type flowIndexes struct {
	flows, cancels, depBlocked string
}

func flowIndexesOf(tag string) flowIndexes {
	p := "ff:i:" + tag + ":"
	return flowIndexes{flows: p + "flows", cancels: p + "flow_cancels", depBlocked: p + "dep_blocked"}
}

// leaseHistoryKey is partition tag's lease history stream (lua: log_lease).
func leaseHistoryKey(tag string) string { return "ff:i:" + tag + ":lease_history" }

func idemKey(tag, key string) string { return "ff:idem:" + tag + ":" + key }

func ownKey(tag string) string { return "ff:own:" + tag }

// arrivalsChannel is partition tag's shard channel of arrivals (its hash
// tag puts it in the partition's slot, so ff_create may publish on it).
func arrivalsChannel(tag string) string { return "ff:arrivals:" + tag }

// offersKey is lane's ZSET of claim offers on a single server: every
// partition's creates read it.
func offersKey(lane sdk.LaneID) string { return "ff:offers:" + string(lane) }

// offersKeyIn is lane's ZSET of claim offers of partition tag on a cluster:
// that partition's creates alone read it.
func offersKeyIn(tag string, lane sdk.LaneID) string {
	return "ff:i:" + tag + ":" + string(lane) + ":offers"
}

// handoffChannel is worker instance's shard channel of hand-offs from
// partition tag's creates (a cluster).
func handoffChannel(tag string, inst sdk.WorkerInstanceID) string {
	return "ff:handoff:" + tag + ":" + string(inst)
}

// inboxKey is worker instance's list of hand-offs (one server).
func inboxKey(inst sdk.WorkerInstanceID) string { return "ff:inbox:" + string(inst) }

// EnginesKey is the ZSET of live engine processes (package scanner).
const EnginesKey = "ff:engines"

// workersIndexKey lists live worker instances, scored by registration expiry.
const workersIndexKey = "ff:workers"

type workerKeys struct{ alive, info string }

func workerKeysOf(id sdk.WorkerInstanceID) workerKeys {
	p := "ff:w:{w:" + string(id) + "}:"
	return workerKeys{alive: p + "alive", info: p + "info"}
}

// coreDefaults are the values of core fields that are not written while at
// their default (the library's header: a create writes lane, priority,
// created_at, state, last_transition_at and only what else it sets). A
// reader of the raw record sees them through withCoreDefaults, so an
// absent field and a written default read the same.
var coreDefaults = map[string]string{
	"blocked": "", "caps": "", "retry_max": "0", "bo_kind": "", "bo_init": "0", "bo_max": "0",
	"bo_mult": "0", "bo_jitter": "0", "retry_cats": "", "attempt_timeout": "0", "deadline_at": "0",
	"delay_until": "0", "resume": "0", "total_attempts": "0", "attempt_index": "0", "attempt_id": "",
	"attempt_type": "", "pending_type": "initial", "retry_count": "0", "interrupt_count": "0",
	"lease_state": "", "lease_id": "", "lease_epoch": "0", "lease_expires_at": "0",
}

// withCoreDefaults fills the fields of core (an execution's record as
// read; empty when it does not exist) that are absent with their defaults,
// and returns it.
func withCoreDefaults(core map[string]string) map[string]string {
	if len(core) == 0 {
		return core
	}
	for f, v := range coreDefaults {
		if _, ok := core[f]; !ok {
			core[f] = v
		}
	}
	return core
}

// coreField returns field's value as read (HMGET: nil when absent), or its
// default.
func coreField(field string, v valkey.ValkeyMessage) string {
	s, err := v.ToString()
	if err != nil {
		return coreDefaults[field]
	}
	return s
}
