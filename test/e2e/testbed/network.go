//go:build linux

package testbed

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/edgeunit/edgeunit/internal/netnstest"
)

// The edge link network: a bridge on this machine (the cloud end) with
// one veth per node. 198.19.248.0/24 is in the benchmarking range
// (RFC 2544, 198.18.0.0/15); newCloudNet refuses to start where this
// machine routes to, resolves to or has an address in it (documentation
// ranges are not safe: these machines resolve their package registries to
// one). The nodes get no default route, so nothing they send leaves this
// network.
const (
	linkPrefix = "198.19.248."
	CloudIP    = linkPrefix + "1"
	linkBits   = 24
	// firstNodeHost is the last octet of the first node's address.
	firstNodeHost = 11
	// podCIDRFormat is each node's pod range, by node index; it is local
	// to the node's network namespace.
	podCIDRFormat = "10.244.%d.0/24"
)

// lockFile serialises testbeds on one machine: they share the link
// network's addresses.
var lockFile = filepath.Join(os.TempDir(), "edgeunit-e2e-testbed.lock")

// lockTestbed takes the machine-wide testbed lock, failing fast when
// another testbed holds it.
func lockTestbed() (unlock func(), err error) {
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("another e2e testbed runs on this machine (%s is locked): %w", lockFile, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); _ = f.Close() }, nil
}

// cloudNet is the bridge at the cloud end of every edge link.
type cloudNet struct{ bridge string }

func newCloudNet(id string) (*cloudNet, error) {
	n := &cloudNet{bridge: "eue2e" + id[:4]}
	if _, err := net.InterfaceByName(n.bridge); err == nil {
		return nil, fmt.Errorf("bridge %s already exists", n.bridge)
	}
	if err := linkNetworkUnused(); err != nil {
		return nil, err
	}
	for _, argv := range [][]string{
		{"ip", "link", "add", n.bridge, "type", "bridge"},
		{"ip", "addr", "add", fmt.Sprintf("%s/%d", CloudIP, linkBits), "dev", n.bridge},
		{"ip", "link", "set", n.bridge, "up"},
	} {
		if _, err := run(argv...); err != nil {
			_ = n.close()
			return nil, err
		}
	}
	return n, nil
}

func (n *cloudNet) close() error {
	if _, err := net.InterfaceByName(n.bridge); err != nil {
		return nil
	}
	_, err := run("ip", "link", "del", n.bridge)
	return err
}

// linkNetworkUnused checks that the link network shadows nothing this
// machine uses: its addresses, its routes other than the default, its
// name servers and the addresses in /etc/hosts (netnstest.NamedAddrs).
func linkNetworkUnused() error {
	_, cidr, _ := net.ParseCIDR(fmt.Sprintf("%s/%d", CloudIP, linkBits))
	used := map[string][]net.IP{"an address of this machine": hostAddrs()}
	for _, a := range netnstest.NamedAddrs() {
		used["an address this machine resolves names to"] = append(used["an address this machine resolves names to"], a.AsSlice())
	}
	out, err := run("ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return err
	}
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "default" || f[0] == "broadcast" || f[0] == "local" {
			continue
		}
		if _, rn, err := net.ParseCIDR(f[0]); err == nil && (rn.Contains(cidr.IP) || cidr.Contains(rn.IP)) {
			return fmt.Errorf("this machine routes %s, which overlaps the testbed's link network %s", f[0], cidr)
		}
		if ip := net.ParseIP(f[0]); ip != nil && cidr.Contains(ip) {
			return fmt.Errorf("this machine routes %s, in the testbed's link network %s", f[0], cidr)
		}
	}
	for what, ips := range used {
		for _, ip := range ips {
			if cidr.Contains(ip) {
				return fmt.Errorf("%s (%s) is in the testbed's link network %s: the testbed would cut this machine off from it", what, ip, cidr)
			}
		}
	}
	return nil
}

func hostAddrs() []net.IP {
	addrs, _ := net.InterfaceAddrs()
	var out []net.IP
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			out = append(out, ipn.IP)
		}
	}
	return out
}

// nodeNet is one node's network namespace and its link to the bridge.
type nodeNet struct {
	ns      string // name for `ip netns`
	hostDev string // the cloud end of the veth, on the bridge
	ip      string
	podCIDR string
}

func newNodeNet(id string, index int, bridge string) (*nodeNet, error) {
	n := &nodeNet{
		ns:      fmt.Sprintf("eue2e-%s-%d", id, index),
		hostDev: fmt.Sprintf("eue2e%s%d", id[:4], index),
		ip:      fmt.Sprintf("%s%d", linkPrefix, firstNodeHost+index),
		podCIDR: fmt.Sprintf(podCIDRFormat, index+1),
	}
	tmpDev := n.hostDev + "n"
	steps := [][]string{
		{"ip", "netns", "add", n.ns},
		{"ip", "link", "add", n.hostDev, "type", "veth", "peer", "name", tmpDev},
		{"ip", "link", "set", tmpDev, "netns", n.ns},
		{"ip", "link", "set", n.hostDev, "master", bridge},
		{"ip", "link", "set", n.hostDev, "up"},
		{"ip", "-n", n.ns, "link", "set", "lo", "up"},
		{"ip", "-n", n.ns, "link", "set", tmpDev, "name", "eth0"},
		{"ip", "-n", n.ns, "addr", "add", fmt.Sprintf("%s/%d", n.ip, linkBits), "dev", "eth0"},
		{"ip", "-n", n.ns, "link", "set", "eth0", "up"},
		// The VXLAN device flannel would create: the hub's netbind keeps
		// its MAC at the unit's binding.
		{"ip", "-n", n.ns, "link", "add", "flannel.1", "type", "vxlan", "id", "1", "dev", "eth0", "local", n.ip, "dstport", "8472", "nolearning"},
		{"ip", "-n", n.ns, "link", "set", "flannel.1", "up"},
	}
	for _, argv := range steps {
		if _, err := run(argv...); err != nil {
			return nil, errors.Join(err, n.close())
		}
	}
	return n, nil
}

// nsPath is the namespace's file, for nsenter.
func (n *nodeNet) nsPath() string { return filepath.Join("/var/run/netns", n.ns) }

// cut takes the cloud end of the link down: the node's packets to the
// cloud vanish, as on a cut cable, and the cloud's never arrive.
func (n *nodeNet) cut() error {
	_, err := run("ip", "link", "set", n.hostDev, "down")
	return err
}

func (n *nodeNet) restore() error {
	_, err := run("ip", "link", "set", n.hostDev, "up")
	return err
}

// linkBytes is what crossed the node's link so far, both ways.
func (n *nodeNet) linkBytes() (rx, tx uint64, err error) {
	read := func(f string) (uint64, error) {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", n.hostDev, "statistics", f))
		if err != nil {
			return 0, err
		}
		var v uint64
		_, err = fmt.Sscan(string(b), &v)
		return v, err
	}
	if rx, err = read("rx_bytes"); err != nil {
		return 0, 0, err
	}
	tx, err = read("tx_bytes")
	return rx, tx, err
}

func (n *nodeNet) close() error {
	var e errs
	if _, err := net.InterfaceByName(n.hostDev); err == nil {
		_, err := run("ip", "link", "del", n.hostDev)
		e.add(err)
	}
	if _, err := os.Stat(n.nsPath()); err == nil {
		_, err := run("ip", "netns", "del", n.ns)
		e.add(err)
	}
	return e.err()
}
