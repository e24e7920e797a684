package tunnel

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DefaultAllowedPorts are the node-local ports an agent dials unless told
// otherwise: the kubelet's.
var DefaultAllowedPorts = []int{10250}

// Policy decides which targets an agent may dial: its own node's addresses
// on the node ports, and its own node's pods on the pod ports; never
// another node or its pods. It is what keeps the agent from being an open
// relay, whatever the server asks.
type Policy struct {
	// Ports the agent may dial on the node's own addresses.
	Ports []int
	// Hosts are extra names or IPs that belong to this node (its node name,
	// host name, addresses not on a local interface such as a NAT'd one).
	Hosts []string
	// LocalAddrs lists the IPs on the node's interfaces; net.InterfaceAddrs
	// when nil.
	LocalAddrs func() ([]net.IP, error)
	// PodPorts the agent may dial on the node's own pods; none when empty.
	PodPorts []int
	// PodCIDRs returns the node's pod CIDRs (its Node's spec.podCIDRs), nil
	// while they are not known. Checks call it concurrently.
	PodCIDRs func() []netip.Prefix
}

// Check returns the address to dial for target, or an error wrapping
// ErrForbidden. The node's own addresses, loopback and local interfaces
// included (a bridge address inside the pod CIDR too), are checked against
// Ports only; an address in the node's pod CIDRs is a pod and is checked
// against PodPorts only.
func (p Policy) Check(target string) (string, error) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return "", fmt.Errorf("%w: malformed target %q: %v", ErrForbidden, target, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return "", fmt.Errorf("%w: bad port in %q", ErrForbidden, target)
	}
	if !slices.Contains(p.Ports, port) && !slices.Contains(p.PodPorts, port) {
		return "", fmt.Errorf("%w: port %d is not in the allowlist %v nor in the pod allowlist %v", ErrForbidden, port, p.Ports, p.PodPorts)
	}
	if slices.ContainsFunc(p.Hosts, func(h string) bool { return strings.EqualFold(h, host) }) {
		return p.nodePort(target, host, port)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return "", fmt.Errorf("%w: host %q is not one of this node's names", ErrForbidden, host)
	}
	if ip.IsLoopback() {
		return p.nodePort(target, host, port)
	}
	if ip.IsUnspecified() || ip.IsMulticast() {
		return "", fmt.Errorf("%w: %s is not a unicast address", ErrForbidden, ip)
	}
	local, err := p.localAddrs()
	if err != nil {
		return "", fmt.Errorf("%w: listing local addresses: %v", ErrForbidden, err)
	}
	if slices.ContainsFunc(local, ip.Equal) {
		return p.nodePort(target, host, port)
	}
	addr, _ := netip.AddrFromSlice(ip)
	addr = addr.Unmap()
	var cidrs []netip.Prefix
	if p.PodCIDRs != nil {
		cidrs = p.PodCIDRs()
	}
	for _, c := range cidrs {
		if !c.Contains(addr) {
			continue
		}
		if len(p.PodPorts) == 0 {
			return "", fmt.Errorf("%w: %s is a pod of this node (in %s) and the agent opens no pod ports", ErrForbidden, addr, c)
		}
		if !slices.Contains(p.PodPorts, port) {
			return "", fmt.Errorf("%w: %s is a pod of this node (in %s) and port %d is not in the pod allowlist %v", ErrForbidden, addr, c, port, p.PodPorts)
		}
		return target, nil
	}
	switch {
	case len(p.PodPorts) == 0:
		return "", fmt.Errorf("%w: %s is not an address of this node, and the agent opens no pods", ErrForbidden, ip)
	case len(cidrs) == 0:
		return "", fmt.Errorf("%w: %s is not an address of this node, and this node's pod CIDRs are not known yet", ErrForbidden, ip)
	}
	return "", fmt.Errorf("%w: %s is neither an address of this node nor in its pod CIDRs %v", ErrForbidden, ip, cidrs)
}

// nodePort allows target, an address of this node, on the node ports only:
// a pod port does not open the node.
func (p Policy) nodePort(target, host string, port int) (string, error) {
	if !slices.Contains(p.Ports, port) {
		return "", fmt.Errorf("%w: %s is this node and port %d is not in the allowlist %v", ErrForbidden, host, port, p.Ports)
	}
	return target, nil
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
