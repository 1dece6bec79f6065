// Package valkeytest starts throwaway Valkey servers, standalone or a small cluster, for
// tests and benchmarks. It runs the local valkey-server binary on a free loopback port in
// a temporary directory, so tests talk to a real engine without Docker; on Linux each server
// dies with the process that started it. Tests use [NewServer] and [NewCluster]; other
// programs (such as the benchmark CLI) use [Start] and [StartCluster].
//
// Environment variables:
//
//   - FF_VALKEY_ADDR=host:port makes [NewServer] hand out that existing server instead of
//     starting one. Tests sharing it must use distinct keys or FLUSHALL it themselves.
//   - FF_VALKEY_CLUSTER_ADDRS=host:port,host:port,... does the same for [NewCluster].
//   - FF_VALKEY_CONTAINER=1 makes [Start] (and so [NewServer]) run the valkey/valkey:8
//     image through the registered [ContainerRuntime] (import the nested module
//     github.com/flowfabric/flowfabric-go/valkeytest/container for testcontainers-go); it
//     fails when none is registered or no Docker engine answers.
//
// The valkey-go commands this package and its tests send are pinned (Pin): valkey-go
// recycles a command's buffer once its reply arrives, and its writer goroutine reads the
// buffer with no lock the race detector can see between that read and the reply, so a
// buffer reused right away by a short-lived client is reported as a race (1 run in ~20 of
// these tests with -race). The socket orders the two, so it is not one; pinning keeps the
// buffers out of the pool, at an allocation per command nobody here measures.
package valkeytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment variables read by this package.
const (
	EnvAddr         = "FF_VALKEY_ADDR"
	EnvClusterAddrs = "FF_VALKEY_CLUSTER_ADDRS"
	EnvContainer    = "FF_VALKEY_CONTAINER"
)

// Defaults for [Options] and [ClusterOptions] fields left zero.
const (
	DefaultBinary       = "valkey-server"
	DefaultCLIBinary    = "valkey-cli"
	DefaultImage        = "valkey/valkey:8"
	DefaultStartTimeout = 10 * time.Second
)

// stopTimeout bounds a graceful shutdown before the process is killed.
const stopTimeout = 10 * time.Second

// startAttempts bounds retries with a fresh port when another process took ours.
const startAttempts = 5

// ErrNotOwned is returned by Restart, Kill, Pause and Resume on a server this package did
// not start (one named by FF_VALKEY_ADDR or FF_VALKEY_CLUSTER_ADDRS).
var ErrNotOwned = errors.New("valkeytest: server was not started by valkeytest")

// Options configures [Start]. The zero value is a fast, non-persistent server.
type Options struct {
	// AppendOnly turns on the append-only file with appendfsync always, so every
	// acknowledged write survives Kill and Restart. Default false: no persistence
	// (--save "" --appendonly no).
	AppendOnly bool

	// ExtraArgs are appended to the valkey-server command line, after the defaults, so
	// they can override them (e.g. "--maxmemory", "64mb"). Default none.
	ExtraArgs []string

	// Binary is the valkey-server executable, looked up on PATH. Default "valkey-server".
	Binary string

	// StartTimeout bounds each wait for the server to answer PING, on Start and on
	// Restart. Default 10s.
	StartTimeout time.Duration

	// Container runs Image through the registered ContainerRuntime instead of the local
	// binary; Start fails if none is registered or it cannot run the image. Default false;
	// FF_VALKEY_CONTAINER=1 also sets it.
	Container bool

	// Image is the container image used when Container is set. Default "valkey/valkey:8".
	Image string
}

func (o Options) withDefaults() Options {
	if o.Binary == "" {
		o.Binary = DefaultBinary
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.Image == "" {
		o.Image = DefaultImage
	}
	if os.Getenv(EnvContainer) == "1" {
		o.Container = true
	}
	return o
}

// Server is one Valkey server: a local process, a container, or an existing server named
// by FF_VALKEY_ADDR. Its methods are safe for concurrent use.
type Server struct {
	mu      sync.Mutex
	addr    string
	port    int
	dir     string
	logPath string
	bin     string
	args    []string
	opts    Options
	proc    *process
	ctr     Container // container mode only
	owned   bool      // false for FF_VALKEY_ADDR servers
	closed  bool
}

// process is one run of valkey-server.
type process struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has exited
	err  error         // exit error, valid after done
}

