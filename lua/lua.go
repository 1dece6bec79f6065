// Package lua embeds the FlowFabric Valkey Functions library, so the Go side
// always loads exactly the code it was built and tested with.
package lua

import (
	_ "embed"
	"errors"
	"regexp"
	"strings"
)

//go:embed flowfabric.lua
var source string

// Source returns the library text, ready for FUNCTION LOAD.
func Source() string { return source }

// LibraryName is the name the library registers ("#!lua name=flowfabric").
const LibraryName = "flowfabric"

// DefaultNamespace is the namespace the text is written in: every key and
// shard channel starts with "ff:", every function is named "ff_<name>".
const DefaultNamespace = "ff"

// prefixAtWord finds the default namespace's prefixes, "ff:" and "ff_", at
// the start of a word: in key literals ('ff:e:'), Lua patterns
// ('^ff:w:{w:'), function names ('ff_create') and comments alike.
var prefixAtWord = regexp.MustCompile(`\bff([:_])`)

// Namespaced returns the library text for namespace ns, ready for FUNCTION
// LOAD: the library is named LibraryFor(ns), each function "<ns>_<name>",
// and every key and channel the library derives starts with "<ns>:".
// Namespace DefaultNamespace returns Source() itself. ns must be a valid
// namespace (valkeybackend checks it: lowercase letters and digits), so
// the rewrite adds no Lua pattern character.
func Namespaced(ns string) string {
	if ns == DefaultNamespace {
		return source
	}
	body, ok := strings.CutPrefix(source, "#!lua name="+LibraryName+"\n")
	if !ok {
		panic("lua: flowfabric.lua does not start with its shebang")
	}
	return "#!lua name=" + LibraryFor(ns) + "\n" + prefixAtWord.ReplaceAllString(body, ns+"$1")
}

// LibraryFor is the library name of namespace ns: LibraryName for the
// default namespace, LibraryName+"_"+ns for another.
func LibraryFor(ns string) string {
	if ns == DefaultNamespace {
		return LibraryName
	}
	return LibraryName + "_" + ns
}

// Version is the library version ff_version returns, and so the version of
// every client built with this package. It is read from the embedded source
// so the two can never disagree.
var Version string

// MinClientVersion is the oldest client version this library serves
// (MIN_CLIENT, returned by ff_version after the version): a client older
// than it must not run against this library. Read from the embedded source.
var MinClientVersion string

func init() {
	v, m, err := Declared(source)
	if err != nil {
		panic("lua: flowfabric.lua: " + err.Error())
	}
	Version, MinClientVersion = v, m
}

var (
	versionDecl   = regexp.MustCompile(`(?m)^local VERSION = '([^']+)'`)
	minClientDecl = regexp.MustCompile(`(?m)^local MIN_CLIENT = '([^']+)'`)
)

// Declared returns the VERSION and MIN_CLIENT a library text declares.
func Declared(src string) (version, minClient string, err error) {
	v := versionDecl.FindStringSubmatch(src)
	if v == nil {
		return "", "", errors.New("declares no VERSION")
	}
	m := minClientDecl.FindStringSubmatch(src)
	if m == nil {
		return "", "", errors.New("declares no MIN_CLIENT")
	}
	return v[1], m[1], nil
}
