package scanner

import (
	"context"
	"sync"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// LanesBackend is what the shared lane list needs of the backend.
type LanesBackend interface {
	// LaneRegistry returns every registered lane. It is called at the start
	// of every cycle of the per-lane scanners, so it must be cheap while the
	// registry is unchanged and see a new lane at once (valkeybackend
	// serves it from the client-side cache, invalidated by the server when
	// a create registers a lane); maxAge bounds how long a cached answer is
	// trusted without such an invalidation.
	LaneRegistry(ctx context.Context, maxAge time.Duration) ([]sdk.LaneID, error)
}

// laneList is the lane registry as the per-lane scanners (delayed, unblock,
// retention) see it. Each of their cycles starts by re-reading it (refresh),
// so a lane first used after the engine started is scanned from the next
// cycle on: its delays, retry backoffs, blocked and terminal work are found
// within one scan interval, whatever the lane's age. The re-read costs no
// round trip while the registry is unchanged (see LanesBackend). Work on a
// lane has no per-job cost for this: the registry is written once per lane
// and process, by the create that first uses it.
type laneList struct {
	b      LanesBackend
	maxAge time.Duration
	mu     sync.Mutex
	lanes  []sdk.LaneID
	loaded bool
}

// refresh re-reads the registry. A failed re-read keeps the last good list
// (the partition passes meet the same outage and report it); only a first
// read that fails is an error.
func (l *laneList) refresh(ctx context.Context) error {
	lanes, err := l.b.LaneRegistry(ctx, l.maxAge)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if !l.loaded {
			return err
		}
		return nil
	}
	l.lanes, l.loaded = lanes, true
	return nil
}

// get returns the lanes of the last refresh, reading them first when no
// cycle has (a ScanPartition called on its own).
func (l *laneList) get(ctx context.Context) ([]sdk.LaneID, error) {
	l.mu.Lock()
	lanes, loaded := l.lanes, l.loaded
	l.mu.Unlock()
	if loaded {
		return lanes, nil
	}
	if err := l.refresh(ctx); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lanes, nil
}
