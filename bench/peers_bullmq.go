package bench

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"
)

// BullMQVersion is the BullMQ release the peers scenario installs (npm,
// exactly this version) and measures: the newest 5.x when it was pinned.
const BullMQVersion = "5.81.5"

// bullmqScript drives one BullMQ run: workers on Node's main thread, the
// producer on a worker thread (see the file's header for its protocol).
//
//go:embed peers/bullmq-peer.mjs
var bullmqScript []byte

const (
	bullmqScriptName = "ffbench-bullmq-peer.mjs"
	bullmqQueue      = "ffbench"
	// bullmqKey is the prefix of the queue's keys (BullMQ's default
	// prefix "bull").
	bullmqKey = "bull:" + bullmqQueue + ":"
)

// bullmqSetup is a ready BullMQ install: the directory holding
// node_modules and the script, and the node binary.
type bullmqSetup struct {
	dir, script, node, nodeVersion string
}

// prepareBullMQ finds node and npm and installs the pinned BullMQ under
// Peers.Dir once (later runs reuse it), then writes the script next to it.
// A missing node or npm, or a failed install, is not an error: it returns
// why BullMQ is skipped.
func (r *Runner) prepareBullMQ(ctx context.Context) (*bullmqSetup, string) {
	pc := r.cfg.Peers
	node, err := exec.LookPath(pc.Node)
	if err != nil {
		return nil, fmt.Sprintf("BullMQ skipped: node not found (%s): install Node.js 18 or later to measure it", pc.Node)
	}
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return nil, fmt.Sprintf("BullMQ skipped: %s --version: %v", node, err)
	}
	s := &bullmqSetup{node: node, nodeVersion: strings.TrimSpace(string(out))}
	dir, err := filepath.Abs(filepath.Join(pc.Dir, "bullmq-"+BullMQVersion))
	if err != nil {
		return nil, "BullMQ skipped: " + err.Error()
	}
	s.dir = dir
	if !bullmqInstalled(dir) {
		r.prog.Stage(fmt.Sprintf("%s: installing BullMQ %s into %s (once)", ScenarioPeers, BullMQVersion, dir))
		if note := installBullMQ(ctx, node, dir); note != "" {
			return nil, note
		}
	}
	s.script = filepath.Join(dir, bullmqScriptName)
	if err := writeFileAtomic(s.script, bullmqScript); err != nil {
		return nil, "BullMQ skipped: writing its script: " + err.Error()
	}
	return s, ""
}

// bullmqInstalled reports whether dir holds BullMQVersion.
func bullmqInstalled(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "bullmq", "package.json"))
	if err != nil {
		return false
	}
	var pkg struct {
		Version string `json:"version"`
	}
	return json.Unmarshal(b, &pkg) == nil && pkg.Version == BullMQVersion
}

// installBullMQ runs npm install into a fresh directory beside dir and
// renames it to dir, so a concurrent or interrupted install never leaves a
// half-made one behind. It returns a skip note on failure.
func installBullMQ(ctx context.Context, node, dir string) string {
	npm, err := exec.LookPath(filepath.Join(filepath.Dir(node), "npm"))
	if err != nil {
		if npm, err = exec.LookPath("npm"); err != nil {
			return "BullMQ skipped: npm not found: it installs BullMQ " + BullMQVersion
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "BullMQ skipped: " + err.Error()
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		return "BullMQ skipped: " + err.Error()
	}
	defer os.RemoveAll(tmp)
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ictx, npm, "install", "--prefix", tmp, "bullmq@"+BullMQVersion,
		"--no-audit", "--no-fund", "--no-save", "--loglevel", "error")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return fmt.Sprintf("BullMQ skipped: npm install bullmq@%s failed: %v: %s", BullMQVersion, err, lastLines(log.String(), 3))
	}
	if !bullmqInstalled(tmp) {
		return fmt.Sprintf("BullMQ skipped: npm install bullmq@%s left no node_modules/bullmq %s", BullMQVersion, BullMQVersion)
	}
	if err := os.Rename(tmp, dir); err != nil && !bullmqInstalled(dir) {
		return "BullMQ skipped: " + err.Error()
	}
	return ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// writeFileAtomic writes b to path through a temporary file and a rename,
