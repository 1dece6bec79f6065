package valkeybackend

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Flows (sdk.Flower): the library's flows section holds the model; every
// call here is one FCALL on the flow's partition, or reads of its keys.

var _ sdk.Flower = (*Backend)(nil)

// flowPartition checks flow id f and returns its tag.
func (b *Backend) flowPartition(op string, f sdk.FlowID) (string, error) {
	p, err := f.Partition()
	if err != nil {
		return "", opError(op, err)
	}
	if err := b.checkPartition(op, p); err != nil {
		return "", err
	}
	return sdk.PartitionTag(p), nil
}

// flowHandoff is where a ready child's offers are (” without hand-offs).
func (b *Backend) flowHandoff() string {
	if !b.handoffOn() {
		return ""
	}
	return b.offersScope()
}

// SubmitFlow creates a flow with its members and edges in one
// ff_flow_submit (sdk.Flower).
func (b *Backend) SubmitFlow(ctx context.Context, spec sdk.FlowSpec) (sdk.FlowSubmission, error) {
	const op = "submit_flow"
	spec, ends, err := spec.Resolve(int(b.next.Add(1) % uint64(b.partitions)))
	if err != nil {
		return sdk.FlowSubmission{}, opError(op, err)
	}
	tag, err := b.flowPartition(op, spec.ID)
	if err != nil {
		return sdk.FlowSubmission{}, err
	}
	pk := b.ks.partKeysOf(tag)
	keys := []string{pk.deadlines, pk.all, b.ks.arrivalsChannel(tag), pk.leases, pk.timeouts, b.ks.flowKeysOf(spec.ID).core}
	args := []string{string(spec.ID), b.flowHandoff(), strconv.Itoa(len(spec.Members)), strconv.Itoa(len(spec.Edges))}
	lanes := map[sdk.LaneID]bool{}
	sub := sdk.FlowSubmission{ID: spec.ID, Members: make(map[string]sdk.ExecutionID, len(spec.Members))}
	for _, m := range spec.Members {
		plan, err := b.planCreate(m.Args, false, -1)
		if err != nil {
			return sdk.FlowSubmission{}, opError(op, err)
		}
		policy, _ := m.Policy.Wire() // checked by Resolve
		args = append(append(args, policy), plan.args...)
		if !lanes[plan.a.Lane] && b.handoffOn() {
			keys = append(keys, b.offersKeyFor(tag, plan.a.Lane))
		}
		lanes[plan.a.Lane] = true
		sub.Members[m.Name] = m.Args.ID
	}
	for j, e := range spec.Edges {
		args = append(args, string(e.ID), strconv.Itoa(ends[j][0]+1), strconv.Itoa(ends[j][1]+1))
	}
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_flow_submit", keys, args...)))
	if err != nil {
		return sdk.FlowSubmission{}, err
	}
	// The members' lanes join the registry (scanners and subscriptions
	// find lanes there) once the flow exists, so a refused submit writes
	// nothing. A repeated submit registers only the lanes its flow's
	// members use (the library names them, v38): a retry whose first try
	// failed to register them does, and a different spec's lanes never
	// join. A lane known here already costs nothing.
	existed := r.field(0) == "exists"
	if existed {
		lanes = map[sdk.LaneID]bool{}
		for _, l := range r.fields[min(2, len(r.fields)):] {
			lanes[sdk.LaneID(l)] = true
		}
	}
	unseen := map[sdk.LaneID]bool{}
	for l := range lanes {
		if _, ok := b.lanesSeen.Load(l); !ok {
			unseen[l] = true
		}
	}
	if len(unseen) > 0 {
		if err := b.doAcked(ctx, op, b.registerLanes(unseen)).Error(); err != nil {
			return sdk.FlowSubmission{}, backendError(op, err)
		}
		for l := range unseen {
			b.lanesSeen.Store(l, struct{}{})
		}
	}
	if existed {
		sub.Existed, sub.FlowState = true, sdk.FlowState(r.field(1))
		return sub, nil
	}
	sub.FlowState = sdk.FlowOpen
	sub.States = make(map[string]sdk.PublicState, len(spec.Members))
	for i, m := range spec.Members {
		sub.States[m.Name] = sdk.PublicState(r.field(1 + i))
	}
	return sub, nil
}

