// Package lua embeds the FlowFabric Valkey Functions library, so the Go side
// always loads exactly the code it was built and tested with.
package lua

import (
	_ "embed"
	"errors"
	"regexp"
)

//go:embed flowfabric.lua
var source string

// Source returns the library text, ready for FUNCTION LOAD.
func Source() string { return source }

// LibraryName is the name the library registers ("#!lua name=flowfabric").
const LibraryName = "flowfabric"

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
