package valkeybackend

import (
	"context"
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Admission (sdk.Admitter): quotas and budgets in their own partition
// families (lua: the admission section), lane policies in one hash per
// lane read through the client-side cache.

var _ sdk.Admitter = (*Backend)(nil)

// QuotaPartitions and BudgetPartitions are the sizes of the quota {q:K}
// and budget {b:M} families: a policy's slot is FNV-1a of its name modulo
// the count, fixed for every deployment.
const (
	QuotaPartitions  = 16
	BudgetPartitions = 16
)

func policyTag(fam, name string, n int) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return "{" + fam + ":" + strconv.Itoa(int(h.Sum32()%uint32(n))) + "}"
}

// QuotaKeys are quota q's policy hash and its sliding-window set (its
// admissions: member "<eid> <token>", score the admission's server time in
// ms) in the default namespace, for readers outside this package that
// check what the engine admitted (the harness's rate check, fault tests);
// (*Backend).QuotaKeys names them in its namespace.
func QuotaKeys(q sdk.QuotaID) (hash, window string) {
	k := defaultKeys.quotaKeysOf(q)
	return k.hash, k.win
}

// QuotaKeys are quota q's policy hash and window set in b's namespace.
func (b *Backend) QuotaKeys(q sdk.QuotaID) (hash, window string) {
	k := b.ks.quotaKeysOf(q)
	return k.hash, k.win
}

// lanePolicyTTL bounds a cached lane policy read between invalidations.
const lanePolicyTTL = time.Minute

// CreateQuotaPolicy creates or replaces a quota policy (sdk.Admitter).
func (b *Backend) CreateQuotaPolicy(ctx context.Context, q sdk.QuotaPolicy) error {
	const op = "create_quota_policy"
	if err := q.Validate(); err != nil {
		return opError(op, err)
	}
	_, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_quota_set", []string{b.ks.quotaKey(q.ID)},
		strconv.Itoa(q.Rate), durMS(q.Window), strconv.Itoa(q.Concurrency))))
	return err
}

// CreateBudget creates a budget or replaces its limits (sdk.Admitter).
func (b *Backend) CreateBudget(ctx context.Context, bg sdk.Budget) error {
	const op = "create_budget"
	if err := bg.Validate(); err != nil {
		return opError(op, err)
	}
	dims := make([]string, 0, len(bg.Limits))
	for d := range bg.Limits {
		dims = append(dims, d)
	}
	sort.Strings(dims)
	args := []string{strconv.Itoa(len(dims))}
	for _, d := range dims {
		l := bg.Limits[d]
		args = append(args, d, strconv.FormatUint(l.Hard, 10), strconv.FormatUint(l.Soft, 10))
	}
	_, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_budget_set", []string{b.ks.budgetKey(bg.ID)}, args...)))
	return err
}

// ResetBudget zeroes a budget's usage (sdk.Admitter).
func (b *Backend) ResetBudget(ctx context.Context, id sdk.BudgetID) error {
	const op = "reset_budget"
	if err := id.Validate(); err != nil {
		return opError(op, err)
	}
	_, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_budget_reset", []string{b.ks.budgetKey(id)})))
	return err
}

// GetBudgetStatus reads a budget (sdk.Admitter).
func (b *Backend) GetBudgetStatus(ctx context.Context, id sdk.BudgetID) (sdk.BudgetStatus, error) {
	const op = "get_budget_status"
	if err := id.Validate(); err != nil {
		return sdk.BudgetStatus{}, opError(op, err)
	}
	m, err := b.reads.Do(ctx, b.client.B().Hgetall().Key(b.ks.budgetKey(id)).Build()).AsStrMap()
	if err != nil {
		return sdk.BudgetStatus{}, backendError(op, err)
	}
	if len(m) == 0 {
		return sdk.BudgetStatus{}, sdk.NewError(op, sdk.CodeBudgetNotFound, string(id))
	}
	return budgetStatusOf(id, m), nil
}

