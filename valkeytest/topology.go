package valkeytest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The helpers below change a running cluster's topology the way operators do (failover,
// a node's crash, a slot moving between primaries), so tests can check that clients follow.
// They talk to the nodes with their own short connections, never through a client under
// test.

// NodeInfo is one cluster node as another node sees it (a CLUSTER NODES line).
type NodeInfo struct {
	ID        string
	Addr      string   // host:port, without the bus port
	Primary   bool     // flagged master
	PrimaryID string   // the primary a replica follows; "" for a primary
	Failed    bool     // flagged fail or fail? (suspected)
	Slots     [][2]int // the slot ranges it serves, inclusive
}

// Topology returns the cluster's nodes as the first running node started by this package
// sees them.
func (c *Cluster) Topology(ctx context.Context) ([]NodeInfo, error) {
	var lastErr error = errors.New("valkeytest: no cluster node is running")
	for _, s := range c.nodes {
		if c.owned() && s.PID() == 0 {
			continue
		}
		out, err := command(ctx, s.Addr(), "CLUSTER", "NODES")
		if err != nil {
			lastErr = err
			continue
		}
		return parseClusterNodes(out), nil
	}
	return nil, lastErr
}

// owned reports whether this package started the cluster's processes.
func (c *Cluster) owned() bool { return len(c.nodes) > 0 && c.nodes[0].owned }

