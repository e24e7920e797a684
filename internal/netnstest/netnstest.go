//go:build linux

// Package netnstest gives tests network namespaces of their own: named, so
// both netlink and `ip netns exec` reach them, removed when the test ends
// even if it fails, and optionally linked to the test's own namespace by a
// veth pair, which the test can cut silently (Silence); DialContext
// reaches listeners on the namespace's loopback. A test skips, with the
// kernel's reason, where namespaces or veths are refused (no root, a
// sandbox).
package netnstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is a named network namespace.
type NS struct {
	// Name is what `ip netns exec` takes; Path its bind mount.
	Name, Path string
	// Handle is open until the test ends.
	Handle netns.NsHandle
}

// New creates a namespace named prefix-<random> with its loopback up (so
// processes in it can listen on 127.0.0.1). It is deleted when the test
// ends.
func New(tb testing.TB, prefix string) *NS {
	tb.Helper()
	name := prefix + "-" + randomHex(tb)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		tb.Skipf("network namespaces unavailable: reading the current namespace: %v", err)
	}
	defer func() { _ = orig.Close() }()
	h, err := netns.NewNamed(name)
	// NewNamed moved this thread into the new namespace: move it back
	// before anything else runs on it.
	if serr := netns.Set(orig); serr != nil {
		panic(fmt.Sprintf("cannot return to the original network namespace: %v", serr))
	}
	if err != nil {
		tb.Skipf("the kernel refused to create a network namespace (needs root/CAP_SYS_ADMIN): %v", err)
	}
	n := &NS{Name: name, Path: filepath.Join("/var/run/netns", name), Handle: h}
	tb.Cleanup(func() {
		_ = h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			tb.Errorf("deleting network namespace %s: %v", name, err)
		}
	})
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		tb.Skipf("netlink in the test namespace unavailable: %v", err)
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err == nil {
		err = nh.LinkSetUp(lo)
	}
	if err != nil {
		tb.Fatalf("bringing up lo in %s: %v", name, err)
	}
	return n
}

// Link is a veth pair between the test's namespace (Host*) and an NS.
type Link struct {
	HostDev, NSDev string
	HostIP, NSIP   string
}

// linkRange is where a Link's /30 comes from: the lower half of
// 198.51.100.0/24 (documentation range, TEST-NET-2), 32 blocks. The tunnel
// integration test (test/integration/tunnel) takes its kubelet addresses
// from the upper half, 198.51.100.128/25, and checks that no host address
// covers them: keep the two halves apart, so both can run at once. Not in
// 192.0.2.0/24, which can be a real interface's network (eth0's, on the
// machine these tests were written on).
var linkRange = net.IPNet{IP: net.IPv4(198, 51, 100, 0).To4(), Mask: net.CIDRMask(25, 32)}

// lockPath is the file whose flock serialises picking and taking a block
// across test processes (go test runs packages in parallel).
var lockPath = filepath.Join(os.TempDir(), "edgeunit-netnstest.lock")

// Link connects the namespace to the test's one with a veth pair on the
// first /30 of linkRange no interface of the test's namespace uses: the
// host end gets .1 of the block, the namespace end .2. The pair is removed
// when the test ends.
func (n *NS) Link(tb testing.TB) *Link {
	tb.Helper()
	// Held from the check until the host end has its address, so two
	// processes cannot pick the same free block.
	unlock, err := lockBlocks()
	if err != nil {
		tb.Fatal(err)
	}
	defer unlock()
	base, err := freeBlock()
	if err != nil {
		tb.Fatal(err)
	}
	id := randomHex(tb)
	l := &Link{HostDev: "eunth" + id, NSDev: "eunns" + id,
		HostIP: addIP(base, 1).String(), NSIP: addIP(base, 2).String()}
	la := netlink.NewLinkAttrs()
	la.Name = l.HostDev
	veth := &netlink.Veth{LinkAttrs: la, PeerName: l.NSDev, PeerNamespace: netlink.NsFd(int(n.Handle))}
	if err := netlink.LinkAdd(veth); err != nil {
		tb.Skipf("the kernel refused to create a veth pair: %v", err)
	}
	tb.Cleanup(func() {
		// Deleting either end deletes both; the namespace's deletion
		// would too, but the host end must not outlive a failed setup.
		if link, err := netlink.LinkByName(l.HostDev); err == nil {
			if err := netlink.LinkDel(link); err != nil {
				tb.Errorf("deleting veth %s: %v", l.HostDev, err)
			}
		}
	})
	hostH, err := netlink.NewHandle()
	if err != nil {
		tb.Fatal(err)
	}
	defer hostH.Close()
	nsH, err := netlink.NewHandleAt(n.Handle)
	if err != nil {
		tb.Fatal(err)
	}
	defer nsH.Close()
	if err := configure(hostH, l.HostDev, l.HostIP); err != nil {
		tb.Fatal(err)
	}
	if err := configure(nsH, l.NSDev, l.NSIP); err != nil {
		tb.Fatal(err)
	}
	return l
}

// configure gives dev ip/30 and brings it up.
func configure(h *netlink.Handle, dev, ip string) error {
	link, err := h.LinkByName(dev)
	if err != nil {
		return err
	}
	addr, err := netlink.ParseAddr(ip + "/30")
	if err != nil {
		return err
	}
	if err := h.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", ip, dev, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing up %s: %w", dev, err)
	}
	return nil
}

