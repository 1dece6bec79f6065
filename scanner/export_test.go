package scanner

import "context"

// Tick runs one ownership round (renew, heartbeat, rebalance) for tests.
func (o *Ownership) Tick(ctx context.Context) { o.tick(ctx) }

// LiveEngines is the live engine count seen at the last tick.
func (o *Ownership) LiveEngines() int { return o.liveEngines() }

var NextWait = nextWait
