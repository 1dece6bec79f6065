//go:build !unix

package loadgen

import "time"

// sleepPrecise is time.Sleep where nanosleep is not available.
func sleepPrecise(d time.Duration) { time.Sleep(d) }
