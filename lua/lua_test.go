package lua

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestHeaderAndVersion(t *testing.T) {
	if !strings.HasPrefix(Source(), "#!lua name="+LibraryName+"\n") {
		t.Fatalf("library must start with the shebang naming %q", LibraryName)
	}
	if Version == "" {
		t.Fatal("empty version")
	}
}

// Every registered function carries a KEYS/ARGV header comment just above it.
func TestEveryFunctionHasAKeysArgvHeader(t *testing.T) {
	lines := strings.Split(Source(), "\n")
	reg := regexp.MustCompile(`redis\.register_function[({]\s*(?:function_name\s*=\s*)?'([a-z_]+)'`)
	found := 0
	for i, line := range lines {
		m := reg.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		found++
		// The header ends at most a few declarations above the function;
		// the longest (ff_create's) runs about 35 lines.
		header := strings.Join(lines[max(0, i-45):i], "\n")
		if !strings.Contains(header, "-- "+m[1]+":") {
			t.Errorf("%s: no header comment naming the function", m[1])
		}
		if !strings.Contains(header, "KEYS:") || !strings.Contains(header, "Returns") {
			t.Errorf("%s: header lacks KEYS or Returns", m[1])
		}
		if m[1] != "ff_version" && !strings.Contains(header, "ARGV:") {
			t.Errorf("%s: header lacks ARGV", m[1])
		}
	}
	if found < 10 {
		t.Fatalf("found only %d functions", found)
	}
}

// Versions are decimal integers (clients compare them as numbers), and a
// library serves at least the clients of its own version.
func TestVersionAndMinClient(t *testing.T) {
	v, err := strconv.Atoi(Version)
	if err != nil || v < 1 {
		t.Fatalf("VERSION %q is not a positive integer", Version)
	}
	m, err := strconv.Atoi(MinClientVersion)
	if err != nil || m < 1 || m > v {
		t.Fatalf("MIN_CLIENT %q is not an integer in 1..VERSION (%d)", MinClientVersion, v)
	}
	if _, _, err := Declared("local VERSION = '3'\n"); err == nil {
		t.Fatal("a text without MIN_CLIENT parsed")
	}
}

// A namespace's text keeps no trace of the default one: no "ff:" key or
// channel literal, no "ff_" function name, every function renamed, and no
// prefix whose length is counted by hand (it would cut a longer namespace
// wrong).
func TestNamespaced(t *testing.T) {
	if Namespaced(DefaultNamespace) != Source() {
		t.Fatal("the default namespace's text differs from the embedded one")
	}
	reg := regexp.MustCompile(`redis\.register_function[({]\s*(?:function_name\s*=\s*)?'([a-z0-9_]+)'`)
	names := func(src string) []string {
		var out []string
		for _, m := range reg.FindAllStringSubmatch(src, -1) {
			out = append(out, m[1])
		}
		return out
	}
	def := names(Source())
	for _, ns := range []string{"a", "tenant7", "abcdefghijklmnopqrstuvwx"} {
		src := Namespaced(ns)
		if !strings.HasPrefix(src, "#!lua name=flowfabric_"+ns+"\n") || LibraryFor(ns) != "flowfabric_"+ns {
			t.Fatalf("%s: shebang %q, LibraryFor %q", ns, strings.SplitN(src, "\n", 2)[0], LibraryFor(ns))
		}
		if left := regexp.MustCompile(`\bff[:_]`).FindAllString(src, -1); len(left) != 0 {
			t.Fatalf("%s: %d default-namespace prefixes left", ns, len(left))
		}
		got := names(src)
		if len(got) != len(def) || len(got) < 10 {
			t.Fatalf("%s: %d functions, the default text registers %d", ns, len(got), len(def))
		}
		for i, n := range got {
			if want := ns + strings.TrimPrefix(def[i], "ff"); n != want {
				t.Fatalf("%s: function %d is %q, want %q", ns, i, n, want)
			}
		}
		for _, lit := range []string{"'" + ns + ":e:'", "'" + ns + ":i:'", "'" + ns + ":offers:'", "'^" + ns + ":w:{w:"} {
			if !strings.Contains(src, lit) {
				t.Fatalf("%s: no %s literal", ns, lit)
			}
		}
		if v, m, err := Declared(src); err != nil || v != Version || m != MinClientVersion {
			t.Fatalf("%s: declares %q %q %v", ns, v, m, err)
		}
	}
	counted := regexp.MustCompile(`string\.sub\([^()]*,\s*\d+\s*(,\s*\d+\s*)?\)\s*[=~]=\s*'ff`)
	if m := counted.FindString(Source()); m != "" {
		t.Fatalf("a prefix's length counted by hand: %s", m)
	}
}
