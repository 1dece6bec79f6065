package sdk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// Flows: DAGs of executions joined by dependency edges. A flow and all its
// members live on the flow's partition (FlowID.NewMemberID mints member
// ids there), so every flow operation is one call on one cluster slot.
// A member with inbound edges waits (StateWaitingChildren) until its
// dependency policy is met, then runs at once; one whose policy can no
// longer be met is skipped (StateSkipped), and so on down the graph.

// EdgeID names a dependency edge within its flow (a name, as lanes are).
type EdgeID string

// Validate checks an edge id like a lane name.
func (e EdgeID) Validate() error { return validateName("edge id", string(e)) }

// FlowState is a flow's state.
type FlowState string

// The flow states.
const (
	FlowOpen      FlowState = "open"      // members are still to end
	FlowCompleted FlowState = "completed" // every member completed
	FlowFailed    FlowState = "failed"    // every member ended, one or more not completed
	FlowCancelled FlowState = "cancelled" // CancelFlow
)

// Ended reports whether the flow has its outcome.
func (s FlowState) Ended() bool { return s == FlowCompleted || s == FlowFailed || s == FlowCancelled }

// PolicyKind is how a member's inbound edges decide it runs.
type PolicyKind string

// The dependency policies.
const (
	// AllOf (the default): every upstream must complete; the member is
	// skipped once one ends otherwise.
	AllOf PolicyKind = "all_of"
	// AnyOf: one upstream completing runs the member; it is skipped when
	// every upstream ended otherwise (an edge staged but not yet applied
	// counts as one that can still complete).
	AnyOf PolicyKind = "any_of"
	// Quorum: K upstreams completing run it (once: later outcomes only
	// count); skipped when fewer than K can still complete (staged edges
	// not yet applied included).
	Quorum PolicyKind = "quorum"
)

// DependencyPolicy is a member's inbound edge-group policy.
type DependencyPolicy struct {
	Kind PolicyKind // "" is AllOf
	K    int        // Quorum's K (1..indegree)
}

// wire is the policy as the backend stores it: "" (all_of), "any" or
// "q:<k>".
func (p DependencyPolicy) wire() (string, error) {
	switch p.Kind {
	case "", AllOf:
		return "", nil
	case AnyOf:
		return "any", nil
	case Quorum:
		if p.K < 1 || p.K > MaxFlowItems {
			return "", validationf(CodeInvalidInput, "quorum of %d: want 1..%d", p.K, MaxFlowItems)
		}
		return "q:" + strconv.Itoa(p.K), nil
	}
	return "", validationf(CodeInvalidInput, "unknown dependency policy %q", p.Kind)
}

// Wire renders p as backends store it ("" all of, "any", "q:<k>"), or a
// validation error.
func (p DependencyPolicy) Wire() (string, error) { return p.wire() }

// Flow limits.
const (
	// MaxFlowItems bounds the members plus edges of one SubmitFlow.
	MaxFlowItems = 1000
	// MaxFlowMembers bounds the members of one flow (AddExecutionToFlow).
	MaxFlowMembers = 10000
)

// FlowMember is one member of a FlowSpec.
type FlowMember struct {
	// Name identifies the member within the spec (edges name it); unique,
	// a name as lanes are.
	Name string
	// Args creates the member. Args.ID "" derives the id from the flow id
	// and Name (so submitting the same spec again names the same ids); a
	// given ID must be on the flow's partition. IdempotencyKey must be
	// empty (the flow id makes the submit idempotent), and a member with
	// inbound edges cannot be created delayed.
	Args CreateExecutionArgs
	// Policy decides when a member with inbound edges runs (default AllOf).
	Policy DependencyPolicy
}

// FlowEdge is a dependency: To runs after From ends (as To's policy says).
type FlowEdge struct {
	ID       EdgeID // "" names it "e<index>" (its index in Edges)
	From, To string // member names
}

// FlowSpec is a whole DAG, submitted in one call.
type FlowSpec struct {
	// ID "" mints one on a partition the backend picks; a given one makes
	// the submit idempotent: a flow that exists is left as it is.
	ID      FlowID
	Members []FlowMember
	Edges   []FlowEdge
}

