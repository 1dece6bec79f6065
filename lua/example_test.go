package lua_test

import (
	"fmt"
	"strings"

	"github.com/flowfabric/flowfabric-go/lua"
)

// The library text a deployment under namespace "billing" loads: its own
// library name, function names and key prefixes.
func ExampleNamespaced() {
	src := lua.Namespaced("billing")
	fmt.Println(strings.SplitN(src, "\n", 2)[0])
	fmt.Println(lua.LibraryFor("billing"), lua.LibraryFor(lua.DefaultNamespace))
	fmt.Println(strings.Contains(src, "'billing_create'"), strings.Contains(src, "'ff_create'"))
	// Output:
	// #!lua name=flowfabric_billing
	// flowfabric_billing flowfabric
	// true false
}
