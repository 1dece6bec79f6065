package valkeybackend

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// arrivals fans the partitions' arrivals channels (the library publishes
// "<lane> <eid>" there when an execution fills an empty eligible set) out
// to the workers of this process that wait for work. The subscription starts with
// the first watcher and lasts until Close.
type arrivals struct {
	mu     sync.Mutex
	byLane map[sdk.LaneID][]chan sdk.Arrival
	next   map[sdk.LaneID]int // round-robin start per lane
	closed bool
	stop   context.CancelFunc // ends the subscriptions; nil until they start
	done   sync.WaitGroup
	// pending keeps, per lane, the latest arrivals no worker was waiting
	// for (busy in a claim round): TakeArrivals hands them to the next
	// round, which claims them without re-reading the sets they are in.
	pending map[sdk.LaneID][]pendingArrival
	// rehand, while arrivals are pending, offers them again to watchers
	// that started waiting since (a worker that finished its round just
	// after the arrival came would otherwise idle past it).
	rehand *time.Timer
	// leaseWatchers receive the lease events ("<eid>" alone on the same
	// channels: a lease taken from its holder).
	leaseWatchers []chan sdk.ExecutionID
}

// leaseEventsBuffer is each lease-event watcher's channel capacity; events
// beyond it are dropped (the holder's renewal still finds the loss).
const leaseEventsBuffer = 64

type pendingArrival struct {
	arr sdk.Arrival
	at  time.Time
}

// freshPending drops q's stale head: arrivals are queued in the order they
// came, so those older than pendingArrivalsFresh are a prefix.
func freshPending(q []pendingArrival) []pendingArrival {
	stale := time.Now().Add(-pendingArrivalsFresh)
	k := 0
	for k < len(q) && q[k].at.Before(stale) {
		k++
	}
	return q[k:]
}

// Pending arrivals: at most pendingArrivalsMax per lane (the oldest go),
// and none older than pendingArrivalsFresh (by then a scan has found it);
// offered again to idle watchers every pendingArrivalsRehand meanwhile.
const (
	pendingArrivalsMax    = 64
	pendingArrivalsFresh  = 10 * time.Millisecond
	pendingArrivalsRehand = time.Millisecond
)

// deliver hands arr to one watcher of its lane that is receiving right now
// (the channels are unbuffered), trying first the one after the last that
// got one, so idle workers share arrivals; with nobody receiving, the hint
// waits in pending for a busy worker's next round or the next idle one.
// It runs on valkey-go's subscription goroutine and never blocks it. (A worker woken by the readiness push of the same create would
// be gone from its receive before the arrival comes; readiness holds that
// push back for a moment instead: see watchers.awaitsArrivals.)
func (a *arrivals) deliver(arr sdk.Arrival) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.handLocked(arr) {
		return true
	}
	if len(a.byLane[arr.Lane]) > 0 {
		if a.pending == nil {
			a.pending = make(map[sdk.LaneID][]pendingArrival)
		}
		q := append(a.pending[arr.Lane], pendingArrival{arr, time.Now()})
		if len(q) > pendingArrivalsMax {
			q = q[len(q)-pendingArrivalsMax:]
		}
		a.pending[arr.Lane] = q
		if a.rehand == nil && !a.closed {
			a.rehand = time.AfterFunc(pendingArrivalsRehand, a.rehandPending)
		}
	}
	return false
}

// handLocked gives arr to a watcher of its lane receiving right now, if
// one is (a.mu held).
func (a *arrivals) handLocked(arr sdk.Arrival) bool {
	chs := a.byLane[arr.Lane]
	start := a.next[arr.Lane]
	for k := range chs {
		i := (start + k) % len(chs)
		select {
		case chs[i] <- arr:
			a.next[arr.Lane] = i + 1
			return true
		default:
		}
	}
	return false
}

// rehandPending offers the fresh pending arrivals, oldest first, to the
// watchers receiving now, drops stale ones, and comes back while some
// stay pending.
func (a *arrivals) rehandPending() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rehand = nil
	if a.closed {
		return
	}
	left := false
	for lane, q := range a.pending {
		fresh := freshPending(q)
		for len(fresh) > 0 && a.handLocked(fresh[0].arr) {
			fresh = fresh[1:]
		}
		if len(fresh) == 0 {
			delete(a.pending, lane)
			continue
		}
		a.pending[lane] = append(q[:0], fresh...)
		left = true
	}
	if left {
		a.rehand = time.AfterFunc(pendingArrivalsRehand, a.rehandPending)
	}
}