// parseClusterNodes reads a CLUSTER NODES reply.
func parseClusterNodes(out string) []NodeInfo {
	var nodes []NodeInfo
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		addr, _, _ = strings.Cut(addr, ",")
		n := NodeInfo{ID: f[0], Addr: addr}
		for flag := range strings.SplitSeq(f[2], ",") {
			switch flag {
			case "master":
				n.Primary = true
			case "fail", "fail?":
				n.Failed = true
			}
		}
		if !n.Primary && f[3] != "-" {
			n.PrimaryID = f[3]
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") { // a migration in progress, not a served range
				continue
			}
			lo, hi, found := strings.Cut(r, "-")
			if !found {
				hi = lo
			}
			l, err1 := strconv.Atoi(lo)
			h, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil {
				n.Slots = append(n.Slots, [2]int{l, h})
			}
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// Server returns the node started by this package at addr, or nil.
func (c *Cluster) Server(addr string) *Server {
	for _, s := range c.nodes {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// KeySlot returns the hash slot of key, as the cluster computes it (CLUSTER KEYSLOT).
func (c *Cluster) KeySlot(ctx context.Context, key string) (int, error) {
	for _, s := range c.nodes {
		if c.owned() && s.PID() == 0 {
			continue
		}
		out, err := command(ctx, s.Addr(), "CLUSTER", "KEYSLOT", key)
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(out)
	}
	return 0, errors.New("valkeytest: no cluster node is running")
}

// SlotOwner returns the primary that serves slot.
func (c *Cluster) SlotOwner(ctx context.Context, slot int) (*Server, error) {
	nodes, err := c.Topology(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		for _, r := range n.Slots {
			if n.Primary && slot >= r[0] && slot <= r[1] {
				if s := c.Server(n.Addr); s != nil {
					return s, nil
				}
				return nil, fmt.Errorf("valkeytest: slot %d is served by %s, which this cluster did not start", slot, n.Addr)
			}
		}
	}
	return nil, fmt.Errorf("valkeytest: no primary serves slot %d", slot)
}

// ReplicaOf returns a replica of primary that is not flagged failed and whose link to
// primary is up, waiting (until ctx ends) for one: after a failover the old primary
// becomes a replica once the news has spread and it has synced.
func (c *Cluster) ReplicaOf(ctx context.Context, primary *Server) (*Server, error) {
	var s *Server
	if poll(ctx, 20*time.Millisecond, func() bool {
		var err error
		s, err = c.replicaOf(ctx, primary)
		return err == nil
	}) != nil {
		_, err := c.replicaOf(ctx, primary)
		return nil, err
	}
	return s, waitLinked(ctx, s.Addr())
}

func (c *Cluster) replicaOf(ctx context.Context, primary *Server) (*Server, error) {
	nodes, err := c.Topology(ctx)
	if err != nil {
		return nil, err
	}
	id := ""
	for _, n := range nodes {
		if n.Addr == primary.Addr() {
			id = n.ID
		}
	}
	for _, n := range nodes {
		if id != "" && n.PrimaryID == id && !n.Failed {
			if s := c.Server(n.Addr); s != nil && s.PID() != 0 {
				return s, nil
			}
		}
	}
	return nil, fmt.Errorf("valkeytest: %s has no healthy replica", primary.Addr())
}

// Failover runs CLUSTER FAILOVER on replica (a manual failover: its primary stops
// writes, the replica catches up and takes over, so no acknowledged write is lost) and
// waits until every running node sees replica as a primary and reports cluster_state:ok.
func (c *Cluster) Failover(ctx context.Context, replica *Server) error {
	if _, err := command(ctx, replica.Addr(), "CLUSTER", "FAILOVER"); err != nil {
		return fmt.Errorf("valkeytest: CLUSTER FAILOVER on %s: %w", replica.Addr(), err)
	}
	return c.WaitPrimary(ctx, replica)
}

// KillPrimary SIGKILLs primary, as a crash would, and waits until its replica has been
// promoted by the cluster itself (which takes about the cluster-node-timeout plus up to
// a second), every running node agrees and reports cluster_state:ok. It returns the
// promoted replica. Writes the primary acknowledged but had not yet sent to the replica
// are lost, as in production.
func (c *Cluster) KillPrimary(ctx context.Context, primary *Server) (*Server, error) {
	replica, err := c.ReplicaOf(ctx, primary)
	if err != nil {
		return nil, err
	}
	if err := primary.Kill(); err != nil {
		return nil, err
	}
	return replica, c.WaitPrimary(ctx, replica)
}

// WaitPrimary waits until every running node sees s as a primary serving slots and
// reports cluster_state:ok.
func (c *Cluster) WaitPrimary(ctx context.Context, s *Server) error {
	addr := s.Addr()
	last := ""
	err := poll(ctx, 20*time.Millisecond, func() bool {
		for _, n := range c.nodes {
			if n.PID() == 0 {
				continue
			}
			out, err := command(ctx, n.Addr(), "CLUSTER", "NODES")
			if err != nil {
				last = err.Error()
				return false
			}
			seen := false
			for _, ni := range parseClusterNodes(out) {
				if ni.Addr == addr && ni.Primary && !ni.Failed && len(ni.Slots) > 0 {
					seen = true
				}
			}
			if !seen {
				last = n.Addr() + " does not see " + addr + " as a serving primary yet"
				return false
			}
			info, err := command(ctx, n.Addr(), "CLUSTER", "INFO")
			if err != nil || infoField(info, "cluster_state") != "ok" {
				last = fmt.Sprintf("%s: cluster_state:%s %v", n.Addr(), infoField(info, "cluster_state"), err)
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("valkeytest: %s is not a primary everywhere: %w (last: %s)", addr, err, last)
	}
	return nil
}

// MigrateOptions configures [Cluster.MigrateSlot].
type MigrateOptions struct {
	// Batch is how many keys one MIGRATE moves. Default 10, as valkey-cli --cluster
	// reshard moves them.
	Batch int

	// Pause is slept between batches, to stretch a migration over running work.
	// Default 0.
	Pause time.Duration
}

// MigrateSlot moves slot to the primary to, the way valkey-cli --cluster reshard does:
// CLUSTER SETSLOT IMPORTING on to and MIGRATING on the owner, MIGRATE of its keys in
// batches (clients meanwhile get ASK for keys already moved and TRYAGAIN for a command
// whose keys are split), then CLUSTER SETSLOT NODE on to, the owner and every other
// running primary.
func (c *Cluster) MigrateSlot(ctx context.Context, slot int, to *Server, opts MigrateOptions) error {
	if opts.Batch <= 0 {
		opts.Batch = 10
	}
	nodes, err := c.Topology(ctx)
	if err != nil {
		return err
	}
	var src, dst NodeInfo
	for _, n := range nodes {
		if n.Addr == to.Addr() {
			dst = n
		}
		for _, r := range n.Slots {
			if n.Primary && slot >= r[0] && slot <= r[1] {
				src = n
			}
		}
	}
	if src.ID == "" || dst.ID == "" {
		return fmt.Errorf("valkeytest: migrate slot %d to %s: owner %q, target %q not found", slot, to.Addr(), src.Addr, dst.Addr)
	}
	if src.ID == dst.ID {
		return nil
	}
	s := strconv.Itoa(slot)
	if _, err := command(ctx, dst.Addr, "CLUSTER", "SETSLOT", s, "IMPORTING", src.ID); err != nil {
		return fmt.Errorf("valkeytest: SETSLOT IMPORTING on %s: %w", dst.Addr, err)
	}
	if _, err := command(ctx, src.Addr, "CLUSTER", "SETSLOT", s, "MIGRATING", dst.ID); err != nil {
		return fmt.Errorf("valkeytest: SETSLOT MIGRATING on %s: %w", src.Addr, err)
	}
	host, port, _ := strings.Cut(dst.Addr, ":")
	for {
		out, err := command(ctx, src.Addr, "CLUSTER", "GETKEYSINSLOT", s, strconv.Itoa(opts.Batch))
		if err != nil {
			return fmt.Errorf("valkeytest: GETKEYSINSLOT on %s: %w", src.Addr, err)
		}
		if out == "" {
			break
		}
		args := []string{"MIGRATE", host, port, "", "0", "5000", "REPLACE", "KEYS"}
		args = append(args, strings.Split(out, "\n")...)
		if _, err := command(ctx, src.Addr, args...); err != nil {
			return fmt.Errorf("valkeytest: MIGRATE from %s: %w", src.Addr, err)
		}
		if opts.Pause > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(opts.Pause):
			}
		}
	}
	order := []string{dst.Addr, src.Addr}
	for _, n := range nodes {
		if n.Primary && !n.Failed && n.Addr != dst.Addr && n.Addr != src.Addr {
			order = append(order, n.Addr)
		}
	}
	for _, a := range order {
		if _, err := command(ctx, a, "CLUSTER", "SETSLOT", s, "NODE", dst.ID); err != nil {
			return fmt.Errorf("valkeytest: SETSLOT NODE on %s: %w", a, err)
		}
	}
	return nil
}

// AddPrimary starts one more cluster node, empty and serving no slot, and has it meet the
// cluster; it returns once every running node knows it and it reports cluster_state:ok. It holds no data and no Functions
// library until something puts them there (MigrateSlot moves keys, not libraries).
func (c *Cluster) AddPrimary(ctx context.Context) (*Server, error) {
	if !c.owned() {
		return nil, ErrNotOwned
	}
	nodeOpts := Options{Binary: c.opts.Binary, StartTimeout: c.opts.StartTimeout, ExtraArgs: c.opts.ExtraArgs}.withDefaults()
	nodeOpts.Container = false
	s, err := startLocal(ctx, nodeOpts, []string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(c.opts.NodeTimeout.Milliseconds(), 10),
	}, true)
	if err != nil {
		return nil, err
	}
	c.nodes = append(c.nodes, s)
	var seed *Server
	for _, n := range c.nodes {
		if n != s && n.PID() != 0 {
			seed = n
			break
		}
	}
	if seed == nil {
		return nil, errors.New("valkeytest: no running node to meet")
	}
	if _, err := command(ctx, s.addr, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(seed.port)); err != nil {
		return nil, fmt.Errorf("valkeytest: CLUSTER MEET from %s: %w", s.addr, err)
	}
	err = poll(ctx, 20*time.Millisecond, func() bool {
		for _, n := range c.nodes {
			if n.PID() == 0 {
				continue
			}
			out, err := command(ctx, n.Addr(), "CLUSTER", "NODES")
			if err != nil || !strings.Contains(out, s.addr+"@") {
				return false
			}
		}
		// the new node has learnt every slot's owner
		info, err := command(ctx, s.addr, "CLUSTER", "INFO")
		return err == nil && infoField(info, "cluster_state") == "ok"
	})
	if err != nil {
		return nil, fmt.Errorf("valkeytest: %s not known by every node: %w", s.addr, err)
	}
	return s, nil
}

// sortRoles splits the nodes into primaries and replicas after valkey-cli chose.
func (c *Cluster) sortRoles(ctx context.Context) error {
	nodes, err := c.Topology(ctx)
	if err != nil {
		return err
	}
	c.primary, c.replicas = nil, nil
	for _, s := range c.nodes {
		for _, n := range nodes {
			if n.Addr != s.addr {
				continue
			}
			if n.Primary {
				c.primary = append(c.primary, s)
			} else {
				c.replicas = append(c.replicas, s)
			}
		}
	}
	if len(c.primary)+len(c.replicas) != len(c.nodes) {
		return fmt.Errorf("valkeytest: CLUSTER NODES names %d of the %d nodes", len(c.primary)+len(c.replicas), len(c.nodes))
	}
	return nil
}

// waitReplicasLinked waits until every replica reports master_link_status:up and has
// finished its first sync, so a failover can promote it.
func (c *Cluster) waitReplicasLinked(ctx context.Context) error {
	for _, s := range c.replicas {
		if err := waitLinked(ctx, s.addr); err != nil {
			return err
		}
	}
	return nil
}

// waitLinked polls INFO replication on a replica until its link to the primary is up.
func waitLinked(ctx context.Context, addr string) error {
	last := ""
	err := poll(ctx, 20*time.Millisecond, func() bool {
		info, err := command(ctx, addr, "INFO", "replication")
		if err == nil && infoField(info, "master_link_status") == "up" && infoField(info, "master_sync_in_progress") == "0" {
			return true
		}
		last = fmt.Sprintf("master_link_status:%s %v", infoField(info, "master_link_status"), err)
		return false
	})
	if err != nil {
		return fmt.Errorf("valkeytest: replica %s not linked: %w (last: %s)", addr, err, last)
	}
	return nil
}

// poll calls done every interval until it reports true, or returns ctx's
// error once ctx ends: the wait of every topology change.
func poll(ctx context.Context, every time.Duration, done func() bool) error {
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
	return nil
}
