// Package scanner runs the engine's background loops: they find what came
// due in each partition's indexes (expired leases, delays, timeouts,
// deadlines, blocked work, old terminal executions) and act on it with
// pipelined FCALLs. Every action re-checks its condition in Lua, so two
// engines acting on the same execution at once do no harm; ownership leases
// still split the partitions between engine processes so each is scanned by
// one of them.
//
// The per-lane scanners (delayed, unblock, retention) visit every lane of the
// registry, which they re-read at the start of each cycle through the
// client-side cache: the create that registers a new lane invalidates that
// read, so due work on a lane first used after the engine started is found
// within one scan interval, like work on any other lane. A job pays nothing
// for this; the registry is written once per lane and process.
//
// Run it as the ffengine daemon (cmd/ffengine) or in-process with Start.
package scanner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Scanner is one background loop: what it does to one partition per cycle.
type Scanner interface {
	// Name identifies the scanner in logs and stats ("lease_expiry").
	Name() string
	// Interval is the pause between cycles (the supervisor adds ±10% jitter).
	Interval() time.Duration
	// ScanPartition acts on what is due in one partition and tallies it.
	ScanPartition(ctx context.Context, partition int) (Counts, error)
}

// CycleStarter is a Scanner that refreshes state once per cycle, before its
// partitions are visited (the unblock scanner forgets its live workers).
type CycleStarter interface {
	StartCycle(ctx context.Context) error
}

// PartitionSource says which partitions this process scans now.
type PartitionSource interface {
	Owned() []int
}

// StaticPartitions scans a fixed set of partitions (no ownership leases).
type StaticPartitions []int

// Owned returns the set.
func (s StaticPartitions) Owned() []int { return s }

// Counts tallies what a pass did, by outcome ("requeued", "promoted", …).
type Counts map[string]int

func (c Counts) add(o map[string]int) {
	for k, v := range o {
		c[k] += v
	}
}

// ScannerStats is one scanner's running totals.
type ScannerStats struct {
	Name string
	// Cycles counts completed cycles (each visits every owned partition).
	Cycles uint64
	// Acted counts actions by outcome since start.
	Acted map[string]uint64
	// Errors counts failed partition passes; Panics counts loop restarts.
	Errors uint64
	Panics uint64
	// LastCycle is how long the last cycle took; LastPartitions how many
	// partitions it visited; LastCycleAt when it ended.
	LastCycle      time.Duration
	LastPartitions int
	LastCycleAt    time.Time
}

// Stats is a snapshot of a supervisor.
type Stats struct {
	EngineID string
	// OwnedPartitions is how many partitions this process scans now, of
	// Partitions; LiveEngines how many engines share them.
	OwnedPartitions int
	Partitions      int
	LiveEngines     int
	Scanners        []ScannerStats
}

// SupervisorOptions configures NewSupervisor.
type SupervisorOptions struct {
	// Logger default slog.Default().
	Logger *slog.Logger
	// Concurrency is how many partitions a scanner visits at once. Default 4.
	Concurrency int
	// PanicBackoff is the pause before a panicked loop restarts. Default 1s.
	PanicBackoff time.Duration
}

// Supervisor runs each scanner in its own loop over the partitions its
// source owns.
type Supervisor struct {
	log      *slog.Logger
	parts    PartitionSource
	own      *Ownership // nil for a source that needs no upkeep
	scanners []Scanner
	stats    []*scannerState
	conc     int
	backoff  time.Duration
	started  atomic.Bool
	done     chan struct{}
}

type scannerState struct {
	mu sync.Mutex
	st ScannerStats
	// error log rate limiting
	lastErrLog time.Time
	suppressed int
}

// NewSupervisor builds a supervisor of scanners over parts. When parts is an
// *Ownership, Run also keeps its leases.
func NewSupervisor(parts PartitionSource, opts SupervisorOptions, scanners ...Scanner) *Supervisor {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = ConcurrencyDefault
	}
	if opts.PanicBackoff <= 0 {
		opts.PanicBackoff = PanicBackoffDefault
	}
	s := &Supervisor{log: opts.Logger, parts: parts, scanners: scanners, conc: opts.Concurrency,
		backoff: opts.PanicBackoff, done: make(chan struct{})}
	s.own, _ = parts.(*Ownership)
	for _, sc := range scanners {
		s.stats = append(s.stats, &scannerState{st: ScannerStats{Name: sc.Name(), Acted: map[string]uint64{}}})
	}
	return s
}

// Run runs every scanner until ctx ends, then releases owned partitions and
// returns ctx.Err() once every loop has exited. A supervisor runs once.
func (s *Supervisor) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("scanner: supervisor already started")
	}
	defer close(s.done)
	var wg sync.WaitGroup
	if s.own != nil {
		s.own.tick(ctx) // own partitions before the first cycle
		wg.Go(func() { s.own.run(ctx) })
	}
	for i := range s.scanners {
		wg.Go(func() { s.loop(ctx, i) })
	}
	wg.Wait()
	if s.own != nil {
		s.own.releaseAll(context.WithoutCancel(ctx))
	}
	return ctx.Err()
}

// Done is closed when Run has returned.
func (s *Supervisor) Done() <-chan struct{} { return s.done }