// leaseEvent hands id to every lease-event watcher that has room.
func (a *arrivals) leaseEvent(id sdk.ExecutionID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ch := range a.leaseWatchers {
		select {
		case ch <- id:
		default:
		}
	}
}

// take removes and returns up to max fresh pending arrivals of lane,
// oldest first (the order they were created in).
func (a *arrivals) take(lane sdk.LaneID, max int) []sdk.Arrival {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.pending[lane]
	if len(q) == 0 || max <= 0 {
		return nil
	}
	fresh := freshPending(q)
	n := min(max, len(fresh))
	out := make([]sdk.Arrival, n)
	for i := range n {
		out[i] = fresh[i].arr
	}
	a.pending[lane] = append(q[:0], fresh[n:]...)
	return out
}

// claimed drops a pending arrival this client just claimed another way.
func (a *arrivals) claimed(lane sdk.LaneID, ids ...sdk.ExecutionID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range ids {
		q := a.pending[lane]
		for i := range q {
			if q[i].arr.ID == id {
				a.pending[lane] = append(q[:i], q[i+1:]...)
				break
			}
		}
	}
}

// TakeArrivals returns up to max arrivals of lane that came while no worker
// of this process was waiting, and not long ago, each once (see
// sdk.ArrivalWatcher).
func (b *Backend) TakeArrivals(lane sdk.LaneID, max int) []sdk.Arrival {
	return b.arrive.take(lane, max)
}

// watched reports whether some worker of this process waits for arrivals
// on lane.
func (a *arrivals) watched(lane sdk.LaneID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.byLane[lane]) > 0
}

// parseArrival reads "<lane> <eid>"; lanes never hold a space.
func parseArrival(msg string) (sdk.Arrival, bool) {
	lane, id, ok := strings.Cut(msg, " ")
	if !ok || sdk.LaneID(lane).Validate() != nil {
		return sdk.Arrival{}, false
	}
	eid, err := sdk.ParseExecutionID(id)
	if err != nil {
		return sdk.Arrival{}, false
	}
	return sdk.Arrival{Lane: sdk.LaneID(lane), ID: eid}, true
}

// parseLeaseEvent reads "<eid>": a lease taken from its holder. It never
// reads an arrival (an id holds no space; an arrival always does).
func parseLeaseEvent(msg string) (sdk.ExecutionID, bool) {
	if strings.Contains(msg, " ") {
		return "", false
	}
	id, err := sdk.ParseExecutionID(msg)
	return id, err == nil
}

// arrivalsResubscribeEvery spaces resubscriptions after a dropped connection.
const arrivalsResubscribeEvery = 200 * time.Millisecond

// subscribeArrivals subscribes to every partition's arrivals channel: one
// SSUBSCRIBE for all of them on a single server, one per partition on a
// cluster (a shard channel lives in its hash slot). Each subscription is
// renewed after an error until ctx ends.
func (b *Backend) subscribeArrivals(ctx context.Context) {
	var groups [][]string
	if b.cluster {
		for p := range b.partitions {
			groups = append(groups, []string{b.ks.arrivalsChannel(sdk.PartitionTag(p))})
		}
	} else {
		all := make([]string, b.partitions)
		for p := range all {
			all[p] = b.ks.arrivalsChannel(sdk.PartitionTag(p))
		}
		groups = [][]string{all}
	}
	handle := func(m valkey.PubSubMessage) {
		if arr, ok := parseArrival(m.Message); ok {
			b.arrive.deliver(arr)
		} else if id, ok := parseLeaseEvent(m.Message); ok {
			b.arrive.leaseEvent(id)
		}
	}
	for _, chs := range groups {
		b.arrive.done.Go(func() {
			for ctx.Err() == nil {
				_ = b.client.Receive(ctx, b.client.B().Ssubscribe().Channel(chs...).Build(), handle)
				if b.cluster && ctx.Err() == nil {
					b.slotMoved(ctx, chs[0])
				}
				select {
				case <-ctx.Done():
				case <-time.After(arrivalsResubscribeEvery):
				}
			}
		})
	}
}

