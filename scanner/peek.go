package scanner

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// clockResync is how often the server clock offset is re-read.
const clockResync = 10 * time.Second

// serverClock estimates the server's clock from one TIME read per
// clockResync. Expiry is always decided in Lua by server TIME; the estimate
// only decides whether a peeked index head looks due, so an error of a few
// milliseconds makes a scanner at most that late.
type serverClock struct {
	read     func(context.Context) (time.Time, error)
	offset   atomic.Int64 // server - local, ns
	syncedAt atomic.Int64 // local unix ns of the last read; 0 = never
}

// now returns the estimated server time, re-reading TIME when stale.
func (c *serverClock) now(ctx context.Context) (time.Time, error) {
	if time.Since(time.Unix(0, c.syncedAt.Load())) >= clockResync {
		if _, err := c.sync(ctx); err != nil {
			return time.Time{}, err
		}
	}
	return time.Now().Add(time.Duration(c.offset.Load())), nil
}

// sync reads TIME and returns it.
func (c *serverClock) sync(ctx context.Context) (time.Time, error) {
	before := time.Now()
	t, err := c.read(ctx)
	if err != nil {
		return time.Time{}, err
	}
	mid := before.Add(time.Since(before) / 2)
	c.offset.Store(int64(t.Sub(mid)))
	c.syncedAt.Store(time.Now().UnixNano())
	return t, nil
}

// PeekBackend is what the peek at index heads needs of the backend.
type PeekBackend interface {
	IndexHeads(ctx context.Context, qs []valkeybackend.HeadQuery) ([]valkeybackend.Head, error)
}

// peeker tells a scanner which indexes have nothing due, from the
// client-side cache, so idle partitions cost no round trip. A nil peeker
// (or one whose backend cannot peek) says "maybe due" for everything.
type peeker struct {
	heads PeekBackend
	clock *serverClock
	off   atomic.Bool // the backend cannot peek (client-side caching is off)
}

// due reports, per query, whether its index may hold an entry older than
// now - age. Errors make every answer true: scanning anyway is always safe.
func (p *peeker) due(ctx context.Context, age time.Duration, qs ...valkeybackend.HeadQuery) []bool {
	heads, out := p.read(ctx, qs)
	if heads == nil {
		return out
	}
	now, err := p.clock.now(ctx)
	if err != nil {
		return out
	}
	return dueBy(heads, out, now.Add(-age))
}

// dueAt reports, per query, whether its index may hold an entry at or
// before cutoff, on the caller's clock (the schedules scanner's may be
// set). Errors make every answer true.
func (p *peeker) dueAt(ctx context.Context, cutoff time.Time, qs ...valkeybackend.HeadQuery) []bool {
	heads, out := p.read(ctx, qs)
	return dueBy(heads, out, cutoff)
}

// dueBy fills out from heads read (none: out stays all true): an index is
// due when its head is at or before cutoff.
func dueBy(heads []valkeybackend.Head, out []bool, cutoff time.Time) []bool {
	for i, h := range heads {
		out[i] = !h.Empty && !h.At.After(cutoff)
	}
	return out
}

// nonEmpty reports, per query, whether its index has any entry.
func (p *peeker) nonEmpty(ctx context.Context, qs ...valkeybackend.HeadQuery) []bool {
	heads, out := p.read(ctx, qs)
	for i, h := range heads {
		out[i] = !h.Empty
	}
	return out
}

// read peeks at the heads; it returns nil heads (and all-true answers) when
// the peek is off or failed, so the caller scans anyway.
func (p *peeker) read(ctx context.Context, qs []valkeybackend.HeadQuery) ([]valkeybackend.Head, []bool) {
	out := make([]bool, len(qs))
	for i := range out {
		out[i] = true
	}
	if p == nil || p.off.Load() || len(qs) == 0 {
		return nil, out
	}
	heads, err := p.heads.IndexHeads(ctx, qs)
	if err != nil {
		if sdk.KindOf(err) == sdk.KindUnavailable {
			p.off.Store(true)
		}
		return nil, out
	}
	return heads, out
}

// laneQueries builds one head query per lane of a partition.
func laneQueries(partition int, idx valkeybackend.HeadIndex, lanes []sdk.LaneID) []valkeybackend.HeadQuery {
	qs := make([]valkeybackend.HeadQuery, len(lanes))
	for i, l := range lanes {
		qs[i] = valkeybackend.HeadQuery{Partition: partition, Lane: l, Index: idx}
	}
	return qs
}
