package scanner

import (
	"context"
	"hash/fnv"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// EnginesKey is the heartbeat index of engine processes in the default
// namespace: a ZSET of engine id scored by heartbeat expiry (server ms).
// Untagged and global: one small key read and written once per renew
// interval by each engine. A backend names its namespace's with
// (*valkeybackend.Backend).EnginesKey.
const EnginesKey = valkeybackend.EnginesKey

// OwnershipBackend is what ownership needs of the backend: partition
// leases, the engine heartbeat, and the server clock both are timed by.
type OwnershipBackend interface {
	OwnPartition(ctx context.Context, owner string, partition int, ttl time.Duration, mode string) (bool, error)
	Partitions() int
	EngineHeartbeat(ctx context.Context, engine string, now time.Time, ttl time.Duration) (int, error)
	DropEngine(ctx context.Context, engine string) error
	ServerTime(ctx context.Context) (time.Time, error)
}

// Ownership splits the partitions between live engine processes through
// ownership leases in Valkey (ff_own). Every TTL/3 an engine renews what it
// owns, heartbeats, counts the live engines, and moves toward its fair share
// ceil(P / live): it releases extras and acquires free partitions. A dead
// engine's leases lapse after TTL, its heartbeat with them, and the survivors
// take its partitions at their next renewal. One engine alone owns all.
//
// Two engines may briefly scan the same partition (a lease lapsed while its
// renewal was in flight); that is harmless, as every action re-checks in Lua.
type Ownership struct {
	b          OwnershipBackend
	id         string
	ttl        time.Duration
	partitions int
	clock      *serverClock
	log        *slog.Logger

	mu        sync.Mutex
	owned     map[int]time.Time // partition → local time the lease is sure to last until
	live      int
	lastLive  int
	unsettled int       // ticks left during which a short engine probes every tick
	lastProbe time.Time // last time free partitions were looked for
}

// NewOwnership prepares ownership leases of engine id with ttl (at least
// 30ms; New validates it). Run keeps them, through a Supervisor.
func NewOwnership(b OwnershipBackend, id string, ttl time.Duration, logger *slog.Logger) *Ownership {
	if logger == nil {
		logger = slog.Default()
	}
	return &Ownership{b: b, id: id, ttl: ttl, partitions: b.Partitions(), log: logger,
		owned: map[int]time.Time{}, clock: &serverClock{read: b.ServerTime}}
}

// Owned returns the partitions whose lease this engine surely holds now,
// in order.
func (o *Ownership) Owned() []int {
	now := time.Now()
	o.mu.Lock()
	out := make([]int, 0, len(o.owned))
	for p, until := range o.owned {
		if now.Before(until) {
			out = append(out, p)
		}
	}
	o.mu.Unlock()
	sort.Ints(out)
	return out
}

func (o *Ownership) liveEngines() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.live
}

// run ticks every TTL/3 until ctx ends.
func (o *Ownership) run(ctx context.Context) {
	for sleep(ctx, o.ttl/3) {
		o.tick(ctx)
	}
}

// fanout runs f on each partition, up to 32 at a time; valkey-go pipelines
// the concurrent calls.
func fanout(parts []int, f func(p int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, p := range parts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(p)
		})
	}
	wg.Wait()
}

