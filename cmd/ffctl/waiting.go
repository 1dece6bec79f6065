package main

import (
	"context"
	"io"
	"os"
	"strings"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// suspendedJSON is one row of `ffctl suspended -o json`.
type suspendedJSON struct {
	ID           sdk.ExecutionID     `json:"id"`
	Lane         sdk.LaneID          `json:"lane"`
	Kind         string              `json:"kind,omitempty"`
	SuspensionID string              `json:"suspension_id,omitempty"`
	Reason       string              `json:"reason,omitempty"`
	SuspendedAt  time.Time           `json:"suspended_at,omitzero"`
	TimeoutAt    time.Time           `json:"timeout_at,omitzero"`
	OnTimeout    sdk.TimeoutBehavior `json:"on_timeout,omitempty"`
	Condition    conditionJSON       `json:"condition"`
	Waitpoints   []sdk.WaitpointID   `json:"waitpoints"`
	Signals      int                 `json:"signals"`
}

type conditionJSON struct {
	Mode  sdk.MatchMode `json:"mode,omitempty"`
	Names []string      `json:"names,omitempty"`
	Count int           `json:"count,omitempty"`
}

func runSuspended(ctx context.Context, e *env) error {
	a, err := listArgs(e, string(sdk.StateSuspended))
	if err != nil {
		return err
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	w := e.roles.Waiter
	if w == nil {
		return sdk.Unavailable("observe_signals")
	}
	page, err := e.b.ListLaneExecutions(ctx, a)
	if err != nil {
		return err
	}
	rows := make([]suspendedJSON, 0, len(page.Executions))
	for _, r := range page.Executions {
		row := suspendedJSON{ID: r.ID, Lane: r.Lane, Kind: r.Kind, Waitpoints: []sdk.WaitpointID{}}
		s, err := w.ObserveSignals(ctx, r.ID)
		if err != nil {
			return err
		}
		if s != nil {
			row.SuspensionID, row.Reason, row.SuspendedAt, row.TimeoutAt = s.ID, s.Reason, s.SuspendedAt, s.TimeoutAt
			row.OnTimeout, row.Signals = s.OnTimeout, len(s.Signals)
			row.Condition = conditionJSON{Mode: s.Condition.Mode, Names: s.Condition.Names, Count: s.Condition.Count}
			row.Waitpoints = append(row.Waitpoints, s.Waitpoints...)
		}
		rows = append(rows, row)
	}
	if e.json() {
		return writeJSON(e.stdout, map[string]any{"suspended": rows, "next_cursor": page.NextCursor})
	}
	t := newTable(e.stdout, "ID", "LANE", "KIND", "SUSPENDED", "TIMEOUT", "ON TIMEOUT", "CONDITION", "SIGNALS", "WAITPOINTS", "REASON")
	for _, r := range rows {
		wps := make([]string, len(r.Waitpoints))
		for i, wp := range r.Waitpoints {
			wps[i] = string(wp)
		}
		t.row(string(r.ID), string(r.Lane), r.Kind, when(r.SuspendedAt), when(r.TimeoutAt), string(r.OnTimeout),
			condition(r.Condition), itoa(r.Signals), strings.Join(wps, ","), r.Reason)
	}
	return finishPage(e, t, len(rows), "--cursor", string(page.NextCursor))
}

func condition(c conditionJSON) string {
	mode := string(c.Mode)
	if mode == "" {
		mode = string(sdk.MatchAny)
	}
	if c.Mode == sdk.MatchCount {
		mode += " " + itoa(c.Count)
	}
	if len(c.Names) > 0 {
		mode += " of " + strings.Join(c.Names, ",")
	}
	return mode
}

// waitpointJSON is one row of `ffctl waitpoints -o json`.
type waitpointJSON struct {
	ID        sdk.WaitpointID `json:"id"`
	Execution sdk.ExecutionID `json:"execution"`
	Lane      sdk.LaneID      `json:"lane"`
	Label     string          `json:"label"`
	ExpiresAt time.Time       `json:"expires_at,omitzero"`
	Signals   int             `json:"signals"`
}

func runWaitpoints(ctx context.Context, e *env) error {
	// The paging flags are checked as an execution list's; the cursor is
	// a waitpoint id, which has an execution id's shape.
	a, err := listArgs(e, "")
	if err != nil {
		return err
	}
	cursor := sdk.WaitpointID(a.Cursor)
	start := 0
	if cursor != "" {
		start, _ = sdk.ExecutionID(cursor).Partition()
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	w := e.roles.Waiter
	if w == nil {
		return sdk.Unavailable("list_pending_waitpoints")
	}
	var rows []waitpointJSON
	for p := start; p < e.b.Partitions() && len(rows) <= a.Limit; p++ {
		after := sdk.WaitpointID("")
		if p == start {
			after = cursor
		}
		for len(rows) <= a.Limit {
			page, err := w.ListPendingWaitpoints(ctx, p, after, a.Limit+1)
			if err != nil {
				return err
			}
			for _, wp := range page.Entries {
				c, err := e.b.ReadExecutionContext(ctx, wp.ExecutionID)
				if err != nil && sdk.KindOf(err) != sdk.KindNotFound {
					return err
				}
				if a.Lane != "" && c.Lane != a.Lane {
					continue
				}
				rows = append(rows, waitpointJSON{ID: wp.ID, Execution: wp.ExecutionID, Lane: c.Lane, Label: wp.Label,
					ExpiresAt: wp.ExpiresAt, Signals: wp.Signals})
				if len(rows) > a.Limit {
					break
				}
			}
			if page.NextCursor == "" {
				break
			}
			after = page.NextCursor
		}
	}
	next := sdk.WaitpointID("")
	if len(rows) > a.Limit {
		rows = rows[:a.Limit]
		next = rows[a.Limit-1].ID
	}
	if rows == nil {
		rows = []waitpointJSON{}
	}
	if e.json() {
		return writeJSON(e.stdout, map[string]any{"waitpoints": rows, "next_cursor": next})
	}
	t := newTable(e.stdout, "WAITPOINT", "EXECUTION", "LANE", "LABEL", "EXPIRES", "SIGNALS")
	for _, r := range rows {
		t.row(string(r.ID), string(r.Execution), string(r.Lane), r.Label, when(r.ExpiresAt), itoa(r.Signals))
	}
	return finishPage(e, t, len(rows), "--cursor", string(next))
}

func runSignal(ctx context.Context, e *env) error {
	if len(e.pos) > 0 {
		return usagef("unexpected arguments: %s", strings.Join(e.pos, " "))
	}
	if e.token == "" || e.name == "" {
		return usagef("--token and --name are required")
	}
	payload := []byte(e.payload)
	if e.payloadFile != "" {
		if e.payload != "" {
			return usagef("--payload and --payload-file exclude each other")
		}
		var err error
		if e.payloadFile == "-" {
			payload, err = io.ReadAll(io.LimitReader(os.Stdin, sdk.MaxSignalPayloadBytes+1))
		} else {
			payload, err = os.ReadFile(e.payloadFile)
		}
		if err != nil {
			return usagef("--payload-file: %v", err)
		}
	}
	args, err := sdk.DeliverSignalArgs{Token: e.token, Name: e.name, Payload: payload, Source: e.source,
		DedupKey: e.dedupKey}.Resolve()
	if err != nil {
		return err
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	r, err := e.client.DeliverSignal(ctx, args)
	if err != nil {
		return err
	}
	dup := ""
	if r.Duplicate {
		dup = " (duplicate: the dedup key was seen, nothing applied)"
	}
	return done(e, map[string]any{"signal_id": r.SignalID, "execution": r.ExecutionID, "effect": r.Effect,
		"duplicate": r.Duplicate}, "signal %s to %s: %s%s", r.SignalID, r.ExecutionID, r.Effect, dup)
}
