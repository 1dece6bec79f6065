// Command ffctl is the operator's command line: it lists, describes and
// acts on executions, lanes, suspensions, streams, flows and schedules of a
// FlowFabric deployment, through the sdk API on the Valkey backend.
//
//	ffctl executions list --lane emails --state failed
//	ffctl executions describe '{p:3}:0193...'
//	ffctl lanes
//	ffctl lanes pause emails
//
// Tables by default; -o json prints JSON for scripts (stream tail: one
// object per line). ffctl help lists every command. ffctl never loads or
// upgrades the Functions library (ffengine prepare does).
//
// Exit codes:
//
//	0  ok
//	1  failure: cannot connect, a transport error, anything else
//	2  usage: bad flags, arguments or input (nothing was written)
//	3  not found: the execution, flow, waitpoint or schedule does not exist
//	4  refused: the entity's state forbids the action (e.g. cancelling
//	   an execution that ended); nothing was written
//	5  permission denied: the Valkey ACL user may not run a command ffctl
//	   needs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/flowfabric/flowfabric-go/internal/cliconn"
	"github.com/flowfabric/flowfabric-go/lua"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// Exit codes (see the package documentation).
const (
	exitOK         = 0
	exitFailure    = 1
	exitUsage      = 2
	exitNotFound   = 3
	exitRefused    = 4
	exitPermission = 5
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one ffctl command: its words, its help and what it does.
type command struct {
	path  string // "executions list"
	args  string // positional arguments, for the usage line
	short string
	// flags declares the command's own flags; check validates what it
	// parsed, before any connection (a failure is a usage error).
	flags func(fs *flag.FlagSet, e *env)
	run   func(ctx context.Context, e *env) error
}

// usageError is bad input found before anything was sent.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// env is what a command runs with: its parsed flags, positional
// arguments, output and (once connected) the backend.
type env struct {
	conn   *cliconn.Flags
	output string
	pos    []string
	stdout io.Writer
	stderr io.Writer
	b      *valkeybackend.Backend
	client *sdk.Client
	roles  sdk.BackendRoles
	// set by each command's flags
	lane, state, cursor, reason, after string
	token, name, payload, payloadFile  string
	source, dedupKey                   string
	limit, attempt, maxReplays         int
	ended, noFollow                    bool
}

func (e *env) json() bool { return e.output == "json" }

var commands []*command

func init() {
	commands = []*command{
		{path: "executions list", short: "list executions by lane and state, a page at a time",
			flags: pageFlags(true, true), run: runList},
		{path: "executions describe", args: "ID", short: "an execution's record and every attempt: outcome, lease, worker",
			run: runDescribe},
		{path: "executions cancel", args: "ID", short: "cancel an execution that has not ended",
			flags: reasonFlag, run: runCancel},
		{path: "executions replay", args: "ID", short: "run an ended execution again",
			flags: func(fs *flag.FlagSet, e *env) {
				fs.IntVar(&e.maxReplays, "max-replays", 10, "refuse when the execution was replayed this many times")
			}, run: runReplay},
		{path: "executions priority", args: "ID N", short: fmt.Sprintf("change a waiting execution's priority (%d..%d)", sdk.MinPriority, sdk.MaxPriority),
			run: runPriority},
		{path: "executions revoke", args: "ID", short: "take the lease from an active execution's worker",
			flags: reasonFlag, run: runRevoke},
		{path: "dead-letters", short: "failed executions: retries ran out (executions list --state failed)",
			flags: pageFlags(true, false), run: runDeadLetters},
		{path: "lanes", short: "every lane with its depth per state and whether it is paused",
			flags: func(fs *flag.FlagSet, e *env) {
				fs.StringVar(&e.lane, "lane", "", "show this lane only")
				fs.BoolVar(&e.ended, "ended", false, "split ended executions by state (reads each one's record)")
			}, run: runLanes},
		{path: "lanes pause", args: "LANE", short: "stop claims and hand-offs of a lane's work (running work finishes)",
			run: func(ctx context.Context, e *env) error { return runPause(ctx, e, true) }},
		{path: "lanes resume", args: "LANE", short: "make a paused lane's work claimable again",
			run: func(ctx context.Context, e *env) error { return runPause(ctx, e, false) }},
		{path: "suspended", short: "suspended executions with their waitpoints and timeouts",
			flags: pageFlags(true, false), run: runSuspended},
		{path: "waitpoints", short: "pending waitpoints (created before their suspend)",
			flags: pageFlags(true, false), run: runWaitpoints},
		{path: "signal", short: "deliver a signal to a waitpoint, by its token",
			flags: signalFlags, run: runSignal},
		{path: "stream tail", args: "ID", short: "print an attempt's stream frames, following until the attempt ends",
			flags: func(fs *flag.FlagSet, e *env) {
				fs.IntVar(&e.attempt, "attempt", -1, "attempt index (default: the current attempt)")
				fs.StringVar(&e.after, "after", "", "start after this frame `cursor` (default: the first frame)")
				fs.BoolVar(&e.noFollow, "no-follow", false, "print the frames there are and exit")
			}, run: runTail},
		{path: "flows describe", args: "FLOWID", short: "a flow, its members' states and its edges",
			run: runFlow},
		{path: "schedules", short: "every schedule: when it ticks, its lane and kind, next and last tick, counts",
			flags: func(fs *flag.FlagSet, e *env) {
				fs.IntVar(&e.limit, "limit", 100, "page size, 1..1000")
				fs.StringVar(&e.after, "after", "", "resume after this schedule `id` (a previous page's next)")
			}, run: runSchedules},
		{path: "schedules describe", args: "ID", short: "a schedule's definition and state",
			run: runScheduleDescribe},
		{path: "schedules pause", args: "ID", short: "stop a schedule's ticks until it is resumed",
			run: runScheduleAction("pause")},
		{path: "schedules resume", args: "ID", short: "resume a schedule at its next tick after now (paused ticks never fire)",
			run: runScheduleAction("resume")},
		{path: "schedules delete", args: "ID", short: "delete a schedule (the executions it created stay)",
			run: runScheduleAction("delete")},
	}
}

func pageFlags(lane, state bool) func(fs *flag.FlagSet, e *env) {
	return func(fs *flag.FlagSet, e *env) {
		if lane {
			fs.StringVar(&e.lane, "lane", "", "this lane only (default: every lane)")
		}
		if state {
			fs.StringVar(&e.state, "state", "", "this state only: "+statesList())
		}
		fs.IntVar(&e.limit, "limit", valkeybackend.ListLaneDefault, fmt.Sprintf("page size, 1..%d", valkeybackend.ListLaneMax))
		fs.StringVar(&e.cursor, "cursor", "", "resume after the `id` a previous page printed as its next cursor")
	}
}

func reasonFlag(fs *flag.FlagSet, e *env) {
	fs.StringVar(&e.reason, "reason", "", "recorded on the execution")
}

func signalFlags(fs *flag.FlagSet, e *env) {
	fs.StringVar(&e.token, "token", "", "the waitpoint's token (required)")
	fs.StringVar(&e.name, "name", "", "signal name, matched against the suspension's condition (required)")
	fs.StringVar(&e.payload, "payload", "", "signal payload")
	fs.StringVar(&e.payloadFile, "payload-file", "", "read the payload from this `file` ('-': stdin)")
	fs.StringVar(&e.source, "source", "ffctl", "sender, recorded with the signal")
	fs.StringVar(&e.dedupKey, "dedup-key", "", "a repeated delivery with this key is recognised, not applied twice")
}

func statesList() string {
	var s []string
	for _, st := range valkeybackend.PublicStates() {
		s = append(s, string(st))
	}
	return strings.Join(s, ", ")
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	args = commandFirst(args)
	var words []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		words, args = append(words, args[0]), args[1:]
	}
	if len(words) == 0 || words[0] == "help" {
		if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
			fmt.Fprintln(stdout, versionLine())
			return exitOK
		}
		topUsage(stdout)
		if len(words) == 0 && len(args) > 0 && args[0] != "-h" && args[0] != "--help" && args[0] != "-help" {
			fmt.Fprintf(stderr, "ffctl: unknown flag %s before a command\n", args[0])
			return exitUsage
		}
		if len(words) == 0 && len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if words[0] == "version" {
		fmt.Fprintln(stdout, versionLine())
		return exitOK
	}
	cmd, pos := find(words)
	if cmd == nil {
		fmt.Fprintf(stderr, "ffctl: unknown command %q (ffctl help lists them)\n", strings.Join(words, " "))
		return exitUsage
	}
	e := &env{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("ffctl "+cmd.path, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { commandUsage(fs, cmd) }
	e.conn = cliconn.Register(fs)
	fs.StringVar(&e.output, "o", "table", "output: table or json")
	fs.StringVar(&e.output, "output", "table", "output: table or json")
	version := fs.Bool("version", false, "print the version and exit")
	if cmd.flags != nil {
		cmd.flags(fs, e)
	}
	rest, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage // the flag package printed why
	}
	if *version {
		fmt.Fprintln(stdout, versionLine())
		return exitOK
	}
	e.pos = append(pos, rest...)
	if err := e.conn.Finish(); err != nil {
		fmt.Fprintln(stderr, "ffctl:", err)
		return exitUsage
	}
	if e.output != "table" && e.output != "json" {
		fmt.Fprintf(stderr, "ffctl: -o %q: want table or json\n", e.output)
		return exitUsage
	}
	err = cmd.run(ctx, e)
	e.close()
	if err != nil {
		return report(stderr, err)
	}
	return exitOK
}

// connect dials the deployment for a command whose input checked out. It
// runs no Prepare (ffctl never loads the library) and asks for nothing a
// one-shot command does not use: no client-side cache, no subscriptions.
// run closes the backend once the command returns.
func (e *env) connect(ctx context.Context) error {
	b, err := e.conn.Connect(ctx, valkeybackend.Options{SkipPrepare: true, CacheSizeEachConn: -1,
		DisableArrivals: true, DisableHandoff: true})
	if err != nil {
		return fmt.Errorf("cannot connect to Valkey at %s: %w", strings.Join(e.conn.Addrs, ","), err)
	}
	if w := e.conn.CheckCluster(b); w != "" {
		fmt.Fprintln(e.stderr, "ffctl: warning:", w)
	}
	e.b, e.client, e.roles = b, sdk.NewClient(b), sdk.RolesOf(b)
	return nil
}

func (e *env) close() {
	if e.b != nil {
		e.b.Close()
	}
}

// commandFirst moves the command to the front when flags come before it
// (`ffctl --addr h:p lanes` is `ffctl lanes --addr h:p`): the command
// starts at the first argument that is a command's first word.
func commandFirst(args []string) []string {
	if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		return args
	}
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, c := range commands {
			if first, _, _ := strings.Cut(c.path, " "); a == first || a == "version" || a == "help" {
				return append(slices.Clone(args[i:]), args[:i]...)
			}
		}
	}
	return args
}

