package valkeybackend

import (
	"cmp"
	"context"
	"encoding/json"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Schedules (sdk.Scheduler; lua: the schedules section). A schedule lives
// on the partition its name hashes to and mints its executions there, so
// ff_schedule_fire creates a tick's execution and advances the schedule in
// one single-slot call. Go computes the tick times (NextTicks); Lua stamps
// server time and checks the schedule is as read (its rev and next tick),
// so of two engines firing the same tick one fires and the other writes
// nothing. The tick's idempotency key (sdk.ScheduleTickKey) makes a tick
// fired again (a replace whose Start moved back, say) find its execution
// instead of creating a second.

var _ sdk.Scheduler = (*Backend)(nil)

// maxTickWalk bounds the cron ticks one FireDueSchedules call walks for
// one schedule: a schedule further behind (a per-minute cron after about a
// week with no engine) is caught up over several calls, and its catch-up
// policy then sees each call's missed ticks alone (see the README).
const maxTickWalk = 10000

// fireChunk bounds the FCALLs of one pipelined flush.
const fireChunk = 256

// ticks computes a schedule's tick times.
type ticks struct {
	cron  cron.Schedule // nil for an interval
	every int64         // ms, for an interval
	start time.Time     // ticks fall strictly after it
}

// cronParser reads five fields or a descriptor; the seconds field and
// @every are not offered (an interval is Schedule.Every, aligned on Start).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// newTicks parses s (resolved) with its effective start.
func newTicks(s sdk.Schedule, start time.Time) (ticks, error) {
	t := ticks{start: time.UnixMilli(start.UnixMilli())}
	if s.Cron == "" {
		t.every = s.Every.Milliseconds()
		return t, nil
	}
	expr := strings.TrimSpace(s.Cron)
	if strings.HasPrefix(expr, "@every") || strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return t, sdk.Validationf(sdk.CodeInvalidInput, "schedule %q: cron %q: use Every for an interval and TimeZone for a zone", s.ID, s.Cron)
	}
	c, err := cronParser.Parse(expr)
	if err != nil {
		return t, sdk.Validationf(sdk.CodeInvalidInput, "schedule %q: malformed cron expression %q: %v", s.ID, s.Cron, err)
	}
	loc, err := s.Location()
	if err != nil {
		return t, err
	}
	spec, ok := c.(*cron.SpecSchedule)
	if !ok {
		return t, sdk.Validationf(sdk.CodeInvalidInput, "schedule %q: unsupported cron expression %q", s.ID, s.Cron)
	}
	spec.Location = loc
	t.cron = spec
	return t, nil
}

// next returns the first tick strictly after after (and after the start),
// or the zero time when there is none (a cron that matches nothing within
// five years).
func (t ticks) next(after time.Time) time.Time {
	if after.Before(t.start) {
		after = t.start
	}
	if t.cron == nil {
		s, a := t.start.UnixMilli(), after.UnixMilli()
		return time.UnixMilli(s + ((a-s)/t.every+1)*t.every)
	}
	n := t.cron.Next(after)
	if n.IsZero() {
		return n
	}
	return time.UnixMilli(n.UnixMilli())
}

// NextTicks returns schedule s's first n tick times strictly after after
// (and after s.Start), in s's time zone; fewer when the schedule has no
// more (a cron expression that matches nothing within five years ends
// the list). It is the computation the engines fire by, so tools can show
// what a schedule will do. s.Start zero reads as after.
func NextTicks(s sdk.Schedule, after time.Time, n int) ([]time.Time, error) {
	s, err := s.Resolve()
	if err != nil {
		return nil, err
	}
	start := s.Start
	if start.IsZero() {
		start = after
	}
	t, err := newTicks(s, start)
	if err != nil {
		return nil, err
	}
	loc, _ := s.Location()
	out := make([]time.Time, 0, max(n, 0))
	for at := after; len(out) < n; {
		at = t.next(at)
		if at.IsZero() {
			break
		}
		out = append(out, at.In(loc))
	}
	return out, nil
}

// firePlan is what one schedule's due ticks come to at now: the ticks to
// fire (oldest first), how many are skipped, and the next tick after
// them (zero: none left).
type firePlan struct {
	fire    []time.Time
	skipped int
	next    time.Time
}

