// Package valkeybackend implements sdk.EngineBackend on Valkey (standalone or
// cluster) through valkey-go: every write is one FCALL into the flowfabric
// Functions library (lua/flowfabric.lua), reads are plain commands, and
// immutable data is served from the client-side cache.
package valkeybackend

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/lua"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// Backend is the Valkey EngineBackend. It is safe for concurrent use.
type Backend struct {
	ks         keyspace          // the namespace's keys and channels
	fnames     map[string]string // "ff_<name>" -> "<ns>_<name>"; nil in the default namespace
	client     valkey.Client
	reads      valkey.Client // snapshot reads: client, or its replicas (replicareads.go)
	opts       Options
	partitions int
	cluster    bool
	next       atomic.Uint64 // round-robin partition for solo executions
	lanesSeen  sync.Map      // lanes known to be in the registry
	watch      watchers      // idle workers waiting for readiness pushes
	arrive     arrivals      // idle workers waiting for arrivals
	hand       handoffs      // executions handed to this process's offers
	ready      readyState    // which partitions hold work, as far as known
	terminal   keyWaiters    // AwaitTerminal's and SubscribeCompletions' callers, woken by invalidations
	claiming   sync.Map      // execution ids with a GrantAndClaim in flight
	regs       registrations // worker instances this process registered
	lib        library       // the library Prepare loads (the embedded one)
	healedAt   atomic.Int64  // unix ns of the last Prepare a missing library started (heal.go)
	closeOnce  sync.Once
}

var (
	_ sdk.EngineBackend    = (*Backend)(nil)
	_ sdk.BatchRenewer     = (*Backend)(nil)
	_ sdk.WindowScanner    = (*Backend)(nil)
	_ sdk.GrantClaimer     = (*Backend)(nil)
	_ sdk.FusedClaimer     = (*Backend)(nil)
	_ sdk.ReadinessWatcher = (*Backend)(nil)
	_ sdk.ArrivalWatcher   = (*Backend)(nil)
	_ sdk.WorkerRegistry   = (*Backend)(nil)
	_ sdk.ClaimOfferer     = (*Backend)(nil)
	_ sdk.CompleteOfferer  = (*Backend)(nil)
)

// Connect dials Valkey, reads (or fixes) the deployment's partition count and,
// unless SkipPrepare, runs Prepare: it loads the Functions library where a
// primary holds none or an older one, and fails when a newer one does not
// serve this client.
func Connect(ctx context.Context, opts Options) (*Backend, error) {
	opts = opts.withDefaults()
	if opts.Partitions < 0 || opts.Partitions > 16384 {
		return nil, sdk.Validationf(sdk.CodeInvalidInput, "partitions %d out of range 1..16384", opts.Partitions)
	}
	if opts.MaxPayloadBytes < 0 {
		return nil, sdk.Validationf(sdk.CodeInvalidInput, "MaxPayloadBytes is negative")
	}
	if opts.WaitReplicas < 0 || opts.WaitTimeout < 0 {
		return nil, sdk.Validationf(sdk.CodeInvalidInput, "WaitReplicas and WaitTimeout may not be negative")
	}
	if err := CheckNamespace(opts.Namespace); err != nil {
		return nil, err
	}
	lib, err := embeddedLibrary(opts.Namespace)
	if err != nil {
		return nil, err
	}
	b := &Backend{opts: opts, lib: lib, ks: newKeyspace(opts.Namespace), fnames: functionNames(opts.Namespace)}
	co := valkey.ClientOption{
		InitAddress:           opts.Addrs,
		Username:              opts.Username,
		Password:              opts.Password,
		TLSConfig:             opts.TLS,
		MaxFlushDelay:         opts.MaxFlushDelay,
		PipelineMultiplex:     opts.PipelineMultiplex,
		DisableAutoPipelining: opts.DisableAutoPipelining,
		ClientName:            "flowfabric",
		Dialer:                net.Dialer{KeepAlive: opts.KeepAlive, Timeout: 5 * time.Second},
		ConnWriteTimeout:      opts.ConnWriteTimeout,
		OnInvalidations:       b.onInvalidations,
	}
	if opts.CacheSizeEachConn < 0 {
		co.DisableCache = true
	} else {
		co.CacheSizeEachConn = opts.CacheSizeEachConn
	}
	if opts.ConfigureClient != nil {
		co.OnInvalidations = nil // the hook sees only its own
		opts.ConfigureClient(&co)
		if theirs := co.OnInvalidations; theirs != nil {
			co.OnInvalidations = func(m []valkey.ValkeyMessage) {
				b.onInvalidations(m)
				theirs(m)
			}
		} else {
			co.OnInvalidations = b.onInvalidations
		}
		if co.DisableCache {
			b.opts.CacheSizeEachConn = -1 // the roles that need the cache turn off with it
		}
	}
	client, err := valkey.NewClient(co)
	if err != nil {
		if pe := permissionError("connect", "", err); pe != nil {
			return nil, pe // e.g. cluster|shards, valkey-go's topology discovery
		}
		return nil, sdk.TransportError("connect", err)
	}
	b.client = healingClient{Client: client, b: b}
	b.watch.mu.Lock()
	b.watch.prefetch = b.prefetchHead
	b.watch.awaitsArrivals = b.arrive.watched
	b.watch.mu.Unlock()
	b.cluster = client.Mode() == valkey.ClientModeCluster
	b.next.Store(rand.Uint64())
	if err := b.checkTopology(ctx); err != nil {
		client.Close()
		return nil, err
	}
	if err := b.checkAOF(ctx); err != nil {
		client.Close()
		return nil, err
	}
	if err := b.dialReads(co); err != nil {
		client.Close()
		return nil, err
	}
	if err := b.loadPartitions(ctx); err != nil {
		client.Close()
		return nil, err
	}
	if !opts.SkipPrepare {
		if _, err := b.Prepare(ctx); err != nil {
			client.Close()
			return nil, err
		}
	}
	return b, nil
}