// tick renews, heartbeats, then releases or acquires toward the fair share.
func (o *Ownership) tick(ctx context.Context) {
	// Renew first: the heartbeat written after it expires no earlier than
	// the leases, so when the survivors count a dead engine out its leases
	// have lapsed and they can take its partitions at once.
	o.mu.Lock()
	held := make([]int, 0, len(o.owned))
	for p := range o.owned {
		held = append(held, p)
	}
	o.mu.Unlock()
	lost := 0
	fanout(held, func(p int) {
		start := time.Now()
		ok, err := o.b.OwnPartition(ctx, o.id, p, o.ttl, valkeybackend.OwnRenew)
		o.mu.Lock()
		defer o.mu.Unlock()
		switch {
		case err != nil:
			// Keep it until its lease surely lapsed; the next tick retries.
			if time.Now().After(o.owned[p]) {
				delete(o.owned, p)
				lost++
			}
		case ok:
			o.owned[p] = start.Add(o.ttl)
		default:
			delete(o.owned, p)
			lost++
		}
	})
	if lost > 0 && ctx.Err() == nil {
		o.log.Warn("partition ownership lost", "engine", o.id, "lost", lost)
	}

	live, err := o.heartbeat(ctx)
	if err != nil {
		if ctx.Err() == nil {
			o.log.Warn("engine heartbeat failed", "engine", o.id, "err", err)
		}
		return
	}
	fair := (o.partitions + live - 1) / live

	o.mu.Lock()
	o.live = live
	if live != o.lastLive || lost > 0 {
		o.unsettled = 3 // probe every tick for one TTL after a change
	} else if o.unsettled > 0 {
		o.unsettled--
	}
	o.lastLive = live
	n := len(o.owned)
	probe := n < fair && (o.unsettled > 0 || time.Since(o.lastProbe) >= o.ttl)
	var extras []int
	if n > fair {
		for p := range o.owned {
			extras = append(extras, p)
		}
		sort.Ints(extras)
		extras = extras[fair:]
		for _, p := range extras {
			delete(o.owned, p) // stop scanning before the lease goes
		}
		o.unsettled = 3
	}
	o.mu.Unlock()

	if len(extras) > 0 {
		fanout(extras, func(p int) {
			if _, err := o.b.OwnPartition(ctx, o.id, p, o.ttl, valkeybackend.OwnRelease); err != nil && ctx.Err() == nil {
				o.log.Warn("partition release failed", "engine", o.id, "partition", p, "err", err)
			}
		})
		o.log.Info("released partitions above fair share", "engine", o.id, "released", len(extras),
			"fair_share", fair, "live_engines", live)
	}
	if probe {
		o.acquire(ctx, fair-n)
	}
}

// heartbeat records this engine as live until now+TTL and counts the live
// engines (itself included), dropping long-dead entries.
func (o *Ownership) heartbeat(ctx context.Context) (int, error) {
	now, err := o.clock.sync(ctx)
	if err != nil {
		return 0, err
	}
	live, err := o.b.EngineHeartbeat(ctx, o.id, now, o.ttl)
	if err != nil {
		return 0, err
	}
	return max(live, 1), nil
}

// acquire tries free partitions, starting at a point derived from the
// engine id (so engines do not all race for the same ones), until it holds
// need more or has tried them all.
func (o *Ownership) acquire(ctx context.Context, need int) {
	o.mu.Lock()
	o.lastProbe = time.Now()
	var candidates []int
	h := fnv.New32a()
	h.Write([]byte(o.id))
	start := int(h.Sum32() % uint32(o.partitions))
	for i := range o.partitions {
		p := (start + i) % o.partitions
		if _, mine := o.owned[p]; !mine {
			candidates = append(candidates, p)
		}
	}
	o.mu.Unlock()
	got := 0
	for len(candidates) > 0 && got < need && ctx.Err() == nil {
		wave := candidates[:min(need-got, len(candidates))]
		candidates = candidates[len(wave):]
		var mu sync.Mutex
		fanout(wave, func(p int) {
			start := time.Now()
			ok, err := o.b.OwnPartition(ctx, o.id, p, o.ttl, valkeybackend.OwnAcquire)
			if err != nil || !ok {
				return
			}
			mu.Lock()
			got++
			mu.Unlock()
			o.mu.Lock()
			o.owned[p] = start.Add(o.ttl)
			o.mu.Unlock()
		})
	}
	if got > 0 {
		o.mu.Lock()
		o.unsettled = 3
		owned := len(o.owned)
		o.mu.Unlock()
		o.log.Info("acquired partitions", "engine", o.id, "acquired", got, "owned", owned, "of", o.partitions)
	}
}

// releaseAll gives up every partition and the heartbeat, so the others take
// over at once instead of after a TTL.
func (o *Ownership) releaseAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	o.mu.Lock()
	held := make([]int, 0, len(o.owned))
	for p := range o.owned {
		held = append(held, p)
	}
	o.owned = map[int]time.Time{}
	o.mu.Unlock()
	fanout(held, func(p int) {
		_, _ = o.b.OwnPartition(ctx, o.id, p, o.ttl, valkeybackend.OwnRelease)
	})
	_ = o.b.DropEngine(ctx, o.id)
	o.log.Info("released all partitions", "engine", o.id, "released", len(held))
}