// FlowSubmission reports a SubmitFlow.
type FlowSubmission struct {
	ID FlowID
	// Members maps each member's name to its execution id.
	Members map[string]ExecutionID
	// States holds each member's state after the call (waiting,
	// waiting_children, active when handed off, delayed); empty when the
	// flow Existed.
	States map[string]PublicState
	// Existed: the flow was there already (a repeated submit); nothing
	// was written, and FlowState is its state now. (One exception, so a
	// retry repairs a first try cut short: the lanes the flow's members
	// use join the lane registry when they are missing from it.)
	Existed   bool
	FlowState FlowState
}

// Resolve validates s, fills the defaults (member ids, edge ids) and
// returns the member index of each edge's ends. partition is the flow's
// when s.ID is empty (NewFlowID on it).
func (s FlowSpec) Resolve(partition int) (FlowSpec, [][2]int, error) {
	if s.ID == "" {
		s.ID = NewFlowID(partition)
	}
	part, err := s.ID.Partition()
	if err != nil {
		return s, nil, err
	}
	if len(s.Members) == 0 {
		return s, nil, validationf(CodeInvalidInput, "a flow needs at least one member")
	}
	if n := len(s.Members) + len(s.Edges); n > MaxFlowItems {
		return s, nil, validationf(CodeInvalidInput, "%d members plus edges, over the %d limit", n, MaxFlowItems)
	}
	index := make(map[string]int, len(s.Members))
	members := make([]FlowMember, len(s.Members))
	for i, m := range s.Members {
		if err := validateName("flow member name", m.Name); err != nil {
			return s, nil, err
		}
		if _, dup := index[m.Name]; dup {
			return s, nil, validationf(CodeInvalidInput, "member %q named twice", m.Name)
		}
		index[m.Name] = i
		if m.Args.IdempotencyKey != "" {
			return s, nil, validationf(CodeInvalidInput, "member %q: flow members take no idempotency key (the flow id is one)", m.Name)
		}
		if m.Args.ID == "" {
			m.Args.ID = memberID(s.ID, part, m.Name)
		} else if p, err := m.Args.ID.Partition(); err != nil {
			return s, nil, err
		} else if p != part {
			return s, nil, validationf(CodeInvalidInput, "member %q: id on partition %d, the flow is on %d", m.Name, p, part)
		}
		if _, err := m.Policy.wire(); err != nil {
			return s, nil, err
		}
		members[i] = m
	}
	s.Members = members
	indeg := make([]int, len(members))
	ends := make([][2]int, len(s.Edges))
	edges := make([]FlowEdge, len(s.Edges))
	ids := map[EdgeID]bool{}
	for j, e := range s.Edges {
		if e.ID == "" {
			e.ID = EdgeID("e" + strconv.Itoa(j))
		}
		if err := e.ID.Validate(); err != nil {
			return s, nil, err
		}
		if ids[e.ID] {
			return s, nil, validationf(CodeInvalidInput, "edge id %q used twice", e.ID)
		}
		ids[e.ID] = true
		from, ok1 := index[e.From]
		to, ok2 := index[e.To]
		if !ok1 || !ok2 {
			return s, nil, validationf(CodeInvalidInput, "edge %q: %q -> %q names an unknown member", e.ID, e.From, e.To)
		}
		if from == to {
			return s, nil, validationf(CodeInvalidInput, "edge %q: a member cannot depend on itself", e.ID)
		}
		indeg[to]++
		ends[j], edges[j] = [2]int{from, to}, e
	}
	s.Edges = edges
	for i, m := range members {
		if indeg[i] == 0 && m.Policy.Kind != "" && m.Policy.Kind != AllOf {
			return s, nil, validationf(CodeInvalidInput, "member %q: a %s policy without inbound edges", m.Name, m.Policy.Kind)
		}
		if m.Policy.Kind == Quorum && m.Policy.K > indeg[i] {
			return s, nil, validationf(CodeInvalidInput, "member %q: quorum of %d over %d inbound edges", m.Name, m.Policy.K, indeg[i])
		}
		if indeg[i] > 0 && !m.Args.DelayUntil.IsZero() {
			return s, nil, validationf(CodeInvalidInput, "member %q: a member with dependencies cannot be delayed", m.Name)
		}
	}
	return s, ends, nil
}

