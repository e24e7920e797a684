package tunnel

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgeunit/edgeunit/internal/netnstest"
)

// edgeNet is the test's "edge site": a network namespace holding the kubelet
// stand-in and the agent. Layout:
//
//	root namespace                    edge namespace (ns)
//	  kube-apiserver, tunnel-server     tunnel-agent
//	  uplinkRoot/30 on vethRoot  <->    uplinkEdge/30 on vethEdge
//	  cloudBackendIP/32 and             kubeletIP/32 on the namespace's lo
//	  cloudNodeIP/32 on vethRoot
//
// The root namespace has a route only to the /30 of the veth pair, so it can
// reach the agent's uplink but not kubeletIP, which exists only inside ns;
// the only way from kube-apiserver to the kubelet is the agent's tunnel.
// cloudBackendIP and cloudNodeIP are the "cloud network": local addresses of
// the root namespace (delivered over its loopback, never sent out), for the
// cloud-side webhooks, aggregated APIs and kubelets that the tunnel-server
// dials directly. They cannot be 127.0.0.0/8: kube-apiserver refuses
// loopback addresses in EndpointSlices. They take a second /30 of
// 203.0.113.0/24, so other runs see it taken, and go as /32s, so no route
// sends the /30's other addresses anywhere. The
// addresses come from the documentation ranges (203.0.113.0/24 for the veth,
// with a random /30 so parallel runs do not collide; 198.51.100.128/25 for
// the kubelet); nothing ever sends to them outside these interfaces. The
// lower half of 198.51.100.0/24 belongs to internal/netnstest, whose veths
// (test/integration/netbind, run at the same time by go test ./...) put
// addresses there on the root namespace's side; they never cover kubeletIP.
// A machine whose own network is in 203.0.113.0/24 (shadowed by the veth's
// route) or covers kubeletIP (a path to the kubelet besides the tunnel) is
// refused, and no /30 holding an address the machine resolves a name to
// (netnstest.NamedAddrs: a sandbox may put its package proxy there) is
// taken. Not 192.0.2.0/24: some sandboxes use it for their own network.
type edgeNet struct {
	ns                          string
	vethRoot, vethEdge          string
	uplinkRoot, uplinkEdge      string
	kubeletIP                   string
	cloudBackendIP, cloudNodeIP string
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// hostAddr is an IPv4 address of an interface of the root namespace.
type hostAddr struct {
	dev    string
	prefix netip.Prefix // the address with its prefix length
}

func hostAddrs() ([]hostAddr, error) {
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip addr: %v: %s", err, out)
	}
	var addrs []hostAddr
	for _, line := range strings.Split(string(out), "\n") {
		// 4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "inet" {
			continue
		}
		p, err := netip.ParsePrefix(f[3])
		if err != nil {
			return nil, fmt.Errorf("ip addr: parsing %q: %w", line, err)
		}
		addrs = append(addrs, hostAddr{dev: f[1], prefix: p})
	}
	return addrs, nil
}

var uplinkRange = netip.MustParsePrefix("203.0.113.0/24")

// checkHost fails where the test's addresses would meet real ones: an
// address of this machine in uplinkRange outside another run's veths (the
// test's routes would shadow real neighbours), or a network of this machine
// that covers kubeletIP (kube-apiserver could reach the kubelet without the
// tunnel). It returns the /30s of uplinkRange other runs' veths take.
func checkHost(kubeletIP netip.Addr) ([]netip.Prefix, error) {
	addrs, err := hostAddrs()
	if err != nil {
		return nil, err
	}
	var taken []netip.Prefix
	for _, a := range addrs {
		if uplinkRange.Contains(a.prefix.Addr()) {
			if !strings.HasPrefix(a.dev, "eutr") {
				return nil, fmt.Errorf("this machine already uses %s (%s on %s): refusing to add test routes there", uplinkRange, a.prefix, a.dev)
			}
			taken = append(taken, a.prefix.Masked())
		}
		if a.prefix.Contains(kubeletIP) {
			return nil, fmt.Errorf("this machine reaches the test's kubelet address %s over %s (%s): the tunnel would not be the only way to it", kubeletIP, a.dev, a.prefix)
		}
	}
	// Never a /30 over an address the machine resolves names to.
	for _, a := range netnstest.NamedAddrs() {
		if uplinkRange.Contains(a) {
			taken = append(taken, netip.PrefixFrom(a, 30).Masked())
		}
	}
	return taken, nil
}

