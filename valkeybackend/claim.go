package valkeybackend

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// scanLimitMax caps a scan's limit.
const scanLimitMax = 1000

// ScanEligibleExecutions reads the head of a lane's eligible set: highest
// priority first, then oldest. One ZRANGE, no script (and ff_drop_strays
// when the head holds a stray, see eligibleIDs).
func (b *Backend) ScanEligibleExecutions(ctx context.Context, a sdk.ScanEligibleArgs) ([]sdk.ExecutionID, error) {
	const op = "scan_eligible_executions"
	cmd, err := b.scanCmd(op, a.Lane, a.Partition, a.Limit)
	if err != nil {
		return nil, err
	}
	ranked, err := rankedIDs(b.client.Do(ctx, cmd))
	if err != nil {
		return nil, backendError(op, err)
	}
	ids := make([]sdk.ExecutionID, 0, len(ranked))
	for _, r := range b.eligibleIDs(ctx, a.Lane, a.Partition, ranked) {
		ids = append(ids, r.ID)
	}
	return ids, nil
}

// eligibleIDs returns the members of lane's eligible set on partition p
// that are execution ids of p. The others are strays (no library function
// writes one; a raw write can): a claim of one could only fail, on every
// round, so they are left out and removed from the set (ff_drop_strays,
// best effort: a scan that meets one again retries).
func (b *Backend) eligibleIDs(ctx context.Context, lane sdk.LaneID, p int, members []sdk.RankedID) []sdk.RankedID {
	// Every scan of a cached head runs this, so the test is the id's shape
	// (the partition's tag, then a uuid's length), not a full parse: a member
	// that passes it yet is no id fails its claim, which removes it.
	prefix := sdk.PartitionTag(p) + ":"
	stray := func(id sdk.ExecutionID) bool {
		return len(id) != len(prefix)+uuidLen || !strings.HasPrefix(string(id), prefix)
	}
	if !slices.ContainsFunc(members, func(m sdk.RankedID) bool { return stray(m.ID) }) {
		return members
	}
	ids := make([]sdk.RankedID, 0, len(members))
	var strays []string
	for _, m := range members {
		if stray(m.ID) {
			strays = append(strays, string(m.ID))
		} else {
			ids = append(ids, m)
		}
	}
	b.client.Do(ctx, b.fcall("ff_drop_strays", []string{b.ks.laneKeysOf(sdk.PartitionTag(p), lane).eligible}, strays...))
	return ids
}

// uuidLen is the length of a uuid's text.
const uuidLen = 36

// ScanEligibleWindow scans several partitions of a lane in one round trip.
// With client-side caching on and limit within the cached head depth, the
// heads ReadyPartitions just read serve it without a round trip: a head can
// be stale by an invalidation's flight time, which costs a lost grant at
// worst (the library re-checks everything).
func (b *Backend) ScanEligibleWindow(ctx context.Context, lane sdk.LaneID, partitions []int, limit int) ([][]sdk.RankedID, error) {
	const op = "scan_eligible_window"
	if len(partitions) == 0 {
		return nil, nil
	}
	if limit <= 0 {
		limit = 1
	}
	if b.opts.CacheSizeEachConn >= 0 && limit <= headDepth {
		if err := lane.Validate(); err != nil {
			return nil, opError(op, err)
		}
		for _, p := range partitions {
			if err := b.checkPartition(op, p); err != nil {
				return nil, err
			}
		}
		heads, err := b.cachedHeads(ctx, op, lane, partitions)
		if err != nil {
			return nil, err
		}
		for i, ids := range heads {
			heads[i] = b.eligibleIDs(ctx, lane, partitions[i], ids[:min(limit, len(ids))])
		}
		return heads, nil
	}
	cmds := make(valkey.Commands, 0, len(partitions))
	for _, p := range partitions {
		cmd, err := b.scanCmd(op, lane, p, limit)
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, cmd)
	}
	out := make([][]sdk.RankedID, len(partitions))
	for i, res := range b.client.DoMulti(ctx, cmds...) {
		ids, err := rankedIDs(res)
		if err != nil {
			return nil, backendError(op, err)
		}
		out[i] = b.eligibleIDs(ctx, lane, partitions[i], ids)
	}
	return out, nil
}