// lockBlocks takes the cross-process lock on lockPath; the returned func
// releases it.
func lockBlocks() (func(), error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the veth block lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("locking %s: %w", lockPath, err)
	}
	// Closing the file releases the lock.
	return func() { _ = f.Close() }, nil
}

// freeBlock returns the first /30 of linkRange that no local address or
// connected network overlaps (another test's veth, a leftover of a killed
// run, a real interface) and that holds none of NamedAddrs. Call it under
// lockBlocks.
func freeBlock() (net.IP, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	ones, bits := linkRange.Mask.Size()
	for i := 0; i < 1<<(bits-ones-2); i++ {
		block := &net.IPNet{IP: addIP(linkRange.IP, byte(4*i)), Mask: net.CIDRMask(30, 32)}
		used := false
		for _, a := range addrs {
			if block.Contains(a.IP) || a.Contains(block.IP) {
				used = true
				break
			}
		}
		for _, a := range NamedAddrs() {
			if block.Contains(a.AsSlice()) {
				used = true
			}
		}
		if !used {
			return block.IP, nil
		}
	}
	return nil, fmt.Errorf("every /30 veth block of the test range %s is in use", &linkRange)
}

func addIP(ip net.IP, n byte) net.IP {
	out := append(net.IP(nil), ip.To4()...)
	out[3] += n
	return out
}

// randomHex is 6 hex digits: short, as interface names are at most 15
// bytes.
func randomHex(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// DialContext connects from inside the namespace, for clients of listeners
// on its loopback (rest.Config.Dial, http.Transport.DialContext). The
// socket is created while the dialing goroutine's OS thread is switched
// into the namespace, and belongs to it for its whole life; the thread is
// switched back before anything else runs on it. (Threads are not thrown
// away: the hub harness starts processes with Pdeathsig, which a dying
// thread fires at the children it forked.)
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("reading the current network namespace: %w", err)}
			return
		}
		defer func() { _ = orig.Close() }()
		if err := netns.Set(n.Handle); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("entering network namespace %s: %w", n.Name, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if serr := netns.Set(orig); serr != nil {
			// Left locked, the thread ends with this goroutine instead
			// of running other code in the wrong namespace.
			if c != nil {
				_ = c.Close()
			}
			ch <- result{err: fmt.Errorf("leaving network namespace %s: %w", n.Name, serr)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{c, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// silentMAC is a documentation MAC address (RFC 7042,
// 00-00-5E-00-53-00/24): no device has it.
var silentMAC = net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x53, 0x01}

// Silence cuts l silently, both ways, as a link whose packets vanish:
// each end's neighbour entry for the other end's address is pinned to a
// MAC address no device has, so every frame sent on the link is addressed
// to nobody and the receiving end discards it. No error reaches any socket:
// new connections get no SYN-ACK and established ones no answer, until
// their own timeouts. (A blackhole route would not do: the kernel fails a
// new connect to a blackholed address at once with EINVAL.) Only the
// link's own two addresses are affected. The returned restore removes the
// pinned entries, after which the next packet resolves the real addresses
// by ARP; it is also a cleanup, and safe to call more than once.
func (n *NS) Silence(tb testing.TB, l *Link) (restore func() error) {
	tb.Helper()
	hostH, err := netlink.NewHandle()
	if err != nil {
		tb.Fatal(err)
	}
	nsH, err := netlink.NewHandleAt(n.Handle)
	if err != nil {
		hostH.Close()
		tb.Fatal(err)
	}
	type end struct {
		h       *netlink.Handle
		dev, ip string
		neigh   *netlink.Neigh
	}
	// Each end's entry for its peer.
	ends := []*end{{h: hostH, dev: l.HostDev, ip: l.NSIP}, {h: nsH, dev: l.NSDev, ip: l.HostIP}}
	var once sync.Once
	var restoreErr error
	restore = func() error {
		once.Do(func() {
			for _, e := range ends {
				if e.neigh == nil {
					continue
				}
				// Gone with its device: nothing to restore.
				if err := e.h.NeighDel(e.neigh); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
					restoreErr = errors.Join(restoreErr, fmt.Errorf("removing the pinned neighbour %s on %s: %w", e.ip, e.dev, err))
				}
			}
			hostH.Close()
			nsH.Close()
		})
		return restoreErr
	}
	tb.Cleanup(func() {
		if err := restore(); err != nil {
			tb.Errorf("restoring link %s: %v", l.HostDev, err)
		}
	})
	for _, e := range ends {
		link, err := e.h.LinkByName(e.dev)
		if err != nil {
			tb.Fatalf("silencing link: %v", err)
		}
		nb := &netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: net.ParseIP(e.ip), HardwareAddr: silentMAC}
		if err := e.h.NeighSet(nb); err != nil {
			tb.Fatalf("pinning neighbour %s on %s: %v", e.ip, e.dev, err)
		}
		e.neigh = nb
	}
	return restore
}

// NamedAddrs are the addresses this machine resolves names to or asks for
// them (the IPv4 addresses in /etc/hosts and the name servers of
// /etc/resolv.conf). A test network must not cover them: a sandbox may map
// its package registries and proxies into documentation ranges, and a
// route to a test's veth over one of them cuts the machine off from it.
func NamedAddrs() []netip.Addr {
	var out []netip.Addr
	for _, f := range []string{"/etc/hosts", "/etc/resolv.conf"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for field := range strings.FieldsSeq(string(b)) {
			if a, err := netip.ParseAddr(field); err == nil && a.Is4() && !a.IsLoopback() {
				out = append(out, a)
			}
		}
	}
	return out
}