func budgetStatusOf(id sdk.BudgetID, m map[string]string) sdk.BudgetStatus {
	s := sdk.BudgetStatus{ID: id, Limits: map[string]sdk.BudgetLimit{}, Used: map[string]uint64{},
		CreatedAt: msTime(parseInt(m["created_at"])), ResetAt: msTime(parseInt(m["reset_at"]))}
	for f, v := range m {
		n, _ := strconv.ParseUint(v, 10, 64)
		switch kind, dim, ok := strings.Cut(f, ":"); {
		case !ok:
		case kind == "hard":
			l := s.Limits[dim]
			l.Hard = n
			s.Limits[dim] = l
		case kind == "soft":
			l := s.Limits[dim]
			l.Soft = n
			s.Limits[dim] = l
		case kind == "u":
			s.Used[dim] = n
		}
	}
	return s
}

// ReportUsage reports usage for h's lease: the lease is checked on the
// execution's slot (ff_fence), then the usage applied on the budget's
// (sdk.Admitter). A report whose reply was lost is safe to repeat with
// its DedupKey.
func (b *Backend) ReportUsage(ctx context.Context, h sdk.Handle, r sdk.UsageReport) (sdk.UsageOutcome, error) {
	const op = "report_usage"
	if _, err := b.handleTag(op, h); err != nil {
		return sdk.UsageOutcome{}, err
	}
	if err := r.Validate(); err != nil {
		return sdk.UsageOutcome{}, opError(op, err)
	}
	if _, err := decode(op, b.client.Do(ctx, b.fcallRO("ff_fence", []string{b.ks.coreKey(h.ExecutionID)}, fenceArgs(h)...))); err != nil {
		return sdk.UsageOutcome{}, err
	}
	return b.reportUsage(ctx, op, r)
}

// ReportUsageAdmin reports usage with no lease (sdk.Admitter).
func (b *Backend) ReportUsageAdmin(ctx context.Context, r sdk.UsageReport) (sdk.UsageOutcome, error) {
	const op = "report_usage_admin"
	if err := r.Validate(); err != nil {
		return sdk.UsageOutcome{}, opError(op, err)
	}
	return b.reportUsage(ctx, op, r)
}

func (b *Backend) reportUsage(ctx context.Context, op string, r sdk.UsageReport) (sdk.UsageOutcome, error) {
	dims := make([]string, 0, len(r.Usage))
	for d := range r.Usage {
		dims = append(dims, d)
	}
	sort.Strings(dims)
	key := b.ks.budgetKey(r.Budget)
	args := []string{r.DedupKey, strconv.Itoa(len(dims))}
	for _, d := range dims {
		args = append(args, d, strconv.FormatUint(r.Usage[d], 10))
	}
	rep, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_budget_report", []string{key, key + ":dedup"}, args...)))
	if err != nil {
		return sdk.UsageOutcome{}, err
	}
	out := sdk.UsageOutcome{Status: sdk.UsageStatus(rep.field(0))}
	if out.Status == sdk.UsageSoftBreach || out.Status == sdk.UsageHardBreach {
		out.Dimension, out.Current, out.Limit = rep.field(1), rep.uint(2), rep.uint(3)
	}
	return out, nil
}

