package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowfabric/flowfabric-go/loadgen"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// flow-dag defaults and bounds.
const (
	// FlowWidthDefault is Config.DagWidth's default: the N of the fan-out /
	// fan-in DAGs, 1 → N → 1.
	FlowWidthDefault = 100
	// FlowDepthDefault is Config.DagDepth's default: the members of a chain.
	FlowDepthDefault = 20
	// FlowRateDefault is Config.DagRate's default: DAGs per second of each
	// shape, open loop. Fixed, as signal-resume's rate, so the per-edge
	// counters compare between runs and profiles. At the default shapes it
	// is about 1,000 executions/s of fan-outs and 200/s of chains: well
	// within what 2 vCPUs sustain beside the harness.
	FlowRateDefault = 10
	// FlowWidthMax and FlowDepthMax keep one DAG within sdk.MaxFlowItems
	// (members plus edges of one SubmitFlow): N+2 members and 2N edges, D
	// members and D-1 edges.
	FlowWidthMax = (sdk.MaxFlowItems - 2) / 3
	FlowDepthMax = (sdk.MaxFlowItems + 1) / 2
	// flowKeyBits is how many low bits of a member's key hold its index in
	// its DAG (the rest is the DAG's sequence number).
	flowKeyBits = 16
	// flowKind is the members' execution kind.
	flowKind = "flow-dag"
	// The shapes (result variants).
	flowFanout = "fanout"
	flowChain  = "chain"
)

// dagWidth, dagDepth and dagRate are the config's values or their defaults.
func (c *Config) dagWidth() int { return orDefault(c.DagWidth, FlowWidthDefault) }

func (c *Config) dagDepth() int { return orDefault(c.DagDepth, FlowDepthDefault) }

func (c *Config) dagRate() float64 { return orDefault(c.DagRate, FlowRateDefault) }

// validateFlows checks the flow-dag fields (0 is the default).
func (c *Config) validateFlows() error {
	switch {
	case c.DagWidth < 0 || c.DagWidth > FlowWidthMax:
		return fmt.Errorf("dag width %d out of range 1..%d (members plus edges of one flow are at most %d)", c.DagWidth, FlowWidthMax, sdk.MaxFlowItems)
	case c.DagDepth < 0 || c.DagDepth == 1 || c.DagDepth > FlowDepthMax:
		return fmt.Errorf("dag depth %d out of range 2..%d", c.DagDepth, FlowDepthMax)
	case c.DagRate < 0:
		return fmt.Errorf("dag rate must not be negative")
	}
	return nil
}

// dagShape is one DAG shape: its members' names and, per member, the
// indexes of its parents (the members its inbound edges come from).
type dagShape struct {
	variant string
	label   string // "1 → 100 → 1", "chain of 20"
	names   []string
	parents [][]int
	edges   []sdk.FlowEdge
}

// fanoutShape is 1 → n → 1: the root (index 0), n members that depend on
// it (1..n), and the join (n+1) that depends on all n.
func fanoutShape(n int) dagShape {
	s := dagShape{variant: flowFanout, label: fmt.Sprintf("1 → %d → 1", n), names: make([]string, n+2), parents: make([][]int, n+2)}
	s.names[0], s.names[n+1] = "root", "join"
	for i := 1; i <= n; i++ {
		s.names[i] = fmt.Sprintf("f%d", i)
		s.parents[i] = []int{0}
		s.parents[n+1] = append(s.parents[n+1], i)
	}
	s.buildEdges()
	return s
}

// chainShape is d members in a line, each depending on the one before.
func chainShape(d int) dagShape {
	s := dagShape{variant: flowChain, label: fmt.Sprintf("chain of %d", d), names: make([]string, d), parents: make([][]int, d)}
	for i := range d {
		s.names[i] = fmt.Sprintf("c%d", i)
		if i > 0 {
			s.parents[i] = []int{i - 1}
		}
	}
	s.buildEdges()
	return s
}

func (s *dagShape) buildEdges() {
	for i, ps := range s.parents {
		for _, p := range ps {
			s.edges = append(s.edges, sdk.FlowEdge{From: s.names[p], To: s.names[i]})
		}
	}
}

// dependants counts the members with inbound edges: one edge-latency
// sample each (a fan-in's from its last parent).
func (s dagShape) dependants() int {
	n := 0
	for _, ps := range s.parents {
		if len(ps) > 0 {
			n++
		}
	}
	return n
}