// loadPartitions fixes the partition count on first use and adopts it after.
// It reads first and writes only when nothing is stored, so a user that may
// not write ff:config connects to a deployment that has one.
func (b *Backend) loadPartitions(ctx context.Context) error {
	want := b.opts.Partitions
	if want == 0 {
		want = PartitionsDefault
	}
	get := func() valkey.Completed { return b.client.B().Hget().Key(b.ks.config).Field("partitions").Build() }
	res := b.client.Do(ctx, get())
	if valkey.IsValkeyNil(res.Error()) {
		multi := b.client.DoMulti(ctx,
			b.client.B().Hsetnx().Key(b.ks.config).Field("partitions").Value(strconv.Itoa(want)).Build(), get())
		if err := multi[0].Error(); err != nil {
			return backendError("connect", err)
		}
		res = multi[1]
	}
	if err := res.Error(); err != nil && !valkey.IsValkeyNil(err) {
		return backendError("connect", err)
	}
	stored, err := res.AsInt64()
	if err != nil || stored < 1 {
		return &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: "connect", Msg: b.ks.config + " partitions is not a positive integer", Err: err}
	}
	if b.opts.Partitions != 0 && int(stored) != b.opts.Partitions {
		return sdk.NewError("connect", sdk.CodeInvalidInput,
			fmt.Sprintf("deployment has %d partitions, Options.Partitions asks for %d", stored, b.opts.Partitions))
	}
	b.partitions = int(stored)
	return nil
}

// onInvalidations is valkey-go's invalidation hook: forget what the pushes
// invalidate, then wake the workers waiting on it.
func (b *Backend) onInvalidations(msgs []valkey.ValkeyMessage) {
	if msgs == nil {
		b.ready.forget()
		b.watch.wakeAll()
		b.terminal.wake(nil, true)
		return
	}
	keys := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if k, err := m.ToString(); err == nil {
			keys = append(keys, k)
		}
	}
	refs := b.ks.eligibleRefs(keys) // parsed once for both
	b.watch.invalidated(refs, b.ready.invalidate(refs))
	b.terminal.wake(keys, false)
	for _, k := range keys {
		if lane, ok := strings.CutPrefix(k, b.ks.lane); ok {
			b.watch.wakeLane(sdk.LaneID(lane)) // a policy changed: paused or resumed, say
		}
	}
}

