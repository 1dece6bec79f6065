package sdk

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"
)

// ClaimMode selects how a worker claims work.
type ClaimMode uint8

const (
	// ClaimDirect scans partitions, then grants and claims each candidate: the
	// scheduler-bypass path composed of the DirectClaimer calls (or
	// WindowScanner + GrantClaimer when the backend has them).
	ClaimDirect ClaimMode = iota
	// ClaimFused picks, grants and claims up to ClaimBatch executions of a
	// partition in one call; the backend must implement FusedClaimer.
	ClaimFused
)

func (m ClaimMode) String() string {
	switch m {
	case ClaimDirect:
		return "direct"
	case ClaimFused:
		return "fused"
	}
	return "claim_mode(" + strconv.Itoa(int(m)) + ")"
}

// Defaults of WorkerConfig fields left zero.
const (
	MaxConcurrencyDefault = 16
	LeaseTTLDefault       = 30 * time.Second
	// RenewEvery defaults to LeaseTTL / RenewDivisorDefault.
	RenewDivisorDefault = 3
	ScanWindowDefault   = 32
	ClaimBatchDefault   = 32
	// IdlePollDefault is the idle poll of a backend without ReadinessWatcher;
	// IdlePollWatchedDefault the safety poll of one with it (pushes do the work).
	IdlePollDefault        = 250 * time.Millisecond
	IdlePollWatchedDefault = 5 * time.Second
	ShutdownGraceDefault   = 10 * time.Second
	GrantTTLDefault        = 5 * time.Second
	// HandoffLeaseTTL defaults to the lesser of this and LeaseTTL.
	HandoffLeaseTTLDefault = 5 * time.Second
	// RegistrationTTL defaults to LeaseTTL: a crashed worker's registration
	// dies with its leases. Heartbeats go every TTL/3.
	RegistrationTTLDivisor = 3
)

// Internal tuning.
const (
	maxScanLimit       = 16 // candidates read per partition per scan
	claimErrBackoffMin = 10 * time.Millisecond
	claimErrBackoffMax = time.Second      // transport errors back off up to this
	contendBackoffMin  = time.Millisecond // candidates seen, all taken by others
	contendBackoffMax  = 100 * time.Millisecond
	minCallTimeout     = 5 * time.Second
	abortTimeout       = 5 * time.Second // failing tasks at hard shutdown
	handlerExitWait    = time.Second     // after the abort, for handlers to return
	watchRetryEvery    = time.Second
)

// WorkerConfig configures a Worker. Zero fields take the documented default.
type WorkerConfig struct {
	// WorkerID is the logical name of the deployment. Required.
	WorkerID WorkerID
	// InstanceID names this process and must be unique among live workers.
	// Default: "<hostname>-<pid>-<random hex>".
	InstanceID WorkerInstanceID
	// Lanes the worker claims from. At least one.
	Lanes []LaneID
	// Capabilities the worker advertises; executions requiring others are
	// blocked for routing instead of being retried here. Default none.
	Capabilities []string
	// MaxConcurrency bounds tasks running at once. Default 16.
	MaxConcurrency int
	// LeaseTTL is the lease length asked at claim. Default 30s.
	LeaseTTL time.Duration
	// RenewEvery is the renewal period of a held lease; it must be below
	// LeaseTTL. Default LeaseTTL/3.
	RenewEvery time.Duration
	// ClaimMode selects the claim path. Default ClaimDirect.
	ClaimMode ClaimMode
	// ScanWindow is how many partitions one scan round trip covers. Default 32.
	ScanWindow int
	// ClaimBatch caps executions claimed by one fused call (ClaimFused). Free
	// slots cap it too. Default 32.
	ClaimBatch int
	// IdlePoll is how long an idle worker waits before looking again when no
	// push wakes it. Default 5s when the backend implements ReadinessWatcher
	// (pushes wake the worker; the poll is a safety net), 250ms otherwise.
	IdlePoll time.Duration
	// ShutdownGrace is how long shutdown waits for in-flight tasks before it
	// cancels them and fails them with category "worker_shutdown" so they
	// retry elsewhere. Default 10s.
	ShutdownGrace time.Duration
	// DisableClaimOffers stops an idle worker from offering its free slots
	// to a backend with ClaimOfferer. Default false: idle slots are offered,
	// and a new execution is handed to the worker by the create that made
	// it, with no claim call (each offer stands 4×IdlePoll, refreshed
	// every other idle poll).
	DisableClaimOffers bool
	// HandoffLeaseTTL is the first lease of an execution handed to one of
	// this worker's offers; the first renewal (due at the same share of it
	// as RenewEvery is of LeaseTTL) extends it to LeaseTTL. Offers stand
	// while nobody watches them: should the worker die idle, what is handed
	// to its standing offers waits this long for the reclaim scanner, not a
	// whole LeaseTTL. Short tasks never renew, so it costs them nothing.
	// Default the lesser of 5s and LeaseTTL; at most LeaseTTL.
	HandoffLeaseTTL time.Duration
	// GrantTTL is how long a claim grant waits to be consumed. Default 5s.
	GrantTTL time.Duration
	// RegistrationTTL is the lifetime of the worker's registration (backends
	// with WorkerRegistry), extended by a heartbeat every TTL/3. Default
	// LeaseTTL.
	RegistrationTTL time.Duration
	// Logger receives the worker's logs. Default: discard.
	Logger *slog.Logger
	// OnError, when set, is called with errors the worker handles itself
	// (transport errors while claiming or renewing, settle failures). It must
	// not block.
	OnError func(error)
	// Observer watches the worker's tasks and leases (metrics, traces;
	// package github.com/flowfabric/flowfabric-go/otel has one). Default
	// nil: none, at no cost.
	Observer WorkerObserver
	// Alongside are services Run hosts for the worker's lifetime, such as the
	// scanners of a single-binary deployment (scanner.Alongside). Each runs
	// in its own goroutine with a context that ends after the worker has
	// drained; Run waits for them before it returns. An error is logged and
	// passed to OnError. Default none.
	Alongside []func(ctx context.Context) error
}

