package valkeytest

import "syscall"

// sysProcAttr makes the kernel SIGKILL a started server when the process that started
// it dies, so an aborted `go test` leaves no orphaned valkey-server behind. The signal
// follows the starting OS thread: do not call Start from a goroutine that has locked its
// thread (runtime.LockOSThread) and then exits, or the server dies with that thread.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
