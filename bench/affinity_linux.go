//go:build linux

package bench

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// probeCPU is the CPU the raw probes and valkey-benchmark both run on
// during calibration: the highest this process may use. A serial round
// trip costs very different amounts on a VM depending on whether the client
// sleeps on the server's CPU or another one (waking an idle vCPU is slow:
// ~30 µs against ~100 µs here), and the scheduler places the two clients
// differently; pinned to one CPU they are compared like for like. The
// anchors of a run are left to the scheduler (a pinned thread cannot
// escape a vCPU the hypervisor is holding back). -1 when unknown.
func probeCPU() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return -1
	}
	for cpu := 1023; cpu >= 0; cpu-- {
		if set.IsSet(cpu) {
			return cpu
		}
	}
	return -1
}

// pinThread locks the calling goroutine to its OS thread and the thread to
// cpu; undo restores both. With cpu < 0 it does nothing.
func pinThread(cpu int) (undo func()) {
	if cpu < 0 {
		return func() {}
	}
	runtime.LockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return func() {}
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		runtime.UnlockOSThread()
		return func() {}
	}
	return func() {
		_ = unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	}
}

// pinServerAway pins the main thread of the local Valkey server process pid
// (one ffbench started) to a CPU this process may use other than probe (the
// clients' CPU), so that during calibration both tools' clients meet the
// server on another CPU every round instead of wherever the scheduler last
// put it. undo restores its affinity; ok is false when nothing was pinned.
func pinServerAway(pid, probe int) (undo func(), ok bool) {
	var mine, old, one unix.CPUSet
	if probe < 0 || unix.SchedGetaffinity(0, &mine) != nil || unix.SchedGetaffinity(pid, &old) != nil {
		return func() {}, false
	}
	for cpu := range 1024 {
		if cpu != probe && mine.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	if one.Count() == 0 || unix.SchedSetaffinity(pid, &one) != nil {
		return func() {}, false
	}
	return func() { _ = unix.SchedSetaffinity(pid, &old) }, true
}