func configError(format string, args ...any) *Error {
	return &Error{Kind: KindValidation, Code: CodeInvalidInput, Op: "new_worker", Msg: fmt.Sprintf(format, args...)}
}

// resolveConfig validates cfg and fills its defaults.
func resolveConfig(roles BackendRoles, cfg WorkerConfig) (WorkerConfig, error) {
	var err error
	if cfg, err = resolveIdentity(cfg); err != nil {
		return cfg, err
	}
	if err = checkNotNegative(cfg); err != nil {
		return cfg, err
	}
	if cfg, err = resolveLeases(cfg); err != nil {
		return cfg, err
	}
	if cfg, err = resolveClaiming(roles, cfg); err != nil {
		return cfg, err
	}
	cfg.ShutdownGrace = cmp.Or(cfg.ShutdownGrace, ShutdownGraceDefault)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// resolveIdentity checks the worker's names, lanes and routing capabilities.
func resolveIdentity(cfg WorkerConfig) (WorkerConfig, error) {
	if err := cfg.WorkerID.Validate(); err != nil {
		return cfg, configError("WorkerConfig.WorkerID: %s", err.(*Error).Msg)
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = defaultInstanceID()
	}
	if err := cfg.InstanceID.Validate(); err != nil {
		return cfg, configError("WorkerConfig.InstanceID: %s", err.(*Error).Msg)
	}
	if len(cfg.Lanes) == 0 {
		return cfg, configError("WorkerConfig.Lanes: at least one lane is required")
	}
	seen := make(map[LaneID]bool, len(cfg.Lanes))
	lanes := make([]LaneID, 0, len(cfg.Lanes))
	for _, l := range cfg.Lanes {
		if err := l.Validate(); err != nil {
			return cfg, configError("WorkerConfig.Lanes: %s", err.(*Error).Msg)
		}
		if seen[l] {
			return cfg, configError("WorkerConfig.Lanes: lane %q listed twice", l)
		}
		seen[l] = true
		lanes = append(lanes, l)
	}
	cfg.Lanes = lanes
	caps, err := NormalizeCapabilities(cfg.Capabilities)
	if err != nil {
		return cfg, configError("WorkerConfig.Capabilities: %s", err.(*Error).Msg)
	}
	cfg.Capabilities = caps
	return cfg, nil
}

// checkNotNegative refuses negative counts and durations.
func checkNotNegative(cfg WorkerConfig) error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxConcurrency", int64(cfg.MaxConcurrency)}, {"LeaseTTL", int64(cfg.LeaseTTL)},
		{"RenewEvery", int64(cfg.RenewEvery)}, {"ScanWindow", int64(cfg.ScanWindow)},
		{"ClaimBatch", int64(cfg.ClaimBatch)}, {"IdlePoll", int64(cfg.IdlePoll)},
		{"ShutdownGrace", int64(cfg.ShutdownGrace)}, {"GrantTTL", int64(cfg.GrantTTL)},
		{"RegistrationTTL", int64(cfg.RegistrationTTL)}, {"HandoffLeaseTTL", int64(cfg.HandoffLeaseTTL)},
	} {
		if f.v < 0 {
			return configError("WorkerConfig.%s is negative", f.name)
		}
	}
	return nil
}