// Addr returns the server's address, "127.0.0.1:port" for a local server.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Dir returns the server's working directory (data and AOF files); empty when the server
// is not a local process.
func (s *Server) Dir() string { return s.dir }

// LogPath returns the file that receives the server's log; empty when the server is not a
// local process.
func (s *Server) LogPath() string { return s.logPath }

// Start starts a throwaway valkey-server on a free loopback port in a new temp dir and
// waits until it answers PING. ctx bounds startup only; the server runs until Close (or
// until the calling process dies, on Linux). It ignores FF_VALKEY_ADDR.
func Start(ctx context.Context, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if opts.Container {
		return startContainer(ctx, opts)
	}
	return startLocal(ctx, opts, nil, false)
}

// startLocal starts a local server; extra args come before opts.ExtraArgs. bus asks for
// a free cluster bus port (port+10000) too.
func startLocal(ctx context.Context, opts Options, extra []string, bus bool) (*Server, error) {
	bin, err := exec.LookPath(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("valkeytest: %s not found (run `bash ci/install-valkey.sh`, or set %s to use a running server): %w", opts.Binary, EnvAddr, err)
	}
	dir, err := os.MkdirTemp("", "valkeytest-")
	if err != nil {
		return nil, fmt.Errorf("valkeytest: %w", err)
	}
	s := &Server{dir: dir, logPath: dir + "/valkey.log", bin: bin, opts: opts, owned: true}
	var lastErr error
	for range startAttempts {
		port, err := freePort(bus)
		if err != nil {
			lastErr = err
			continue
		}
		s.port = port
		s.addr = "127.0.0.1:" + strconv.Itoa(port)
		s.args = serverArgs(port, dir, opts, extra)
		_ = os.Remove(s.logPath)
		err = s.launch(ctx)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

func serverArgs(port int, dir string, opts Options, extra []string) []string {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--daemonize", "no",
		"--save", "",
	}
	if opts.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, extra...)
	return append(args, opts.ExtraArgs...)
}

// errPortTaken marks a startup that failed because the port was not ours.
var errPortTaken = errors.New("port already in use")

// launch starts the process with s.args and waits until it answers PING. The caller
// holds s.mu or owns s exclusively.
func (s *Server) launch(ctx context.Context) error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("valkeytest: %w", err)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("valkeytest: start %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, log: logf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	if err := s.waitReady(ctx, p); err != nil {
		p.kill()
		return err
	}
	s.proc = p
	return nil
}

// waitReady polls PING until the process answers, exits, or the start timeout passes. It
// checks the answering server's process_id, so a server that another test started on the
// same port is never mistaken for ours.
func (s *Server) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-p.done:
			tail := logTail(s.logPath, 20)
			if strings.Contains(tail, "Address already in use") || strings.Contains(tail, "Failed listening on port") {
				return fmt.Errorf("valkeytest: valkey-server on %s: %w\n%s", s.addr, errPortTaken, tail)
			}
			return fmt.Errorf("valkeytest: valkey-server on %s exited during startup (%v); log %s:\n%s", s.addr, p.err, s.logPath, tail)
		case <-ctx.Done():
			return fmt.Errorf("valkeytest: valkey-server on %s did not answer PING within %v (last error: %v); log %s:\n%s",
				s.addr, s.opts.StartTimeout, lastErr, s.logPath, logTail(s.logPath, 20))
		case <-tick.C:
		}
		pid, err := probe(ctx, s.addr)
		if err != nil {
			lastErr = err
			continue
		}
		if pid != p.cmd.Process.Pid {
			return fmt.Errorf("valkeytest: %s is served by another process (pid %d): %w", s.addr, pid, errPortTaken)
		}
		return nil
	}
}

