//go:build !unix

package valkeytest

import "os"

// Without SIGSTOP/SIGCONT/SIGTERM, Pause and Resume fail and graceful stops kill.
var (
	sigStop os.Signal = nil
	sigCont os.Signal = nil
	sigTerm os.Signal = os.Kill
)
