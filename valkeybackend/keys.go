package valkeybackend

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/lua"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// The key layout, in one place. lua/flowfabric.lua mirrors it in its header.
// Every key and shard channel starts with the namespace (Options.Namespace),
// "ff:" below, the default; a keyspace builds them for one namespace.
//
// Per execution (E = "{p:N}:<uuid>", so the id's tag decides the slot):
//
//	ff:e:E:core      HASH   the execution record (mutable)
//	ff:e:E:ctx       HASH   immutable context: kind, lane, payload, "t:<tag>",
//	                 tp (trace carrier, only when the create gave one)
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
// Schedules (schedules.go; S a schedule's name, T the partition it hashes
// to, where its executions are minted too):
//
//	ff:sched:T:S     HASH   the schedule's definition and state
//	ff:i:T:schedules ZSET   the partition's schedules (score 0, by name)
//	ff:i:T:sched_due ZSET   its running schedules by next tick (ms)
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
	// ctx hash fields; tags are stored as tagFieldPrefix+name.
	ctxKind        = "kind"
	ctxLane        = "lane"
	ctxPayload     = "payload"
	ctxTrace       = "tp"
	tagFieldPrefix = "t:"
)

// DefaultNamespace is the prefix of every key, shard channel and library
// function (ff_<name>) of a deployment whose Options.Namespace is empty.
const DefaultNamespace = lua.DefaultNamespace

// namespacePattern is what Options.Namespace accepts: no ':' or '{' (a
// key's prefix must not reach into its hash tag or the layout after it),
// no '_' (so "<ns>_<function>" names one namespace's function only: "a"'s
// "a_flow_submit" would be "a_flow"'s "a_flow_submit" otherwise), nothing a
// function name or Lua pattern treats specially.
var namespacePattern = regexp.MustCompile(`^[a-z][a-z0-9]{0,23}$`)

// CheckNamespace reports whether ns may be Options.Namespace: nil for ""
// (the default) and for 1 to 24 lowercase letters and digits starting with
// a letter, else the CodeInvalidInput error Connect would return.
func CheckNamespace(ns string) error {
	if ns != "" && !namespacePattern.MatchString(ns) {
		return sdk.Validationf(sdk.CodeInvalidInput,
			"namespace %q: want 1 to 24 lowercase letters and digits, starting with a letter", ns)
	}
	return nil
}

// keyspace builds the keys and shard channels of one namespace: every one
// starts with "<ns>:" ("ff:" above). A Backend holds one (Backend.ks), so
// two deployments under different namespaces share a server without
// sharing a key. The prefixes are cut once, so a hot-path key set costs
// what it did with literal prefixes.
type keyspace struct {
	ns string
	// prefixes: "<ns>:e:", "<ns>:i:", ...
	e, i, wp, f, idem, own, noop, sec, arrivals, offers, handoff, inbox, w, q, bg, lane, sched string
	// whole keys
	config, lanes, prepare, engines, workers string
}

// defaultKeys is the default namespace's keyspace.
var defaultKeys = newKeyspace(DefaultNamespace)

func newKeyspace(ns string) keyspace {
	p := ns + ":"
	return keyspace{ns: ns,
		e: p + "e:", i: p + "i:", wp: p + "wp:", f: p + "f:", idem: p + "idem:", own: p + "own:",
		noop: p + "noop:", sec: p + "sec:", arrivals: p + "arrivals:", offers: p + "offers:",
		handoff: p + "handoff:", inbox: p + "inbox:", w: p + "w:{w:", q: p + "q:", bg: p + "bg:", lane: p + "lane:",
		sched: p + "sched:", config: p + "config", lanes: p + "lanes", prepare: p + "prepare", engines: p + "engines", workers: p + "workers"}
}

// execKeys are the per-execution keys.
type execKeys struct {
	core, ctx, result, grant string
}

// coreKey is keysOf(id).core without building the other three.
func (k *keyspace) coreKey(id sdk.ExecutionID) string { return k.e + string(id) + ":core" }

