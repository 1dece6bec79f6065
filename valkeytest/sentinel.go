package valkeytest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Defaults for [ReplicatedOptions] fields left zero.
const (
	DefaultMasterName = "ffmaster"
	DefaultDownAfter  = time.Second
)

// ReplicatedOptions configures [StartReplicated]. The zero value is a primary with one
// replica watched by one Sentinel, without persistence.
type ReplicatedOptions struct {
	// Replicas is the number of replicas of the primary. Default 1.
	Replicas int

	// MasterName is the name the Sentinel monitors the primary under (the master set
	// clients ask for). Default "ffmaster".
	MasterName string

	// DownAfter is the Sentinel's down-after-milliseconds: how long the primary must not
	// answer before it is failed over. Default 1s.
	DownAfter time.Duration

	// ExtraArgs are appended to the primary's and replicas' command lines. Default none.
	ExtraArgs []string

	// Binary is the valkey-server executable, also run with --sentinel. Default
	// "valkey-server".
	Binary string

	// ReadyTimeout bounds StartReplicated until every replica is linked and the Sentinel
	// knows them. Default 30s.
	ReadyTimeout time.Duration

	// HoldableLinks makes the replicas replicate through a proxy in this process, which
	// [Replicated.HoldReplication] holds and [Replicated.CutReplication] cuts, so a test
	// can kill a primary whose replicas have not received its last writes. Default false.
	HoldableLinks bool
}

// Replicated is a primary, its replicas and one Sentinel, all local processes on loopback.
type Replicated struct {
	servers  []*Server // the primary at creation first, then the replicas
	sentinel *Server
	name     string
	proxy    *linkProxy // HoldableLinks only
}

// HoldReplication stops delivering replication traffic between the primary at creation
// and its replicas, both ways: the primary's writes are read (it believes them sent) and
// kept, not delivered, as over a stalled network. It panics without HoldableLinks.
func (r *Replicated) HoldReplication() { r.proxy.hold() }

// ReleaseReplication delivers what HoldReplication kept and forwards again.
func (r *Replicated) ReleaseReplication() { r.proxy.release() }

// CutReplication closes the replication links through the proxy and loses what they
// kept: with the primary killed first, its replicas never get its last writes.
func (r *Replicated) CutReplication() { r.proxy.cut() }

// Servers returns the data nodes: the primary at creation first, then its replicas.
func (r *Replicated) Servers() []*Server { return append([]*Server(nil), r.servers...) }

// SentinelAddr returns the Sentinel's address, for valkey-go's InitAddress with
// SentinelOption.MasterSet set to [Replicated.MasterName].
func (r *Replicated) SentinelAddr() string { return r.sentinel.Addr() }

// MasterName returns the name the Sentinel monitors the primary under.
func (r *Replicated) MasterName() string { return r.name }