// spec is the FlowSpec of DAG seq: each member's payload carries its key
// (seq << flowKeyBits | index) and the DAG's intended submit time.
func (s dagShape) spec(seq uint64, intended time.Time, size int) sdk.FlowSpec {
	members := make([]sdk.FlowMember, len(s.names))
	for i, name := range s.names {
		members[i] = sdk.FlowMember{Name: name, Args: sdk.CreateExecutionArgs{Lane: benchLane, Kind: flowKind,
			Payload: encodePayload(seq<<flowKeyBits|uint64(i), intended, size)}}
	}
	return sdk.FlowSpec{Members: members, Edges: s.edges}
}

// flowPhase is one phase of a shape's run (the warm-up or the measured
// phase): its DAGs record their samples in its recorders.
type flowPhase struct {
	lat map[string]*Latency
	// win is the measured phase's window (arrivals run from its start for
	// Duration); the zero Window for the warm-up.
	win           Window
	measured      bool
	dags, members atomic.Int64 // submitted in the phase
	windowEdges   atomic.Int64 // edges whose child started in win
	windowDAGs    atomic.Int64 // DAGs awaited in win
}

// flowLatencies are the recorders of a flow phase.
var flowLatencies = []string{"dag_completion", "edge", "flow_notify", "submit", "send_lag"}

func newFlowPhase(shards int, win Window, measured bool) *flowPhase {
	ph := &flowPhase{lat: map[string]*Latency{}, win: win, measured: measured}
	// Only the phase's own DAGs record here, and every DAG of the warm-up
	// has ended before the measured phase starts: the recorders take every
	// sample (a DAG that arrived in the window counts whole).
	for _, name := range flowLatencies {
		ph.lat[name] = NewLatency(shards, Window{})
	}
	ph.lat["fcall_rtt"] = NewLatency(1, win)
	return ph
}

// dagRun is one submitted DAG as the handlers see it: when each member's
// handler returned (unix ns, 0 before), so a child's handler can time its
// edge from its parents' returns and check that they all had.
type dagRun struct {
	intended time.Time
	ph       *flowPhase
	returned []atomic.Int64
}

// lastReturn is the latest return among members idx (a fan-in's last
// parent) and how many of them have not returned.
func (d *dagRun) lastReturn(idx []int) (last int64, missing int) {
	for _, p := range idx {
		r := d.returned[p].Load()
		if r == 0 {
			missing++
		} else if r > last {
			last = r
		}
	}
	return last, missing
}

// lastOfAll is lastReturn over every member.
func (d *dagRun) lastOfAll() (last int64, missing int) {
	for i := range d.returned {
		r := d.returned[i].Load()
		if r == 0 {
			missing++
		} else if r > last {
			last = r
		}
	}
	return last, missing
}

// runFlowDAG runs both shapes, fan-out / fan-in first, each on a fresh
// deployment.
func (r *Runner) runFlowDAG(ctx context.Context) ([]*Result, error) {
	var out []*Result
	for _, s := range []dagShape{fanoutShape(r.cfg.dagWidth()), chainShape(r.cfg.dagDepth())} {
		r.prog.Stage(fmt.Sprintf("%s %s (%s)", ScenarioFlowDAG, s.variant, s.label))
		res, err := r.runFlowShape(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.variant, err)
		}
		out = append(out, res)
	}
	return out, nil
}

