package valkeybackend_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/lua"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// prepareLockKey is Prepare's load lock (keys.go).
const prepareLockKey = "ff:prepare"

// libraryAt is the embedded library text rewritten to declare another
// version and minimum client, as a newer or older build would carry.
// legacy makes ff_version answer its version alone, as libraries before
// MIN_CLIENT did.
func libraryAt(t *testing.T, version, minClient int, legacy bool) string {
	t.Helper()
	src := regexp.MustCompile(`(?m)^local VERSION = '[^']+'`).ReplaceAllString(lua.Source(), fmt.Sprintf("local VERSION = '%d'", version))
	src = regexp.MustCompile(`(?m)^local MIN_CLIENT = '[^']+'`).ReplaceAllString(src, fmt.Sprintf("local MIN_CLIENT = '%d'", minClient))
	if legacy {
		const answer = "return ok(VERSION, MIN_CLIENT)"
		if !strings.Contains(src, answer) {
			t.Fatal("ff_version no longer answers " + answer)
		}
		src = strings.Replace(src, answer, "return ok(VERSION)", 1)
	}
	return src
}

// adminLoad loads src on the primaries among addrs as the default user,
// past every version rule (what an old build's Prepare would do).
func adminLoad(t *testing.T, addrs []string, src string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // also from a Cleanup
	defer cancel()
	err := valkeytest.EachPrimary(ctx, addrs, func(c valkey.Client) error {
		return c.Do(ctx, c.B().FunctionLoad().Replace().FunctionCode(src).Build()).Error()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// adminDelete removes the library from the primaries among addrs.
func adminDelete(t *testing.T, addrs []string) {
	t.Helper()
	if err := valkeytest.DeleteLibrary(t.Context(), addrs, lua.LibraryName); err != nil {
		t.Fatal(err)
	}
}

// prepareSetup returns the shared topology's addresses, flushed, with the
// embedded library loaded again when the test ends (so the next test finds
// it), and this build's client version and the oldest client it serves.
func prepareSetup(t *testing.T, name string) (addrs []string, version, minClient int) {
	t.Helper()
	i := slices.IndexFunc(topologies(), func(tp topology) bool { return tp.name == name })
	addrs = topologies()[i].addrs(t)
	flushAll(t, addrs)
	t.Cleanup(func() { adminLoad(t, addrs, lua.Source()) })
	v, err1 := strconv.Atoi(lua.Version)
	m, err2 := strconv.Atoi(lua.MinClientVersion)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	return addrs, v, m
}

// versions returns each primary's ff_version answer ("13/13", "-" when it
// holds no library), sorted.
func versions(t *testing.T, addrs []string) []string {
	t.Helper()
	var out []string
	err := valkeytest.EachPrimary(t.Context(), addrs, func(c valkey.Client) error {
		arr, err := c.Do(t.Context(), c.B().FcallRo().Function("ff_version").Numkeys(0).Build()).ToArray()
		if err != nil && strings.Contains(err.Error(), "Function not found") {
			out = append(out, "-")
			return nil
		}
		if err != nil || len(arr) < 3 {
			return fmt.Errorf("ff_version: %v %v", arr, err)
		}
		var fields []string
		for _, m := range arr[2:] {
			f, err := m.ToString()
			if err != nil {
				return err
			}
			fields = append(fields, f)
		}
		out = append(out, strings.Join(fields, "/"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func every(n int, s string) []string { return slices.Repeat([]string{s}, n) }

func vm(v, m int) string { return strconv.Itoa(v) + "/" + strconv.Itoa(m) }

// Two library versions: a newer client upgrades; the current client never
// downgrades a newer library, runs against it while it serves this
// version, and fails with a typed error naming both versions when it does
// not; an older library, or one from before MIN_CLIENT, is upgraded.
func TestPrepareVersions(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := t.Context()
			addrs, c, m := prepareSetup(t, topo.name)
			adminDelete(t, addrs)
			b := freshBackend(t, addrs, valkeybackend.Options{})
			n := len(addrs)
			cur := vm(c, m)
			if got := versions(t, addrs); !slices.Equal(got, every(n, cur)) {
				t.Fatalf("after Connect: %v, want %s on each of %d primaries", got, cur, n)
			}
			out, err := b.Prepare(ctx)
			if err != nil || out.Applied {
				t.Fatalf("second Prepare: %+v, %v; want nothing to do", out, err)
			}

			// A newer client that still serves this one upgrades.
			out, err = b.PrepareWithForTest(ctx, libraryAt(t, c+1, c, false))
			if err != nil || !out.Applied {
				t.Fatalf("newer client: %+v, %v; want an upgrade", out, err)
			}
			if got := versions(t, addrs); !slices.Equal(got, every(n, vm(c+1, c))) {
				t.Fatalf("after the newer client: %v", got)
			}
			// The current client runs against it and keeps it.
			out, err = b.Prepare(ctx)
			if err != nil || out.Applied || !strings.Contains(out.Detail, "serves this client") {
				t.Fatalf("current client against a newer compatible library: %+v, %v", out, err)
			}
			b2, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs})
			if err != nil {
				t.Fatalf("Connect against a newer compatible library: %v", err)
			}
			b2.Close()
			if got := versions(t, addrs); !slices.Equal(got, every(n, vm(c+1, c))) {
				t.Fatalf("downgraded: %v", got)
			}

			// A library that no longer serves this client: typed error, nothing replaced.
			if _, err := b.PrepareWithForTest(ctx, libraryAt(t, c+2, c+2, false)); err != nil {
				t.Fatal(err)
			}
			_, err = b.Prepare(ctx)
			wantIncompatible(t, err, c+2, c+2, c)
			_, err = valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs})
			wantIncompatible(t, err, c+2, c+2, c)
			if got := versions(t, addrs); !slices.Equal(got, every(n, vm(c+2, c+2))) {
				t.Fatalf("replaced: %v", got)
			}

			// An older library is upgraded.
			adminLoad(t, addrs, libraryAt(t, c-1, c-1, false))
			if out, err := b.Prepare(ctx); err != nil || !out.Applied {
				t.Fatalf("older library: %+v, %v; want an upgrade", out, err)
			}
			if got := versions(t, addrs); !slices.Equal(got, every(n, cur)) {
				t.Fatalf("after upgrading an older library: %v", got)
			}

			// Libraries from before MIN_CLIENT serve their own version only.
			adminLoad(t, addrs, libraryAt(t, c+1, c, true))
			_, err = b.Prepare(ctx)
			wantIncompatible(t, err, c+1, c+1, c)
			adminLoad(t, addrs, libraryAt(t, c-1, c-1, true))
			if out, err := b.Prepare(ctx); err != nil || !out.Applied {
				t.Fatalf("older legacy library: %+v, %v; want an upgrade", out, err)
			}
			if got := versions(t, addrs); !slices.Equal(got, every(n, cur)) {
				t.Fatalf("after upgrading a legacy library: %v", got)
			}
			raw := b.Client()
			if k, err := raw.Do(ctx, raw.B().Exists().Key(prepareLockKey).Build()).AsInt64(); err != nil || k != 0 {
				t.Fatalf("the load lock outlived Prepare (%d, %v)", k, err)
			}
		})
	}
}

func wantIncompatible(t *testing.T, err error, v, m, c int) {
	t.Helper()
	var se *sdk.Error
	want := []string{strconv.Itoa(v), strconv.Itoa(m), strconv.Itoa(c)}
	if !errors.Is(err, sdk.ErrLibraryIncompatible) || !errors.As(err, &se) || !slices.Equal(se.Detail, want) ||
		!strings.Contains(se.Msg, "v"+want[0]) || !strings.Contains(se.Msg, "v"+want[2]) || sdk.Retryable(err) {
		t.Fatalf("want a terminal library_incompatible %v, got %v", want, err)
	}
}

// On a cluster each primary is judged on its own, and a library that does
// not serve this client on one primary stops the loads on all of them.
func TestPrepareMixedPrimaries(t *testing.T) {
	addrs, c, m := prepareSetup(t, "cluster")
	b := freshBackend(t, addrs, valkeybackend.Options{SkipPrepare: true})
	first, cur := addrs[:1], vm(c, m)

	adminDelete(t, addrs)
	adminLoad(t, first, libraryAt(t, c+2, c+2, false))
	_, err := b.Prepare(t.Context())
	wantIncompatible(t, err, c+2, c+2, c)
	if got, want := versions(t, addrs), slices.Sorted(slices.Values([]string{"-", "-", vm(c+2, c+2)})); !slices.Equal(got, want) {
		t.Fatalf("%v, want %v: nothing loaded beside an incompatible library", got, want)
	}

	adminDelete(t, addrs)
	adminLoad(t, first, libraryAt(t, c+1, c, false))
	out, err := b.Prepare(t.Context())
	if err != nil || !out.Applied || !strings.Contains(out.Detail, "on 2 of 3 primaries") {
		t.Fatalf("%+v, %v; want loads on the 2 primaries without a library", out, err)
	}
	if got, want := versions(t, addrs), slices.Sorted(slices.Values([]string{cur, cur, vm(c+1, c)})); !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
}

// Clients of two versions preparing at once from an older library: the
// newer always ends loaded (the load lock, and the second look under it).
func TestPrepareConcurrentNeverDowngrades(t *testing.T) {
	ctx := t.Context()
	addrs, c, _ := prepareSetup(t, "standalone")
	older := freshBackend(t, addrs, valkeybackend.Options{})
	newer := freshBackend(t, addrs, valkeybackend.Options{SkipPrepare: true})
	newLib := libraryAt(t, c+1, c, false)
	for round := range 20 {
		adminLoad(t, addrs, libraryAt(t, c-1, c-1, false))
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Add(2)
		go func() { defer wg.Done(); _, errs[0] = older.Prepare(ctx) }()
		go func() { defer wg.Done(); _, errs[1] = newer.PrepareWithForTest(ctx, newLib) }()
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if got := versions(t, addrs); !slices.Equal(got, []string{vm(c+1, c)}) {
			t.Fatalf("round %d: %v loaded, want the newer library", round, got)
		}
	}
}

// An ACL denial is a typed permission error naming what was denied: a
// command, a key, a command a function calls; Prepare's own commands
// included.
func TestPermissionErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	addrs, _, _ := prepareSetup(t, "standalone")
	freshBackend(t, addrs, valkeybackend.Options{}) // fixes partitions and loads the library
	err := valkeytest.SetUser(ctx, addrs, "narrow", "reset", "on", ">pw", "~ff:*", "&ff:*", "+hget", "+fcall", "+fcall_ro",
		"+client|setinfo", "+client|tracking", "+client|caching", "+cluster|shards", "+set", "+del", "+get")
	if err != nil {
		t.Fatal(err)
	}
	// The library is current, so Prepare only reads: narrow connects.
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: addrs, Username: "narrow", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	raw := b.Client()

	cases := []struct {
		name   string
		err    error
		detail []string
		msg    string
	}{
		{"command", func() error { _, err := b.ListLanes(ctx, "", 10); return err }(),
			[]string{"smembers"}, "may not run 'smembers'"},
		{"key", valkeybackend.BackendErrorForTest("op", raw.Do(ctx, raw.B().Get().Key("other:x").Build()).Error()),
			[]string{"", "key"}, "may not access this key"},
		{"in a function", func() error {
			// ff_own runs GET, SET, then TIME, which narrow lacks.
			_, err := b.OwnPartition(ctx, "o", 0, time.Second, valkeybackend.OwnAcquire)
			return err
		}(), []string{"time"}, "may not run 'time', which a flowfabric function calls"},
	}
	for _, tc := range cases {
		var se *sdk.Error
		if !errors.Is(tc.err, sdk.ErrPermissionDenied) || !errors.As(tc.err, &se) || !slices.Equal(se.Detail, tc.detail) ||
			!strings.Contains(se.Msg, tc.msg) || sdk.Retryable(tc.err) {
			t.Errorf("%s: got %v; want a terminal permission_denied %v %q", tc.name, tc.err, tc.detail, tc.msg)
		}
	}

	// Prepare when a load is due: the lock is taken and given back, and
	// the error names FUNCTION LOAD.
	adminDelete(t, addrs)
	_, err = b.Prepare(ctx)
	var se *sdk.Error
	if !errors.As(err, &se) || se.Code != sdk.CodePermissionDenied || se.Detail[0] != "function|load" {
		t.Fatalf("Prepare without FUNCTION LOAD: %v", err)
	}
	if n, _ := raw.Do(ctx, raw.B().Exists().Key(prepareLockKey).Build()).AsInt64(); n != 0 {
		t.Fatal("a refused Prepare kept the load lock")
	}
}