// CreateFlow creates an empty flow (sdk.Flower).
func (b *Backend) CreateFlow(ctx context.Context, id sdk.FlowID) (bool, error) {
	const op = "create_flow"
	if _, err := b.flowPartition(op, id); err != nil {
		return false, err
	}
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_flow_create", []string{b.ks.flowKeysOf(id).core},
		string(id), b.flowHandoff())))
	if err != nil {
		return false, err
	}
	return r.field(0) == "created", nil
}

// memberOf checks that execution id lies on flow f's partition.
func (b *Backend) memberOf(op string, f sdk.FlowID, id sdk.ExecutionID) error {
	tag, err := b.flowPartition(op, f)
	if err != nil {
		return err
	}
	if _, err := b.partitionOf(op, id); err != nil {
		return err
	}
	if id.Tag() != tag {
		return sdk.NewError(op, sdk.CodeInvalidInput, "a member must be on its flow's partition (FlowID.NewMemberID)")
	}
	return nil
}

// AddExecutionToFlow adds a live execution to a flow (sdk.Flower).
func (b *Backend) AddExecutionToFlow(ctx context.Context, flow sdk.FlowID, id sdk.ExecutionID) (bool, error) {
	const op = "add_execution_to_flow"
	if err := b.memberOf(op, flow, id); err != nil {
		return false, err
	}
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_flow_add", []string{b.ks.flowKeysOf(flow).core, b.ks.coreKey(id)},
		string(flow), string(id))))
	if err != nil {
		return false, err
	}
	return r.field(0) == "added", nil
}

// StageDependencyEdge stages an edge under the graph revision's
// compare-and-set (sdk.Flower).
func (b *Backend) StageDependencyEdge(ctx context.Context, a sdk.StageEdgeArgs) (uint64, error) {
	const op = "stage_dependency_edge"
	if err := b.memberOf(op, a.Flow, a.Upstream); err != nil {
		return 0, err
	}
	if err := b.memberOf(op, a.Flow, a.Downstream); err != nil {
		return 0, err
	}
	if err := a.Edge.Validate(); err != nil {
		return 0, opError(op, err)
	}
	fk := b.ks.flowKeysOf(a.Flow)
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_flow_stage_edge",
		[]string{fk.core, fk.members, fk.edges, b.ks.coreKey(a.Downstream)},
		string(a.Flow), string(a.Edge), string(a.Upstream), string(a.Downstream),
		strconv.FormatUint(a.ExpectedRevision, 10))))
	if err != nil {
		return 0, err
	}
	return r.uint(0), nil
}

// edgeRecord is an edge as ff:f:F:edges holds it.
type edgeRecord struct {
	up, down sdk.ExecutionID
	state    string
	stagedAt time.Time
}

func parseEdge(rec string) (edgeRecord, bool) {
	f := strings.Fields(rec)
	if len(f) != 4 {
		return edgeRecord{}, false
	}
	at, _ := strconv.ParseInt(f[3], 10, 64)
	return edgeRecord{up: sdk.ExecutionID(f[0]), down: sdk.ExecutionID(f[1]), state: f[2], stagedAt: msTime(at)}, true
}