// memberID derives a member's execution id from its flow and name: a
// version-8 uuid of SHA-256(flow id, name), so a repeated submit of the
// same spec names the same executions.
func memberID(flow FlowID, partition int, name string) ExecutionID {
	h := sha256.Sum256([]byte(string(flow) + "\x00" + name))
	h[6] = h[6]&0x0f | 0x80 // version 8
	h[8] = h[8]&0x3f | 0x80 // RFC 4122 variant
	x := hex.EncodeToString(h[:16])
	return ExecutionID(PartitionTag(partition) + ":" + x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32])
}

// FlowSnapshot describes a flow.
type FlowSnapshot struct {
	ID        FlowID
	State     FlowState
	Revision  uint64 // graph revision: one more per staged edge
	Nodes     int    // members
	Edges     int
	Ended     int // members that have ended
	NotOK     int // of which ended other than completed
	CreatedAt time.Time
	EndedAt   time.Time // zero while open
	// CancelPolicy and CancelReason of a cancelled flow.
	CancelPolicy CancelFlowPolicy
	CancelReason string
	// PendingCancels counts members a cancel has still to cancel.
	PendingCancels int
	Members        []ExecutionID // sorted
}

// FlowSummary is one row of ListFlows.
type FlowSummary struct {
	ID        FlowID
	State     FlowState
	Nodes     int
	CreatedAt time.Time
}

// ListFlowsPage is one page of a partition's flows, in id order.
type ListFlowsPage struct {
	Flows      []FlowSummary
	NextCursor FlowID // "" on the last page
}

// EdgeDirection picks a member's edges.
type EdgeDirection string

// The edge directions.
const (
	Outgoing EdgeDirection = "outgoing" // edges from the member (its dependants)
	Incoming EdgeDirection = "incoming" // edges to the member (its dependencies)
)

// EdgeSnapshot describes a dependency edge.
type EdgeSnapshot struct {
	ID                   EdgeID
	Flow                 FlowID
	Upstream, Downstream ExecutionID
	// State is staged (recorded, not yet counted by the downstream) or
	// applied.
	State    string
	StagedAt time.Time
	// Resolution derives from the upstream's state: "" while it runs,
	// "satisfied" once it completed, "unsatisfied" once it ended otherwise.
	Resolution string
}

// CancelFlowPolicy says which members a flow cancel cancels.
type CancelFlowPolicy string

// The cancel policies.
const (
	// CancelAll cancels every member still live, running ones included.
	CancelAll CancelFlowPolicy = "cancel_all"
	// CancelPending cancels members not running; running ones finish. A
	// member the cancel still has to cancel (in its backlog) is not run
	// or skipped by an upstream's end: every member not running when the
	// flow was cancelled ends cancelled.
	CancelPending CancelFlowPolicy = "cancel_pending"
)

// CancelFlowArgs asks to cancel a flow.
type CancelFlowArgs struct {
	Flow   FlowID
	Policy CancelFlowPolicy // default CancelAll
	Reason string
}

// CancelFlowHeader reports the call that flips a flow to cancelled.
type CancelFlowHeader struct {
	// AlreadyTerminal: the flow had ended (State says how); nothing changed.
	// Pending then counts what its cancel's backlog still holds (a
	// cancel retried after a lost reply, or a second canceller, drains it
	// with Client.CancelFlow's wait).
	AlreadyTerminal bool
	State           FlowState
	Policy          CancelFlowPolicy
	// Cancelled counts members this call cancelled; Pending those left in
	// the flow's cancel backlog (CancelFlowMembers, AckCancelMember, or
	// the flow scanner cancel them).
	Cancelled, Pending int
}

// StageEdgeArgs stages a dependency edge between two members.
type StageEdgeArgs struct {
	Flow                 FlowID
	Edge                 EdgeID
	Upstream, Downstream ExecutionID
	// ExpectedRevision is the flow's graph revision the caller read
	// (DescribeFlow): a stale one is stale_graph_revision, nothing staged.
	ExpectedRevision uint64
}

// UpstreamResult is one dependency of a member, as its handler sees it.
type UpstreamResult struct {
	ID     ExecutionID
	State  PublicState
	Result []byte // a completed upstream's result; nil otherwise
}