// probe sends PING and INFO server and returns the server's process id.
func probe(ctx context.Context, addr string) (int, error) {
	rc, err := dialRESP(ctx, addr, 250*time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	pong, err := rc.do(time.Second, "PING")
	if err != nil {
		return 0, err
	}
	if pong != "PONG" {
		return 0, fmt.Errorf("PING answered %q", pong)
	}
	info, err := rc.do(time.Second, "INFO", "server")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(infoField(info, "process_id"))
}

// kill SIGKILLs the process and waits for it to exit.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop asks the process to shut down (SIGTERM, which saves the AOF) and kills it if it
// has not exited within timeout or when ctx ends.
func (p *process) stop(ctx context.Context, timeout time.Duration) {
	if sigCont != nil {
		_ = p.cmd.Process.Signal(sigCont) // a paused server cannot handle SIGTERM
	}
	_ = p.cmd.Process.Signal(sigTerm)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.kill()
	case <-ctx.Done():
		p.kill()
	}
}

// Close stops the server and removes its directory. It is a no-op for a server named by
// FF_VALKEY_ADDR, and safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.owned || s.closed {
		return nil
	}
	s.closed = true
	if s.ctr != nil {
		return s.ctr.Close()
	}
	if s.proc != nil {
		s.proc.kill()
		s.proc = nil
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("valkeytest: %w", err)
	}
	return nil
}

// Restart stops the server gracefully (if it is running) and starts it again on the same
// port and directory, keeping its data: with AppendOnly set, every acknowledged write
// survives. Use it after Kill to model a crash and recovery. For a cluster node, the node
// keeps its identity and slots from nodes.conf.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOwned(); err != nil {
		return err
	}
	if s.ctr != nil {
		addr, err := s.ctr.Restart(ctx)
		if err == nil {
			s.addr = addr
		}
		return err
	}
	if s.proc != nil {
		s.proc.stop(ctx, stopTimeout)
		s.proc = nil
	}
	// The port is fixed now, so a bind failure can only wait for the port to come back.
	deadline := time.Now().Add(s.opts.StartTimeout)
	for {
		err := s.launch(ctx)
		if err == nil || !errors.Is(err, errPortTaken) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Kill SIGKILLs the server, as a crash would; it stays down until Restart. Without
// AppendOnly its data is lost.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOwned(); err != nil {
		return err
	}
	if s.ctr != nil {
		return s.ctr.Kill()
	}
	if s.proc != nil {
		s.proc.kill()
		s.proc = nil
	}
	return nil
}

// Pause freezes the server process (SIGSTOP): connections stay open but nothing is
// answered, like a long stall or a partition. Resume undoes it. Local servers only.
func (s *Server) Pause() error { return s.signal(sigStop, "Pause") }

// Resume continues a server frozen by Pause (SIGCONT).
func (s *Server) Resume() error { return s.signal(sigCont, "Resume") }

func (s *Server) signal(sig os.Signal, op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOwned(); err != nil {
		return err
	}
	if s.ctr != nil || sig == nil {
		return fmt.Errorf("valkeytest: %s is not supported for this server", op)
	}
	if s.proc == nil {
		return fmt.Errorf("valkeytest: %s: server on %s is not running", op, s.addr)
	}
	return s.proc.cmd.Process.Signal(sig)
}

// PID returns the process id of a local server this package started and
// that is running; 0 for a container, an FF_VALKEY_ADDR server, or one that
// is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.owned || s.closed || s.ctr != nil || s.proc == nil || s.proc.cmd.Process == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

func (s *Server) checkOwned() error {
	if !s.owned {
		return ErrNotOwned
	}
	if s.closed {
		return fmt.Errorf("valkeytest: server on %s is closed", s.addr)
	}
	return nil
}

// NewServer returns a Valkey server for the test and closes it in t.Cleanup. It fails the
// test (never skips) when no server can be started. If FF_VALKEY_ADDR is set, it returns
// that server instead, after checking that it answers PING; Close is then a no-op and
// tests sharing it must use distinct keys or FLUSHALL themselves.
func NewServer(t testing.TB) *Server {
	t.Helper()
	if addr := os.Getenv(EnvAddr); addr != "" {
		if _, err := command(t.Context(), addr, "PING"); err != nil {
			t.Fatalf("valkeytest: %s=%s does not answer PING: %v", EnvAddr, addr, err)
		}
		return &Server{addr: addr}
	}
	s, err := Start(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// logTail returns the last n lines of the file at path, or a note why it cannot.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
