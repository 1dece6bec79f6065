// Command ffengine runs the FlowFabric scanners as a daemon: crash recovery
// (lease expiry), delayed promotion, unblocking, attempt timeouts and
// deadlines, and retention. Run several for availability: they split the
// partitions between them through ownership leases in Valkey, and the
// survivors take over a dead engine's partitions within one ownership TTL.
//
//	ffengine --addr 127.0.0.1:6379
//
// It stops cleanly on SIGTERM or SIGINT (releasing its partitions) and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// EnvPassword supplies the Valkey password when --password is not given.
const EnvPassword = "FF_VALKEY_PASSWORD"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command line.
type options struct {
	addrs          []string
	cluster        bool
	partitions     int
	username       string
	password       string
	cfg            scanner.Config
	logLevel       slog.Level
	statusInterval time.Duration
	connectTimeout time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("ffengine", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: ffengine [flags]\n\nRuns the FlowFabric scanners against Valkey until SIGTERM or SIGINT.\n\nFlags:")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nEnvironment:\n  %s\tpassword, when --password is not given\n", EnvPassword)
	}
	addr := fs.String("addr", "127.0.0.1:6379", "Valkey seed `addresses`, comma-separated (host:port,...)")
	fs.BoolVar(&o.cluster, "cluster", false, "informational: cluster mode is detected from the server")
	fs.IntVar(&o.partitions, "partitions", 0, "partition count; 0 adopts the deployment's stored count (16 for a new one)")
	fs.StringVar(&o.username, "username", "", "Valkey ACL user name")
	fs.StringVar(&o.password, "password", "", "Valkey password (default $"+EnvPassword+")")
	c := &o.cfg
	fs.DurationVar(&c.LeaseExpiryInterval, "lease-expiry-interval", scanner.LeaseExpiryIntervalDefault, "how often expired leases are reclaimed")
	fs.DurationVar(&c.DelayedInterval, "delayed-interval", scanner.DelayedIntervalDefault, "how often due delayed executions are promoted")
	fs.DurationVar(&c.UnblockInterval, "unblock-interval", scanner.UnblockIntervalDefault, "how often blocked executions are matched with live workers")
	fs.DurationVar(&c.TimeoutInterval, "timeout-interval", scanner.TimeoutIntervalDefault, "how often attempt timeouts and deadlines are enforced")
	fs.DurationVar(&c.RetentionInterval, "retention-interval", scanner.RetentionIntervalDefault, "how often old terminal executions are trimmed")
	fs.IntVar(&c.BatchSize, "batch", scanner.BatchSizeDefault, "ids read and acted on per pipelined batch")
	fs.IntVar(&c.MaxBatches, "max-batches", scanner.MaxBatchesDefault, "batches per partition per cycle, at most")
	fs.IntVar(&c.MaxReclaims, "max-reclaims", scanner.MaxReclaimsDefault, "lost leases after which an execution fails terminally")
	fs.DurationVar(&c.Retention, "retention", scanner.RetentionDefault, "how long terminal executions are kept")
	fs.DurationVar(&c.OwnershipTTL, "ownership-ttl", scanner.OwnershipTTLDefault, "partition ownership lease; renewed every third of it")
	fs.StringVar(&c.EngineID, "engine-id", "", "this engine's name in ownership leases (default hostname-pid-random)")
	fs.DurationVar(&c.LaneRefresh, "lane-refresh", scanner.LaneRefreshDefault, "how long a cached lane-registry read is trusted without an invalidation (new lanes are seen at the next cycle regardless)")
	fs.IntVar(&c.Concurrency, "concurrency", scanner.ConcurrencyDefault, "partitions one scanner visits at once")
	fs.BoolVar(&c.DisablePeek, "no-peek", false, "read every index every cycle instead of peeking at cached index heads")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&o.statusInterval, "status-interval", 30*time.Second, "how often a status line is logged; 0 disables it")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 10*time.Second, "how long to wait for Valkey at start")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	for _, a := range strings.Split(*addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.addrs = append(o.addrs, a)
		}
	}
	if len(o.addrs) == 0 {
		return o, errors.New("--addr is empty")
	}
	if o.password == "" {
		o.password = os.Getenv(EnvPassword)
	}
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return o, fmt.Errorf("--log-level: %v", err)
	}
	if o.statusInterval < 0 {
		return o, errors.New("--status-interval is negative")
	}
	return o, nil
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ffengine:", err)
		return 2
	}
	if err := o.cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "ffengine:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	o.cfg.Logger = log
	if o.cfg.EngineID == "" {
		o.cfg.EngineID = scanner.DefaultEngineID()
	}

	cctx, cancel := context.WithTimeout(ctx, o.connectTimeout)
	b, err := valkeybackend.Connect(cctx, valkeybackend.Options{Addrs: o.addrs, Username: o.username,
		Password: o.password, Partitions: o.partitions})
	cancel()
	if err != nil {
		log.Error("cannot connect to Valkey", "addr", strings.Join(o.addrs, ","), "err", err)
		return 1
	}
	defer b.Close()
	if o.cluster && !b.IsCluster() {
		log.Warn("--cluster given but the server is not a cluster; running standalone")
	}
	sup, err := scanner.New(b, o.cfg)
	if err != nil {
		log.Error("cannot start the scanners", "err", err)
		return 2
	}
	log.Info("ffengine started", "engine", o.cfg.EngineID, "addr", strings.Join(o.addrs, ","),
		"cluster", b.IsCluster(), "partitions", b.Partitions(), "ownership_ttl", o.cfg.OwnershipTTL)

	if o.statusInterval > 0 {
		go statusLoop(ctx, log, sup, o.statusInterval)
	}
	_ = sup.Run(ctx) // returns once every loop exited and partitions were released
	log.Info("ffengine stopped", "engine", o.cfg.EngineID)
	return 0
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