func (b *Backend) scanCmd(op string, lane sdk.LaneID, partition, limit int) (valkey.Completed, error) {
	if err := lane.Validate(); err != nil {
		return valkey.Completed{}, opError(op, err)
	}
	if err := b.checkPartition(op, partition); err != nil {
		return valkey.Completed{}, err
	}
	if limit <= 0 {
		limit = 1
	}
	limit = min(limit, scanLimitMax)
	key := b.ks.laneKeysOf(sdk.PartitionTag(partition), lane).eligible
	return b.client.B().Zrange().Key(key).Min("0").Max(itoa(limit - 1)).Withscores().Build(), nil
}

// rankedIDs reads a ZRANGE … WITHSCORES of an eligible set: the score is
// the rank (see sdk.RankedID).
func rankedIDs(res valkey.ValkeyResult) ([]sdk.RankedID, error) {
	zs, err := res.AsZScores()
	if err != nil {
		return nil, err
	}
	out := make([]sdk.RankedID, len(zs))
	for i, z := range zs {
		out[i] = sdk.RankedID{ID: sdk.ExecutionID(z.Member), Rank: z.Score}
	}
	return out, nil
}

// IssueClaimGrant runs ff_issue_claim_grant.
func (b *Backend) IssueClaimGrant(ctx context.Context, a sdk.IssueClaimGrantArgs) (sdk.ClaimGrant, error) {
	const op = "issue_claim_grant"
	cmd, err := b.grantCmd(op, a)
	if err != nil {
		return sdk.ClaimGrant{}, err
	}
	r, err := decode(op, b.client.Do(ctx, cmd))
	if err != nil {
		return sdk.ClaimGrant{}, err
	}
	return sdk.ClaimGrant{ExecutionID: a.ExecutionID, ExpiresAt: r.time(0)}, nil
}

func (b *Backend) grantCmd(op string, a sdk.IssueClaimGrantArgs) (valkey.Completed, error) {
	p, err := b.partitionOf(op, a.ExecutionID)
	if err != nil {
		return valkey.Completed{}, err
	}
	if a, err = a.Resolve(); err != nil {
		return valkey.Completed{}, opError(op, err)
	}
	ek, lk := b.ks.keysOf(a.ExecutionID), b.ks.laneKeysOf(sdk.PartitionTag(p), a.Lane)
	return b.fcall("ff_issue_claim_grant", []string{ek.core, ek.grant, lk.eligible},
		string(a.ExecutionID), string(a.WorkerID), string(a.WorkerInstanceID), durMS(a.GrantTTL), joinCSV(a.Capabilities)), nil
}

// ClaimExecution consumes the caller's grant and starts a new attempt.
func (b *Backend) ClaimExecution(ctx context.Context, a sdk.ClaimExecutionArgs) (sdk.ClaimedExecution, error) {
	t, err := b.claim(ctx, "claim_execution", a, "new", false)
	return t.ClaimedExecution, err
}

// ClaimResumedExecution consumes the grant and continues the interrupted attempt.
func (b *Backend) ClaimResumedExecution(ctx context.Context, a sdk.ClaimExecutionArgs) (sdk.ClaimedExecution, error) {
	t, err := b.claim(ctx, "claim_resumed_execution", a, "resume", false)
	return t.ClaimedExecution, err
}

func (b *Backend) claim(ctx context.Context, op string, a sdk.ClaimExecutionArgs, mode string, withContext bool) (sdk.ClaimedTask, error) {
	a, err := a.Resolve()
	if err != nil {
		return sdk.ClaimedTask{}, opError(op, err)
	}
	cmd, err := b.claimCmd(op, a, mode, withContext)
	if err != nil {
		return sdk.ClaimedTask{}, err
	}
	t, err := decodeClaim(op, a, b.client.Do(ctx, cmd), withContext)
	if err == nil {
		b.arrive.claimed(a.Lane, a.ExecutionID) // no idle worker is to chase it now
	}
	return t, err
}