// ApplyDependencyToChild applies a staged edge (sdk.Flower): one read of
// the edge for its ends, then ff_flow_apply_edge.
func (b *Backend) ApplyDependencyToChild(ctx context.Context, flow sdk.FlowID, edge sdk.EdgeID) (sdk.PublicState, error) {
	const op = "apply_dependency_to_child"
	if _, err := b.flowPartition(op, flow); err != nil {
		return "", err
	}
	if err := edge.Validate(); err != nil {
		return "", opError(op, err)
	}
	fk := b.ks.flowKeysOf(flow)
	rec, err := b.client.Do(ctx, b.client.B().Hget().Key(fk.edges).Field(string(edge)).Build()).ToString()
	if isNil(err) {
		return "", sdk.NewError(op, sdk.CodeEdgeNotFound, string(edge))
	}
	if err != nil {
		return "", backendError(op, err)
	}
	e, ok := parseEdge(rec)
	if !ok || e.up.Validate() != nil || e.down.Validate() != nil {
		return "", &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "malformed edge record"}
	}
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_flow_apply_edge",
		[]string{fk.core, fk.edges, b.ks.coreKey(e.up), b.ks.coreKey(e.down)},
		string(flow), string(edge), string(e.up), string(e.down))))
	if err != nil {
		return "", err
	}
	if r.field(0) == "already_applied" {
		st, err := b.client.Do(ctx, b.client.B().Hget().Key(b.ks.coreKey(e.down)).Field("state").Build()).ToString()
		if err != nil && !isNil(err) {
			return "", backendError(op, err)
		}
		return sdk.PublicState(st), nil
	}
	return sdk.PublicState(r.field(0)), nil
}

// SetEdgeGroupPolicy sets a member's dependency policy (sdk.Flower).
func (b *Backend) SetEdgeGroupPolicy(ctx context.Context, flow sdk.FlowID, id sdk.ExecutionID, p sdk.DependencyPolicy) error {
	const op = "set_edge_group_policy"
	if err := b.memberOf(op, flow, id); err != nil {
		return err
	}
	w, err := p.Wire()
	if err != nil {
		return opError(op, err)
	}
	_, err = decode(op, b.doAcked(ctx, op, b.fcall("ff_flow_edge_policy", []string{b.ks.flowKeysOf(flow).core, b.ks.coreKey(id)},
		string(flow), string(id), w)))
	return err
}

// WaitChildren releases h's lease until its inbound dependencies settle
// (sdk.Flower); false when they had, and the lease is kept.
func (b *Backend) WaitChildren(ctx context.Context, h sdk.Handle) (bool, error) {
	const op = "wait_children"
	tag, err := b.handleTag(op, h)
	if err != nil {
		return false, err
	}
	pk := b.ks.partKeysOf(tag)
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_flow_wait_children",
		[]string{b.ks.coreKey(h.ExecutionID), pk.leases, pk.timeouts}, fenceArgs(h)...)))
	if err != nil {
		return false, err
	}
	return r.field(0) == "waiting", nil
}

// DescribeFlow reads a flow's record and members (sdk.Flower).
func (b *Backend) DescribeFlow(ctx context.Context, id sdk.FlowID) (sdk.FlowSnapshot, error) {
	const op = "describe_flow"
	if _, err := b.flowPartition(op, id); err != nil {
		return sdk.FlowSnapshot{}, err
	}
	fk := b.ks.flowKeysOf(id)
	res := b.reads.DoMulti(ctx, b.client.B().Hgetall().Key(fk.core).Build(),
		b.client.B().Smembers().Key(fk.members).Build(), b.client.B().Scard().Key(fk.cancels).Build())
	m, err := res[0].AsStrMap()
	if err != nil {
		return sdk.FlowSnapshot{}, backendError(op, err)
	}
	if len(m) == 0 {
		return sdk.FlowSnapshot{}, sdk.NewError(op, sdk.CodeFlowNotFound, string(id))
	}
	members, err := res[1].AsStrSlice()
	if err != nil {
		return sdk.FlowSnapshot{}, backendError(op, err)
	}
	pending, err := res[2].AsInt64()
	if err != nil {
		return sdk.FlowSnapshot{}, backendError(op, err)
	}
	s := sdk.FlowSnapshot{ID: id, State: sdk.FlowState(m["state"]), Revision: uint64(parseInt(m["rev"])),
		Nodes: int(parseInt(m["nodes"])), Edges: int(parseInt(m["edges"])), Ended: int(parseInt(m["done"])),
		NotOK: int(parseInt(m["bad"])), CreatedAt: msTime(parseInt(m["created_at"])), EndedAt: msTime(parseInt(m["ended_at"])),
		CancelPolicy: sdk.CancelFlowPolicy(m["cancel_policy"]), CancelReason: m["cancel_reason"], PendingCancels: int(pending)}
	sort.Strings(members)
	for _, e := range members {
		s.Members = append(s.Members, sdk.ExecutionID(e))
	}
	return s, nil
}