// SetLanePolicy replaces a lane's policy (sdk.Admitter): one hash, read by
// workers through their caches, so the server's invalidation tells them at
// once.
func (b *Backend) SetLanePolicy(ctx context.Context, lane sdk.LaneID, p sdk.LanePolicy) error {
	const op = "set_lane_policy"
	if err := lane.Validate(); err != nil {
		return opError(op, err)
	}
	if p.Quota != "" {
		if err := p.Quota.Validate(); err != nil {
			return opError(op, err)
		}
	}
	budgets := make([]string, 0, len(p.Budgets))
	for _, bg := range p.Budgets {
		if err := bg.Validate(); err != nil {
			return opError(op, err)
		}
		budgets = append(budgets, string(bg))
	}
	key := b.ks.lanePolicyKey(lane)
	cmds := valkey.Commands{b.client.B().Del().Key(key).Build()}
	if p.Paused || p.Admits() {
		paused := "0"
		if p.Paused {
			paused = "1"
		}
		cmds = append(cmds, b.client.B().Hset().Key(key).FieldValue().FieldValue("paused", paused).
			FieldValue("quota", string(p.Quota)).FieldValue("budgets", strings.Join(budgets, ",")).Build())
	}
	for _, res := range b.doAckedMulti(ctx, op, cmds...) {
		if err := res.Error(); err != nil {
			return backendError(op, err)
		}
	}
	// The server's invalidation of this client's cached read comes on
	// another connection, a moment later: wait for it (bounded), so that a
	// caller reads its own write.
	for range 200 {
		got, err := b.LanePolicy(ctx, lane)
		if err != nil || samePolicy(got, p) {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

func samePolicy(a, b sdk.LanePolicy) bool {
	return a.Paused == b.Paused && a.Quota == b.Quota && slices.Equal(a.Budgets, b.Budgets)
}

// LanePolicy reads a lane's policy through the client-side cache
// (sdk.Admitter).
func (b *Backend) LanePolicy(ctx context.Context, lane sdk.LaneID) (sdk.LanePolicy, error) {
	const op = "lane_policy"
	if err := lane.Validate(); err != nil {
		return sdk.LanePolicy{}, opError(op, err)
	}
	var m map[string]string
	var err error
	if b.opts.CacheSizeEachConn >= 0 {
		m, err = b.client.DoCache(ctx, b.client.B().Hgetall().Key(b.ks.lanePolicyKey(lane)).Cache().ToStaticTTL(), lanePolicyTTL).AsStrMap()
	} else {
		m, err = b.client.Do(ctx, b.client.B().Hgetall().Key(b.ks.lanePolicyKey(lane)).Build()).AsStrMap()
	}
	if err != nil {
		return sdk.LanePolicy{}, backendError(op, err)
	}
	p := sdk.LanePolicy{Paused: m["paused"] == "1", Quota: sdk.QuotaID(m["quota"])}
	if s := m["budgets"]; s != "" {
		for _, bg := range strings.Split(s, ",") {
			p.Budgets = append(p.Budgets, sdk.BudgetID(bg))
		}
	}
	return p, nil
}

// Admit checks an execution against a lane policy (sdk.Admitter): the
// budgets' hard limits (one read each), then the quota's ff_quota_admit,
// in one round trip.
func (b *Backend) Admit(ctx context.Context, p sdk.LanePolicy, id sdk.ExecutionID, hold time.Duration) (sdk.Admission, error) {
	const op = "admit"
	cmds, err := b.admitCmds(op, p, id, hold)
	if err != nil {
		return sdk.Admission{}, err
	}
	if len(cmds) == 0 {
		return sdk.Admission{Admitted: true}, nil
	}
	ad, taken, member, err := admitOutcome(op, p, b.client.DoMulti(ctx, cmds...))
	if taken && (err != nil || !ad.Admitted) {
		// A budget refused (or is missing for) what the quota admitted:
		// the slot goes back.
		b.giveBack(context.WithoutCancel(ctx), p.Quota, id, member)
	}
	return ad, err
}

// admitCmds builds p's admission of id: a read of each budget, then the
// quota's ff_quota_admit (when p has a quota).
func (b *Backend) admitCmds(op string, p sdk.LanePolicy, id sdk.ExecutionID, hold time.Duration) (valkey.Commands, error) {
	if _, err := b.partitionOf(op, id); err != nil {
		return nil, err
	}
	if hold <= 0 {
		return nil, sdk.NewError(op, sdk.CodeInvalidInput, "hold must be positive")
	}
	cmds := make(valkey.Commands, 0, len(p.Budgets)+1)
	for _, bg := range p.Budgets {
		if err := bg.Validate(); err != nil {
			return nil, opError(op, err)
		}
		cmds = append(cmds, b.client.B().Hgetall().Key(b.ks.budgetKey(bg)).Build())
	}
	if p.Quota != "" {
		if err := p.Quota.Validate(); err != nil {
			return nil, opError(op, err)
		}
		k := b.ks.quotaKeysOf(p.Quota)
		cmds = append(cmds, b.fcall("ff_quota_admit", []string{k.hash, k.win, k.run},
			string(id), durMS(max(hold, time.Millisecond)), sdk.NewToken()))
	}
	return cmds, nil
}

// admitOutcome reads the replies of admitCmds; taken reports that the
// quota recorded this admission (a slot the caller gives back when it
// does not use it: a budget refused, or the claim failed), member its
// window entry.
func admitOutcome(op string, p sdk.LanePolicy, res []valkey.ValkeyResult) (ad sdk.Admission, taken bool, member string, err error) {
	// The quota's reply first: whatever the budgets say, a slot it took
	// is reported (taken, member), so the caller gives it back.
	ad = sdk.Admission{Admitted: true}
	if p.Quota != "" {
		r, err := decode(op, res[len(p.Budgets)])
		if err != nil {
			return sdk.Admission{}, false, "", err
		}
		switch r.field(0) {
		case "admitted":
			taken, member = true, r.field(1)
		case "already_admitted":
			// Someone holds its slot already: another claimer admitted it
			// and is claiming it (or runs it). Not this caller's to claim
			// or release (its hold is left as it was).
			ad.Held = true
		case "rate_exceeded":
			ad = sdk.Admission{Reason: "rate_limited", RetryAfter: time.Duration(r.int(1)) * time.Millisecond}
		default:
			ad = sdk.Admission{Reason: "concurrency", RetryAfter: time.Duration(r.int(1)) * time.Millisecond}
		}
	}
	var refused *sdk.Admission
	for i, bg := range p.Budgets {
		m, err := res[i].AsStrMap()
		if err != nil {
			return sdk.Admission{}, taken, member, backendError(op, err)
		}
		if len(m) == 0 {
			return sdk.Admission{}, taken, member, sdk.NewError(op, sdk.CodeBudgetNotFound, string(bg))
		}
		if d := budgetStatusOf(bg, m).HardBreached(); d != "" && refused == nil {
			refused = &sdk.Admission{Reason: "budget", RetryAfter: budgetRecheck, Budget: bg, Dimension: d}
		}
	}
	if refused != nil {
		return *refused, taken, member, nil
	}
	return ad, taken, member, nil
}

// giveBack undoes an admission the caller did not use (GiveBackAdmission):
// its hold and its window slot. Its error is dropped: the caller reports
// its own outcome.
func (b *Backend) giveBack(ctx context.Context, q sdk.QuotaID, id sdk.ExecutionID, member string) {
	_ = b.GiveBackAdmission(ctx, q, id, member)
}

// GiveBackAdmission undoes an admission its holder will not use
// (sdk.Admitter): ff_quota_giveback.
func (b *Backend) GiveBackAdmission(ctx context.Context, q sdk.QuotaID, id sdk.ExecutionID, member string) error {
	const op = "give_back_admission"
	if err := q.Validate(); err != nil {
		return opError(op, err)
	}
	if _, err := b.partitionOf(op, id); err != nil {
		return err
	}
	if member != "" && !strings.HasPrefix(member, string(id)+" ") {
		return sdk.NewError(op, sdk.CodeInvalidInput, "window member is not the execution's")
	}
	k := b.ks.quotaKeysOf(q)
	_, err := decode(op, b.client.Do(ctx, b.fcall("ff_quota_giveback", []string{k.win, k.run}, string(id), member)))
	return err
}

// handoffQuota reports the quota under which a create on lane admits what
// it hands to offers ("" none): the lane's cached policy (LanePolicy: an
// in-memory read while unchanged) when it has a quota and no budgets, on
// one server with hand-offs on. A cluster keeps the claim path (the
// quota's keys lie in another slot than the create's), and so does a lane
// with budgets (its admission reads them first). A read that fails is "":
// the create then hands nothing of a quota lane to its offers.
func (b *Backend) handoffQuota(ctx context.Context, lane sdk.LaneID) sdk.QuotaID {
	if b.cluster || !b.handoffOn() || b.opts.CacheSizeEachConn < 0 {
		return "" // without the cache the read would cost a command per create
	}
	p, err := b.LanePolicy(ctx, lane)
	if err != nil || len(p.Budgets) > 0 {
		return ""
	}
	return p.Quota
}

// budgetRecheck is how long work held back by a budget over its hard limit
// stays parked before it is checked again.
const budgetRecheck = time.Second

// ReleaseAdmission ends concurrency holds (sdk.Admitter).
func (b *Backend) ReleaseAdmission(ctx context.Context, q sdk.QuotaID, ids ...sdk.ExecutionID) error {
	const op = "release_admission"
	if err := q.Validate(); err != nil {
		return opError(op, err)
	}
	if len(ids) == 0 {
		return nil
	}
	args := make([]string, len(ids))
	for i, id := range ids {
		args[i] = string(id)
	}
	_, err := decode(op, b.client.Do(ctx, b.fcall("ff_quota_release", []string{b.ks.quotaKeysOf(q).run}, args...)))
	return err
}

// RefreshAdmissions extends running executions' holds (sdk.Admitter).
func (b *Backend) RefreshAdmissions(ctx context.Context, q sdk.QuotaID, hold time.Duration, ids ...sdk.ExecutionID) error {
	const op = "refresh_admissions"
	if err := q.Validate(); err != nil {
		return opError(op, err)
	}
	if len(ids) == 0 {
		return nil
	}
	args := []string{durMS(max(hold, time.Millisecond))}
	for _, id := range ids {
		args = append(args, string(id))
	}
	_, err := decode(op, b.client.Do(ctx, b.fcall("ff_quota_refresh", []string{b.ks.quotaKeysOf(q).run}, args...)))
	return err
}

// Park parks a waiting execution (sdk.Admitter).
func (b *Backend) Park(ctx context.Context, id sdk.ExecutionID, lane sdk.LaneID, until time.Time, reason string) (bool, error) {
	const op = "park"
	p, err := b.partitionOf(op, id)
	if err != nil {
		return false, err
	}
	if err := lane.Validate(); err != nil {
		return false, opError(op, err)
	}
	lk := b.ks.laneKeysOf(sdk.PartitionTag(p), lane)
	r, err := decode(op, b.client.Do(ctx, b.fcall("ff_park", []string{b.ks.coreKey(id), lk.eligible, lk.delayed},
		string(id), msString(until), reason, string(lane))))
	if err != nil {
		return false, err
	}
	return r.field(0) == "parked", nil
}

// ClaimForWorker is the scheduler-routed claim (sdk.Admitter): the lane's
// heads (one per partition) best first, admitted under the lane's policy,
// then granted and claimed; a claim that fails gives its admission back and
// tries the next head. The first refusal ends the call: work a rate or a
// budget refuses is parked until it may pass (ff_park), work a full
// concurrency cap refuses stays eligible.
func (b *Backend) ClaimForWorker(ctx context.Context, a sdk.ClaimForWorkerArgs) (*sdk.ClaimedTask, sdk.Admission, error) {
	const op = "claim_for_worker"
	if err := a.Lane.Validate(); err != nil {
		return nil, sdk.Admission{}, opError(op, err)
	}
	if a.LeaseTTL <= 0 {
		return nil, sdk.Admission{}, sdk.NewError(op, sdk.CodeInvalidInput, "lease TTL must be positive")
	}
	p, err := b.LanePolicy(ctx, a.Lane)
	if err != nil {
		return nil, sdk.Admission{}, err
	}
	if p.Paused {
		return nil, sdk.Admission{Reason: "paused"}, nil
	}
	parts := a.Partitions
	if parts == nil {
		parts = make([]int, b.partitions)
		for i := range parts {
			parts[i] = i
		}
	}
	// The heads come from the cache (ScanEligibleWindow) first: a stale
	// one costs a claim that fails and an admission given back whole
	// (ff_quota_giveback). When every cached head failed so, they are read
	// from the server once more, so nil means nothing could be admitted,
	// not a stale cache.
	held := false
	var refused sdk.Admission // a refusal met on a stale head
	for pass := range 2 {
		var heads [][]sdk.RankedID
		if pass == 0 {
			heads, err = b.ScanEligibleWindow(ctx, a.Lane, parts, 2)
		} else {
			heads, err = b.serverHeads(ctx, op, a.Lane, parts)
		}
		if err != nil {
			return nil, sdk.Admission{}, err
		}
		var best []sdk.RankedID
		for _, h := range heads {
			best = append(best, h...)
		}
		sort.Slice(best, func(i, j int) bool { return best[i].Before(best[j]) })
		for _, h := range best {
			ct, ad, next, err := b.admitAndClaim(ctx, op, a, p, h.ID)
			if err != nil || !next {
				return ct, ad, err
			}
			held = held || ad.Held
			if !ad.Admitted {
				refused = ad
			}
		}
		if len(best) == 0 && pass == 0 {
			return nil, sdk.Admission{}, nil // the cache says empty, and its pushes keep it so
		}
	}
	if refused.Reason != "" {
		return nil, refused, nil
	}
	if held {
		// Only work whose slot another claimer holds: that claimer runs it,
		// or its hold lapses (a dead one's). A moment later, not at once:
		// the hand-back announced it again.
		return nil, sdk.Admission{Reason: "concurrency", RetryAfter: heldRecheck}, nil
	}
	return nil, sdk.Admission{}, nil
}

// heldRecheck is how soon a caller that found only held work tries again.
const heldRecheck = 20 * time.Millisecond

// serverHeads reads the first two eligible executions of lane on each of
// parts from the server (uncached), pipelined.
func (b *Backend) serverHeads(ctx context.Context, op string, lane sdk.LaneID, parts []int) ([][]sdk.RankedID, error) {
	cmds := make(valkey.Commands, len(parts))
	for i, p := range parts {
		cmd, err := b.scanCmd(op, lane, p, 2)
		if err != nil {
			return nil, err
		}
		cmds[i] = cmd
	}
	out := make([][]sdk.RankedID, len(parts))
	for i, res := range b.client.DoMulti(ctx, cmds...) {
		ranked, err := rankedIDs(res)
		if err != nil {
			return nil, backendError(op, err)
		}
		out[i] = b.eligibleIDs(ctx, lane, parts[i], ranked)
	}
	return out, nil
}

// admitAndClaim admits execution id under p and claims it in one round
// trip (the admission's commands and the grant and claim, pipelined), then
// settles what the two answered: both went through (the claim); a refusal
// with the claim taken (the lease is handed back with its attempt
// unchanged, and work a rate or a budget refused is parked); a claim that
// failed with the admission taken (the admission is given back, and the
// next head is tried); a head whose slot another claimer holds (the next
// head; a claim this call took of it is handed back, since that claimer
// releases the slot when its own claim fails). next reports whether to try
// the next head.
func (b *Backend) admitAndClaim(ctx context.Context, op string, a sdk.ClaimForWorkerArgs, p sdk.LanePolicy,
	id sdk.ExecutionID) (ct *sdk.ClaimedTask, ad sdk.Admission, next bool, err error) {
	cmds, err := b.admitCmds(op, p, id, a.LeaseTTL)
	if err != nil {
		return nil, sdk.Admission{}, false, err
	}
	g := sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: a.Lane, WorkerID: a.WorkerID,
		WorkerInstanceID: a.WorkerInstanceID, Capabilities: a.Capabilities}
	gc, err := b.grantCmd(op, g)
	if err != nil {
		return nil, sdk.Admission{}, false, err
	}
	ca, err := sdk.ClaimExecutionArgs{ExecutionID: id, Lane: a.Lane, WorkerID: a.WorkerID,
		WorkerInstanceID: a.WorkerInstanceID, LeaseTTL: a.LeaseTTL}.Resolve()
	if err != nil {
		return nil, sdk.Admission{}, false, opError(op, err)
	}
	cc, err := b.claimCmd(op, ca, "new", true)
	if err != nil {
		return nil, sdk.Admission{}, false, err
	}
	if _, busy := b.claiming.LoadOrStore(id, struct{}{}); busy {
		return nil, sdk.Admission{}, true, nil // another worker of this process is claiming it
	}
	defer b.claiming.Delete(id)
	k := len(cmds)
	res := b.client.DoMulti(ctx, append(cmds, gc, cc)...)
	ad, taken, member, aerr := admitOutcome(op, p, res[:k])
	_, gerr := decode(op, res[k])
	t, cerr := decodeClaim(op, ca, res[k+1], true)
	if cerr != nil && sdk.CodeOf(cerr) == sdk.CodeUseClaimResumed && gerr == nil {
		t, cerr = b.claim(ctx, op, ca, "resume", true)
	}
	claimed := cerr == nil
	keep := aerr == nil && ad.Admitted && !ad.Held
	bg := context.WithoutCancel(ctx)
	if claimed && !keep {
		if err := b.Delay(bg, t.Handle, time.Now()); err != nil {
			return nil, ad, false, err // the lease lapses and the scanner recovers it
		}
	}
	if taken && !(claimed && keep) {
		b.giveBack(bg, p.Quota, id, member) // the hold and the window slot: unused
	}
	switch {
	case aerr != nil:
		return nil, sdk.Admission{}, false, aerr
	case claimed && keep:
		b.arrive.claimed(a.Lane, id)
		return &t, ad, false, nil
	case ad.Held:
		return nil, ad, true, nil
	case !ad.Admitted && !claimed && ad.Reason != "concurrency":
		// Refused on a head that was not eligible any more (a stale one):
		// the next head is refused too, and parked, once it is one.
		return nil, ad, true, nil
	case !ad.Admitted:
		// The rest of the lane would be refused as well. Work a rate or a
		// budget refuses is parked until it may pass; a full concurrency
		// cap frees when a running task ends, so that work stays eligible.
		if ad.Reason != "concurrency" {
			if _, err := b.Park(bg, id, a.Lane, time.Now().Add(ad.RetryAfter), ad.Reason); err != nil {
				return nil, ad, false, err
			}
		}
		return nil, ad, false, nil
	case sdk.KindOf(cerr) == sdk.KindTransport:
		return nil, ad, false, cerr
	}
	return nil, ad, true, nil // someone else's, or moved on: the next head
}

// QuotaHolds lists the executions holding a slot of quota q, with their
// hold deadlines (for operators and tests).
func (b *Backend) QuotaHolds(ctx context.Context, q sdk.QuotaID) (map[sdk.ExecutionID]time.Time, error) {
	const op = "quota_holds"
	if err := q.Validate(); err != nil {
		return nil, opError(op, err)
	}
	zs, err := b.client.Do(ctx, b.client.B().Zrange().Key(b.ks.quotaKeysOf(q).run).Min("0").Max("-1").Withscores().Build()).AsZScores()
	if err != nil {
		return nil, backendError(op, err)
	}
	out := make(map[sdk.ExecutionID]time.Time, len(zs))
	for _, z := range zs {
		out[sdk.ExecutionID(z.Member)] = msTime(int64(z.Score))
	}
	return out, nil
}
