package scanner

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Defaults of Config.
const (
	LeaseExpiryIntervalDefault = time.Second
	DelayedIntervalDefault     = 500 * time.Millisecond
	UnblockIntervalDefault     = 5 * time.Second
	TimeoutIntervalDefault     = time.Second
	RetentionIntervalDefault   = 60 * time.Second
	FlowIntervalDefault        = 2 * time.Second
	FlowGraceDefault           = 5 * time.Second
	ScheduleIntervalDefault    = 250 * time.Millisecond
	BatchSizeDefault           = 100
	MaxBatchesDefault          = 10
	MaxReclaimsDefault         = sdk.MaxReclaimsDefault
	RetentionDefault           = 24 * time.Hour
	OwnershipTTLDefault        = 10 * time.Second
	LaneRefreshDefault         = 10 * time.Second
	ConcurrencyDefault         = 4
	PanicBackoffDefault        = time.Second
)

// Config configures the standard scanners (see New). The zero value is the
// production default.
type Config struct {
	// LeaseExpiryInterval is how often expired and revoked leases are
	// reclaimed. It bounds crash recovery: lease TTL + this. Default 1s.
	LeaseExpiryInterval time.Duration
	// DelayedInterval is how often due delays and retry backoffs are
	// promoted to eligible. Default 500ms.
	DelayedInterval time.Duration
	// UnblockInterval is how often executions blocked for want of a capable
	// worker are re-checked against live workers. Default 5s.
	UnblockInterval time.Duration
	// TimeoutInterval is how often attempt timeouts, execution deadlines and
	// suspension timeouts are enforced. Default 1s.
	TimeoutInterval time.Duration
	// RetentionInterval is how often old terminal executions are trimmed.
	// Default 60s.
	RetentionInterval time.Duration
	// FlowInterval is how often the flow scanner looks for flow members
	// left waiting for dependencies that have ended, and for cancelled
	// flows' members left to cancel. Default 2s.
	FlowInterval time.Duration
	// FlowGrace is how long a flow member waits for its dependencies, or a
	// cancelled flow's backlog waits, before the flow scanner re-checks it:
	// the calls that end members and cancel flows do the work themselves,
	// so the scanner only repairs what an interruption left. Default 5s.
	FlowGrace time.Duration
	// ScheduleInterval is how often due schedule ticks are fired: a tick
	// fires within about this of its time. Idle partitions cost nothing
	// (the peek). Default 250ms.
	ScheduleInterval time.Duration
	// ScheduleClock, when set, is the clock that decides which schedule
	// ticks are due and which are missed (tests fix it). Default: the
	// server's clock (TIME, re-read every 10s, plus the local clock's
	// progress since).
	ScheduleClock func() time.Time
	// BatchSize is how many ids one read returns and one pipelined flush
	// acts on. Default 100.
	BatchSize int
	// MaxBatches bounds the batches a scanner takes from one partition in a
	// cycle while full batches keep coming back, so one busy partition cannot
	// starve the others. Default 10.
	MaxBatches int
	// MaxReclaims is how many times an execution may lose its lease before
	// the lease-expiry scanner fails it terminally. Default 100.
	MaxReclaims int
	// Retention is how long a terminal execution is kept. Default 24h.
	Retention time.Duration
	// OwnershipTTL is the lease an engine holds on each partition it scans;
	// it is renewed every OwnershipTTL/3, and a dead engine's partitions are
	// taken over within about OwnershipTTL + OwnershipTTL/3. Default 10s.
	OwnershipTTL time.Duration
	// EngineID names this engine process in ownership leases. Default
	// "<hostname>-<pid>-<random>".
	EngineID string
	// LaneRefresh bounds how long a cached read of the lane registry is
	// trusted without the server saying it changed: a safety net only. The
	// per-lane scanners (delayed, unblock, retention) re-read the registry
	// at the start of every cycle through the client-side cache, and the
	// create that registers a new lane invalidates that read at once, so a
	// new lane is scanned from the next cycle on whatever this says (with
	// client-side caching off the registry is read every cycle). Default 10s.
	LaneRefresh time.Duration
	// Concurrency is how many partitions one scanner visits at once; the
	// calls share valkey-go's pipeline. Default 4.
	Concurrency int
	// DisablePeek makes every cycle read every index instead of first peeking
	// at its earliest entry through the client-side cache. The peek is what
	// makes an idle partition cost (almost) no Valkey commands. Default false.
	DisablePeek bool
	// PanicBackoff is how long a scanner that panicked waits before its loop
	// restarts. Default 1s.
	PanicBackoff time.Duration
	// Logger receives the scanners' logs. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports a configuration New would refuse (negative values, an
// OwnershipTTL under 30ms).
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

func (c Config) withDefaults() (Config, error) {
	durs := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"LeaseExpiryInterval", &c.LeaseExpiryInterval, LeaseExpiryIntervalDefault},
		{"DelayedInterval", &c.DelayedInterval, DelayedIntervalDefault},
		{"UnblockInterval", &c.UnblockInterval, UnblockIntervalDefault},
		{"TimeoutInterval", &c.TimeoutInterval, TimeoutIntervalDefault},
		{"RetentionInterval", &c.RetentionInterval, RetentionIntervalDefault},
		{"FlowInterval", &c.FlowInterval, FlowIntervalDefault},
		{"FlowGrace", &c.FlowGrace, FlowGraceDefault},
		{"ScheduleInterval", &c.ScheduleInterval, ScheduleIntervalDefault},
		{"Retention", &c.Retention, RetentionDefault},
		{"OwnershipTTL", &c.OwnershipTTL, OwnershipTTLDefault},
		{"LaneRefresh", &c.LaneRefresh, LaneRefreshDefault},
		{"PanicBackoff", &c.PanicBackoff, PanicBackoffDefault},
	}
	for _, d := range durs {
		if *d.v < 0 {
			return c, fmt.Errorf("scanner: %s is negative", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.OwnershipTTL < 30*time.Millisecond {
		return c, fmt.Errorf("scanner: OwnershipTTL %v is under 30ms", c.OwnershipTTL)
	}
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"BatchSize", &c.BatchSize, BatchSizeDefault},
		{"MaxBatches", &c.MaxBatches, MaxBatchesDefault},
		{"MaxReclaims", &c.MaxReclaims, MaxReclaimsDefault},
		{"Concurrency", &c.Concurrency, ConcurrencyDefault},
	}
	for _, n := range ints {
		if *n.v < 0 {
			return c, fmt.Errorf("scanner: %s is negative", n.name)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if c.EngineID == "" {
		c.EngineID = DefaultEngineID()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// DefaultEngineID returns "<hostname>-<pid>-<random hex>": unique per process
// even when a restarted engine reuses a pid.
func DefaultEngineID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "engine"
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(r[:]))
}
