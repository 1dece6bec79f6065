package main

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// scheduleJSON is one schedule of `ffctl schedules` and `schedules
// describe` -o json.
type scheduleJSON struct {
	ID            sdk.ScheduleID    `json:"id"`
	Cron          string            `json:"cron,omitempty"`
	TimeZone      string            `json:"time_zone,omitempty"`
	EveryMS       int64             `json:"every_ms,omitempty"`
	Start         time.Time         `json:"start,omitzero"`
	CatchUp       sdk.CatchUp       `json:"catch_up"`
	CatchUpMax    int               `json:"catch_up_max"`
	GraceMS       int64             `json:"grace_ms"`
	TickTag       string            `json:"tick_tag,omitempty"`
	Lane          sdk.LaneID        `json:"lane"`
	Kind          string            `json:"kind"`
	Priority      int               `json:"priority"`
	Tags          map[string]string `json:"tags,omitempty"`
	Payload       string            `json:"payload,omitempty"`
	PayloadBase64 string            `json:"payload_base64,omitempty"`
	Paused        bool              `json:"paused"`
	NextTick      time.Time         `json:"next_tick,omitzero"`
	LastTick      time.Time         `json:"last_tick,omitzero"`
	LastExecution sdk.ExecutionID   `json:"last_execution,omitempty"`
	Fired         uint64            `json:"fired"`
	Skipped       uint64            `json:"skipped"`
	Revision      uint64            `json:"revision"`
	CreatedAt     time.Time         `json:"created_at,omitzero"`
	UpdatedAt     time.Time         `json:"updated_at,omitzero"`
}

func scheduleOf(s sdk.ScheduleStatus) scheduleJSON {
	j := scheduleJSON{ID: s.ID, Cron: s.Cron, TimeZone: s.TimeZone, EveryMS: s.Every.Milliseconds(), Start: s.Start,
		CatchUp: s.CatchUp, CatchUpMax: s.CatchUpMax, GraceMS: s.Grace.Milliseconds(), TickTag: s.TickTag, Lane: s.Lane,
		Kind: s.Kind, Priority: s.Priority, Tags: s.Tags, Paused: s.Paused, NextTick: s.NextTick, LastTick: s.LastTick,
		LastExecution: s.LastExecution, Fired: s.Fired, Skipped: s.Skipped, Revision: s.Revision,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
	j.Payload, j.PayloadBase64 = payloadJSON(s.Payload)
	return j
}

// timing renders when a schedule ticks: its cron expression and zone, or
// its interval.
func timing(s sdk.ScheduleStatus) string {
	if s.Cron != "" {
		return s.Cron + " (" + s.TimeZone + ")"
	}
	return "every " + s.Every.String()
}

// connectScheduler connects and returns the deployment's scheduler.
func (e *env) connectScheduler(ctx context.Context) (sdk.Scheduler, error) {
	if err := e.connect(ctx); err != nil {
		return nil, err
	}
	if e.roles.Schedules == nil {
		return nil, sdk.Unavailable("schedules")
	}
	return e.roles.Schedules, nil
}

// scheduleArg is the one positional argument, a schedule id.
func scheduleArg(e *env) (sdk.ScheduleID, error) {
	if len(e.pos) != 1 {
		return "", usagef("want one schedule ID, got %d argument(s)", len(e.pos))
	}
	id := sdk.ScheduleID(e.pos[0])
	if err := id.Validate(); err != nil {
		return "", usagef("schedule id: %v", err)
	}
	return id, nil
}

func runSchedules(ctx context.Context, e *env) error {
	if len(e.pos) > 0 {
		return usagef("unexpected arguments: %s (schedules describe|pause|resume|delete ID?)", strings.Join(e.pos, " "))
	}
	if e.limit < 1 || e.limit > 1000 {
		return usagef("--limit %d: want 1..1000", e.limit)
	}
	after := sdk.ScheduleID(e.after)
	if after != "" {
		if err := after.Validate(); err != nil {
			return usagef("--after: %v", err)
		}
	}
	sc, err := e.connectScheduler(ctx)
	if err != nil {
		return err
	}
	list, err := sc.ListSchedules(ctx, after, e.limit)
	if err != nil {
		return err
	}
	next := ""
	if len(list) == e.limit {
		// A full page has a next one only when a schedule follows: one
		// more read of one says (the limit may be the list's 1000 already).
		last := list[len(list)-1].ID
		more, err := sc.ListSchedules(ctx, last, 1)
		if err != nil {
			return err
		}
		if len(more) > 0 {
			next = string(last)
		}
	}
	if e.json() {
		out := make([]scheduleJSON, len(list))
		for i, s := range list {
			out[i] = scheduleOf(s)
		}
		return writeJSON(e.stdout, map[string]any{"schedules": out, "next": next})
	}
	t := newTable(e.stdout, "ID", "WHEN", "LANE", "KIND", "PAUSED", "NEXT TICK", "LAST TICK", "FIRED", "SKIPPED")
	for _, s := range list {
		paused := "no"
		if s.Paused {
			paused = "PAUSED"
		}
		t.row(string(s.ID), timing(s), string(s.Lane), s.Kind, paused, when(s.NextTick), when(s.LastTick),
			strconv.FormatUint(s.Fired, 10), strconv.FormatUint(s.Skipped, 10))
	}
	return finishPage(e, t, len(list), "--after", next)
}

func runScheduleDescribe(ctx context.Context, e *env) error {
	id, err := scheduleArg(e)
	if err != nil {
		return err
	}
	sc, err := e.connectScheduler(ctx)
	if err != nil {
		return err
	}
	s, err := sc.GetSchedule(ctx, id)
	if err != nil {
		return err
	}
	if e.json() {
		return writeJSON(e.stdout, scheduleOf(s))
	}
	catchUp := string(s.CatchUp)
	if s.CatchUp == sdk.CatchUpAll {
		catchUp += " (up to " + strconv.Itoa(s.CatchUpMax) + ")"
	}
	return kv(e.stdout, "id", string(s.ID), "when", timing(s), "start", when(s.Start), "catch-up", catchUp,
		"grace", s.Grace.String(), "tick tag", s.TickTag, "lane", string(s.Lane), "kind", s.Kind,
		"priority", itoa(s.Priority), "tags", tagsText(s.Tags), "payload", payloadText(s.Payload),
		"paused", strconv.FormatBool(s.Paused), "next tick", when(s.NextTick), "last tick", when(s.LastTick),
		"last execution", string(s.LastExecution), "fired", strconv.FormatUint(s.Fired, 10),
		"skipped", strconv.FormatUint(s.Skipped, 10), "revision", strconv.FormatUint(s.Revision, 10),
		"created", when(s.CreatedAt), "updated", when(s.UpdatedAt))
}

// runScheduleAction pauses, resumes or deletes a schedule.
func runScheduleAction(action string) func(ctx context.Context, e *env) error {
	return func(ctx context.Context, e *env) error {
		id, err := scheduleArg(e)
		if err != nil {
			return err
		}
		sc, err := e.connectScheduler(ctx)
		if err != nil {
			return err
		}
		switch action {
		case "pause":
			err = sc.PauseSchedule(ctx, id)
		case "resume":
			err = sc.ResumeSchedule(ctx, id)
		default:
			err = sc.DeleteSchedule(ctx, id)
		}
		if err != nil {
			return err
		}
		word := map[string]string{"pause": "paused", "resume": "resumed", "delete": "deleted"}[action]
		return done(e, map[string]any{"id": id, "action": action}, "schedule %s %s", id, word)
	}
}
