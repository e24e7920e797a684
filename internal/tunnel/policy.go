package tunnel

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// DefaultAllowedPorts are the node-local ports an agent dials unless told
// otherwise: the kubelet's.
var DefaultAllowedPorts = []int{10250}

// Policy decides which targets an agent may dial: only addresses of its own
// node and only allow-listed ports. It is what keeps the agent from being an
// open relay, whatever the server asks.
type Policy struct {
	// Ports the agent may dial.
	Ports []int
	// Hosts are extra names or IPs that belong to this node (its node name,
	// host name, addresses not on a local interface such as a NAT'd one).
	Hosts []string
	// LocalAddrs lists the IPs on the node's interfaces; net.InterfaceAddrs
	// when nil.
	LocalAddrs func() ([]net.IP, error)
}

// Check returns the address to dial for target, or an error wrapping
// ErrForbidden.
func (p Policy) Check(target string) (string, error) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return "", fmt.Errorf("%w: malformed target %q: %v", ErrForbidden, target, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return "", fmt.Errorf("%w: bad port in %q", ErrForbidden, target)
	}
	if !slices.Contains(p.Ports, port) {
		return "", fmt.Errorf("%w: port %d is not in the allowlist %v", ErrForbidden, port, p.Ports)
	}
	if slices.ContainsFunc(p.Hosts, func(h string) bool { return strings.EqualFold(h, host) }) {
		return target, nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return "", fmt.Errorf("%w: host %q is not one of this node's names", ErrForbidden, host)
	}
	if ip.IsLoopback() {
		return target, nil
	}
	if ip.IsUnspecified() || ip.IsMulticast() {
		return "", fmt.Errorf("%w: %s is not a unicast address", ErrForbidden, ip)
	}
	local, err := p.localAddrs()
	if err != nil {
		return "", fmt.Errorf("%w: listing local addresses: %v", ErrForbidden, err)
	}
	if slices.ContainsFunc(local, ip.Equal) {
		return target, nil
	}
	return "", fmt.Errorf("%w: %s is not an address of this node", ErrForbidden, ip)
}

func (p Policy) localAddrs() ([]net.IP, error) {
	if p.LocalAddrs != nil {
		return p.LocalAddrs()
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	ips := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ips = append(ips, n.IP)
		}
	}
	return ips, nil
}

// ParsePorts parses a comma-separated port list such as "10250,10255".
func ParsePorts(s string) ([]int, error) {
	var ports []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("invalid port %q: want 1-65535", f)
		}
		ports = append(ports, p)
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("no ports in %q", s)
	}
	return ports, nil
}