// planFire applies s's catch-up policy to its due ticks from next (a tick)
// to now: a tick is missed when now is more than s.Grace past it. Ticks
// found within Grace all fire; of the missed ones, the latest keep fire
// (CatchUpOne: 1, CatchUpSkip: 0, CatchUpAll: CatchUpMax), the older are
// skipped.
func planFire(s sdk.Schedule, t ticks, next, now time.Time) firePlan {
	keep := 0
	switch s.CatchUp {
	case sdk.CatchUpOne:
		keep = 1
	case sdk.CatchUpAll:
		keep = s.CatchUpMax
	}
	cutoff := now.Add(-s.Grace) // a tick before it is missed
	var p firePlan
	at := next
	if t.cron == nil && at.Before(cutoff) {
		// An interval skips arithmetically to the last keep missed ticks.
		missed := (cutoff.UnixMilli()-at.UnixMilli()+t.every-1)/t.every - int64(keep)
		if missed > 0 {
			p.skipped = int(missed)
			at = at.Add(time.Duration(missed*t.every) * time.Millisecond)
		}
	}
	var missed, onTime []time.Time
	for walked := 0; !at.IsZero() && !at.After(now); walked++ {
		if walked == maxTickWalk {
			if at.Before(cutoff) {
				// Still among missed ticks (a cron far behind; an interval
				// skipped arithmetically): those walked so far are older
				// than the ones to come, which are the latest, so they are
				// skipped, and a later call goes on from at.
				p.skipped += len(missed)
				return firePlan{skipped: p.skipped, next: at}
			}
			// Among on-time ticks: every missed tick was walked, so what
			// was kept fires now, with the on-time ones walked; a later
			// call goes on from at.
			break
		}
		if at.Before(cutoff) {
			missed = append(missed, at)
			if len(missed) > keep {
				missed = missed[1:]
				p.skipped++
			}
		} else {
			onTime = append(onTime, at)
		}
		at = t.next(at)
	}
	p.fire = append(missed, onTime...)
	p.next = at
	return p
}

// schedulePartition is the partition schedule id lives on.
func (b *Backend) schedulePartition(id sdk.ScheduleID) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(b.partitions))
}

// scheduleTemplate is a schedule's template as stored (field tmpl; the
// payload is a field of its own, raw). Tags are name, value pairs, as
// bytes so JSON keeps any value whole.
type scheduleTemplate struct {
	Kind             string           `json:"kind"`
	Priority         int              `json:"priority,omitempty"`
	Tags             [][]byte         `json:"tags,omitempty"`
	Caps             []string         `json:"caps,omitempty"`
	Retry            *sdk.RetryPolicy `json:"retry,omitempty"`
	AttemptTimeoutMS int64            `json:"attempt_timeout_ms,omitempty"`
}

// scheduleFields renders s (resolved, start its effective start) as
// ff_schedule_set's (field, value) pairs, lane apart.
func scheduleFields(s sdk.Schedule, start time.Time) ([]string, error) {
	tm := scheduleTemplate{Kind: s.Kind, Priority: s.Priority, Caps: s.RequiredCapabilities,
		AttemptTimeoutMS: ceilMS(s.AttemptTimeout).Milliseconds()}
	if !s.Retry.IsZero() {
		r := s.Retry
		tm.Retry = &r
	}
	names := make([]string, 0, len(s.Tags))
	for k := range s.Tags {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		tm.Tags = append(tm.Tags, []byte(k), []byte(s.Tags[k]))
	}
	js, err := json.Marshal(tm)
	if err != nil {
		return nil, sdk.Validationf(sdk.CodeInvalidInput, "schedule %q: template: %v", s.ID, err)
	}
	every := "0"
	if s.Every > 0 {
		every = durMS(s.Every)
	}
	return []string{"cron", s.Cron, "tz", tzField(s), "every_ms", every, "start_ms", strconv.FormatInt(start.UnixMilli(), 10),
		"catchup", string(s.CatchUp), "catchup_max", strconv.Itoa(s.CatchUpMax), "grace_ms", durMS(s.Grace),
		"tick_tag", s.TickTag, "tmpl", string(js), "payload", string(s.Payload)}, nil
}

func tzField(s sdk.Schedule) string {
	if s.Cron == "" {
		return ""
	}
	return s.TimeZone
}

// scheduleRecord is a schedule's record as read.
type scheduleRecord struct {
	status sdk.ScheduleStatus
	rev    uint64
	next   int64 // ms; 0: none
}