// claimCmd builds ff_claim (a resolved a: see ClaimExecutionArgs.Resolve).
// A fresh attempt id is minted for mode "new".
func (b *Backend) claimCmd(op string, a sdk.ClaimExecutionArgs, mode string, withContext bool) (valkey.Completed, error) {
	p, err := b.partitionOf(op, a.ExecutionID)
	if err != nil {
		return valkey.Completed{}, err
	}
	tag := sdk.PartitionTag(p)
	ek, lk, pk := b.ks.keysOf(a.ExecutionID), b.ks.laneKeysOf(tag, a.Lane), b.ks.partKeysOf(tag)
	wc := "0"
	if withContext {
		wc = "1"
	}
	return b.fcall("ff_claim", []string{ek.core, ek.grant, lk.eligible, pk.leases, lk.active, pk.timeouts, ek.ctx},
		string(a.ExecutionID), string(a.WorkerID), string(a.WorkerInstanceID), sdk.NewToken(), sdk.NewToken(),
		durMS(a.LeaseTTL), mode, wc, string(a.Lane)), nil
}

// decodeClaim reads ff_claim's reply: the lease, then optionally the context.
func decodeClaim(op string, a sdk.ClaimExecutionArgs, res valkey.ValkeyResult, withContext bool) (sdk.ClaimedTask, error) {
	r, err := decode(op, res)
	if err != nil {
		return sdk.ClaimedTask{}, err
	}
	t := sdk.ClaimedTask{ClaimedExecution: leaseFrom(a.ExecutionID, a.Lane, a.WorkerInstanceID, a.LeaseTTL, r)}
	if withContext {
		t.Context = contextFromPairs(r.fields[6:])
	}
	return t, nil
}

// leaseFrom builds a claimed execution from the six lease fields every
// claim of the library returns, in order: lease_id, epoch, expires_at,
// attempt_id, attempt_index, attempt_type.
func leaseFrom(id sdk.ExecutionID, lane sdk.LaneID, inst sdk.WorkerInstanceID, ttl time.Duration, lease reply) sdk.ClaimedExecution {
	at := sdk.AttemptType(lease.field(5))
	kind := sdk.HandleFresh
	if at == sdk.AttemptResumed {
		kind = sdk.HandleResumed
	}
	return sdk.ClaimedExecution{
		Handle: sdk.Handle{
			Backend: sdk.BackendValkey, Kind: kind, ExecutionID: id, Lane: lane,
			AttemptIndex: sdk.AttemptIndex(lease.uint(4)), AttemptID: lease.field(3), LeaseID: lease.field(0),
			Epoch: lease.uint(1), LeaseTTL: ttl, WorkerInstanceID: inst,
		},
		ExpiresAt:   lease.time(2),
		AttemptType: at,
	}
}

// GrantAndClaim pipelines ff_issue_claim_grant and ff_claim (with the context
// inline) in one round trip. An interrupted attempt is claimed with a second
// round trip in resume mode.
func (b *Backend) GrantAndClaim(ctx context.Context, g sdk.IssueClaimGrantArgs, leaseTTL time.Duration) (sdk.ClaimedTask, error) {
	const op = "grant_and_claim"
	gc, err := b.grantCmd(op, g)
	if err != nil {
		return sdk.ClaimedTask{}, err
	}
	ca, err := sdk.ClaimExecutionArgs{ExecutionID: g.ExecutionID, Lane: g.Lane, WorkerID: g.WorkerID,
		WorkerInstanceID: g.WorkerInstanceID, LeaseTTL: leaseTTL}.Resolve()
	if err != nil {
		return sdk.ClaimedTask{}, opError(op, err)
	}
	cc, err := b.claimCmd(op, ca, "new", true)
	if err != nil {
		return sdk.ClaimedTask{}, err
	}
	// Workers sharing this client scan the same cached heads: when one is
	// already claiming an execution, another's attempt could only lose at
	// the server, so it loses here, without the round trip.
	if _, busy := b.claiming.LoadOrStore(g.ExecutionID, struct{}{}); busy {
		return sdk.ClaimedTask{}, sdk.NewError(op, sdk.CodeGrantAlreadyExists, "another worker of this process is claiming it")
	}
	defer b.claiming.Delete(g.ExecutionID)
	res := b.client.DoMulti(ctx, gc, cc)
	_, gerr := decode(op, res[0])
	t, err := decodeClaim(op, ca, res[1], true)
	switch {
	case err == nil:
		// The claim decides: it can succeed on this instance's own earlier
		// grant (a retried call) even when the new grant was refused.
		b.arrive.claimed(g.Lane, g.ExecutionID)
		return t, nil
	case sdk.CodeOf(err) == sdk.CodeUseClaimResumed && gerr == nil:
		return b.claim(ctx, op, ca, "resume", true)
	case gerr != nil:
		return sdk.ClaimedTask{}, gerr
	}
	return sdk.ClaimedTask{}, err
}

