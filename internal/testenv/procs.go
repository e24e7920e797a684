package testenv

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// Running says whether process pid is still there and still runs binary
// (its base name). A PID alone is not enough: once the process is gone the
// kernel may give its PID to an unrelated one.
func Running(pid int, binary string) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || len(cmdline) == 0 {
		return false // gone, or a zombie whose command line is empty
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	if filepath.Base(string(argv0)) == binary {
		return true
	}
	// Started through another program ("ip netns exec ... binary").
	for _, arg := range bytes.Split(cmdline, []byte{0}) {
		if filepath.Base(string(arg)) == binary {
			return true
		}
	}
	return false
}