// unless path already holds b.
func writeFileAtomic(path string, b []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// bullmqConfig is the script's config line.
type bullmqConfig struct {
	Host         string  `json:"host"`
	Port         int     `json:"port"`
	Queue        string  `json:"queue"`
	Workers      int     `json:"workers"`
	Concurrency  int     `json:"concurrency"`
	Open         bool    `json:"open"`
	Rate         float64 `json:"rate"`
	Arrivals     string  `json:"arrivals"`
	Seed         uint64  `json:"seed"`
	InFlight     int     `json:"inFlight"`
	PayloadBytes int     `json:"payloadBytes"`
	WarmupMs     int64   `json:"warmupMs"`
	DurationMs   int64   `json:"durationMs"`
	DrainMs      int64   `json:"drainMs"`
}

// bullmqMessage is a line the script prints.
type bullmqMessage struct {
	Event        string    `json:"event"`
	Error        string    `json:"error"`
	Issued       int64     `json:"issued"`
	Failed       int64     `json:"failed"`
	Completed    int64     `json:"completed"`
	Dups         int64     `json:"dups"`
	Lost         int64     `json:"lost"`
	Settled      bool      `json:"settled"`
	WindowDone   int64     `json:"windowDone"`
	WindowOps    int64     `json:"windowOps"`
	HandlerStart []float64 `json:"handlerStart"`
	SendLag      []float64 `json:"sendLag"`
	Submit       []float64 `json:"submit"`
	Errors       []string  `json:"errors"`
}

// runBullMQ measures BullMQ on the emptied server: one Node process with
// Config.Workers BullMQ workers of Config.Concurrency each (BullMQ's
// defaults otherwise: blocking fetch, completed jobs kept) and a producer
// thread adding no-op jobs, in open loop at pr.rate or closed loop with
// pr.inFlight outstanding. The harness snapshots the server's counters over
// the window while the script runs.
func (r *Runner) runBullMQ(ctx context.Context, pr peerRun, s *bullmqSetup) (*Result, error) {
	cfg := r.cfg
	cfg.Duration, cfg.Warmup = pr.window, pr.warmup
	if err := r.t.empty(ctx); err != nil {
		return nil, err
	}
	host, portS, err := net.SplitHostPort(r.t.Addrs[0])
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return nil, fmt.Errorf("port of %s: %w", r.t.Addrs[0], err)
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(pctx, s.node, s.script)
	cmd.Dir = s.dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr := &tailBuffer{max: 4096}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node: %w", err)
	}
	// The script prints at most three messages (ready, result or error):
	// the reader never blocks, and waits for the process once its output
	// ends.
	msgs := make(chan bullmqMessage, 16)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var m bullmqMessage
			if line := sc.Bytes(); len(line) > 0 && line[0] == '{' && json.Unmarshal(line, &m) == nil && m.Event != "" {
				select {
				case msgs <- m:
				default:
				}
			}
		}
		close(msgs)
		_ = cmd.Wait()
	}()
	defer func() {
		cancel() // kills node if it still runs
		<-exited
	}()
	await := func(event string, d time.Duration) (bullmqMessage, error) {
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case m, ok := <-msgs:
			switch {
			case !ok:
				return m, fmt.Errorf("node exited before %q: %s", event, lastLines(stderr.String(), 5))
			case m.Event == "error":
				return m, fmt.Errorf("node: %s", m.Error)
			case m.Event != event:
				return m, fmt.Errorf("node: %q, want %q", m.Event, event)
			}
			return m, nil
		case <-tm.C:
			return bullmqMessage{}, fmt.Errorf("node: no %q after %v: %s", event, d, lastLines(stderr.String(), 5))
		case <-ctx.Done():
			return bullmqMessage{}, ctx.Err()
		}
	}
	send := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = stdin.Write(append(b, '\n'))
		return err
	}
	bc := bullmqConfig{Host: host, Port: port, Queue: bullmqQueue, Workers: cfg.Workers, Concurrency: cfg.Concurrency,
		Open: pr.open, Rate: pr.rate, Arrivals: cfg.Arrivals, Seed: cfg.Seed, InFlight: pr.inFlight,
		PayloadBytes: cfg.PayloadBytes, WarmupMs: cfg.Warmup.Milliseconds(), DurationMs: cfg.Duration.Milliseconds(),
		DrainMs: cfg.Drain.Milliseconds()}
	if err := send(bc); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if _, err := await("ready", time.Minute); err != nil {
		return nil, err
	}
	t0 := time.Now().Add(100 * time.Millisecond)
	win := Window{From: t0.Add(cfg.Warmup)}
	win.To = win.From.Add(cfg.Duration)
	if err := send(map[string]float64{"t0": float64(t0.UnixNano()) / 1e6}); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	m, err := r.measure(ctx, win, func() string { return fmt.Sprintf("%s %s (node)", ScenarioPeers, pr.variant) })
	if err != nil {
		return nil, err
	}
	out, err := await("result", cfg.Drain+time.Minute)
	if err != nil {
		return nil, err
	}
	_ = stdin.Close()
	select { // the script exits once it printed its result
	case <-exited:
	case <-time.After(30 * time.Second):
	}

	lat := map[string]*Latency{}
	for name, vs := range map[string][]float64{"handler_start": out.HandlerStart, "send_lag": out.SendLag, "submit": out.Submit} {
		l := NewLatency(1, Window{})
		for _, v := range vs {
			l.Shard(0).Record(time.Time{}, time.Duration(v*float64(time.Microsecond)))
		}
		lat[name] = l
	}
	res := newPeerResult(pr, cfg, win, lat)
	m.mallocs = 0 // this process's allocations are the harness's, not BullMQ's
	res.finishPeer(peerCounts{submitted: out.Issued - out.Failed, lost: out.Lost, dups: out.Dups, failed: out.Failed,
		windowDone: out.WindowDone, windowOps: out.WindowOps, settled: out.Settled, completed: out.Completed}, pr, m, cfg.Drain)
	if len(out.Errors) > 0 {
		res.Note = joinNote(res.Note, "node: "+strings.Join(out.Errors, "; "))
	}
	// What the server holds after the workers closed: nothing waiting or
	// active, every submitted job in the completed set, none failed.
	raw := r.t.raw
	var n [4]int64
	for i, c := range []valkey.Completed{
		raw.B().Llen().Key(bullmqKey + "wait").Build(), raw.B().Llen().Key(bullmqKey + "active").Build(),
		raw.B().Zcard().Key(bullmqKey + "completed").Build(), raw.B().Zcard().Key(bullmqKey + "failed").Build(),
	} {
		if n[i], err = raw.Do(ctx, c).AsInt64(); err != nil {
			return nil, fmt.Errorf("bullmq queue check: %w", err)
		}
	}
	res.Extra["server_completed"] = float64(n[2])
	submitted := out.Issued - out.Failed
	if left := n[0] + n[1] + n[3] + max(0, submitted-n[2]); left > 0 {
		res.Extra["unclaimed"] = float64(left)
		res.Note = joinNote(res.Note, fmt.Sprintf("BullMQ left %d waiting, %d active, %d failed; %d completed of %d submitted",
			n[0], n[1], n[3], n[2], submitted))
	}
	return res, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