// find returns the longest command matching the leading words, and the
// words left over (positional arguments).
func find(words []string) (*command, []string) {
	for n := min(len(words), 2); n > 0; n-- {
		p := strings.Join(words[:n], " ")
		for _, c := range commands {
			if c.path == p {
				return c, words[n:]
			}
		}
	}
	return nil, nil
}

// parseInterleaved parses flags that come before, between or after the
// positional arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" { // the flag package stops after it; the rest are positional
			return append(pos, args[1:]...), nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

// report prints err and returns its exit code.
func report(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "ffctl:", err)
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	switch sdk.KindOf(err) {
	case sdk.KindValidation:
		return exitUsage
	case sdk.KindNotFound:
		return exitNotFound
	case sdk.KindState, sdk.KindConflict, sdk.KindContention:
		return exitRefused
	}
	if errors.Is(err, sdk.ErrPermissionDenied) {
		return exitPermission
	}
	return exitFailure
}

func versionLine() string {
	return "ffctl (flowfabric library v" + lua.Version + ", serves libraries from v" + lua.MinClientVersion + ")"
}

const exitCodesHelp = `Exit codes:
  0 ok
  1 failure (cannot connect, transport error, anything else)
  2 usage: bad flags, arguments or input; nothing was written
  3 not found: the execution, flow, waitpoint or schedule does not exist
  4 refused: its state forbids the action (e.g. cancel of an ended execution); nothing was written
  5 permission denied: the Valkey ACL user may not run a command ffctl needs
`

func topUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: ffctl COMMAND [ARGS] [FLAGS]  (flags may come first too)\n\n"+
		"Operates a FlowFabric deployment: lists, describes and acts on executions, lanes,\n"+
		"suspensions, streams, flows and schedules. Tables by default, -o json for scripts.\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-32s %s\n", strings.TrimSpace(c.path+" "+c.args), c.short)
	}
	fmt.Fprint(w, "  version                          print the version\n")
	fmt.Fprint(w, "\n`ffctl COMMAND --help` lists a command's flags, the connection flags among them\n"+
		"(--addr, --username, --password, --tls*, ...).\n\n"+cliconn.Help()+"\n"+exitCodesHelp)
}

func commandUsage(fs *flag.FlagSet, c *command) {
	w := fs.Output()
	fmt.Fprintf(w, "Usage: ffctl %s [FLAGS]\n\n%s.\n\nFlags:\n", strings.TrimSpace(c.path+" "+c.args), c.short)
	cliconn.PrintFlags(w, fs)
	fmt.Fprint(w, "\n"+cliconn.Help()+"\n"+exitCodesHelp)
}
