//go:build linux

package loadgen

import (
	"syscall"
	"time"
)

// sleepPrecise sleeps d in one nanosleep on the calling thread: the
// kernel's high-resolution timer wakes it within tens of microseconds,
// where a Go timer of an otherwise idle process fires on the netpoller's
// whole-millisecond wait (up to a millisecond late).
func sleepPrecise(d time.Duration) {
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
