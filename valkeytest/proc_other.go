//go:build !linux

package valkeytest

import "syscall"

// sysProcAttr returns nil: parent-death signals are Linux-only, so elsewhere a server
// outlives a killed test binary until Close runs.
func sysProcAttr() *syscall.SysProcAttr { return nil }
