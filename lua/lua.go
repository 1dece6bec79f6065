// Package lua embeds the FlowFabric Valkey Functions library, so the Go side
// always loads exactly the code it was built and tested with.
package lua

import (
	_ "embed"
	"regexp"
)

//go:embed flowfabric.lua
var source string

// Source returns the library text, ready for FUNCTION LOAD.
func Source() string { return source }

// LibraryName is the name the library registers ("#!lua name=flowfabric").
const LibraryName = "flowfabric"

// Version is the library version ff_version returns. It is read from the
// embedded source so the two can never disagree.
var Version = func() string {
	m := regexp.MustCompile(`(?m)^local VERSION = '([^']+)'`).FindStringSubmatch(source)
	if m == nil {
		panic("lua: flowfabric.lua declares no VERSION")
	}
	return m[1]
}()
