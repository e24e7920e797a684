package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// lowestPort is where RestartablePort starts looking: above the ports
// services on a developer machine usually hold.
const lowestPort = 10000

var (
	portsMu sync.Mutex
	// held are the ports this process was given, with the lock files that
	// keep other processes from being given them too. The locks go when
	// the process exits.
	held = map[int]*os.File{}
)

// RestartablePort returns a TCP port on host that nothing listens on and that
// the kernel never hands out by itself: it lies below the ephemeral range
// (net.ipv4.ip_local_port_range). A process that is killed and restarted on
// the same port cannot then find it taken by some connection's source port
// or by another test's ":0" listener while it was down. A port is given out
// once per machine while this process lives: an flock on a file under the
// temporary directory reserves it from other test processes calling this.
func RestartablePort(host string) (int, error) {
	high := ephemeralLow()
	if high-lowestPort < 1000 {
		return listenPort(host, 0)
	}
	dir := filepath.Join(os.TempDir(), "edgeunit-test-ports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("port reservations: %w", err)
	}
	portsMu.Lock()
	defer portsMu.Unlock()
	var lastErr error
	for range 200 {
		p := lowestPort + rand.IntN(high-lowestPort)
		if held[p] != nil {
			continue
		}
		f, err := reserve(dir, p)
		if err != nil {
			lastErr = err
			continue
		}
		if _, err := listenPort(host, p); err != nil {
			_ = f.Close()
			lastErr = err
			continue
		}
		held[p] = f
		return p, nil
	}
	return 0, fmt.Errorf("no free port on %s below %d: %w", host, high, lastErr)
}

// reserve takes an exclusive lock on port's file under dir; it fails when
// another process holds it.
func reserve(dir string, port int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("port %d is reserved by another process: %w", port, err)
	}
	return f, nil
}

func listenPort(host string, port int) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range, or the
// Linux default when it cannot be read.
func ephemeralLow() int {
	const linuxDefault = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return linuxDefault
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return linuxDefault
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= 0 {
		return linuxDefault
	}
	return low
}