// ListFlows pages a partition's flows in id order (sdk.Flower).
func (b *Backend) ListFlows(ctx context.Context, partition int, cursor sdk.FlowID, limit int) (sdk.ListFlowsPage, error) {
	const op = "list_flows"
	if err := b.checkPartition(op, partition); err != nil {
		return sdk.ListFlowsPage{}, err
	}
	if cursor != "" {
		if err := cursor.Validate(); err != nil {
			return sdk.ListFlowsPage{}, opError(op, err)
		}
	}
	if limit <= 0 || limit > 1000 {
		return sdk.ListFlowsPage{}, sdk.NewError(op, sdk.CodeInvalidInput, "limit must be 1..1000")
	}
	min := "-"
	if cursor != "" {
		min = "(" + string(cursor)
	}
	ids, err := b.reads.Do(ctx, b.client.B().Zrange().Key(b.ks.flowIndexesOf(sdk.PartitionTag(partition)).flows).
		Min(min).Max("+").Bylex().Limit(0, int64(limit)+1).Build()).AsStrSlice()
	if err != nil {
		return sdk.ListFlowsPage{}, backendError(op, err)
	}
	var page sdk.ListFlowsPage
	if len(ids) > limit {
		ids = ids[:limit]
		page.NextCursor = sdk.FlowID(ids[limit-1])
	}
	if len(ids) == 0 {
		return page, nil
	}
	cmds := make(valkey.Commands, len(ids))
	for i, f := range ids {
		cmds[i] = b.client.B().Hmget().Key(b.ks.flowKeysOf(sdk.FlowID(f)).core).Field("state", "nodes", "created_at").Build()
	}
	for i, res := range b.reads.DoMulti(ctx, cmds...) {
		v, err := res.ToArray()
		if err != nil {
			return sdk.ListFlowsPage{}, backendError(op, err)
		}
		str := func(j int) string { s, _ := v[j].ToString(); return s }
		page.Flows = append(page.Flows, sdk.FlowSummary{ID: sdk.FlowID(ids[i]), State: sdk.FlowState(str(0)),
			Nodes: int(parseInt(str(1))), CreatedAt: msTime(parseInt(str(2)))})
	}
	return page, nil
}