// Client exposes the underlying valkey-go client (for the harness and tests).
func (b *Backend) Client() valkey.Client { return b.client }

// Close releases connections.
func (b *Backend) Close() {
	b.closeOnce.Do(func() {
		b.arrive.close()
		b.hand.close()
		b.closeReads()
		b.client.Close()
	})
}

// Namespace is the deployment's namespace (Options.Namespace, or
// DefaultNamespace).
func (b *Backend) Namespace() string { return b.ks.ns }

// IsCluster reports whether the backend talks to a Valkey Cluster.
func (b *Backend) IsCluster() bool { return b.cluster }

// Partitions is the deployment's partition count.
func (b *Backend) Partitions() int { return b.partitions }

// BackendLabel is "valkey".
func (b *Backend) BackendLabel() string { return "valkey" }

// Ping checks every node answers.
func (b *Backend) Ping(ctx context.Context) error {
	for addr, node := range b.client.Nodes() {
		if err := node.Do(ctx, node.B().Ping().Build()).Error(); err != nil {
			return backendError("ping "+addr, err)
		}
	}
	return nil
}

// ShutdownPrepare has nothing to drain: valkey-go waits for in-flight calls
// on Close.
func (b *Backend) ShutdownPrepare(ctx context.Context, grace time.Duration) error {
	if grace < 0 {
		return sdk.Validationf(sdk.CodeInvalidInput, "negative grace")
	}
	return nil
}

// Features reports the family, the library version and the optional roles
// this configuration enables: readiness needs client-side caching, arrivals
// and lease events need the arrivals subscription, claim offers need
// hand-offs (off by Options.DisableHandoff), batched
// completions are on unless Options.DisableCompleteBatch.
func (b *Backend) Features() sdk.Features {
	roles := []sdk.Role{sdk.RoleBatchRenew, sdk.RoleWindowScan, sdk.RoleGrantClaim, sdk.RoleFusedClaim, sdk.RoleWorkerRegistry,
		sdk.RoleEngineMonitor, sdk.RoleBatchSubmit, sdk.RoleWaiting, sdk.RoleStreams, sdk.RoleLeaseHistory, sdk.RoleFlows, sdk.RoleAdmission,
		sdk.RoleSchedules}
	if b.opts.CacheSizeEachConn >= 0 {
		roles = append(roles, sdk.RoleReadiness, sdk.RoleTerminalWatch, sdk.RoleCompletions)
	}
	if !b.opts.DisableArrivals {
		roles = append(roles, sdk.RoleArrivals, sdk.RoleLeaseEvents)
	}
	if b.handoffOn() {
		roles = append(roles, sdk.RoleClaimOffers, sdk.RoleCompleteOffer)
	}
	if !b.opts.DisableCompleteBatch {
		roles = append(roles, sdk.RoleCompleteBatch)
	}
	return sdk.Features{Family: "valkey", Version: lua.Version, Roles: roles}
}

// partitionOf validates an id and that its partition exists here.
func (b *Backend) partitionOf(op string, id sdk.ExecutionID) (int, error) {
	p, err := id.Partition()
	if err != nil {
		return 0, opError(op, err)
	}
	if p >= b.partitions {
		return 0, sdk.NewError(op, sdk.CodeInvalidInput,
			fmt.Sprintf("execution id %s names partition %d of %d", id, p, b.partitions))
	}
	return p, nil
}

func (b *Backend) checkPartition(op string, p int) error {
	if p < 0 || p >= b.partitions {
		return sdk.NewError(op, sdk.CodeInvalidInput, fmt.Sprintf("partition %d out of range 0..%d", p, b.partitions-1))
	}
	return nil
}

// opError stamps the op on an sdk error.
func opError(op string, err error) error {
	if se, ok := err.(*sdk.Error); ok && se.Op == "" {
		c := *se
		c.Op = op
		return &c
	}
	return err
}

func validateDuration(op, what string, d time.Duration) error {
	if d < 0 {
		return sdk.NewError(op, sdk.CodeInvalidInput, what+" is negative")
	}
	return nil
}

func itoa(n int) string { return strconv.Itoa(n) }

func joinCSV(xs []string) string { return strings.Join(xs, ",") }
