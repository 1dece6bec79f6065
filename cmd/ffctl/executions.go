package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// execJSON is one execution of a list, as -o json prints it.
type execJSON struct {
	ID                 sdk.ExecutionID      `json:"id"`
	Lane               sdk.LaneID           `json:"lane"`
	Kind               string               `json:"kind,omitempty"`
	State              sdk.PublicState      `json:"state"`
	BlockedReason      string               `json:"blocked_reason,omitempty"`
	Priority           int                  `json:"priority"`
	CreatedAt          time.Time            `json:"created_at,omitzero"`
	TransitionAt       time.Time            `json:"transition_at,omitzero"`
	Attempts           int                  `json:"attempts"`
	Retries            int                  `json:"retries"`
	DelayUntil         time.Time            `json:"delay_until,omitzero"`
	WorkerInstance     sdk.WorkerInstanceID `json:"worker_instance,omitempty"`
	LeaseExpiresAt     time.Time            `json:"lease_expires_at,omitzero"`
	EndedAt            time.Time            `json:"ended_at,omitzero"`
	FailureReason      string               `json:"failure_reason,omitempty"`
	FailureCategory    string               `json:"failure_category,omitempty"`
	CancellationReason string               `json:"cancellation_reason,omitempty"`
}

func execOf(r valkeybackend.LaneExecution) execJSON {
	return execJSON{ID: r.ID, Lane: r.Lane, Kind: r.Kind, State: r.State, BlockedReason: r.BlockedReason,
		Priority: r.Priority, CreatedAt: r.CreatedAt, TransitionAt: r.TransitionAt, Attempts: r.TotalAttempts,
		Retries: r.RetryCount, DelayUntil: r.DelayUntil, WorkerInstance: r.WorkerInstanceID,
		LeaseExpiresAt: r.LeaseExpiresAt, EndedAt: r.EndedAt, FailureReason: r.FailureReason,
		FailureCategory: r.FailureCategory, CancellationReason: r.CancellationReason}
}

// listJSON is a page of executions.
type listJSON struct {
	Executions []execJSON `json:"executions"`
	// NextCursor resumes after this page (--cursor); "" on the last page.
	NextCursor sdk.ExecutionID `json:"next_cursor"`
}

// listArgs checks the paging flags (and state, "" for any).
func listArgs(e *env, state string) (valkeybackend.ListLaneArgs, error) {
	a := valkeybackend.ListLaneArgs{Lane: sdk.LaneID(e.lane), State: sdk.PublicState(state), Limit: e.limit}
	if len(e.pos) > 0 {
		return a, usagef("unexpected arguments: %s", strings.Join(e.pos, " "))
	}
	if a.Lane != "" {
		if err := a.Lane.Validate(); err != nil {
			return a, usagef("--lane: %v", err)
		}
	}
	if state != "" && !slices.Contains(valkeybackend.PublicStates(), a.State) {
		return a, usagef("--state %q: want one of %s", state, statesList())
	}
	if e.limit < 1 || e.limit > valkeybackend.ListLaneMax {
		return a, usagef("--limit %d: want 1..%d", e.limit, valkeybackend.ListLaneMax)
	}
	if e.cursor != "" {
		id, err := sdk.ParseExecutionID(e.cursor)
		if err != nil {
			return a, usagef("--cursor: %v", err)
		}
		a.Cursor = id
	}
	return a, nil
}

// parseID checks the one positional argument as an execution id.
func parseID(e *env) (sdk.ExecutionID, error) {
	if len(e.pos) != 1 {
		return "", usagef("want 1 argument(s), got %d (--help shows the usage)", len(e.pos))
	}
	return parseExecID(e.pos[0])
}

// parseExecID parses an execution id argument.
func parseExecID(s string) (sdk.ExecutionID, error) {
	id, err := sdk.ParseExecutionID(s)
	if err != nil {
		return "", usagef("execution id %q: %v", s, err)
	}
	return id, nil
}

func runList(ctx context.Context, e *env) error {
	page, done, err := listPage(ctx, e, e.state)
	if done || err != nil {
		return err
	}
	t := newTable(e.stdout, "ID", "LANE", "KIND", "STATE", "PRIORITY", "ATTEMPTS", "CREATED", "DETAIL")
	for _, r := range page.Executions {
		t.row(string(r.ID), string(r.Lane), r.Kind, string(r.State), itoa(r.Priority), itoa(r.TotalAttempts),
			when(r.CreatedAt), detail(r))
	}
	return finishPage(e, t, len(page.Executions), "--cursor", string(page.NextCursor))
}