// Close stops the Sentinel and every data node and removes their directories.
func (r *Replicated) Close() error {
	if r.proxy != nil {
		r.proxy.close()
	}
	errs := []error{r.sentinel.Close()}
	for _, s := range r.servers {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// StartReplicated starts a primary, opts.Replicas replicas of it and a Sentinel that
// monitors it (quorum 1), and returns once every replica is linked and the Sentinel
// reports them. It always uses local binaries.
func StartReplicated(ctx context.Context, opts ReplicatedOptions) (_ *Replicated, err error) {
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.MasterName == "" {
		opts.MasterName = DefaultMasterName
	}
	if opts.DownAfter <= 0 {
		opts.DownAfter = DefaultDownAfter
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultClusterReadyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()
	nodeOpts := Options{Binary: opts.Binary, ExtraArgs: opts.ExtraArgs}.withDefaults()
	nodeOpts.Container = false
	r := &Replicated{name: opts.MasterName}
	defer func() {
		if err != nil {
			for _, s := range r.servers {
				_ = s.Close()
			}
			if r.sentinel != nil {
				_ = r.sentinel.Close()
			}
			if r.proxy != nil {
				r.proxy.close()
			}
		}
	}()
	primary, err := startLocal(ctx, nodeOpts, nil, false)
	if err != nil {
		return nil, err
	}
	r.servers = append(r.servers, primary)
	follow := primary.port
	if opts.HoldableLinks {
		if r.proxy, err = newLinkProxy(primary.addr); err != nil {
			return nil, err
		}
		follow = r.proxy.port()
	}
	for range opts.Replicas {
		s, err := startLocal(ctx, nodeOpts, []string{"--replicaof", "127.0.0.1", strconv.Itoa(follow)}, false)
		if err != nil {
			return nil, err
		}
		r.servers = append(r.servers, s)
	}
	for _, s := range r.servers[1:] {
		if err := waitLinked(ctx, s.addr); err != nil {
			return nil, err
		}
	}
	if r.sentinel, err = startSentinel(ctx, nodeOpts, opts.MasterName, primary.port, opts.DownAfter); err != nil {
		return nil, err
	}
	var last error
	err = poll(ctx, 50*time.Millisecond, func() bool {
		var out string
		out, last = command(ctx, r.sentinel.addr, "SENTINEL", "REPLICAS", opts.MasterName)
		return last == nil && goodReplicas(out) >= opts.Replicas
	})
	if err != nil {
		return nil, fmt.Errorf("valkeytest: the sentinel does not know the replicas: %w (last: %v)", err, last)
	}
	return r, nil
}

// goodReplicas counts the replicas in a SENTINEL REPLICAS reply (read as
// newline-joined field/value pairs) that the Sentinel could promote: connected, flagged
// slave alone, their link to the primary ok.
func goodReplicas(out string) int {
	f := strings.Split(out, "\n")
	n, flags := 0, ""
	for i := 0; i+1 < len(f); i += 2 {
		switch f[i] {
		case "flags":
			flags = f[i+1]
		case "master-link-status":
			if flags == "slave" && f[i+1] == "ok" {
				n++
			}
		}
	}
	return n
}

// startSentinel runs valkey-server --sentinel monitoring the primary on port.
func startSentinel(ctx context.Context, opts Options, name string, port int, downAfter time.Duration) (*Server, error) {
	bin, err := exec.LookPath(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("valkeytest: %s not found (run `bash ci/install-valkey.sh`): %w", opts.Binary, err)
	}
	dir, err := os.MkdirTemp("", "valkeytest-sentinel-")
	if err != nil {
		return nil, fmt.Errorf("valkeytest: %w", err)
	}
	s := &Server{dir: dir, logPath: filepath.Join(dir, "sentinel.log"), bin: bin, opts: opts, owned: true}
	conf := filepath.Join(dir, "sentinel.conf")
	var lastErr error
	for range startAttempts {
		if s.port, err = freePort(false); err != nil {
			lastErr = err
			continue
		}
		s.addr = "127.0.0.1:" + strconv.Itoa(s.port)
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 1\n"+
			"sentinel down-after-milliseconds %s %d\n"+
			"sentinel failover-timeout %s 10000\n",
			s.port, dir, name, port, name, downAfter.Milliseconds(), name)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			lastErr = err
			break
		}
		s.args = []string{conf, "--sentinel"}
		_ = os.Remove(s.logPath)
		if lastErr = s.launch(ctx); lastErr == nil {
			return s, nil
		}
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

// Primary returns the data node the Sentinel currently names as primary.
func (r *Replicated) Primary(ctx context.Context) (*Server, error) {
	out, err := command(ctx, r.sentinel.Addr(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", r.name)
	if err != nil {
		return nil, fmt.Errorf("valkeytest: SENTINEL GET-MASTER-ADDR-BY-NAME: %w", err)
	}
	host, port, _ := strings.Cut(out, "\n")
	addr := host + ":" + port
	for _, s := range r.servers {
		if s.Addr() == addr {
			return s, nil
		}
	}
	return nil, fmt.Errorf("valkeytest: the sentinel names %q, not one of ours", addr)
}

// Failover asks the Sentinel to fail the primary over (SENTINEL FAILOVER, no agreement
// needed) and returns the new primary once it has taken over; see [Replicated.WaitFailover].
func (r *Replicated) Failover(ctx context.Context) (*Server, error) {
	old, err := r.Primary(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := command(ctx, r.sentinel.Addr(), "SENTINEL", "FAILOVER", r.name); err != nil {
		return nil, fmt.Errorf("valkeytest: SENTINEL FAILOVER: %w", err)
	}
	return r.WaitFailover(ctx, old)
}

// KillPrimary SIGKILLs the primary, as a crash would, and returns the replica the
// Sentinel promotes (after DownAfter and its election); see [Replicated.WaitFailover].
// Writes the primary acknowledged but had not yet sent to the replica are lost.
func (r *Replicated) KillPrimary(ctx context.Context) (*Server, error) {
	old, err := r.Primary(ctx)
	if err != nil {
		return nil, err
	}
	if err := old.Kill(); err != nil {
		return nil, err
	}
	return r.WaitFailover(ctx, old)
}

// WaitFailover waits until the Sentinel names a primary other than old, that node
// answers as a primary, and every other running data node replicates it with its link
// up; it returns the new primary. Once the Sentinel's failover is over, a node that
// still follows another (the old primary, which the Sentinel reconfigures only after
// several of its INFO rounds) is told REPLICAOF the new primary, as the Sentinel would,
// to save that wait.
func (r *Replicated) WaitFailover(ctx context.Context, old *Server) (*Server, error) {
	last := ""
	var p *Server
	err := poll(ctx, 20*time.Millisecond, func() bool {
		var err error
		p, err = r.Primary(ctx)
		switch {
		case err != nil:
			last = err.Error()
		case p == old:
			last = "the sentinel still names " + old.Addr()
		default:
			last = r.settled(ctx, p)
		}
		return err == nil && p != old && last == ""
	})
	if err != nil {
		return nil, fmt.Errorf("valkeytest: no failover from %s: %w (last: %s)", old.Addr(), err, last)
	}
	return p, nil
}

// settled says what is not yet in place with p as primary, or "".
func (r *Replicated) settled(ctx context.Context, p *Server) string {
	info, err := command(ctx, p.Addr(), "INFO", "replication")
	if err != nil || infoField(info, "role") != "master" {
		return fmt.Sprintf("%s: role:%s %v", p.Addr(), infoField(info, "role"), err)
	}
	for _, s := range r.servers {
		if s == p || s.PID() == 0 {
			continue
		}
		info, err := command(ctx, s.Addr(), "INFO", "replication")
		if err == nil && infoField(info, "master_port") != strconv.Itoa(p.port) && r.failoverDone(ctx) {
			_, err = command(ctx, s.Addr(), "REPLICAOF", "127.0.0.1", strconv.Itoa(p.port))
		}
		if err != nil || infoField(info, "master_port") != strconv.Itoa(p.port) || infoField(info, "master_link_status") != "up" {
			return fmt.Sprintf("%s: master_port:%s master_link_status:%s %v", s.Addr(),
				infoField(info, "master_port"), infoField(info, "master_link_status"), err)
		}
	}
	return ""
}

// failoverDone reports whether the Sentinel has finished its failover: its
// master entry's flags say master alone (no failover_in_progress), so a
// node told to follow the new primary cannot race the Sentinel's own steps.
func (r *Replicated) failoverDone(ctx context.Context) bool {
	out, err := command(ctx, r.sentinel.Addr(), "SENTINEL", "MASTER", r.name)
	if err != nil {
		return false
	}
	f := strings.Split(out, "\n")
	for i := 0; i+1 < len(f); i += 2 {
		if f[i] == "flags" {
			return f[i+1] == "master"
		}
	}
	return false
}

// NewReplicated returns a primary with one replica and a Sentinel for the test, and
// closes them in t.Cleanup. It fails the test (never skips) when they cannot start.
func NewReplicated(t testing.TB, opts ReplicatedOptions) *Replicated {
	t.Helper()
	r, err := StartReplicated(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}
