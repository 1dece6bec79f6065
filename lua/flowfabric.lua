#!lua name=flowfabric
--[[
FlowFabric Valkey Functions library.

KEY LAYOUT (mirrors valkeybackend/keys.go; the Go file is the source of truth).
Every key and shard channel starts with the namespace, "ff:" below. A
deployment under another namespace NS loads this text rewritten at load time
(lua.Namespaced): library flowfabric_NS, functions NS_<name>, every "ff:"
and "ff_" at a word start turned into "NS:" and "NS_". So code here never
counts a prefix's length by hand: it measures the literal (#OFFERS_PRE).
T is a partition tag "{p:N}"; E is an execution id "{p:N}:<uuid>" (it starts with T,
so every key below hashes to the partition's slot). L is a lane name.

  ff:e:E:core        HASH   the execution record (fields below), mutable
  ff:e:E:ctx         HASH   immutable context: kind, lane, payload, one
                            field "t:<name>" per tag, and tp (the trace
                            carrier) when given; written once at create,
                            so clients cache it (RESP3 tracking) for free
  ff:e:E:result      STRING result bytes of a completed execution
  ff:e:E:grant       HASH   the one claim grant (worker_id, worker_instance_id,
                            expires_at), PEXPIREAT at its expiry
  ff:e:E:susp        HASH   the current (or last) suspension (ff_suspend)
  ff:e:E:stream:I    STREAM attempt I's frames (ff_append); ":summary" HASH
                            its summary document and version
  ff:wp:W...         a waitpoint's keys (see ff_suspend's section)
  ff:i:T:L:eligible  ZSET   runnable now; score = created_at_ms - priority*1e12
  ff:i:T:L:delayed   ZSET   not before score (ms): delays, retry backoff
  ff:i:T:L:active    ZSET   no longer written (v16: leases holds every
                            leased execution); still passed and checked,
                            so the KEYS of v15 clients stay valid
  ff:i:T:L:blocked   ZSET   parked for routing (no capable worker); score = time
  ff:i:T:L:terminal  ZSET   ended; score = end time (retention)
  ff:i:T:leases      ZSET   lease expiry per execution (re-scored on renew)
  ff:i:T:timeouts    ZSET   attempt timeout per execution
  ff:i:T:deadlines   ZSET   execution deadline per execution
  ff:i:T:lease_history STREAM lease events of the executions created with
                            lease history on (core field lease_log): ev eid
                            lid ep lane [why] [w]; MAXLEN ~ LEASE_HISTORY
                            (see log_lease)
  ff:i:T:all         ZSET   no longer written (v19: ff_list pages the state
                            indexes); passed still, and ff_trim removes
                            what a v18 create left in it
  ff:idem:T:K        STRING first execution id for idempotency key K (PX ttl)
  ff:own:T           STRING engine process that scans partition T (PX lease)
  ff:sched:T:S       HASH   schedule S (its name hashes to T); ff:i:T:schedules
                            and ff:i:T:sched_due ZSETs list the partition's
                            schedules and the running ones by next tick
                            (see the schedules section)
  ff:noop:T          never written: stands in for an absent optional key
  ff:arrivals:T      shard channel: "<lane> <eid>" when an execution fills an
                     empty eligible set (a hint for idle workers): created,
                     requeued at once, promoted, reclaimed, unblocked, replayed;
                     and "<eid>" alone when an active lease is taken from its
                     holder (revoked, or cancelled by an operator): the holder
                     re-checks that lease at once (lanes hold no space, ids
                     no space either, so the two never look alike)

Claim offers. On one server, one key per lane, which ff_create reads from
every partition, and hand-offs go through the instance's inbox list; on a
cluster (a create cannot reach another slot) the same per partition:
ff:i:T:L:offers, and hand-offs are published on the instance's shard
channel of that partition, ff:handoff:T:I (it subscribes on every
partition; one lost on the way is recovered when its lease expires):
  ff:offers:L        ZSET   free slots idle workers offer on lane L; member
                            "<lease_id> <attempt_id> <lease_ttl_ms> <worker_id>
                            <worker_instance> <caps_csv>[ <quota>]", score =
                            the offer's expiry (server ms). ff_create claims
                            an execution that lands in an empty eligible set
                            (behind a backlog: the set's head, up to two)
                            for the freshest live offer, in the same call, and
                            hands it over through the instance's inbox;
                            ff_offer and ff_complete post offers. An offer
                            naming a quota takes only what a create admitted
                            under it (see ff_create, flag 8)
  ff:inbox:I         LIST   hand-offs to worker instance I (it waits on the
                            list with BLMPOP): the lease and context,
                            length-prefixed ("<len>:<bytes>" per field; see
                            claim_for_offer); PX = the lease TTL, so an
                            inbox whose worker died goes with the leases it
                            held

Worker registry (tag {w:I} for instance I, so both keys share a slot):
  ff:w:{w:I}:alive   STRING owner token, PX = registration TTL
  ff:w:{w:I}:info    HASH   worker_id, lanes, caps, registered_at (same TTL)
  ff:workers         ZSET   instance -> registration expiry (written by the
                            client beside these calls; untagged, global)
  ff:engines         ZSET   engine (scanner) process -> heartbeat expiry ms

Core fields: lane kind priority created_at state blocked caps retry_max bo_kind
bo_init bo_max bo_mult bo_jitter retry_cats attempt_timeout deadline_at
delay_until resume total_attempts attempt_index attempt_id attempt_type
pending_type retry_count interrupt_count lease_state lease_id lease_epoch
worker_id worker_instance lease_expires_at started_at completed_at
progress_pct progress_msg failure_reason failure_category cancel_reason
cancelled_by last_transition_at ended_by (who ended the last attempt: the
holder's lease id, 'engine' or 'operator'; a retried terminal call checks it)
waited ('1' once the execution suspended: retention then deletes what the
waiting calls kept for it, see ff_suspend), streams ('1' once an attempt
appended to its stream: retention deletes them, see ff_append),
lease_log ('1' when the create asked for lease history: every lease event
of the execution is logged, see log_lease; absent otherwise, and then no
lease call writes anything for it).
A field at its default is not written (a create writes lane, priority,
created_at, state, last_transition_at and only what else it sets), and an
absent field reads as its default: pending_type 'initial', resume '0', every
other numeric field 0, every other text field ''. Readers here and in Go
(valkeybackend coreDefaults) apply them.
Per-attempt fields (progress_pct progress_msg failure_reason failure_category
revoke_reason) describe the current (or last) attempt only: a new attempt
starts them clean (take_lease), and each ended attempt's record is kept in
field attempt:<index> (keep_attempt; the last ATTEMPT_HISTORY of them).

state is the public state: waiting delayed active completed failed cancelled
expired. A waiting execution with blocked ~= '' is parked (blocked set).
lease_state (active only): held | revoked. Expiry is read from lease_expires_at
against server TIME, never stored as a state until a scanner reclaims.
resume = '1' when the next claim continues the interrupted attempt.

REPLY SHAPE (every function): {1, status, field...} on success,
{0, code, detail...} on a business failure. Redis errors mean a bug.

INPUT: no caller is trusted. Every function that writes checks the ids,
lanes and key names it receives against this layout before its first
write (bad_call, bad_keys: string work, no command) and answers
invalid_input, having written nothing, when one is off.
]]

local VERSION = '38'
-- MIN_CLIENT is the oldest client this library serves; a client's version is
-- the VERSION of the library it embeds (Go: lua.Version). A client older than
-- MIN_CLIENT refuses to run against this library, and never replaces it.
-- Raise it (to VERSION at most) with any change an older client would
-- misread: a function removed or renamed, KEYS/ARGV or a reply changed.
local MIN_CLIENT = '19'
local PRIORITY_SCALE = 1000000000000
local MAX_PRIORITY = 9000
-- MAX_TRACE_CARRIER bounds a create's trace carrier (Go: sdk.MaxTraceParentBytes).
local MAX_TRACE_CARRIER = 512
local INTERRUPT_CAP = 100
local HANDOFFS_BEHIND_BACKLOG = 2

local function ok(...) return {1, 'OK', ...} end
local function fail(code, ...) return {0, code, ...} end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fmt(n) return string.format('%.0f', n) end

-- A numeric core field as read (HMGET gives false for an absent field,
-- which is at its default: 0 for every numeric field, see the header).
local function num(v) return tonumber(v or '0') or 0 end

-- Appends src's items to dst; returns dst.
local function append_all(dst, src)
  for i = 1, #src do dst[#dst + 1] = src[i] end
  return dst
end

local function eligible_score(created_at, priority)
  return fmt(tonumber(created_at) - tonumber(priority) * PRIORITY_SCALE)
end

-- Publishes eid ("<lane> <eid>") on the partition's arrivals channel: it
-- just filled an empty eligible set, so an idle worker can claim it without
-- first reading the set (a set that already held work has no idle reader
-- to tell). No-op without a channel or a lane.
local function publish_arrival(arrivals, lane, eid)
  if arrivals and lane and lane ~= '' then
    redis.call('SPUBLISH', arrivals, lane .. ' ' .. eid)
  end
end

-- announce publishes eid when the eligible set it just joined holds nothing
-- else (callers that read the set's size before adding use publish_arrival).
local function announce(arrivals, eligible, lane, eid)
  if redis.call('ZCARD', eligible) == 1 then publish_arrival(arrivals, lane, eid) end
end

-- Parses a non-negative integer argument; nil when malformed. '0' and '1',
-- the most common arguments by far, skip the pattern (string equality is a
-- pointer comparison in Lua).
local function uint(s)
  if s == '0' then return 0 end
  if s == '1' then return 1 end
  if s == nil or s == '' or not string.match(s, '^%d+$') then return nil end
  return tonumber(s)
end

---------------------------------------------------------------------------
-- Input checks. Callers are not trusted: every function checks, before its
-- first write, each execution id, lane and key name it receives against the
-- layout above (ids "{p:N}:<lowercase uuid>", lanes as sdk.LaneID.Validate,
-- keys exactly the names the layout gives for that id's tag and that lane).
-- String work only, no command; a failure is invalid_input and nothing is
-- written. The names built here are only compared, never accessed.

local HEX = '[0-9a-f]'
local ID_PATTERN = '^({p:(%d+)}):' .. HEX:rep(8) .. '%-' .. HEX:rep(4) .. '%-' ..
  HEX:rep(4) .. '%-' .. HEX:rep(4) .. '%-' .. HEX:rep(12) .. '$'
-- Lane, worker and instance names: 1..256 bytes of printable ASCII, no
-- space, comma or brace (a brace would move a key's hash tag).
local NAME_PATTERN = '^[!-+%-.-z|~]+$'
local MAX_NAME = 256

-- Reports whether n, the digits of a "{p:N}" tag, are a partition number
-- as sdk.ExecutionID.Validate accepts it: up to 6 digits, no leading zero.
local function partition_digits(n)
  return n ~= nil and #n <= 6 and (#n == 1 or string.byte(n, 1) ~= 48)
end

-- Returns the partition tag "{p:N}" of execution id eid, or nil when eid
-- is not an execution id.
local function id_tag(eid)
  if type(eid) ~= 'string' or #eid > 47 then return nil end
  local tag, n = string.match(eid, ID_PATTERN)
  if not partition_digits(n) then return nil end
  return tag
end

local function is_name(s)
  return type(s) == 'string' and #s <= MAX_NAME and string.find(s, NAME_PATTERN) ~= nil
end

-- Returns the tag of a per-partition key "<prefix>{p:N}<rest>", or nil.
local function key_tag(key, prefix)
  if type(key) ~= 'string' or string.sub(key, 1, #prefix) ~= prefix then return nil end
  local tag, n = string.match(key, '^({p:(%d+)})', #prefix + 1)
  if not partition_digits(n) then return nil end
  return tag
end

-- Prefixes tested with string.sub: measured, never counted (see the header).
local OFFERS_PRE, NOOP_PRE, IDEM_PRE, QUOTA_PRE = 'ff:offers:', 'ff:noop:', 'ff:idem:', 'ff:q:'

local EXEC_KEYS = {core = true, ctx = true, result = true, grant = true, susp = true}
local LANE_KEYS = {eligible = true, delayed = true, active = true, blocked = true, terminal = true}
local PART_KEYS = {leases = true, timeouts = true, deadlines = true, all = true, suspended = true,
  susp_timeouts = true, wp_pending = true, signals = true}

-- Returns the lane L of key "ff:i:<tag>:L:<suffix>" when L is a lane name.
local function lane_in(key, tag, suffix)
  local pre, post = 'ff:i:' .. tag .. ':', ':' .. suffix
  if #key <= #pre + #post or string.sub(key, 1, #pre) ~= pre or string.sub(key, -#post) ~= post then
    return nil
  end
  local lane = string.sub(key, #pre + 1, -#post - 1)
  if is_name(lane) then return lane end
  return nil
end

-- Reports whether key is the one the layout names name for execution eid
-- (tag its tag) on lane. Optional keys: 'idem' is the idempotency key of
-- the tag or its noop key, 'offers?' the lane's offers key (the global one,
-- or the partition's: see offers_scope) or the noop key.
local function key_is(key, name, eid, tag, lane)
  if EXEC_KEYS[name] then return eid ~= nil and key == 'ff:e:' .. eid .. ':' .. name end
  if LANE_KEYS[name] then return key == 'ff:i:' .. tag .. ':' .. lane .. ':' .. name end
  if PART_KEYS[name] then return key == 'ff:i:' .. tag .. ':' .. name end
  if name == 'arrivals' then return key == 'ff:arrivals:' .. tag end
  if name == 'sec' then return key == 'ff:sec:' .. tag end
  -- A waitpoint of the partition (ff_signal also checks it is the token's).
  if name == 'wp' then return key_tag(key, 'ff:wp:') == tag end
  if name == 'offers' then return key == 'ff:offers:' .. lane end
  local noop = 'ff:noop:' .. tag
  if name == 'offers?' then
    return key == noop or key == 'ff:offers:' .. lane or key == 'ff:i:' .. tag .. ':' .. lane .. ':offers'
  end
  if name == 'idem' then
    local pre = 'ff:idem:' .. tag .. ':'
    return key == noop or (#key > #pre and string.sub(key, 1, #pre) == pre)
  end
  return false
end

-- Checks keys against layout (layout names, the first nreq required, the
-- rest optional; with layout.open, keys past the layout are the caller's
-- to check) for execution eid (nil when the call names none; tag is then
-- the partition's) on lane (nil: read from the first lane key). Returns
-- the failure and nil, or nil and the lane.
local function bad_keys(keys, layout, nreq, eid, tag, lane)
  if #keys < nreq or (#keys > #layout and not layout.open) then
    return fail('invalid_input', 'wrong number of keys')
  end
  if lane ~= nil and not is_name(lane) then return fail('invalid_input', 'malformed lane') end
  for i = 1, math.min(#keys, #layout) do
    local name = layout[i]
    if lane == nil and LANE_KEYS[name] then
      lane = lane_in(keys[i], tag, name)
      if not lane then return fail('invalid_input', 'key ' .. i .. ' is not a ' .. name .. ' key') end
    end
    if not key_is(keys[i], name, eid, tag, lane) then
      return fail('invalid_input', 'key ' .. i .. ' is not the ' .. name .. ' key')
    end
  end
  return nil, lane
end

-- bad_keys for a call on one partition named by key 1, a partition-level
-- index (its tag decides every key's). Returns the failure, or nil and the
-- tag.
local function bad_partition_call(keys, layout, nreq, lane)
  local tag = key_tag(keys[1], 'ff:i:')
  if not tag then return fail('invalid_input', 'key 1 is not the ' .. layout[1] .. ' key') end
  local bad = bad_keys(keys, layout, nreq, nil, tag, lane)
  return bad, tag
end

-- bad_keys for a call on execution eid: eid must be an execution id, and
-- its tag decides every key's. Returns the failure, or nil, the tag and the lane.
local function bad_call(keys, layout, nreq, eid, lane)
  local tag = id_tag(eid)
  if not tag then return fail('invalid_input', 'malformed execution id') end
  local bad
  bad, lane = bad_keys(keys, layout, nreq, eid, tag, lane)
  if bad then return bad end
  return nil, tag, lane
end

local function csv_set(csv)
  local set = {}
  if not csv or csv == '' then return set end
  for tok in string.gmatch(csv, '[^,]+') do set[tok] = true end
  return set
end

-- Returns the capabilities of need_csv (an execution's) that have_csv (a
-- worker's) lacks, comma-joined; '' when it has them all.
local function missing_caps(need_csv, have_csv)
  if not need_csv or need_csv == '' then return '' end
  local have, missing = csv_set(have_csv), {}
  for tok in string.gmatch(need_csv, '[^,]+') do
    if not have[tok] then missing[#missing + 1] = tok end
  end
  return table.concat(missing, ',')
end

-- The fields check_fence reads, in this order; a caller's extra fields
-- follow them (from index FENCE_READ + 1), read by the same HMGET.
-- (ended_by, which only a failure reports, is read then: one field less on
-- every renewal and completion.)
local FENCE_FIELDS = {'state', 'lease_state', 'lease_expires_at', 'lease_id', 'lease_epoch',
  'attempt_id', 'lane', 'lease_log', 'flow'}
local FENCE_READ = #FENCE_FIELDS
-- Returns FENCE_FIELDS followed by extra (built once, at load).
local function fence_with(extra) return append_all(append_all({}, FENCE_FIELDS), extra) end
-- The extra fields a lease-ending call reads: what decides the index
-- entries it removes (see "Index membership" below).
local END_FIELDS = {'attempt_timeout', 'deadline_at'}
local FENCE_END = fence_with(END_FIELDS)

-- Returns the fence failure of a lease-holder call, or nil when the caller's
-- (lease_id, epoch, attempt_id) holds the live lease (and, when lane is given,
-- the execution is in that lane). Order: execution active,
-- lease not revoked, lease not expired (server time), then the triple matches.
-- Writes nothing. One HMGET (and, once the execution is no longer active,
-- an HGET of ended_by for the failure), of names (FENCE_FIELDS when nil, or a
-- fence_with list: the caller's extra fields ride on it); the second value
-- is what it read (extra field i at FENCE_READ + i).
local function check_fence(core, lease_id, epoch, attempt_id, now, lane, names)
  local f = redis.call('HMGET', core, unpack(names or FENCE_FIELDS))
  if not f[1] then return fail('execution_not_found') end
  -- The caller built the lane's index keys from the lane it passes: a wrong
  -- lane would move the execution between another lane's indexes.
  if lane ~= nil and f[7] ~= lane then return fail('invalid_input', 'lane differs from the execution') end
  if f[1] ~= 'active' then
    return fail('execution_not_active', f[1], f[5] or '0', f[6] or '', redis.call('HGET', core, 'ended_by') or '')
  end
  if f[2] == 'revoked' then return fail('lease_revoked') end
  if tonumber(f[3] or '0') <= now then return fail('lease_expired') end
  if f[4] ~= lease_id or f[5] ~= epoch or f[6] ~= attempt_id then
    return fail('stale_lease')
  end
  return nil, f
end

-- Index membership, which the lease-ending calls read instead of removing
-- blindly (a ZREM of a member that is not there is still a command):
--   timeouts: an active execution whose attempt_timeout > 0 (take_lease adds
--     it with every lease; attempt_timeout is written once, at create); a
--     lease's end removes it (release_lease), as do ff_cancel and ff_expire.
--   deadlines: a non-terminal execution whose deadline_at > 0 (ff_create
--     adds it; every move to a terminal state removes it; ff_replay, the way
--     back from terminal, clears deadline_at).
-- The lane's active index is no longer written (v16): the leases ZSET holds
-- every leased execution already, and nothing read the other. A deployment
-- upgraded from v15 may keep the executions active at the upgrade in it;
-- nothing reads it (DEL ff:i:T:L:active frees it).

-- Reports whether a field read as v (HMGET: false when absent) is a
-- positive number: the execution is in the index that field decides.
local function positive(v) return num(v) > 0 end

-- The states an execution can still leave by itself or be cancelled from.
local LIVE_STATES = {waiting = true, delayed = true, active = true, suspended = true, waiting_children = true,
  rate_limited = true}

-- Deferred index writes. A batch call (ff_create_batch,
-- ff_complete_batch) gathers its items' ZADDs and ZREMs of the same index
-- key, and its pushes onto the same inbox, into one command per key, sent
-- when its items are done (flush_deferred). No call reads these keys
-- (leases, timeouts, deadlines, terminal, inboxes) before it ends, and no
-- client sees a call half done, so gathering changes how many commands
-- run, not what any of them sees. d is nil outside a batch: the write goes
-- at once.
local DEFER_CHUNK = 1000 -- members per gathered command at most

local function new_deferred() return {order = {}, ZADD = {}, ZREM = {}, RPUSH = {}, ttl = {}} end

-- Runs one index command. Each command is spelled out so that every
-- redis.call in the library names its command (the ACL recipe is checked
-- against them).
local function run_index(cmd, key, ...)
  if cmd == 'ZADD' then return redis.call('ZADD', key, ...) end
  if cmd == 'ZREM' then return redis.call('ZREM', key, ...) end
  if cmd == 'RPUSH' then return redis.call('RPUSH', key, ...) end
  error('run_index: unexpected command ' .. tostring(cmd))
end

-- Writes cmd ('ZADD' score member, 'ZREM' member or 'RPUSH' value) of
-- key now, or gathers it into d. a2 is nil but for ZADD.
local function write_index(d, cmd, key, a1, a2)
  if not d then
    if a2 == nil then return run_index(cmd, key, a1) end
    return run_index(cmd, key, a1, a2)
  end
  local by_key = d[cmd]
  local t = by_key[key]
  if not t then
    t = {cmd = cmd, key = key, args = {}}
    by_key[key] = t
    d.order[#d.order + 1] = t
  end
  local args = t.args
  args[#args + 1] = a1
  if a2 ~= nil then args[#args + 1] = a2 end
end

-- Sends what d gathered, one command per key (per DEFER_CHUNK members), in
-- the order the keys were first written. An inbox whose push created the
-- list, or crossed a multiple of INBOX_REFRESH, gets its PEXPIRE (d.ttl,
-- see push_to_inbox).
local INBOX_REFRESH -- defined with push_to_inbox
local function flush_deferred(d)
  for _, t in ipairs(d.order) do
    local per = (t.cmd == 'ZADD') and 2 or 1
    for i = 1, #t.args, per * DEFER_CHUNK do
      local last = math.min(#t.args, i + per * DEFER_CHUNK - 1)
      local n = run_index(t.cmd, t.key, unpack(t.args, i, last))
      if t.cmd == 'RPUSH' then
        local before = n - (last - i + 1)
        if before == 0 or math.floor(n / INBOX_REFRESH) > math.floor(before / INBOX_REFRESH) then
          redis.call('PEXPIRE', t.key, d.ttl[t.key])
        end
      end
    end
  end
end

-- Leaves the lease indexes: leases, and timeouts when the attempt has a
-- timeout (attempt_timeout, as read). Returns kv with the core fields that
-- clear the live lease appended, for the caller's one HSET (epoch and
-- attempt id stay, so a replayed terminal call can recognise its own
-- outcome). One or two ZREMs (gathered into d in a batch).
local function release_lease(eid, leases, timeouts, attempt_timeout, kv, d)
  write_index(d, 'ZREM', leases, eid)
  if positive(attempt_timeout) then write_index(d, 'ZREM', timeouts, eid) end
  local n = #kv
  kv[n + 1], kv[n + 2], kv[n + 3], kv[n + 4] = 'lease_state', '', 'lease_expires_at', '0'
  return kv
end

-- Leaves the deadlines index when the execution has a deadline (deadline_at,
-- as read); for a call that ends the execution.
local function leave_deadlines(eid, deadlines, deadline_at, d)
  if positive(deadline_at) then write_index(d, 'ZREM', deadlines, eid) end
end

-- Lease history. An execution created with lease history on (core field
-- lease_log = '1') has every lease event appended to its partition's
-- ff:i:T:lease_history stream, trimmed to about LEASE_HISTORY entries
-- (MAXLEN ~): ev (the event), eid, lid (the lease id), ep (its epoch),
-- lane, why (what ended it, or how late a renewal came) and w (the
-- holder's worker instance, for a lease taken). Events:
--   acquired      a lease taken: a claim, a fused claim, a hand-off, the
--                 claim that resumes a delayed or suspended attempt
--   renewed_late  a renewal that came with less than a quarter of the
--                 new TTL left on the lease (why: ms that were left)
--   revoked       an operator took the lease (ff_revoke; why: the reason)
--   expired       the engine ended an attempt whose lease expired or was
--                 revoked (ff_reclaim_expired), or a reclaim at the
--                 interruption cap (why says which)
--   reclaimed     a worker took over an interrupted attempt's execution
--                 with a reclaim grant (ff_reclaim: the new lease)
--   released      the lease ended otherwise; why: completed, failed,
--                 retry, delayed, suspended, cancelled, attempt_timeout,
--                 deadline
-- An execution without the field costs nothing here: the flag rides on
-- reads the calls make anyway.
local LEASE_HISTORY = 10000
local function log_lease(flag, eid, ev, lid, epoch, lane, why, wiid)
  if flag ~= '1' then return end
  local e = {'ev', ev, 'eid', eid, 'lid', lid or '', 'ep', epoch or '', 'lane', lane or ''}
  if why and why ~= '' then e[#e + 1], e[#e + 2] = 'why', why end
  if wiid and wiid ~= '' then e[#e + 1], e[#e + 2] = 'w', wiid end
  redis.call('XADD', 'ff:i:' .. id_tag(eid) .. ':lease_history', 'MAXLEN', '~', LEASE_HISTORY, '*', unpack(e))
end

---------------------------------------------------------------------------
-- ff_version: the library version and the oldest client version it serves
-- (MIN_CLIENT). Read-only.
-- KEYS: none
-- ARGV: none
-- Returns ok(version, min_client).
redis.register_function{function_name = 'ff_version', flags = {'no-writes'},
  callback = function() return ok(VERSION, MIN_CLIENT) end}

---------------------------------------------------------------------------
-- ff_terminal_read: a lane's terminal index on one partition past a
-- position, for completion subscriptions, up to the server's now
-- (exclusive). An end recorded at a millisecond that has passed is final:
-- a call that could still record one at that score started before this
-- one and has finished, so a reader positioned by (score, member) misses
-- nothing. Ends at now or later are left for a later read (held: one was
-- met within the read's limit; past it, the reader reads again anyway).
-- KEYS: 1 terminal index (ff:i:<tag>:<lane>:terminal)
-- ARGV: 1 mode ('after': entries with min <= score < now, at most limit;
--       'tail': the last entry with score < now), 2 min score, 3 limit
--       (1..10000)
-- Returns ok(now, held ('1' | '0'), then member, score per entry).
-- Inner commands: TIME, one ZRANGE.
redis.register_function{function_name = 'ff_terminal_read', flags = {'no-writes'},
  callback = function(keys, argv)
    local k, mode, min, limit = keys[1], argv[1], uint(argv[2]), uint(argv[3])
    local tag = #keys == 1 and key_tag(k, 'ff:i:')
    if not tag or not lane_in(k, tag, 'terminal') or (mode ~= 'after' and mode ~= 'tail') or not min
      or not limit or limit == 0 or limit > 10000 then
      return fail('invalid_input', 'malformed terminal read')
    end
    local now = now_ms()
    local reply = ok(fmt(now), '0')
    if mode == 'tail' then
      return append_all(reply, redis.call('ZRANGE', k, '(' .. fmt(now), '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1,
        'WITHSCORES'))
    end
    -- One read past min; the entries from now on are held back.
    local r = redis.call('ZRANGE', k, min, '+inf', 'BYSCORE', 'LIMIT', 0, limit, 'WITHSCORES')
    for j = 2, #r, 2 do
      if tonumber(r[j]) >= now then
        reply[4] = '1'
        break
      end
      reply[#reply + 1], reply[#reply + 2] = r[j - 1], r[j]
    end
    return reply
  end}

local hand_off_new, hand_off_head -- defined after take_lease
-- flow_member_ended(eid, fid, outcome, now[, own, spare]): a flow member
-- reached a terminal state; resolves its outgoing edges (see the flows section).
-- Every call that ends an execution calls it when the record names a flow.
local flow_member_ended
local parse_offer, offer_of -- defined below
local close_suspension, drop_waiting -- defined with the waiting calls (ff_suspend)
-- quota_admit(q, eid, hold, token, now) and quota_keys_at(keys, i): the
-- admission of one execution under a quota, shared by ff_quota_admit and
-- the hand-offs of a create (defined in the admission section).
local quota_admit, quota_keys_at

-- Reports the scope of offers key k: 'global' for "ff:offers:<lane>" (one
-- server: every partition's creates read it), 'partition' for a
-- partition's "ff:i:<tag>:<lane>:offers" (a cluster: its creates alone
-- read it), nil for anything else. The tag is the key's, for the
-- partition scope (the caller compares it with its own).
local function offers_scope(k)
  if type(k) ~= 'string' then return nil end
  if string.sub(k, 1, #OFFERS_PRE) == OFFERS_PRE then
    if is_name(string.sub(k, #OFFERS_PRE + 1)) then return 'global' end
    return nil
  end
  local tag = key_tag(k, 'ff:i:')
  if tag and lane_in(k, tag, 'offers') then return 'partition', tag end
  return nil
end

-- Takes the freshest offer off the offers key (one ZPOPMAX) and returns it
-- parsed (lease_id, attempt_id, ttl, worker_id, wiid, caps, member,
-- score), or nil: none, no offers key (a noop key disables
-- hand-offs), or the freshest had expired. Freshest: the latest expiry,
-- the offer posted or refreshed last, so the one whose worker is most
-- surely alive (a dead worker's offers stop being refreshed and sink).
-- When even the freshest has expired, every offer has: that one is gone
-- with its worker, and ff_offer removes the rest. A member that is not an
-- offer (ff_offer checks them; a raw write can) is dropped, never handed
-- to. A caller that does not spend the offer puts it back (put_back).
-- An offer of a lane claimed under a quota (o.quota, see parse_offer) is
-- spent only by a caller that admits what it hands over (see
-- hand_off_admitted); the others get nil from pop_offer, the offer put
-- back, so a quota lane's work never reaches an offer unadmitted.
local function pop_offer(offers, now, admits)
  if string.sub(offers, 1, #NOOP_PRE) == NOOP_PRE then return nil end
  local r = redis.call('ZPOPMAX', offers)
  if not r[1] or tonumber(r[2]) <= now then return nil end
  local o = offer_of(r[1], r[2])
  if o and o.quota and not admits then
    redis.call('ZADD', offers, r[2], r[1])
    return nil
  end
  return o
end

-- Returns offer o (pop_offer's), not spent, to the offers key.
local function put_back(offers, o)
  redis.call('ZADD', offers, o.score, o.member)
end

-- Splits an offer member into lease_id, attempt_id, lease_ttl_ms,
-- worker_id, worker_instance, caps_csv, quota; nil when it is not one (the
-- worker and instance must be names: the instance names its inbox key).
-- quota (nil = none, v34) names the quota the offer's lane is claimed
-- under: its worker takes only hand-offs admitted under it. The caps
-- field is always written before it (maybe empty: "... <wiid>  <quota>").
local OFFER_PATTERN = '^(%S+) (%S+) ([1-9]%d*) ([!-+%-.-z|~]+) ([!-+%-.-z|~]+) ?(%S*)$'
local QUOTA_OFFER_PATTERN = '^(%S+) (%S+) ([1-9]%d*) ([!-+%-.-z|~]+) ([!-+%-.-z|~]+) (%S*) (%S+)$'
parse_offer = function(member)
  local lease_id, attempt_id, ttl, worker_id, wiid, caps = string.match(member, OFFER_PATTERN)
  if lease_id then return lease_id, attempt_id, ttl, worker_id, wiid, caps end
  return string.match(member, QUOTA_OFFER_PATTERN)
end
-- Returns offer member (score its expiry) parsed into the table the
-- hand-offs spend (pop_offer's), or nil when it is not an offer.
offer_of = function(member, score)
  local lease_id, attempt_id, ttl, worker_id, wiid, caps, quota = parse_offer(member)
  if not lease_id then return nil end
  return {member = member, score = score, lease_id = lease_id, attempt_id = attempt_id, ttl = ttl,
    worker_id = worker_id, wiid = wiid, caps = caps, quota = quota}
end
-- Reports whether member is an offer (as parse_offer, without building
-- its parts: OFFER_PATTERN without its captures).
local OFFER_SHAPE = (OFFER_PATTERN:gsub('[()]', ''))
local QUOTA_OFFER_SHAPE = (QUOTA_OFFER_PATTERN:gsub('[()]', ''))
local function is_offer(member)
  return string.find(member, OFFER_SHAPE) ~= nil or string.find(member, QUOTA_OFFER_SHAPE) ~= nil
end

-- Reads one create's arguments (ff_create's ARGV layout) from a[o+1..]
-- into a table: the fields checked here, and a, o to read the rest from.
-- nil when one is malformed or a holds fewer than the create's
-- 19 + 2*ntags (+1 with a trace carrier; c.last is its last index).
-- String work only, no command.
local function create_args(a, o, admits)
  local c = {a = a, o = o, eid = a[o + 1], lane = a[o + 2], kind = a[o + 3],
    priority = uint(a[o + 4]), delay_until = uint(a[o + 5]), retry_max = uint(a[o + 7]),
    bo_init = uint(a[o + 9]), bo_max = uint(a[o + 10]), attempt_timeout = uint(a[o + 14]),
    deadline = uint(a[o + 15]), dedup_ttl = uint(a[o + 16]), flags = uint(a[o + 18]),
    ntags = uint(a[o + 19])}
  if not is_name(c.kind) or c.priority == nil or c.priority > MAX_PRIORITY
    or c.delay_until == nil or c.retry_max == nil or c.bo_init == nil or c.bo_max == nil
    or tonumber(a[o + 11]) == nil or tonumber(a[o + 12]) == nil
    or c.attempt_timeout == nil or c.deadline == nil or c.dedup_ttl == nil or c.dedup_ttl == 0
    or c.flags == nil or c.flags > (admits and 15 or 7) or c.ntags == nil then
    return nil
  end
  -- flags: 1 = the caller chose the id, 2 = lease history on, 4 = a trace
  -- carrier follows the tags, 8 = the lane's quota keys are passed (only
  -- for callers that pass admits: ff_create, ff_create_batch).
  c.id_given = (c.flags % 2 == 1) and '1' or '0'
  c.admit = c.flags >= 8
  if c.flags % 4 >= 2 then c.lease_log = '1' end
  -- The priority as written: the argument when it is canonical (no
  -- leading zero), so that no number is formatted for it.
  local p = a[o + 4]
  c.priority_s = (#p == 1 or string.byte(p, 1) ~= 48) and p or fmt(c.priority)
  -- tags_end: the last tag argument; the carrier (flag 4) comes after it.
  c.tags_end = o + 19 + 2 * c.ntags
  c.last = c.tags_end
  if c.flags % 8 >= 4 then
    c.last = c.last + 1
    c.trace = a[c.last]
    if c.trace == nil or c.trace == '' or #c.trace > MAX_TRACE_CARRIER then return nil end
  end
  if #a < c.last then return nil end
  return c
end

-- The core fields of new execution c (create_args) that differ from
-- their defaults (see the header), without state and last_transition_at (the caller's):
-- lane, priority and created_at always; caps, the retry policy, the
-- attempt timeout and the deadline when set. A job that uses none of them
-- writes none of them.
local function new_core_fields(c, now_s)
  local a, o = c.a, c.o
  local f = {'lane', c.lane, 'priority', c.priority_s, 'created_at', now_s}
  if a[o + 6] ~= '' then append_all(f, {'caps', a[o + 6]}) end
  if c.retry_max > 0 then
    append_all(f, {'retry_max', c.retry_max, 'bo_kind', a[o + 8], 'bo_init', c.bo_init,
      'bo_max', c.bo_max, 'bo_mult', a[o + 11], 'bo_jitter', a[o + 12], 'retry_cats', a[o + 13]})
  end
  if c.attempt_timeout > 0 then append_all(f, {'attempt_timeout', c.attempt_timeout}) end
  if c.deadline > 0 then append_all(f, {'deadline_at', c.deadline}) end
  if c.lease_log then append_all(f, {'lease_log', '1'}) end
  -- A flow member (ff_flow_submit): its flow, its dependencies and its
  -- adjacency lists (see the flows section).
  if c.flow then
    append_all(f, {'flow', c.flow})
    if c.deps > 0 then append_all(f, {'dep_n', c.deps, 'in', c.ins}) end
    if c.policy ~= '' then append_all(f, {'dep_policy', c.policy}) end
    if c.outs ~= '' then append_all(f, {'out', c.outs}) end
  end
  return f
end

-- Reports whether the eligible set is empty: ZCARD, or, in a batch
-- (keys.size, shared by its items), what the batch knows of it already (an
-- item that joined it made it non-empty; a hand-off of a new execution
-- left it as it was; one of its head makes it unknown again).
local function eligible_empty(keys, eligible)
  local known = keys.size and keys.size[eligible]
  if known ~= nil then return known end
  local empty = redis.call('ZCARD', eligible) == 0
  if keys.size then keys.size[eligible] = empty end
  return empty
end

-- Creates execution c (create_args, checked) with keys laid out as
-- ff_create's KEYS, all checked; now is server time, or nil to read it
-- when the create writes (keys.now_s: now formatted, a batch's). ff_create
-- and ff_create_batch both run it, so
-- one create is the same in both. keys.dry (a batch's, shared by its
-- items) remembers offers keys found without a live offer behind a
-- backlog: within one call none can appear (offers are posted by other
-- calls, and now stands still), so later items skip the read; keys.size
-- remembers what the batch knows of its eligible sets (eligible_empty),
-- and keys.d gathers its index writes (write_index). Returns ff_create's
-- reply.
-- The record is written once: by the hand-off's HSET when the execution
-- goes straight to an offer's worker, else by one HSET of its own.
local function create_one(keys, c, tag, now)
  -- keys[7], the partition's all index, is no longer written (v19: ff_list).
  local core, ctx, eligible, delayed, idem, deadlines, arrivals =
    keys[1], keys[2], keys[3], keys[4], keys[5], keys[6], keys[8]
  local a, o, eid, lane, priority, delay_until = c.a, c.o, c.eid, c.lane, c.priority, c.delay_until
  local has_idem = string.sub(idem, 1, #IDEM_PRE) == IDEM_PRE
  if has_idem then
    local first = redis.call('GET', idem)
    if first then
      local state = id_tag(first) == tag and redis.call('HGET', 'ff:e:' .. first .. ':core', 'state')
      return {1, 'DUPLICATE', first, state or ''}
    end
  end
  -- An explicit id that exists is a collision, not a repeat: the caller
  -- meant another execution (a repeat carries its idempotency key). An id
  -- the client generated is fresh (time-ordered, 74 random bits): no check.
  if c.id_given == '1' and redis.call('EXISTS', core) == 1 then return fail('execution_id_in_use') end
  now = now or now_ms()
  local now_s = keys.now_s or fmt(now)
  local fields = new_core_fields(c, now_s)
  local kv = {'kind', c.kind, 'lane', lane, 'payload', a[o + 17]}
  for i = o + 20, c.tags_end, 2 do
    kv[#kv + 1] = 't:' .. a[i]
    kv[#kv + 1] = a[i + 1]
  end
  -- The trace carrier is a reserved ctx field (not a tag): every claim
  -- path returns the ctx hash whole, so it travels with the execution, and
  -- one without it has no such field to carry.
  if c.trace then
    kv[#kv + 1] = 'tp'
    kv[#kv + 1] = c.trace
  end
  redis.call('HSET', ctx, unpack(kv))
  if c.deadline > 0 then write_index(keys.d, 'ZADD', deadlines, c.deadline, eid) end
  if has_idem then
    redis.call('SET', idem, eid, 'PX', c.dedup_ttl)
  end
  if c.deps and c.deps > 0 then -- a flow member behind its dependencies
    redis.call('HSET', core, 'state', 'waiting_children', 'last_transition_at', now_s, unpack(fields))
    redis.call('ZADD', 'ff:i:' .. tag .. ':dep_blocked', now_s, eid)
    return ok(eid, 'waiting_children')
  end
  if delay_until > now then
    redis.call('HSET', core, 'state', 'delayed', 'delay_until', delay_until, 'last_transition_at', now_s,
      unpack(fields))
    write_index(keys.d, 'ZADD', delayed, delay_until, eid)
    return ok(eid, 'delayed')
  end
  local empty = eligible_empty(keys, eligible)
  if empty and hand_off_new(keys, eid, c, fields, kv, now, now_s) then return ok(eid, 'active') end
  redis.call('HSET', core, 'state', 'waiting', 'last_transition_at', now_s, unpack(fields))
  redis.call('ZADD', eligible, eligible_score(now, priority), eid)
  if keys.size then keys.size[eligible] = false end
  if empty then
    publish_arrival(arrivals, lane, eid)
    return ok(eid, 'waiting')
  end
  -- Behind a backlog, offers take the set's head (never new work past
  -- older), up to HANDOFFS_BEHIND_BACKLOG per create: more than one, so
  -- offers drain a backlog instead of only keeping pace.
  local state = 'waiting'
  for _ = 1, HANDOFFS_BEHIND_BACKLOG do
    local off = not (keys.dry and keys.dry[keys[9]]) and pop_offer(keys[9], now, keys.quota)
    if not off then
      if keys.dry then keys.dry[keys[9]] = true end
      break
    end
    local head = redis.call('ZRANGE', eligible, 0, 0)[1]
    if not head or not hand_off_head(keys, off, head, lane, tag, now, now_s) then
      put_back(keys[9], off)
      break
    end
    if keys.size then keys.size[eligible] = nil end -- its head left: size unknown
    if head == eid then state = 'active' end
  end
  return ok(eid, state)
end

---------------------------------------------------------------------------
-- ff_create: create an execution.
-- KEYS: 1 core, 2 ctx, 3 eligible, 4 delayed, 5 idem (or noop), 6 deadlines,
--       7 all, 8 arrivals (shard channel), 9 offers (or noop: no hand-off),
--       10 leases, 11 active, 12 timeouts
-- ARGV: 1 eid, 2 lane, 3 kind, 4 priority, 5 delay_until_ms (0 = none),
--       6 caps_csv (sorted), 7 retry_max, 8 bo_kind, 9 bo_init_ms, 10 bo_max_ms,
--       11 bo_mult, 12 bo_jitter, 13 retry_cats_csv, 14 attempt_timeout_ms,
--       15 deadline_ms (0 = none), 16 dedup_ttl_ms, 17 payload,
--       18 flags, the sum of: 1 when the caller chose eid (so it may exist
--       already; without, the client generated it, fresh), 2 for lease
--       history (core field lease_log, see log_lease), 4 when a trace
--       carrier follows the tags; 19 ntags, then ntags (key, value) pairs,
--       then (flag 4) the trace carrier (1..MAX_TRACE_CARRIER bytes, ctx
--       field tp); flag 8 (v34): KEYS 13..15 follow
-- KEYS with flag 8: 13 quota, 14 win, 15 run, the lane's quota (single
--   server only: they lie in the quota's slot). Offers of a quota lane
--   (their members name the quota, see parse_offer) take this create's
--   execution, or its backlog's head, only once it is admitted under that
--   quota here (hand_off_admitted: ff_quota_admit's commands), and their
--   hand-off then carries the admission; refused, the execution waits in
--   its eligible set (announced as without an offer). Without flag 8 such
--   offers are left where they are.
-- An execution that lands in an empty eligible set is claimed here for the
-- freshest live offer on the lane (ff_offer), whose worker gets the lease and
-- the context in its inbox: no claim call at all (hand_off_new). Without an
-- offer it is published on the partition's arrivals channel, so an idle
-- worker claims it without first reading the set. Behind a backlog it
-- joins the set, and live offers take up to two of the set's head
-- (hand_off_head).
-- Returns ok(eid, state) ('active' when handed off) or, for a repeated
-- idempotency key, {1,'DUPLICATE',first_eid,state} with the first
-- execution's state now ('' once retention trimmed it).
-- Errors: invalid_input, execution_id_in_use (eid exists: nothing written).
local CREATE_KEYS = {'core', 'ctx', 'eligible', 'delayed', 'idem', 'deadlines', 'all', 'arrivals',
  'offers?', 'leases', 'active', 'timeouts', open = true}
redis.register_function('ff_create', function(keys, argv)
  local bad, tag = bad_call(keys, CREATE_KEYS, 12, argv[1], argv[2])
  if bad then return bad end
  local c = create_args(argv, 0, true)
  if not c or #argv ~= c.last then
    return fail('invalid_input', 'malformed create arguments')
  end
  if #keys ~= (c.admit and 15 or 12) then return fail('invalid_input', 'wrong number of keys') end
  if c.admit then
    keys.quota = quota_keys_at(keys, 13)
    if not keys.quota then return fail('invalid_input', 'keys 13..15 are not a quota\'s keys') end
  end
  return create_one(keys, c, tag)
end)

---------------------------------------------------------------------------
-- ff_drop_strays: remove members of an eligible set that are not execution
-- ids of its partition. No function here writes one (a raw write can); a
-- worker's scan that meets one drops it with this call, once, instead of
-- failing to claim it on every round. Ids of the partition are never
-- removed here.
-- KEYS: 1 eligible
-- ARGV: the members to remove
-- Returns ok(removed_count). Inner commands: 1 ZREM at most.
-- Errors: invalid_input.
local DROP_KEYS = {'eligible'}
redis.register_function('ff_drop_strays', function(keys, argv)
  local bad, tag = bad_partition_call(keys, DROP_KEYS, 1)
  if bad then return bad end
  local strays = {}
  for _, m in ipairs(argv) do
    if id_tag(m) ~= tag then strays[#strays + 1] = m end
  end
  if #strays == 0 then return ok('0') end
  return ok(tostring(redis.call('ZREM', keys[1], unpack(strays))))
end)

---------------------------------------------------------------------------
-- ff_issue_claim_grant: grant one worker the right to claim an eligible execution.
-- KEYS: 1 core, 2 grant, 3 eligible
-- ARGV: 1 eid, 2 worker_id, 3 worker_instance_id, 4 grant_ttl_ms, 5 worker_caps_csv
-- Returns ok(expires_at_ms).
-- Errors: execution_not_found, execution_not_eligible(state),
--   grant_already_exists, execution_not_in_eligible_set,
--   capability_mismatch(missing_csv), invalid_input.
-- An eligible member without its record (a stray) is removed on the way.
local GRANT_KEYS = {'core', 'grant', 'eligible'}
redis.register_function('ff_issue_claim_grant', function(keys, argv)
  local core, grant, eligible = keys[1], keys[2], keys[3]
  local eid, ttl = argv[1], uint(argv[4])
  local bad = bad_call(keys, GRANT_KEYS, 3, eid)
  if bad then return bad end
  if ttl == nil or ttl == 0 or not is_name(argv[2]) or not is_name(argv[3]) then
    return fail('invalid_input', 'malformed grant arguments')
  end
  local f = redis.call('HMGET', core, 'state', 'blocked', 'caps')
  if not f[1] then
    redis.call('ZREM', eligible, eid)
    return fail('execution_not_found')
  end
  if f[1] ~= 'waiting' or (f[2] or '') ~= '' then return fail('execution_not_eligible', f[1]) end
  if redis.call('EXISTS', grant) == 1 then return fail('grant_already_exists') end
  if not redis.call('ZSCORE', eligible, eid) then
    return fail('execution_not_in_eligible_set')
  end
  local missing = missing_caps(f[3], argv[5])
  if missing ~= '' then return fail('capability_mismatch', missing) end
  local expires = now_ms() + ttl
  redis.call('HSET', grant, 'worker_id', argv[2], 'worker_instance', argv[3],
    'expires_at', expires)
  redis.call('PEXPIREAT', grant, expires)
  return ok(tostring(expires))
end)

-- The per-attempt fields as a new attempt starts them (see the header).
local ATTEMPT_CLEAN = {'progress_pct', '', 'progress_msg', '', 'failure_reason', '',
  'failure_category', '', 'revoke_reason', ''}

-- Takes a fresh lease on a waiting execution whose checks passed: new attempt
-- (or the interrupted one when resume), epoch+1, indexes moved (eligible is
-- nil for an execution that never joined its eligible set). Returns the six
-- lease fields in reply order. The lane's active index is no longer written
-- (see release_lease); the parameter stays so that callers keep their shape.
-- pre, when given, holds core fields of the caller's to write in the same
-- HSET (a create's, handed off: the record is written once); d gathers the
-- index writes of a batch (see write_index).
-- A waiting execution's delay_until is 0 already (every way into waiting
-- clears it), and resume is '1' only for a resumed claim: neither is
-- written otherwise.
-- Numbers go to commands as strings formatted once: a Lua number passed
-- to redis.call is formatted there, per use.
local function take_lease(core, eid, eligible, leases, _active, timeouts, f,
                          worker_id, wiid, lease_id, attempt_id, ttl, resume, now, pre, d, now_s)
  now_s = now_s or fmt(now)
  local epoch = tostring(tonumber(f.epoch) + 1)
  local expires = now + ttl
  local expires_s = fmt(expires)
  local fields = pre or {}
  local n = #fields
  fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] = 'state', 'active', 'lease_state', 'held'
  fields[n + 5], fields[n + 6], fields[n + 7], fields[n + 8] = 'lease_id', lease_id, 'lease_epoch', epoch
  fields[n + 9], fields[n + 10], fields[n + 11], fields[n + 12] = 'worker_id', worker_id, 'worker_instance', wiid
  fields[n + 13], fields[n + 14] = 'lease_expires_at', expires_s
  fields[n + 15], fields[n + 16] = 'last_transition_at', now_s
  n = n + 16
  if f.resume == '1' then
    fields[n + 1], fields[n + 2] = 'resume', '0'
    n = n + 2
  end
  local attempt_index, attempt_type
  if resume then
    attempt_index, attempt_id, attempt_type = f.attempt_index, f.attempt_id, 'resumed'
  else
    attempt_index, attempt_type = f.total_attempts, f.pending_type
    local first = attempt_index == '0'
    fields[n + 1], fields[n + 2] = 'total_attempts', first and '1' or tostring(tonumber(attempt_index) + 1)
    fields[n + 3], fields[n + 4] = 'attempt_index', attempt_index
    fields[n + 5], fields[n + 6] = 'attempt_id', attempt_id
    fields[n + 7], fields[n + 8] = 'attempt_type', attempt_type
    fields[n + 9], fields[n + 10] = 'pending_type', ''
    n = n + 10
    -- A new attempt starts clean, in this same HSET: what earlier attempts
    -- reported or suffered is in their records (keep_attempt). A first
    -- attempt has nothing to clear and writes nothing for it.
    if not first then append_all(fields, ATTEMPT_CLEAN) end
  end
  if not f.started_at then append_all(fields, {'started_at', now_s}) end
  redis.call('HSET', core, unpack(fields))
  if eligible then redis.call('ZREM', eligible, eid) end
  write_index(d, 'ZADD', leases, expires_s, eid)
  local timeout = tonumber(f.attempt_timeout or '0')
  if timeout > 0 then write_index(d, 'ZADD', timeouts, fmt(now + timeout), eid) end
  log_lease(f.lease_log, eid, f.lease_event or 'acquired', lease_id, epoch, f.lane, nil, wiid)
  return {lease_id, epoch, expires_s, attempt_id, attempt_index, attempt_type}
end

local CLAIM_FIELDS = {'state', 'blocked', 'resume', 'total_attempts', 'lease_epoch',
  'pending_type', 'attempt_index', 'attempt_id', 'attempt_timeout', 'started_at',
  'lane', 'caps', 'lease_log', 'flow'}

-- Reads the fields a claim needs into a table keyed by name (nil when absent).
local function claim_fields(core)
  local v = redis.call('HMGET', core, unpack(CLAIM_FIELDS))
  local f = {}
  for i, name in ipairs(CLAIM_FIELDS) do
    if v[i] then f[name] = v[i] end
  end
  -- HMGET returns false for absent fields: those are at their defaults (a
  -- create writes only what differs from them, see the header).
  if f.state then
    f.blocked, f.resume = f.blocked or '', f.resume or '0'
    f.total_attempts, f.pending_type = f.total_attempts or '0', f.pending_type or 'initial'
    f.attempt_index, f.attempt_id = f.attempt_index or '0', f.attempt_id or ''
  end
  f.epoch = f.lease_epoch or '0'
  return f
end

---------------------------------------------------------------------------
-- ff_claim: consume the caller's grant and take a fresh lease.
-- KEYS: 1 core, 2 grant, 3 eligible, 4 leases, 5 active, 6 timeouts, 7 ctx
-- ARGV: 1 eid, 2 worker_id, 3 worker_instance_id, 4 lease_id, 5 attempt_id
--       (new attempts only; ignored on resume), 6 lease_ttl_ms,
--       7 mode ('new' | 'resume'), 8 with_context ('1' | '0'), 9 lane
-- Returns ok(lease_id, epoch, expires_at, attempt_id, attempt_index,
--   attempt_type) and, with_context, the ctx hash as field, value pairs.
-- Errors: execution_not_found, execution_not_leaseable(state),
--   use_claim_resumed_execution, not_a_resumed_execution,
--   invalid_claim_grant, claim_grant_expired, invalid_input.
local CLAIM_KEYS = {'core', 'grant', 'eligible', 'leases', 'active', 'timeouts', 'ctx'}
redis.register_function('ff_claim', function(keys, argv)
  local core, grant = keys[1], keys[2]
  local eid, worker_id, wiid, lease_id = argv[1], argv[2], argv[3], argv[4]
  local ttl, mode = uint(argv[6]), argv[7]
  local bad = bad_call(keys, CLAIM_KEYS, 7, eid, argv[9])
  if bad then return bad end
  if ttl == nil or ttl == 0 or lease_id == '' or (mode ~= 'new' and mode ~= 'resume')
    or (mode == 'new' and argv[5] == '') then
    return fail('invalid_input', 'malformed claim arguments')
  end
  local f = claim_fields(core)
  if not f.state then return fail('execution_not_found') end
  if f.lane ~= argv[9] then return fail('invalid_input', 'lane differs from the execution') end
  if f.state ~= 'waiting' or f.blocked ~= '' then return fail('execution_not_leaseable', f.state) end
  if mode == 'new' and f.resume == '1' then return fail('use_claim_resumed_execution') end
  if mode == 'resume' and f.resume ~= '1' then return fail('not_a_resumed_execution') end
  -- The grant names one worker instance: workers of one deployment share a
  -- worker id, so the id alone would let one consume another's grant.
  local g = redis.call('HMGET', grant, 'worker_id', 'worker_instance', 'expires_at')
  if not g[1] or g[1] ~= worker_id or g[2] ~= wiid then return fail('invalid_claim_grant') end
  local now = now_ms()
  if tonumber(g[3]) <= now then return fail('claim_grant_expired') end
  redis.call('DEL', grant)
  local lease = take_lease(core, eid, keys[3], keys[4], keys[5], keys[6], f,
    worker_id, wiid, lease_id, argv[5], ttl, mode == 'resume', now)
  local reply = append_all(ok(), lease)
  if argv[8] == '1' then append_all(reply, redis.call('HGETALL', keys[7])) end
  return reply
end)

-- Builds a per-execution key (see ff_claim_fused for why this exists).
local function exec_key(eid, suffix) return 'ff:e:' .. eid .. ':' .. suffix end

-- Reports whether eligible member eid (claim_fields f) can be claimed on
-- lane now: waiting, not blocked, in that lane, no grant outstanding.
local function claimable(eid, f, lane)
  return f.state == 'waiting' and f.blocked == '' and f.lane == lane
    and redis.call('EXISTS', exec_key(eid, 'grant')) == 0
end

---------------------------------------------------------------------------
-- ff_claim_fused: pick, grant and claim up to max executions of a lane on one
-- partition in one call, returning their context inline.
-- The per-execution keys (core, ctx, grant) of the picked ids are derived
-- with exec_key, the one place keys are built in Lua: ids are only known
-- once picked, and each id starts with the partition's tag, so every key
-- stays in this call's slot.
-- KEYS: 1 eligible, 2 leases, 3 active, 4 timeouts, 5 blocked
-- ARGV: 1 worker_id, 2 worker_instance_id, 3 lease_ttl_ms, 4 max,
--       5 worker_caps_csv, 6 lane, then max (lease_id, attempt_id) pairs
-- Returns ok(n, then per claimed execution: eid, lease_id, epoch, expires_at,
--   attempt_id, attempt_index, attempt_type, npairs, ctx field/value pairs).
-- Executions whose capabilities the worker lacks are blocked for routing;
-- executions granted to someone else are skipped. A member that is not an
-- execution of this partition, or has no record, is a stray: removed.
local FUSED_KEYS = {'eligible', 'leases', 'active', 'timeouts', 'blocked'}
redis.register_function('ff_claim_fused', function(keys, argv)
  local eligible, leases, active, timeouts, blocked = keys[1], keys[2], keys[3], keys[4], keys[5]
  local worker_id, wiid, ttl, max = argv[1], argv[2], uint(argv[3]), uint(argv[4])
  local tag = key_tag(eligible, 'ff:i:')
  if not tag then return fail('invalid_input', 'key 1 is not an eligible key') end
  local bad = bad_keys(keys, FUSED_KEYS, 5, nil, tag, argv[6])
  if bad then return bad end
  if ttl == nil or ttl == 0 or max == nil or max == 0 or #argv ~= 6 + 2 * max
    or not is_name(worker_id) or not is_name(wiid) then
    return fail('invalid_input', 'malformed fused claim arguments')
  end
  local now = now_ms()
  local reply = ok('0')
  local claimed = 0
  local candidates = redis.call('ZRANGE', eligible, 0, 4 * max - 1)
  for _, eid in ipairs(candidates) do
    if claimed >= max then break end
    -- A stray's keys may lie outside this call's slot: it is never read.
    local core = id_tag(eid) == tag and exec_key(eid, 'core')
    local f = core and claim_fields(core) or {}
    if not f.state then redis.call('ZREM', eligible, eid) end
    local take = claimable(eid, f, argv[6])
    if take and missing_caps(f.caps, argv[5]) ~= '' then
      take = false
      redis.call('ZREM', eligible, eid)
      redis.call('HSET', core, 'blocked', 'capability_mismatch')
      redis.call('ZADD', blocked, now, eid)
    end
    if take then
      local a = 7 + 2 * claimed
      local lease = take_lease(core, eid, eligible, leases, active, timeouts, f,
        worker_id, wiid, argv[a], argv[a + 1], ttl, f.resume == '1', now)
      reply[#reply + 1] = eid
      append_all(reply, lease)
      local c = redis.call('HGETALL', exec_key(eid, 'ctx'))
      reply[#reply + 1] = tostring(#c / 2)
      append_all(reply, c)
      claimed = claimed + 1
    end
  end
  reply[3] = tostring(claimed)
  return reply
end)

-- Length-prefixes each field ("<len>:<bytes>"), so any bytes pass. The
-- prefixes of short fields (ids, numbers, names) are built once, at load:
-- formatting a number costs more than the rest of a field.
local LEN_PREFIX = {}
for i = 0, 256 do LEN_PREFIX[i] = i .. ':' end
local function frame(fields)
  local out, n = {}, 0
  for i = 1, #fields do
    local v = fields[i]
    if type(v) ~= 'string' then v = tostring(v) end
    out[n + 1] = LEN_PREFIX[#v] or (#v .. ':')
    out[n + 2] = v
    n = n + 2
  end
  return table.concat(out)
end

-- The hand-off: ff_create claims an execution for a live offer (ff_offer)
-- as ff_claim would, and pushes the lease and the context onto the offer's
-- worker instance's inbox, so that worker makes no claim call at all. Two
-- callers: hand_off_new for the execution the create just wrote, and
-- hand_off_head for the head of a backlog. They share the helpers below.

-- Spends offer o (pop_offer's: off the offers key already) on target and
-- takes its lease (core its record, f its claim fields, from the eligible
-- set it leaves, or nil when it never joined it; pre as take_lease's).
-- Returns the hand-off message so far: worker_instance, eid, lease_ttl_ms,
-- then the six lease fields as ff_claim returns them; the caller appends
-- the ctx pairs.
local function claim_for_offer(keys, o, core, target, from, f, now, now_s, pre)
  local lease = take_lease(core, target, from, keys[10], keys[11], keys[12], f,
    o.worker_id, o.wiid, o.lease_id, o.attempt_id, tonumber(o.ttl), f.resume == '1', now, pre, keys.d, now_s)
  return append_all({o.wiid, target, o.ttl}, lease)
end

-- How often (in list lengths) a push onto an inbox that already held
-- hand-offs extends its expiry: see push_to_inbox. At most the worker's
-- read batch (inboxBatch in valkeybackend/handoff.go, 64).
INBOX_REFRESH = 32

-- Pushes hand-off msg (framed) onto the inbox of offer o's worker instance:
-- a list, not a channel, so it waits there while its worker reconnects; it
-- lives about as long as the lease. The inbox key is built here (single
-- server only, like the offers key).
-- The expiry (PX the lease TTL) is set by the push that creates the list,
-- not by every push: a live worker empties its inbox with every read (up to
-- 64 per BLMPOP), and Valkey deletes an empty list, so the next push
-- creates it again with a fresh expiry. A list its worker no longer reads
-- (died, or gone for longer than a lease) expires at most a lease TTL after
-- the push that set it (before: after the last push): the hand-offs still
-- in it carry leases that expired by then or expire within one more lease
-- TTL, and the lease scanner recovers them as it does the worker's other
-- leases. A list that never empties would be one a live worker reads more
-- slowly than hand-offs arrive: every INBOX_REFRESH-th length extends the
-- expiry too, so such a list lives while pushes come (with fewer than
-- INBOX_REFRESH pushes between two reads, each read takes more than came,
-- and the list soon empties).
-- On a cluster (offers key of partition scope, tag its partition) the
-- hand-off is published instead on the instance's shard channel of that
-- partition, "ff:handoff:<tag>:<instance>" (a key on another slot is out
-- of reach): the instance subscribes to it on every partition, and one
-- lost on the way is recovered when its lease expires.
local function push_to_inbox(o, msg, offers, d, known)
  local scope, tag
  if known then scope, tag = known[1], known[2] else scope, tag = offers_scope(offers) end
  if scope == 'partition' then
    redis.call('SPUBLISH', 'ff:handoff:' .. tag .. ':' .. o.wiid, frame(msg))
    return
  end
  local inbox = 'ff:inbox:' .. o.wiid
  if d then -- a batch: one push per inbox (flush_deferred sets the expiry)
    d.ttl[inbox] = o.ttl
    write_index(d, 'RPUSH', inbox, frame(msg))
    return
  end
  local n = redis.call('RPUSH', inbox, frame(msg))
  if n == 1 or n % INBOX_REFRESH == 0 then redis.call('PEXPIRE', inbox, o.ttl) end
end

-- Admits target under the quota of offer o (o.quota) before a hand-off
-- spends o: q is the caller's quota keys ({hash, win, run, name}, checked:
-- quota_keys_at), nil when it passed none. Returns the pairs the hand-off
-- message carries after the context ('qa' the quota, 'qm' the window
-- member), so the worker holds the slot as if it had admitted the
-- execution itself (it refreshes the hold with its renewals and releases
-- it when the attempt ends); nil when the hand-off may not run: no keys,
-- keys of another quota than the offer's, or the quota refused (rate,
-- concurrency; the execution then waits in its eligible set for the
-- admission path) or found target admitted by another claimer already.
-- The hold's first deadline is the offer's lease TTL, the window entry is
-- named by the offer's lease id (unique).
local function hand_off_admitted(q, o, target, now)
  if not q or q.name ~= o.quota then return nil end
  local status, member = quota_admit(q, target, tonumber(o.ttl), o.lease_id, now)
  if status ~= 'admitted' then return nil end
  return {'qa', q.name, 'qm', member}
end

-- Hands eid, the execution ff_create is writing (c its create_args, fields
-- its core fields so far, not yet written; kv its ctx as written; not in
-- the eligible set), to the freshest live offer of KEYS[9]: the lease's
-- fields join the create's in one HSET. Reports whether it did (false: no
-- live offer, or that offer's worker lacks a capability: the offer is put
-- back, and nothing is written).
hand_off_new = function(keys, eid, c, fields, kv, now, now_s)
  local o = pop_offer(keys[9], now, keys.quota)
  if not o then return false end
  local adm = missing_caps(c.a[c.o + 6], o.caps) == '' and (not o.quota or hand_off_admitted(keys.quota, o, eid, now))
  if not adm then
    put_back(keys[9], o)
    return false
  end
  -- A new execution's claim fields are known without reading them.
  local f = {epoch = '0', total_attempts = '0', pending_type = 'initial',
    attempt_timeout = c.a[c.o + 14], lane = c.lane, lease_log = c.lease_log}
  local msg = append_all(claim_for_offer(keys, o, keys[1], eid, nil, f, now, now_s, fields), kv)
  if o.quota then append_all(msg, adm) end
  push_to_inbox(o, msg, keys[9], keys.d, keys.scopes and keys.scopes[keys[9]])
  return true
end

-- Hands head, the first member of the lane's eligible set KEYS[3] on the
-- partition tagged tag, to offer o (pop_offer's), when head is still
-- claimable on lane by that offer's worker. Reports whether it did; when
-- not, the caller puts o back. A member of another partition (a raw write)
-- is never read: its keys lie outside the call's slot; the claim path
-- drops such strays.
hand_off_head = function(keys, o, head, lane, tag, now, now_s)
  if id_tag(head) ~= tag then return false end
  local core = exec_key(head, 'core')
  local f = claim_fields(core)
  if not claimable(head, f, lane) then
    return false -- a claim under way, or a stray: the claim path sorts it out
  end
  if missing_caps(f.caps, o.caps) ~= '' then return false end
  local adm = o.quota and hand_off_admitted(keys.quota, o, head, now)
  if o.quota and not adm then return false end
  local msg = append_all(claim_for_offer(keys, o, core, head, keys[3], f, now, now_s),
    redis.call('HGETALL', exec_key(head, 'ctx')))
  if adm then append_all(msg, adm) end
  push_to_inbox(o, msg, keys[9], keys.d, keys.scopes and keys.scopes[keys[9]])
  return true
end

---------------------------------------------------------------------------
-- ff_create_batch: create up to MAX_BATCH executions of one partition, each
-- exactly as its own ff_create would (create_one), in order: idempotency
-- keys (a repeated one is a DUPLICATE of its first item), explicit-id
-- collisions, delays, deadlines, hand-offs, arrivals. Every per-execution,
-- lane and idempotency key of an item is built here from the partition's
-- tag (checked on KEYS 1..5; each item's id must carry it) and a checked
-- lane, so it stays in this call's slot. Offers keys are passed, one per
-- lane whose creates may hand off ("ff:offers:<lane>" on one server,
-- "ff:i:<tag>:<lane>:offers" on a cluster); a lane without one hands off
-- to nobody. An offers key may be followed by its lane's quota keys
-- (quota, win, run; single server only, v34): the lane's items with flag
-- 8 then admit what they hand to its offers, as ff_create with flag 8.
-- KEYS: 1 deadlines, 2 all, 3 arrivals (shard channel), 4 leases,
--       5 timeouts, then zero or more offers keys, each maybe followed
--       by three quota keys
-- ARGV: 1 n (1..MAX_BATCH), then per item: idempotency key ('' = none),
--       then ff_create's ARGV (19 + 2*ntags fields, +1 with a trace carrier)
-- Every item is checked before the first write: one malformed item
-- refuses the call (invalid_input), having written nothing.
-- Returns ok(n, then per item: status, eid, state), status 'OK',
--   'DUPLICATE' (eid the first execution, state its state now) or
--   'execution_id_in_use' (nothing written for the item). Errors: invalid_input.
-- Inner commands: 1 TIME, then per item its ff_create's past TIME (GET +
--   HGET idem, EXISTS for a given id, 2 HSET (ctx, core: the core's is the
--   hand-off's when handed off), SET idem, ZADD eligible + SPUBLISH / a
--   hand-off / backlog offers, read once per lane while none is live),
--   with one ZCARD per eligible set while the batch knows its size, and the
--   ZADDs of leases, timeouts, deadlines and delayed and the inbox pushes
--   gathered into one command per key at the end (write_index). A hand-off
--   to an offer made under a quota adds the admission's HMGET, ZSCORE, and
--   per limit ZREMRANGEBYSCORE, ZCARD, ZADD (+ ZRANGE when refused), and a
--   ZADD to put the offer back when refused; lanes without one add nothing.
local MAX_BATCH = 1000
local BATCH_KEYS = {'deadlines', 'all', 'arrivals', 'leases', 'timeouts', open = true}
redis.register_function('ff_create_batch', function(keys, argv)
  local bad, tag = bad_partition_call(keys, BATCH_KEYS, 5)
  if bad then return bad end
  local offers, scopes, quotas = {}, {}, {}
  local i = 6
  while i <= #keys do
    local scope, otag = offers_scope(keys[i])
    local lane = scope == 'global' and string.sub(keys[i], #OFFERS_PRE + 1) or (scope and lane_in(keys[i], otag, 'offers'))
    if not lane or (scope == 'partition' and otag ~= tag) then
      return fail('invalid_input', 'key ' .. i .. ' is not an offers key of the batch')
    end
    offers[lane], scopes[keys[i]] = keys[i], {scope, otag}
    i = i + 1
    if string.sub(keys[i] or '', 1, #QUOTA_PRE) == QUOTA_PRE then
      quotas[lane] = quota_keys_at(keys, i)
      if not quotas[lane] then return fail('invalid_input', 'keys ' .. i .. '.. are not a quota\'s keys') end
      i = i + 3
    end
  end
  local n = uint(argv[1])
  if n == nil or n == 0 or n > MAX_BATCH then return fail('invalid_input', 'malformed batch size') end
  local items, o = {}, 1
  for i = 1, n do
    local c = argv[o + 1] and create_args(argv, o + 1, true)
    if not c or id_tag(c.eid) ~= tag or not is_name(c.lane) or (c.admit and not quotas[c.lane]) then
      return fail('invalid_input', 'malformed create arguments in item ' .. i)
    end
    c.idem = argv[o + 1]
    items[i], o = c, c.last
  end
  if o ~= #argv then return fail('invalid_input', 'malformed create arguments') end
  local noop, pre = 'ff:noop:' .. tag, 'ff:i:' .. tag .. ':'
  local now = now_ms()
  local reply = ok(tostring(n))
  -- One keys table serves every item (create_one keeps none of it): the
  -- partition's keys stay, the item's and its lane's are set per item.
  local k = {nil, nil, nil, nil, nil, keys[1], keys[2], keys[3], nil, keys[4], nil, keys[5],
    dry = {}, d = new_deferred(), size = {}, now_s = fmt(now), scopes = scopes}
  local lane_keys = {} -- lane -> {eligible, delayed, active}
  for _, c in ipairs(items) do
    local lk = lane_keys[c.lane]
    if not lk then
      local lp = pre .. c.lane .. ':'
      lk = {lp .. 'eligible', lp .. 'delayed', lp .. 'active'}
      lane_keys[c.lane] = lk
    end
    local idem = noop
    if c.idem ~= '' then idem = 'ff:idem:' .. tag .. ':' .. c.idem end
    k[1], k[2], k[3], k[4], k[5] = exec_key(c.eid, 'core'), exec_key(c.eid, 'ctx'), lk[1], lk[2], idem
    k[9], k[11] = offers[c.lane] or noop, lk[3]
    k.quota = c.admit and quotas[c.lane] or nil
    local r = create_one(k, c, tag, now)
    local m = #reply
    if r[1] == 1 then
      reply[m + 1], reply[m + 2], reply[m + 3] = r[2], r[3], r[4]
    else
      reply[m + 1], reply[m + 2], reply[m + 3] = r[2], c.eid, ''
    end
  end
  flush_deferred(k.d)
  return reply
end)

-- Checks offer arguments (argv[first..] are the members); the failure, or
-- nil. Writes nothing.
local function check_offers(offers, ttl, mode, argv, first)
  ttl = uint(ttl)
  if not offers_scope(offers) or ttl == nil or ttl == 0
    or (mode ~= 'new' and mode ~= 'refresh') or #argv < first then
    return fail('invalid_input', 'malformed offer arguments')
  end
  for i = first, #argv do
    if not parse_offer(argv[i]) then return fail('invalid_input', 'malformed offer') end
  end
  return nil
end

-- Posts or extends the offers argv[first..] (checked) for ttl ms, in two
-- commands at most; returns ok(expires_at, then per offer '1', or '0' for a
-- refresh of one gone).
local function post_offers(offers, ttl, mode, argv, first, now)
  local expires = now + ttl
  local reply = ok(fmt(expires))
  local members = {}
  for i = first, #argv do members[#members + 1] = argv[i] end
  local there = {}
  if mode == 'refresh' then
    there = redis.call('ZMSCORE', offers, unpack(members))
  end
  local zadd = {}
  for i, m in ipairs(members) do
    local done = mode == 'new' or there[i]
    reply[#reply + 1] = done and '1' or '0'
    if done then
      zadd[#zadd + 1] = expires
      zadd[#zadd + 1] = m
    end
  end
  if #zadd > 0 then
    redis.call('ZADD', offers, (mode == 'new') and 'NX' or 'XX', unpack(zadd))
  end
  return reply
end

---------------------------------------------------------------------------
-- ff_offer: post (mode 'new') or extend (mode 'refresh') an idle worker's
-- claim offers on a lane (see ff_create). A refresh only touches offers
-- still there: a taken offer's lease id is spent and never posted again.
-- Expired offers of the lane (workers that left) are removed on the way.
-- KEYS: 1 offers
-- ARGV: 1 ttl_ms, 2 mode ('new' | 'refresh'), then one member per offer
--       ("<lease_id> <attempt_id> <lease_ttl_ms> <worker_id>
--       <worker_instance> <caps_csv>", + " <quota>" for an offer made
--       under the lane's quota: see parse_offer)
-- Returns ok(expires_at_ms, then per offer '1' posted or extended, or '0'
--   for a refresh of one gone: taken or expired).
-- Errors: invalid_input.
redis.register_function('ff_offer', function(keys, argv)
  local bad = check_offers(keys[1], argv[1], argv[2], argv, 3)
  if bad then return bad end
  local now = now_ms()
  redis.call('ZREMRANGEBYSCORE', keys[1], '-inf', now) -- expired: their workers left
  return post_offers(keys[1], uint(argv[1]), argv[2], argv, 3, now)
end)

---------------------------------------------------------------------------
-- ff_renew: renew many leases on one partition.
-- KEYS: 1 leases, then one core per lease
-- ARGV: 1 lease_ttl_ms, then per lease: eid, lease_id, epoch, attempt_id
-- Returns ok(n, then per lease: code, expires_at, d1, d2, d3, d4) where code is
--   '' on success or a fence error code (execution_not_found,
--   execution_not_active, lease_revoked, lease_expired, stale_lease) and
--   d1..d4 its detail (state, epoch, attempt_id, ended_by for
--   execution_not_active). Errors: invalid_input (the whole call).
redis.register_function('ff_renew', function(keys, argv)
  local leases = keys[1]
  local ttl = uint(argv[1])
  local n = #keys - 1
  if ttl == nil or ttl == 0 or n < 1 or #argv ~= 1 + 4 * n then
    return fail('invalid_input', 'malformed renew arguments')
  end
  local tag = id_tag(argv[2])
  if not tag or leases ~= 'ff:i:' .. tag .. ':leases' then
    return fail('invalid_input', 'key 1 is not the leases key')
  end
  for i = 1, n do
    local eid = argv[2 + (i - 1) * 4]
    if id_tag(eid) ~= tag or keys[i + 1] ~= 'ff:e:' .. eid .. ':core' then
      return fail('invalid_input', 'lease ' .. i .. ': malformed execution id or key')
    end
  end
  local now = now_ms()
  local expires = now + ttl
  local reply = ok(tostring(n))
  for i = 1, n do
    local core = keys[i + 1]
    local a = 2 + (i - 1) * 4
    local eid = argv[a]
    local bad, f = check_fence(core, argv[a + 1], argv[a + 2], argv[a + 3], now)
    if bad then
      append_all(reply, {bad[2], '0', bad[3] or '', bad[4] or '', bad[5] or '', bad[6] or ''})
    else
      redis.call('HSET', core, 'lease_expires_at', expires)
      redis.call('ZADD', leases, expires, eid)
      local left = tonumber(f[3]) - now
      if f[8] == '1' and left * 4 < ttl then
        log_lease('1', eid, 'renewed_late', argv[a + 1], argv[a + 2], f[7], fmt(left))
      end
      append_all(reply, {'', tostring(expires), '', '', '', ''})
    end
  end
  return reply
end)

---------------------------------------------------------------------------
-- ff_progress: record progress on behalf of the lease holder.
-- KEYS: 1 core
-- ARGV: 1 eid, 2 lease_id, 3 epoch, 4 attempt_id, 5 percent (0..100), 6 message
-- Returns ok(). Errors: the fence errors, invalid_input.
local CORE_KEYS = {'core'}
redis.register_function('ff_progress', function(keys, argv)
  local bad = bad_call(keys, CORE_KEYS, 1, argv[1])
  if bad then return bad end
  local pct = uint(argv[5])
  if pct == nil or pct > 100 then return fail('invalid_input', 'percent out of range') end
  local now = now_ms()
  bad = check_fence(keys[1], argv[2], argv[3], argv[4], now)
  if bad then return bad end
  redis.call('HSET', keys[1], 'progress_pct', pct, 'progress_msg', argv[6])
  return ok()
end)

---------------------------------------------------------------------------
-- ff_complete: end the execution successfully and, optionally, offer the
-- slot it frees (as ff_offer 'new' does; only when the complete lands).
-- KEYS: 1 core, 2 result, 3 leases, 4 active, 5 terminal, 6 timeouts, 7 deadlines,
--       8 offers (optional)
-- ARGV: 1 eid, 2 lease_id, 3 epoch, 4 attempt_id, 5 result, 6 has_result ('1'|'0'),
--       7 lane, then with KEYS[8]: 8 offer ttl_ms, 9.. offer members
-- Returns ok('completed'), or with offers ok(expires_at, then per offer
--   '1' or '0') as ff_offer. Errors: the fence errors, invalid_input.
-- The offers (KEYS[8]) may be another lane's: check_offers checks them.
local COMPLETE_KEYS = {'core', 'result', 'leases', 'active', 'terminal', 'timeouts', 'deadlines', open = true}
redis.register_function('ff_complete', function(keys, argv)
  local core, eid = keys[1], argv[1]
  local bad, tag = bad_call(keys, COMPLETE_KEYS, 7, eid, argv[7])
  if bad then return bad end
  if #keys > 8 then return fail('invalid_input', 'wrong number of keys') end
  if keys[8] then
    bad = check_offers(keys[8], argv[8], 'new', argv, 9)
    if bad then return bad end
    local scope, otag = offers_scope(keys[8])
    if scope == 'partition' and otag ~= tag then
      return fail('invalid_input', 'offers key of another partition')
    end
  end
  local now = now_ms()
  local f
  bad, f = check_fence(core, argv[2], argv[3], argv[4], now, argv[7], FENCE_END)
  if bad then return bad end
  if argv[6] == '1' then redis.call('SET', keys[2], argv[5]) end
  leave_deadlines(eid, keys[7], f[FENCE_READ + 2])
  redis.call('HSET', core, unpack(release_lease(eid, keys[3], keys[6], f[FENCE_READ + 1],
    {'state', 'completed', 'completed_at', now, 'ended_by', argv[2], 'last_transition_at', now})))
  redis.call('ZADD', keys[5], now, eid)
  log_lease(f[8], eid, 'released', argv[2], argv[3], argv[7], 'completed')
  if f[9] then flow_member_ended(eid, f[9], 'completed', now) end
  if keys[8] then return post_offers(keys[8], uint(argv[8]), 'new', argv, 9, now) end
  return ok('completed')
end)

-- The offers a complete batch is about to post on offers key k (z: ZADD
-- arguments, expiry then member per offer, with z.lane their lane and
-- z.tags the partitions of the items that made them) first take the
-- backlog of those partitions' eligible sets of the lane, head first, as a
-- create behind a backlog does (hand_off_head): a slot freed while work
-- waits gets the oldest of it in this call, with no claim call and no
-- race with other claimers, instead of waiting for the next create or for
-- its worker's claim. Stops at a partition's first head that cannot be
-- handed (a claim under way, a stray, missing capabilities): the claim
-- path sorts it out. Sets z.first, the index in z of the first offer left
-- to post. Costs one ZRANGE per partition and lane when there is no backlog.
local function offers_to_backlog(k, z, scope, d, now, now_s)
  local i = 1
  for _, tag in ipairs(z.tags) do
    if i > #z then break end
    local pre = 'ff:i:' .. tag .. ':'
    local keys = {nil, nil, pre .. z.lane .. ':eligible', nil, nil, nil, nil, nil, k, pre .. 'leases',
      pre .. z.lane .. ':active', pre .. 'timeouts', d = d, scopes = {[k] = {scope, tag}}}
    while i <= #z do
      local head = redis.call('ZRANGE', keys[3], 0, 0)[1]
      if not head or not hand_off_head(keys, offer_of(z[i + 1], z[i]), head, z.lane, tag, now, now_s) then
        break
      end
      i = i + 2
    end
  end
  z.first = i
end

---------------------------------------------------------------------------
-- ff_complete_batch: complete up to MAX_COMPLETES executions, each exactly
-- as its own ff_complete would (fence checked, result stored, lease
-- released, terminal index), and post the offers of the items that landed
-- (ff_offer 'new') once they took the lane's backlog in the items'
-- partitions (offers_to_backlog). A flow member's ready children take its
-- offers first (child_offer: a chain's next member goes to the slot its
-- predecessor freed, no ZPOPMAX, no ZADD). Completions that gathered while
-- the worker's previous call was in flight share one call's own cost.
-- Keys are derived from each item's id and lane (ff_create_batch). KEYS
-- are the items' core keys: a cluster refuses a batch spanning slots.
-- KEYS: one core key per item ("ff:e:<eid>:core"), in item order
-- ARGV: 1 n (1..MAX_COMPLETES), 2 offer_ttl_ms ('0' when no item offers),
--       3 offers scope ('global': "ff:offers:<offer_lane>", one server;
--       'partition': "ff:i:<the item's tag>:<offer_lane>:offers", a
--       cluster; either with '+reply' appended: children handed to their
--       item's own offers come back in the reply, see Returns; without
--       it they are pushed as any hand-off, for clients before v36), then
--       per item: eid, lease_id, epoch, attempt_id, lane, has_result
--       ('1'|'0'), result, offer_lane ('' = no offers), noffers, then
--       noffers offer members (as ff_offer's)
-- Every item is checked before the first write: one malformed item
-- refuses the call (invalid_input), having written nothing.
-- Returns ok(expires_at of the offers, then per item six fields: code (''
--   landed, or the fence error ff_complete would return), d1..d4 (its
--   detail, as ff_complete's), offered ('1': posted, or taken by its flow
--   children in this call)), then, with a '+reply' scope, for each ready
--   flow child handed to its item's own offer, two more: the item's index
--   and the child's hand-off message, framed as an inbox push's (which it
--   replaces: such a hand-off is pushed nowhere, the completing worker
--   runs it from this reply). A call with no such hand-off returns no
--   more fields.
-- Inner commands: 1 TIME; per item HMGET, [SET result], HSET, [a flow
--   member's flow_member_ended; with '+reply', no push for a child its
--   own offer takes]; one ZREM per leases, timeouts, deadlines
--   key and one ZADD per terminal key of the batch (write_index); per
--   offers key with offers left, one ZRANGE per partition of its items
--   (+ a hand-off per backlog head taken) and one ZADD NX per OFFER_CHUNK.
local MAX_COMPLETES = 128
local OFFER_CHUNK = 1000
redis.register_function('ff_complete_batch', function(keys, argv)
  local n, ttl, scope = uint(argv[1]), uint(argv[2]), argv[3]
  local inline = nil -- item index, hand-off message: children handed to their item's own offers
  if scope == 'global+reply' or scope == 'partition+reply' then
    scope, inline = string.sub(scope, 1, -7), {}
  end
  if n == nil or n == 0 or n > MAX_COMPLETES or #keys ~= n or ttl == nil
    or (scope ~= 'global' and scope ~= 'partition') then
    return fail('invalid_input', 'malformed batch size')
  end
  -- Pass 1 checks every item and keeps where it starts (at[i]), its tag
  -- and where its offers end; pass 2 reads the rest from argv.
  local at, tags, last, o = {}, {}, {}, 3
  for i = 1, n do
    local eid, lane, has, offer_lane = argv[o + 1], argv[o + 5], argv[o + 6], argv[o + 8]
    local noffers = uint(argv[o + 9])
    local tag = id_tag(eid)
    if not tag or keys[i] ~= 'ff:e:' .. eid .. ':core' or not is_name(lane)
      or (has ~= '1' and has ~= '0') or argv[o + 7] == nil or noffers == nil
      or (noffers > 0 and (ttl == 0 or not is_name(offer_lane))) then
      return fail('invalid_input', 'malformed item ' .. i)
    end
    for j = o + 10, o + 9 + noffers do
      if not argv[j] or not is_offer(argv[j]) then
        return fail('invalid_input', 'malformed offer in item ' .. i)
      end
    end
    at[i], tags[i], last[i] = o, tag, o + 9 + noffers
    o = last[i]
  end
  if o ~= #argv then return fail('invalid_input', 'malformed batch arguments') end
  local now = now_ms()
  local now_s = fmt(now)
  local expires_s = fmt(now + ttl)
  local reply = ok(expires_s)
  local d = new_deferred()
  local offers, order = {}, {} -- offers key -> ZADD NX arguments; keys in first-use order
  local part = {} -- tag -> its partition's index keys
  for i = 1, n do
    local a, tag = at[i], tags[i]
    local eid, lease_id, lane = argv[a + 1], argv[a + 2], argv[a + 5]
    local bad, f = check_fence(keys[i], lease_id, argv[a + 3], argv[a + 4], now, lane, FENCE_END)
    local r = #reply
    if bad then
      reply[r + 1], reply[r + 2], reply[r + 3] = bad[2], bad[3] or '', bad[4] or ''
      reply[r + 4], reply[r + 5], reply[r + 6] = bad[5] or '', bad[6] or '', '0'
    else
      local pk = part[tag]
      if not pk then
        local pre = 'ff:i:' .. tag .. ':'
        pk = {pre = pre, leases = pre .. 'leases', timeouts = pre .. 'timeouts',
          deadlines = pre .. 'deadlines', terminal = {}}
        part[tag] = pk
      end
      if argv[a + 6] == '1' then redis.call('SET', 'ff:e:' .. eid .. ':result', argv[a + 7]) end
      leave_deadlines(eid, pk.deadlines, f[FENCE_READ + 2], d)
      redis.call('HSET', keys[i], unpack(release_lease(eid, pk.leases, pk.timeouts,
        f[FENCE_READ + 1], {'state', 'completed', 'completed_at', now_s, 'ended_by', lease_id,
        'last_transition_at', now_s}, d)))
      log_lease(f[8], eid, 'released', lease_id, argv[a + 3], lane, 'completed')
      local terminal = pk.terminal[lane]
      if not terminal then
        terminal = pk.pre .. lane .. ':terminal'
        pk.terminal[lane] = terminal
      end
      write_index(d, 'ZADD', terminal, now_s, eid)
      local offered, own = '0', nil
      local flow = f[9]
      if a + 10 <= last[i] then
        local k = 'ff:offers:' .. argv[a + 8]
        if scope == 'partition' then k = pk.pre .. argv[a + 8] .. ':offers' end
        local z = offers[k]
        if not z then
          z = {lane = argv[a + 8], tags = {}, seen = {}}
          offers[k] = z
          order[#order + 1] = k
        end
        if not z.seen[tag] then
          z.seen[tag] = true
          z.tags[#z.tags + 1] = tag
        end
        -- Only a flow member's own offers are looked at again (child_offer).
        if flow then own = {key = k, z = z, lo = #z + 1, inline = inline and {}} end
        for j = a + 10, last[i] do
          z[#z + 1] = expires_s
          z[#z + 1] = argv[j]
        end
        offered = '1'
      end
      -- A flow member's ready children take its own offers first (see
      -- child_offer); what they leave is posted below, as any item's.
      if flow then
        flow_member_ended(eid, flow, 'completed', now, own)
        for _, m in ipairs(own and own.inline or {}) do
          inline[#inline + 1], inline[#inline + 2] = tostring(i), m
        end
      end
      reply[r + 1], reply[r + 2], reply[r + 3], reply[r + 4], reply[r + 5], reply[r + 6] =
        '', '', '', '', '', offered
    end
  end
  for _, k in ipairs(order) do offers_to_backlog(k, offers[k], scope, d, now, now_s) end
  flush_deferred(d)
  for _, k in ipairs(order) do
    local z = offers[k]
    for c = z.first, #z, 2 * OFFER_CHUNK do
      redis.call('ZADD', k, 'NX', unpack(z, c, math.min(#z, c + 2 * OFFER_CHUNK - 1)))
    end
  end
  if inline then append_all(reply, inline) end
  return reply
end)

-- Attempt records. When an attempt ends, its per-attempt fields (see the
-- header) are kept in core field attempt:<index>, so what it did stays
-- readable after a later attempt starts clean. The value is framed (see
-- frame): format '1', index, attempt type, attempt id, worker id, worker
-- instance, lease epoch, ended at (ms), outcome, progress percent, progress
-- message, failure reason, failure category. Outcome: 'retried' (failed, a
-- retry follows), 'interrupted' (lease lost or shutdown, requeued without
-- using a retry), or the state the attempt left the execution in ('failed';
-- ff_replay keeps the last attempt of an execution that ended otherwise).
-- The writes ride on HSETs the callers make anyway; only the last
-- ATTEMPT_HISTORY records are kept.
local ATTEMPT_HISTORY = 16
local ATTEMPT_FIELDS = {'total_attempts', 'attempt_index', 'attempt_type', 'attempt_id',
  'worker_id', 'worker_instance', 'lease_epoch', 'progress_pct', 'progress_msg',
  'failure_reason', 'failure_category'}

-- Appends to kv (pairs for the caller's HSET) the record of the current
-- attempt, whose ATTEMPT_FIELDS values an HMGET returned at v[off + 1 ..];
-- reason and category are its failure (nil: as recorded). Removes the
-- record that falls out of the history (one HDEL, past the bound only).
-- Appends nothing when no attempt ever started. Returns kv.
local function keep_attempt(core, v, off, ended_at, outcome, reason, category, kv)
  local function at(i) return v[off + i] or '' end
  local idx = tonumber(at(2))
  if (tonumber(at(1)) or 0) == 0 or idx == nil then return kv end
  kv[#kv + 1] = 'attempt:' .. idx
  kv[#kv + 1] = frame({'1', idx, at(3), at(4), at(5), at(6), at(7), fmt(ended_at), outcome,
    at(8), at(9), reason or at(10), category or at(11)})
  if idx >= ATTEMPT_HISTORY then redis.call('HDEL', core, 'attempt:' .. (idx - ATTEMPT_HISTORY)) end
  return kv
end

-- Interruptions end an attempt through no fault of its own: they requeue at
-- once without using a retry, up to a cap of interruptions per execution.
local INTERRUPTIONS = {worker_shutdown = true, lease_lost = true}

-- What end_attempt reads: the retry policy and counters (1..11), the
-- attempt's record (ATTEMPT_FIELDS from index 12; keep_attempt's offset
-- 11), then END_FIELDS (from END_AT).
local END_ATTEMPT_FIELDS = {'retry_max', 'retry_count', 'bo_kind', 'bo_init', 'bo_max', 'bo_mult',
  'bo_jitter', 'retry_cats', 'interrupt_count', 'priority', 'created_at'}
append_all(END_ATTEMPT_FIELDS, ATTEMPT_FIELDS)
local END_AT = #END_ATTEMPT_FIELDS + 1
append_all(END_ATTEMPT_FIELDS, END_FIELDS)
-- then what a lease event names (END_LOG: lease_log, lease_id, lease_epoch, lane)
local END_LOG = #END_ATTEMPT_FIELDS + 1
append_all(END_ATTEMPT_FIELDS, {'lease_log', 'lease_id', 'lease_epoch', 'lane', 'flow'})

-- Ends the current attempt of an active execution (the caller has checked
-- the fence or the expiry), recording who ended it (the holder's lease id,
-- or 'engine'), and applies the retry policy: a retry (delayed by
-- the backoff, or at once), an interruption requeue, or terminal failure.
-- k names the keys: core, leases, terminal, delayed, timeouts, deadlines,
-- eligible, grant, and optionally arrivals with lane (a requeue at once
-- into an empty eligible set is then published there).
-- Returns ok('retry_scheduled', due) or ok('terminal_failed').
-- Inner commands: DEL grant (when k.grant), HMGET, ZREM leases, ZREM
-- timeouts (attempt timeout only), ZREM deadlines (terminal with a deadline
-- only), HDEL (past ATTEMPT_HISTORY only), one HSET, ZADD, ZCARD (+SPUBLISH)
-- for a requeue at once.
-- ev is the lease event it logs (see log_lease): 'released' (why: failed,
-- retry or attempt_timeout) or 'expired' (why: reason).
local function end_attempt(k, eid, reason, category, draw, cap, now, ended_by, ev)
  local core = k.core
  -- A reclaim grant issued for the lost lease must not outlive the attempt.
  if k.grant then redis.call('DEL', k.grant) end
  local f = redis.call('HMGET', core, unpack(END_ATTEMPT_FIELDS))
  local retry_count = num(f[2])
  local interrupt_count = num(f[9])
  -- Every core field this call changes goes into kv, for one HSET at the end.
  local kv = release_lease(eid, k.leases, k.timeouts, f[END_AT], {'ended_by', ended_by,
    'failure_reason', reason, 'failure_category', category, 'last_transition_at', now})

  local retry, delay, pending = false, 0, 'retry'
  if INTERRUPTIONS[category] then
    if interrupt_count < cap then
      retry, pending = true, 'reclaim'
      append_all(kv, {'interrupt_count', interrupt_count + 1})
    end
  elseif retry_count < num(f[1]) then
    local cats = f[8] or ''
    if cats == '' or csv_set(cats)[category] then
      retry = true
      if f[3] == 'fixed' then
        delay = tonumber(f[4])
      else
        delay = math.min(tonumber(f[4]) * (tonumber(f[6]) ^ retry_count), tonumber(f[5]))
      end
      local jitter = tonumber(f[7])
      if jitter > 0 then delay = delay * (1 - jitter * draw) end
      delay = math.floor(delay)
      append_all(kv, {'retry_count', retry_count + 1})
    end
  end
  local why = reason
  if ev == 'released' then
    why = (category == 'attempt_timeout' and category) or (retry and 'retry') or 'failed'
  end
  log_lease(f[END_LOG], eid, ev, f[END_LOG + 1], f[END_LOG + 2], f[END_LOG + 3], why)
  if not retry then
    leave_deadlines(eid, k.deadlines, f[END_AT + 1])
    redis.call('HSET', core, unpack(keep_attempt(core, f, 11, now, 'failed', reason, category,
      append_all(kv, {'state', 'failed', 'completed_at', now}))))
    redis.call('ZADD', k.terminal, now, eid)
    if f[END_LOG + 4] then flow_member_ended(eid, f[END_LOG + 4], 'failed', now) end
    return ok('terminal_failed')
  end
  local due = now + delay
  local outcome = 'retried'
  if pending == 'reclaim' then outcome = 'interrupted' end
  keep_attempt(core, f, 11, now, outcome, reason, category, append_all(kv, {'pending_type', pending, 'resume', '0'}))
  if delay <= 0 then
    redis.call('HSET', core, unpack(append_all(kv, {'state', 'waiting', 'delay_until', 0})))
    redis.call('ZADD', k.eligible, eligible_score(f[11], f[10]), eid)
    announce(k.arrivals, k.eligible, k.lane, eid)
  else
    redis.call('HSET', core, unpack(append_all(kv, {'state', 'delayed', 'delay_until', due})))
    redis.call('ZADD', k.delayed, due, eid)
  end
  return ok('retry_scheduled', tostring(due))
end

---------------------------------------------------------------------------
-- ff_fail: end the attempt; the execution's retry policy decides what next.
-- KEYS: 1 core, 2 leases, 3 active, 4 terminal, 5 delayed, 6 timeouts,
--       7 deadlines, 8 eligible, 9 grant, 10 arrivals (shard channel)
-- ARGV: 1 eid, 2 lease_id, 3 epoch, 4 attempt_id, 5 reason, 6 category,
--       7 jitter_draw (a uniform number in [0,1) the client drew), 8 lane
-- Category 'worker_shutdown' is an interruption, not a failure: it requeues
-- at once without using a retry, up to INTERRUPT_CAP times. A requeue at
-- once into an empty eligible set is published as an arrival (see ff_create).
-- Returns ok('retry_scheduled', due_ms) or ok('terminal_failed').
-- Errors: the fence errors.
local FAIL_KEYS = {'core', 'leases', 'active', 'terminal', 'delayed', 'timeouts', 'deadlines', 'eligible',
  'grant', 'arrivals'}
redis.register_function('ff_fail', function(keys, argv)
  local bad = bad_call(keys, FAIL_KEYS, 10, argv[1], argv[8])
  if bad then return bad end
  local now = now_ms()
  bad = check_fence(keys[1], argv[2], argv[3], argv[4], now, argv[8])
  if bad then return bad end
  local k = {core = keys[1], leases = keys[2], active = keys[3], terminal = keys[4],
    delayed = keys[5], timeouts = keys[6], deadlines = keys[7], eligible = keys[8], grant = keys[9],
    arrivals = keys[10], lane = argv[8]}
  local category = argv[6]
  if category == 'lease_lost' then category = 'handler_lease_lost' end
  return end_attempt(k, argv[1], argv[5], category, tonumber(argv[7]) or 0, INTERRUPT_CAP, now, argv[2],
    'released')
end)

---------------------------------------------------------------------------
-- ff_delay: the lease holder parks the execution; the next claim resumes
-- the same attempt.
-- KEYS: 1 core, 2 leases, 3 active, 4 delayed, 5 timeouts, 6 eligible,
--       7 arrivals (shard channel; a delay already over requeues at once
--       and is announced there, see announce)
-- ARGV: 1 eid, 2 lease_id, 3 epoch, 4 attempt_id, 5 until_ms, 6 lane
-- Returns ok(until_ms). Errors: the fence errors, invalid_input.
-- Inner commands: TIME, HMGET, ZREM leases (+ ZREM timeouts with an attempt
-- timeout), HSET, ZADD (+ ZCARD, SPUBLISH when requeued at once).
local DELAY_KEYS = {'core', 'leases', 'active', 'delayed', 'timeouts', 'eligible', 'arrivals'}
-- What a delay reads with the fence: the attempt timeout, then what a
-- requeue at once scores the execution by.
local FENCE_DELAY = fence_with({'attempt_timeout', 'created_at', 'priority'})
redis.register_function('ff_delay', function(keys, argv)
  local core, eid = keys[1], argv[1]
  local bad = bad_call(keys, DELAY_KEYS, 7, eid, argv[6])
  if bad then return bad end
  local until_ms = uint(argv[5])
  if until_ms == nil then return fail('invalid_input', 'malformed delay time') end
  local now = now_ms()
  local f
  bad, f = check_fence(core, argv[2], argv[3], argv[4], now, argv[6], FENCE_DELAY)
  if bad then return bad end
  local kv = release_lease(eid, keys[2], keys[5], f[FENCE_READ + 1],
    {'resume', '1', 'ended_by', argv[2], 'last_transition_at', now})
  if until_ms <= now then
    redis.call('HSET', core, unpack(append_all(kv, {'state', 'waiting', 'delay_until', 0})))
    redis.call('ZADD', keys[6], eligible_score(f[FENCE_READ + 2], f[FENCE_READ + 3]), eid)
    announce(keys[7], keys[6], argv[6], eid)
  else
    redis.call('HSET', core, unpack(append_all(kv, {'state', 'delayed', 'delay_until', until_ms})))
    redis.call('ZADD', keys[4], until_ms, eid)
  end
  log_lease(f[8], eid, 'released', argv[2], argv[3], argv[6], 'delayed')
  return ok(tostring(until_ms))
end)

---------------------------------------------------------------------------
-- ff_cancel: cancel from any non-terminal state. With a lease triple it is the
-- holder's cancel (fenced); without, an operator's.
-- KEYS: 1 core, 2 grant, 3 leases, 4 eligible, 5 delayed, 6 active,
--       7 blocked, 8 terminal, 9 timeouts, 10 deadlines, 11 arrivals (shard
--       channel: an operator's cancel of an active execution tells its
--       holder there, "<eid>")
-- ARGV: 1 eid, 2 reason, 3 cancelled_by, 4 lease_id ('' = operator),
--       5 epoch, 6 attempt_id, 7 lane (the holder's; operators pass the
--       execution's own)
-- Returns ok(previous_state). Errors: execution_not_found, invalid_input;
--   for an operator's cancel of a terminal execution execution_terminal(state);
--   for the holder's cancel the fence errors (execution_not_active(state,
--   epoch, attempt_id, ended_by) once the execution ended).
local CANCEL_KEYS = {'core', 'grant', 'leases', 'eligible', 'delayed', 'active', 'blocked', 'terminal',
  'timeouts', 'deadlines', 'arrivals'}
redis.register_function('ff_cancel', function(keys, argv)
  local core, eid = keys[1], argv[1]
  local bad = bad_call(keys, CANCEL_KEYS, 10, eid, argv[7])
  if bad then return bad end
  local now = now_ms()
  -- f: state, then END_FIELDS at e + 1, e + 2 (one HMGET: the fence's for
  -- the holder, this one for an operator); lg: lease_log, lease id, epoch.
  local f, e, lg
  if argv[4] ~= '' then
    bad, f = check_fence(core, argv[4], argv[5], argv[6], now, argv[7], FENCE_END)
    if bad then return bad end
    e, lg = FENCE_READ, {f[8], argv[4], argv[5], f[9]}
  else
    f, e = redis.call('HMGET', core, 'state', 'lane', 'attempt_timeout', 'deadline_at', 'lease_log',
      'lease_id', 'lease_epoch', 'flow'), 2
    lg = {f[5], f[6], f[7], f[8]}
    if not f[1] then return fail('execution_not_found') end
    if f[2] ~= argv[7] then return fail('invalid_input', 'lane differs from the execution') end
    if not LIVE_STATES[f[1]] then return fail('execution_terminal', f[1]) end
  end
  if f[1] == 'suspended' then close_suspension(eid, id_tag(eid), 'cancelled', now) end
  redis.call('DEL', keys[2])
  -- leases, eligible, delayed, blocked (the lane's active index is no longer
  -- written: see release_lease); timeouts and deadlines only when the
  -- execution can be in them.
  for _, i in ipairs({3, 4, 5, 7}) do redis.call('ZREM', keys[i], eid) end
  if f[1] == 'active' and positive(f[e + 1]) then redis.call('ZREM', keys[9], eid) end
  leave_deadlines(eid, keys[10], f[e + 2])
  local ended_by = argv[4]
  if ended_by == '' then ended_by = 'operator' end
  redis.call('HSET', core, 'state', 'cancelled', 'blocked', '', 'lease_state', '', 'ended_by', ended_by,
    'lease_expires_at', 0, 'cancel_reason', argv[2], 'cancelled_by', argv[3],
    'completed_at', now, 'last_transition_at', now)
  redis.call('ZADD', keys[8], now, eid)
  if f[1] == 'active' then log_lease(lg[1], eid, 'released', lg[2], lg[3], argv[7], 'cancelled') end
  if f[1] == 'waiting_children' then redis.call('ZREM', 'ff:i:' .. id_tag(eid) .. ':dep_blocked', eid) end
  if lg[4] then flow_member_ended(eid, lg[4], 'cancelled', now) end
  if argv[4] == '' and f[1] == 'active' and keys[11] then redis.call('SPUBLISH', keys[11], eid) end
  return ok(f[1])
end)

---------------------------------------------------------------------------
-- ff_change_priority: re-score a waiting execution.
-- KEYS: 1 core, 2 eligible
-- ARGV: 1 eid, 2 priority
-- Returns ok(old, new). Errors: execution_not_found, execution_not_runnable(state),
--   invalid_input.
local PRIORITY_KEYS = {'core', 'eligible'}
redis.register_function('ff_change_priority', function(keys, argv)
  local bad, _, lane = bad_call(keys, PRIORITY_KEYS, 2, argv[1])
  if bad then return bad end
  local prio = uint(argv[2])
  if prio == nil or prio > MAX_PRIORITY then return fail('invalid_input', 'priority out of range') end
  local f = redis.call('HMGET', keys[1], 'state', 'priority', 'created_at', 'blocked', 'lane')
  if not f[1] then return fail('execution_not_found') end
  if f[5] ~= lane then return fail('invalid_input', 'lane differs from the execution') end
  if f[1] ~= 'waiting' and f[1] ~= 'delayed' then return fail('execution_not_runnable', f[1]) end
  redis.call('HSET', keys[1], 'priority', prio)
  if f[1] == 'waiting' and (f[4] or '') == '' then
    redis.call('ZADD', keys[2], 'XX', eligible_score(f[3], prio), argv[1])
  end
  return ok(f[2], tostring(prio))
end)

---------------------------------------------------------------------------
-- ff_revoke: take the lease from its holder. The execution stays active with
-- a revoked lease (due for reclaim at once) until a scanner reclaims it.
-- KEYS: 1 core, 2 leases, 3 arrivals (shard channel: the holder is told
--       there, "<eid>")
-- ARGV: 1 eid, 2 expected_lease_id ('' = any), 3 reason
-- Returns ok(lease_id, epoch). Errors: execution_not_found, no_active_lease,
--   stale_lease (expected id differs).
local REVOKE_KEYS = {'core', 'leases', 'arrivals'}
redis.register_function('ff_revoke', function(keys, argv)
  local bad = bad_call(keys, REVOKE_KEYS, 2, argv[1])
  if bad then return bad end
  local f = redis.call('HMGET', keys[1], 'state', 'lease_state', 'lease_id', 'lease_epoch', 'lease_log', 'lane')
  if not f[1] then return fail('execution_not_found') end
  if f[1] ~= 'active' or f[2] ~= 'held' then return fail('no_active_lease', f[1]) end
  if argv[2] ~= '' and argv[2] ~= f[3] then return fail('stale_lease') end
  local now = now_ms()
  redis.call('HSET', keys[1], 'lease_state', 'revoked', 'revoke_reason', argv[3],
    'last_transition_at', now)
  redis.call('ZADD', keys[2], now, argv[1])
  if keys[3] then redis.call('SPUBLISH', keys[3], argv[1]) end
  log_lease(f[5], argv[1], 'revoked', f[3], f[4], f[6], argv[3])
  return ok(f[3], f[4])
end)

---------------------------------------------------------------------------
-- ff_block_route: park a waiting execution no current worker can run.
-- KEYS: 1 core, 2 eligible, 3 blocked
-- ARGV: 1 eid, 2 reason
-- Returns ok('blocked') or ok('not_eligible') when it was no longer eligible.
local BLOCK_KEYS = {'core', 'eligible', 'blocked'}
redis.register_function('ff_block_route', function(keys, argv)
  local bad = bad_call(keys, BLOCK_KEYS, 3, argv[1])
  if bad then return bad end
  local f = redis.call('HMGET', keys[1], 'state', 'blocked')
  if f[1] ~= 'waiting' or (f[2] or '') ~= '' or redis.call('ZREM', keys[2], argv[1]) == 0 then
    return ok('not_eligible')
  end
  redis.call('HSET', keys[1], 'blocked', argv[2])
  redis.call('ZADD', keys[3], now_ms(), argv[1])
  return ok('blocked')
end)

---------------------------------------------------------------------------
-- ff_promote: move due delayed (and rate_limited, see ff_park) executions
-- back to eligible.
-- KEYS: 1 delayed, 2 eligible, 3 arrivals (shard channel), then one core
--       per candidate
-- ARGV: 1 lane, then the candidate eids, in KEYS order (a candidate that
--       is not an execution id of the partition has the noop key as its core)
-- Returns ok(promoted_count). A candidate not yet due (server time) or no
-- longer delayed is skipped (a stale index entry is removed). The first
-- promoted into an empty eligible set is announced (see announce).
local PROMOTE_KEYS = {'delayed', 'eligible', 'arrivals', open = true}
redis.register_function('ff_promote', function(keys, argv)
  if #keys - 3 ~= #argv - 1 then return fail('invalid_input', 'keys and ids differ') end
  local bad, tag = bad_partition_call(keys, PROMOTE_KEYS, 3, argv[1])
  if bad then return bad end
  for i = 2, #argv do
    local want = 'ff:noop:' .. tag
    if id_tag(argv[i]) == tag then want = 'ff:e:' .. argv[i] .. ':core' end
    if keys[i + 2] ~= want then
      return fail('invalid_input', 'key ' .. (i + 2) .. ' is not the candidate\'s core key')
    end
  end
  local now = now_ms()
  local n = 0
  for i = 2, #argv do
    local core, eid = keys[i + 2], argv[i]
    -- A candidate that is no execution of this partition (its key stands
    -- for nothing) or not of this lane is a stray entry: removed.
    local f = id_tag(eid) == tag
      and redis.call('HMGET', core, 'state', 'delay_until', 'created_at', 'priority', 'lane') or {}
    if (f[1] ~= 'delayed' and f[1] ~= 'rate_limited') or f[5] ~= argv[1] then
      redis.call('ZREM', keys[1], eid)
    elseif tonumber(f[2]) <= now then
      redis.call('ZREM', keys[1], eid)
      redis.call('HSET', core, 'state', 'waiting', 'delay_until', 0, 'last_transition_at', now)
      redis.call('ZADD', keys[2], eligible_score(f[3], f[4]), eid)
      -- Only the first promotion can find the set empty.
      if n == 0 then announce(keys[3], keys[2], argv[1], eid) end
      n = n + 1
    end
  end
  return ok(tostring(n))
end)

---------------------------------------------------------------------------
-- ff_due: members of an index whose score is due by server time, less an
-- optional age (retention: ended at least age_ms ago). Read-only.
-- KEYS: 1 index
-- ARGV: 1 limit, 2 age_ms (optional, default 0)
-- Returns ok(member...).
redis.register_function{function_name = 'ff_due', flags = {'no-writes'},
  callback = function(keys, argv)
    local limit = uint(argv[1]) or 100
    local age = uint(argv[2] or '0') or 0
    local r = redis.call('ZRANGEBYSCORE', keys[1], '-inf', now_ms() - age, 'LIMIT', 0, limit)
    return {1, 'OK', unpack(r)}
  end}

---------------------------------------------------------------------------
-- ff_list: a page of one partition's executions in id order, read from its
-- state indexes: every execution is in exactly one of them (leases while
-- active; suspended; dep_blocked while waiting_children; per lane eligible,
-- delayed (rate_limited too), blocked or terminal otherwise), and
-- this one call reads them all at one instant, so none is missed or listed
-- twice as it moves. No create writes a listing index of its own. The cost
-- is the reader's: every member of the indexes is read (O(executions of
-- the partition) per page; retention bounds the terminal ones). Read-only.
-- KEYS: 1 leases, then per lane: eligible, delayed, blocked, terminal
-- ARGV: 1 cursor (an execution id; '' = from the start), 2 limit
-- Returns ok(id...): up to limit ids greater than the cursor, ascending.
-- Members that are not execution ids of the partition are skipped.
-- Errors: invalid_input (a key off the layout, a malformed limit).
local LIST_SUFFIXES = {'eligible', 'delayed', 'blocked', 'terminal'}
redis.register_function{function_name = 'ff_list', flags = {'no-writes'},
  callback = function(keys, argv)
    local tag = key_tag(keys[1], 'ff:i:')
    local limit = uint(argv[2])
    if not tag or keys[1] ~= 'ff:i:' .. tag .. ':leases' or (#keys - 1) % 4 ~= 0 then
      return fail('invalid_input', 'keys are not a partition\'s state indexes')
    end
    if limit == nil or limit == 0 or type(argv[1]) ~= 'string' then
      return fail('invalid_input', 'malformed list arguments')
    end
    for i = 2, #keys do
      if not lane_in(keys[i], tag, LIST_SUFFIXES[(i - 2) % 4 + 1]) then
        return fail('invalid_input', 'key ' .. i .. ' is not a state index of the partition')
      end
    end
    local cursor, ids = argv[1], {}
    local function gather(key)
      for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
        if m > cursor and id_tag(m) == tag then ids[#ids + 1] = m end
      end
    end
    for i = 1, #keys do gather(keys[i]) end
    gather('ff:i:' .. tag .. ':suspended') -- the suspended (derived: v23's index)
    gather('ff:i:' .. tag .. ':dep_blocked') -- flow members waiting_children (v27)
    table.sort(ids)
    local reply = ok()
    for i = 1, math.min(limit, #ids) do reply[#reply + 1] = ids[i] end
    return reply
  end}

-- Checks a registration call: its keys are one instance's (I a name:
-- "ff:w:{w:I}:alive", "ff:w:{w:I}:info"), and, with fields, the worker id
-- (argv[3]) a name and the lanes (argv[4]) comma-separated names. The
-- failure, or nil.
local function bad_registration(keys, argv, fields)
  local inst = #keys == 2 and string.match(keys[1], '^ff:w:{w:(.+)}:alive$')
  if not is_name(inst) or keys[2] ~= 'ff:w:{w:' .. inst .. '}:info' then
    return fail('invalid_input', 'not a worker instance\'s keys')
  end
  if not fields then return nil end
  if not is_name(argv[3]) then return fail('invalid_input', 'malformed worker id') end
  for lane in string.gmatch(argv[4] or '', '[^,]*') do
    if lane ~= '' and not is_name(lane) then return fail('invalid_input', 'malformed lane') end
  end
  return nil
end

---------------------------------------------------------------------------
-- ff_register_worker: claim a worker instance id for a live process.
-- KEYS: 1 alive, 2 info
-- ARGV: 1 owner token, 2 ttl_ms, 3 worker_id, 4 lanes_csv, 5 caps_csv
-- Returns ok(expires_at). Errors: worker_instance_in_use, invalid_input.
redis.register_function('ff_register_worker', function(keys, argv)
  local bad = bad_registration(keys, argv, true)
  if bad then return bad end
  local ttl = uint(argv[2])
  if ttl == nil or ttl == 0 or argv[1] == '' then return fail('invalid_input', 'malformed registration') end
  if not redis.call('SET', keys[1], argv[1], 'NX', 'PX', ttl) then
    return fail('worker_instance_in_use')
  end
  local now = now_ms()
  redis.call('DEL', keys[2])
  redis.call('HSET', keys[2], 'worker_id', argv[3], 'lanes', argv[4], 'caps', argv[5],
    'registered_at', now)
  redis.call('PEXPIRE', keys[2], ttl)
  return ok(tostring(now + ttl))
end)

---------------------------------------------------------------------------
-- ff_heartbeat_worker: extend a registration the caller owns (re-register
-- it when it lapsed and nobody took the id).
-- KEYS: 1 alive, 2 info
-- ARGV: 1 owner token, 2 ttl_ms, 3 worker_id, 4 lanes_csv, 5 caps_csv
-- Returns ok(expires_at). Errors: worker_instance_in_use, invalid_input.
redis.register_function('ff_heartbeat_worker', function(keys, argv)
  local bad = bad_registration(keys, argv, true)
  if bad then return bad end
  local ttl = uint(argv[2])
  if ttl == nil or ttl == 0 or argv[1] == '' then return fail('invalid_input', 'malformed heartbeat') end
  local owner = redis.call('GET', keys[1])
  if owner and owner ~= argv[1] then return fail('worker_instance_in_use') end
  local now = now_ms()
  redis.call('SET', keys[1], argv[1], 'PX', ttl)
  if redis.call('EXISTS', keys[2]) == 0 then
    redis.call('HSET', keys[2], 'worker_id', argv[3], 'lanes', argv[4], 'caps', argv[5],
      'registered_at', now)
  end
  redis.call('PEXPIRE', keys[2], ttl)
  return ok(tostring(now + ttl))
end)

---------------------------------------------------------------------------
-- ff_deregister_worker: remove a registration the caller owns.
-- KEYS: 1 alive, 2 info
-- ARGV: 1 owner token
-- Returns ok('removed') or ok('not_owner') when someone else holds the id.
-- Errors: invalid_input.
redis.register_function('ff_deregister_worker', function(keys, argv)
  local bad = bad_registration(keys, argv, false)
  if bad then return bad end
  if redis.call('GET', keys[1]) ~= argv[1] then return ok('not_owner') end
  redis.call('DEL', keys[1], keys[2])
  return ok('removed')
end)

---------------------------------------------------------------------------
-- ff_reclaim_expired: the lease-expiry scanner's action. An active execution
-- whose lease expired (server time) or was revoked loses its attempt as an
-- interruption: it is requeued at once for any worker (the next attempt is of
-- type reclaim), or fails terminally once it was interrupted cap times.
-- KEYS: 1 core, 2 leases, 3 active, 4 terminal, 5 delayed, 6 timeouts,
--       7 deadlines, 8 eligible, 9 grant, 10 arrivals (shard channel)
-- ARGV: 1 eid, 2 cap (max interruptions), 3 lane (for the announcement)
-- Returns ok('retry_scheduled', due), ok('terminal_failed'), ok('not_due')
--   or ok('stale') when the index entry no longer applies (it is removed).
local RECLAIM_EXPIRED_KEYS = {'core', 'leases', 'active', 'terminal', 'delayed', 'timeouts', 'deadlines',
  'eligible', 'grant', 'arrivals'}
redis.register_function('ff_reclaim_expired', function(keys, argv)
  local eid, cap = argv[1], uint(argv[2]) or INTERRUPT_CAP
  local bad = bad_call(keys, RECLAIM_EXPIRED_KEYS, 10, eid, argv[3])
  if bad then return bad end
  local f = redis.call('HMGET', keys[1], 'state', 'lease_state', 'lease_expires_at', 'lane')
  if f[1] ~= 'active' or (f[2] ~= 'held' and f[2] ~= 'revoked') then
    redis.call('ZREM', keys[2], eid)
    return ok('stale')
  end
  if f[4] ~= argv[3] then return fail('invalid_input', 'lane differs from the execution') end
  local now = now_ms()
  if f[2] == 'held' and tonumber(f[3]) > now then return ok('not_due') end
  local k = {core = keys[1], leases = keys[2], active = keys[3], terminal = keys[4],
    delayed = keys[5], timeouts = keys[6], deadlines = keys[7], eligible = keys[8], grant = keys[9],
    arrivals = keys[10], lane = argv[3]}
  local why = 'lease expired'
  if f[2] == 'revoked' then why = 'lease revoked' end
  return end_attempt(k, eid, why, 'lease_lost', 0, cap, now, 'engine', 'expired')
end)

---------------------------------------------------------------------------
-- ff_expire: the timeout scanner's action.
--   which = 'deadline': a non-terminal execution past its deadline ends
--   expired, leaving every index.
--   which = 'attempt_timeout': an active attempt past its timeout fails with
--   category attempt_timeout; the retry policy applies.
-- KEYS: 1 core, 2 leases, 3 active, 4 terminal, 5 delayed, 6 timeouts,
--       7 deadlines, 8 eligible, 9 blocked, 10 grant, 11 arrivals (shard channel)
-- ARGV: 1 eid, 2 which ('deadline' | 'attempt_timeout'), 3 lane (for the
--       announcement of an immediate retry)
-- Returns ok('expired'), ok('retry_scheduled', due), ok('terminal_failed'),
--   ok('not_due') or ok('stale') (the index entry is removed).
local EXPIRE_KEYS = {'core', 'leases', 'active', 'terminal', 'delayed', 'timeouts', 'deadlines', 'eligible',
  'blocked', 'grant', 'arrivals'}
redis.register_function('ff_expire', function(keys, argv)
  local eid, which = argv[1], argv[2]
  local bad = bad_call(keys, EXPIRE_KEYS, 11, eid, argv[3])
  if bad then return bad end
  local now = now_ms()
  local f = redis.call('HMGET', keys[1], 'state', 'deadline_at', 'lane', 'lease_log', 'lease_id', 'lease_epoch', 'flow')
  local live = LIVE_STATES[f[1]]
  if live and f[3] ~= argv[3] then return fail('invalid_input', 'lane differs from the execution') end
  if which == 'deadline' then
    if not live then redis.call('ZREM', keys[7], eid) return ok('stale') end
    if num(f[2]) == 0 or num(f[2]) > now then return ok('not_due') end
    if f[1] == 'suspended' then close_suspension(eid, id_tag(eid), 'expired', now) end
    redis.call('DEL', keys[10])
    for _, i in ipairs({2, 3, 5, 6, 7, 8, 9}) do redis.call('ZREM', keys[i], eid) end
    redis.call('HSET', keys[1], 'state', 'expired', 'blocked', '', 'lease_state', '', 'ended_by', 'engine',
      'lease_expires_at', 0, 'failure_reason', 'deadline passed',
      'failure_category', 'deadline', 'completed_at', now, 'last_transition_at', now)
    redis.call('ZADD', keys[4], now, eid)
    if f[1] == 'active' then log_lease(f[4], eid, 'released', f[5], f[6], f[3], 'deadline') end
    if f[1] == 'waiting_children' then redis.call('ZREM', 'ff:i:' .. id_tag(eid) .. ':dep_blocked', eid) end
    if f[7] then flow_member_ended(eid, f[7], 'expired', now) end
    return ok('expired')
  elseif which == 'attempt_timeout' then
    local due = redis.call('ZSCORE', keys[6], eid)
    if f[1] ~= 'active' or not due then redis.call('ZREM', keys[6], eid) return ok('stale') end
    if tonumber(due) > now then return ok('not_due') end
    local k = {core = keys[1], leases = keys[2], active = keys[3], terminal = keys[4],
      delayed = keys[5], timeouts = keys[6], deadlines = keys[7], eligible = keys[8], grant = keys[10],
      arrivals = keys[11], lane = argv[3]}
    return end_attempt(k, eid, 'attempt timed out', 'attempt_timeout', 0, INTERRUPT_CAP, now, 'engine',
      'released')
  end
  return fail('invalid_input', 'unknown expiry kind')
end)

---------------------------------------------------------------------------
-- ff_unblock: make an execution blocked for routing eligible again (a
-- capable worker is alive). Acts only if it is still blocked for the reason
-- the caller saw.
-- KEYS: 1 core, 2 blocked, 3 eligible, 4 arrivals (shard channel)
-- ARGV: 1 eid, 2 expected_reason, 3 lane (for the announcement)
-- Returns ok('unblocked') or ok('skipped') (a stale entry is removed).
local UNBLOCK_KEYS = {'core', 'blocked', 'eligible', 'arrivals'}
redis.register_function('ff_unblock', function(keys, argv)
  local eid = argv[1]
  local bad = bad_call(keys, UNBLOCK_KEYS, 4, eid, argv[3])
  if bad then return bad end
  local f = redis.call('HMGET', keys[1], 'state', 'blocked', 'created_at', 'priority', 'lane')
  if f[1] ~= 'waiting' or not f[2] or f[2] == '' or f[5] ~= argv[3] then
    redis.call('ZREM', keys[2], eid)
    return ok('skipped')
  end
  if f[2] ~= argv[2] then return ok('skipped') end
  redis.call('HSET', keys[1], 'blocked', '', 'last_transition_at', now_ms())
  redis.call('ZREM', keys[2], eid)
  redis.call('ZADD', keys[3], eligible_score(f[3], f[4]), eid)
  announce(keys[4], keys[3], argv[3], eid)
  return ok('unblocked')
end)

---------------------------------------------------------------------------
-- ff_trim: delete a terminal execution that ended before the cutoff, with
-- all its keys and index entries.
-- KEYS: 1 core, 2 ctx, 3 result, 4 grant, 5 terminal, 6 all
-- ARGV: 1 eid, 2 cutoff_ms
-- Returns ok('trimmed') or ok('kept').
local TRIM_KEYS = {'core', 'ctx', 'result', 'grant', 'terminal', 'all'}
redis.register_function('ff_trim', function(keys, argv)
  local eid, cutoff = argv[1], uint(argv[2])
  local bad = bad_call(keys, TRIM_KEYS, 6, eid)
  if bad then return bad end
  if cutoff == nil then return fail('invalid_input', 'malformed cutoff') end
  local f = redis.call('HMGET', keys[1], 'state', 'completed_at', 'waited', 'streams', 'total_attempts')
  if f[1] then
    local terminal = f[1] == 'completed' or f[1] == 'failed' or f[1] == 'cancelled'
      or f[1] == 'expired' or f[1] == 'skipped'
    if not terminal or tonumber(f[2] or '0') > cutoff then return ok('kept') end
  end
  redis.call('DEL', keys[1], keys[2], keys[3], keys[4])
  if f[3] == '1' then drop_waiting(eid) end
  if f[4] == '1' then
    local dead = {}
    for i = 0, num(f[5]) - 1 do
      dead[#dead + 1], dead[#dead + 2] = exec_key(eid, 'stream:' .. i), exec_key(eid, 'stream:' .. i .. ':summary')
    end
    if #dead > 0 then redis.call('DEL', unpack(dead)) end
  end
  redis.call('ZREM', keys[5], eid)
  redis.call('ZREM', keys[6], eid)
  return ok('trimmed')
end)

---------------------------------------------------------------------------
-- ff_replay: run a terminal execution again as a new attempt (type replay).
-- KEYS: 1 core, 2 terminal, 3 eligible, 4 result, 5 arrivals (shard channel)
-- ARGV: 1 eid, 2 max_replays, 3 lane (for the announcement)
-- Returns ok(previous_state). Errors: execution_not_found,
--   execution_not_terminal(state), replay_limit_exceeded(count).
local REPLAY_KEYS = {'core', 'terminal', 'eligible', 'result', 'arrivals'}
-- What a replay reads: the first six, the last attempt (keep_attempt reads
-- ATTEMPT_FIELDS from index 7), then the flow and the lane (last).
local REPLAY_FIELDS = {'state', 'replay_count', 'created_at', 'priority', 'completed_at', 'cancel_reason'}
for i = 1, #ATTEMPT_FIELDS do REPLAY_FIELDS[#REPLAY_FIELDS + 1] = ATTEMPT_FIELDS[i] end
REPLAY_FIELDS[#REPLAY_FIELDS + 1] = 'flow'
REPLAY_FIELDS[#REPLAY_FIELDS + 1] = 'lane'
redis.register_function('ff_replay', function(keys, argv)
  local eid, max = argv[1], uint(argv[2]) or 10
  local bad = bad_call(keys, REPLAY_KEYS, 5, eid, argv[3])
  if bad then return bad end
  local f = redis.call('HMGET', keys[1], unpack(REPLAY_FIELDS))
  if not f[1] then return fail('execution_not_found') end
  if f[#REPLAY_FIELDS] ~= argv[3] then return fail('invalid_input', 'lane differs from the execution') end
  if f[1] ~= 'completed' and f[1] ~= 'failed' and f[1] ~= 'cancelled' and f[1] ~= 'expired' then
    return fail('execution_not_terminal', f[1])
  end
  local count = tonumber(f[2] or '0')
  if count >= max then return fail('replay_limit_exceeded', tostring(count)) end
  local now = now_ms()
  -- A replay is a fresh run: its retry and interruption budgets start over,
  -- and its deadline (if any) no longer applies to it. It starts clean: the
  -- last attempt's record is kept here unless its end kept it already
  -- (a completion, cancellation or deadline does not), with a
  -- cancellation's reason.
  local kv = {'state', 'waiting', 'delay_until', 0, 'blocked', '', 'pending_type', 'replay',
    'resume', '0', 'replay_count', count + 1, 'retry_count', 0, 'interrupt_count', 0,
    'deadline_at', 0, 'completed_at', 0, 'last_transition_at', now,
    'cancel_reason', '', 'cancelled_by', ''}
  -- A flow member's end counted in its flow: the replay runs it alone,
  -- and its next end moves nothing there (flow_member_ended).
  if f[#REPLAY_FIELDS - 1] then append_all(kv, {'flow_counted', '1'}) end
  if (tonumber(f[7] or '0') or 0) > 0 and redis.call('HEXISTS', keys[1], 'attempt:' .. (f[8] or '0')) == 0 then
    local reason = nil
    if f[1] == 'cancelled' then reason = f[6] or '' end
    keep_attempt(keys[1], f, 6, tonumber(f[5] or '0') or 0, f[1], reason, nil, kv)
  end
  redis.call('HSET', keys[1], unpack(append_all(kv, ATTEMPT_CLEAN)))
  redis.call('DEL', keys[4]) -- the new run's result (or none) replaces the old
  redis.call('ZREM', keys[2], eid)
  redis.call('ZADD', keys[3], eligible_score(f[3], f[4]), eid)
  announce(keys[5], keys[3], argv[3], eid)
  return ok(f[1])
end)

---------------------------------------------------------------------------
-- ff_issue_reclaim_grant: grant one worker the right to take over an
-- execution whose lease expired or was revoked.
-- KEYS: 1 core, 2 grant
-- ARGV: 1 eid, 2 worker_id, 3 worker_instance_id, 4 grant_ttl_ms, 5 worker_caps_csv
-- Returns ok(expires_at). Errors: execution_not_found,
--   execution_not_reclaimable(state), grant_already_exists,
--   capability_mismatch(missing), invalid_input.
local RECLAIM_GRANT_KEYS = {'core', 'grant'}
redis.register_function('ff_issue_reclaim_grant', function(keys, argv)
  local bad = bad_call(keys, RECLAIM_GRANT_KEYS, 2, argv[1])
  if bad then return bad end
  local ttl = uint(argv[4])
  if ttl == nil or ttl == 0 or not is_name(argv[2]) or not is_name(argv[3]) then
    return fail('invalid_input', 'malformed grant arguments')
  end
  local f = redis.call('HMGET', keys[1], 'state', 'lease_state', 'lease_expires_at', 'caps')
  if not f[1] then return fail('execution_not_found') end
  local now = now_ms()
  if f[1] ~= 'active' or not (f[2] == 'revoked' or tonumber(f[3]) <= now) then
    return fail('execution_not_reclaimable', f[1])
  end
  if redis.call('EXISTS', keys[2]) == 1 then return fail('grant_already_exists') end
  local missing = missing_caps(f[4], argv[5])
  if missing ~= '' then return fail('capability_mismatch', missing) end
  local expires = now + ttl
  redis.call('HSET', keys[2], 'worker_id', argv[2], 'worker_instance', argv[3], 'expires_at', expires)
  redis.call('PEXPIREAT', keys[2], expires)
  return ok(tostring(expires))
end)

---------------------------------------------------------------------------
-- ff_reclaim: consume a reclaim grant: the interrupted attempt ends and a new
-- attempt (type reclaim, epoch+1) starts under the grantee's lease, or the
-- execution fails terminally once it was interrupted cap times.
-- KEYS: 1 core, 2 grant, 3 eligible, 4 leases, 5 active, 6 timeouts, 7 ctx,
--       8 terminal, 9 deadlines
-- ARGV: 1 eid, 2 worker_id, 3 worker_instance_id, 4 lease_id, 5 attempt_id,
--       6 lease_ttl_ms, 7 lane, 8 cap
-- Returns the same fields as ff_claim with context, or
--   {1,'TERMINAL_FAILED',count} at the cap. Errors: execution_not_found,
--   execution_not_reclaimable(state), invalid_claim_grant, claim_grant_expired.
local RECLAIM_KEYS = {'core', 'grant', 'eligible', 'leases', 'active', 'timeouts', 'ctx', 'terminal', 'deadlines'}
-- What a reclaim reads beside the claim fields (which hold attempt_timeout):
-- the lease (1..3), the attempt's record (keep_attempt's offset 3), then
-- deadline_at (RECLAIM_DEADLINE).
local RECLAIM_LEASE_FIELDS = append_all({'lease_state', 'lease_expires_at', 'interrupt_count'}, ATTEMPT_FIELDS)
RECLAIM_LEASE_FIELDS[#RECLAIM_LEASE_FIELDS + 1] = 'deadline_at'
local RECLAIM_DEADLINE = #RECLAIM_LEASE_FIELDS
RECLAIM_LEASE_FIELDS[#RECLAIM_LEASE_FIELDS + 1] = 'lease_id'
local RECLAIM_LEASE_ID = #RECLAIM_LEASE_FIELDS
redis.register_function('ff_reclaim', function(keys, argv)
  local core, grant, eid = keys[1], keys[2], argv[1]
  local bad = bad_call(keys, RECLAIM_KEYS, 9, eid, argv[7])
  if bad then return bad end
  local ttl, cap = uint(argv[6]), uint(argv[8]) or INTERRUPT_CAP
  if ttl == nil or ttl == 0 or argv[4] == '' or argv[5] == '' then
    return fail('invalid_input', 'malformed reclaim arguments')
  end
  local f = claim_fields(core)
  if not f.state then return fail('execution_not_found') end
  if f.lane ~= argv[7] then return fail('invalid_input', 'lane differs from the execution') end
  local l = redis.call('HMGET', core, unpack(RECLAIM_LEASE_FIELDS))
  local now = now_ms()
  if f.state ~= 'active' or not (l[1] == 'revoked' or tonumber(l[2]) <= now) then
    return fail('execution_not_reclaimable', f.state)
  end
  local g = redis.call('HMGET', grant, 'worker_id', 'worker_instance', 'expires_at')
  if not g[1] or g[1] ~= argv[2] or g[2] ~= argv[3] then return fail('invalid_claim_grant') end
  if tonumber(g[3]) <= now then return fail('claim_grant_expired') end
  redis.call('DEL', grant)
  local count = tonumber(l[3] or '0')
  if count >= cap then
    leave_deadlines(eid, keys[9], l[RECLAIM_DEADLINE])
    local reason = 'lease lost too often'
    redis.call('HSET', core, unpack(keep_attempt(core, l, 3, now, 'failed', reason, 'lease_lost',
      release_lease(eid, keys[4], keys[6], f.attempt_timeout,
      {'state', 'failed', 'ended_by', 'engine', 'failure_reason', reason,
      'failure_category', 'lease_lost', 'completed_at', now, 'last_transition_at', now}))))
    redis.call('ZADD', keys[8], now, eid)
    log_lease(f.lease_log, eid, 'expired', l[RECLAIM_LEASE_ID], f.epoch, f.lane, reason)
    if f.flow then flow_member_ended(eid, f.flow, 'failed', now) end
    return {1, 'TERMINAL_FAILED', tostring(count)}
  end
  -- The lost attempt's record keeps why it ended; the new attempt starts clean.
  local why = 'lease expired'
  if l[1] == 'revoked' then why = 'lease revoked' end
  redis.call('HSET', core, unpack(keep_attempt(core, l, 3, now, 'interrupted', why, 'lease_lost',
    {'interrupt_count', count + 1, 'pending_type', 'reclaim'})))
  f.pending_type, f.lease_event = 'reclaim', 'reclaimed'
  local lease = take_lease(core, eid, keys[3], keys[4], keys[5], keys[6], f,
    argv[2], argv[3], argv[4], argv[5], ttl, false, now)
  local reply = append_all(ok(), lease)
  return append_all(reply, redis.call('HGETALL', keys[7]))
end)

---------------------------------------------------------------------------
-- Durable waiting: suspensions, waitpoints and signals.
--
-- An attempt that must wait for something outside (an approval, a
-- webhook, another system's answer) suspends on one or more waitpoints:
-- its lease is released and the execution waits, state 'suspended', until
-- signals delivered to its waitpoints meet its resume condition; then it
-- is waiting again with resume = '1' (the next claim continues the same
-- attempt), handed to an idle worker's offer or announced like a create.
-- A signal carries the waitpoint's token, an HMAC over the waitpoint's
-- identity under the deployment's secret: only a holder of the token can
-- signal. Keys (T the execution's tag; W a waitpoint id "{p:N}:<uuid>",
-- minted by the client with its execution's tag, so every key here lies
-- in the execution's slot and is derived from W or the execution id):
--   ff:e:E:susp        HASH   the execution's current (or last) suspension:
--                             id reason by at timeout_at on_timeout mode
--                             need names got wps (its waitpoints) state
--                             (open | closed) close_reason closed_at attempt
--                             dedup reply (for a repeated suspend), 'sig:<i>'
--                             the i-th matched signal (framed: id, name,
--                             payload, source, at, W), 'm:<name>' (mode all:
--                             names matched), all_wps (every waitpoint the
--                             execution ever activated: retention deletes
--                             them with it)
--   ff:wp:W            HASH   eid state (pending | active | closed) at key
--                             (the caller's label) exp (a pending one's
--                             expiry) n (signals received)
--   ff:wp:W:signals    STREAM every signal W received: sig name payload src at
--   ff:wp:W:dedup:K    STRING first signal id for dedup key K (PX)
--   ff:sec:T           HASH   waitpoint HMAC secrets, the same in every
--                             partition: kid (the current one), s:<kid> the
--                             secret (hex), x:<kid> an old kid's last valid ms
--   ff:i:T:suspended   ZSET   suspended executions, score 0 (id order)
--   ff:i:T:susp_timeouts ZSET suspension timeout (ms) per suspended execution
--   ff:i:T:wp_pending  ZSET   pending waitpoints -> expiry (ms)
--   ff:i:T:signals     STREAM delivery log: eid wp sig name effect at
--                             (MAXLEN ~ DELIVERY_LOG)
-- A token is "<W>.<kid>.<mac>", mac = HMAC-SHA1(secret of kid,
-- "ffwp1|W|eid|key|at") in hex. The current kid verifies; an older kid
-- until its x:<kid> (the grace a rotation gave it). Secrets never leave
-- the server: no reply or error carries one.

local MAX_WAITPOINTS = 16      -- waitpoints per suspension
local MAX_CONDITION_NAMES = 64 -- signal names in a resume condition
local MAX_SIGNALS = 1000       -- signals one waitpoint accepts
local MAX_COUNT = 1000         -- count(n) at most (n signals are kept)
local DELIVERY_LOG = 10000     -- delivery log entries kept per partition (about)
local PENDING_GRACE = 3600000  -- how long an expired pending waitpoint still answers waitpoint_expired
local KID_PATTERN = '^[%w_%-]+$'
local TIMEOUT_BEHAVIORS = {fail = 'failed', cancel = 'cancelled', expire = 'expired', resume = 'waiting'}
local MATCH_MODES = {any = true, all = true, count = true}

local function wp_key(w) return 'ff:wp:' .. w end

-- Hex pairs (either case) to bytes, for string.gsub: a table lookup per
-- byte instead of a call.
-- (Built at load, where the string table is out of reach: its methods
-- are called on the values.)
local HEX_BYTE = {}
for i = 0, 255 do
  local lo, up, c = ('%02x'):format(i), ('%02X'):format(i), ('%c'):format(i)
  HEX_BYTE[lo], HEX_BYTE[up] = c, c
  HEX_BYTE[lo:sub(1, 1) .. up:sub(2, 2)], HEX_BYTE[up:sub(1, 1) .. lo:sub(2, 2)] = c, c
end
local function from_hex(h)
  return (string.gsub(h, '%x%x', HEX_BYTE))
end

-- The inner and outer padded keys of a secret (hex), derived once per
-- secret and kept while the library is loaded: deriving them is most of an
-- HMAC's cost in Lua. Few secrets are live at once (the current kid and
-- those in their grace); the cache starts over past HMAC_PADS_MAX.
local HMAC_PADS, HMAC_PADS_N, HMAC_PADS_MAX = {}, 0, 16
local function hmac_pads(secret_hex)
  local p = HMAC_PADS[secret_hex]
  if p then return p end
  local key = from_hex(secret_hex)
  if #key > 64 then key = from_hex(redis.sha1hex(key)) end
  local ki, ko = {}, {}
  for i = 1, 64 do
    local b = string.byte(key, i) or 0
    ki[i] = string.char(bit.bxor(b, 0x36))
    ko[i] = string.char(bit.bxor(b, 0x5c))
  end
  if HMAC_PADS_N >= HMAC_PADS_MAX then HMAC_PADS, HMAC_PADS_N = {}, 0 end
  p = {table.concat(ki), table.concat(ko)}
  HMAC_PADS[secret_hex], HMAC_PADS_N = p, HMAC_PADS_N + 1
  return p
end

-- HMAC-SHA1 (RFC 2104) of msg under the secret given in hex, in hex.
local function hmac_sha1(secret_hex, msg)
  local p = hmac_pads(secret_hex)
  return redis.sha1hex(p[2] .. from_hex(redis.sha1hex(p[1] .. msg)))
end

-- Compares two strings in time that depends on their length only.
local function same_mac(a, b)
  if #a ~= #b then return false end
  local d = 0
  for i = 1, #a do d = bit.bor(d, bit.bxor(string.byte(a, i), string.byte(b, i))) end
  return d == 0
end

local function wp_mac(secret_hex, w, eid, label, at)
  return hmac_sha1(secret_hex, 'ffwp1|' .. w .. '|' .. eid .. '|' .. label .. '|' .. at)
end

-- The partition's current kid and its secret, or nil before a seed.
local function current_secret(sec)
  local kid = redis.call('HGET', sec, 'kid')
  if not kid then return nil end
  local secret = redis.call('HGET', sec, 's:' .. kid)
  if not secret then return nil end
  return {kid = kid, secret = secret}
end

local function mint_token(s, w, eid, label, at)
  return w .. '.' .. s.kid .. '.' .. wp_mac(s.secret, w, eid, label, at)
end

-- Closes the open suspension of eid (state 'suspended' or active with an
-- already satisfied one): the suspension and its waitpoints are closed
-- with reason, and eid leaves the suspended and timeout indexes of tag.
-- wps, when the caller read the open suspension already, is its
-- waitpoints (saves reading them again).
close_suspension = function(eid, tag, reason, now, wps)
  local susp = exec_key(eid, 'susp')
  local open = wps ~= nil
  if not open then
    local s = redis.call('HMGET', susp, 'state', 'wps')
    open, wps = s[1] == 'open', s[2]
  end
  if open then
    for w in string.gmatch(wps or '', '%S+') do redis.call('HSET', wp_key(w), 'state', 'closed') end
    redis.call('HSET', susp, 'state', 'closed', 'close_reason', reason, 'closed_at', now)
  end
  redis.call('ZREM', 'ff:i:' .. tag .. ':suspended', eid)
  redis.call('ZREM', 'ff:i:' .. tag .. ':susp_timeouts', eid)
end

-- Deletes what the waiting calls keep for eid (retention: the execution
-- goes): its suspension record and every waitpoint it activated, with
-- their signal streams (their dedup keys expire by themselves).
drop_waiting = function(eid)
  local susp = exec_key(eid, 'susp')
  local dead = {susp}
  for w in string.gmatch(redis.call('HGET', susp, 'all_wps') or '', '%S+') do
    dead[#dead + 1], dead[#dead + 2] = wp_key(w), wp_key(w) .. ':signals'
  end
  redis.call('DEL', unpack(dead))
end

-- A resume condition being evaluated: names (a set; nil matches any
-- name), mode, need, got, seen (mode all: names matched), and the signals
-- it matched (framed, for the suspension's 'sig:<i>' fields).
local function new_condition(mode, need, names_csv)
  local c = {mode = mode, need = need, got = 0, seen = {}, matched = {}}
  if names_csv ~= '' then c.names = csv_set(names_csv) end
  return c
end

-- Offers signal (name, framed record) to condition c; reports whether it
-- counted towards it. A satisfied condition takes no more.
local function condition_takes(c, name, record)
  if c.got >= c.need then return false end
  if c.names and not c.names[name] then return false end
  if c.mode == 'all' then
    if c.seen[name] then return false end
    c.seen[name] = true
  end
  c.got = c.got + 1
  c.matched[#c.matched + 1] = record
  return true
end

-- Makes suspended execution eid (f: HMGET of state, lane, created_at,
-- priority) waiting again with its interrupted attempt to resume: it joins
-- its lane's eligible set and, when that was empty, goes to the freshest
-- live offer (offers: the offers key, or nil) or is announced. Returns
-- 'active' when handed off, else 'waiting'.
local function resume_suspended(eid, tag, f, now, leases, timeouts, arrivals, offers)
  local lane = f[2]
  local eligible = 'ff:i:' .. tag .. ':' .. lane .. ':eligible'
  redis.call('HSET', exec_key(eid, 'core'), 'state', 'waiting', 'last_transition_at', now)
  redis.call('ZADD', eligible, eligible_score(f[3], f[4]), eid)
  if redis.call('ZCARD', eligible) ~= 1 then return 'waiting' end
  local o = offers and pop_offer(offers, now)
  if o then
    local hk = {[3] = eligible, [9] = offers, [10] = leases, [11] = '', [12] = timeouts}
    if hand_off_head(hk, o, eid, lane, tag, now, fmt(now)) then return 'active' end
    put_back(offers, o)
  end
  publish_arrival(arrivals, lane, eid)
  return 'waiting'
end

---------------------------------------------------------------------------
-- ff_hmac: seed or rotate one partition's waitpoint HMAC secret (the
-- client runs it on every partition).
-- KEYS: 1 sec
-- ARGV: 1 mode ('seed' | 'rotate'), 2 kid, 3 secret (hex, 32..256 digits),
--       4 grace_ms (rotate: how long the previous kid still verifies)
-- Returns, seed: ok('seeded') or ok('already_seeded', current_kid, same)
--   (same '1' when the current kid is kid with this secret; nothing is
--   overwritten). rotate: ok('rotated', previous_kid, old_kids_removed) or
--   ok('unchanged') (kid is current with this secret already).
-- Errors: invalid_input, rotation_conflict (kid is current with another
--   secret, or was used before).
redis.register_function('ff_hmac', function(keys, argv)
  local sec, mode, kid, secret = keys[1], argv[1], argv[2], argv[3]
  local tag = #keys == 1 and key_tag(sec, 'ff:sec:')
  if not tag or sec ~= 'ff:sec:' .. tag then return fail('invalid_input', 'key 1 is not a sec key') end
  local grace = uint(argv[4] or '0')
  if (mode ~= 'seed' and mode ~= 'rotate') or type(kid) ~= 'string' or #kid > 64
    or not string.find(kid, KID_PATTERN) or type(secret) ~= 'string' or #secret < 32 or #secret > 256
    or #secret % 2 ~= 0 or not string.find(secret, '^%x+$') or grace == nil then
    return fail('invalid_input', 'malformed secret arguments')
  end
  secret = string.lower(secret)
  local cur = redis.call('HGET', sec, 'kid')
  if mode == 'seed' then
    if cur then
      local same = cur == kid and redis.call('HGET', sec, 's:' .. kid) == secret
      return ok('already_seeded', cur, same and '1' or '0')
    end
    redis.call('HSET', sec, 'kid', kid, 's:' .. kid, secret)
    return ok('seeded')
  end
  local known = redis.call('HGET', sec, 's:' .. kid)
  if cur == kid and known == secret then return ok('unchanged') end
  if known then return fail('rotation_conflict', kid) end
  local now = now_ms()
  local removed = 0
  local all = redis.call('HGETALL', sec)
  for i = 1, #all, 2 do
    local old = string.match(all[i], '^x:(.+)$')
    if old and tonumber(all[i + 1]) <= now then
      redis.call('HDEL', sec, 'x:' .. old, 's:' .. old)
      removed = removed + 1
    end
  end
  local fields = {'kid', kid, 's:' .. kid, secret}
  if cur then append_all(fields, {'x:' .. cur, fmt(now + grace)}) end
  redis.call('HSET', sec, unpack(fields))
  return ok('rotated', cur or '', tostring(removed))
end)

---------------------------------------------------------------------------
-- ff_waitpoint: create a pending waitpoint for the lease holder's attempt,
-- before it suspends: its token can be handed out at once, and signals
-- delivered to it are kept (buffered) until a suspend activates it. It
-- expires, unused, after ttl_ms.
-- KEYS: 1 core, 2 sec, 3 wp_pending (W's key is derived from W)
-- ARGV: 1 eid, 2 lease_id, 3 epoch, 4 attempt_id, 5 W, 6 key (label),
--       7 ttl_ms
-- Returns ok(W, token, expires_at_ms).
-- Errors: the fence errors, invalid_input, waitpoint_exists,
--   hmac_secret_not_initialized.
local WAITPOINT_KEYS = {'core', 'sec', 'wp_pending'}
redis.register_function('ff_waitpoint', function(keys, argv)
  local eid, w, label, ttl = argv[1], argv[5], argv[6], uint(argv[7])
  local tag = id_tag(eid)
  if not tag then return fail('invalid_input', 'malformed execution id') end
  local bad = bad_keys(keys, WAITPOINT_KEYS, #WAITPOINT_KEYS, eid, tag)
  if bad then return bad end
  if id_tag(w) ~= tag or not is_name(label) or ttl == nil or ttl == 0 then
    return fail('invalid_input', 'malformed waitpoint arguments')
  end
  local now = now_ms()
  bad = check_fence(keys[1], argv[2], argv[3], argv[4], now)
  if bad then return bad end
  if redis.call('EXISTS', wp_key(w)) == 1 then return fail('waitpoint_exists', w) end
  local s = current_secret(keys[2])
  if not s then return fail('hmac_secret_not_initialized') end
  local exp = now + ttl
  redis.call('HSET', wp_key(w), 'eid', eid, 'state', 'pending', 'at', now, 'key', label, 'exp', exp)
  redis.call('PEXPIREAT', wp_key(w), exp + PENDING_GRACE)
  redis.call('ZREMRANGEBYSCORE', keys[3], '-inf', now)
  redis.call('ZADD', keys[3], exp, w)
  return ok(w, mint_token(s, w, eid, label, now), tostring(exp))
end)

---------------------------------------------------------------------------
-- ff_suspend: the lease holder suspends its attempt on waitpoints (new
-- ones, and pending ones it created earlier) until signals meet a resume
-- condition: any (one matching signal), all (each name once), count (n
-- matching signals); a signal matches when the condition names no name or
-- names its. Signals a pending waitpoint buffered are applied first: when
-- they meet the condition already, the suspension is recorded closed, the
-- lease is kept (the attempt goes on) and the status is
-- 'already_satisfied'. Otherwise the lease is released and the execution
-- is suspended until the condition holds or timeout_at passes (the
-- suspension scanner then applies on_timeout). A repeated call with the
-- same dedup key as the execution's last suspension returns that
-- suspension's reply and writes nothing (before any check: the lease it
-- released is gone by then).
-- KEYS: 1 core, 2 susp, 3 sec, 4 leases, 5 timeouts, 6 suspended,
--       7 susp_timeouts, 8 wp_pending
-- ARGV: 1 eid, 2 lease_id, 3 epoch, 4 attempt_id, 5 susp_id, 6 reason,
--       7 requested_by, 8 timeout_at_ms (0 = none), 9 on_timeout (fail |
--       cancel | expire | resume), 10 mode (any | all | count), 11 count
--       (mode count), 12 names (comma-separated, '' = any name), 13 dedup
--       key ('' = none), 14 n (waitpoints, 1..MAX_WAITPOINTS), then per
--       waitpoint: W, key (label), pending ('1': created by ff_waitpoint)
-- Returns ok(status, susp_id, n, then per waitpoint W, key, token), status
--   'suspended' or 'already_satisfied'.
-- Errors: the fence errors, invalid_input, waitpoint_exists(W),
--   waitpoint_not_found(W), waitpoint_not_pending(W),
--   waitpoint_expired(W), hmac_secret_not_initialized.
local SUSPEND_KEYS = {'core', 'susp', 'sec', 'leases', 'timeouts', 'suspended', 'susp_timeouts', 'wp_pending'}
local FENCE_SUSPEND = fence_with({'attempt_timeout', 'attempt_index'})
redis.register_function('ff_suspend', function(keys, argv)
  local eid, susp = argv[1], keys[2]
  local tag = id_tag(eid)
  if not tag then return fail('invalid_input', 'malformed execution id') end
  local bad = bad_keys(keys, SUSPEND_KEYS, #SUSPEND_KEYS, eid, tag)
  if bad then return bad end
  local timeout_at, count, n = uint(argv[8]), uint(argv[11]), uint(argv[14])
  local mode, names = argv[10], argv[12]
  if not is_name(argv[5]) or type(argv[6]) ~= 'string' or type(argv[7]) ~= 'string'
    or timeout_at == nil or not TIMEOUT_BEHAVIORS[argv[9]] or not MATCH_MODES[mode]
    or count == nil or count > MAX_COUNT or type(names) ~= 'string'
    or (argv[13] ~= '' and not is_name(argv[13])) or n == nil or n == 0 or n > MAX_WAITPOINTS
    or #argv ~= 14 + 3 * n then
    return fail('invalid_input', 'malformed suspend arguments')
  end
  local nnames = 0
  for tok in string.gmatch(names, '[^,]*') do
    if tok ~= '' then
      if not is_name(tok) then return fail('invalid_input', 'malformed signal name') end
      nnames = nnames + 1
    end
  end
  if nnames > MAX_CONDITION_NAMES then return fail('invalid_input', 'too many signal names') end
  local need = 1
  if mode == 'all' then
    need = 0
    for _ in pairs(csv_set(names)) do need = need + 1 end
    if need == 0 then return fail('invalid_input', 'mode all needs signal names') end
  elseif mode == 'count' then
    if count == 0 then return fail('invalid_input', 'mode count needs a count') end
    need = count
  end
  local wps, seen = {}, {}
  for i = 15, #argv, 3 do
    local w, label, pend = argv[i], argv[i + 1], argv[i + 2]
    if id_tag(w) ~= tag or seen[w] or not is_name(label) or (pend ~= '1' and pend ~= '0') then
      return fail('invalid_input', 'malformed waitpoint')
    end
    seen[w] = true
    wps[#wps + 1] = {w = w, label = label, pending = pend == '1'}
  end
  -- A repeat of a suspend that landed: its reply, nothing written.
  if argv[13] ~= '' then
    local d = redis.call('HMGET', susp, 'dedup', 'reply', 'id')
    if d[1] == argv[13] and d[2] then
      local r = {1, 'OK'}
      for tok in string.gmatch(d[2], '%S+') do r[#r + 1] = tok end
      return r
    end
  end
  local now = now_ms()
  local f
  bad, f = check_fence(keys[1], argv[2], argv[3], argv[4], now, nil, FENCE_SUSPEND)
  if bad then return bad end
  local c = new_condition(mode, need, names)
  for _, wp in ipairs(wps) do
    local k = wp_key(wp.w)
    if wp.pending then
      local v = redis.call('HMGET', k, 'eid', 'state', 'exp', 'key', 'at')
      if v[1] ~= eid then return fail('waitpoint_not_found', wp.w) end
      if v[2] ~= 'pending' then return fail('waitpoint_not_pending', wp.w) end
      if num(v[3]) <= now then return fail('waitpoint_expired', wp.w) end
      wp.label, wp.at = v[4], v[5]
    elseif redis.call('EXISTS', k) == 1 then
      return fail('waitpoint_exists', wp.w)
    end
  end
  local s = current_secret(keys[3])
  if not s then return fail('hmac_secret_not_initialized') end
  -- Every check passed: from here on, writes.
  for _, wp in ipairs(wps) do
    if wp.pending then
      for _, e in ipairs(redis.call('XRANGE', wp_key(wp.w) .. ':signals', '-', '+')) do
        local v = {}
        for j = 1, #e[2], 2 do v[e[2][j]] = e[2][j + 1] end
        condition_takes(c, v.name or '', frame({v.sig or '', v.name or '', v.payload or '',
          v.src or '', v.at or '', wp.w}))
      end
    end
  end
  local satisfied = c.got >= c.need
  local now_s = fmt(now)
  local wp_state = satisfied and 'closed' or 'active'
  local ids, reply = {}, {satisfied and 'already_satisfied' or 'suspended', argv[5], tostring(n)}
  for _, wp in ipairs(wps) do
    local k = wp_key(wp.w)
    if wp.pending then
      redis.call('HSET', k, 'state', wp_state)
      redis.call('PERSIST', k)
      redis.call('PERSIST', k .. ':signals')
      redis.call('ZREM', keys[8], wp.w)
    else
      wp.at = now_s
      redis.call('HSET', k, 'eid', eid, 'state', wp_state, 'at', now_s, 'key', wp.label)
    end
    ids[#ids + 1] = wp.w
    append_all(reply, {wp.w, wp.label, mint_token(s, wp.w, eid, wp.label, wp.at)})
  end
  local all_wps = redis.call('HGET', susp, 'all_wps')
  all_wps = (all_wps and (all_wps .. ' ') or '') .. table.concat(ids, ' ')
  redis.call('DEL', susp)
  local rec = {'id', argv[5], 'reason', argv[6], 'by', argv[7], 'at', now_s, 'timeout_at', timeout_at,
    'on_timeout', argv[9], 'mode', mode, 'need', need, 'names', names, 'got', c.got,
    'wps', table.concat(ids, ' '), 'attempt', f[FENCE_READ + 2] or '0', 'all_wps', all_wps,
    'state', satisfied and 'closed' or 'open', 'dedup', argv[13], 'reply', table.concat(reply, ' ')}
  if satisfied then append_all(rec, {'close_reason', 'already_satisfied', 'closed_at', now_s}) end
  for i, r in ipairs(c.matched) do append_all(rec, {'sig:' .. i, r}) end
  for name in pairs(c.seen) do append_all(rec, {'m:' .. name, '1'}) end
  redis.call('HSET', susp, unpack(rec))
  if satisfied then
    redis.call('HSET', keys[1], 'waited', '1')
  else
    redis.call('HSET', keys[1], unpack(release_lease(eid, keys[4], keys[5], f[FENCE_READ + 1],
      {'state', 'suspended', 'resume', '1', 'ended_by', argv[2], 'last_transition_at', now_s, 'waited', '1'})))
    redis.call('ZADD', keys[6], 0, eid)
    log_lease(f[8], eid, 'released', argv[2], argv[3], f[7], 'suspended')
    if timeout_at > 0 then redis.call('ZADD', keys[7], timeout_at, eid) end
  end
  return append_all({1, 'OK'}, reply)
end)

---------------------------------------------------------------------------
-- ff_signal: deliver a signal to the waitpoint a token names. The token
-- is verified before anything is written (a missing waitpoint, an unknown
-- or expired kid, a wrong mac: invalid_token). A pending waitpoint keeps
-- the signal (effect 'buffered') while its execution lives (once it ended:
-- waitpoint_closed); an active one applies it to its
-- suspension's condition: 'resumed' when it now holds (the execution is
-- waiting again, handed to a live offer of its lane when its eligible set
-- was empty, else announced), 'matched' when it counted, 'appended' when
-- it did not match. Every delivery is logged on the partition's signals
-- stream. A repeated dedup key returns {1,'DUPLICATE',first_signal_id}.
-- KEYS: 1 wp (of the token's W), 2 sec, 3 leases, 4 timeouts,
--       5 suspended, 6 susp_timeouts, 7 signals (delivery log), 8 arrivals
-- ARGV: 1 token, 2 signal_id, 3 name, 4 payload, 5 source, 6 dedup key
--       ('' = none), 7 dedup_ttl_ms, 8 offers ('global': ff:offers:<lane>,
--       one server; 'partition': ff:i:T:<lane>:offers, a cluster; 'none')
-- Returns ok(signal_id, effect, eid).
-- Errors: invalid_input, invalid_token, waitpoint_closed,
--   waitpoint_expired, signal_limit_exceeded(max).
local SIGNAL_KEYS = {'wp', 'sec', 'leases', 'timeouts', 'suspended', 'susp_timeouts', 'signals', 'arrivals'}
local OFFER_MODES = {global = true, partition = true, none = true}
redis.register_function('ff_signal', function(keys, argv)
  local token, sig, name, payload, src, dkey = argv[1], argv[2], argv[3], argv[4], argv[5], argv[6]
  local w, kid, mac
  if type(token) == 'string' and #token <= 256 then
    w, kid, mac = string.match(token, '^([^.]+)%.([%w_%-]+)%.(%x+)$')
  end
  local tag = id_tag(w)
  if not tag then return fail('invalid_token') end
  if keys[1] ~= wp_key(w) then return fail('invalid_input', 'key 1 is not the token\'s waitpoint') end
  local bad = bad_keys(keys, SIGNAL_KEYS, #SIGNAL_KEYS, nil, tag)
  if bad then return bad end
  local ttl = uint(argv[7])
  if not is_name(sig) or not is_name(name) or type(payload) ~= 'string' or type(src) ~= 'string'
    or (dkey ~= '' and not is_name(dkey)) or ttl == nil or not OFFER_MODES[argv[8]] then
    return fail('invalid_input', 'malformed signal arguments')
  end
  local now = now_ms()
  local s = redis.call('HMGET', keys[2], 'kid', 's:' .. kid, 'x:' .. kid)
  local v = redis.call('HMGET', keys[1], 'eid', 'state', 'at', 'key', 'exp', 'n')
  if not s[2] or not v[1] or id_tag(v[1]) ~= tag or (s[1] ~= kid and num(s[3]) <= now)
    or not same_mac(wp_mac(s[2], w, v[1], v[4] or '', v[3] or ''), mac) then
    return fail('invalid_token')
  end
  local eid, state = v[1], v[2]
  -- A repeat is recognised first: the signal it repeats may have closed
  -- the waitpoint.
  local dk = wp_key(w) .. ':dedup:' .. dkey
  if dkey ~= '' then
    local first = redis.call('GET', dk)
    if first then return {1, 'DUPLICATE', first} end
  end
  if state == 'closed' then return fail('waitpoint_closed') end
  if state == 'pending' and num(v[5]) <= now then return fail('waitpoint_expired') end
  -- A pending waitpoint closes with its execution: no suspend can name it
  -- any more (one more read, on this path only).
  if state == 'pending' and not LIVE_STATES[redis.call('HGET', exec_key(eid, 'core'), 'state')] then
    return fail('waitpoint_closed')
  end
  if num(v[6]) >= MAX_SIGNALS then return fail('signal_limit_exceeded', tostring(MAX_SIGNALS)) end
  local now_s = fmt(now)
  local stream = wp_key(w) .. ':signals'
  redis.call('HINCRBY', keys[1], 'n', 1)
  if dkey ~= '' then redis.call('SET', dk, sig, 'PX', math.max(ttl, 1)) end
  local effect = 'buffered'
  local function keep()
    redis.call('XADD', stream, '*', 'sig', sig, 'name', name, 'payload', payload, 'src', src, 'at', now_s)
  end
  if state == 'pending' then
    keep()
    redis.call('PEXPIREAT', stream, num(v[5]) + PENDING_GRACE)
  else
    effect = 'appended'
    local susp = exec_key(eid, 'susp')
    local c = redis.call('HMGET', susp, 'state', 'mode', 'need', 'names', 'got', 'wps')
    if c[1] == 'open' then
      local cond = new_condition(c[2], num(c[3]), c[4] or '')
      cond.got = num(c[5])
      if cond.mode == 'all' and redis.call('HEXISTS', susp, 'm:' .. name) == 1 then cond.seen[name] = true end
      if condition_takes(cond, name, frame({sig, name, payload, src, now_s, w})) then
        effect = 'matched'
        local rec = {'got', cond.got, 'sig:' .. cond.got, cond.matched[1]}
        if cond.mode == 'all' then append_all(rec, {'m:' .. name, '1'}) end
        redis.call('HSET', susp, unpack(rec))
        local f = redis.call('HMGET', exec_key(eid, 'core'), 'state', 'lane', 'created_at', 'priority')
        if cond.got >= cond.need and f[1] == 'suspended' then
          close_suspension(eid, tag, 'satisfied', now_s, c[6] or '')
          local offers
          if argv[8] == 'global' then offers = 'ff:offers:' .. f[2]
          elseif argv[8] == 'partition' then offers = 'ff:i:' .. tag .. ':' .. f[2] .. ':offers' end
          resume_suspended(eid, tag, f, now, keys[3], keys[4], keys[8], offers)
          effect = 'resumed'
        end
      end
    end
    -- A signal that counted is kept in the suspension (sig:<i>); one that
    -- did not, in the waitpoint's stream.
    if effect == 'appended' then keep() end
  end
  redis.call('XADD', keys[7], 'MAXLEN', '~', DELIVERY_LOG, '*', 'eid', eid, 'wp', w, 'sig', sig,
    'name', name, 'effect', effect, 'at', now_s)
  return ok(sig, effect, eid)
end)

---------------------------------------------------------------------------
-- ff_suspension_timeout: the suspension scanner's action on a suspended
-- execution whose timeout passed: its suspension closes (reason
-- 'timeout') and on_timeout applies: fail, cancel or expire end the
-- execution (terminal failed, cancelled or expired; failure category
-- 'suspension_timeout'), resume makes it waiting again to resume its
-- attempt without the signals (announced like a create).
-- KEYS: 1 core, 2 susp, 3 susp_timeouts, 4 deadlines, 5 arrivals
-- ARGV: 1 eid
-- Returns ok(state_after), ok('not_due') or ok('stale') (the index entry
-- is removed).
local SUSP_TIMEOUT_KEYS = {'core', 'susp', 'susp_timeouts', 'deadlines', 'arrivals'}
redis.register_function('ff_suspension_timeout', function(keys, argv)
  local eid = argv[1]
  local tag = id_tag(eid)
  if not tag then return fail('invalid_input', 'malformed execution id') end
  local bad = bad_keys(keys, SUSP_TIMEOUT_KEYS, #SUSP_TIMEOUT_KEYS, eid, tag)
  if bad then return bad end
  local f = redis.call('HMGET', keys[1], 'state', 'lane', 'created_at', 'priority', 'deadline_at', 'flow')
  local s = redis.call('HMGET', keys[2], 'state', 'timeout_at', 'on_timeout')
  if f[1] ~= 'suspended' or s[1] ~= 'open' or num(s[2]) == 0 then
    redis.call('ZREM', keys[3], eid)
    return ok('stale')
  end
  local now = now_ms()
  if num(s[2]) > now then return ok('not_due') end
  local now_s = fmt(now)
  close_suspension(eid, tag, 'timeout', now_s)
  local after = TIMEOUT_BEHAVIORS[s[3]] or 'failed'
  if after == 'waiting' then
    resume_suspended(eid, tag, f, now, nil, nil, keys[5], nil)
    return ok('waiting')
  end
  leave_deadlines(eid, keys[4], f[5])
  local kv = {'state', after, 'ended_by', 'engine', 'completed_at', now_s, 'last_transition_at', now_s,
    'resume', '0'}
  if after == 'cancelled' then
    append_all(kv, {'cancel_reason', 'suspension timed out', 'cancelled_by', 'engine'})
  else
    append_all(kv, {'failure_reason', 'suspension timed out', 'failure_category', 'suspension_timeout'})
  end
  redis.call('HSET', keys[1], unpack(kv))
  redis.call('ZADD', 'ff:i:' .. tag .. ':' .. f[2] .. ':terminal', now, eid)
  if f[6] then flow_member_ended(eid, f[6], after, now) end
  return ok(after)
end)

---------------------------------------------------------------------------
-- Attempt streams: output a running attempt publishes (frames), read and
-- tailed by anyone. One stream per attempt, ff:e:E:stream:<i> (a STREAM of
-- frames: fields t (type), p (payload), c (correlation id, when given)),
-- with ff:e:E:stream:<i>:summary (HASH: doc, the summary document the
-- summary frames merge into, and version). Only the lease holder appends
-- (fenced): once the attempt ends no append can pass the fence, so a
-- stream is closed by the attempt's end itself, with nothing to write
-- then (readers derive closed-at and reason from the execution record). The
-- first append of an execution marks it (streams = '1') so retention
-- deletes its streams; a job that never appends pays nothing.

local MAX_FRAMES_PER_APPEND = 256
local STREAM_MODES = {durable = true, live = true, summary = true}

---------------------------------------------------------------------------
-- ff_append: append frames to the lease holder's attempt stream.
-- KEYS: 1 core, 2 stream (ff:e:E:stream:<attempt_index>)
-- ARGV: 1 eid, 2 lease_id, 3 epoch, 4 attempt_id, 5 attempt_index,
--       6 mode ('durable' | 'live' | 'summary'), 7 maxlen (frames kept,
--       about: XADD MAXLEN ~), 8 ttl_ms (live: the stream's expiry, renewed
--       by every append; else 0), 9 summary document (mode summary: the
--       document after this call's patches, merged by the caller, who
--       alone writes it), 10 expected summary version (mode summary), 11 n
--       (1..MAX_FRAMES_PER_APPEND), 12 ids ('1': reply every entry id;
--       '0': the last one only), then n (type, payload, correlation id)
-- Frame types and correlation ids are stored as given (they name no key:
-- the client checks them).
-- Returns ok(summary_version, then the n entry ids, or the last one).
-- Commands: TIME and the fence's HMGET, then the n XADDs (the last trims
-- with MAXLEN ~); an execution's first append adds an HSET, mode summary
-- an HGET and an HSET, mode live a PEXPIRE.
-- Errors: the fence errors (an ended attempt's stream is closed: appends
--   fail its fence), invalid_input, summary_conflict(version) (the stored
--   version is not the expected one: nothing written).
local APPEND_KEYS = {'core', 'stream'}
local FENCE_APPEND = fence_with({'attempt_index', 'streams'})
redis.register_function('ff_append', function(keys, argv)
  local eid, idx = argv[1], uint(argv[5])
  local tag = id_tag(eid)
  if not tag then return fail('invalid_input', 'malformed execution id') end
  if #keys ~= 2 or keys[1] ~= exec_key(eid, 'core') or idx == nil
    or keys[2] ~= exec_key(eid, 'stream:' .. idx) then
    return fail('invalid_input', 'keys are not the attempt\'s')
  end
  local mode, maxlen, ttl, n, all_ids = argv[6], uint(argv[7]), uint(argv[8]), uint(argv[11]), argv[12]
  if not STREAM_MODES[mode] or maxlen == nil or maxlen == 0 or ttl == nil or n == nil or n == 0
    or n > MAX_FRAMES_PER_APPEND or #argv ~= 12 + 3 * n or (mode == 'summary' and uint(argv[10]) == nil)
    or (mode == 'live' and ttl == 0) or (all_ids ~= '1' and all_ids ~= '0') then
    return fail('invalid_input', 'malformed append arguments')
  end
  local now = now_ms()
  local bad, f = check_fence(keys[1], argv[2], argv[3], argv[4], now, nil, FENCE_APPEND)
  if bad then return bad end
  if f[FENCE_READ + 1] ~= argv[5] and not (argv[5] == '0' and not f[FENCE_READ + 1]) then
    return fail('stale_lease')
  end
  local version = '0'
  if mode == 'summary' then
    local skey = keys[2] .. ':summary'
    local cur = redis.call('HGET', skey, 'version') or '0'
    if cur ~= argv[10] then return fail('summary_conflict', cur) end
    version = tostring(tonumber(cur) + 1)
    redis.call('HSET', skey, 'doc', argv[9], 'version', version)
  end
  if not f[FENCE_READ + 2] then redis.call('HSET', keys[1], 'streams', '1') end
  local reply = ok(version)
  local stream, id, last = keys[2], nil, #argv - 2
  -- Every frame but the last is added untrimmed; the last trims with XADD's
  -- own MAXLEN ~ (a call of one frame is that last one): the stream ends
  -- the call at about maxlen entries, for one trim check per call and no
  -- command beside the n XADDs.
  for i = 13, last - 3, 3 do
    if argv[i + 2] == '' then
      id = redis.call('XADD', stream, '*', 't', argv[i], 'p', argv[i + 1])
    else
      id = redis.call('XADD', stream, '*', 't', argv[i], 'p', argv[i + 1], 'c', argv[i + 2])
    end
    if all_ids == '1' then reply[#reply + 1] = id end
  end
  if argv[last + 2] == '' then
    id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 't', argv[last], 'p', argv[last + 1])
  else
    id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 't', argv[last], 'p', argv[last + 1], 'c', argv[last + 2])
  end
  reply[#reply + 1] = id
  if mode == 'live' then redis.call('PEXPIRE', keys[2], ttl) end
  return reply
end)

---------------------------------------------------------------------------
-- ff_own: partition ownership leases for engine processes that split the
-- scanning work. acquire takes a free (or own) partition, renew extends an
-- owned one, release gives it up.
-- KEYS: 1 own (ff:own:{p:N})
-- ARGV: 1 owner, 2 ttl_ms, 3 mode ('acquire' | 'renew' | 'release')
-- Returns ok('owned', expires_at), ok('taken', current_owner) or ok('released').
redis.register_function('ff_own', function(keys, argv)
  local owner, ttl, mode = argv[1], uint(argv[2]), argv[3]
  local tag = #keys == 1 and key_tag(keys[1], 'ff:own:')
  if not tag or keys[1] ~= 'ff:own:' .. tag then return fail('invalid_input', 'key 1 is not an own key') end
  if owner == '' or ttl == nil or ttl == 0 then return fail('invalid_input', 'malformed ownership') end
  local cur = redis.call('GET', keys[1])
  if mode == 'release' then
    if cur == owner then redis.call('DEL', keys[1]) end
    return ok('released')
  end
  if cur and cur ~= owner then return ok('taken', cur) end
  if not cur and mode == 'renew' then return ok('taken', '') end
  redis.call('SET', keys[1], owner, 'PX', ttl)
  return ok('owned', tostring(now_ms() + ttl))
end)

---------------------------------------------------------------------------
-- Flows: DAGs of executions joined by dependency edges.
--
-- A flow F (id "{p:N}:<uuid>", shaped like an execution id) and all its
-- members live on one partition: a member's id is minted with its flow's
-- tag, so every flow call is one FCALL on one slot, and the keys below are
-- built here from the flow id once it is checked. Keys (T the tag):
--   ff:f:F:core     HASH   state (open | completed | failed | cancelled),
--                          rev (graph revision: +1 per staged edge), nodes,
--                          edges, done (members ended), bad (members that
--                          ended other than completed), created_at,
--                          ended_at, handoff (where a ready child's offers
--                          are: 'global' ff:offers:<lane>, 'partition'
--                          ff:i:T:<lane>:offers, '' none: announced only),
--                          cancel_policy, cancel_reason
--   ff:f:F:members  SET    member execution ids
--   ff:f:F:edges    HASH   edge id -> "<upstream> <downstream> <state>
--                          <staged_at>" (state staged | applied)
--   ff:f:F:outcome  STRING the flow's end state, written once, when it
--                          ends (a waiter tracks this key alone, so it is
--                          woken once, not per member)
--   ff:f:F:cancels  SET    members a cancel still has to cancel
--   ff:i:T:flows    ZSET   the partition's flows (score 0: ordered by id)
--   ff:i:T:flow_cancels ZSET flows with cancels pending (score: since)
--   ff:i:T:dep_blocked  ZSET members waiting for dependencies (score: since)
-- Member core fields: flow; dep_n (applied inbound edges); dep_ok, dep_bad
-- (how many of those upstreams ended completed / otherwise); dep_policy
-- ('' all_of, 'any' any_of, 'q:<k>' quorum of k); dep_staged (inbound
-- edges staged, applied or not); dep_wait ('1': a running member waits
-- for its inbound dependencies to settle, ff_flow_wait_children); in
-- (upstream ids, space-separated); out ("<child> <edge>" pairs);
-- flow_counted ('1': the member's end counted already and a replay runs
-- it again, ff_replay; its next end moves nothing in the flow).
-- A member waiting for its dependencies is in state waiting_children.
--
-- Resolution is pushed: the call that ends a member (complete, fail,
-- cancel, expire, a suspension timeout, a reclaim at the cap) resolves its
-- outgoing edges in the same call (flow_member_ended): each child counts
-- the outcome; a child whose policy is met runs at once, handed to a live
-- offer or made waiting and announced like a create (run_child; a member
-- waiting for its children resumes, resume_suspended);
-- one whose policy can no longer be met is skipped (terminal state
-- skipped), which resolves its own children in turn. A policy fires once:
-- the fired child is no longer waiting_children, and later outcomes only
-- count. The flow ends when all its members have ended: completed when
-- every one completed, failed otherwise (cancelled by ff_flow_cancel).
-- A member replayed after its end runs alone: its dependants are not run
-- again, and the flow does not count it twice (flow_counted).
-- Once the flow is cancelled, the members its cancel still has to cancel
-- (its cancels set, and the batch being cancelled) are left to it: an
-- upstream's end neither runs nor skips them, so each ends cancelled and
-- is counted as the cancel's.

local MAX_FLOW_ITEMS = 1000  -- members plus edges one ff_flow_submit carries
local MAX_FLOW_NODES = 10000 -- members of one flow
local FLOW_CANCEL_INLINE = 100 -- members a cancel call cancels at most

local function flow_key(fid, suffix) return 'ff:f:' .. fid .. ':' .. suffix end

-- Checks a dependency policy: '', 'any' or 'q:<k>' with k >= 1.
local function good_policy(p)
  if p == '' or p == 'any' then return true end
  local k = string.match(p, '^q:(%d+)$')
  return k ~= nil and #k <= 6 and tonumber(k) >= 1
end

-- How many of n applied inbound upstreams must complete to run the member.
local function dep_need(policy, n)
  if policy == 'any' then return 1 end
  local k = policy and string.match(policy, '^q:(%d+)$')
  if k then return tonumber(k) end
  return n
end

-- The offers key a ready child of lane goes to (nil: announce only).
local function flow_offers(handoff, tag, lane)
  if handoff == 'global' then return 'ff:offers:' .. lane end
  if handoff == 'partition' then return 'ff:i:' .. tag .. ':' .. lane .. ':offers' end
  return nil
end

-- What a member's resolution reads of it, in one HMGET: its dependency
-- fields (1..12), then what handing it to an offer needs (CLAIM_FIELDS
-- less state, lane and flow, read above: 13..), so a child that runs is
-- read once.
local CHILD_FIELDS = {'state', 'lane', 'created_at', 'priority', 'dep_n', 'dep_ok', 'dep_bad',
  'dep_policy', 'dep_wait', 'flow', 'deadline_at', 'dep_staged'}
local CHILD_CLAIM_AT = #CHILD_FIELDS
append_all(CHILD_FIELDS, {'blocked', 'resume', 'total_attempts', 'lease_epoch', 'pending_type',
  'attempt_index', 'attempt_id', 'attempt_timeout', 'started_at', 'caps', 'lease_log'})
local CHILD_BLOCKED = CHILD_CLAIM_AT + 1

-- The claim fields of member child read as CHILD_FIELDS (c), keyed by
-- name with claim_fields' defaults, as waiting (run_child's caller makes
-- it so).
local function child_claim_fields(c)
  local f = {state = 'waiting', lane = c[2], flow = c[10]}
  for i = CHILD_CLAIM_AT + 1, #CHILD_FIELDS do
    if c[i] then f[CHILD_FIELDS[i]] = c[i] end
  end
  f.blocked, f.resume = f.blocked or '', f.resume or '0'
  f.total_attempts, f.pending_type = f.total_attempts or '0', f.pending_type or 'initial'
  f.attempt_index, f.attempt_id = f.attempt_index or '0', f.attempt_id or ''
  f.epoch = f.lease_epoch or '0'
  return f
end

-- Takes, for a child of lane's offers key okey, the freshest offer: the
-- last one the ending item made (own, see ff_complete_batch: posted in
-- this call, so none is fresher, and its worker is alive), else one off
-- the key (pop_offer). Returns it and whether it was the item's (an
-- offer of the item's is taken off own.z only once spent: spend_own).
-- An offer made under a quota is never taken here (a child is not
-- admitted): pop_offer leaves those, and so does this.
local function child_offer(okey, own, now)
  if own and own.key == okey and #own.z >= own.lo then
    local o = offer_of(own.z[#own.z], own.z[#own.z - 1])
    if o and not o.quota then return o, true end
  end
  return pop_offer(okey, now), false
end

local function spend_own(own)
  own.z[#own.z] = nil
  own.z[#own.z] = nil
end

-- Runs member child (c: its CHILD_FIELDS; kv: core fields to write with
-- it, its count) whose dependencies are met, as a create of it would:
-- when its lane's eligible set on the partition is empty and an offer
-- is live (handoff's offers key; own: see child_offer), it goes from
-- waiting_children straight to that offer's worker, active (one HSET, no
-- pass through the eligible set); otherwise it becomes waiting, joins the
-- eligible set and, when that was empty, is announced. An offer that
-- cannot take it (its worker lacks a capability; the child is blocked
-- or a claim grant for it is out) goes back, as in hand_off_head.
-- A child handed to the ending item's own offer is not pushed when the
-- call returns such hand-offs (own.inline set): its hand-off message
-- (framed, as the push's) goes into own.inline, for the call's reply.
-- Inner commands: ZCARD, then handed off: [ZPOPMAX], EXISTS grant, HSET,
-- ZADD leases (+ timeouts), HGETALL ctx, the push (RPUSH [+ PEXPIRE], or
-- SPUBLISH; none to an own offer); else HSET, ZADD eligible (+ SPUBLISH
-- when it was empty).
local function run_child(child, c, kv, tag, now, handoff, own)
  local lane, core = c[2], exec_key(child, 'core')
  local pre = 'ff:i:' .. tag .. ':'
  local eligible = pre .. lane .. ':eligible'
  local empty = redis.call('ZCARD', eligible) == 0
  local okey = empty and flow_offers(handoff, tag, lane)
  if okey then
    local o, mine = child_offer(okey, own, now)
    if o then
      local f = child_claim_fields(c)
      if f.blocked == '' and missing_caps(f.caps, o.caps) == ''
        and redis.call('EXISTS', exec_key(child, 'grant')) == 0 then
        if mine then spend_own(own) end
        local lease = take_lease(core, child, nil, pre .. 'leases', '', pre .. 'timeouts', f,
          o.worker_id, o.wiid, o.lease_id, o.attempt_id, tonumber(o.ttl), f.resume == '1', now, kv)
        local msg = append_all(append_all({o.wiid, child, o.ttl}, lease),
          redis.call('HGETALL', exec_key(child, 'ctx')))
        if mine and own.inline then
          -- The completing worker reads it in this call's reply (see
          -- ff_complete_batch): no push, no inbox read.
          own.inline[#own.inline + 1] = frame(msg)
        else
          push_to_inbox(o, msg, okey)
        end
        return
      end
      if not mine then put_back(okey, o) end
    end
  end
  append_all(kv, {'state', 'waiting', 'last_transition_at', now})
  redis.call('HSET', core, unpack(kv))
  redis.call('ZADD', eligible, eligible_score(c[3], c[4]), child)
  if empty then publish_arrival('ff:arrivals:' .. tag, lane, child) end
end

-- Runs or skips member child (c: its CHILD_FIELDS, n_ok and n_bad its
-- counts now; kv: core fields still to write, its new count, or nil)
-- when it waits for its dependencies and they decide it: runs it when
-- its policy is met (all settled, for a member waiting for its children:
-- it resumes), skips it when the policy can no longer be met. kv rides
-- on the write that runs or skips it, or goes alone. Returns true when
-- it skipped it (the caller resolves the child's own edges). own: see
-- child_offer.
local function settle_child(child, c, n_ok, n_bad, tag, now, handoff, kv, own)
  local run, skip
  if c[1] == 'waiting_children' then
    local n = num(c[5])
    if c[9] == '1' then
      run = n_ok + n_bad >= n
    else
      -- An any_of or quorum member is skipped only when its upstreams,
      -- staged ones included (an edge staged now may be applied later),
      -- can no longer bring it to its K; all_of needs every applied one.
      local need, pool = dep_need(c[8], n), n
      if c[8] and c[8] ~= '' then pool = math.max(n, num(c[12])) end
      run, skip = n_ok >= need, pool - n_bad < need
    end
  end
  local pre = 'ff:i:' .. tag .. ':'
  if run and c[9] ~= '1' then
    redis.call('ZREM', pre .. 'dep_blocked', child)
    run_child(child, c, kv or {}, tag, now, handoff, own)
    return false
  end
  if kv and not skip then redis.call('HSET', exec_key(child, 'core'), unpack(kv)) end
  if run then
    redis.call('ZREM', pre .. 'dep_blocked', child)
    redis.call('HDEL', exec_key(child, 'core'), 'dep_wait')
    resume_suspended(child, tag, c, now, pre .. 'leases', pre .. 'timeouts', 'ff:arrivals:' .. tag,
      flow_offers(handoff, tag, c[2]))
    return false
  end
  if not skip then return false end
  redis.call('ZREM', pre .. 'dep_blocked', child)
  leave_deadlines(child, pre .. 'deadlines', c[11])
  redis.call('HSET', exec_key(child, 'core'), 'state', 'skipped', 'ended_by', 'engine',
    'failure_reason', 'dependencies failed', 'failure_category', 'dependency',
    'completed_at', now, 'last_transition_at', now, unpack(kv or {}))
  redis.call('ZADD', pre .. c[2] .. ':terminal', now, child)
  return true
end

-- Counts one upstream's outcome (ok: it completed) on member child of
-- flow fid and settles it; true when the child was skipped. own: see
-- child_offer.
local function resolve_child(child, fid, tag, ok_, now, handoff, own)
  local c = redis.call('HMGET', exec_key(child, 'core'), unpack(CHILD_FIELDS))
  if c[10] ~= fid then return false end
  local n_ok, n_bad = num(c[6]), num(c[7])
  local kv
  if ok_ then
    n_ok = n_ok + 1
    kv = {'dep_ok', tostring(n_ok)}
  else
    n_bad = n_bad + 1
    kv = {'dep_bad', tostring(n_bad)}
  end
  return settle_child(child, c, n_ok, n_bad, tag, now, handoff, kv, own)
end

-- Member eid of flow fid ended with outcome (its terminal state): its
-- children count it, skipped children resolve theirs in turn (a work
-- list, not recursion), and the flow's counts move; the flow ends when
-- every member has. own (optional): the offers eid's completion makes in
-- this call, which its ready children take first (see child_offer).
-- spare (optional, a cancel's): members being cancelled in this call. A
-- member whose end counted already (flow_counted: a replay ran it again)
-- moves nothing. In a cancelled flow, a child its cancel still has to
-- cancel (in spare, or in the cancels set) is left to it.
-- Inner commands: HMGET out, flow_counted per ended member (the first
-- before the flow's), HMGET of the flow, per child an HMGET and an HSET
-- that counts it, or instead what running (run_child, whose HSET carries
-- the count) or skipping it writes (in a cancelled flow, first a
-- SISMEMBER); HSET of the flow (+ SET outcome at its end).
flow_member_ended = function(eid, fid, outcome, now, own, spare)
  local tag = id_tag(fid)
  if not tag or tag ~= id_tag(eid) then return end -- another slot's: never touched
  local first = redis.call('HMGET', exec_key(eid, 'core'), 'out', 'flow_counted')
  if first[2] then return end -- a replay's end: counted at the first
  local fcore = flow_key(fid, 'core')
  -- Nothing below writes these fields but the final HSET: one read.
  local v = redis.call('HMGET', fcore, 'state', 'nodes', 'done', 'bad', 'handoff')
  if not v[1] then return end
  local handoff = v[5] or ''
  local cancels = v[1] == 'cancelled' and flow_key(fid, 'cancels')
  local work, i, done, bad = {eid, outcome}, 1, 0, 0
  while i < #work do
    local e, oc = work[i], work[i + 1]
    local m = first
    if i > 1 then m = redis.call('HMGET', exec_key(e, 'core'), 'out', 'flow_counted') end
    i = i + 2
    if not m[2] then
      done = done + 1
      if oc ~= 'completed' then bad = bad + 1 end
      for child in string.gmatch(m[1] or '', '(%S+) %S+') do
        local left = cancels and ((spare and spare[child]) or redis.call('SISMEMBER', cancels, child) == 1)
        if not left and resolve_child(child, fid, tag, oc == 'completed', now, handoff, own) then
          work[#work + 1], work[#work + 2] = child, 'skipped'
        end
      end
    end
  end
  if done == 0 then return end
  local d, b = num(v[3]) + done, num(v[4]) + bad
  local kv = {'done', d, 'bad', b}
  if v[1] == 'open' and d >= num(v[2]) then
    local state = b == 0 and 'completed' or 'failed'
    append_all(kv, {'state', state, 'ended_at', now})
    redis.call('SET', flow_key(fid, 'outcome'), state)
  end
  redis.call('HSET', fcore, unpack(kv))
end

-- Reports the tag of flow id fid when keys[i] is its key named suffix.
local function flow_keyed(keys, i, fid, suffix)
  local tag = id_tag(fid)
  return tag and keys[i] == flow_key(fid, suffix) and tag
end

---------------------------------------------------------------------------
-- ff_flow_submit: create a flow with all its members and edges at once
-- (idempotent: a flow that exists is left as it is). Members with inbound
-- edges start waiting_children; the others start as a create would
-- (handed to a live offer, announced, or delayed).
-- KEYS: 1 deadlines, 2 all, 3 arrivals, 4 leases, 5 timeouts (the flow's
--       partition), 6 flow core, then zero or more offers keys (as
--       ff_create_batch's)
-- ARGV: 1 fid, 2 handoff ('global' | 'partition' | ''), 3 n members,
--       4 m edges (n + m <= MAX_FLOW_ITEMS), then per member: its
--       dependency policy ('' | 'any' | 'q:<k>') and ff_create's ARGV
--       (its id in the flow's partition, chosen by the caller); then per
--       edge: edge id, upstream member's index, downstream member's index
--       (1-based, in the order above)
-- Returns ok('created', then per member its state), or ok('exists',
--   state, lanes...) when the flow exists (nothing written; lanes: those
--   of the spec's members that are the flow's, v38). Errors: invalid_input
--   (malformed, a self edge, an edge id twice, a quorum above its
--   edges), cycle_detected, execution_id_in_use(eid). All before a write.
-- Inner commands: HGET flow state (exists: + an HMGET per member until
--   each lane of theirs is found), TIME, EXISTS per member, HSET flow, ZADD flows,
--   SADD members, HSET edges, then per member its create (see
--   ff_create_batch), one HSET per member and ZADD dep_blocked per child.
local FLOW_SUBMIT_KEYS = {'deadlines', 'all', 'arrivals', 'leases', 'timeouts', open = true}
redis.register_function('ff_flow_submit', function(keys, argv)
  local bad, tag = bad_partition_call(keys, FLOW_SUBMIT_KEYS, 5)
  if bad then return bad end
  local fid, handoff, n, m = argv[1], argv[2], uint(argv[3]), uint(argv[4])
  if flow_keyed(keys, 6, fid, 'core') ~= tag then return fail('invalid_input', 'key 6 is not the flow of this partition') end
  if (handoff ~= 'global' and handoff ~= 'partition' and handoff ~= '') or n == nil or n == 0 or m == nil
    or n + m > MAX_FLOW_ITEMS then
    return fail('invalid_input', 'malformed flow arguments')
  end
  local offers, scopes = {}, {}
  for i = 7, #keys do
    local scope, otag = offers_scope(keys[i])
    local lane = scope == 'global' and string.sub(keys[i], #OFFERS_PRE + 1) or (scope and lane_in(keys[i], otag, 'offers'))
    if not lane or (scope == 'partition' and otag ~= tag) then
      return fail('invalid_input', 'key ' .. i .. ' is not an offers key of the flow')
    end
    offers[lane], scopes[keys[i]] = keys[i], {scope, otag}
  end
  local items, o, seen = {}, 4, {}
  for i = 1, n do
    local policy = argv[o + 1]
    local c = policy and good_policy(policy) and create_args(argv, o + 1)
    if not c or id_tag(c.eid) ~= tag or not is_name(c.lane) or seen[c.eid] then
      return fail('invalid_input', 'malformed member ' .. i)
    end
    seen[c.eid] = true
    c.flow, c.policy, c.deps, c.ins, c.outs, c.up = fid, policy, 0, {}, {}, {}
    items[i], o = c, c.last
  end
  if o + 3 * m ~= #argv then return fail('invalid_input', 'malformed flow arguments') end
  local edge_ids, edge_kv = {}, {}
  for j = 1, m do
    local id, up, down = argv[o + 1], uint(argv[o + 2]), uint(argv[o + 3])
    o = o + 3
    if not is_name(id) or edge_ids[id] or not up or not down or up < 1 or up > n or down < 1
      or down > n or up == down then
      return fail('invalid_input', 'malformed edge ' .. j)
    end
    edge_ids[id] = true
    local u, d = items[up], items[down]
    d.deps = d.deps + 1
    d.ins[#d.ins + 1] = u.eid
    u.up[#u.up + 1] = down
    u.outs[#u.outs + 1] = d.eid .. ' ' .. id
    edge_kv[#edge_kv + 1], edge_kv[#edge_kv + 2] = id, u.eid .. ' ' .. d.eid .. ' applied '
  end
  -- Kahn's algorithm: every member is reached once its upstreams are,
  -- unless a cycle holds some back.
  local indeg, queue, reached = {}, {}, 0
  for i, c in ipairs(items) do
    indeg[i] = c.deps
    if c.deps == 0 then queue[#queue + 1] = i end
    if c.policy ~= '' and (c.deps == 0 or dep_need(c.policy, c.deps) > c.deps) then
      return fail('invalid_input', 'member ' .. i .. ': a policy needs that many dependencies')
    end
  end
  while #queue > 0 do
    local i = table.remove(queue)
    reached = reached + 1
    for _, d in ipairs(items[i].up) do
      indeg[d] = indeg[d] - 1
      if indeg[d] == 0 then queue[#queue + 1] = d end
    end
  end
  if reached < n then return fail('cycle_detected') end
  local fcore = keys[6]
  local state = redis.call('HGET', fcore, 'state')
  if state then
    -- The lanes of the spec's members that are this flow's: the caller
    -- registers them (a submit retried after its lanes failed to register
    -- gets here), and no lane a different spec names.
    local r, seen = ok('exists', state), {}
    for _, c in ipairs(items) do
      if not seen[c.lane] then
        local e = redis.call('HMGET', exec_key(c.eid, 'core'), 'flow', 'lane')
        if e[1] == fid and e[2] == c.lane then
          seen[c.lane] = true
          r[#r + 1] = c.lane
        end
      end
    end
    return r
  end
  for _, c in ipairs(items) do
    if redis.call('EXISTS', exec_key(c.eid, 'core')) == 1 then return fail('execution_id_in_use', c.eid) end
  end
  local now = now_ms()
  local now_s = fmt(now)
  for j = 2, #edge_kv, 2 do edge_kv[j] = edge_kv[j] .. now_s end
  redis.call('HSET', fcore, 'state', 'open', 'rev', m, 'nodes', n, 'edges', m, 'created_at', now_s,
    'handoff', handoff)
  redis.call('ZADD', 'ff:i:' .. tag .. ':flows', 0, fid)
  local ids = {}
  for i, c in ipairs(items) do ids[i] = c.eid end
  redis.call('SADD', flow_key(fid, 'members'), unpack(ids))
  if m > 0 then redis.call('HSET', flow_key(fid, 'edges'), unpack(edge_kv)) end
  local noop, pre = 'ff:noop:' .. tag, 'ff:i:' .. tag .. ':'
  local k = {nil, nil, nil, nil, noop, keys[1], keys[2], keys[3], nil, keys[4], nil, keys[5],
    dry = {}, d = new_deferred(), size = {}, now_s = now_s, scopes = scopes}
  local reply = ok('created')
  for _, c in ipairs(items) do
    c.ins, c.outs, c.id_given = table.concat(c.ins, ' '), table.concat(c.outs, ' '), '0'
    local lp = pre .. c.lane .. ':'
    k[1], k[2], k[3], k[4] = exec_key(c.eid, 'core'), exec_key(c.eid, 'ctx'), lp .. 'eligible', lp .. 'delayed'
    k[9], k[11] = offers[c.lane] or noop, lp .. 'active'
    local r = create_one(k, c, tag, now)
    reply[#reply + 1] = r[4] or ''
  end
  flush_deferred(k.d)
  return reply
end)

---------------------------------------------------------------------------
-- ff_flow_create: create an empty flow to build member by member
-- (idempotent).
-- KEYS: 1 flow core
-- ARGV: 1 fid, 2 handoff ('global' | 'partition' | '')
-- Returns ok('created') or ok('exists', state).
redis.register_function('ff_flow_create', function(keys, argv)
  local fid, handoff = argv[1], argv[2]
  local tag = flow_keyed(keys, 1, fid, 'core')
  if not tag or #keys ~= 1 or (handoff ~= 'global' and handoff ~= 'partition' and handoff ~= '') then
    return fail('invalid_input', 'malformed flow arguments')
  end
  local state = redis.call('HGET', keys[1], 'state')
  if state then return ok('exists', state) end
  local now = fmt(now_ms())
  redis.call('HSET', keys[1], 'state', 'open', 'rev', 0, 'nodes', 0, 'edges', 0, 'created_at', now,
    'handoff', handoff)
  redis.call('ZADD', 'ff:i:' .. tag .. ':flows', 0, fid)
  return ok('created')
end)

-- Reads flow fid's state and graph revision; the failure when it is
-- missing or ended, else nil and the values.
local function open_flow(fcore)
  local f = redis.call('HMGET', fcore, 'state', 'rev', 'nodes')
  if not f[1] then return fail('flow_not_found') end
  if f[1] ~= 'open' then return fail('flow_terminal', f[1]) end
  return nil, f
end

---------------------------------------------------------------------------
-- ff_flow_add: add an execution of the flow's partition to the flow. One
-- that has ended already counts as an ended member at once (a child a
-- handler created and added may have run before the add).
-- KEYS: 1 flow core, 2 member core
-- ARGV: 1 fid, 2 eid
-- Returns ok('added') or ok('already_member'). Errors: invalid_input,
--   flow_not_found, flow_terminal(state), execution_not_found,
--   flow_member_elsewhere(flow), flow_too_large.
redis.register_function('ff_flow_add', function(keys, argv)
  local fid, eid = argv[1], argv[2]
  local tag = flow_keyed(keys, 1, fid, 'core')
  if not tag or #keys ~= 2 or id_tag(eid) ~= tag or keys[2] ~= exec_key(eid, 'core') then
    return fail('invalid_input', 'keys are not the flow\'s and the member\'s')
  end
  local bad, f = open_flow(keys[1])
  if bad then return bad end
  local e = redis.call('HMGET', keys[2], 'state', 'flow')
  if not e[1] then return fail('execution_not_found') end
  if e[2] == fid then return ok('already_member') end
  if e[2] then return fail('flow_member_elsewhere', e[2]) end
  if num(f[3]) >= MAX_FLOW_NODES then return fail('flow_too_large') end
  redis.call('SADD', flow_key(fid, 'members'), eid)
  redis.call('HSET', keys[2], 'flow', fid)
  redis.call('HINCRBY', keys[1], 'nodes', 1)
  if not LIVE_STATES[e[1]] then flow_member_ended(eid, fid, e[1], now_ms()) end
  return ok('added')
end)

-- Reports whether to is reachable from from over the flow's edges
-- (staged and applied), reading them all once (HVALS; a flow holds at
-- most MAX_FLOW_NODES members).
local function reaches(edges_key, from, to)
  local adj = {}
  for _, rec in ipairs(redis.call('HVALS', edges_key)) do
    local u, d = string.match(rec, '^(%S+) (%S+)')
    if u then
      adj[u] = adj[u] or {}
      adj[u][#adj[u] + 1] = d
    end
  end
  local seen, stack = {[from] = true}, {from}
  while #stack > 0 do
    local x = table.remove(stack)
    if x == to then return true end
    for _, y in ipairs(adj[x] or {}) do
      if not seen[y] then
        seen[y] = true
        stack[#stack + 1] = y
      end
    end
  end
  return false
end

---------------------------------------------------------------------------
-- ff_flow_stage_edge: stage a dependency edge upstream -> downstream
-- between two members, if the flow's graph revision is still the
-- caller's (compare and set) and the edge closes no cycle.
-- KEYS: 1 flow core, 2 members, 3 edges, 4 downstream core
-- ARGV: 1 fid, 2 edge id, 3 upstream eid, 4 downstream eid, 5 expected rev
-- Returns ok(new_rev). Errors: invalid_input, flow_not_found,
--   flow_terminal, stale_graph_revision(rev), not_flow_member(eid),
--   edge_exists, cycle_detected.
redis.register_function('ff_flow_stage_edge', function(keys, argv)
  local fid, id, up, down, rev = argv[1], argv[2], argv[3], argv[4], uint(argv[5])
  local tag = flow_keyed(keys, 1, fid, 'core')
  if not tag or #keys ~= 4 or keys[2] ~= flow_key(fid, 'members') or keys[3] ~= flow_key(fid, 'edges')
    or id_tag(down) ~= tag or keys[4] ~= exec_key(down, 'core') or id_tag(up) ~= tag or up == down
    or not is_name(id) or rev == nil then
    return fail('invalid_input', 'malformed edge arguments')
  end
  local bad, f = open_flow(keys[1])
  if bad then return bad end
  if num(f[2]) ~= rev then return fail('stale_graph_revision', f[2] or '0') end
  for _, e in ipairs({up, down}) do
    if redis.call('SISMEMBER', keys[2], e) == 0 then return fail('not_flow_member', e) end
  end
  if redis.call('HEXISTS', keys[3], id) == 1 then return fail('edge_exists') end
  if reaches(keys[3], down, up) then return fail('cycle_detected') end
  redis.call('HSET', keys[3], id, up .. ' ' .. down .. ' staged ' .. fmt(now_ms()))
  redis.call('HINCRBY', keys[4], 'dep_staged', 1)
  redis.call('HINCRBY', keys[1], 'edges', 1)
  return ok(tostring(redis.call('HINCRBY', keys[1], 'rev', 1)))
end)

---------------------------------------------------------------------------
-- ff_flow_apply_edge: apply a staged edge to its downstream member: the
-- member counts one more dependency (a waiting one now waits for it:
-- waiting_children), and when the upstream has ended already, its outcome
-- counts at once.
-- KEYS: 1 flow core, 2 edges, 3 upstream core, 4 downstream core
-- ARGV: 1 fid, 2 edge id, 3 upstream eid, 4 downstream eid
-- Returns ok(downstream_state) or ok('already_applied'). Errors:
--   invalid_input, flow_not_found, flow_terminal, edge_not_found,
--   invalid_dependency(state) (the downstream is delayed or has ended).
-- What an apply reads of the downstream: CHILD_FIELDS (its routing
-- block among them), then its inbound list (one HMGET).
local APPLY_FIELDS = append_all({}, CHILD_FIELDS)
APPLY_FIELDS[#APPLY_FIELDS + 1] = 'in'
APPLY_FIELDS.ins = #APPLY_FIELDS
APPLY_FIELDS.blocked = CHILD_BLOCKED
redis.register_function('ff_flow_apply_edge', function(keys, argv)
  local fid, id, up, down = argv[1], argv[2], argv[3], argv[4]
  local tag = flow_keyed(keys, 1, fid, 'core')
  if not tag or #keys ~= 4 or keys[2] ~= flow_key(fid, 'edges') or id_tag(up) ~= tag or id_tag(down) ~= tag
    or keys[3] ~= exec_key(up, 'core') or keys[4] ~= exec_key(down, 'core') or not is_name(id) then
    return fail('invalid_input', 'malformed edge arguments')
  end
  local bad, f = open_flow(keys[1])
  if bad then return bad end
  local rec = redis.call('HGET', keys[2], id)
  if not rec then return fail('edge_not_found') end
  local eu, ed, st, at = string.match(rec, '^(%S+) (%S+) (%S+) (%S+)')
  if eu ~= up or ed ~= down then return fail('edge_not_found') end
  if st == 'applied' then return ok('already_applied') end
  local c = redis.call('HMGET', keys[4], unpack(APPLY_FIELDS))
  if c[10] ~= fid then return fail('not_flow_member', down) end
  if c[1] ~= 'waiting' and c[1] ~= 'waiting_children' and c[1] ~= 'active' and c[1] ~= 'suspended' then
    return fail('invalid_dependency', c[1] or '')
  end
  local now = now_ms()
  local u = redis.call('HMGET', keys[3], 'state', 'out')
  redis.call('HSET', keys[2], id, up .. ' ' .. down .. ' applied ' .. at)
  redis.call('HSET', keys[3], 'out', (u[2] and (u[2] .. ' ') or '') .. down .. ' ' .. id)
  local n = num(c[5]) + 1
  local cin = c[APPLY_FIELDS.ins]
  redis.call('HSET', keys[4], 'dep_n', n, 'in', (cin and (cin .. ' ') or '') .. up)
  c[5] = n
  local pre = 'ff:i:' .. tag .. ':'
  if c[1] == 'waiting' then
    local lp = pre .. c[2] .. ':'
    redis.call('ZREM', lp .. 'eligible', down)
    if (c[APPLY_FIELDS.blocked] or '') ~= '' then redis.call('ZREM', lp .. 'blocked', down) end
    redis.call('HSET', keys[4], 'state', 'waiting_children', 'blocked', '', 'last_transition_at', now)
    redis.call('ZADD', pre .. 'dep_blocked', now, down)
    c[1], c[CHILD_BLOCKED] = 'waiting_children', false
  end
  local ust = u[1]
  if ust == 'completed' or ust == 'failed' or ust == 'cancelled' or ust == 'expired' or ust == 'skipped' then
    local okc = ust == 'completed'
    local n_ok, n_bad = num(c[6]), num(c[7])
    if okc then n_ok = n_ok + 1 else n_bad = n_bad + 1 end
    redis.call('HSET', keys[4], okc and 'dep_ok' or 'dep_bad', okc and n_ok or n_bad)
    local handoff = redis.call('HGET', keys[1], 'handoff') or ''
    if settle_child(down, c, n_ok, n_bad, tag, now, handoff) then
      flow_member_ended(down, fid, 'skipped', now)
      return ok('skipped')
    end
    return ok(redis.call('HGET', keys[4], 'state'))
  end
  return ok(c[1])
end)

---------------------------------------------------------------------------
-- ff_flow_edge_policy: set a member's dependency policy (its inbound edge
-- group) before any inbound edge is staged.
-- KEYS: 1 flow core, 2 member core
-- ARGV: 1 fid, 2 eid, 3 policy ('' all_of | 'any' any_of | 'q:<k>' quorum)
-- Returns ok(policy). Errors: invalid_input, flow_not_found,
--   flow_terminal, not_flow_member(eid), group_policy_locked (edges to it
--   were staged).
redis.register_function('ff_flow_edge_policy', function(keys, argv)
  local fid, eid, policy = argv[1], argv[2], argv[3]
  local tag = flow_keyed(keys, 1, fid, 'core')
  if not tag or #keys ~= 2 or id_tag(eid) ~= tag or keys[2] ~= exec_key(eid, 'core') or not policy
    or not good_policy(policy) then
    return fail('invalid_input', 'malformed policy arguments')
  end
  local bad = open_flow(keys[1])
  if bad then return bad end
  local e = redis.call('HMGET', keys[2], 'flow', 'dep_staged')
  if e[1] ~= fid then return fail('not_flow_member', eid) end
  if num(e[2]) > 0 then return fail('group_policy_locked') end
  if policy == '' then redis.call('HDEL', keys[2], 'dep_policy') else redis.call('HSET', keys[2], 'dep_policy', policy) end
  return ok(policy)
end)

---------------------------------------------------------------------------
-- ff_flow_wait_children: the lease holder of a flow member waits for its
-- inbound dependencies (children it added to the flow, with edges to
-- itself) to settle, whatever their outcomes: the lease is released and
-- the member waits (waiting_children) until the last of them ends, then
-- it resumes its attempt (resume = '1'), handed off or announced like a
-- create. Already settled: nothing changes and the holder keeps its lease.
-- KEYS: 1 core, 2 leases, 3 timeouts
-- ARGV: 1 eid, 2 lease_id, 3 epoch, 4 attempt_id
-- Returns ok('waiting') or ok('already_satisfied'). Errors: the fence
--   errors, not_flow_member(eid), invalid_input.
local FENCE_WAIT = fence_with({'attempt_timeout', 'dep_n', 'dep_ok', 'dep_bad'})
redis.register_function('ff_flow_wait_children', function(keys, argv)
  local eid = argv[1]
  local tag = id_tag(eid)
  if not tag or #keys ~= 3 or keys[1] ~= exec_key(eid, 'core') or keys[2] ~= 'ff:i:' .. tag .. ':leases'
    or keys[3] ~= 'ff:i:' .. tag .. ':timeouts' then
    return fail('invalid_input', 'keys are not the execution\'s')
  end
  local now = now_ms()
  local bad, f = check_fence(keys[1], argv[2], argv[3], argv[4], now, nil, FENCE_WAIT)
  if bad then return bad end
  if not f[9] then return fail('not_flow_member', eid) end
  local r = FENCE_READ
  if num(f[r + 3]) + num(f[r + 4]) >= num(f[r + 2]) then return ok('already_satisfied') end
  redis.call('HSET', keys[1], unpack(release_lease(eid, keys[2], keys[3], f[r + 1],
    {'state', 'waiting_children', 'resume', '1', 'dep_wait', '1', 'ended_by', argv[2], 'last_transition_at', now})))
  redis.call('ZADD', 'ff:i:' .. tag .. ':dep_blocked', now, eid)
  log_lease(f[8], eid, 'released', argv[2], argv[3], f[7], 'waiting_children')
  return ok('waiting')
end)

-- Cancels live member eid of flow fid on the flow's behalf (as an
-- operator's ff_cancel would, keys derived from the tag); false when it
-- had ended already. Its end resolves its edges (flow_member_ended) but
-- those to members spare names or the cancel set holds: they are the
-- cancel's.
local function cancel_member(eid, fid, tag, reason, now, spare)
  local core = exec_key(eid, 'core')
  local f = redis.call('HMGET', core, 'state', 'lane', 'attempt_timeout', 'deadline_at', 'lease_log',
    'lease_id', 'lease_epoch', 'blocked')
  if not LIVE_STATES[f[1]] then return false end
  local pre = 'ff:i:' .. tag .. ':'
  local lp = pre .. f[2] .. ':'
  if f[1] == 'suspended' then close_suspension(eid, tag, 'cancelled', now) end
  redis.call('DEL', exec_key(eid, 'grant'))
  if f[1] == 'active' then
    redis.call('ZREM', pre .. 'leases', eid)
    if positive(f[3]) then redis.call('ZREM', pre .. 'timeouts', eid) end
  elseif f[1] == 'waiting' then
    redis.call('ZREM', lp .. 'eligible', eid)
    if (f[8] or '') ~= '' then redis.call('ZREM', lp .. 'blocked', eid) end
  elseif f[1] == 'delayed' or f[1] == 'rate_limited' then
    redis.call('ZREM', lp .. 'delayed', eid)
  elseif f[1] == 'waiting_children' then
    redis.call('ZREM', pre .. 'dep_blocked', eid)
  end
  leave_deadlines(eid, pre .. 'deadlines', f[4])
  redis.call('HSET', core, 'state', 'cancelled', 'blocked', '', 'lease_state', '', 'ended_by', 'operator',
    'lease_expires_at', 0, 'cancel_reason', reason, 'cancelled_by', 'flow', 'completed_at', now,
    'last_transition_at', now)
  redis.call('ZADD', lp .. 'terminal', now, eid)
  if f[1] == 'active' then
    redis.call('SPUBLISH', 'ff:arrivals:' .. tag, eid)
    log_lease(f[5], eid, 'released', f[6], f[7], f[2], 'cancelled')
  end
  flow_member_ended(eid, fid, 'cancelled', now, nil, spare)
  return true
end

-- Cancels up to max members of the flow's pending set; returns how many
-- it cancelled and how many remain (the flow leaves the backlog at 0).
local function cancel_pending(fid, tag, max, now)
  local set = flow_key(fid, 'cancels')
  local reason = redis.call('HGET', flow_key(fid, 'core'), 'cancel_reason') or ''
  local n, batch, spare = 0, redis.call('SPOP', set, max), {}
  for _, eid in ipairs(batch) do spare[eid] = true end
  for _, eid in ipairs(batch) do
    if id_tag(eid) == tag and cancel_member(eid, fid, tag, reason, now, spare) then n = n + 1 end
  end
  local left = redis.call('SCARD', set)
  if left == 0 then redis.call('ZREM', 'ff:i:' .. tag .. ':flow_cancels', fid) end
  return n, left
end

---------------------------------------------------------------------------
-- ff_flow_cancel: cancel a flow. The flow ends cancelled at once; its
-- live members are cancelled: all of them (policy cancel_all) or those
-- not running (cancel_pending: an active member finishes; its dependants
-- waiting for it are among those cancelled). An upstream's end does not
-- run or skip a member the cancel still has to cancel (see
-- flow_member_ended), so every live member ends cancelled. Up to
-- FLOW_CANCEL_INLINE members are cancelled in this call; the rest wait in
-- the flow's cancel set, on the partition's backlog, for
-- ff_flow_cancel_more (the caller's next calls, or the flow scanner's),
-- and ff_flow_ack_cancel (a caller that cancelled one itself).
-- KEYS: 1 flow core, 2 members, 3 cancels, 4 flow_cancels
-- ARGV: 1 fid, 2 policy ('cancel_all' | 'cancel_pending'), 3 reason
-- Returns ok('cancelled', policy, cancelled_now, pending) or
--   ok('already_terminal', state, pending) (pending: the members its
--   backlog still has to cancel, so a retried cancel can drain them; v38).
--   Errors: invalid_input, flow_not_found.
redis.register_function('ff_flow_cancel', function(keys, argv)
  local fid, policy, reason = argv[1], argv[2], argv[3]
  local tag = flow_keyed(keys, 1, fid, 'core')
  if not tag or #keys ~= 4 or keys[2] ~= flow_key(fid, 'members') or keys[3] ~= flow_key(fid, 'cancels')
    or keys[4] ~= 'ff:i:' .. tag .. ':flow_cancels' or (policy ~= 'cancel_all' and policy ~= 'cancel_pending')
    or not reason then
    return fail('invalid_input', 'malformed cancel arguments')
  end
  local state = redis.call('HGET', keys[1], 'state')
  if not state then return fail('flow_not_found') end
  if state ~= 'open' then return ok('already_terminal', state, tostring(redis.call('SCARD', keys[3]))) end
  local now = now_ms()
  redis.call('HSET', keys[1], 'state', 'cancelled', 'cancel_policy', policy, 'cancel_reason', reason,
    'ended_at', now)
  redis.call('SET', flow_key(fid, 'outcome'), 'cancelled')
  local targets = {}
  for _, eid in ipairs(redis.call('SMEMBERS', keys[2])) do
    local st = id_tag(eid) == tag and redis.call('HGET', exec_key(eid, 'core'), 'state')
    if st and LIVE_STATES[st] and (policy == 'cancel_all' or st ~= 'active') then targets[#targets + 1] = eid end
  end
  if #targets == 0 then return ok('cancelled', policy, '0', '0') end
  for i = 1, #targets, 1000 do
    redis.call('SADD', keys[3], unpack(targets, i, math.min(#targets, i + 999)))
  end
  redis.call('ZADD', keys[4], now, fid)
  local n, left = cancel_pending(fid, tag, FLOW_CANCEL_INLINE, now)
  return ok('cancelled', policy, tostring(n), tostring(left))
end)

---------------------------------------------------------------------------
-- ff_flow_cancel_more: cancel up to max more members of a cancelled
-- flow's pending set.
-- KEYS: 1 cancels, 2 flow_cancels
-- ARGV: 1 fid, 2 max (1..1000)
-- Returns ok(cancelled, pending).
redis.register_function('ff_flow_cancel_more', function(keys, argv)
  local fid, max = argv[1], uint(argv[2])
  local tag = flow_keyed(keys, 1, fid, 'cancels')
  if not tag or #keys ~= 2 or keys[2] ~= 'ff:i:' .. tag .. ':flow_cancels' or not max or max == 0 or max > 1000 then
    return fail('invalid_input', 'malformed cancel arguments')
  end
  local n, left = cancel_pending(fid, tag, max, now_ms())
  return ok(tostring(n), tostring(left))
end)

---------------------------------------------------------------------------
-- ff_flow_ack_cancel: a caller cancelled member eid of a cancelled flow
-- itself; it leaves the pending set (the flow leaves the backlog when the
-- set empties).
-- KEYS: 1 cancels, 2 flow_cancels
-- ARGV: 1 fid, 2 eid
-- Returns ok(pending).
redis.register_function('ff_flow_ack_cancel', function(keys, argv)
  local fid, eid = argv[1], argv[2]
  local tag = flow_keyed(keys, 1, fid, 'cancels')
  if not tag or #keys ~= 2 or keys[2] ~= 'ff:i:' .. tag .. ':flow_cancels' or id_tag(eid) ~= tag then
    return fail('invalid_input', 'malformed ack arguments')
  end
  redis.call('SREM', keys[1], eid)
  local left = redis.call('SCARD', keys[1])
  if left == 0 then redis.call('ZREM', keys[2], fid) end
  return ok(tostring(left))
end)

---------------------------------------------------------------------------
-- ff_flow_reconcile: the flow scanner's safety net for a member waiting
-- for its dependencies: recounts its upstreams' outcomes from their
-- records and runs or skips it as they decide (what the upstreams' ends
-- did already, unless something interrupted it).
-- KEYS: 1 member core, 2 dep_blocked
-- ARGV: 1 eid
-- Returns ok(state_after) or ok('stale') (not waiting: the index entry is
--   removed). A member still waiting is re-scored later (see below).
redis.register_function('ff_flow_reconcile', function(keys, argv)
  local eid = argv[1]
  local tag = id_tag(eid)
  if not tag or #keys ~= 2 or keys[1] ~= exec_key(eid, 'core') or keys[2] ~= 'ff:i:' .. tag .. ':dep_blocked' then
    return fail('invalid_input', 'keys are not the execution\'s')
  end
  local c = redis.call('HMGET', keys[1], unpack(CHILD_FIELDS))
  if c[1] ~= 'waiting_children' or not c[10] then
    redis.call('ZREM', keys[2], eid)
    return ok('stale')
  end
  local n_ok, n_bad = 0, 0
  for up in string.gmatch(redis.call('HGET', keys[1], 'in') or '', '%S+') do
    local st = id_tag(up) == tag and redis.call('HGET', exec_key(up, 'core'), 'state')
    if st == 'completed' then
      n_ok = n_ok + 1
    elseif st == 'failed' or st == 'cancelled' or st == 'expired' or st == 'skipped' or st == false then
      n_bad = n_bad + 1 -- ended otherwise, or trimmed by retention
    end
  end
  if n_ok ~= num(c[6]) or n_bad ~= num(c[7]) then
    redis.call('HSET', keys[1], 'dep_ok', n_ok, 'dep_bad', n_bad)
  end
  local now = now_ms()
  local fl = redis.call('HMGET', flow_key(c[10], 'core'), 'state', 'handoff')
  -- A member its flow's cancel still has to cancel is the cancel's.
  local left = fl[1] == 'cancelled' and redis.call('SISMEMBER', flow_key(c[10], 'cancels'), eid) == 1
  if not left and settle_child(eid, c, n_ok, n_bad, tag, now, fl[2] or '') then
    flow_member_ended(eid, c[10], 'skipped', now)
  end
  local state = redis.call('HGET', keys[1], 'state')
  if state == 'waiting_children' then
    -- Still waiting, rightly: the next check comes twice as late (the
    -- score moves as far past now as it was behind it), so a member that
    -- waits long costs checks logarithmic in its wait.
    local since = tonumber(redis.call('ZSCORE', keys[2], eid) or now)
    redis.call('ZADD', keys[2], fmt(now + math.max(now - since, 1000)), eid)
  end
  return ok(state)
end)

---------------------------------------------------------------------------
-- Admission: quotas, budgets, parking.
--
-- Quotas and budgets live in their own partition families, {q:K} and
-- {b:M} (K, M from the policy's name), so their calls are single-slot
-- FCALLs of their own; an admission never needs a script that spans an
-- execution's slot and a quota's. The claim that uses one goes in two
-- calls: ff_quota_admit records the admission on the quota's slot, then the
-- claim runs on the execution's; a claim that fails gives the admission
-- back (ff_quota_release), and a holder that dies leaves a hold that
-- lapses (a hold's score is its deadline; holders extend it with
-- ff_quota_refresh while they run). Keys (Q a quota's name, B a budget's):
--   ff:q:{q:K}:Q       HASH  rate, window_ms (admissions per window; rate 0:
--                            no rate limit), concurrency (holds at once; 0:
--                            no cap)
--   ff:q:{q:K}:Q:win   ZSET  admissions in the sliding window: member
--                            "<eid> <now>", score the admission time
--   ff:q:{q:K}:Q:run   ZSET  holds: eid -> deadline (ms)
--   ff:bg:{b:M}:B      HASH  hard:<dim>, soft:<dim> (limits), u:<dim> (usage),
--                            created_at, reset_at
--   ff:bg:{b:M}:B:dedup ZSET usage reports applied: dedup key -> time
--                            (kept DEDUP_WINDOW)

local DEDUP_WINDOW = 86400000 -- ms a usage report's dedup key is remembered
local MAX_DIMS = 32           -- dimensions of one budget or report

-- Checks that key is "<prefix>{<fam>:<n>}:<name>" and returns its tag and
-- name, or nil.
local function policy_key(key, prefix, fam)
  if type(key) ~= 'string' or string.sub(key, 1, #prefix) ~= prefix then return nil end
  local tag, name = string.match(string.sub(key, #prefix + 1), '^({' .. fam .. ':%d+}):(.+)$')
  if not tag or not is_name(name) or string.find(name, ':', 1, true) then return nil end
  return tag, name
end

---------------------------------------------------------------------------
-- ff_quota_set: create or replace a quota policy.
-- KEYS: 1 quota
-- ARGV: 1 rate (admissions per window; 0 = none), 2 window_ms, 3 concurrency (0 = none)
-- Returns ok('created') or ok('updated').
redis.register_function('ff_quota_set', function(keys, argv)
  local rate, window, conc = uint(argv[1]), uint(argv[2]), uint(argv[3])
  if #keys ~= 1 or not policy_key(keys[1], 'ff:q:', 'q') or rate == nil or window == nil or conc == nil
    or (rate > 0 and window == 0) or (rate == 0 and conc == 0) then
    return fail('invalid_input', 'malformed quota arguments')
  end
  local existed = redis.call('EXISTS', keys[1]) == 1
  redis.call('HSET', keys[1], 'rate', rate, 'window_ms', window, 'concurrency', conc)
  return ok(existed and 'updated' or 'created')
end)

-- Checks that keys[i..i+2] are a quota's hash, win and run keys; returns
-- them as {hash, win, run, name = the quota's name}, or nil. String work.
quota_keys_at = function(keys, i)
  local tag, name = policy_key(keys[i], 'ff:q:', 'q')
  if not tag or keys[i + 1] ~= keys[i] .. ':win' or keys[i + 2] ~= keys[i] .. ':run' then return nil end
  return {keys[i], keys[i + 1], keys[i + 2], name = name}
end

-- The admission itself (ff_quota_admit's, and a create's hand-off's:
-- hand_off_admitted): eid under quota q (quota_keys_at's), a hold of hold
-- ms, its window entry named by token (nil: the time); now nil reads it.
-- Returns the status and its detail as ff_quota_admit's reply (below),
-- or 'quota_not_found'.
quota_admit = function(q, eid, hold, token, now)
  local p = redis.call('HMGET', q[1], 'rate', 'window_ms', 'concurrency')
  if not p[1] then return 'quota_not_found' end
  now = now or now_ms()
  local member = ''
  local rate, window, conc = num(p[1]), num(p[2]), num(p[3])
  -- Lapsed holds go first: a dead holder's hold must not answer for its
  -- execution (already_admitted) once its deadline passed.
  if conc > 0 then redis.call('ZREMRANGEBYSCORE', q[3], '-inf', now) end
  if redis.call('ZSCORE', q[3], eid) then return 'already_admitted' end
  if conc > 0 then
    if redis.call('ZCARD', q[3]) >= conc then
      local first = redis.call('ZRANGE', q[3], 0, 0, 'WITHSCORES')
      return 'concurrency_exceeded', fmt(math.max(1, tonumber(first[2] or now) - now))
    end
  end
  if rate > 0 then
    redis.call('ZREMRANGEBYSCORE', q[2], '-inf', now - window)
    if redis.call('ZCARD', q[2]) >= rate then
      local first = redis.call('ZRANGE', q[2], 0, 0, 'WITHSCORES')
      return 'rate_exceeded', fmt(math.max(1, tonumber(first[2] or now) + window - now))
    end
    member = eid .. ' ' .. (token or fmt(now))
    redis.call('ZADD', q[2], now, member)
  end
  if conc > 0 then redis.call('ZADD', q[3], fmt(now + hold), eid) end
  return 'admitted', member
end

---------------------------------------------------------------------------
-- ff_quota_admit: admit execution eid under a quota, or say when to try
-- again. Holds past their deadline and admissions out of the window are
-- dropped first.
-- KEYS: 1 quota, 2 win, 3 run
-- ARGV: 1 eid, 2 hold_ms (the hold's first deadline: about a lease TTL),
--       3 a token unique to this admission (names its window entry, so a
--       giveback removes this one only; default the server time)
-- Returns ok('admitted', window_member) (the member it added to the
--   window, '' without a rate: ff_quota_giveback takes it back),
--   ok('already_admitted') (eid holds a slot, taken
--   by an earlier admission, maybe another claimer's; nothing changes, and
--   the caller neither claims nor releases it), ok('rate_exceeded', retry_ms) or
--   ok('concurrency_exceeded', retry_ms) (when the earliest hold lapses
--   at the latest). Errors: invalid_input, quota_not_found.
-- Inner commands: TIME, HMGET, ZSCORE run, ZREMRANGEBYSCORE x2, ZCARD x2,
--   ZADD x2 (+ ZRANGE for a retry time).
redis.register_function('ff_quota_admit', function(keys, argv)
  local eid, hold = argv[1], uint(argv[2])
  local q = #keys == 3 and quota_keys_at(keys, 1)
  if not q or not id_tag(eid) or not hold or hold == 0 or (argv[3] and not is_name(argv[3])) then
    return fail('invalid_input', 'malformed admission arguments')
  end
  local status, detail = quota_admit(q, eid, hold, argv[3])
  if status == 'quota_not_found' then return fail('quota_not_found', q.name) end
  if status == 'already_admitted' then return ok(status) end
  return ok(status, detail)
end)

---------------------------------------------------------------------------
-- ff_quota_release: end the holds of executions (their attempts ended, or
-- their claims failed).
-- KEYS: 1 run
-- ARGV: eids
-- Returns ok(released).
redis.register_function('ff_quota_release', function(keys, argv)
  local run = keys[1]
  if #keys ~= 1 or #argv == 0 or not (type(run) == 'string' and string.sub(run, -4) == ':run'
    and policy_key(string.sub(run, 1, -5), 'ff:q:', 'q')) then
    return fail('invalid_input', 'malformed release arguments')
  end
  for _, e in ipairs(argv) do
    if not id_tag(e) then return fail('invalid_input', 'malformed execution id') end
  end
  return ok(tostring(redis.call('ZREM', run, unpack(argv))))
end)

---------------------------------------------------------------------------
-- ff_quota_giveback: undo an admission its claimer did not use (the claim
-- failed, or a budget refused): the hold ends and the window slot is
-- given back, so a claim lost to a race or a stale head costs the quota
-- nothing.
-- KEYS: 1 win, 2 run
-- ARGV: 1 eid, 2 window member (ff_quota_admit's; '' = none)
-- Returns ok().
redis.register_function('ff_quota_giveback', function(keys, argv)
  local win, run, eid, member = keys[1], keys[2], argv[1], argv[2]
  if #keys ~= 2 or type(win) ~= 'string' or string.sub(win, -4) ~= ':win'
    or not policy_key(string.sub(win, 1, -5), 'ff:q:', 'q') or run ~= string.sub(win, 1, -5) .. ':run'
    or not id_tag(eid) or not member or (member ~= '' and string.sub(member, 1, #eid + 1) ~= eid .. ' ') then
    return fail('invalid_input', 'malformed giveback arguments')
  end
  redis.call('ZREM', run, eid)
  if member ~= '' then redis.call('ZREM', win, member) end
  return ok()
end)

---------------------------------------------------------------------------
-- ff_quota_refresh: extend the holds of running executions (their holders
-- renew them with their leases); a hold that lapsed is not taken back
-- (lapsed holds are purged first: ZREMRANGEBYSCORE, then ZADD XX).
-- KEYS: 1 run
-- ARGV: 1 hold_ms, then eids
-- Returns ok(extended).
redis.register_function('ff_quota_refresh', function(keys, argv)
  local run, hold = keys[1], uint(argv[1])
  if #keys ~= 1 or #argv < 2 or not hold or hold == 0 or not (type(run) == 'string'
    and string.sub(run, -4) == ':run' and policy_key(string.sub(run, 1, -5), 'ff:q:', 'q')) then
    return fail('invalid_input', 'malformed refresh arguments')
  end
  local z = {}
  local now = now_ms()
  local deadline = fmt(now + hold)
  for i = 2, #argv do
    if not id_tag(argv[i]) then return fail('invalid_input', 'malformed execution id') end
    z[#z + 1], z[#z + 2] = deadline, argv[i]
  end
  -- Lapsed holds go first (as an admission would purge them): a late
  -- refresh does not bring one back.
  redis.call('ZREMRANGEBYSCORE', run, '-inf', now)
  return ok(tostring(redis.call('ZADD', run, 'XX', 'CH', unpack(z))))
end)

---------------------------------------------------------------------------
-- ff_budget_set: create a budget, or replace its limits (usage is kept).
-- KEYS: 1 budget
-- ARGV: 1 n dims, then per dim: name, hard (0 = none), soft (0 = none)
-- Returns ok('created') or ok('updated').
redis.register_function('ff_budget_set', function(keys, argv)
  local n = uint(argv[1])
  if #keys ~= 1 or not policy_key(keys[1], 'ff:bg:', 'b') or not n or n == 0 or n > MAX_DIMS
    or #argv ~= 1 + 3 * n then
    return fail('invalid_input', 'malformed budget arguments')
  end
  -- A limit over 2^53 would be rounded (Lua numbers are doubles).
  local function over53(v) return #v > 16 or (#v == 16 and v > '9007199254740992') end
  local kv, set = {}, {}
  for i = 2, #argv, 3 do
    local hard, soft = uint(argv[i + 1]), uint(argv[i + 2])
    if not is_name(argv[i]) or not hard or not soft or over53(argv[i + 1]) or over53(argv[i + 2])
      or (hard > 0 and soft > hard) then
      return fail('invalid_input', 'malformed budget dimension')
    end
    append_all(kv, {'hard:' .. argv[i], hard, 'soft:' .. argv[i], soft})
    set['hard:' .. argv[i]], set['soft:' .. argv[i]] = true, true
  end
  -- Replacing: the limits of dimensions left out go (their usage stays).
  local gone, fields = {}, redis.call('HKEYS', keys[1])
  for _, f in ipairs(fields) do
    local pre = string.sub(f, 1, 5)
    if (pre == 'hard:' or pre == 'soft:') and not set[f] then gone[#gone + 1] = f end
  end
  if #gone > 0 then redis.call('HDEL', keys[1], unpack(gone)) end
  local existed = #fields > 0
  if not existed then append_all(kv, {'created_at', now_ms()}) end
  redis.call('HSET', keys[1], unpack(kv))
  return ok(existed and 'updated' or 'created')
end)

---------------------------------------------------------------------------
-- ff_budget_reset: zero a budget's usage.
-- KEYS: 1 budget
-- Returns ok(dims_reset). Errors: budget_not_found.
redis.register_function('ff_budget_reset', function(keys, argv)
  if #keys ~= 1 or not policy_key(keys[1], 'ff:bg:', 'b') then
    return fail('invalid_input', 'malformed budget key')
  end
  local all = redis.call('HKEYS', keys[1])
  if #all == 0 then return fail('budget_not_found') end
  local used = {}
  for _, f in ipairs(all) do
    if string.sub(f, 1, 2) == 'u:' then used[#used + 1] = f end
  end
  if #used > 0 then redis.call('HDEL', keys[1], unpack(used)) end
  redis.call('HSET', keys[1], 'reset_at', now_ms())
  return ok(tostring(#used))
end)

---------------------------------------------------------------------------
-- ff_budget_report: add usage to a budget. Every hard limit is checked
-- before anything is added: one the report would cross refuses the whole
-- report (nothing added). A dedup key seen within DEDUP_WINDOW is not
-- applied again.
-- KEYS: 1 budget, 2 dedup
-- ARGV: 1 dedup key ('' = none), 2 n, then per dim: name, amount
-- Returns ok('ok'), ok('soft_breach', dim, usage, soft), ok('hard_breach',
--   dim, usage, hard) or ok('already_applied'). Errors: invalid_input,
--   budget_not_found.
redis.register_function('ff_budget_report', function(keys, argv)
  local key, n = argv[1], uint(argv[2])
  if #keys ~= 2 or not policy_key(keys[1], 'ff:bg:', 'b') or keys[2] ~= keys[1] .. ':dedup' or not key
    or #key > 512 or not n or n == 0 or n > MAX_DIMS or #argv ~= 2 + 2 * n then
    return fail('invalid_input', 'malformed usage report')
  end
  local names = {}
  for i = 3, #argv, 2 do
    if not is_name(argv[i]) or not uint(argv[i + 1]) then return fail('invalid_input', 'malformed usage dimension') end
    append_all(names, {'u:' .. argv[i], 'hard:' .. argv[i], 'soft:' .. argv[i]})
  end
  if redis.call('EXISTS', keys[1]) == 0 then return fail('budget_not_found') end
  local now = now_ms()
  if key ~= '' then
    redis.call('ZREMRANGEBYSCORE', keys[2], '-inf', now - DEDUP_WINDOW)
    if redis.call('ZSCORE', keys[2], key) then return ok('already_applied') end
  end
  local v = redis.call('HMGET', keys[1], unpack(names))
  for j = 0, n - 1 do
    local used, hard, amt = num(v[3 * j + 1]), num(v[3 * j + 2]), tonumber(argv[4 + 2 * j])
    if hard > 0 and used + amt > hard then
      return ok('hard_breach', argv[3 + 2 * j], fmt(used), fmt(hard))
    end
  end
  local soft_hit
  for j = 0, n - 1 do
    local used = redis.call('HINCRBY', keys[1], names[3 * j + 1], argv[4 + 2 * j])
    local soft = num(v[3 * j + 3])
    if not soft_hit and soft > 0 and used > soft then soft_hit = {argv[3 + 2 * j], fmt(used), fmt(soft)} end
  end
  if key ~= '' then redis.call('ZADD', keys[2], now, key) end
  if soft_hit then return ok('soft_breach', unpack(soft_hit)) end
  return ok('ok')
end)

---------------------------------------------------------------------------
-- ff_park: an execution a worker could not admit (a quota's rate or
-- concurrency, a budget's hard limit) leaves the eligible set for until_ms:
-- state rate_limited, in the delayed set, promoted back like a delay.
-- KEYS: 1 core, 2 eligible, 3 delayed
-- ARGV: 1 eid, 2 until_ms, 3 reason ('rate_limited' | 'concurrency' |
--       'budget'), 4 lane
-- Returns ok('parked') or ok('not_eligible') (claimed or moved meanwhile).
local PARK_KEYS = {'core', 'eligible', 'delayed'}
local PARK_REASONS = {rate_limited = true, concurrency = true, budget = true}
redis.register_function('ff_park', function(keys, argv)
  local eid, until_ms = argv[1], uint(argv[2])
  local bad = bad_call(keys, PARK_KEYS, 3, eid, argv[4])
  if bad then return bad end
  if not until_ms or not PARK_REASONS[argv[3]] then return fail('invalid_input', 'malformed park arguments') end
  local f = redis.call('HMGET', keys[1], 'state', 'blocked', 'lane')
  if f[3] ~= argv[4] then return fail('invalid_input', 'lane differs from the execution') end
  if f[1] ~= 'waiting' or (f[2] or '') ~= '' or redis.call('ZREM', keys[2], eid) == 0 then
    return ok('not_eligible')
  end
  redis.call('HSET', keys[1], 'state', 'rate_limited', 'delay_until', until_ms, 'park_reason', argv[3],
    'last_transition_at', now_ms())
  redis.call('ZADD', keys[3], until_ms, eid)
  return ok('parked')
end)

---------------------------------------------------------------------------
-- ff_fence: whether the caller's lease triple holds the live lease (a
-- holder's call made elsewhere, e.g. a usage report on a budget's slot,
-- checks it first). Read-only.
-- KEYS: 1 core
-- ARGV: 1 eid, 2 lease_id, 3 epoch, 4 attempt_id
-- Returns ok(). Errors: the fence errors, invalid_input.
redis.register_function{function_name = 'ff_fence', flags = {'no-writes'},
  callback = function(keys, argv)
    local eid = argv[1]
    if not id_tag(eid) or #keys ~= 1 or keys[1] ~= exec_key(eid, 'core') then
      return fail('invalid_input', 'keys are not the execution\'s')
    end
    local bad = check_fence(keys[1], argv[2], argv[3], argv[4], now_ms())
    return bad or ok()
  end}

---------------------------------------------------------------------------
-- Schedules (valkeybackend/schedules.go). A schedule lives on the
-- partition its name hashes to (Go: FNV-1a modulo the partition count),
-- and the executions it creates are minted there, so firing a tick (the
-- create and the schedule's advance) is one single-slot call. Go computes
-- the tick times (cron in a time zone, or a fixed interval) and decides
-- which ticks are due and missed; these functions stamp server time. Keys
-- (T the partition's tag, S the schedule's name):
--   ff:sched:T:S       HASH  the definition as Go wrote it (SCHEDULE_FIELDS),
--                            and its state: next (the next tick, ms; 0: none),
--                            paused ('1' or absent), rev (bumped by every
--                            put, pause and resume: a fire checks it),
--                            created_at, updated_at, last_tick, last_eid,
--                            fired_at, fired, skipped
--   ff:i:T:schedules   ZSET  the partition's schedules (score 0, by name)
--   ff:i:T:sched_due   ZSET  the running schedules by next tick (ms)
-- A plain execution touches none of them.

-- The definition fields a put writes (every one, each time).
local SCHEDULE_FIELDS = {cron = true, tz = true, every_ms = true, start_ms = true, catchup = true,
  catchup_max = true, grace_ms = true, tick_tag = true, lane = true, tmpl = true, payload = true}

-- Checks that keys[1] is schedule id's record and keys[2] (and keys[3],
-- when given) the partition's schedule indexes named by idx2 (idx3).
-- Returns the failure, or nil and the tag.
local function bad_schedule_keys(keys, id, idx2, idx3)
  local tag = key_tag(keys[2], 'ff:i:')
  if not tag or keys[2] ~= 'ff:i:' .. tag .. ':' .. idx2 then
    return fail('invalid_input', 'key 2 is not the ' .. idx2 .. ' index')
  end
  if idx3 and keys[3] ~= 'ff:i:' .. tag .. ':' .. idx3 then
    return fail('invalid_input', 'key 3 is not the ' .. idx3 .. ' index')
  end
  if not is_name(id) or string.find(id, ':', 1, true) then
    return fail('invalid_input', 'malformed schedule id')
  end
  if keys[1] ~= 'ff:sched:' .. tag .. ':' .. id then
    return fail('invalid_input', 'key 1 is not the schedule\'s record')
  end
  return nil, tag
end

---------------------------------------------------------------------------
-- ff_schedule_set: create a schedule or replace its definition.
-- KEYS: 1 schedule record, 2 schedules index, 3 due index
-- ARGV: 1 id, 2 expected rev ('0': the schedule must not exist), 3 next
--       tick ms ('0': none; '': keep the schedule's, on a replace), 4 lane,
--       5 .. (field, value) pairs, each a definition field (SCHEDULE_FIELDS)
-- A replace keeps the state (paused, counters); a paused schedule stays
-- out of the due index. Inner commands: TIME, HMGET, HSET, ZADD (x2).
-- Returns ok('created' | 'updated', rev).
-- Errors: invalid_input, schedule_changed (the rev is not the expected
-- one: changed, created or deleted since the caller read it).
local SET_SCHEDULE_KEYS = 3
redis.register_function('ff_schedule_set', function(keys, argv)
  if #keys ~= SET_SCHEDULE_KEYS then return fail('invalid_input', 'wrong number of keys') end
  local bad, _ = bad_schedule_keys(keys, argv[1], 'schedules', 'sched_due')
  if bad then return bad end
  local want, next_tick, lane = uint(argv[2]), uint(argv[3]), argv[4]
  local keep = argv[3] == '' and want ~= nil and want > 0
  if want == nil or (next_tick == nil and not keep) or not is_name(lane) or #argv < 5 or #argv % 2 ~= 0 then
    return fail('invalid_input', 'malformed schedule arguments')
  end
  local kv = {}
  for i = 5, #argv, 2 do
    if not SCHEDULE_FIELDS[argv[i]] or argv[i] == 'lane' then
      return fail('invalid_input', 'field ' .. tostring(argv[i]) .. ' is not a schedule definition field')
    end
    kv[#kv + 1] = argv[i]
    kv[#kv + 1] = argv[i + 1]
  end
  local f = redis.call('HMGET', keys[1], 'rev', 'paused', 'next')
  local rev = num(f[1])
  if rev ~= want then return fail('schedule_changed', fmt(rev)) end
  if keep then next_tick = num(f[3]) end
  local now_s = fmt(now_ms())
  rev = rev + 1
  append_all(kv, {'lane', lane, 'next', fmt(next_tick), 'rev', rev, 'updated_at', now_s})
  if want == 0 then append_all(kv, {'created_at', now_s}) end
  redis.call('HSET', keys[1], unpack(kv))
  redis.call('ZADD', keys[2], 0, argv[1])
  if f[2] ~= '1' then
    if next_tick > 0 then redis.call('ZADD', keys[3], next_tick, argv[1])
    else redis.call('ZREM', keys[3], argv[1]) end
  end
  return ok(want == 0 and 'created' or 'updated', fmt(rev))
end)

---------------------------------------------------------------------------
-- ff_schedule_state: pause or resume a schedule.
-- KEYS: 1 schedule record, 2 due index
-- ARGV: 1 id, 2 'pause' | 'resume', 3 next tick ms (resume; '0': none),
--       4 expected rev (optional: the caller computed the next tick from
--       the schedule at that rev)
-- A pause takes the schedule out of the due index; a resume puts it back
-- with the next tick given (ticks that fell while paused never fire).
-- Pausing a paused schedule or resuming a running one changes nothing.
-- Inner commands: HMGET, then TIME, HSET (or HDEL+HSET), ZADD or ZREM.
-- Returns ok('paused' | 'resumed' | 'unchanged').
-- Errors: invalid_input, schedule_not_found, schedule_changed (not at the
-- expected rev).
redis.register_function('ff_schedule_state', function(keys, argv)
  if #keys ~= 2 then return fail('invalid_input', 'wrong number of keys') end
  local bad = bad_schedule_keys(keys, argv[1], 'sched_due')
  if bad then return bad end
  local mode, next_tick, want = argv[2], uint(argv[3]), argv[4]
  if (mode ~= 'pause' and mode ~= 'resume') or next_tick == nil or #argv > 4
    or (want ~= nil and uint(want) == nil) then
    return fail('invalid_input', 'malformed schedule state arguments')
  end
  local f = redis.call('HMGET', keys[1], 'rev', 'paused')
  if not f[1] then return fail('schedule_not_found') end
  if want ~= nil and num(f[1]) ~= uint(want) then return fail('schedule_changed', f[1]) end
  local paused = f[2] == '1'
  if paused == (mode == 'pause') then return ok('unchanged') end
  local rev, now_s = fmt(num(f[1]) + 1), fmt(now_ms())
  if mode == 'pause' then
    redis.call('HSET', keys[1], 'paused', '1', 'rev', rev, 'updated_at', now_s)
    redis.call('ZREM', keys[2], argv[1])
    return ok('paused')
  end
  redis.call('HDEL', keys[1], 'paused')
  redis.call('HSET', keys[1], 'next', argv[3], 'rev', rev, 'updated_at', now_s)
  if next_tick > 0 then redis.call('ZADD', keys[2], next_tick, argv[1]) end
  return ok('resumed')
end)

---------------------------------------------------------------------------
-- ff_schedule_delete: remove a schedule (its executions stay).
-- KEYS: 1 schedule record, 2 schedules index, 3 due index
-- ARGV: 1 id
-- Inner commands: DEL, ZREM (x2).
-- Returns ok('deleted'). Errors: invalid_input, schedule_not_found.
redis.register_function('ff_schedule_delete', function(keys, argv)
  if #keys ~= 3 then return fail('invalid_input', 'wrong number of keys') end
  local bad = bad_schedule_keys(keys, argv[1], 'schedules', 'sched_due')
  if bad then return bad end
  if redis.call('DEL', keys[1]) == 0 then return fail('schedule_not_found') end
  redis.call('ZREM', keys[2], argv[1])
  redis.call('ZREM', keys[3], argv[1])
  return ok('deleted')
end)

---------------------------------------------------------------------------
-- ff_schedule_fire: fire one tick of a schedule, or only skip ticks: the
-- tick's execution is created exactly as ff_create creates it (its
-- idempotency key is "sched:<id>:<tick>", so a tick fired again finds its
-- execution instead of creating one), and the schedule advances to the
-- next tick, in this one call, only when the schedule is still as the
-- caller read it (rev and next tick): of two engines firing the same tick,
-- one fires and the other is told schedule_changed, having written
-- nothing.
-- KEYS: 1 schedule record, 2 due index, then (with a tick) ff_create's 12
--       KEYS; key 5 of those, the idempotency key, must be the tick's
-- ARGV: 1 id, 2 rev, 3 next tick as read (ms), 4 tick to fire (ms; '0':
--       none, only advance), 5 new next tick (ms; '0': none left), 6 ticks
--       skipped (added to the count), then (with a tick) ff_create's ARGV
-- Inner commands: HMGET, ff_create's (with a tick), HSET, ZADD or ZREM.
-- Returns ok(eid, state, created) (created '1', or '0' when the tick's
-- execution existed: eid and state are then its); ok('', '', '0')
-- without a tick.
-- Errors: invalid_input, schedule_not_found, schedule_changed (not as
-- read, or paused).
redis.register_function('ff_schedule_fire', function(keys, argv)
  local id, tick = argv[1], uint(argv[4])
  local want_rev, want_next, new_next, skipped = uint(argv[2]), uint(argv[3]), uint(argv[5]), uint(argv[6])
  if want_rev == nil or want_next == nil or tick == nil or new_next == nil or skipped == nil then
    return fail('invalid_input', 'malformed fire arguments')
  end
  if #keys ~= (tick > 0 and 14 or 2) then return fail('invalid_input', 'wrong number of keys') end
  local bad, tag = bad_schedule_keys(keys, id, 'sched_due')
  if bad then return bad end
  local ck, c
  if tick > 0 then
    ck = {unpack(keys, 3, 14)}
    local ctag
    bad, ctag = bad_call(ck, CREATE_KEYS, 12, argv[7], argv[8])
    if bad then return bad end
    c = create_args(argv, 6)
    if ctag ~= tag or not c or #argv ~= c.last then
      return fail('invalid_input', 'malformed create arguments')
    end
    if ck[5] ~= 'ff:idem:' .. tag .. ':sched:' .. id .. ':' .. argv[4] then
      return fail('invalid_input', 'key 7 is not the tick\'s idempotency key')
    end
  elseif #argv ~= 6 then
    return fail('invalid_input', 'malformed fire arguments')
  end
  local f = redis.call('HMGET', keys[1], 'rev', 'next', 'paused', 'fired', 'skipped')
  if not f[1] then return fail('schedule_not_found') end
  if num(f[1]) ~= want_rev or num(f[2]) ~= want_next or f[3] == '1' then
    return fail('schedule_changed', f[1], f[2] or '0')
  end
  local kv = {'next', argv[5]}
  if skipped > 0 then append_all(kv, {'skipped', fmt(num(f[5]) + skipped)}) end
  local reply = ok('', '', '0')
  if tick > 0 then
    local now = now_ms()
    reply = create_one(ck, c, tag, now)
    if reply[1] ~= 1 then return reply end
    local created = reply[2] ~= 'DUPLICATE'
    local eid, state = reply[3], reply[4]
    if created then append_all(kv, {'fired', fmt(num(f[4]) + 1)}) end
    append_all(kv, {'last_tick', argv[4], 'last_eid', eid, 'fired_at', fmt(now)})
    reply = ok(eid, state, created and '1' or '0')
  end
  redis.call('HSET', keys[1], unpack(kv))
  if new_next > 0 then redis.call('ZADD', keys[2], new_next, id)
  else redis.call('ZREM', keys[2], id) end
  return reply
end)
