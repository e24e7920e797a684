// Package nodeaddr puts the node-local addresses edgeunit serves on (the
// hub's in-cluster listener) on the node, and takes them off again.
package nodeaddr

import (
	"errors"
	"fmt"
	"net"

	"syscall"

	"github.com/vishvananda/netlink"
)

// scopeHost is RT_SCOPE_HOST: the address is valid on this host only, and
// never chosen as the source of traffic leaving it.
const scopeHost = 254

// EnsureLoopback puts ip on the node's loopback interface with host
// scope: local traffic to it (pods' through their default route to the
// node) is delivered to the hub, and the kernel never picks it as the
// source of other traffic. (The loopback interface, rather than a dummy
// one of the hub's own: every kernel has it.)
func EnsureLoopback(ip net.IP) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("looking up the loopback interface: %w", err)
	}
	if err := netlink.AddrReplace(lo, loopbackAddr(ip)); err != nil {
		return fmt.Errorf("adding %s to the loopback interface: %w", ip, err)
	}
	return nil
}

// RemoveLoopback removes what EnsureLoopback added; an
// address not there is no error.
func RemoveLoopback(ip net.IP) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("looking up the loopback interface: %w", err)
	}
	if err := netlink.AddrDel(lo, loopbackAddr(ip)); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		return fmt.Errorf("removing %s from the loopback interface: %w", ip, err)
	}
	return nil
}

func loopbackAddr(ip net.IP) *netlink.Addr {
	bits := 32
	if ip.To4() == nil {
		bits = 128
	}
	return &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}, Scope: scopeHost}
}
