package valkeytest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Defaults for [ClusterOptions] fields left zero.
const (
	DefaultPrimaries           = 3
	DefaultNodeTimeout         = 5 * time.Second
	DefaultClusterReadyTimeout = 30 * time.Second
)

// slotCount is the number of hash slots in a Valkey cluster.
const slotCount = 16384

// ClusterOptions configures [StartCluster]. The zero value is a 3-primary cluster with no
// replicas and no persistence.
type ClusterOptions struct {
	// Primaries is the number of primary nodes; slots are split evenly among them.
	// Default 3. With fewer than 3 the slots are assigned directly, since
	// valkey-cli --cluster create requires at least 3.
	Primaries int

	// Replicas is the number of replicas each primary gets (valkey-cli --cluster create
	// --cluster-replicas); StartCluster returns once every replica's link to its primary
	// is up. Default 0. Replicas need Primaries >= 3.
	Replicas int

	// NodeTimeout is each node's cluster-node-timeout. Default 5s.
	NodeTimeout time.Duration

	// ReadyTimeout bounds cluster creation, until every node reports cluster_state:ok,
	// knows every other node and sees all 16384 slots assigned. Default 30s.
	ReadyTimeout time.Duration

	// ExtraArgs are appended to every node's valkey-server command line. Default none.
	ExtraArgs []string

	// Binary is the valkey-server executable. Default "valkey-server".
	Binary string

	// CLIBinary is the valkey-cli executable used for --cluster create. Default "valkey-cli".
	CLIBinary string

	// StartTimeout bounds each node's wait for PING, on start and on Restart. Default 10s.
	StartTimeout time.Duration
}

func (o ClusterOptions) withDefaults() ClusterOptions {
	if o.Primaries <= 0 {
		o.Primaries = DefaultPrimaries
	}
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = DefaultNodeTimeout
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultClusterReadyTimeout
	}
	if o.CLIBinary == "" {
		o.CLIBinary = DefaultCLIBinary
	}
	return o
}

// Cluster is a Valkey Cluster of primaries (and their replicas) on loopback, or an
// existing cluster named by FF_VALKEY_CLUSTER_ADDRS.
type Cluster struct {
	nodes    []*Server // every node started, for Close
	addrs    []string  // the primaries' addresses at creation
	primary  []*Server // the nodes created as primaries
	replicas []*Server // the nodes created as replicas
	opts     ClusterOptions
}

// Addrs returns the addresses of the nodes created as primaries, usable as valkey-go
// InitAddress. After a failover one of them may be a replica or down; [Cluster.AllAddrs]
// and [Cluster.Topology] follow the roles as they are.
func (c *Cluster) Addrs() []string { return append([]string(nil), c.addrs...) }

// Nodes returns the nodes created as primaries, for fault injection (Kill, Pause, Restart
// a node).
func (c *Cluster) Nodes() []*Server { return append([]*Server(nil), c.primary...) }

// Replicas returns the nodes created as replicas (none without ClusterOptions.Replicas).
func (c *Cluster) Replicas() []*Server { return append([]*Server(nil), c.replicas...) }

// Close stops every node and removes their directories. It is a no-op for a cluster named
// by FF_VALKEY_CLUSTER_ADDRS, and safe to call more than once.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.nodes {
		errs = append(errs, n.Close())
	}
	return errors.Join(errs...)
}

