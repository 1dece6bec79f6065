//go:build !linux

package bench

// probeCPU: no pinning off Linux.
func probeCPU() int { return -1 }

// pinThread does nothing off Linux.
func pinThread(int) (undo func()) { return func() {} }

// pinServerAway does nothing off Linux.
func pinServerAway(int, int) (undo func(), ok bool) { return func() {}, false }