// newEdgeNet creates the namespace and links; cleanup must be called even
// when it fails part-way.
func newEdgeNet() (*edgeNet, func(), error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, func() {}, err
	}
	id := hex.EncodeToString(b[:])
	// In 198.51.100.128/25, clear of internal/netnstest's lower half.
	kubeletIP := netip.AddrFrom4([4]byte{198, 51, 100, byte(130 + int(b[1])%120)}) // .130–.249
	taken, err := checkHost(kubeletIP)
	if err != nil {
		return nil, func() {}, err
	}
	// Two /30s inside 203.0.113.0/24 another run does not hold, from a
	// random start: the uplink's and the cloud network's.
	var blocks []int
	for i := 0; i < 62 && len(blocks) < 2; i++ {
		c := 1 + (int(b[0])+i)%62
		block := netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(4 * c)}), 30)
		if !slices.ContainsFunc(taken, block.Overlaps) {
			blocks = append(blocks, c)
		}
	}
	if len(blocks) < 2 {
		return nil, func() {}, fmt.Errorf("fewer than two /30s of %s are free of other runs' veths: %v", uplinkRange, taken)
	}
	k, c := blocks[0], blocks[1]
	e := &edgeNet{
		ns:             "eut-tun-" + id,
		vethRoot:       "eutr" + id,
		vethEdge:       "eute" + id,
		uplinkRoot:     fmt.Sprintf("203.0.113.%d", 4*k+1),
		uplinkEdge:     fmt.Sprintf("203.0.113.%d", 4*k+2),
		kubeletIP:      kubeletIP.String(),
		cloudBackendIP: fmt.Sprintf("203.0.113.%d", 4*c+1),
		cloudNodeIP:    fmt.Sprintf("203.0.113.%d", 4*c+2),
	}
	cleanup := func() {
		_ = ipCmd("link", "del", e.vethRoot)
		_ = ipCmd("netns", "del", e.ns)
	}
	if err := ipCmd("netns", "add", e.ns); err != nil {
		return nil, cleanup, err
	}
	in := func(args ...string) error { return ipCmd(append([]string{"-n", e.ns}, args...)...) }
	steps := []func() error{
		func() error { return ipCmd("link", "add", e.vethRoot, "type", "veth", "peer", "name", e.vethEdge) },
		func() error { return ipCmd("link", "set", e.vethEdge, "netns", e.ns) },
		func() error { return ipCmd("addr", "add", e.uplinkRoot+"/30", "dev", e.vethRoot) },
		func() error { return ipCmd("link", "set", e.vethRoot, "up") },
		// Local addresses, gone with the link.
		func() error { return ipCmd("addr", "add", e.cloudBackendIP+"/32", "dev", e.vethRoot) },
		func() error { return ipCmd("addr", "add", e.cloudNodeIP+"/32", "dev", e.vethRoot) },
		func() error { return in("link", "set", "lo", "up") },
		func() error { return in("addr", "add", e.uplinkEdge+"/30", "dev", e.vethEdge) },
		func() error { return in("link", "set", e.vethEdge, "up") },
		// On the namespace's own loopback device: no dummy module needed,
		// and the address is local to the namespace only.
		func() error { return in("addr", "add", e.kubeletIP+"/32", "dev", "lo") },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, cleanup, err
		}
	}
	return e, cleanup, nil
}

// listenIn opens a TCP listener inside the namespace: the socket belongs to
// the namespace it was created in, whichever thread serves it later.
func (e *edgeNet) listenIn(addr string) (net.Listener, error) {
	var ln net.Listener
	var lerr error
	if err := e.inNamespace(func() { ln, lerr = net.Listen("tcp", addr) }); err != nil {
		if ln != nil {
			_ = ln.Close()
		}
		return nil, err
	}
	return ln, lerr
}

// dialIn connects to addr from inside the namespace, as a kubelet's runtime
// dials a pod's port in the pod's network namespace: the socket is created
// and connected there.
func (e *edgeNet) dialIn(addr string) (net.Conn, error) {
	var conn net.Conn
	var derr error
	if err := e.inNamespace(func() { conn, derr = net.DialTimeout("tcp", addr, 10*time.Second) }); err != nil {
		if conn != nil {
			_ = conn.Close()
		}
		return nil, err
	}
	return conn, derr
}

// inNamespace runs fn on this goroutine's thread switched into the
// namespace, then switches the thread back.
func (e *edgeNet) inNamespace(fn func()) error {
	target, err := os.Open("/var/run/netns/" + e.ns)
	if err != nil {
		return err
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering %s: %w", e.ns, err)
	}
	fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime discards it with the goroutine.
		return fmt.Errorf("leaving %s: %w", e.ns, err)
	}
	runtime.UnlockOSThread()
	return nil
}