// resolveLeases fills and checks the lease, renewal and registration times.
func resolveLeases(cfg WorkerConfig) (WorkerConfig, error) {
	cfg.LeaseTTL = cmp.Or(cfg.LeaseTTL, LeaseTTLDefault)
	if !leaseLength(cfg.LeaseTTL) {
		return cfg, configError("WorkerConfig.LeaseTTL %v: must be a whole number of milliseconds, at least 10ms", cfg.LeaseTTL)
	}
	if cfg.RenewEvery == 0 {
		cfg.RenewEvery = cfg.LeaseTTL / RenewDivisorDefault
	}
	if cfg.RenewEvery >= cfg.LeaseTTL {
		return cfg, configError("WorkerConfig.RenewEvery %v must be below LeaseTTL %v", cfg.RenewEvery, cfg.LeaseTTL)
	}
	if cfg.HandoffLeaseTTL == 0 {
		cfg.HandoffLeaseTTL = min(HandoffLeaseTTLDefault, cfg.LeaseTTL)
	}
	if !leaseLength(cfg.HandoffLeaseTTL) || cfg.HandoffLeaseTTL > cfg.LeaseTTL {
		return cfg, configError("WorkerConfig.HandoffLeaseTTL %v: must be a whole number of milliseconds, 10ms..LeaseTTL (%v)",
			cfg.HandoffLeaseTTL, cfg.LeaseTTL)
	}
	cfg.GrantTTL = cmp.Or(cfg.GrantTTL, GrantTTLDefault)
	if cfg.GrantTTL < time.Millisecond {
		return cfg, configError("WorkerConfig.GrantTTL %v: below 1ms", cfg.GrantTTL)
	}
	cfg.RegistrationTTL = cmp.Or(cfg.RegistrationTTL, cfg.LeaseTTL)
	if cfg.RegistrationTTL < 3*time.Millisecond {
		return cfg, configError("WorkerConfig.RegistrationTTL %v: below 3ms", cfg.RegistrationTTL)
	}
	return cfg, nil
}

// resolveClaiming fills and checks the claim path's settings against the
// backend's roles.
func resolveClaiming(roles BackendRoles, cfg WorkerConfig) (WorkerConfig, error) {
	cfg.MaxConcurrency = cmp.Or(cfg.MaxConcurrency, MaxConcurrencyDefault)
	switch cfg.ClaimMode {
	case ClaimDirect:
	case ClaimFused:
		if roles.FusedClaimer == nil {
			return cfg, &Error{Kind: KindUnavailable, Code: CodeUnavailable, Op: "new_worker",
				Msg: "WorkerConfig.ClaimMode is ClaimFused, but the backend has no fused claim (RoleFusedClaim)"}
		}
	default:
		return cfg, configError("WorkerConfig.ClaimMode %d is unknown", cfg.ClaimMode)
	}
	cfg.ScanWindow = cmp.Or(cfg.ScanWindow, ScanWindowDefault)
	cfg.ClaimBatch = cmp.Or(cfg.ClaimBatch, ClaimBatchDefault)
	if cfg.IdlePoll == 0 {
		cfg.IdlePoll = IdlePollDefault
		if roles.ReadinessWatcher != nil {
			cfg.IdlePoll = IdlePollWatchedDefault
		}
	}
	return cfg, nil
}

// leaseLength reports whether d can be a lease's length: whole milliseconds
// (the wire's unit), at least 10ms.
func leaseLength(d time.Duration) bool {
	return d >= 10*time.Millisecond && d%time.Millisecond == 0
}

// defaultInstanceID is "<hostname>-<pid>-<8 random hex>", with bytes a name
// may not hold replaced by '-'.
func defaultInstanceID() WorkerInstanceID {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	b := []byte(host)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || c == ',' || c == '{' || c == '}' {
			b[i] = '-'
		}
	}
	if len(b) > 200 {
		b = b[:200]
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	return WorkerInstanceID(string(b) + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(r[:]))
}
