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
		header := strings.Join(lines[max(0, i-30):i], "\n")
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
