package demo

import "syscall"

// childAttr puts a child into its own process group and has the kernel
// kill it if the demo dies without stopping it (kill -9, a crash).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