func (k *keyspace) keysOf(id sdk.ExecutionID) execKeys {
	s := sharedKeys([]string{k.e, string(id), ":"}, "core", "ctx", "result", "grant")
	return execKeys{core: s[0], ctx: s[1], result: s[2], grant: s[3]}
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

func (k *keyspace) laneKeysOf(tag string, lane sdk.LaneID) laneKeys {
	s := sharedKeys([]string{k.i, tag, ":", string(lane), ":"}, "eligible", "delayed", "active", "blocked", "terminal")
	return laneKeys{eligible: s[0], delayed: s[1], active: s[2], blocked: s[3], terminal: s[4]}
}

// LaneIndexes names one lane's index ZSETs on one partition.
type LaneIndexes struct {
	Eligible, Delayed, Blocked, Terminal string
	// Active is the partition's leases ZSET, which holds every leased
	// execution of every lane: the lane's own active index is no longer
	// written (library v16), and the harness runs one lane.
	Active string
}

// LaneIndexKeys names lane's index ZSETs on partition p in the default
// namespace, for diagnostics (the harness reads their sizes to say where
// unfinished work sits). (*Backend).LaneIndexKeys names its namespace's.
func LaneIndexKeys(p int, lane sdk.LaneID) LaneIndexes { return defaultKeys.laneIndexKeys(p, lane) }

// LaneIndexKeys names lane's index ZSETs on partition p in b's namespace.
func (b *Backend) LaneIndexKeys(p int, lane sdk.LaneID) LaneIndexes {
	return b.ks.laneIndexKeys(p, lane)
}

func (k *keyspace) laneIndexKeys(p int, lane sdk.LaneID) LaneIndexes {
	tag := sdk.PartitionTag(p)
	lk := k.laneKeysOf(tag, lane)
	return LaneIndexes{Eligible: lk.eligible, Delayed: lk.delayed, Active: k.partKeysOf(tag).leases,
		Blocked: lk.blocked, Terminal: lk.terminal}
}

// eligibleKeyParts parses laneKeysOf's eligible key,
// "<ns>:i:{p:N}:<lane>:eligible", back into its lane and partition (the
// invalidation pushes name keys, readiness needs both). Another
// namespace's key does not parse.
func (k *keyspace) eligibleKeyParts(key string) (lane sdk.LaneID, partition int, ok bool) {
	rest, ok := strings.CutPrefix(key, k.i)
	if !ok {
		return "", 0, false
	}
	if rest, ok = strings.CutPrefix(rest, "{p:"); !ok {
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

func (k *keyspace) partKeysOf(tag string) partKeys {
	s := sharedKeys([]string{k.i, tag, ":"}, "leases", "timeouts", "deadlines", "all")
	return partKeys{leases: s[0], timeouts: s[1], deadlines: s[2], all: s[3], noop: k.noop + tag}
}

// waitKeys are a partition's keys of the waiting calls (lua: ff_suspend's
// header): the HMAC secrets, the suspended and suspension-timeout
// indexes, the pending waitpoints and the delivery log.
type waitKeys struct {
	sec, suspended, suspTimeouts, wpPending, signals string
}

func (k *keyspace) waitKeysOf(tag string) waitKeys {
	return waitKeys{sec: k.sec + tag, suspended: k.i + tag + ":suspended",
		suspTimeouts: k.i + tag + ":susp_timeouts", wpPending: k.i + tag + ":wp_pending",
		signals: k.i + tag + ":signals"}
}

// suspKey is execution id's suspension record; waitpointKey a waitpoint's
// record ("<key>:signals" its signal stream).
func (k *keyspace) suspKey(id sdk.ExecutionID) string     { return k.e + string(id) + ":susp" }
func (k *keyspace) waitpointKey(w sdk.WaitpointID) string { return k.wp + string(w) }

// streamKey is attempt i's stream of execution id; streamKey+":summary"
// its summary hash.
func (k *keyspace) streamKey(id sdk.ExecutionID, i sdk.AttemptIndex) string {
	return k.e + string(id) + ":stream:" + strconv.FormatUint(uint64(i), 10)
}

// flowKeys are a flow's keys (lua: the flows section). The flow id
// starts with its partition's tag, so they share the partition's slot.
type flowKeys struct {
	core, members, edges, outcome, cancels string
}

func (k *keyspace) flowKeysOf(f sdk.FlowID) flowKeys {
	p := k.f + string(f) + ":"
	return flowKeys{core: p + "core", members: p + "members", edges: p + "edges", outcome: p + "outcome", cancels: p + "cancels"}
}

// flowIndexes are a partition's flow indexes: its flows (score 0, in id
// order), the flows with cancels pending, the members waiting for
// dependencies.
type flowIndexes struct {
	flows, cancels, depBlocked string
}

func (k *keyspace) flowIndexesOf(tag string) flowIndexes {
	p := k.i + tag + ":"
	return flowIndexes{flows: p + "flows", cancels: p + "flow_cancels", depBlocked: p + "dep_blocked"}
}

// leaseHistoryKey is partition tag's lease history stream (lua: log_lease).
func (k *keyspace) leaseHistoryKey(tag string) string { return k.i + tag + ":lease_history" }

// scheduleKey is schedule id's record on partition tag.
func (k *keyspace) scheduleKey(tag string, id sdk.ScheduleID) string {
	return k.sched + tag + ":" + string(id)
}

// scheduleIndexKeys are partition tag's schedule indexes: every schedule,
// and the running ones by next tick.
func (k *keyspace) scheduleIndexKeys(tag string) (all, due string) {
	return k.i + tag + ":schedules", k.i + tag + ":sched_due"
}

func (k *keyspace) idemKey(tag, key string) string { return k.idem + tag + ":" + key }

func (k *keyspace) ownKey(tag string) string { return k.own + tag }

// arrivalsChannel is partition tag's shard channel of arrivals (its hash
// tag puts it in the partition's slot, so ff_create may publish on it).
func (k *keyspace) arrivalsChannel(tag string) string { return k.arrivals + tag }

// offersKey is lane's ZSET of claim offers on a single server: every
// partition's creates read it.
func (k *keyspace) offersKey(lane sdk.LaneID) string { return k.offers + string(lane) }

// offersKeyIn is lane's ZSET of claim offers of partition tag on a cluster:
// that partition's creates alone read it.
func (k *keyspace) offersKeyIn(tag string, lane sdk.LaneID) string {
	return k.i + tag + ":" + string(lane) + ":offers"
}

// handoffChannel is worker instance's shard channel of hand-offs from
// partition tag's creates (a cluster).
func (k *keyspace) handoffChannel(tag string, inst sdk.WorkerInstanceID) string {
	return k.handoff + tag + ":" + string(inst)
}

// inboxKey is worker instance's list of hand-offs (one server).
func (k *keyspace) inboxKey(inst sdk.WorkerInstanceID) string { return k.inbox + string(inst) }

// EnginesKey is the ZSET of live engine processes (package scanner) in the
// default namespace; (*Backend).EnginesKey names its namespace's.
const EnginesKey = DefaultNamespace + ":engines"

// EnginesKey is the ZSET of live engine processes in b's namespace.
func (b *Backend) EnginesKey() string { return b.ks.engines }

type workerKeys struct{ alive, info string }

func (k *keyspace) workerKeysOf(id sdk.WorkerInstanceID) workerKeys {
	p := k.w + string(id) + "}:"
	return workerKeys{alive: p + "alive", info: p + "info"}
}

// quotaKey is quota q's hash (quotaKeysOf names its window and holds too).
func (k *keyspace) quotaKey(q sdk.QuotaID) string {
	return k.q + policyTag("q", string(q), QuotaPartitions) + ":" + string(q)
}

// quotaKeys are a quota's hash, its sliding window ("<hash>:win") and its
// concurrency holds ("<hash>:run").
type quotaKeys struct{ hash, win, run string }

func (k *keyspace) quotaKeysOf(q sdk.QuotaID) quotaKeys {
	s := sharedKeys([]string{k.q, policyTag("q", string(q), QuotaPartitions), ":", string(q)}, "", ":win", ":run")
	return quotaKeys{hash: s[0], win: s[1], run: s[2]}
}

// budgetKey is budget id's hash (":dedup" its applied report keys).
func (k *keyspace) budgetKey(id sdk.BudgetID) string {
	return k.bg + policyTag("b", string(id), BudgetPartitions) + ":" + string(id)
}

// lanePolicyKey is lane's policy hash (paused, quota, budgets); untagged,
// read alone.
func (k *keyspace) lanePolicyKey(lane sdk.LaneID) string { return k.lane + string(lane) }

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
