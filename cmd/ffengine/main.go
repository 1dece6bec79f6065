// Command ffengine runs the FlowFabric scanners as a daemon: crash recovery
// (lease expiry), delayed promotion, unblocking, attempt timeouts and
// deadlines, retention, and schedules (each tick fired once). Run several for availability: they split the
// partitions between them through ownership leases in Valkey, and the
// survivors take over a dead engine's partitions within one ownership TTL.
//
//	ffengine --addr 127.0.0.1:6379
//
// --namespace runs the engine of one deployment among several sharing a
// server: it scans that namespace's keys alone (default "ff").
//
// At start it runs Prepare: it loads the Functions library where a primary
// holds none or an older one, never replaces a newer one, and runs against a
// newer one that still serves this build. Under an ACL user that may not
// load functions, load the library first with
//
//	ffengine prepare --addr 127.0.0.1:6379 --username ff-deploy
//
// which loads or upgrades the library and exits; --skip-prepare makes the
// daemon skip Prepare altogether.
//
// With --http ADDR it serves /metrics (Prometheus text: per-lane gauges,
// the scanners' actions), /healthz (up) and /readyz (503 while Valkey does
// not answer) on ADDR; off by default.
//
// It stops cleanly on SIGTERM or SIGINT (releasing its partitions) and exits 0.
//
// Exit codes, of the daemon and of prepare:
//
//	0  stopped cleanly; prepare: the library is loaded (or a newer one that
//	   serves this build is)
//	1  cannot connect, or another failure
//	2  bad flags or configuration
//	3  permission denied: the Valkey ACL user may not run a command it needs
//	   (the log names it)
//	4  incompatible library: a newer library is loaded that does not serve
//	   this build (it is never downgraded)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/flowfabric/flowfabric-go/internal/cliconn"
	"github.com/flowfabric/flowfabric-go/lua"
	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// EnvPassword supplies the Valkey password when --password is not given.
const EnvPassword = cliconn.EnvPassword

// Exit codes (see the package documentation).
const (
	exitOK           = 0
	exitFailure      = 1
	exitUsage        = 2
	exitPermission   = 3
	exitIncompatible = 4
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// conn is the command line's connection part, shared by the daemon and
// prepare.
type conn struct {
	*cliconn.Flags
	logLevel slog.Level
}

// options are the parsed command line of the daemon.
type options struct {
	conn
	skipPrepare    bool
	cfg            scanner.Config
	statusInterval time.Duration
	httpAddr       string
}

// connFlags declares the connection flags on fs; finish parses what they
// hold once fs has parsed.
func connFlags(fs *flag.FlagSet, c *conn) (finish func() error) {
	c.Flags = cliconn.Register(fs)
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	return func() error {
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected arguments: %v", fs.Args())
		}
		if err := c.Finish(); err != nil {
			return err
		}
		if err := c.logLevel.UnmarshalText([]byte(*level)); err != nil {
			return fmt.Errorf("--log-level: %v", err)
		}
		return nil
	}
}

// newFlagSet is a flag set whose usage prints head, the flags and the
// shared footer.
func newFlagSet(name string, stderr io.Writer, head string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), head)
		cliconn.PrintFlags(fs.Output(), fs)
		usageFooter(fs.Output())
	}
	return fs
}

