package sdk_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// quickstartMarker precedes the README's worker example, a complete program.
const quickstartMarker = "<!-- quickstart: built and run by TestReadmeQuickstart -->"

// TestReadmeQuickstart builds the README's worker example as a module of its own (as a
// user would, FlowFabric replaced by this checkout) and runs it against a real server: its
// first attempt fails, the scanners running alongside promote the retry, and the second
// attempt completes.
func TestReadmeQuickstart(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), quickstartMarker)
	if !ok {
		t.Fatalf("README.md has no %q", quickstartMarker)
	}
	_, rest, ok = strings.Cut(rest, "```go\n")
	if !ok {
		t.Fatal("no Go block after the quickstart marker")
	}
	src, _, ok := strings.Cut(rest, "```\n")
	if !ok {
		t.Fatal("the quickstart's Go block is not closed")
	}
	dir := t.TempDir()
	gomod := "module example.com/quickstart\n\ngo 1.26.0\n\nrequire github.com/flowfabric/flowfabric-go v0.0.0\n\n" +
		"replace github.com/flowfabric/flowfabric-go => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{"main.go": []byte(src), "go.mod": []byte(gomod), "go.sum": sum} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "quickstart")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the README's quickstart does not build: %v\n%s", err, out)
	}

	srv := valkeytest.NewServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, bin)
	run.Env = append(os.Environ(), "VALKEY_ADDR="+srv.Addr())
	var stdout, stderr bytes.Buffer
	run.Stdout, run.Stderr = &stdout, &stderr
	if err := run.Run(); err != nil {
		t.Fatalf("the quickstart failed: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	const want = "completed after 2 attempts: resized cat.png\n"
	if stdout.String() != want {
		t.Fatalf("the quickstart printed %q, want %q (stderr: %s)", stdout.String(), want, stderr.String())
	}
}
