package valkeybackend

import (
	"context"
	"math"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// LaneGauge is one lane's backlog, summed over the partitions.
type LaneGauge struct {
	Lane     sdk.LaneID
	Eligible int64 // waiting to be claimed
	Delayed  int64 // not before a time (delay, retry backoff)
	Blocked  int64 // parked: no live worker has the capabilities, or admission
	// OldestWaiting is the age (server clock) of the oldest execution at
	// the head of the lane's eligible set, over the partitions: the time
	// since it was created. With one priority in use it is the
	// longest-waiting execution; with several, the head of the highest
	// priority present. Zero when nothing is eligible.
	OldestWaiting time.Duration
}

// Gauges is a snapshot of the deployment's backlog, for dashboards
// (package ffotel exports it). Active and suspended executions are indexed
// per partition, not per lane, so they are counted for the deployment.
type Gauges struct {
	Lanes     []LaneGauge // lane registry order (by name)
	Active    int64       // leased executions
	Suspended int64       // waiting for a signal
}

// Gauges reads the backlog of every registered lane: per partition and
// lane ZCARD of its eligible, delayed and blocked sets and the head of the
// eligible set and per partition ZCARD of its leases and suspended sets,
// in one pipelined round trip with TIME (4 commands per lane and
// partition, 2 per partition, 1 TIME), after the lane registry read
// (cached). It writes nothing.
func (b *Backend) Gauges(ctx context.Context) (Gauges, error) {
	const op = "gauges"
	lanes, err := b.LaneRegistry(ctx, 0)
	if err != nil {
		return Gauges{}, err
	}
	c, n := b.client, b.partitions
	cmds := make(valkey.Commands, 0, 1+n*(2+4*len(lanes)))
	// A keyless command may not join keyed ones in a cluster's DoMulti:
	// TIME is pinned to partition 0's slot (any node's clock serves).
	cmds = append(cmds, c.B().Time().Build().SetSlot(b.ks.partKeysOf(sdk.PartitionTag(0)).leases))
	for p := range n {
		tag := sdk.PartitionTag(p)
		cmds = append(cmds, c.B().Zcard().Key(b.ks.partKeysOf(tag).leases).Build(),
			c.B().Zcard().Key(b.ks.waitKeysOf(tag).suspended).Build())
		for _, l := range lanes {
			lk := b.ks.laneKeysOf(tag, l)
			cmds = append(cmds, c.B().Zcard().Key(lk.eligible).Build(), c.B().Zcard().Key(lk.delayed).Build(),
				c.B().Zcard().Key(lk.blocked).Build(),
				c.B().Zrange().Key(lk.eligible).Min("0").Max("0").Withscores().Build())
		}
	}
	res := c.DoMulti(ctx, cmds...)
	now, err := timeOf(op, res[0])
	if err != nil {
		return Gauges{}, err
	}
	nowMS := float64(now.UnixMilli())
	g := Gauges{Lanes: make([]LaneGauge, len(lanes))}
	for i, l := range lanes {
		g.Lanes[i].Lane = l
	}
	i := 1 // after TIME
	count := func() int64 {
		v, e := res[i].AsInt64()
		i++
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	for range n {
		g.Active += count()
		g.Suspended += count()
		for j := range lanes {
			lg := &g.Lanes[j]
			lg.Eligible += count()
			lg.Delayed += count()
			lg.Blocked += count()
			zs, e := res[i].AsZScores()
			i++
			if e != nil && err == nil {
				err = e
			}
			if len(zs) == 1 {
				lg.OldestWaiting = max(lg.OldestWaiting, headAge(zs[0].Score, nowMS))
			}
		}
	}
	if err != nil {
		return Gauges{}, backendError(op, err)
	}
	return g, nil
}

// headAge is how long ago an eligible set's member of score was created:
// its score is created_at - priority*priorityScale (lua: eligible_score),
// so, for an age below priorityScale ms (31 years), the age is
// (now - score) mod priorityScale whatever the priority.
func headAge(score, nowMS float64) time.Duration {
	d := math.Mod(nowMS-score, priorityScale)
	if d < 0 || math.IsNaN(d) {
		return 0
	}
	return time.Duration(d) * time.Millisecond
}

// priorityScale is lua's PRIORITY_SCALE.
const priorityScale = 1e12
