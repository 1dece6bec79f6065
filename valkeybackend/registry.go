package valkeybackend

import (
	"context"
	"strconv"
	"strings"
	"sync"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// registrations remembers the owner token of each instance this process
// registered, so only the owner can heartbeat or deregister it.
type registrations struct {
	mu     sync.Mutex
	tokens map[sdk.WorkerInstanceID]string
}

func (r *registrations) token(id sdk.WorkerInstanceID, create bool) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tokens == nil {
		r.tokens = make(map[sdk.WorkerInstanceID]string)
	}
	t, ok := r.tokens[id]
	if !ok && create {
		t = sdk.NewToken()
		r.tokens[id] = t
	}
	return t
}

func (b *Backend) registryCall(ctx context.Context, op, fn string, reg sdk.WorkerRegistration, create bool) error {
	if err := ctx.Err(); err != nil {
		return backendError(op, err)
	}
	if err := reg.InstanceID.Validate(); err != nil {
		return opError(op, err)
	}
	if err := reg.WorkerID.Validate(); err != nil {
		return opError(op, err)
	}
	if reg.TTL <= 0 {
		return sdk.NewError(op, sdk.CodeInvalidInput, "registration ttl must be positive")
	}
	lanes := make([]string, len(reg.Lanes))
	for i, l := range reg.Lanes {
		if err := l.Validate(); err != nil {
			return opError(op, err)
		}
		lanes[i] = string(l)
	}
	caps, err := sdk.NormalizeCapabilities(reg.Capabilities)
	if err != nil {
		return opError(op, err)
	}
	token := b.regs.token(reg.InstanceID, create)
	if token == "" {
		return sdk.NewError(op, sdk.CodeInvalidInput, "instance was not registered by this process")
	}
	wk := b.ks.workerKeysOf(reg.InstanceID)
	r, err := decode(op, b.client.Do(ctx, b.fcall(fn, []string{wk.alive, wk.info},
		token, durMS(reg.TTL), string(reg.WorkerID), strings.Join(lanes, ","), joinCSV(caps))))
	if err != nil {
		return err
	}
	return b.client.Do(ctx, b.client.B().Zadd().Key(b.ks.workers).ScoreMember().
		ScoreMember(float64(r.int(0)), string(reg.InstanceID)).Build()).Error()
}

// RegisterWorker records a live instance; a live instance with the same id
// gives ErrWorkerInstanceInUse.
func (b *Backend) RegisterWorker(ctx context.Context, reg sdk.WorkerRegistration) error {
	err := b.registryCall(ctx, "register_worker", "ff_register_worker", reg, true)
	if sdk.CodeOf(err) == sdk.CodeWorkerInstanceInUse {
		b.regs.mu.Lock()
		delete(b.regs.tokens, reg.InstanceID)
		b.regs.mu.Unlock()
	}
	return err
}

// HeartbeatWorker extends a registration this process owns.
func (b *Backend) HeartbeatWorker(ctx context.Context, reg sdk.WorkerRegistration) error {
	return b.registryCall(ctx, "heartbeat_worker", "ff_heartbeat_worker", reg, false)
}

// DeregisterWorker removes a registration this process owns.
func (b *Backend) DeregisterWorker(ctx context.Context, id sdk.WorkerInstanceID) error {
	const op = "deregister_worker"
	if err := id.Validate(); err != nil {
		return opError(op, err)
	}
	token := b.regs.token(id, false)
	if token == "" {
		return nil
	}
	wk := b.ks.workerKeysOf(id)
	r, err := decode(op, b.client.Do(ctx, b.fcall("ff_deregister_worker", []string{wk.alive, wk.info}, token)))
	if err != nil {
		return err
	}
	// Only the owner leaves the index: another live owner of the id stays listed.
	if r.field(0) == "removed" {
		if err := b.client.Do(ctx, b.client.B().Zrem().Key(b.ks.workers).Member(string(id)).Build()).Error(); err != nil {
			return backendError(op, err)
		}
	}
	b.regs.mu.Lock()
	delete(b.regs.tokens, id)
	b.regs.mu.Unlock()
	return nil
}

// LiveWorker is a registered, unexpired worker instance.
type LiveWorker struct {
	InstanceID   sdk.WorkerInstanceID
	WorkerID     sdk.WorkerID
	Lanes        []sdk.LaneID
	Capabilities []string
}

// LiveWorkers lists registered instances whose registration has not expired.
func (b *Backend) LiveWorkers(ctx context.Context) ([]LiveWorker, error) {
	const op = "live_workers"
	now, err := b.serverTimeMS(ctx)
	if err != nil {
		return nil, err
	}
	// Drop instances that crashed without deregistering (a live one's next
	// heartbeat re-adds it), then read the live ones.
	res := b.client.DoMulti(ctx,
		b.client.B().Zremrangebyscore().Key(b.ks.workers).Min("-inf").Max("("+strconv.FormatInt(now, 10)).Build(),
		b.client.B().Zrangebyscore().Key(b.ks.workers).Min(strconv.FormatInt(now, 10)).Max("+inf").Build())
	ids, err := res[1].AsStrSlice()
	if err == nil {
		err = res[0].Error()
	}
	if err != nil {
		return nil, backendError(op, err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make(valkey.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = b.client.B().Hgetall().Key(b.ks.workerKeysOf(sdk.WorkerInstanceID(id)).info).Build()
	}
	var out []LiveWorker
	for i, res := range b.client.DoMulti(ctx, cmds...) {
		m, err := res.AsStrMap()
		if err != nil {
			return nil, backendError(op, err)
		}
		if len(m) == 0 {
			continue // expired between the two reads
		}
		w := LiveWorker{InstanceID: sdk.WorkerInstanceID(ids[i]), WorkerID: sdk.WorkerID(m["worker_id"])}
		for _, l := range strings.Split(m["lanes"], ",") {
			if l != "" {
				w.Lanes = append(w.Lanes, sdk.LaneID(l))
			}
		}
		if m["caps"] != "" {
			w.Capabilities = strings.Split(m["caps"], ",")
		}
		out = append(out, w)
	}
	return out, nil
}

// serverTimeMS reads the server clock (TIME) in milliseconds.
func (b *Backend) serverTimeMS(ctx context.Context) (int64, error) {
	t, err := b.ServerTime(ctx)
	if err != nil {
		return 0, err
	}
	return t.UnixMilli(), nil
}