// decodeSchedule decodes a record (HGETALL); ok is false when it is
// empty (no such schedule).
func decodeSchedule(op string, id sdk.ScheduleID, m map[string]string) (scheduleRecord, bool, error) {
	if len(m) == 0 {
		return scheduleRecord{}, false, nil
	}
	n := func(f string) int64 { v, _ := strconv.ParseInt(m[f], 10, 64); return v }
	var tm scheduleTemplate
	if err := json.Unmarshal([]byte(m["tmpl"]), &tm); err != nil {
		return scheduleRecord{}, false, &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op,
			Msg: "schedule " + string(id) + ": template is not JSON", Err: err}
	}
	s := sdk.Schedule{ID: id, Cron: m["cron"], TimeZone: m["tz"], Every: time.Duration(n("every_ms")) * time.Millisecond,
		Start: time.UnixMilli(n("start_ms")), CatchUp: sdk.CatchUp(m["catchup"]), CatchUpMax: int(n("catchup_max")),
		Grace: time.Duration(n("grace_ms")) * time.Millisecond, TickTag: m["tick_tag"], Lane: sdk.LaneID(m["lane"]),
		Kind: tm.Kind, Priority: tm.Priority, RequiredCapabilities: tm.Caps,
		AttemptTimeout: time.Duration(tm.AttemptTimeoutMS) * time.Millisecond}
	if p, ok := m["payload"]; ok && p != "" {
		s.Payload = []byte(p)
	}
	if tm.Retry != nil {
		s.Retry = *tm.Retry
	}
	if len(tm.Tags) > 0 {
		s.Tags = make(map[string]string, len(tm.Tags)/2)
		for i := 0; i+1 < len(tm.Tags); i += 2 {
			s.Tags[string(tm.Tags[i])] = string(tm.Tags[i+1])
		}
	}
	r := scheduleRecord{rev: uint64(n("rev")), next: n("next")}
	r.status = sdk.ScheduleStatus{Schedule: s, Paused: m["paused"] == "1", LastTick: msTime(n("last_tick")),
		LastExecution: sdk.ExecutionID(m["last_eid"]), Fired: uint64(n("fired")), Skipped: uint64(n("skipped")),
		Revision: r.rev, CreatedAt: msTime(n("created_at")), UpdatedAt: msTime(n("updated_at"))}
	if !r.status.Paused {
		r.status.NextTick = msTime(r.next)
	}
	return r, true, nil
}

// sameTiming reports whether a put of s keeps the stored schedule's
// ticks: the same cron, zone and interval, and Start left zero or the
// stored one.
func sameTiming(s sdk.Schedule, old sdk.Schedule) bool {
	return s.Cron == old.Cron && tzField(s) == old.TimeZone && s.Every == old.Every &&
		(s.Start.IsZero() || s.Start.UnixMilli() == old.Start.UnixMilli())
}

// PutSchedule creates or replaces a schedule (sdk.Scheduler). Everything
// is checked before anything is written: the definition (sdk.Schedule
// Resolve), the cron expression and zone, and the execution a tick
// submits (as CreateExecution checks it, payload limit included).
func (b *Backend) PutSchedule(ctx context.Context, s sdk.Schedule) (bool, error) {
	const op = "put_schedule"
	s, err := s.Resolve()
	if err != nil {
		return false, opError(op, err)
	}
	probe := s.Start
	if probe.IsZero() {
		probe = time.Now()
	}
	if err := checkTicks(s, probe); err != nil {
		return false, opError(op, err)
	}
	if _, err := b.resolveCreate(s.Execution(time.UnixMilli(1 << 42))); err != nil {
		return false, opError(op, err)
	}
	tag := sdk.PartitionTag(b.schedulePartition(s.ID))
	key := b.ks.scheduleKey(tag, s.ID)
	all, due := b.ks.scheduleIndexKeys(tag)
	old, exists, now, err := b.readScheduleAt(ctx, op, s.ID)
	if err != nil {
		return false, err
	}
	start, next := s.Start, ""
	switch {
	case exists && sameTiming(s, old.status.Schedule):
		start = old.status.Start // the stored schedule's ticks go on
	default:
		if start.IsZero() {
			start = now
		}
		t, err := newTicks(s, start)
		if err != nil {
			return false, opError(op, err)
		}
		next = msString(t.next(start))
	}
	fields, err := scheduleFields(s, start)
	if err != nil {
		return false, opError(op, err)
	}
	args := append([]string{string(s.ID), strconv.FormatUint(old.rev, 10), next, string(s.Lane)}, fields...)
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_schedule_set", []string{key, all, due}, args...)))
	if err != nil {
		return false, err
	}
	if _, known := b.lanesSeen.Load(s.Lane); !known {
		// Acknowledged as the schedule was: a failover must not keep the
		// schedule and lose its lane (scanners find lanes in the registry).
		if err := b.doAcked(ctx, op, b.registerLane(s.Lane)).Error(); err != nil {
			return false, backendError(op, err)
		}
		b.lanesSeen.Store(s.Lane, struct{}{})
	}
	return r.field(0) == "created", nil
}

