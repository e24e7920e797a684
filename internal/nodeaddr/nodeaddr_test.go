package nodeaddr

import (
	"net"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/edgeunit/edgeunit/internal/netnstest"
)

// inNS runs fn on a thread switched into ns, and switches it back.
func inNS(t *testing.T, ns *netnstest.NS, fn func() error) error {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = orig.Close() }()
	if err := netns.Set(ns.Handle); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // never run other code in the wrong namespace
		}
	}()
	return fn()
}

// TestLoopbackAddress: the address lands on lo with host scope, adding it
// twice and removing it twice are no errors, and nothing is left.
func TestLoopbackAddress(t *testing.T) {
	ns := netnstest.New(t, "eu-addr")
	ip := net.ParseIP("169.254.31.1")
	h, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		t.Skipf("netlink in the test namespace unavailable: %v", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	on := func() (bool, int) {
		addrs, err := h.AddrList(lo, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if a.IP.Equal(ip) {
				return true, a.Scope
			}
		}
		return false, 0
	}
	for range 2 {
		if err := inNS(t, ns, func() error { return EnsureLoopback(ip) }); err != nil {
			t.Fatal(err)
		}
	}
	if ok, scope := on(); !ok || scope != unix.RT_SCOPE_HOST {
		t.Fatalf("on lo: %v, scope %d; want it there with host scope (%d)", ok, scope, unix.RT_SCOPE_HOST)
	}
	for range 2 {
		if err := inNS(t, ns, func() error { return RemoveLoopback(ip) }); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := on(); ok {
		t.Fatal("the address is still on lo after RemoveLoopback")
	}
}
