package loadgen

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// RenewStorm runs Round flat out on Concurrency goroutines for Duration:
// each round renews a set of leases and reports how many it renewed. The
// harness uses it for the raw ceiling (pinned FCALLs sent raw) and for storms of
// batched renewals through a backend.
type RenewStorm struct {
	// Concurrency is how many rounds are in flight at once. Default 1.
	Concurrency int
	Duration    time.Duration
	// Round renews goroutine g's leases once and returns how many renewed.
	Round func(ctx context.Context, g int) (int, error)
	// OnRound, when set, observes each round (on the round's goroutine).
	OnRound func(g int, start time.Time, took time.Duration, renewed int)
}

// StormStats counts what a storm did.
type StormStats struct {
	Rounds, Renewed, Errors uint64
	Elapsed                 time.Duration
}

// Run storms until Duration has passed or ctx ends.
func (s *RenewStorm) Run(ctx context.Context) (StormStats, error) {
	if s.Round == nil || s.Duration <= 0 {
		return StormStats{}, errors.New("loadgen: RenewStorm needs Round and a positive Duration")
	}
	n := max(s.Concurrency, 1)
	var rounds, renewed, errs atomic.Uint64
	start := time.Now()
	end := start.Add(s.Duration)
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				k, err := s.Round(ctx, g)
				if err != nil {
					errs.Add(1)
					continue
				}
				rounds.Add(1)
				renewed.Add(uint64(k))
				if s.OnRound != nil {
					s.OnRound(g, t0, time.Since(t0), k)
				}
			}
		})
	}
	wg.Wait()
	return StormStats{Rounds: rounds.Load(), Renewed: renewed.Load(), Errors: errs.Load(), Elapsed: time.Since(start)}, ctx.Err()
}