// checkTicks checks that schedule s (resolved) parses and ticks at all
// after after: a cron expression that matches no time within five years
// is refused.
func checkTicks(s sdk.Schedule, after time.Time) error {
	t, err := newTicks(s, s.Start)
	if err != nil {
		return err
	}
	if t.next(after).IsZero() {
		return sdk.Validationf(sdk.CodeInvalidInput, "schedule %q: cron %q matches no time within five years", s.ID, s.Cron)
	}
	return nil
}

// GetSchedule reads a schedule (sdk.Scheduler).
func (b *Backend) GetSchedule(ctx context.Context, id sdk.ScheduleID) (sdk.ScheduleStatus, error) {
	const op = "get_schedule"
	if err := id.Validate(); err != nil {
		return sdk.ScheduleStatus{}, opError(op, err)
	}
	r, err := b.readSchedule(ctx, op, id)
	return r.status, err
}

func (b *Backend) readSchedule(ctx context.Context, op string, id sdk.ScheduleID) (scheduleRecord, error) {
	tag := sdk.PartitionTag(b.schedulePartition(id))
	m, err := b.client.Do(ctx, b.client.B().Hgetall().Key(b.ks.scheduleKey(tag, id)).Build()).AsStrMap()
	if err != nil {
		return scheduleRecord{}, backendError(op, err)
	}
	r, ok, err := decodeSchedule(op, id, m)
	if err != nil {
		return r, err
	}
	if !ok {
		return r, scheduleNotFound(op, id)
	}
	return r, nil
}

func scheduleNotFound(op string, id sdk.ScheduleID) error {
	return sdk.NewError(op, sdk.CodeScheduleNotFound, "no schedule "+strconv.Quote(string(id)))
}

// readScheduleAt reads schedule id's record (ok false: there is none) and
// the server's time, in one round trip.
func (b *Backend) readScheduleAt(ctx context.Context, op string, id sdk.ScheduleID) (r scheduleRecord, ok bool, now time.Time, err error) {
	tag := sdk.PartitionTag(b.schedulePartition(id))
	res := b.client.DoMulti(ctx, b.client.B().Hgetall().Key(b.ks.scheduleKey(tag, id)).Build(), b.client.B().Time().Build())
	m, err := res[0].AsStrMap()
	if err != nil {
		return r, false, now, backendError(op, err)
	}
	if now, err = timeOf(op, res[1]); err != nil {
		return r, false, now, err
	}
	r, ok, err = decodeSchedule(op, id, m)
	return r, ok, now, err
}

// ListSchedules pages the schedules in id order (sdk.Scheduler): one
// ZRANGE BYLEX per partition and one HGETALL per schedule listed.
func (b *Backend) ListSchedules(ctx context.Context, after sdk.ScheduleID, limit int) ([]sdk.ScheduleStatus, error) {
	const op = "list_schedules"
	if limit < 0 || limit > 1000 {
		return nil, sdk.NewError(op, sdk.CodeInvalidInput, "limit out of range 0..1000")
	}
	if limit == 0 {
		limit = 100
	}
	if after != "" {
		if err := after.Validate(); err != nil {
			return nil, opError(op, err)
		}
	}
	lo := "-"
	if after != "" {
		lo = "(" + string(after)
	}
	cmds := make(valkey.Commands, 0, b.partitions)
	for p := range b.partitions {
		all, _ := b.ks.scheduleIndexKeys(sdk.PartitionTag(p))
		cmds = append(cmds, b.client.B().Zrange().Key(all).Min(lo).Max("+").Bylex().Limit(0, int64(limit)).Build())
	}
	var ids []string
	for _, res := range b.client.DoMulti(ctx, cmds...) {
		xs, err := res.AsStrSlice()
		if err != nil {
			return nil, backendError(op, err)
		}
		ids = append(ids, xs...)
	}
	sort.Strings(ids)
	ids = ids[:min(len(ids), limit)]
	if len(ids) == 0 {
		return nil, nil
	}
	cmds = cmds[:0]
	for _, id := range ids {
		tag := sdk.PartitionTag(b.schedulePartition(sdk.ScheduleID(id)))
		cmds = append(cmds, b.client.B().Hgetall().Key(b.ks.scheduleKey(tag, sdk.ScheduleID(id))).Build())
	}
	out := make([]sdk.ScheduleStatus, 0, len(ids))
	for i, res := range b.client.DoMulti(ctx, cmds...) {
		m, err := res.AsStrMap()
		if err != nil {
			return nil, backendError(op, err)
		}
		r, ok, err := decodeSchedule(op, sdk.ScheduleID(ids[i]), m)
		if err != nil {
			return nil, err
		}
		if ok { // else deleted since the index was read
			out = append(out, r.status)
		}
	}
	return out, nil
}