func usageFooter(w io.Writer) {
	fmt.Fprint(w, "\n"+cliconn.Help())
	fmt.Fprintf(w, "\nExit codes:\n  0 ok, 1 failure (cannot connect, ...), 2 bad flags,\n"+
		"  3 permission denied (the Valkey ACL user may not run a command; the log names it),\n"+
		"  4 incompatible library (a newer one that does not serve this build is loaded)\n")
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := newFlagSet("ffengine", stderr, "Usage: ffengine [flags]\n       ffengine prepare [flags]\n\n"+
		"Runs the FlowFabric scanners against Valkey until SIGTERM or SIGINT.\n"+
		"`ffengine prepare` loads or upgrades the Functions library and exits (--help lists its flags).\n\nFlags:\n")
	finish := connFlags(fs, &o.conn)
	fs.BoolVar(&o.skipPrepare, "skip-prepare", false, "do not check or load the Functions library at start (load it with `ffengine prepare`)")
	c := &o.cfg
	fs.DurationVar(&c.LeaseExpiryInterval, "lease-expiry-interval", scanner.LeaseExpiryIntervalDefault, "how often expired leases are reclaimed")
	fs.DurationVar(&c.DelayedInterval, "delayed-interval", scanner.DelayedIntervalDefault, "how often due delayed executions are promoted")
	fs.DurationVar(&c.UnblockInterval, "unblock-interval", scanner.UnblockIntervalDefault, "how often blocked executions are matched with live workers")
	fs.DurationVar(&c.TimeoutInterval, "timeout-interval", scanner.TimeoutIntervalDefault, "how often attempt timeouts and deadlines are enforced")
	fs.DurationVar(&c.RetentionInterval, "retention-interval", scanner.RetentionIntervalDefault, "how often old terminal executions are trimmed")
	fs.DurationVar(&c.ScheduleInterval, "schedule-interval", scanner.ScheduleIntervalDefault, "how often due schedule ticks are fired")
	fs.IntVar(&c.BatchSize, "batch", scanner.BatchSizeDefault, "ids read and acted on per pipelined batch")
	fs.IntVar(&c.MaxBatches, "max-batches", scanner.MaxBatchesDefault, "batches per partition per cycle, at most")
	fs.IntVar(&c.MaxReclaims, "max-reclaims", scanner.MaxReclaimsDefault, "lost leases after which an execution fails terminally")
	fs.DurationVar(&c.Retention, "retention", scanner.RetentionDefault, "how long terminal executions are kept")
	fs.DurationVar(&c.OwnershipTTL, "ownership-ttl", scanner.OwnershipTTLDefault, "partition ownership lease; renewed every third of it")
	fs.StringVar(&c.EngineID, "engine-id", "", "this engine's name in ownership leases (default hostname-pid-random)")
	fs.DurationVar(&c.LaneRefresh, "lane-refresh", scanner.LaneRefreshDefault, "how long a cached lane-registry read is trusted without an invalidation (new lanes are seen at the next cycle regardless)")
	fs.IntVar(&c.Concurrency, "concurrency", scanner.ConcurrencyDefault, "partitions one scanner visits at once")
	fs.BoolVar(&c.DisablePeek, "no-peek", false, "read every index every cycle instead of peeking at cached index heads")
	fs.DurationVar(&o.statusInterval, "status-interval", 30*time.Second, "how often a status line is logged; 0 disables it")
	fs.StringVar(&o.httpAddr, "http", "", "serve /metrics (Prometheus), /healthz and /readyz on this `address` (host:port);\nempty: no HTTP server")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := finish(); err != nil {
		return o, err
	}
	if o.statusInterval < 0 {
		return o, errors.New("--status-interval is negative")
	}
	if o.httpAddr != "" {
		if _, _, err := net.SplitHostPort(o.httpAddr); err != nil {
			return o, fmt.Errorf("--http: %v", err)
		}
	}
	return o, nil
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "prepare" {
		return runPrepare(ctx, args[1:], stderr)
	}
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "ffengine:", err)
		return exitUsage
	}
	if err := o.cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "ffengine:", err)
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	o.cfg.Logger = log
	if o.cfg.EngineID == "" {
		o.cfg.EngineID = scanner.DefaultEngineID()
	}

	b, code := connect(ctx, log, o.conn, valkeybackend.Options{SkipPrepare: o.skipPrepare})
	if b == nil {
		return code
	}
	defer b.Close()
	if w := o.CheckCluster(b); w != "" {
		log.Warn(w)
	}
	sup, err := scanner.New(b, o.cfg)
	if err != nil {
		log.Error("cannot start the scanners", "err", err)
		return exitUsage
	}
	log.Info("ffengine started", "engine", o.cfg.EngineID, "addr", strings.Join(o.Addrs, ","), "namespace", b.Namespace(),
		"cluster", b.IsCluster(), "partitions", b.Partitions(), "ownership_ttl", o.cfg.OwnershipTTL)

	if o.statusInterval > 0 {
		go statusLoop(ctx, log, sup, o.statusInterval)
	}
	httpDone := make(chan struct{})
	if o.httpAddr != "" {
		ln, err := net.Listen("tcp", o.httpAddr)
		if err != nil {
			log.Error("cannot listen for --http", "addr", o.httpAddr, "err", err)
			return exitUsage
		}
		go func() {
			defer close(httpDone)
			if err := serveHTTP(ctx, ln, log, b, sup, o.cfg.EngineID); err != nil {
				log.Error("http endpoints failed", "err", err)
			}
		}()
	} else {
		close(httpDone)
	}
	_ = sup.Run(ctx) // returns once every loop exited and partitions were released
	<-httpDone
	log.Info("ffengine stopped", "engine", o.cfg.EngineID)
	return exitOK
}