// listPage reads one page of executions in state (all states when ""),
// with e's lane, limit and cursor. With -o json it writes the page and
// reports done; else the caller prints it as a table.
func listPage(ctx context.Context, e *env, state string) (page valkeybackend.LaneExecutionsPage, done bool, err error) {
	a, err := listArgs(e, state)
	if err != nil {
		return page, false, err
	}
	if err := e.connect(ctx); err != nil {
		return page, false, err
	}
	if page, err = e.b.ListLaneExecutions(ctx, a); err != nil {
		return page, false, err
	}
	if !e.json() {
		return page, false, nil
	}
	out := listJSON{Executions: []execJSON{}, NextCursor: page.NextCursor}
	for _, r := range page.Executions {
		out.Executions = append(out.Executions, execOf(r))
	}
	return page, true, writeJSON(e.stdout, out)
}

// finishPage flushes a page's table and says how to get the next one:
// flag (--cursor, --after) with next, unless next is "".
func finishPage(e *env, t *table, n int, flag, next string) error {
	if err := t.flush(); err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintln(e.stdout, "(none)")
	}
	if next != "" {
		fmt.Fprintf(e.stdout, "next page: %s '%s'\n", flag, next)
	}
	return nil
}

// detail is a list row's state-specific column.
func detail(r valkeybackend.LaneExecution) string {
	switch r.State {
	case sdk.StateWaiting:
		if r.BlockedReason != "" {
			return "blocked: " + r.BlockedReason
		}
	case sdk.StateDelayed, sdk.StateRateLimited:
		return "until " + when(r.DelayUntil)
	case sdk.StateActive:
		return "worker " + string(r.WorkerInstanceID) + ", lease until " + when(r.LeaseExpiresAt)
	case sdk.StateFailed, sdk.StateExpired:
		return strings.TrimPrefix(r.FailureCategory+": "+r.FailureReason, ": ")
	case sdk.StateCancelled:
		return r.CancellationReason
	case sdk.StateCompleted, sdk.StateSkipped:
		return "ended " + when(r.EndedAt)
	}
	return ""
}

func runDeadLetters(ctx context.Context, e *env) error {
	page, done, err := listPage(ctx, e, string(sdk.StateFailed))
	if done || err != nil {
		return err
	}
	t := newTable(e.stdout, "ID", "LANE", "KIND", "ATTEMPTS", "FAILED AT", "CATEGORY", "REASON")
	for _, r := range page.Executions {
		t.row(string(r.ID), string(r.Lane), r.Kind, itoa(r.TotalAttempts), when(r.EndedAt), r.FailureCategory, r.FailureReason)
	}
	return finishPage(e, t, len(page.Executions), "--cursor", string(page.NextCursor))
}

// attemptJSON is one attempt of describe's -o json.
type attemptJSON struct {
	Index           sdk.AttemptIndex     `json:"index"`
	Type            sdk.AttemptType      `json:"type,omitempty"`
	AttemptID       string               `json:"attempt_id,omitempty"`
	Worker          sdk.WorkerID         `json:"worker,omitempty"`
	WorkerInstance  sdk.WorkerInstanceID `json:"worker_instance,omitempty"`
	LeaseEpoch      uint64               `json:"lease_epoch"`
	Outcome         string               `json:"outcome"`
	EndedAt         time.Time            `json:"ended_at,omitzero"`
	ProgressPercent int                  `json:"progress_percent,omitempty"`
	ProgressMessage string               `json:"progress_message,omitempty"`
	FailureReason   string               `json:"failure_reason,omitempty"`
	FailureCategory string               `json:"failure_category,omitempty"`
}