// PauseSchedule pauses a schedule (sdk.Scheduler).
func (b *Backend) PauseSchedule(ctx context.Context, id sdk.ScheduleID) error {
	const op = "pause_schedule"
	if err := id.Validate(); err != nil {
		return opError(op, err)
	}
	return b.scheduleState(ctx, op, id, "pause", "0")
}

// ResumeSchedule resumes a paused schedule at its first tick after the
// server's time (sdk.Scheduler).
func (b *Backend) ResumeSchedule(ctx context.Context, id sdk.ScheduleID) error {
	const op = "resume_schedule"
	if err := id.Validate(); err != nil {
		return opError(op, err)
	}
	r, ok, now, err := b.readScheduleAt(ctx, op, id)
	if err != nil {
		return err
	}
	if !ok {
		return scheduleNotFound(op, id)
	}
	if !r.status.Paused {
		return nil
	}
	t, err := newTicks(r.status.Schedule, r.status.Start)
	if err != nil {
		return opError(op, err)
	}
	// At the rev read: a put meanwhile (another timing) is refused, not
	// resumed at a tick of the old one.
	return b.scheduleState(ctx, op, id, "resume", msString(t.next(now)), strconv.FormatUint(r.rev, 10))
}

func (b *Backend) scheduleState(ctx context.Context, op string, id sdk.ScheduleID, mode, next string, rev ...string) error {
	tag := sdk.PartitionTag(b.schedulePartition(id))
	_, due := b.ks.scheduleIndexKeys(tag)
	_, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_schedule_state", []string{b.ks.scheduleKey(tag, id), due},
		append([]string{string(id), mode, next}, rev...)...)))
	return err
}

// DeleteSchedule removes a schedule (sdk.Scheduler).
func (b *Backend) DeleteSchedule(ctx context.Context, id sdk.ScheduleID) error {
	const op = "delete_schedule"
	if err := id.Validate(); err != nil {
		return opError(op, err)
	}
	tag := sdk.PartitionTag(b.schedulePartition(id))
	all, due := b.ks.scheduleIndexKeys(tag)
	_, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_schedule_delete", []string{b.ks.scheduleKey(tag, id), all, due}, string(id))))
	return err
}

