//go:build !linux

package demo

import "syscall"

// childAttr puts a child into its own process group, so a Ctrl-C in the
// terminal reaches only the demo, which stops its children in order.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
