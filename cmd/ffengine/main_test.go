package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/lua"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

func TestHelpShowsDefaults(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out); code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, want := range []string{"-addr", "(default \"127.0.0.1:6379\")", "-lease-expiry-interval", "(default 1s)",
		"-delayed-interval", "(default 500ms)", "-unblock-interval", "(default 5s)", "-retention-interval", "(default 1m0s)",
		"-schedule-interval", "(default 250ms)", "-batch", "(default 100)", "-ownership-ttl", "(default 10s)", "-retention", "(default 24h0m0s)",
		"-engine-id", "-partitions", "-password", EnvPassword, "-log-level", "-cluster", "-username",
		"-skip-prepare", "-namespace", "ffengine prepare", "Exit codes", "3 permission denied", "4 incompatible library",
		"  --http address", "/metrics", "/readyz"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	// ffbench's style: every flag is listed as --name.
	if m := regexp.MustCompile(`(?m)^  -[a-z]`).FindString(out.String()); m != "" {
		t.Errorf("--help lists a flag with one dash: %q", m)
	}
	if t.Failed() {
		t.Log(out.String())
	}
}

func TestPrepareHelp(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"prepare", "--help"}, &out); code != 0 {
		t.Fatalf("prepare --help exited %d", code)
	}
	for _, want := range []string{"Usage: ffengine prepare", "v" + lua.Version, "-addr", "-username", "-password",
		"-partitions", "-connect-timeout", "Exit codes", "never replaced"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("prepare --help lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out.String())
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--log-level", "loud"}, {"--addr", " , "}, {"--nope"}, {"extra"},
		{"--batch", "-1"}, {"--ownership-ttl", "1ms"}, {"--status-interval", "-1s"}, {"--schedule-interval", "-1s"}, {"--http", "no-port"},
		{"prepare", "--nope"}, {"prepare", "extra"}, {"prepare", "--addr", ""}, {"prepare", "--skip-prepare"}} {
		var out bytes.Buffer
		if code := run(context.Background(), args, &out); code != 2 {
			t.Errorf("%v exited %d, want 2: %s", args, code, out.String())
		}
	}
}

func TestPasswordFromEnvironment(t *testing.T) {
	t.Setenv(EnvPassword, "s3cret")
	o, err := parseFlags(nil, io.Discard)
	if err != nil || o.Password != "s3cret" {
		t.Fatalf("password %q, %v", o.Password, err)
	}
	o, err = parseFlags([]string{"--password", "flag"}, io.Discard)
	if err != nil || o.Password != "flag" {
		t.Fatalf("password %q, %v", o.Password, err)
	}
}

var (
	buildOnce sync.Once
	engineBin string
	buildErr  error
)

// binary builds ffengine once per test binary.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ffengine")
		if err != nil {
			buildErr = err
			return
		}
		engineBin = filepath.Join(dir, "ffengine")
		if out, err := exec.Command("go", "build", "-o", engineBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return engineBin
}

// engineProc is a running ffengine whose log lines are watched.
type engineProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	lines  []logLine
	notify chan struct{}
}

type logLine struct {
	at   time.Time
	text string
}

func startEngine(t *testing.T, name, addr string, args ...string) *engineProc {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"--addr", addr, "--engine-id", name}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e := &engineProc{t: t, name: name, cmd: cmd, exited: make(chan struct{}), notify: make(chan struct{}, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			e.mu.Lock()
			e.lines = append(e.lines, logLine{time.Now(), sc.Text()})
			e.mu.Unlock()
			select {
			case e.notify <- struct{}{}:
			default:
			}
			if testing.Verbose() {
				t.Logf("%s: %s", name, sc.Text())
			}
		}
		_ = cmd.Wait()
		close(e.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-e.exited
	})
	return e
}

// waitLine waits for a log line matching re and returns its arrival time.
func (e *engineProc) waitLine(re *regexp.Regexp, timeout time.Duration) (time.Time, string) {
	e.t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		e.mu.Lock()
		lines := e.lines[seen:]
		seen = len(e.lines)
		e.mu.Unlock()
		for _, l := range lines {
			if re.MatchString(l.text) {
				return l.at, l.text
			}
		}
		select {
		case <-e.notify:
		case <-deadline:
			e.t.Fatalf("%s: no log line matching %q after %v", e.name, re, timeout)
		case <-e.exited:
			e.t.Fatalf("%s exited while waiting for %q", e.name, re)
		}
	}
}

func TestSIGTERMStopsCleanly(t *testing.T) {
	srv := valkeytest.NewServer(t)
	e := startEngine(t, "solo", srv.Addr(), "--ownership-ttl", "600ms", "--status-interval", "100ms")
	e.waitLine(regexp.MustCompile(`msg="acquired partitions".* owned=16 `), 10*time.Second)
	e.waitLine(regexp.MustCompile(`msg=status owned=16 partitions=16 engines=1 lease_expiry=`), 10*time.Second)
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("ffengine still running 5s after SIGTERM")
	}
	if code := e.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	e.waitLine(regexp.MustCompile(`msg="released all partitions" engine=solo released=16`), time.Second)
	e.waitLine(regexp.MustCompile(`msg="ffengine stopped"`), time.Second)
	b, err := valkeybackend.Connect(context.Background(), valkeybackend.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for p := range b.Partitions() {
		if ok, err := b.OwnPartition(context.Background(), "next", p, time.Second, valkeybackend.OwnAcquire); err != nil || !ok {
			t.Fatalf("partition %d still owned after a clean stop: %v %v", p, ok, err)
		}
	}
}

func TestConnectFailureExitsOne(t *testing.T) {
	var out bytes.Buffer
	code := run(context.Background(), []string{"--addr", "127.0.0.1:1", "--connect-timeout", "500ms"}, &out)
	if code != 1 || !strings.Contains(out.String(), "cannot connect") {
		t.Fatalf("exit %d: %s", code, out.String())
	}
}