// Flow error codes.
const (
	CodeFlowNotFound        = "flow_not_found"
	CodeFlowTerminal        = "flow_terminal"
	CodeStaleGraphRevision  = "stale_graph_revision"
	CodeNotFlowMember       = "not_flow_member"
	CodeFlowMemberElsewhere = "flow_member_elsewhere"
	CodeFlowTooLarge        = "flow_too_large"
	CodeEdgeExists          = "edge_exists"
	CodeEdgeNotFound        = "edge_not_found"
	CodeCycleDetected       = "cycle_detected"
	CodeInvalidDependency   = "invalid_dependency"
	CodeGroupPolicyLocked   = "group_policy_locked"
)

// Flower runs flows (RoleFlows).
type Flower interface {
	// SubmitFlow creates a flow with its members and edges in one call
	// (idempotent by flow id: a flow that exists is left as it is).
	// Members without inbound edges start as creates do; the others wait.
	SubmitFlow(ctx context.Context, spec FlowSpec) (FlowSubmission, error)
	// CreateFlow creates an empty flow on its id's partition to build
	// member by member; false when it existed.
	CreateFlow(ctx context.Context, id FlowID) (bool, error)
	// AddExecutionToFlow makes an execution of the flow's partition a
	// member (one that has ended counts as an ended member at once); false
	// when it was one already.
	AddExecutionToFlow(ctx context.Context, flow FlowID, id ExecutionID) (bool, error)
	// StageDependencyEdge records an edge if the graph revision is the
	// caller's and it closes no cycle; returns the new revision.
	StageDependencyEdge(ctx context.Context, args StageEdgeArgs) (uint64, error)
	// ApplyDependencyToChild makes the downstream count a staged edge (a
	// waiting downstream then waits for it); returns the downstream's
	// state after.
	ApplyDependencyToChild(ctx context.Context, flow FlowID, edge EdgeID) (PublicState, error)
	// SetEdgeGroupPolicy sets a member's dependency policy, before any
	// edge to it is staged.
	SetEdgeGroupPolicy(ctx context.Context, flow FlowID, id ExecutionID, p DependencyPolicy) error
	// WaitChildren releases h's lease until every inbound dependency of
	// its execution has ended (whatever the outcomes), then the attempt
	// resumes; false (lease kept) when they all had.
	WaitChildren(ctx context.Context, h Handle) (bool, error)
	DescribeFlow(ctx context.Context, id FlowID) (FlowSnapshot, error)
	ListFlows(ctx context.Context, partition int, cursor FlowID, limit int) (ListFlowsPage, error)
	// ListEdges lists member id's edges in one direction (none for an
	// execution outside flows), sorted by edge id.
	ListEdges(ctx context.Context, id ExecutionID, dir EdgeDirection) ([]EdgeSnapshot, error)
	// DescribeEdge returns the edge, nil when the flow has none by that id.
	DescribeEdge(ctx context.Context, flow FlowID, edge EdgeID) (*EdgeSnapshot, error)
	// ResolveExecutionFlowID returns id's flow, "" outside flows.
	ResolveExecutionFlowID(ctx context.Context, id ExecutionID) (FlowID, error)
	// CancelFlowHeader ends the flow cancelled and cancels its first
	// members; the rest wait in its cancel backlog.
	CancelFlowHeader(ctx context.Context, args CancelFlowArgs) (CancelFlowHeader, error)
	// CancelFlowMembers cancels up to max more members of the backlog;
	// returns how many it cancelled and how many remain.
	CancelFlowMembers(ctx context.Context, flow FlowID, max int) (int, int, error)
	// AckCancelMember takes a member the caller cancelled itself off the
	// backlog.
	AckCancelMember(ctx context.Context, flow FlowID, id ExecutionID) error
	// AwaitFlow returns the flow's outcome once it has one, woken by the
	// server (no polling), or ctx's error.
	AwaitFlow(ctx context.Context, id FlowID) (FlowState, error)
	// UpstreamResults returns member id's dependencies with their states
	// and, for completed ones, results.
	UpstreamResults(ctx context.Context, id ExecutionID) ([]UpstreamResult, error)
	// ReconcileFlows is the flow scanner's pass over one partition: it
	// re-checks members that waited for their dependencies longer than
	// minAge and cancels members of cancelled flows left in their backlog
	// as long; returns how many of each it acted on.
	ReconcileFlows(ctx context.Context, partition int, minAge time.Duration, limit int) (settled, cancelled int, err error)
}