// runFlowShape measures flows of one shape: whole DAGs submitted with
// Client.SubmitFlow (one FCALL each) at dagRate, open loop (cfg.Arrivals),
// each awaited with Client.AwaitFlow right after its submit (on the
// producer's client: one caller process). Every member's handler records
// its start and, just before it returns nil (the worker then completes
// the member, and that call releases its dependants), its return. A
// child's edge latency runs from its last parent's return to its own
// handler's start; the DAG's completion latency from its intended submit
// time to AwaitFlow's return.
//
// Two phases: a warm-up (cfg.Warmup) that is left to settle, then the
// measured phase (cfg.Duration of arrivals). The server's counters run
// from the measured phase's first arrival until its every DAG has ended
// and been awaited, so every command counted is the measured DAGs' (the
// idle fleet's own and AwaitFlow's reads included; the load probe's
// ff_version calls left out); per edge is over the measured DAGs' edges.
//
// Every member's handler must return exactly once, no handler may start
// before every one of its parents' handlers returned, and every DAG must
// end completed; otherwise the run fails.
func (r *Runner) runFlowShape(ctx context.Context, shape dagShape) (*Result, error) {
	cfg := r.cfg
	rate := cfg.dagRate()
	bes, closeAll, err := r.t.DeployConnected(ctx, cfg.Partitions, 1)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	be, prod := bes[0], bes[1]
	if sdk.RolesOf(prod).Flows == nil {
		return nil, fmt.Errorf("the producer's backend has no %s role", sdk.RoleFlows)
	}

	members, edges, dependants := len(shape.names), len(shape.edges), shape.dependants()
	track := newTracker() // member handler returns, by member key
	dags := newTracker()  // AwaitFlow returns, by DAG
	var runs sync.Map     // DAG seq → *dagRun
	var dagSeq atomic.Uint64
	var violations, foreign, submitErrs, awaitErrs, notCompleted, earlyEnds atomic.Int64
	var faults firstFault // the first failure, for the note
	fail := faults.add

	fctx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	fleet, err := loadgen.StartFleet(fctx, loadgen.FleetConfig{
		Backend: be, Workers: cfg.Workers, DistinctWorkerIDs: cfg.DistinctWorkerIDs,
		Worker: sdk.WorkerConfig{MaxConcurrency: cfg.Concurrency, ClaimMode: r.mode(), Lanes: []sdk.LaneID{benchLane},
			ShutdownGrace: 2 * time.Second, DisableClaimOffers: cfg.NoHandoff},
		Hooks: func(i int) loadgen.Hooks { return r.hooks(be, nil, i) },
		Handler: func(i int) sdk.Handler {
			return sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
				start := time.Now()
				key, _, ok := decodePayload(t.Payload)
				var run *dagRun
				if v, found := runs.Load(key >> flowKeyBits); ok && found {
					run = v.(*dagRun)
				}
				idx := int(key & (1<<flowKeyBits - 1))
				if run == nil || idx >= members {
					fail(&foreign, "execution %s (kind %q) belongs to no DAG of this run", t.ID, t.Kind)
					return fmt.Errorf("bench: foreign execution")
				}
				if ps := shape.parents[idx]; len(ps) > 0 {
					last, missing := run.lastReturn(ps)
					if missing > 0 {
						fail(&violations, "DAG %d: %s started while %d of its %d parents' handlers had not returned", key>>flowKeyBits,
							shape.names[idx], missing, len(ps))
					} else {
						run.ph.lat["edge"].Shard(i).Record(run.intended, start.Sub(time.Unix(0, last)))
						if run.ph.measured && run.ph.win.Contains(start) {
							run.ph.windowEdges.Add(int64(len(ps)))
						}
					}
				}
				track.complete(key)
				// The last thing the handler does: returning nil completes
				// the member (the worker's call), which releases its
				// dependants.
				run.returned[idx].CompareAndSwap(0, time.Now().UnixNano())
				return nil
			})
		},
	})
	if err != nil {
		return nil, err
	}
	client := sdk.NewClient(prod)
	wctx, stopWaiters := context.WithCancel(ctx)
	defer stopWaiters()
	var waitWG sync.WaitGroup
	// submitIn submits one DAG per arrival in phase ph and awaits it.
	submitIn := func(ph *flowPhase) func(context.Context, loadgen.Arrival) error {
		return func(ctx context.Context, a loadgen.Arrival) error {
			seq := dagSeq.Add(1)
			run := &dagRun{intended: a.Intended, ph: ph, returned: make([]atomic.Int64, members)}
			runs.Store(seq, run) // before the submit: its root may start before it returns
			t0 := time.Now()
			ph.lat["send_lag"].Shard(int(seq)).Record(a.Intended, t0.Sub(a.Intended))
			sub, err := client.SubmitFlow(ctx, shape.spec(seq, a.Intended, cfg.PayloadBytes))
			ph.lat["submit"].Shard(int(seq)).Record(a.Intended, time.Since(t0))
			if err != nil {
				fail(&submitErrs, "DAG %d: SubmitFlow: %v", seq, err)
				return err
			}
			if len(sub.Members) != members || sub.Existed {
				fail(&submitErrs, "DAG %d: SubmitFlow returned %d members (existed %v), want %d", seq, len(sub.Members), sub.Existed, members)
			}
			for i := range members {
				track.submit(seq<<flowKeyBits | uint64(i))
			}
			dags.submit(seq)
			ph.dags.Add(1)
			ph.members.Add(int64(members))
			waitWG.Add(1)
			go func() {
				defer waitWG.Done()
				st, err := client.AwaitFlow(wctx, sub.ID)
				end := time.Now()
				switch {
				case err != nil:
					fail(&awaitErrs, "DAG %d (%s): AwaitFlow: %v", seq, sub.ID, err)
					return
				case st != sdk.FlowCompleted:
					fail(&notCompleted, "DAG %d (%s) ended %s", seq, sub.ID, st)
				default:
					ph.lat["dag_completion"].Shard(int(seq)).Record(a.Intended, end.Sub(a.Intended))
					// The flow completed: every member's handler returned
					// before its completion was sent.
					if last, missing := run.lastOfAll(); missing > 0 {
						fail(&earlyEnds, "DAG %d (%s) completed while %d members' handlers had not returned", seq, sub.ID, missing)
					} else {
						ph.lat["flow_notify"].Shard(int(seq)).Record(a.Intended, end.Sub(time.Unix(0, last)))
					}
					if ph.measured && ph.win.Contains(end) {
						ph.windowDAGs.Add(1)
					}
				}
				dags.complete(seq)
			}()
			return nil
		}
	}
	// settle waits up to d for every DAG submitted to be awaited and every
	// member's handler to have returned.
	settle := func(d time.Duration) bool {
		end := time.Now().Add(d)
		return dags.waitSettled(d) && track.waitSettled(time.Until(end))
	}
	progress := func(phase string) func() string {
		return func() string {
			return fmt.Sprintf("%s %s P=%d: %s, %d DAGs submitted, %d ended", ScenarioFlowDAG, shape.variant, cfg.Partitions,
				phase, dags.submitted.Load(), dags.completed.Load())
		}
	}
	defer r.prog.Detail(nil)

	// Warm-up: the same load, unmeasured, left to settle.
	time.Sleep(100 * time.Millisecond) // the fleet registers and subscribes
	warmSettled := true
	if cfg.Warmup > 0 {
		r.prog.Detail(progress("warm-up"))
		po := <-r.startProducer(ctx, true, rate, nil, cfg.Warmup, submitIn(newFlowPhase(cfg.Workers, Window{}, false)))
		if po.err != nil {
			return nil, po.err
		}
		warmSettled = settle(cfg.Drain)
	}

	// The measured phase: counters from here until its DAGs have ended.
	snap, err := r.startCount(ctx)
	if err != nil {
		return nil, err
	}
	win := Window{From: time.Now()}
	win.To = win.From.Add(cfg.Duration)
	ph := newFlowPhase(cfg.Workers, win, true)
	r.prog.Detail(progress("measuring"))
	pdone := r.startProducer(ctx, true, rate, nil, cfg.Duration, submitIn(ph))
	stopProbe := loadProbe(ctx, r.t.serial, win, ph.lat["fcall_rtt"])
	sleepUntil(ctx, win.To)
	probed := stopProbe()
	po := <-pdone
	if po.err != nil {
		return nil, po.err
	}
	settled := settle(cfg.Drain)
	m, err := snap.stop(ctx)
	if err != nil {
		return nil, err
	}
	m.server.calls["fcall"] -= probed // the probe's calls are not the DAGs'
	if m.server.calls["fcall"] <= 0 {
		delete(m.server.calls, "fcall")
	}
	var diag string
	if !settled || !warmSettled {
		diag = r.strandedDiagnosis(ctx, be, cfg.Partitions)
	}
	stopWaiters() // a waiter still waiting now fails
	waitWG.Wait()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_ = fleet.Stop(sctx)
	cancel()

	nDAGs := ph.dags.Load()
	res := &Result{Scenario: ScenarioFlowDAG, Variant: shape.variant, Partitions: cfg.Partitions, Workers: cfg.Workers,
		DurationS: win.Seconds(), Unit: "edges", OfferedRate: round3(rate * float64(edges)), Latency: map[string]*Summary{}}
	summarizeInto(res.Latency, ph.lat)
	res.Throughput = round3(float64(ph.windowEdges.Load()) / win.Seconds())
	res.AchievedRate = res.Throughput
	res.Ops = nDAGs * int64(edges)
	res.efficiency(m.server, m.mallocs, res.Ops)
	res.Lost, res.Duplicated = track.outcome()
	dagsLost, dagsDup := dags.outcome()
	fs := fleet.Stats()
	res.Extra = map[string]float64{
		"dag_rate": rate, "members_per_dag": float64(members), "edges_per_dag": float64(edges), "dependants_per_dag": float64(dependants),
		"dags": float64(nDAGs), "dags_completed_per_s": round3(float64(ph.windowDAGs.Load()) / win.Seconds()),
		"dags_submitted": float64(dags.submitted.Load()), "dags_ended": float64(dags.completed.Load()),
		"dags_unfinished": float64(dagsLost), "dags_awaited_twice": float64(dagsDup), "dags_not_completed": float64(notCompleted.Load()),
		"submit_errors": float64(submitErrs.Load()), "await_errors": float64(awaitErrs.Load()),
		"order_violations": float64(violations.Load()), "early_flow_ends": float64(earlyEnds.Load()),
		"foreign_executions": float64(foreign.Load()), "members_submitted": float64(track.submitted.Load()),
		"members_returned": float64(track.completed.Load()), "stalled_arrivals": float64(po.st.Stalled), "probe_fcalls": float64(probed),
		"claimed": float64(fs.Claimed), "handoffs": float64(fs.Handoffs), "completed": float64(fs.Completed), "failed": float64(fs.Failed),
		"handler_errors": float64(fs.HandlerErrors), "lost_leases": float64(fs.LostLeases),
		"idle_wakeups_push": float64(fs.IdleWakeupsPush), "idle_wakeups_poll": float64(fs.IdleWakeupsPoll),
	}
	setHandoffShare(res, float64(fs.Handoffs), float64(fs.Claimed))
	if nDAGs > 0 {
		res.Extra["commands_per_dag"] = round3(float64(m.server.total()) / float64(nDAGs))
		res.Extra["fcalls_per_dag"] = round3(float64(m.server.calls["fcall"]+m.server.calls["fcall_ro"]) / float64(nDAGs))
		res.Extra["valkey_cpu_us_per_dag"] = round3(m.server.cpuSeconds * 1e6 / float64(nDAGs))
		// Server time inside FCALLs (commandstats usec; the probe's tiny
		// ff_version calls included): the library's work per DAG.
		res.Extra["fcall_us_per_dag"] = round3(float64(m.server.usec["fcall"]) / float64(nDAGs))
	}
	if e, lr := res.Latency["edge"], res.Latency["fcall_rtt"]; e != nil && lr != nil && lr.P50 > 0 {
		res.Extra["edge_p50_over_loaded_rtt"] = round3(e.P50 / lr.P50)
	}
	res.Note = fmt.Sprintf("%s DAGs (%d members, %d edges) submitted with SubmitFlow at %g/s (%s arrivals) and awaited with AwaitFlow; "+
		"edge runs from the last parent's handler returning to the child's handler starting; counters run from the measured phase's first arrival "+
		"until its %d DAGs ended (the load probe's %d ff_version calls left out, its Valkey CPU not)",
		shape.label, members, edges, rate, cfg.Arrivals, nDAGs, probed)
	if po.st.Failed > 0 {
		res.Note += fmt.Sprintf("; %d submissions failed", po.st.Failed)
	}
	if first := faults.first(); first != "" {
		res.Note += "; first failure: " + first
	}
	if !settled || !warmSettled {
		res.Note += fmt.Sprintf("; not settled after %v drain (warm-up settled: %v): %d of %d DAGs ended, %d of %d members returned; %s", cfg.Drain,
			warmSettled, dags.completed.Load(), dags.submitted.Load(), track.completed.Load(), track.submitted.Load(), diag)
	}
	return res, nil
}