// StartCluster starts opts.Primaries cluster-enabled valkey-server processes, each on a
// free loopback port (and its bus port, port+10000) in its own temp dir, joins them with
// valkey-cli --cluster create, and waits until every node reports cluster_state:ok. It
// always uses local binaries and ignores FF_VALKEY_CLUSTER_ADDRS and FF_VALKEY_CONTAINER.
func StartCluster(ctx context.Context, opts ClusterOptions) (*Cluster, error) {
	opts = opts.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()

	nodeOpts := Options{
		Binary:       opts.Binary,
		StartTimeout: opts.StartTimeout,
		ExtraArgs:    opts.ExtraArgs,
	}.withDefaults()
	nodeOpts.Container = false
	clusterArgs := []string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(opts.NodeTimeout.Milliseconds(), 10),
	}
	if opts.Replicas > 0 && opts.Primaries < 3 {
		return nil, fmt.Errorf("valkeytest: a cluster with replicas needs at least 3 primaries, not %d", opts.Primaries)
	}
	c := &Cluster{opts: opts}
	for range opts.Primaries * (1 + max(opts.Replicas, 0)) {
		s, err := startLocal(ctx, nodeOpts, clusterArgs, true)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		c.nodes = append(c.nodes, s)
	}
	var err error
	if opts.Primaries >= 3 {
		err = c.createWithCLI(ctx, opts.CLIBinary, opts.Replicas)
	} else {
		c.primary = c.nodes
		err = c.createByHand(ctx)
	}
	if err == nil {
		err = c.waitOK(ctx)
	}
	if err == nil && opts.Primaries >= 3 {
		err = c.sortRoles(ctx)
	}
	if err == nil {
		err = c.waitReplicasLinked(ctx)
	}
	for _, s := range c.primary {
		c.addrs = append(c.addrs, s.addr)
	}
	if err != nil {
		err = fmt.Errorf("%w%s", err, c.logTails())
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) createWithCLI(ctx context.Context, cli string, replicas int) error {
	bin, err := exec.LookPath(cli)
	if err != nil {
		return fmt.Errorf("valkeytest: %s not found (run `bash ci/install-valkey.sh`): %w", cli, err)
	}
	args := []string{"--cluster", "create"}
	for _, s := range c.nodes {
		args = append(args, s.addr)
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(max(replicas, 0)), "--cluster-yes")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = sysProcAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("valkeytest: %s --cluster create: %w\n%s", cli, err, out)
	}
	return nil
}

// createByHand assigns slot ranges and introduces the nodes, for 1 or 2 primaries.
func (c *Cluster) createByHand(ctx context.Context) error {
	n := len(c.nodes)
	for i, s := range c.nodes {
		lo, hi := i*slotCount/n, (i+1)*slotCount/n-1
		if _, err := command(ctx, s.addr, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			return fmt.Errorf("valkeytest: CLUSTER ADDSLOTSRANGE on %s: %w", s.addr, err)
		}
	}
	for _, s := range c.nodes[1:] {
		if _, err := command(ctx, s.addr, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(c.nodes[0].port)); err != nil {
			return fmt.Errorf("valkeytest: CLUSTER MEET on %s: %w", s.addr, err)
		}
	}
	return nil
}

// waitOK polls CLUSTER INFO on every node until each reports cluster_state:ok, all slots
// assigned and every node known, so any node gives clients the full topology.
func (c *Cluster) waitOK(ctx context.Context) error {
	want := strconv.Itoa(len(c.nodes))
	var last string
	err := poll(ctx, 50*time.Millisecond, func() bool {
		for _, s := range c.nodes {
			info, err := command(ctx, s.addr, "CLUSTER", "INFO")
			if err != nil {
				last = fmt.Sprintf("%s: %v", s.addr, err)
				return false
			}
			state, slots, known := infoField(info, "cluster_state"), infoField(info, "cluster_slots_assigned"), infoField(info, "cluster_known_nodes")
			if state != "ok" || slots != strconv.Itoa(slotCount) || known != want {
				last = fmt.Sprintf("%s: cluster_state:%s cluster_slots_assigned:%s cluster_known_nodes:%s", s.addr, state, slots, known)
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("valkeytest: cluster not ready: %w (last: %s)", err, last)
	}
	return nil
}

func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, s := range c.nodes {
		fmt.Fprintf(&b, "\n--- %s (%s) ---\n%s", s.addr, s.logPath, logTail(s.logPath, 10))
	}
	return b.String()
}

// NewCluster returns a 3-primary cluster for the test and closes it in t.Cleanup. It
// fails the test (never skips) when the cluster cannot start. If FF_VALKEY_CLUSTER_ADDRS
// is set (comma-separated host:port list), it returns that cluster instead, after checking
// every address answers PING; Close is then a no-op and tests sharing it must use
// distinct keys or FLUSHALL every primary themselves.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	if env := os.Getenv(EnvClusterAddrs); env != "" {
		c := &Cluster{}
		for a := range strings.SplitSeq(env, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if _, err := command(t.Context(), a, "PING"); err != nil {
				t.Fatalf("valkeytest: %s: %s does not answer PING: %v", EnvClusterAddrs, a, err)
			}
			c.addrs = append(c.addrs, a)
			c.nodes = append(c.nodes, &Server{addr: a})
			c.primary = append(c.primary, c.nodes[len(c.nodes)-1])
		}
		if len(c.addrs) == 0 {
			t.Fatalf("valkeytest: %s=%q names no address", EnvClusterAddrs, env)
		}
		return c
	}
	c, err := StartCluster(t.Context(), ClusterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}