// ListEdges lists a member's edges in one direction (sdk.Flower): the
// flow's edges read once, filtered, with their upstreams' states.
func (b *Backend) ListEdges(ctx context.Context, id sdk.ExecutionID, dir sdk.EdgeDirection) ([]sdk.EdgeSnapshot, error) {
	const op = "list_edges"
	if dir != sdk.Outgoing && dir != sdk.Incoming {
		return nil, sdk.NewError(op, sdk.CodeInvalidInput, "direction must be outgoing or incoming")
	}
	flow, err := b.ResolveExecutionFlowID(ctx, id)
	if err != nil || flow == "" {
		return nil, err
	}
	recs, err := b.reads.Do(ctx, b.client.B().Hgetall().Key(b.ks.flowKeysOf(flow).edges).Build()).AsStrMap()
	if err != nil {
		return nil, backendError(op, err)
	}
	var out []sdk.EdgeSnapshot
	for eid, rec := range recs {
		e, ok := parseEdge(rec)
		if !ok || (dir == sdk.Outgoing && e.up != id) || (dir == sdk.Incoming && e.down != id) {
			continue
		}
		out = append(out, sdk.EdgeSnapshot{ID: sdk.EdgeID(eid), Flow: flow, Upstream: e.up, Downstream: e.down,
			State: e.state, StagedAt: e.stagedAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, b.resolveEdges(ctx, op, out)
}

// resolveEdges fills each edge's Resolution from its upstream's state.
func (b *Backend) resolveEdges(ctx context.Context, op string, es []sdk.EdgeSnapshot) error {
	if len(es) == 0 {
		return nil
	}
	cmds := make(valkey.Commands, len(es))
	for i, e := range es {
		cmds[i] = b.client.B().Hget().Key(b.ks.coreKey(e.Upstream)).Field("state").Build()
	}
	for i, res := range b.client.DoMulti(ctx, cmds...) {
		st, err := res.ToString()
		if err != nil && !isNil(err) {
			return backendError(op, err)
		}
		switch s := sdk.PublicState(st); {
		case s == sdk.StateCompleted:
			es[i].Resolution = "satisfied"
		case s.Terminal() || isNil(err):
			es[i].Resolution = "unsatisfied"
		}
	}
	return nil
}

// DescribeEdge reads one edge (sdk.Flower); nil when the flow has none by
// that id.
func (b *Backend) DescribeEdge(ctx context.Context, flow sdk.FlowID, edge sdk.EdgeID) (*sdk.EdgeSnapshot, error) {
	const op = "describe_edge"
	if _, err := b.flowPartition(op, flow); err != nil {
		return nil, err
	}
	if err := edge.Validate(); err != nil {
		return nil, opError(op, err)
	}
	rec, err := b.reads.Do(ctx, b.client.B().Hget().Key(b.ks.flowKeysOf(flow).edges).Field(string(edge)).Build()).ToString()
	if isNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, backendError(op, err)
	}
	e, ok := parseEdge(rec)
	if !ok {
		return nil, &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "malformed edge record"}
	}
	s := []sdk.EdgeSnapshot{{ID: edge, Flow: flow, Upstream: e.up, Downstream: e.down, State: e.state, StagedAt: e.stagedAt}}
	if err := b.resolveEdges(ctx, op, s); err != nil {
		return nil, err
	}
	return &s[0], nil
}

// ResolveExecutionFlowID reads an execution's flow, "" outside flows or
// for an unknown execution (sdk.Flower).
func (b *Backend) ResolveExecutionFlowID(ctx context.Context, id sdk.ExecutionID) (sdk.FlowID, error) {
	const op = "resolve_execution_flow_id"
	if _, err := b.partitionOf(op, id); err != nil {
		return "", err
	}
	f, err := b.client.Do(ctx, b.client.B().Hget().Key(b.ks.coreKey(id)).Field("flow").Build()).ToString()
	if isNil(err) {
		return "", nil
	}
	if err != nil {
		return "", backendError(op, err)
	}
	return sdk.FlowID(f), nil
}

// CancelFlowHeader ends a flow cancelled (sdk.Flower).
func (b *Backend) CancelFlowHeader(ctx context.Context, a sdk.CancelFlowArgs) (sdk.CancelFlowHeader, error) {
	const op = "cancel_flow"
	tag, err := b.flowPartition(op, a.Flow)
	if err != nil {
		return sdk.CancelFlowHeader{}, err
	}
	if a.Policy == "" {
		a.Policy = sdk.CancelAll
	}
	if a.Policy != sdk.CancelAll && a.Policy != sdk.CancelPending {
		return sdk.CancelFlowHeader{}, sdk.NewError(op, sdk.CodeInvalidInput, "unknown cancel policy")
	}
	if err := sdk.CheckReason("cancel reason", a.Reason); err != nil {
		return sdk.CancelFlowHeader{}, opError(op, err)
	}
	fk := b.ks.flowKeysOf(a.Flow)
	r, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_flow_cancel",
		[]string{fk.core, fk.members, fk.cancels, b.ks.flowIndexesOf(tag).cancels},
		string(a.Flow), string(a.Policy), a.Reason)))
	if err != nil {
		return sdk.CancelFlowHeader{}, err
	}
	if r.field(0) == "already_terminal" {
		return sdk.CancelFlowHeader{AlreadyTerminal: true, State: sdk.FlowState(r.field(1)), Pending: int(r.int(2))}, nil
	}
	return sdk.CancelFlowHeader{State: sdk.FlowCancelled, Policy: sdk.CancelFlowPolicy(r.field(1)),
		Cancelled: int(r.int(2)), Pending: int(r.int(3))}, nil
}

