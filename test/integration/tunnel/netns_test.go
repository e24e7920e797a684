package tunnel

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// edgeNet is the test's "edge site": a network namespace holding the kubelet
// stand-in and the agent. Layout:
//
//	root namespace                    edge namespace (ns)
//	  kube-apiserver, tunnel-server     tunnel-agent
//	  uplinkRoot/30 on vethRoot  <->    uplinkEdge/30 on vethEdge
//	                                    kubeletIP/32 on the namespace's lo
//
// The root namespace has a route only to the /30 of the veth pair, so it can
// reach the agent's uplink but not kubeletIP, which exists only inside ns;
// the only way from kube-apiserver to the kubelet is the agent's tunnel. The
// addresses come from the documentation ranges (203.0.113.0/24 for the veth,
// 198.51.100.0/24 for the kubelet) with a random /30 so parallel runs do not
// collide; nothing ever sends to them outside these interfaces. A machine
// whose own network is in one of those ranges (some sandboxes use
// 192.0.2.0/24, hence not that one) is refused rather than shadowed.
type edgeNet struct {
	ns                     string
	vethRoot, vethEdge     string
	uplinkRoot, uplinkEdge string
	kubeletIP              string
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// rangesUnused fails when an interface of this machine already has an
// address in one of the /24 prefixes: the test's routes would shadow real
// neighbours.
func rangesUnused(prefixes ...string) error {
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip addr: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		for _, p := range prefixes {
			if strings.Contains(line, " inet "+p) && !strings.Contains(line, "eut") {
				return fmt.Errorf("this machine already uses %s0/24 (%s): refusing to add test routes there", p, strings.TrimSpace(line))
			}
		}
	}
	return nil
}

// newEdgeNet creates the namespace and links; cleanup must be called even
// when it fails part-way.
func newEdgeNet() (*edgeNet, func(), error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, func() {}, err
	}
	id := hex.EncodeToString(b[:])
	if err := rangesUnused("203.0.113.", "198.51.100."); err != nil {
		return nil, func() {}, err
	}
	k := 1 + int(b[0])%62 // /30 number inside 203.0.113.0/24
	e := &edgeNet{
		ns:         "eut-tun-" + id,
		vethRoot:   "eutr" + id,
		vethEdge:   "eute" + id,
		uplinkRoot: fmt.Sprintf("203.0.113.%d", 4*k+1),
		uplinkEdge: fmt.Sprintf("203.0.113.%d", 4*k+2),
		kubeletIP:  fmt.Sprintf("198.51.100.%d", 10+int(b[1])%240),
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
	target, err := os.Open("/var/run/netns/" + e.ns)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("entering %s: %w", e.ns, err)
	}
	ln, lerr := net.Listen("tcp", addr)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime discards it with the goroutine.
		return nil, fmt.Errorf("leaving %s: %w", e.ns, err)
	}
	runtime.UnlockOSThread()
	return ln, lerr
}
