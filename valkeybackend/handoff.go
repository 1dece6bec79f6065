package valkeybackend

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Claim offers and hand-offs (sdk.ClaimOfferer, sdk.CompleteOfferer). An
// idle worker posts its free slots on ff:offers:<lane> (ff_offer, or
// ff_complete as a task ends); ff_create claims an execution that lands in
// an empty eligible set for the freshest live offer (behind a backlog, the
// set's head, up to two per create) and pushes the lease and context onto
// the offering instance's inbox, ff:inbox:<instance>, where the instance
// waits with BLMPOP. Valkey serves a blocked BLMPOP as the create's push
// lands, so the hand-off reaches the worker as fast as a pub/sub message
// would, and unlike one it waits in the list while the worker reconnects.
//
// On a cluster, where a create on one slot cannot touch another, offers
// live per partition (ff:i:{p:N}:<lane>:offers): an instance spreads the
// offers it posts over the partitions, a task's completion offers its slot
// on its own partition, and a hand-off is published on the instance's
// shard channel of the create's partition (ff:handoff:{p:N}:<instance>),
// to which the instance subscribes on every partition. A hand-off
// published while that subscription is down is lost, and recovered when
// its lease expires, as a crashed worker's is.

// Offer bounds.
const (
	maxOffersPerCall = 1024
	minOfferTTL      = time.Millisecond
)

// Inbox reads: up to inboxBatch hand-offs per BLMPOP, which blocks at most
// inboxBlock (an idle worker's only command besides its refreshes), and
// after an error the next one waits inboxRetry.
const (
	inboxBatch = 64
	inboxBlock = 30 * time.Second
	inboxRetry = 200 * time.Millisecond
)

// handoffSubscribeWait bounds how long WatchHandoffs waits on a cluster for
// its subscriptions to stand.
const handoffSubscribeWait = 10 * time.Second

// handoffs tracks the instances of this client that wait for hand-offs.
type handoffs struct {
	mu       sync.Mutex
	watching map[sdk.WorkerInstanceID]bool
	closed   bool
	done     sync.WaitGroup
	stop     chan struct{} // closed by close
}

// handoffOn reports whether this client hands off and takes offers.
func (b *Backend) handoffOn() bool { return !b.opts.DisableHandoff }

// offersKeyFor is the offers key of lane that creates on partition tag
// read: the lane's one key on a single server, the partition's on a
// cluster.
func (b *Backend) offersKeyFor(tag string, lane sdk.LaneID) string {
	if b.cluster {
		return b.ks.offersKeyIn(tag, lane)
	}
	return b.ks.offersKey(lane)
}

// offersScope is ff_complete_batch's name for where offers live.
func (b *Backend) offersScope() string {
	if b.cluster {
		return "partition"
	}
	return "global"
}

// offersReplyScope is offersScope asking ff_complete_batch (v36) to return
// flow children handed to the call's own offers in its reply (constants:
// no string built per call).
func (b *Backend) offersReplyScope() string {
	if b.cluster {
		return "partition+reply"
	}
	return "global+reply"
}

func (h *handoffs) isWatching(inst sdk.WorkerInstanceID) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.watching[inst]
}

// WatchHandoffs calls deliver with the executions handed to instance's
// offers (see sdk.ClaimOfferer): a goroutine pops them from the instance's
// inbox while ctx lasts and delivers them in order.
func (b *Backend) WatchHandoffs(ctx context.Context, instance sdk.WorkerInstanceID, deliver func(sdk.ClaimedTask)) error {
	const op = "watch_handoffs"
	if !b.handoffOn() {
		return sdk.Unavailable(op)
	}
	if err := instance.Validate(); err != nil {
		return opError(op, err)
	}
	if deliver == nil {
		return sdk.Validationf(sdk.CodeInvalidInput, "nil deliver")
	}
	h := &b.hand
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return sdk.TransportError(op, valkey.ErrClosing)
	case h.watching[instance]:
		return sdk.NewError(op, sdk.CodeInvalidInput, "instance "+string(instance)+" already watches its hand-offs")
	}
	if h.watching == nil {
		h.watching = make(map[sdk.WorkerInstanceID]bool)
		h.stop = make(chan struct{})
	}
	h.watching[instance] = true
	wctx, cancel := context.WithCancel(ctx)
	stop := h.stop
	go func() {
		select {
		case <-wctx.Done():
		case <-stop:
		}
		cancel()
	}()
	h.done.Go(func() {
		defer func() {
			h.mu.Lock()
			delete(h.watching, instance)
			h.mu.Unlock()
		}()
		if b.cluster {
			b.receiveHandoffs(wctx, instance, deliver)
			return
		}
		b.readInbox(wctx, instance, deliver)
	})
	if b.cluster {
		// Offers may go out once this returns: a hand-off published before
		// the subscriptions stand would wait for its lease to expire.
		return b.awaitHandoffSubscriptions(ctx, instance)
	}
	return nil
}

