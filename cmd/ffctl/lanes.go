package main

import (
	"context"
	"slices"
	"strings"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// laneJSON is one lane of `ffctl lanes -o json`.
type laneJSON struct {
	Lane    sdk.LaneID     `json:"lane"`
	Paused  bool           `json:"paused"`
	Quota   sdk.QuotaID    `json:"quota,omitempty"`
	Budgets []sdk.BudgetID `json:"budgets,omitempty"`
	// Counts per state, every live state (0 included); terminal states
	// only with --ended.
	Counts  map[sdk.PublicState]int `json:"counts"`
	Blocked int                     `json:"blocked"`
	Ended   int                     `json:"ended"`
}

// laneStates are the live states `ffctl lanes` shows, in order.
var laneStates = []sdk.PublicState{sdk.StateWaiting, sdk.StateDelayed, sdk.StateRateLimited,
	sdk.StateWaitingChildren, sdk.StateActive, sdk.StateSuspended}

var endedStates = []sdk.PublicState{sdk.StateCompleted, sdk.StateFailed, sdk.StateCancelled,
	sdk.StateExpired, sdk.StateSkipped}

func runLanes(ctx context.Context, e *env) error {
	if len(e.pos) > 0 {
		return usagef("unexpected arguments: %s (lanes pause LANE, lanes resume LANE?)", strings.Join(e.pos, " "))
	}
	var lanes []sdk.LaneID
	if e.lane != "" {
		l := sdk.LaneID(e.lane)
		if err := l.Validate(); err != nil {
			return usagef("--lane: %v", err)
		}
		lanes = []sdk.LaneID{l}
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	depths, err := e.b.LaneDepths(ctx, lanes, e.ended)
	if err != nil {
		return err
	}
	shown := laneStates // the states with a column (and a count, 0 included)
	if e.ended {
		shown = append(slices.Clone(laneStates), endedStates...)
	}
	out := make([]laneJSON, 0, len(depths))
	for _, d := range depths {
		l := laneJSON{Lane: d.Lane, Counts: d.Counts, Blocked: d.Blocked, Ended: d.Ended}
		for _, s := range shown {
			l.Counts[s] += 0
		}
		if a := e.roles.Admission; a != nil {
			p, err := a.LanePolicy(ctx, d.Lane)
			if err != nil {
				return err
			}
			l.Paused, l.Quota, l.Budgets = p.Paused, p.Quota, p.Budgets
		}
		out = append(out, l)
	}
	if e.json() {
		return writeJSON(e.stdout, map[string]any{"lanes": out})
	}
	header := []string{"LANE", "PAUSED", "QUOTA", "BLOCKED"}
	for _, s := range shown {
		header = append(header, strings.ToUpper(string(s)))
	}
	if !e.ended {
		header = append(header, "ENDED")
	}
	t := newTable(e.stdout, header...)
	for _, l := range out {
		paused := "no"
		if l.Paused {
			paused = "PAUSED"
		}
		row := []string{string(l.Lane), paused, string(l.Quota), itoa(l.Blocked)}
		for _, s := range shown {
			row = append(row, itoa(l.Counts[s]))
		}
		if !e.ended {
			row = append(row, itoa(l.Ended))
		}
		t.row(row...)
	}
	return finishPage(e, t, len(out), "", "")
}

func runPause(ctx context.Context, e *env, pause bool) error {
	if len(e.pos) != 1 {
		return usagef("want one LANE, got %d argument(s)", len(e.pos))
	}
	lane := sdk.LaneID(e.pos[0])
	if err := lane.Validate(); err != nil {
		return usagef("lane: %v", err)
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	a := e.roles.Admission
	if a == nil {
		return sdk.Unavailable("set_lane_policy")
	}
	p, err := a.LanePolicy(ctx, lane)
	if err != nil {
		return err
	}
	changed := p.Paused != pause
	if changed {
		p.Paused = pause
		if err := a.SetLanePolicy(ctx, lane, p); err != nil {
			return err
		}
	}
	word := map[bool]string{true: "paused", false: "resumed"}[pause]
	note := ""
	if !changed {
		note = " (it was already)"
	}
	return done(e, map[string]any{"lane": lane, "paused": pause, "changed": changed}, "lane %s %s%s", lane, word, note)
}