// describeJSON is describe's -o json.
type describeJSON struct {
	ID                   sdk.ExecutionID      `json:"id"`
	Lane                 sdk.LaneID           `json:"lane"`
	Kind                 string               `json:"kind"`
	State                sdk.PublicState      `json:"state"`
	BlockedReason        string               `json:"blocked_reason,omitempty"`
	Priority             int                  `json:"priority"`
	RequiredCapabilities []string             `json:"required_capabilities,omitempty"`
	Tags                 map[string]string    `json:"tags,omitempty"`
	Flow                 string               `json:"flow,omitempty"`
	CreatedAt            time.Time            `json:"created_at,omitzero"`
	StartedAt            time.Time            `json:"started_at,omitzero"`
	EndedAt              time.Time            `json:"ended_at,omitzero"`
	DelayUntil           time.Time            `json:"delay_until,omitzero"`
	Deadline             time.Time            `json:"deadline,omitzero"`
	CurrentAttempt       sdk.AttemptIndex     `json:"current_attempt"`
	TotalAttempts        int                  `json:"total_attempts"`
	Retries              int                  `json:"retries"`
	LeaseID              string               `json:"lease_id,omitempty"`
	LeaseEpoch           uint64               `json:"lease_epoch"`
	LeaseExpiresAt       time.Time            `json:"lease_expires_at,omitzero"`
	WorkerInstance       sdk.WorkerInstanceID `json:"worker_instance,omitempty"`
	FailureReason        string               `json:"failure_reason,omitempty"`
	FailureCategory      string               `json:"failure_category,omitempty"`
	CancellationReason   string               `json:"cancellation_reason,omitempty"`
	Attempts             []attemptJSON        `json:"attempts"`
	// Fields is the raw record, every field the backend stores.
	Fields map[string]string `json:"fields"`
}

