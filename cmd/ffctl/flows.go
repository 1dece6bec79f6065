package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// flowJSON is `ffctl flows describe -o json`.
type flowJSON struct {
	ID             sdk.FlowID           `json:"id"`
	State          sdk.FlowState        `json:"state"`
	Revision       uint64               `json:"revision"`
	Nodes          int                  `json:"nodes"`
	EdgeCount      int                  `json:"edge_count"`
	Ended          int                  `json:"ended"`
	NotOK          int                  `json:"not_ok"`
	CreatedAt      time.Time            `json:"created_at,omitzero"`
	EndedAt        time.Time            `json:"ended_at,omitzero"`
	CancelPolicy   sdk.CancelFlowPolicy `json:"cancel_policy,omitempty"`
	CancelReason   string               `json:"cancel_reason,omitempty"`
	PendingCancels int                  `json:"pending_cancels"`
	Members        []memberJSON         `json:"members"`
	Edges          []edgeJSON           `json:"edges"`
}

type memberJSON struct {
	ID    sdk.ExecutionID `json:"id"`
	Lane  sdk.LaneID      `json:"lane,omitempty"`
	Kind  string          `json:"kind,omitempty"`
	State sdk.PublicState `json:"state,omitempty"` // "" once retention deleted it
}

type edgeJSON struct {
	ID         sdk.EdgeID      `json:"id"`
	From       sdk.ExecutionID `json:"from"`
	To         sdk.ExecutionID `json:"to"`
	State      string          `json:"state"`
	Resolution string          `json:"resolution,omitempty"`
}

// flowReadConcurrency bounds the member reads in flight.
const flowReadConcurrency = 32

func runFlow(ctx context.Context, e *env) error {
	if len(e.pos) != 1 {
		return usagef("want one FLOWID, got %d argument(s)", len(e.pos))
	}
	id := sdk.FlowID(e.pos[0])
	if err := id.Validate(); err != nil {
		return usagef("flow id %q: %v", e.pos[0], err)
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	f := e.roles.Flows
	if f == nil {
		return sdk.Unavailable("describe_flow")
	}
	s, err := f.DescribeFlow(ctx, id)
	if err != nil {
		return err
	}
	out := flowJSON{ID: s.ID, State: s.State, Revision: s.Revision, Nodes: s.Nodes, EdgeCount: s.Edges,
		Ended: s.Ended, NotOK: s.NotOK, CreatedAt: s.CreatedAt, EndedAt: s.EndedAt, CancelPolicy: s.CancelPolicy,
		CancelReason: s.CancelReason, PendingCancels: s.PendingCancels,
		Members: make([]memberJSON, len(s.Members)), Edges: []edgeJSON{}}
	edges := make([][]sdk.EdgeSnapshot, len(s.Members))
	errs := make([]error, len(s.Members))
	sem := make(chan struct{}, flowReadConcurrency)
	var wg sync.WaitGroup
	for i, m := range s.Members {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out.Members[i] = memberJSON{ID: m}
			snap, err := e.b.DescribeExecution(ctx, m)
			switch {
			case err == nil:
				out.Members[i] = memberJSON{ID: m, Lane: snap.Lane, Kind: snap.Kind, State: snap.State}
			case sdk.KindOf(err) != sdk.KindNotFound:
				errs[i] = err
				return
			}
			edges[i], errs[i] = f.ListEdges(ctx, m, sdk.Outgoing)
		})
	}
	wg.Wait()
	for i := range s.Members {
		if errs[i] != nil {
			return errs[i]
		}
		for _, ed := range edges[i] {
			out.Edges = append(out.Edges, edgeJSON{ID: ed.ID, From: ed.Upstream, To: ed.Downstream, State: ed.State,
				Resolution: ed.Resolution})
		}
	}
	if e.json() {
		return writeJSON(e.stdout, out)
	}
	cancel := ""
	if s.CancelPolicy != "" {
		cancel = fmt.Sprintf("%s: %s (%d pending)", s.CancelPolicy, s.CancelReason, s.PendingCancels)
	}
	if err := kv(e.stdout, "Flow", string(s.ID), "State", string(s.State), "Revision", fmt.Sprint(s.Revision),
		"Members", fmt.Sprintf("%d (%d ended, %d not completed)", s.Nodes, s.Ended, s.NotOK), "Edges", itoa(s.Edges),
		"Created", when(s.CreatedAt), "Ended", when(s.EndedAt), "Cancel", cancel); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout)
	t := newTable(e.stdout, "MEMBER", "STATE", "LANE", "KIND")
	for _, m := range out.Members {
		state := string(m.State)
		if state == "" {
			state = "(deleted)"
		}
		t.row(string(m.ID), state, string(m.Lane), m.Kind)
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout)
	t = newTable(e.stdout, "EDGE", "FROM", "TO", "STATE", "RESOLUTION")
	for _, ed := range out.Edges {
		t.row(string(ed.ID), string(ed.From), string(ed.To), ed.State, ed.Resolution)
	}
	return finishPage(e, t, len(out.Edges), "", "")
}
