// Package loadgen drives load against a FlowFabric backend for the harness:
// open-loop producers (constant, Poisson, ramp), worker fleets, a renew
// storm, and fault injectors (kill a worker, pause the server).
//
// Open loop means arrivals follow a schedule whatever the system does: each
// submission carries its intended time, so a stall shows up as latency
// instead of silently slowing the generator (coordinated omission).
package loadgen

import (
	"math"
	"math/rand/v2"
	"time"
)

// Schedule yields the gaps between intended arrivals. It is used by one
// goroutine.
type Schedule interface {
	// Gap returns the time from the arrival at elapsed to the next one.
	Gap(elapsed time.Duration) time.Duration
	// Rate is the mean arrival rate (per second) at elapsed.
	Rate(elapsed time.Duration) float64
}

// Constant arrivals at a fixed rate per second.
type Constant struct{ PerSecond float64 }

// Gap is 1/rate.
func (c Constant) Gap(time.Duration) time.Duration { return gap(c.PerSecond) }

// Rate is the fixed rate.
func (c Constant) Rate(time.Duration) float64 { return c.PerSecond }

// Poisson arrivals: exponentially distributed gaps with mean 1/rate. Seed
// makes runs repeatable; 0 picks a random seed.
type Poisson struct {
	PerSecond float64
	Seed      uint64
	rng       *rand.Rand
}

// NewPoisson returns a Poisson schedule.
func NewPoisson(perSecond float64, seed uint64) *Poisson {
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &Poisson{PerSecond: perSecond, Seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Gap draws an exponential gap.
func (p *Poisson) Gap(time.Duration) time.Duration {
	if p.PerSecond <= 0 {
		return time.Hour
	}
	return time.Duration(p.rng.ExpFloat64() / p.PerSecond * float64(time.Second))
}

// Rate is the mean rate.
func (p *Poisson) Rate(time.Duration) float64 { return p.PerSecond }

// Ramp arrivals: the rate moves linearly from From to To over Over, then
// stays at To. Gaps are constant at the current rate.
type Ramp struct {
	From, To float64
	Over     time.Duration
}

// Gap is 1/rate at elapsed.
func (r Ramp) Gap(elapsed time.Duration) time.Duration { return gap(r.Rate(elapsed)) }

// Rate interpolates between From and To.
func (r Ramp) Rate(elapsed time.Duration) float64 {
	if r.Over <= 0 || elapsed >= r.Over {
		return r.To
	}
	f := float64(elapsed) / float64(r.Over)
	return r.From + (r.To-r.From)*f
}

func gap(rate float64) time.Duration {
	if rate <= 0 || math.IsNaN(rate) {
		return time.Hour
	}
	return time.Duration(float64(time.Second) / rate)
}
