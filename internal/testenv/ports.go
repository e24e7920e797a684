package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowestPort is where RestartablePort starts looking: above the ports
// services on a developer machine usually hold.
const lowestPort = 10000

// RestartablePort returns a TCP port on host that nothing listens on and that
// the kernel never hands out by itself: it lies below the ephemeral range
// (net.ipv4.ip_local_port_range). A process that is killed and restarted on
// the same port cannot then find it taken by some connection's source port
// or by another test's ":0" listener while it was down. Ports are tried at
// random, so test packages running side by side rarely try the same one.
func RestartablePort(host string) (int, error) {
	high := ephemeralLow()
	if high-lowestPort < 1000 {
		return listenPort(host, 0)
	}
	var lastErr error
	for range 200 {
		p, err := listenPort(host, lowestPort+rand.IntN(high-lowestPort))
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	return 0, fmt.Errorf("no free port on %s below %d: %w", host, high, lastErr)
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