// flowFailure says why a flow-dag result breaks its checks (every DAG
// completed and awaited once, every member's handler ran once and after
// all its parents' returned); "" when they hold or the result is another
// scenario's.
func flowFailure(res *Result) string {
	if res.Scenario != ScenarioFlowDAG {
		return ""
	}
	e := res.Extra
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	if res.Ops == 0 {
		add("no DAG measured")
	}
	if n := e["order_violations"]; n > 0 {
		add("%.0f members started before all their parents' handlers returned", n)
	}
	if n := e["early_flow_ends"]; n > 0 {
		add("%.0f DAGs completed before all their members' handlers returned", n)
	}
	if e["dags_unfinished"] > 0 || e["dags_awaited_twice"] > 0 || e["dags_not_completed"] > 0 || e["await_errors"] > 0 {
		add("%.0f DAGs never ended, %.0f awaited twice, %.0f ended other than completed, %.0f AwaitFlow errors",
			e["dags_unfinished"], e["dags_awaited_twice"], e["dags_not_completed"], e["await_errors"])
	}
	if n := e["submit_errors"] + e["foreign_executions"]; n > 0 {
		add("%.0f failed submits, %.0f executions of no DAG", e["submit_errors"], e["foreign_executions"])
	}
	if len(probs) == 0 {
		return ""
	}
	return fmt.Sprintf("flows: %s (%s)", strings.Join(probs, "; "), res.Note)
}
