package bench

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TargetOptions says which Valkey to measure.
type TargetOptions struct {
	// Addrs are seed addresses of a running server or cluster. Empty: start
	// a throwaway server (valkeytest), the embedded default.
	Addrs []string
	// Cluster, with no Addrs, starts a throwaway 3-primary cluster instead.
	Cluster bool
	// Flush allows FLUSHALL on Addrs between runs; ffbench refuses to touch
	// a server it did not start without it. Default false.
	Flush bool
	// Replicas, with no Addrs, starts this many replicas of the throwaway
	// server, or of each primary of the throwaway cluster (for
	// acknowledged writes: Config.Durability). Default 0.
	Replicas int
}

// Target is the server under test and the raw clients the harness uses
// next to the SDK's: an auto-pipelining one (raw ceiling), a serial one
// (round trip anchor) and one per primary (INFO counters).
type Target struct {
	Addrs    []string
	Embedded bool
	Cluster  bool
	server   *valkeytest.Server
	cluster  *valkeytest.Cluster
	flush    bool
	// noArrivals connects deployed backends with DisableArrivals.
	noArrivals bool
	// replicas are the embedded server's replicas (TargetOptions.Replicas).
	replicas []*valkeytest.Server
	// waitReplicas connects backends with Options.WaitReplicas (durability).
	waitReplicas int
	// primaryAddrs are the primaries' addresses, in primaries' order.
	primaryAddrs []string

	raw       valkey.Client // auto-pipelining, as the backend's
	serial    valkey.Client // no auto-pipelining: one command per round trip on its own connection
	primaries []valkey.Client
	info      Valkey
}

// serverPID returns the process id of the server at addr when ffbench
// started it (valkeytest knows it); 0 otherwise.
func (t *Target) serverPID(addr string) int {
	nodes := []*valkeytest.Server{t.server}
	if t.cluster != nil {
		nodes = t.cluster.Nodes()
	}
	for _, n := range nodes {
		if n != nil && n.Addr() == addr {
			return n.PID()
		}
	}
	return 0
}

// OpenTarget starts the embedded server (no Addrs) or connects to Addrs.
func OpenTarget(ctx context.Context, o TargetOptions) (*Target, error) {
	t := &Target{Addrs: o.Addrs, flush: o.Flush}
	if len(o.Addrs) == 0 {
		t.Embedded, t.flush = true, true
		if o.Cluster {
			c, err := valkeytest.StartCluster(ctx, valkeytest.ClusterOptions{Replicas: o.Replicas})
			if err != nil {
				return nil, err
			}
			t.cluster, t.Addrs = c, c.Addrs()
		} else {
			s, err := valkeytest.Start(ctx, valkeytest.Options{})
			if err != nil {
				return nil, err
			}
			t.server, t.Addrs = s, []string{s.Addr()}
			if err := t.startReplicas(ctx, o.Replicas); err != nil {
				t.Close()
				return nil, err
			}
		}
	}
	if err := t.dial(ctx); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *Target) dial(ctx context.Context) error {
	var err error
	t.raw, err = valkey.NewClient(valkey.ClientOption{InitAddress: t.Addrs, DisableCache: true, ClientName: "ffbench-raw"})
	if err != nil {
		return fmt.Errorf("connect %v: %w", t.Addrs, err)
	}
	t.serial, err = valkey.NewClient(valkey.ClientOption{InitAddress: t.Addrs, DisableCache: true,
		DisableAutoPipelining: true, ClientName: "ffbench-serial"})
	if err != nil {
		return err
	}
	t.Cluster = t.raw.Mode() == valkey.ClientModeCluster
	addrs := make([]string, 0)
	nodes := t.raw.Nodes()
	for a := range nodes {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		n := nodes[a]
		role, err := n.Do(ctx, n.B().Role().Build()).ToArray()
		if err != nil {
			return fmt.Errorf("ROLE on %s: %w", a, err)
		}
		if r, _ := role[0].ToString(); r == "master" {
			t.primaries = append(t.primaries, n)
			t.primaryAddrs = append(t.primaryAddrs, a)
		}
	}
	if len(t.primaries) == 0 {
		return errors.New("no primary found")
	}
	n := t.primaries[0]
	info, err := n.Do(ctx, n.B().Info().Section("server").Build()).ToString()
	if err != nil {
		return err
	}
	f := infoFields(info)
	t.info = Valkey{Version: f["valkey_version"], Topology: "standalone", Primaries: len(t.primaries),
		Embedded: t.Embedded, Settings: map[string]string{}}
	if t.info.Version == "" {
		t.info.Version = f["redis_version"] + " (redis_version)"
	}
	if t.Cluster {
		t.info.Topology = "cluster"
	}
	for _, k := range []string{"io-threads", "appendonly", "save", "maxmemory"} {
		if kv, err := n.Do(ctx, n.B().ConfigGet().Parameter(k).Build()).AsStrMap(); err == nil {
			t.info.Settings[k] = kv[k]
		}
	}
	return nil
}

// Info describes the server.
func (t *Target) Info() Valkey { return t.info }

// Close closes the clients and stops an embedded server.
func (t *Target) Close() {
	for _, c := range []valkey.Client{t.raw, t.serial} {
		if c != nil {
			c.Close()
		}
	}
	for _, r := range t.replicas {
		_ = r.Close()
	}
	if t.server != nil {
		_ = t.server.Close()
	}
	if t.cluster != nil {
		_ = t.cluster.Close()
	}
}

// Port returns the first primary's address (for valkey-benchmark).
func (t *Target) firstAddr() string { return t.Addrs[0] }

// Deploy empties the server and connects a backend with a new deployment
// of the given partition count.
func (t *Target) Deploy(ctx context.Context, partitions int) (*valkeybackend.Backend, error) {
	if err := t.empty(ctx); err != nil {
		return nil, err
	}
	return valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: t.Addrs, Partitions: partitions,
		DisableArrivals: t.noArrivals, WaitReplicas: t.waitReplicas})
}

// empty empties every primary (FLUSHALL), when the target allows it.
func (t *Target) empty(ctx context.Context) error {
	if !t.flush {
		return fmt.Errorf("ffbench empties the server between runs (FLUSHALL); pass --flush to allow it on %s",
			strings.Join(t.Addrs, ","))
	}
	for _, n := range t.primaries {
		if err := n.Do(ctx, n.B().Flushall().Sync().Build()).Error(); err != nil {
			return fmt.Errorf("FLUSHALL: %w", err)
		}
	}
	return nil
}

// DeployConnected deploys partitions and connects n more backends to the
// deployment (producers, an engine: separate clients, as separate processes
// would be). It returns the deployed backend first and one close for all.
func (t *Target) DeployConnected(ctx context.Context, partitions, n int) ([]*valkeybackend.Backend, func(), error) {
	be, err := t.Deploy(ctx, partitions)
	if err != nil {
		return nil, nil, err
	}
	all := []*valkeybackend.Backend{be}
	closeAll := func() {
		for _, b := range all {
			b.Close()
		}
	}
	for range n {
		c, err := t.Connect(ctx)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		all = append(all, c)
	}
	return all, closeAll, nil
}

// Connect connects another backend to the current deployment (a producer
// process next to the workers' one).
func (t *Target) Connect(ctx context.Context) (*valkeybackend.Backend, error) {
	return valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: t.Addrs, WaitReplicas: t.waitReplicas})
}

func (t *Target) snapshot(ctx context.Context) (serverSnapshot, error) {
	return snapshotServer(ctx, t.primaries)
}