// BlockRoute parks an execution no current worker can run.
func (b *Backend) BlockRoute(ctx context.Context, a sdk.BlockRouteArgs) (sdk.BlockRouteOutcome, error) {
	const op = "block_route"
	p, err := b.partitionOf(op, a.ExecutionID)
	if err != nil {
		return sdk.BlockRouteOutcome{}, err
	}
	if err := a.Lane.Validate(); err != nil {
		return sdk.BlockRouteOutcome{}, opError(op, err)
	}
	if err := sdk.CheckReason("routing reason", a.Reason); err != nil {
		return sdk.BlockRouteOutcome{}, opError(op, err)
	}
	reason := a.Reason
	if reason == "" {
		reason = sdk.CodeCapabilityMismatch
	}
	lk := b.ks.laneKeysOf(sdk.PartitionTag(p), a.Lane)
	r, err := decode(op, b.client.Do(ctx, b.fcall("ff_block_route",
		[]string{b.ks.keysOf(a.ExecutionID).core, lk.eligible, lk.blocked}, string(a.ExecutionID), reason)))
	if err != nil {
		return sdk.BlockRouteOutcome{}, err
	}
	return sdk.BlockRouteOutcome{Blocked: r.field(0) == "blocked"}, nil
}

// Claim is the backend's own fresh-work claim: it walks the partitions from
// a rotating start, scanning a window per round trip, and grant-claims the
// first candidate that accepts. It returns (nil, nil) when nothing is eligible.
// Workers use the sdk.Worker loop, which adds readiness caching and fairness.
func (b *Backend) Claim(ctx context.Context, a sdk.ClaimArgs) (*sdk.ClaimedExecution, error) {
	const op, window = "claim", 16
	start := int(b.next.Add(1) % uint64(b.partitions))
	for off := 0; off < b.partitions; off += window {
		parts := make([]int, 0, window)
		for i := off; i < min(off+window, b.partitions); i++ {
			parts = append(parts, (start+i)%b.partitions)
		}
		heads, err := b.ScanEligibleWindow(ctx, a.Lane, parts, 4)
		if err != nil {
			return nil, err
		}
		for _, ids := range heads {
			for _, r := range ids {
				id := r.ID
				t, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: a.Lane,
					WorkerID: a.WorkerID, WorkerInstanceID: a.WorkerInstanceID, Capabilities: a.Capabilities,
					GrantTTL: a.GrantTTL}, a.LeaseTTL)
				switch {
				case err == nil:
					return &t.ClaimedExecution, nil
				case sdk.CodeOf(err) == sdk.CodeCapabilityMismatch:
					if _, err := b.BlockRoute(ctx, sdk.BlockRouteArgs{ExecutionID: id, Lane: a.Lane}); err != nil {
						return nil, err
					}
				case sdk.KindOf(err) == sdk.KindContention || sdk.KindOf(err) == sdk.KindState ||
					sdk.KindOf(err) == sdk.KindNotFound:
					// someone else won it, or it moved on: next candidate
				default:
					return nil, err
				}
			}
		}
	}
	return nil, nil
}

func toIDs(ss []string) []sdk.ExecutionID {
	ids := make([]sdk.ExecutionID, len(ss))
	for i, s := range ss {
		ids[i] = sdk.ExecutionID(s)
	}
	return ids
}

// contextFromPairs decodes the ctx hash (field, value pairs).
func contextFromPairs(kv []string) sdk.ExecutionContext {
	var c sdk.ExecutionContext
	for i := 0; i+1 < len(kv); i += 2 {
		k, v := kv[i], kv[i+1]
		switch {
		case k == ctxKind:
			c.Kind = v
		case k == ctxLane:
			c.Lane = sdk.LaneID(v)
		case k == ctxPayload:
			c.Payload = []byte(v)
		case k == ctxTrace:
			c.TraceParent = v
		case len(k) > len(tagFieldPrefix) && k[:len(tagFieldPrefix)] == tagFieldPrefix:
			if c.Tags == nil {
				c.Tags = make(map[string]string)
			}
			c.Tags[k[len(tagFieldPrefix):]] = v
		}
	}
	return c
}