// receiveHandoffs subscribes to instance's hand-off channel of every
// partition (a cluster: one SSUBSCRIBE per partition, each in its slot)
// and delivers what comes until ctx ends, renewing a subscription that
// drops. Deliveries are serialised, as the inbox reader's are.
func (b *Backend) receiveHandoffs(ctx context.Context, instance sdk.WorkerInstanceID, deliver func(sdk.ClaimedTask)) {
	var mu sync.Mutex
	handle := func(m valkey.PubSubMessage) {
		inst, t, ok := parseHandoff(m.Message)
		if !ok || inst != instance || ctx.Err() != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		deliver(t)
	}
	var wg sync.WaitGroup
	for p := range b.partitions {
		ch := b.ks.handoffChannel(sdk.PartitionTag(p), instance)
		wg.Go(func() {
			for ctx.Err() == nil {
				_ = b.client.Receive(ctx, b.client.B().Ssubscribe().Channel(ch).Build(), handle)
				select {
				case <-ctx.Done():
				case <-time.After(arrivalsResubscribeEvery):
				}
			}
		})
	}
	wg.Wait()
}

// awaitHandoffSubscriptions waits until instance's hand-off channel of
// every partition has a subscriber (PUBSUB SHARDNUMSUB), or ctx ends or
// handoffSubscribeWait passes (a transport error then).
func (b *Backend) awaitHandoffSubscriptions(ctx context.Context, instance sdk.WorkerInstanceID) error {
	const op = "watch_handoffs"
	deadline := time.Now().Add(handoffSubscribeWait)
	for p := 0; p < b.partitions; {
		ch := b.ks.handoffChannel(sdk.PartitionTag(p), instance)
		m, err := b.client.Do(ctx, b.client.B().PubsubShardnumsub().Channel(ch).Build()).AsIntMap()
		if err == nil && m[ch] > 0 {
			p++
			continue
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			if err == nil {
				err = errors.New("hand-off subscriptions not confirmed in time")
			}
			return sdk.TransportError(op, err)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// readInbox pops instance's hand-offs and delivers them until ctx ends. A
// hand-off popped but not yet delivered when ctx ends is dropped: its lease
// expires and the reclaim scanner recovers it.
func (b *Backend) readInbox(ctx context.Context, instance sdk.WorkerInstanceID, deliver func(sdk.ClaimedTask)) {
	for ctx.Err() == nil {
		if !b.readInboxOn(ctx, instance, deliver) {
			select {
			case <-ctx.Done():
			case <-time.After(inboxRetry):
			}
		}
	}
}

// readInboxOn reads instance's inbox on a connection of its own until ctx
// ends (false: the connection failed, or a reply was not a hand-off
// read's). The reads go without a cancellable context, so valkey-go sends
// each and reads its reply on this goroutine (no writer and reader
// goroutines in between: a hand-off reaches deliver one goroutine hand-over
// sooner); ctx's end closes the connection, which ends a blocked read.
func (b *Backend) readInboxOn(ctx context.Context, instance sdk.WorkerInstanceID, deliver func(sdk.ClaimedTask)) bool {
	dc, release := b.client.Dedicate()
	defer release()
	defer context.AfterFunc(ctx, dc.Close)()
	key := b.ks.inboxKey(instance)
	rctx := context.WithoutCancel(ctx)
	for ctx.Err() == nil {
		arr, err := dc.Do(rctx, dc.B().Blmpop().Timeout(inboxBlock.Seconds()).Numkeys(1).Key(key).
			Left().Count(inboxBatch).Build()).ToArray()
		if valkey.IsValkeyNil(err) {
			continue // blocked its whole timeout: nothing handed over
		}
		var msgs []string
		if err == nil && len(arr) == 2 {
			msgs, err = arr[1].AsStrSlice()
		}
		if err != nil || len(arr) != 2 {
			return false
		}
		for _, m := range msgs {
			inst, t, ok := parseHandoff(m)
			if !ok || inst != instance {
				continue // not a hand-off of ours: nothing to run
			}
			if ctx.Err() != nil {
				return true
			}
			deliver(t)
		}
	}
	return true
}

// OfferClaims posts one claim offer on args.Lane per lease id (see
// sdk.ClaimOfferer). The instance must watch its hand-offs first.
func (b *Backend) OfferClaims(ctx context.Context, a sdk.OfferArgs) ([]sdk.ClaimOffer, error) {
	const op = "offer_claims"
	mem, offers, err := b.offerMembers(op, a)
	if err != nil {
		return nil, err
	}
	// One server: all on the lane's key. A cluster: spread over the
	// partitions from a rotating start, one ff_offer per partition.
	byKey := map[string][]int{}
	var keys []string
	start := int(b.next.Add(1) % uint64(b.partitions))
	for i := range offers {
		if b.cluster {
			offers[i].Partition = (start + i) % b.partitions
		}
		k := b.offerKey(offers[i])
		if byKey[k] == nil {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], i)
	}
	cmds := make(valkey.Commands, len(keys))
	for j, k := range keys {
		args := []string{durMS(ceilMS(a.TTL)), "new"}
		for _, i := range byKey[k] {
			args = append(args, mem[i])
		}
		cmds[j] = b.fcall("ff_offer", []string{k}, args...)
	}
	for _, res := range b.client.DoMulti(ctx, cmds...) {
		if _, err := decode(op, res); err != nil {
			return nil, err
		}
	}
	return offers, nil
}

// CompleteAndOffer completes h and, when that lands, posts the offer in
// the same FCALL (see sdk.CompleteOfferer). An offer refused before the
// call (offerErr) leaves a plain complete.
func (b *Backend) CompleteAndOffer(ctx context.Context, h sdk.Handle, result []byte, a sdk.OfferArgs) ([]sdk.ClaimOffer, error, error) {
	const op = "complete_and_offer"
	mem, offers, oerr := b.offerMembers(op, a)
	if oerr != nil {
		return nil, oerr, b.Complete(ctx, h, result)
	}
	keys, args, err := b.completeCall(op, h, result)
	if err != nil {
		return nil, nil, err
	}
	p, _ := b.handlePartition(op, h) // completeCall checked it
	b.placeOffers(offers, p)
	keys = append(keys, b.offersKeyFor(sdk.PartitionTag(p), a.Lane))
	args = append(append(args, durMS(ceilMS(a.TTL))), mem...)
	if _, err := decode(op, b.doAcked(ctx, op, b.fcall("ff_complete", keys, args...))); err != nil {
		return nil, nil, err
	}
	return offers, nil, nil
}

// offerMembers validates an offer and renders its ff_offer members.
// Nothing reaches Valkey when it returns an error.
func (b *Backend) offerMembers(op string, a sdk.OfferArgs) ([]string, []sdk.ClaimOffer, error) {
	if !b.handoffOn() {
		return nil, nil, sdk.Unavailable(op)
	}
	a, err := a.Resolve()
	if err != nil {
		return nil, nil, opError(op, err)
	}
	if n := len(a.LeaseIDs); n < 1 || n > maxOffersPerCall {
		return nil, nil, sdk.Validationf(sdk.CodeInvalidInput, "offer count %d out of range 1..%d", n, maxOffersPerCall)
	}
	for _, id := range a.LeaseIDs {
		if !validToken(id) {
			return nil, nil, sdk.Validationf(sdk.CodeInvalidInput, "lease id %q: want 1..%d printable bytes, no space", id, sdk.MaxIDLength)
		}
	}
	if a.TTL < minOfferTTL {
		return nil, nil, sdk.Validationf(sdk.CodeInvalidInput, "offer ttl %v below %v", a.TTL, minOfferTTL)
	}
	if a.Quota != "" && b.cluster {
		// A create on a cluster cannot reach the quota's slot to admit.
		return nil, nil, sdk.Unavailable(op + " under a quota (cluster)")
	}
	if !b.hand.isWatching(a.WorkerInstanceID) {
		return nil, nil, sdk.NewError(op, sdk.CodeInvalidInput, "instance "+string(a.WorkerInstanceID)+" does not watch its hand-offs")
	}
	tail := " " + durMS(a.LeaseTTL) + " " + string(a.WorkerID) + " " + string(a.WorkerInstanceID) + " " + joinCSV(a.Capabilities)
	if a.Quota != "" {
		// The member's last field names the quota (after the caps field,
		// even an empty one): creates admit before they hand to it.
		tail += " " + string(a.Quota)
	}
	offers := make([]sdk.ClaimOffer, len(a.LeaseIDs))
	mem := make([]string, len(offers))
	for i, id := range a.LeaseIDs {
		offers[i] = sdk.ClaimOffer{Lane: a.Lane, LeaseID: id, Ref: id + " " + sdk.NewToken() + tail, Partition: -1}
		mem[i] = offers[i].Ref
	}
	return mem, offers, nil
}

// validToken reports whether s can be a lease id inside an offer member:
// printable, no space, not too long.
func validToken(s string) bool {
	if s == "" || len(s) > sdk.MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// RefreshOffers extends offers by ttl: one ff_offer per lane, pipelined.
func (b *Backend) RefreshOffers(ctx context.Context, offers []sdk.ClaimOffer, ttl time.Duration) ([]bool, error) {
	const op = "refresh_offers"
	if !b.handoffOn() {
		return nil, sdk.Unavailable(op)
	}
	if ttl < minOfferTTL {
		return nil, sdk.Validationf(sdk.CodeInvalidInput, "offer ttl %v below %v", ttl, minOfferTTL)
	}
	if err := b.validOffers(op, offers); err != nil {
		return nil, err
	}
	taken := make([]bool, len(offers))
	byKey := map[string][]int{}
	var keys []string
	for i, o := range offers {
		k := b.offerKey(o)
		if byKey[k] == nil {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], i)
	}
	cmds := make(valkey.Commands, len(keys))
	for k, key := range keys {
		args := []string{durMS(ceilMS(ttl)), "refresh"}
		for _, i := range byKey[key] {
			args = append(args, offers[i].Ref)
		}
		cmds[k] = b.fcall("ff_offer", []string{key}, args...)
	}
	for k, res := range b.client.DoMulti(ctx, cmds...) {
		r, err := decode(op, res)
		if err != nil {
			return nil, err
		}
		for j, i := range byKey[keys[k]] {
			taken[i] = r.field(1+j) != "1"
		}
	}
	return taken, nil
}

// WithdrawOffers removes offers, one ZREM each, pipelined.
func (b *Backend) WithdrawOffers(ctx context.Context, offers []sdk.ClaimOffer) ([]bool, error) {
	const op = "withdraw_offers"
	if !b.handoffOn() {
		return nil, sdk.Unavailable(op)
	}
	if err := b.validOffers(op, offers); err != nil {
		return nil, err
	}
	if len(offers) == 0 {
		return nil, nil
	}
	cmds := make(valkey.Commands, len(offers))
	for i, o := range offers {
		cmds[i] = b.client.B().Zrem().Key(b.offerKey(o)).Member(o.Ref).Build()
	}
	taken := make([]bool, len(offers))
	for i, res := range b.client.DoMulti(ctx, cmds...) {
		n, err := res.AsInt64()
		if err != nil {
			return nil, backendError(op, err)
		}
		taken[i] = n == 0
	}
	return taken, nil
}

// validOffers checks offers came from OfferClaims: a lane, a reference
// that starts with their lease id, and a key that is one of the lane's
// offers keys here.
func (b *Backend) validOffers(op string, offers []sdk.ClaimOffer) error {
	for _, o := range offers {
		if err := o.Lane.Validate(); err != nil {
			return opError(op, err)
		}
		if o.LeaseID == "" || !strings.HasPrefix(o.Ref, o.LeaseID+" ") || !b.validOfferPartition(o.Partition) {
			return sdk.Validationf(sdk.CodeInvalidInput, "offer %q was not made by OfferClaims", o.LeaseID)
		}
	}
	return nil
}

// validOfferPartition reports whether p can be an offer's partition here:
// -1 on a single server, a partition on a cluster.
func (b *Backend) validOfferPartition(p int) bool {
	if !b.cluster {
		return p == -1
	}
	return p >= 0 && p < b.partitions
}

// offerKey is the offers key offer o was posted on (its lane's, or its
// partition's on a cluster).
func (b *Backend) offerKey(o sdk.ClaimOffer) string {
	if o.Partition < 0 {
		return b.ks.offersKey(o.Lane)
	}
	return b.ks.offersKeyIn(sdk.PartitionTag(o.Partition), o.Lane)
}

// placeOffers sets the partition of offers made with a complete on
// partition p: p's on a cluster, every partition's (-1) on one server.
func (b *Backend) placeOffers(offers []sdk.ClaimOffer, p int) {
	for i := range offers {
		offers[i].Partition = -1
		if b.cluster {
			offers[i].Partition = p
		}
	}
}

// unframe splits the library's length-prefixed fields ("<len>:<bytes>"
// each, see frame in the library); false when msg is not that.
func unframe(msg string) ([]string, bool) {
	// Two passes: the first checks the framing and counts the fields, so
	// the second fills a slice of the right size (one allocation).
	n := 0
	for rest := msg; len(rest) > 0; n++ {
		var ok bool
		if _, rest, ok = nextFrame(rest); !ok {
			return nil, false
		}
	}
	f := make([]string, 0, n)
	for len(msg) > 0 {
		field, after, _ := nextFrame(msg)
		f = append(f, field)
		msg = after
	}
	return f, true
}

// nextFrame cuts the first "<len>:<bytes>" field off msg.
func nextFrame(msg string) (field, rest string, ok bool) {
	n, rest, ok := strings.Cut(msg, ":")
	if !ok || len(n) == 0 || len(n) > 10 {
		return "", "", false
	}
	size, err := strconv.Atoi(n)
	if err != nil || size < 0 || size > len(rest) {
		return "", "", false
	}
	return rest[:size], rest[size:], true
}

// parseHandoff reads ff_create's hand-off message: length-prefixed fields
// ("<len>:<bytes>") worker_instance, eid, lease_ttl_ms, lease_id, epoch,
// expires_at_ms, attempt_id, attempt_index, attempt_type, then the context
// as field, value pairs, ending, for an offer made under a quota, with the
// admission's pairs "qa" (the quota) and "qm" (its window entry). Anything
// else is refused.
func parseHandoff(msg string) (sdk.WorkerInstanceID, sdk.ClaimedTask, bool) {
	f, ok := unframe(msg)
	if !ok || len(f) < 9 || (len(f)-9)%2 != 0 {
		return "", sdk.ClaimedTask{}, false
	}
	inst := sdk.WorkerInstanceID(f[0])
	id, err := sdk.ParseExecutionID(f[1])
	ttl, terr := strconv.ParseInt(f[2], 10, 64)
	_, eerr := strconv.ParseUint(f[4], 10, 64) // epoch
	_, xerr := strconv.ParseInt(f[5], 10, 64)  // expires_at
	_, ierr := strconv.ParseUint(f[7], 10, 32) // attempt_index
	if inst.Validate() != nil || err != nil || terr != nil || ttl <= 0 || ttl > int64(time.Hour*24*365/time.Millisecond) ||
		eerr != nil || xerr != nil || ierr != nil || f[3] == "" || f[6] == "" || f[8] == "" {
		return "", sdk.ClaimedTask{}, false
	}
	pairs := f[9:]
	var adm *sdk.QuotaAdmission
	if n := len(pairs); n >= 4 && pairs[n-4] == "qa" && pairs[n-2] == "qm" {
		adm = &sdk.QuotaAdmission{Quota: sdk.QuotaID(pairs[n-3]), Member: pairs[n-1]}
		if adm.Quota.Validate() != nil {
			return "", sdk.ClaimedTask{}, false
		}
		pairs = pairs[:n-4]
	}
	ctx := contextFromPairs(pairs)
	if ctx.Lane.Validate() != nil {
		return "", sdk.ClaimedTask{}, false
	}
	// The lease fields are checked above; leaseFrom reads them.
	return inst, sdk.ClaimedTask{
		ClaimedExecution: leaseFrom(id, ctx.Lane, inst, time.Duration(ttl)*time.Millisecond, reply{fields: f[3:9]}),
		Context:          ctx,
		Admission:        adm,
	}, true
}

// close stops the inbox readers (Close calls it).
func (h *handoffs) close() {
	h.mu.Lock()
	h.closed = true
	if h.stop != nil {
		close(h.stop)
	}
	h.mu.Unlock()
	h.done.Wait()
}
