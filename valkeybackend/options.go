package valkeybackend

import (
	"crypto/tls"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Defaults of Options.
const (
	PartitionsDefault        = 16
	MaxPayloadBytesDefault   = 1 << 20
	CacheSizeEachConnDefault = 16 << 20
	ContextCacheTTLDefault   = 10 * time.Minute
	PrepareAttemptsDefault   = 5
	KeepAliveDefault         = 30 * time.Second
	ConnWriteTimeoutDefault  = 10 * time.Second
	WaitTimeoutDefault       = time.Second
)

// Options configures Connect. The zero value connects to 127.0.0.1:6379.
type Options struct {
	// Namespace prefixes every key and shard channel ("<ns>:") and names
	// the Functions library ("flowfabric_<ns>") and its functions
	// ("<ns>_<name>"), so deployments under different namespaces share one
	// server or cluster and never see each other's work. 1 to 24
	// lowercase letters and digits, starting with a letter; anything else
	// fails Connect with CodeInvalidInput before it dials. Default ""
	// means DefaultNamespace ("ff"): the keys, library and functions of a
	// deployment from before namespaces, unchanged.
	Namespace string
	// Addrs are seed addresses ("host:port"). Cluster mode is detected
	// automatically. Default ["127.0.0.1:6379"].
	Addrs []string
	// Username and Password authenticate (ACL); empty means none.
	Username string
	Password string
	// TLS enables TLS with this config; nil means plain TCP.
	TLS *tls.Config
	// Partitions is the deployment's partition count. The first Connect
	// stores it in Valkey; later ones must agree or leave it 0 to adopt the
	// stored value. Default PartitionsDefault (16) for a new deployment.
	Partitions int
	// MaxPayloadBytes bounds an execution's context (its payload plus its
	// tags: what every claim ships) and its result. Default 1 MiB.
	MaxPayloadBytes int
	// CacheSizeEachConn is the client-side cache per connection (bytes), used
	// for immutable execution context and readiness. Default 16 MiB;
	// negative disables client-side caching.
	CacheSizeEachConn int
	// ContextCacheTTL bounds how long a cached execution context is kept.
	// Default 10 minutes (the data never changes; the TTL only bounds memory).
	ContextCacheTTL time.Duration
	// DisableArrivals stops this client from subscribing to the partitions'
	// arrivals channels (WatchArrivals and WatchLeaseEvents then answer
	// "unavailable"), so idle workers learn of new work from readiness
	// pushes or polling alone, and a revoked or cancelled lease ends its
	// task at the next renewal. Default false: an idle worker claims a new
	// execution one round trip after its push, and a task whose lease is
	// taken away is cancelled at once.
	DisableArrivals bool
	// DisableHandoff stops claim offers (ClaimOfferer answers
	// "unavailable") and stops this client's creates from handing new
	// executions to offers, so idle workers claim after an arrival push
	// instead. Default false: an idle worker is handed an execution inside
	// the create that made it, with no claim call (on a cluster, when the
	// create's partition holds one of its offers: see handoff.go).
	DisableHandoff bool
	// DisableCompleteBatch turns the complete_batch role off, so a worker
	// sends each completion in a call of its own (to compare). Default
	// false: a worker's completions that gather while its previous call is
	// in flight go together in one ff_complete_batch.
	DisableCompleteBatch bool
	// ReadinessCacheTTL bounds a cached readiness count between invalidation
	// pushes. Default ReadinessCacheTTLDefault (5 minutes).
	ReadinessCacheTTL time.Duration
	// MaxFlushDelay lets the pipeline wait this long to batch more commands
	// (valkey-go); 0 flushes at once (lowest latency). Default 0.
	MaxFlushDelay time.Duration
	// PipelineMultiplex sets valkey-go's connections per node as 2^n.
	// Default 0 (valkey-go's default).
	PipelineMultiplex int
	// DisableAutoPipelining sends each command on a pooled connection instead
	// of the shared pipeline. Default false.
	DisableAutoPipelining bool
	// KeepAlive is the TCP keepalive and idle PING period of each connection.
	// Default KeepAliveDefault (30s): an idle worker stays under one command
	// per second; valkey-go's own default (1s) would PING every second.
	KeepAlive time.Duration
	// ConnWriteTimeout bounds a blocked write and so how fast a dead server is
	// detected. Default ConnWriteTimeoutDefault (10s).
	ConnWriteTimeout time.Duration
	// PrepareAttempts bounds Prepare's retries on transient errors (a
	// compile error is never retried). Default 5.
	PrepareAttempts int
	// SkipPrepare skips Prepare at Connect (no version check, no load);
	// call Prepare yourself, or load the library with `ffengine prepare`.
	// A least-privilege user need not set it: Prepare only reads ff_version
	// while the library is current. Default false.
	SkipPrepare bool
	// ConfigureClient, when set, edits the valkey-go ClientOption Connect
	// built from the fields above, just before it dials: for what these
	// options do not cover, such as Sentinel (set Sentinel.MasterSet, with
	// the sentinels' addresses in InitAddress), rotating credentials
	// (AuthCredentialsFn), a custom dialer or timeouts, or valkey-go's
	// OpenTelemetry wrapper's settings. An OnInvalidations it sets is called
	// after the backend's own; turning the cache off there (DisableCache)
	// is as CacheSizeEachConn < 0. Default nil: the option as built.
	ConfigureClient func(*valkey.ClientOption)
	// WaitReplicas makes the calls whose success a caller acts on (creates,
	// terminal calls, signal delivery, suspension, flow building, operator,
	// admission and schedule writes: README "Durability") wait, after their FCALL,
	// until this many replicas acknowledged them (WAIT on the same
	// connection), so an acknowledged write survives the failover of its
	// primary. Fewer acknowledgements within WaitTimeout turn the call's
	// success into sdk.CodeNotReplicated (kind timeout: an unknown outcome).
	// Claims, renewals, progress, offers and scanner calls never wait.
	// Default 0: no call waits and none pays anything for it.
	WaitReplicas int
	// WaitAOF makes the same calls wait with WAITAOF instead: for the write
	// to be fsynced to the primary's append-only file and to WaitReplicas
	// replicas' (every one needs appendonly yes; Connect fails when a
	// primary has it off). Default false.
	WaitAOF bool
	// ReadFromReplicas sends snapshot reads (DescribeExecution,
	// ReadExecutionInfo, the List calls, DescribeFlow, DescribeEdge,
	// GetBudgetStatus) and the scanners' due-list reads to replicas, through
	// a second connection set, to take that load off the primaries. A
	// replica can be behind its primary: such reads may miss the newest
	// writes (README "Reads from replicas"). A cluster's replicas (topology
	// re-read every 5s) and a Sentinel master set's are found; a single
	// server's are ReplicaAddrs. Default false: every read goes to the
	// primary.
	ReadFromReplicas bool
	// ReplicaAddrs are a single (non-cluster) server's replicas
	// ("host:port") for ReadFromReplicas. Default none.
	ReplicaAddrs []string
	// WaitTimeout bounds each wait of WaitReplicas/WaitAOF (rounded to
	// milliseconds, at least 1). Default WaitTimeoutDefault (1s).
	WaitTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if len(o.Addrs) == 0 {
		o.Addrs = []string{"127.0.0.1:6379"}
	}
	if o.MaxPayloadBytes == 0 {
		o.MaxPayloadBytes = MaxPayloadBytesDefault
	}
	if o.CacheSizeEachConn == 0 {
		o.CacheSizeEachConn = CacheSizeEachConnDefault
	}
	if o.ContextCacheTTL == 0 {
		o.ContextCacheTTL = ContextCacheTTLDefault
	}
	if o.ReadinessCacheTTL == 0 {
		o.ReadinessCacheTTL = ReadinessCacheTTLDefault
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = KeepAliveDefault
	}
	if o.ConnWriteTimeout == 0 {
		o.ConnWriteTimeout = ConnWriteTimeoutDefault
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = WaitTimeoutDefault
	}
	if o.PrepareAttempts == 0 {
		o.PrepareAttempts = PrepareAttemptsDefault
	}
	return o
}
