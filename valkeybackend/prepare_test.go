package valkeybackend

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
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// libraryAt is the embedded library rewritten to declare another version
// and minimum client, as a newer or older build would carry. legacy makes
// ff_version answer its version alone, as libraries before MIN_CLIENT did.
func libraryAt(t *testing.T, version, minClient int, legacy bool) library {
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
	lib, err := parseLibrary(src)
	if err != nil {
		t.Fatal(err)
	}
	return lib
}

// current is the version this build's clients have.
func current(t *testing.T) int {
	lib, err := embeddedLibrary()
	if err != nil {
		t.Fatal(err)
	}
	return lib.version
}

// adminLoad loads src on the primaries among addrs as the default user,
// past every version rule (what an old build's Prepare would do).
func adminLoad(t *testing.T, addrs []string, src string) {
	t.Helper()
	err := valkeytest.EachPrimary(t.Context(), addrs, func(c valkey.Client) error {
		return c.Do(t.Context(), c.B().FunctionLoad().Replace().FunctionCode(src).Build()).Error()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// adminDelete removes the library from the primaries among addrs.
func adminDelete(t *testing.T, addrs []string) {
	t.Helper()
	err := valkeytest.EachPrimary(t.Context(), addrs, func(c valkey.Client) error {
		err := c.Do(t.Context(), c.B().FunctionDelete().LibraryName(lua.LibraryName).Build()).Error()
		if err != nil && strings.Contains(err.Error(), "Library not found") {
			return nil
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// versions returns each primary's ff_version answer ("13/13", "-" when it
// holds no library), in address order.
func versions(t *testing.T, b *Backend) []string {
	t.Helper()
	primaries, err := b.primaries(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range primaries {
		r, err := decode("test", h.node.Do(t.Context(), h.node.B().FcallRo().Function("ff_version").Numkeys(0).Build()))
		switch {
		case sdk.CodeOf(err) == sdk.CodeUnavailable:
			out = append(out, "-")
		case err != nil:
			t.Fatal(err)
		default:
			out = append(out, strings.Join(r.fields, "/"))
		}
	}
	return out
}

func every(n int, s string) []string { return slices.Repeat([]string{s}, n) }

func vm(v, m int) string { return strconv.Itoa(v) + "/" + strconv.Itoa(m) }

type prepTopology struct {
	name  string
	addrs func(t *testing.T) []string
}

func prepTopologies() []prepTopology {
	return []prepTopology{
		{"standalone", func(t *testing.T) []string { return []string{valkeytest.NewServer(t).Addr()} }},
		{"cluster", func(t *testing.T) []string { return valkeytest.NewCluster(t).Addrs() }},
	}
}

func connectTest(t *testing.T, addrs []string, opts Options) *Backend {
	t.Helper()
	opts.Addrs = addrs
	b, err := Connect(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// Two library versions: a newer client upgrades; the current client never
// downgrades a newer library, runs against it while it serves this
// version, and fails with a typed error naming both versions when it does
// not; an older library, or one from before MIN_CLIENT, is upgraded.
func TestPrepareVersions(t *testing.T) {
	for _, topo := range prepTopologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := t.Context()
			addrs := topo.addrs(t)
			if err := valkeytest.FlushAll(ctx, addrs); err != nil {
				t.Fatal(err)
			}
			adminDelete(t, addrs)
			c := current(t)
			b := connectTest(t, addrs, Options{Partitions: 4})
			n := len(versions(t, b))
			if n != len(addrs) {
				t.Fatalf("%d primaries found, want %d", n, len(addrs))
			}
			cur := vm(c, lib(t).minClient)
			if got := versions(t, b); !slices.Equal(got, every(n, cur)) {
				t.Fatalf("after Connect: %v, want %s everywhere", got, cur)
			}
			out, err := b.Prepare(ctx)
			if err != nil || out.Applied {
				t.Fatalf("second Prepare: %+v, %v; want nothing to do", out, err)
			}

			// A newer client that still serves this one upgrades.
			out, err = b.prepare(ctx, libraryAt(t, c+1, c, false))
			if err != nil || !out.Applied {
				t.Fatalf("newer client: %+v, %v; want an upgrade", out, err)
			}
			if got := versions(t, b); !slices.Equal(got, every(n, vm(c+1, c))) {
				t.Fatalf("after the newer client: %v", got)
			}
			// The current client runs against it and keeps it.
			out, err = b.Prepare(ctx)
			if err != nil || out.Applied || !strings.Contains(out.Detail, "serves this client") {
				t.Fatalf("current client against a newer compatible library: %+v, %v", out, err)
			}
			if _, err := Connect(ctx, Options{Addrs: addrs}); err != nil {
				t.Fatalf("Connect against a newer compatible library: %v", err)
			}
			if got := versions(t, b); !slices.Equal(got, every(n, vm(c+1, c))) {
				t.Fatalf("downgraded: %v", got)
			}

			// A library that no longer serves this client: typed error, nothing replaced.
			if _, err := b.prepare(ctx, libraryAt(t, c+2, c+2, false)); err != nil {
				t.Fatal(err)
			}
			_, err = b.Prepare(ctx)
			wantIncompatible(t, err, c+2, c+2, c)
			_, err = Connect(ctx, Options{Addrs: addrs})
			wantIncompatible(t, err, c+2, c+2, c)
			if got := versions(t, b); !slices.Equal(got, every(n, vm(c+2, c+2))) {
				t.Fatalf("replaced: %v", got)
			}

			// An older library is upgraded.
			adminLoad(t, addrs, libraryAt(t, c-1, c-1, false).source)
			if out, err := b.Prepare(ctx); err != nil || !out.Applied {
				t.Fatalf("older library: %+v, %v; want an upgrade", out, err)
			}
			if got := versions(t, b); !slices.Equal(got, every(n, cur)) {
				t.Fatalf("after upgrading an older library: %v", got)
			}

			// Libraries from before MIN_CLIENT serve their own version only.
			adminLoad(t, addrs, libraryAt(t, c+1, c, true).source)
			_, err = b.Prepare(ctx)
			wantIncompatible(t, err, c+1, c+1, c)
			adminLoad(t, addrs, libraryAt(t, c-1, c-1, true).source)
			if out, err := b.Prepare(ctx); err != nil || !out.Applied {
				t.Fatalf("older legacy library: %+v, %v; want an upgrade", out, err)
			}
			if got := versions(t, b); !slices.Equal(got, every(n, cur)) {
				t.Fatalf("after upgrading a legacy library: %v", got)
			}
			if n, err := b.client.Do(ctx, b.client.B().Exists().Key(prepareLockKey).Build()).AsInt64(); err != nil || n != 0 {
				t.Fatalf("the load lock outlived Prepare (%d, %v)", n, err)
			}
		})
	}
}

func lib(t *testing.T) library {
	l, err := embeddedLibrary()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func wantIncompatible(t *testing.T, err error, v, m, c int) {
	t.Helper()
	var se *sdk.Error
	want := []string{strconv.Itoa(v), strconv.Itoa(m), strconv.Itoa(c)}
	if !errors.Is(err, sdk.ErrLibraryIncompatible) || !errors.As(err, &se) || !slices.Equal(se.Detail, want) ||
		!strings.Contains(se.Msg, "v"+want[0]) || !strings.Contains(se.Msg, "v"+want[2]) {
		t.Fatalf("want library_incompatible %v, got %v", want, err)
	}
}

// On a cluster each primary is judged on its own, and a library that does
// not serve this client on one primary stops the loads on all of them.
func TestPrepareMixedPrimaries(t *testing.T) {
	ctx := t.Context()
	cl := valkeytest.NewCluster(t)
	addrs := cl.Addrs()
	if err := valkeytest.FlushAll(ctx, addrs); err != nil {
		t.Fatal(err)
	}
	c := current(t)
	b := connectTest(t, addrs, Options{Partitions: 4, SkipPrepare: true})
	first := cl.Addrs()[:1]
	cur := vm(c, lib(t).minClient)

	adminDelete(t, addrs)
	adminLoad(t, first, libraryAt(t, c+2, c+2, false).source)
	_, err := b.Prepare(ctx)
	wantIncompatible(t, err, c+2, c+2, c)
	if got := versions(t, b); slices.Index(got, vm(c+2, c+2)) < 0 || slices.Contains(got, cur) {
		t.Fatalf("a load happened beside an incompatible library: %v", got)
	}

	adminDelete(t, addrs)
	adminLoad(t, first, libraryAt(t, c+1, c, false).source)
	out, err := b.Prepare(ctx)
	if err != nil || !out.Applied || !strings.Contains(out.Detail, "on 2 of 3 primaries") {
		t.Fatalf("%+v, %v; want loads on the 2 primaries without a library", out, err)
	}
	got := versions(t, b)
	slices.Sort(got)
	if want := []string{cur, cur, vm(c+1, c)}; !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
}

// Clients of two versions preparing at once from an older library: the
// newer always ends loaded (the load lock, and the second look under it).
func TestPrepareConcurrentNeverDowngrades(t *testing.T) {
	ctx := t.Context()
	addrs := []string{valkeytest.NewServer(t).Addr()}
	c := current(t)
	older := connectTest(t, addrs, Options{Partitions: 4})
	newer := connectTest(t, addrs, Options{Partitions: 4, SkipPrepare: true})
	newLib := libraryAt(t, c+1, c, false)
	for round := range 20 {
		adminLoad(t, addrs, libraryAt(t, c-1, c-1, false).source)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Add(2)
		go func() { defer wg.Done(); _, errs[0] = older.Prepare(ctx) }()
		go func() { defer wg.Done(); _, errs[1] = newer.prepare(ctx, newLib) }()
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if got := versions(t, older); !slices.Equal(got, []string{vm(c+1, c)}) {
			t.Fatalf("round %d: %v loaded, want the newer library", round, got)
		}
	}
}

// An ACL denial is a typed permission error naming what was denied: a
// command, a key, a channel, a command a function calls; Prepare's own
// commands included.
func TestPermissionErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	addrs := []string{valkeytest.NewServer(t).Addr()}
	adminDelete(t, addrs)
	connectTest(t, addrs, Options{Partitions: 4}) // fixes partitions and loads the library
	err := valkeytest.SetUser(ctx, addrs, "narrow", "reset", "on", ">pw", "~ff:*", "&ff:*", "+hget", "+fcall", "+fcall_ro",
		"+client|setinfo", "+client|tracking", "+client|caching", "+cluster|shards", "+zadd", "+set", "+del", "+get")
	if err != nil {
		t.Fatal(err)
	}
	b := connectTest(t, addrs, Options{Username: "narrow", Password: "pw"}) // the library is current: Prepare reads only
	raw := b.Client()

	cases := []struct {
		name   string
		err    error
		detail []string
		msg    string
	}{
		{"command", backendError("op", raw.Do(ctx, raw.B().Zcount().Key("ff:x").Min("0").Max("1").Build()).Error()),
			[]string{"zcount"}, "may not run 'zcount'"},
		{"key", backendError("op", raw.Do(ctx, raw.B().Get().Key("other:x").Build()).Error()),
			[]string{"", "key"}, "may not access this key"},
		{"in a function", func() error {
			// ff_own runs GET, SET, then TIME, which narrow lacks.
			_, err := b.OwnPartition(ctx, "o", 0, time.Second, OwnAcquire)
			return err
		}(), []string{"time"}, "may not run 'time', which a flowfabric function calls"},
	}
	for _, tc := range cases {
		var se *sdk.Error
		if !errors.Is(tc.err, sdk.ErrPermissionDenied) || !errors.As(tc.err, &se) || !slices.Equal(se.Detail, tc.detail) ||
			!strings.Contains(se.Msg, tc.msg) || sdk.Retryable(tc.err) {
			t.Errorf("%s: got %v; want permission_denied %v %q, terminal", tc.name, tc.err, tc.detail, tc.msg)
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