// CancelFlowMembers cancels up to max more backlog members (sdk.Flower).
func (b *Backend) CancelFlowMembers(ctx context.Context, flow sdk.FlowID, max int) (int, int, error) {
	const op = "cancel_flow_members"
	tag, err := b.flowPartition(op, flow)
	if err != nil {
		return 0, 0, err
	}
	if max <= 0 || max > 1000 {
		return 0, 0, sdk.NewError(op, sdk.CodeInvalidInput, "max must be 1..1000")
	}
	r, err := decode(op, b.client.Do(ctx, b.fcall("ff_flow_cancel_more",
		[]string{b.ks.flowKeysOf(flow).cancels, b.ks.flowIndexesOf(tag).cancels}, string(flow), strconv.Itoa(max))))
	if err != nil {
		return 0, 0, err
	}
	return int(r.int(0)), int(r.int(1)), nil
}

// AckCancelMember takes a member off a flow's cancel backlog (sdk.Flower).
func (b *Backend) AckCancelMember(ctx context.Context, flow sdk.FlowID, id sdk.ExecutionID) error {
	const op = "ack_cancel_member"
	if err := b.memberOf(op, flow, id); err != nil {
		return err
	}
	_, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_flow_ack_cancel",
		[]string{b.ks.flowKeysOf(flow).cancels, b.ks.flowIndexesOf(id.Tag()).cancels}, string(flow), string(id))))
	return err
}

// AwaitFlow waits for the flow's outcome (sdk.Flower): the outcome key is
// written once, when the flow ends, and read through the client-side
// cache, so the server's invalidation of it wakes the waiter; without
// client-side caching it polls every flowPoll.
func (b *Backend) AwaitFlow(ctx context.Context, id sdk.FlowID) (sdk.FlowState, error) {
	const op = "await_flow"
	if _, err := b.flowPartition(op, id); err != nil {
		return "", err
	}
	fk := b.ks.flowKeysOf(id)
	exists, err := b.client.Do(ctx, b.client.B().Exists().Key(fk.core).Build()).AsInt64()
	if err != nil {
		return "", backendError(op, err)
	}
	if exists == 0 {
		return "", sdk.NewError(op, sdk.CodeFlowNotFound, string(id))
	}
	cached := b.opts.CacheSizeEachConn >= 0
	ch := make(chan struct{}, 1)
	defer b.terminal.add(ch, fk.outcome)()
	failures := 0
	for {
		var st string
		if cached {
			st, err = b.client.DoCache(ctx, b.client.B().Get().Key(fk.outcome).Cache().ToStaticTTL(), terminalReadTTL).ToString()
		} else {
			st, err = b.client.Do(ctx, b.client.B().Get().Key(fk.outcome).Build()).ToString()
		}
		if err != nil && !isNil(err) {
			if ctx.Err() != nil {
				return "", backendError(op, ctx.Err())
			}
			if failures++; failures > 50 {
				return "", backendError(op, err)
			}
		} else {
			failures = 0
			if s := sdk.FlowState(st); s.Ended() {
				return s, nil
			}
		}
		var after <-chan time.Time
		if !cached || failures > 0 {
			after = time.After(flowPoll)
		}
		select {
		case <-ch:
		case <-after:
		case <-ctx.Done():
			return "", backendError(op, ctx.Err())
		}
	}
}