// FireDueSchedules fires partition args.Partition's due ticks
// (sdk.Scheduler): it reads the schedules due by args.Now (ZRANGEBYSCORE)
// and their records, plans each one's ticks (planFire) and sends one
// ff_schedule_fire per tick, pipelined, each expecting the schedule as the
// one before it left it.
func (b *Backend) FireDueSchedules(ctx context.Context, a sdk.FireSchedulesArgs) (sdk.FireSchedulesResult, error) {
	const op = "fire_schedules"
	var out sdk.FireSchedulesResult
	if err := b.checkPartition(op, a.Partition); err != nil {
		return out, err
	}
	if a.Limit < 0 {
		return out, sdk.NewError(op, sdk.CodeInvalidInput, "negative limit")
	}
	if a.Limit == 0 {
		a.Limit = 100
	}
	if a.Now.IsZero() {
		return out, sdk.NewError(op, sdk.CodeInvalidInput, "Now is zero")
	}
	tag := sdk.PartitionTag(a.Partition)
	_, due := b.ks.scheduleIndexKeys(tag)
	ids, err := b.client.Do(ctx, b.client.B().Zrangebyscore().Key(due).Min("-inf").Max(strconv.FormatInt(a.Now.UnixMilli(), 10)).
		Limit(0, int64(a.Limit)).Build()).AsStrSlice()
	if err != nil {
		return out, backendError(op, err)
	}
	out.Schedules = len(ids)
	if len(ids) == 0 {
		return out, nil
	}
	reads := make(valkey.Commands, len(ids))
	for i, id := range ids {
		reads[i] = b.client.B().Hgetall().Key(b.ks.scheduleKey(tag, sdk.ScheduleID(id))).Build()
	}
	var failed error // the first schedule that could not be fired
	var calls valkey.Commands
	var firstOf []bool // per call: the first of its schedule's chain
	var skips []int    // per call: the ticks it skips
	for i, res := range b.client.DoMulti(ctx, reads...) {
		m, err := res.AsStrMap()
		if err != nil {
			return out, backendError(op, err)
		}
		id := sdk.ScheduleID(ids[i])
		r, ok, err := decodeSchedule(op, id, m)
		var cs []valkey.Completed
		var skipped int
		if err == nil && ok && !r.status.Paused && r.next != 0 {
			cs, skipped, err = b.fireCalls(a.Partition, r, a.Now)
		}
		if err != nil {
			// A record this build cannot fire (written by hand, or a
			// template a newer build wrote) must not hold back the
			// partition's other schedules: they fire, and the error is
			// returned with the counts.
			failed = cmp.Or(failed, opError(op, err))
			continue
		}
		if len(cs) == 0 {
			out.Changed++ // deleted or paused since the index was read
			continue
		}
		for j, c := range cs {
			calls = append(calls, c)
			firstOf = append(firstOf, j == 0)
			skips = append(skips, 0)
		}
		skips[len(skips)-len(cs)] = skipped
	}
	broken := false // the current chain failed: its later calls fail too
	for at := 0; at < len(calls); at += fireChunk {
		for i, res := range b.client.DoMulti(ctx, calls[at:min(at+fireChunk, len(calls))]...) {
			if firstOf[at+i] {
				broken = false
			}
			r, err := decode(op, res)
			switch {
			case sdk.CodeOf(err) == sdk.CodeScheduleChanged || sdk.CodeOf(err) == sdk.CodeScheduleNotFound:
				if !broken {
					out.Changed++
				}
				broken = true
				continue
			case err != nil:
				return out, err
			}
			out.Skipped += skips[at+i]
			switch {
			case r.field(2) == "1":
				out.Fired++
			case r.field(0) != "":
				out.Duplicates++
			}
		}
	}
	return out, failed
}

// fireCalls builds the chain of ff_schedule_fire calls of one due
// schedule: one per tick to fire, the first carrying the skipped count
// (or one call that only skips and advances).
func (b *Backend) fireCalls(part int, r scheduleRecord, now time.Time) ([]valkey.Completed, int, error) {
	s, tag := r.status.Schedule, sdk.PartitionTag(part)
	t, err := newTicks(s, s.Start)
	if err != nil {
		return nil, 0, err
	}
	plan := planFire(s, t, time.UnixMilli(r.next), now)
	key := b.ks.scheduleKey(tag, s.ID)
	_, due := b.ks.scheduleIndexKeys(tag)
	rev := strconv.FormatUint(r.rev, 10)
	expect := strconv.FormatInt(r.next, 10)
	skipped := strconv.Itoa(plan.skipped)
	if len(plan.fire) == 0 {
		return []valkey.Completed{b.fcall("ff_schedule_fire", []string{key, due}, string(s.ID), rev, expect, "0",
			msString(plan.next), skipped)}, plan.skipped, nil
	}
	out := make([]valkey.Completed, 0, len(plan.fire))
	for i, tick := range plan.fire {
		// Minted on the schedule's partition, not the one the tick's
		// idempotency key hashes to; fresh, so the create skips its
		// existence check.
		a, err := b.resolveCreate(s.Execution(tick))
		if err != nil {
			return nil, 0, err
		}
		c := b.createPlanOf(a, sdk.NewExecutionID(part), part, true)
		next := plan.next
		if i+1 < len(plan.fire) {
			next = plan.fire[i+1]
		}
		tickMS := strconv.FormatInt(tick.UnixMilli(), 10)
		args := append([]string{string(s.ID), rev, expect, tickMS, msString(next), skipped}, c.args...)
		out = append(out, b.fcall("ff_schedule_fire", append([]string{key, due}, c.keys...), args...))
		expect, skipped = msString(next), "0"
	}
	return out, plan.skipped, nil
}