// Stats returns a snapshot of every scanner's totals and the ownership.
func (s *Supervisor) Stats() Stats {
	var out Stats
	if s.own != nil {
		out.EngineID = s.own.id
		out.LiveEngines = s.own.liveEngines()
		out.Partitions = s.own.partitions
	}
	out.OwnedPartitions = len(s.parts.Owned())
	if out.Partitions == 0 {
		out.Partitions = out.OwnedPartitions
	}
	for _, st := range s.stats {
		st.mu.Lock()
		c := st.st
		c.Acted = make(map[string]uint64, len(st.st.Acted))
		for k, v := range st.st.Acted {
			c.Acted[k] = v
		}
		st.mu.Unlock()
		out.Scanners = append(out.Scanners, c)
	}
	return out
}

// loop runs scanner i, restarting it after a panic.
func (s *Supervisor) loop(ctx context.Context, i int) {
	for ctx.Err() == nil {
		if !s.runScanner(ctx, i) {
			return
		}
		s.stats[i].mu.Lock()
		s.stats[i].st.Panics++
		s.stats[i].mu.Unlock()
		if !sleep(ctx, s.backoff) {
			return
		}
	}
}

// runScanner runs cycles until ctx ends (false) or a cycle panics (true).
func (s *Supervisor) runScanner(ctx context.Context, i int) (panicked bool) {
	sc := s.scanners[i]
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("scanner panicked; restarting after backoff", "scanner", sc.Name(),
				"panic", fmt.Sprint(r), "backoff", s.backoff, "stack", string(debug.Stack()))
			panicked = true
		}
	}()
	for {
		start := time.Now()
		s.cycle(ctx, i)
		if !sleep(ctx, nextWait(sc.Interval(), time.Since(start))) {
			return false
		}
	}
}

// nextWait is the interval with ±10% jitter, less the cycle's own time, but
// at least a tenth of the interval so an overrunning scanner still yields.
func nextWait(interval, elapsed time.Duration) time.Duration {
	j := time.Duration(0)
	if tenth := int64(interval / 10); tenth > 0 {
		j = time.Duration(rand.Int64N(2*tenth+1) - tenth)
	}
	return max(interval+j-elapsed, interval/10)
}

// cycle visits every owned partition once, Concurrency at a time.
func (s *Supervisor) cycle(ctx context.Context, i int) {
	sc, st := s.scanners[i], s.stats[i]
	start := time.Now()
	if cs, ok := sc.(CycleStarter); ok {
		if err := cs.StartCycle(ctx); err != nil {
			s.recordError(ctx, sc, st, -1, err)
			return
		}
	}
	parts := s.parts.Owned()
	total := Counts{}
	var mu sync.Mutex
	var panicVal any
	var panicStack []byte
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for w := 0; w < min(s.conc, len(parts)); w++ {
		wg.Go(func() {
			defer func() {
				if r := recover(); r != nil {
					mu.Lock()
					panicVal, panicStack = r, debug.Stack()
					mu.Unlock()
				}
			}()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(parts) || ctx.Err() != nil {
					return
				}
				c, err := sc.ScanPartition(ctx, parts[k])
				mu.Lock()
				total.add(c)
				mu.Unlock()
				if err != nil {
					s.recordError(ctx, sc, st, parts[k], err)
				}
			}
		})
	}
	wg.Wait()
	if panicVal != nil {
		panic(fmt.Sprintf("%v\n(partition goroutine) %s", panicVal, panicStack))
	}
	if ctx.Err() != nil {
		return // an interrupted cycle is not a cycle
	}
	d := time.Since(start)
	st.mu.Lock()
	st.st.Cycles++
	st.st.LastCycle, st.st.LastPartitions, st.st.LastCycleAt = d, len(parts), time.Now()
	for k, v := range total {
		st.st.Acted[k] += uint64(v)
	}
	st.mu.Unlock()
	if len(total) > 0 && s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("scanner cycle", "scanner", sc.Name(), "partitions", len(parts), "took", d, "acted", formatCounts(total))
	}
}

// recordError counts a failed pass and logs it, at most once per 10s per
// scanner (with the number of errors not logged in between).
func (s *Supervisor) recordError(ctx context.Context, sc Scanner, st *scannerState, partition int, err error) {
	if ctx.Err() != nil {
		return // shutting down: cancelled calls are not errors
	}
	st.mu.Lock()
	st.st.Errors++
	now := time.Now()
	logIt := now.Sub(st.lastErrLog) >= 10*time.Second
	suppressed := st.suppressed
	if logIt {
		st.lastErrLog, st.suppressed = now, 0
	} else {
		st.suppressed++
	}
	st.mu.Unlock()
	if logIt {
		s.log.Warn("scanner pass failed", "scanner", sc.Name(), "partition", partition, "err", err,
			"errors_not_logged", suppressed)
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// formatCounts renders counts as "a=1 b=2", sorted by name.
func formatCounts(c Counts) string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := make([]byte, 0, 16*len(keys))
	for i, k := range keys {
		if i > 0 {
			b = append(b, ' ')
		}
		b = fmt.Appendf(b, "%s=%d", k, c[k])
	}
	return string(b)
}