func runDescribe(ctx context.Context, e *env) error {
	id, err := parseID(e)
	if err != nil {
		return err
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	info, err := e.b.ReadExecutionInfo(ctx, id)
	if err != nil {
		return err
	}
	s := info.Snapshot
	d := describeJSON{ID: s.ID, Lane: s.Lane, Kind: s.Kind, State: s.State, BlockedReason: s.BlockedReason,
		Priority: s.Priority, RequiredCapabilities: s.RequiredCapabilities, Tags: s.Tags, Flow: info.Fields["flow"],
		CreatedAt: s.CreatedAt, StartedAt: s.StartedAt, EndedAt: s.CompletedAt, DelayUntil: s.DelayUntil,
		Deadline: s.Deadline, CurrentAttempt: s.CurrentAttemptIndex, TotalAttempts: s.TotalAttempts,
		Retries: s.RetryCount, LeaseEpoch: s.LeaseEpoch, LeaseExpiresAt: s.LeaseExpiresAt,
		WorkerInstance: s.WorkerInstanceID, FailureReason: s.FailureReason, FailureCategory: s.FailureCategory,
		CancellationReason: s.CancellationReason, Attempts: []attemptJSON{}, Fields: info.Fields}
	if s.State == sdk.StateActive {
		d.LeaseID = info.Fields["lease_id"]
	}
	for _, a := range info.Attempts {
		d.Attempts = append(d.Attempts, attemptJSON{Index: a.Index, Type: a.Type, AttemptID: a.AttemptID,
			Worker: a.WorkerID, WorkerInstance: a.WorkerInstanceID, LeaseEpoch: a.LeaseEpoch, Outcome: outcome(a),
			EndedAt: a.EndedAt, ProgressPercent: a.ProgressPercent, ProgressMessage: a.ProgressMessage,
			FailureReason: a.FailureReason, FailureCategory: a.FailureCategory})
	}
	if e.json() {
		return writeJSON(e.stdout, d)
	}
	lease := "-"
	if s.State == sdk.StateActive {
		lease = fmt.Sprintf("%s (epoch %d) held by %s until %s", d.LeaseID, s.LeaseEpoch, s.WorkerInstanceID, when(s.LeaseExpiresAt))
	}
	state := string(s.State)
	if s.BlockedReason != "" {
		state += " (blocked: " + s.BlockedReason + ")"
	}
	if err := kv(e.stdout, "ID", string(s.ID), "Lane", string(s.Lane), "Kind", s.Kind, "State", state,
		"Priority", itoa(s.Priority), "Flow", d.Flow, "Capabilities", strings.Join(s.RequiredCapabilities, ","),
		"Tags", tagsText(s.Tags), "Created", when(s.CreatedAt), "Started", when(s.StartedAt),
		"Ended", when(s.CompletedAt), "Delay until", when(s.DelayUntil), "Deadline", when(s.Deadline),
		"Attempts", fmt.Sprintf("%d (current #%d, retries %d)", s.TotalAttempts, s.CurrentAttemptIndex, s.RetryCount),
		"Lease", lease, "Failure", strings.TrimPrefix(s.FailureCategory+": "+s.FailureReason, ": "),
		"Cancellation", s.CancellationReason); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout)
	t := newTable(e.stdout, "ATTEMPT", "TYPE", "WORKER", "INSTANCE", "EPOCH", "OUTCOME", "ENDED", "PROGRESS", "CATEGORY", "REASON")
	for _, a := range info.Attempts {
		progress := ""
		if a.ProgressPercent > 0 || a.ProgressMessage != "" {
			progress = strings.TrimSuffix(itoa(a.ProgressPercent)+"% "+a.ProgressMessage, " ")
		}
		t.row(itoa(int(a.Index)), string(a.Type), string(a.WorkerID), string(a.WorkerInstanceID),
			strconv.FormatUint(a.LeaseEpoch, 10), outcome(a), when(a.EndedAt), progress, a.FailureCategory, a.FailureReason)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(info.Attempts) == 0 {
		fmt.Fprintln(e.stdout, "(no attempt yet)")
	}
	return nil
}

// outcome names how an attempt ended, "running" while it has not.
func outcome(a sdk.AttemptRecord) string {
	if a.Outcome == "" {
		return "running"
	}
	return a.Outcome
}

func runCancel(ctx context.Context, e *env) error {
	id, err := parseID(e)
	if err != nil {
		return err
	}
	if err := sdk.CheckReason("--reason", e.reason); err != nil {
		return err
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	r, err := e.b.CancelExecution(ctx, sdk.CancelExecutionArgs{ExecutionID: id, Reason: e.reason, RequestedBy: "ffctl"})
	if err != nil {
		return err
	}
	return done(e, map[string]any{"id": id, "action": "cancelled", "previous_state": r.PreviousState},
		"cancelled %s (was %s)", id, r.PreviousState)
}

func runReplay(ctx context.Context, e *env) error {
	id, err := parseID(e)
	if err != nil {
		return err
	}
	if e.maxReplays < 1 {
		return usagef("--max-replays %d: want 1 or more", e.maxReplays)
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	r, err := e.b.ReplayExecution(ctx, sdk.ReplayExecutionArgs{ExecutionID: id, MaxReplays: e.maxReplays})
	if err != nil {
		return err
	}
	return done(e, map[string]any{"id": id, "action": "replayed", "previous_state": r.PreviousState},
		"replayed %s (was %s)", id, r.PreviousState)
}

func runPriority(ctx context.Context, e *env) error {
	if len(e.pos) != 2 {
		return usagef("want ID and N, got %d argument(s)", len(e.pos))
	}
	id, err := parseExecID(e.pos[0])
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(e.pos[1])
	if err != nil || n < sdk.MinPriority || n > sdk.MaxPriority {
		return usagef("priority %q: want a whole number in %d..%d", e.pos[1], sdk.MinPriority, sdk.MaxPriority)
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	r, err := e.client.ChangePriority(ctx, id, n)
	if err != nil {
		return err
	}
	return done(e, map[string]any{"id": id, "action": "priority", "old": r.Old, "new": r.New},
		"priority of %s: %d -> %d", id, r.Old, r.New)
}

func runRevoke(ctx context.Context, e *env) error {
	id, err := parseID(e)
	if err != nil {
		return err
	}
	if err := sdk.CheckReason("--reason", e.reason); err != nil {
		return err
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	r, err := e.b.RevokeLease(ctx, sdk.RevokeLeaseArgs{ExecutionID: id, Reason: e.reason})
	if err != nil {
		return err
	}
	return done(e, map[string]any{"id": id, "action": "revoked", "lease_id": r.LeaseID, "epoch": r.Epoch},
		"revoked lease %s (epoch %d) of %s; the engine requeues it", r.LeaseID, r.Epoch, id)
}

// done prints an action's outcome: v as JSON, or the formatted line.
func done(e *env, v any, format string, a ...any) error {
	if e.json() {
		return writeJSON(e.stdout, v)
	}
	_, err := fmt.Fprintf(e.stdout, format+"\n", a...)
	return err
}