// flowPoll is AwaitFlow's pause between reads without client-side caching
// (or after a failed read).
const flowPoll = 50 * time.Millisecond

// UpstreamResults reads a member's dependencies, their states and results
// (sdk.Flower).
func (b *Backend) UpstreamResults(ctx context.Context, id sdk.ExecutionID) ([]sdk.UpstreamResult, error) {
	const op = "upstream_results"
	if _, err := b.partitionOf(op, id); err != nil {
		return nil, err
	}
	in, err := b.client.Do(ctx, b.client.B().Hget().Key(b.ks.coreKey(id)).Field("in").Build()).ToString()
	if isNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, backendError(op, err)
	}
	ups := strings.Fields(in)
	cmds := make(valkey.Commands, 0, 2*len(ups))
	for _, u := range ups {
		uid := sdk.ExecutionID(u)
		cmds = append(cmds, b.client.B().Hget().Key(b.ks.coreKey(uid)).Field("state").Build(),
			b.client.B().Get().Key(b.ks.keysOf(uid).result).Build())
	}
	res := b.client.DoMulti(ctx, cmds...)
	out := make([]sdk.UpstreamResult, len(ups))
	for i, u := range ups {
		st, err := res[2*i].ToString()
		if err != nil && !isNil(err) {
			return nil, backendError(op, err)
		}
		out[i] = sdk.UpstreamResult{ID: sdk.ExecutionID(u), State: sdk.PublicState(st)}
		if out[i].State == sdk.StateCompleted {
			if v, err := res[2*i+1].AsBytes(); err == nil {
				out[i].Result = v
			} else if !isNil(err) {
				return nil, backendError(op, err)
			}
		}
	}
	return out, nil
}

// ReconcileFlows is the flow scanner's pass over a partition (sdk.Flower):
// members that waited for their dependencies at least minAge are
// re-checked (ff_flow_reconcile), and cancelled flows whose backlog is as
// old are drained (ff_flow_cancel_more).
func (b *Backend) ReconcileFlows(ctx context.Context, partition int, minAge time.Duration, limit int) (int, int, error) {
	const op = "reconcile_flows"
	if err := b.checkPartition(op, partition); err != nil {
		return 0, 0, err
	}
	tag := sdk.PartitionTag(partition)
	fi := b.ks.flowIndexesOf(tag)
	waiting, err := b.due(ctx, op, fi.depBlocked, limit, minAge)
	if err != nil {
		return 0, 0, err
	}
	cancels, err := b.due(ctx, op, fi.cancels, limit, minAge)
	if err != nil {
		return 0, 0, err
	}
	cmds := make(valkey.Commands, 0, len(waiting)+len(cancels))
	for _, id := range waiting {
		cmds = append(cmds, b.fcall("ff_flow_reconcile", []string{b.ks.coreKey(id), fi.depBlocked}, string(id)))
	}
	for _, f := range cancels {
		cmds = append(cmds, b.fcall("ff_flow_cancel_more", []string{b.ks.flowKeysOf(sdk.FlowID(f)).cancels, fi.cancels},
			string(f), "1000"))
	}
	if len(cmds) == 0 {
		return 0, 0, nil
	}
	settled, cancelled := 0, 0
	var first error
	for i, res := range b.client.DoMulti(ctx, cmds...) {
		r, err := decode(op, res)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if i < len(waiting) {
			if s := sdk.PublicState(r.field(0)); s != sdk.StateWaitingChildren && r.field(0) != "stale" {
				settled++
			}
		} else {
			cancelled += int(r.int(0))
		}
	}
	return settled, cancelled, first
}
