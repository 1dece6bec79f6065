package scanner

import (
	"context"
	"sync"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// LanesBackend is what the shared lane list needs of the backend.
type LanesBackend interface {
	AllLanes(ctx context.Context) ([]sdk.LaneID, error)
}

// laneCache shares one read of the lane registry between the per-lane
// scanners, refreshed every LaneRefresh.
type laneCache struct {
	b       LanesBackend
	refresh time.Duration
	mu      sync.Mutex
	lanes   []sdk.LaneID
	at      time.Time
}

// get returns the cached lanes, re-reading them when stale. A failed
// re-read keeps serving the last good list.
func (c *laneCache) get(ctx context.Context) ([]sdk.LaneID, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < c.refresh {
		return c.lanes, nil
	}
	lanes, err := c.b.AllLanes(ctx)
	if err != nil {
		if c.at.IsZero() {
			return nil, err
		}
		return c.lanes, nil
	}
	c.lanes, c.at = lanes, time.Now()
	return lanes, nil
}