// slotMoved runs when a partition's arrivals subscription ended on a
// cluster: its node went away, or the server dropped the subscription
// because the slot moved to another primary (failover, migration). A
// cached read of that slot is then not to be trusted: the client-side
// cache lives per connection, and a key read (empty, say) from the old
// owner gets no invalidation for what the new owner writes, while the
// client keeps serving it from memory and so never meets the MOVED that
// would route it to the new owner. One uncached command on the slot
// (EXISTS of the channel's name, which shares the partition's hash tag)
// meets the MOVED and has valkey-go refresh its slot map, which it does
// lazily, within a second on clusters under 100 nodes; so everything the
// readiness state knew is forgotten and idle workers are woken, as after a
// reconnect, both at once and again once that refresh is surely done
// (slotMovedSettle), so the reads go to the owner. A rare event: a node
// change or a subscription's end, never a job's path.
func (b *Backend) slotMoved(ctx context.Context, sameSlot string) {
	rctx, cancel := context.WithTimeout(ctx, b.opts.ConnWriteTimeout)
	defer cancel()
	_ = b.client.Do(rctx, b.client.B().Exists().Key(sameSlot).Build()).Error()
	forget := func() {
		if ctx.Err() == nil {
			b.ready.forget()
			b.watch.wakeAll()
		}
	}
	forget()
	time.AfterFunc(slotMovedSettle, forget)
}

// slotMovedSettle is how long after a MOVED slotMoved forgets the
// readiness state again: valkey-go refreshes its slot map after a random
// delay of up to 1s on clusters under 100 nodes.
const slotMovedSettle = 1500 * time.Millisecond

// WatchArrivals returns an unbuffered channel that receives the arrivals of
// lanes while its reader waits on it (see sdk.ArrivalWatcher). The first
// call subscribes this backend to the partitions' arrivals channels.
// Options.DisableArrivals makes it answer "unavailable".
func (b *Backend) WatchArrivals(ctx context.Context, lanes []sdk.LaneID) (<-chan sdk.Arrival, error) {
	const op = "watch_arrivals"
	if b.opts.DisableArrivals {
		return nil, sdk.Unavailable(op)
	}
	for _, l := range lanes {
		if err := l.Validate(); err != nil {
			return nil, opError(op, err)
		}
	}
	ch := make(chan sdk.Arrival)
	a := &b.arrive
	err := b.watchSubscription(ctx, op, func() {
		if a.byLane == nil {
			a.byLane = make(map[sdk.LaneID][]chan sdk.Arrival)
			a.next = make(map[sdk.LaneID]int)
		}
		for _, l := range lanes {
			a.byLane[l] = append(a.byLane[l], ch)
		}
	}, func() {
		for _, l := range lanes {
			a.byLane[l] = removeChan(a.byLane[l], ch)
		}
	})
	if err != nil {
		return nil, err
	}
	return ch, nil
}

// watchSubscription registers a watcher of the partitions' channels (add,
// run under b.arrive.mu), starts the subscription if this is the first, and
// unregisters it (drop, under the lock too) when ctx ends. Its channel is
// never closed (a delivery may be under way): once dropped it receives
// nothing more. A closed backend refuses.
func (b *Backend) watchSubscription(ctx context.Context, op string, add, drop func()) error {
	a := &b.arrive
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return sdk.TransportError(op, valkey.ErrClosing)
	}
	add()
	if a.stop == nil {
		sctx, cancel := context.WithCancel(context.Background())
		a.stop = cancel
		b.subscribeArrivals(sctx)
	}
	a.mu.Unlock()
	go func() {
		<-ctx.Done()
		a.mu.Lock()
		drop()
		a.mu.Unlock()
	}()
	return nil
}

// WatchLeaseEvents returns a channel of executions whose lease was revoked
// or which an operator cancelled while active (see sdk.LeaseEventWatcher);
// they come on the arrivals channels, so the first call starts that
// subscription. Options.DisableArrivals (no subscription) makes it answer
// "unavailable".
func (b *Backend) WatchLeaseEvents(ctx context.Context) (<-chan sdk.ExecutionID, error) {
	const op = "watch_lease_events"
	if b.opts.DisableArrivals {
		return nil, sdk.Unavailable(op)
	}
	ch := make(chan sdk.ExecutionID, leaseEventsBuffer)
	a := &b.arrive
	err := b.watchSubscription(ctx, op, func() { a.leaseWatchers = append(a.leaseWatchers, ch) },
		func() { a.leaseWatchers = removeChan(a.leaseWatchers, ch) })
	if err != nil {
		return nil, err
	}
	return ch, nil
}

func removeChan[T any](chs []chan T, ch chan T) []chan T {
	for i, c := range chs {
		if c == ch {
			return append(chs[:i:i], chs[i+1:]...)
		}
	}
	return chs
}

// close ends the subscriptions (Close calls it before closing the
// client).
func (a *arrivals) close() {
	a.mu.Lock()
	a.closed = true
	stop := a.stop
	if a.rehand != nil {
		a.rehand.Stop()
		a.rehand = nil
	}
	a.mu.Unlock()
	if stop != nil {
		stop()
	}
	a.done.Wait()
}
