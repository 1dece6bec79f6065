//go:build !linux

package loadgen

import "time"

// sleepPrecise is time.Sleep off Linux (syscall.Nanosleep is Linux-only).
func sleepPrecise(d time.Duration) { time.Sleep(d) }