// connect dials Valkey with c (and opts' other fields) and returns the
// backend, or nil and the exit code.
func connect(ctx context.Context, log *slog.Logger, c conn, opts valkeybackend.Options) (*valkeybackend.Backend, int) {
	b, err := c.Connect(ctx, opts)
	if err != nil {
		return nil, failed(log, c, "cannot connect to Valkey", err)
	}
	return b, exitOK
}

// failed logs err and returns its exit code.
func failed(log *slog.Logger, c conn, msg string, err error) int {
	code := exitFailure
	switch {
	case errors.Is(err, sdk.ErrPermissionDenied):
		code, msg = exitPermission, "permission denied: the Valkey ACL user may not run a command ffengine needs"
	case errors.Is(err, sdk.ErrLibraryIncompatible):
		code, msg = exitIncompatible, "the loaded flowfabric library does not serve this build"
	}
	log.Error(msg, "addr", strings.Join(c.Addrs, ","), "user", c.Username, "err", err)
	return code
}

// runPrepare is `ffengine prepare`: it connects without the client-side
// cache or subscriptions (so a deployer user needs no more than loading
// takes), runs Prepare and exits.
func runPrepare(ctx context.Context, args []string, stderr io.Writer) int {
	var c conn
	fs := newFlagSet("ffengine prepare", stderr, fmt.Sprintf("Usage: ffengine prepare [flags]\n\n"+
		"Loads the flowfabric Functions library (v%s, serving clients from v%s) on every primary that\n"+
		"holds none or an older one, fixes the partition count of a new deployment, and exits.\n"+
		"A newer library is never replaced. Idempotent.\n\nFlags:\n", lua.Version, lua.MinClientVersion))
	finish := connFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(stderr, "ffengine prepare:", err)
		return exitUsage
	}
	if err := finish(); err != nil {
		fmt.Fprintln(stderr, "ffengine prepare:", err)
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.logLevel}))
	b, code := connect(ctx, log, c, valkeybackend.Options{SkipPrepare: true, CacheSizeEachConn: -1, DisableArrivals: true})
	if b == nil {
		return code
	}
	defer b.Close()
	pctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
	defer cancel()
	out, err := b.Prepare(pctx)
	if err != nil {
		return failed(log, c, "cannot load the flowfabric library", err)
	}
	log.Info("flowfabric library ready", "namespace", b.Namespace(), "applied", out.Applied, "detail", out.Detail,
		"cluster", b.IsCluster(), "partitions", b.Partitions())
	return exitOK
}

// statusLoop logs one line per interval: ownership and what each scanner did
// since the previous line.
func statusLoop(ctx context.Context, log *slog.Logger, sup *scanner.Supervisor, every time.Duration) {
	prev := map[string]map[string]uint64{}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := sup.Stats()
		attrs := []any{"owned", st.OwnedPartitions, "partitions", st.Partitions, "engines", st.LiveEngines}
		for _, sc := range st.Scanners {
			delta := map[string]uint64{}
			for k, v := range sc.Acted {
				if d := v - prev[sc.Name][k]; d > 0 {
					delta[k] = d
				}
			}
			prev[sc.Name] = sc.Acted
			attrs = append(attrs, sc.Name, summary(delta, sc))
		}
		log.Info("status", attrs...)
	}
}

// summary renders a scanner's actions since the last status line, with its
// error count and last cycle time.
func summary(delta map[string]uint64, sc scanner.ScannerStats) string {
	keys := make([]string, 0, len(delta))
	for k := range delta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, delta[k])
	}
	fmt.Fprintf(&b, "errors=%d cycle=%v", sc.Errors, sc.LastCycle.Round(time.Microsecond))
	return b.String()
}
