//go:build linux

package netbind

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// enforcer keeps the VXLAN device's MAC equal to the bound one. It acts at
// start, on every RTM_NEWLINK for the device (flannel recreating it after a
// restart), when the bindings change, and on a periodic resync in case an
// event was lost.
type enforcer struct {
	device string
	store  *Store
	resync time.Duration
	log    logr.Logger
	// ns is the namespace to work in; netns.None() for the current one.
	ns netns.NsHandle
	// changed is told when the enforcer changed the device's MAC.
	changed func()
	// limit bounds how often the MAC is set, should another agent keep
	// resetting it: the enforcer never spins.
	limit *rate.Limiter

	mu      sync.Mutex
	applied int // how many times the MAC was set (tests, metrics)
}

func newEnforcer(device string, store *Store, resync time.Duration, ns netns.NsHandle, changed func(), log logr.Logger) *enforcer {
	return &enforcer{device: device, store: store, resync: resync, ns: ns, changed: changed, log: log,
		limit: rate.NewLimiter(rate.Every(time.Second), 5)}
}

// Applied is how many times the enforcer set the device's MAC.
func (e *enforcer) Applied() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.applied
}

func (e *enforcer) handle() (*netlink.Handle, error) {
	if e.ns.IsOpen() {
		return netlink.NewHandleAt(e.ns)
	}
	return netlink.NewHandle()
}

func (e *enforcer) run(ctx context.Context) {
	h, err := e.handle()
	for err != nil {
		e.log.Error(err, "Opening netlink failed, retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(e.resync):
		}
		h, err = e.handle()
	}
	defer h.Close()
	for ctx.Err() == nil {
		e.subscribed(ctx, h)
		if ctx.Err() == nil {
			// The subscription broke (buffer overrun, socket error):
			// events may be lost, so resubscribe and check again.
			select {
			case <-ctx.Done():
			case <-time.After(minBackoff):
			}
		}
	}
}

// subscribed runs one link subscription until it ends or ctx does.
func (e *enforcer) subscribed(ctx context.Context, h *netlink.Handle) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	opts := netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			if ctx.Err() == nil { // not the socket closing at shutdown
				e.log.V(2).Info("Link subscription failed, resubscribing", "err", err.Error())
			}
		},
		// Room for bursts of pod veth events on a busy node.
		ReceiveBufferSize: 1 << 20,
	}
	if e.ns.IsOpen() {
		opts.Namespace = &e.ns
	}
	if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
		e.log.Error(err, "Subscribing to link updates failed")
		// Still enforce on the resync below.
	}
	// Enforce after subscribing, so a device created in between is seen.
	e.enforce(h)
	ticker := time.NewTicker(e.resync)
	defer ticker.Stop()
	var retry <-chan time.Time
	changed := e.store.Changed()
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-updates:
			if !ok {
				return
			}
			if u.Link == nil || u.Attrs().Name != e.device {
				continue
			}
			if u.Header.Type == unix.RTM_DELLINK {
				e.log.V(2).Info("VTEP device removed", "device", e.device)
				continue
			}
			if mac := e.store.Get().VTEPMAC; mac == "" || strings.EqualFold(u.Attrs().HardwareAddr.String(), mac) {
				continue
			}
			if d := e.limit.Reserve().Delay(); d > 0 {
				retry = time.After(d)
				continue
			}
			e.enforce(h)
		case <-retry:
			retry = nil
			e.enforce(h)
		case <-changed:
			changed = e.store.Changed()
			e.enforce(h)
		case <-ticker.C:
			e.enforce(h)
		}
	}
}

// enforce sets the device's MAC when it differs from the bound one.
func (e *enforcer) enforce(h *netlink.Handle) {
	mac := e.store.Get().VTEPMAC
	if mac == "" {
		return
	}
	set, err := setMAC(h, e.device, mac)
	if err != nil {
		e.log.Error(err, "Setting the VTEP MAC failed", "device", e.device, "vtepMAC", mac)
		return
	}
	if set {
		e.mu.Lock()
		e.applied++
		e.mu.Unlock()
		e.log.V(2).Info("VTEP MAC set to the bound one", "device", e.device, "vtepMAC", mac)
		if e.changed != nil {
			e.changed()
		}
	}
}

// setMAC sets device's hardware address to mac unless it has it already.
// A missing device is not an error: flannel has not created it yet, and
// its creation is an event. A VXLAN device changes its MAC while up
// (IFF_LIVE_ADDR_CHANGE); for drivers that refuse with EBUSY the device is
// taken down for the change and brought back up.
func setMAC(h *netlink.Handle, device, mac string) (bool, error) {
	want, err := net.ParseMAC(mac)
	if err != nil {
		return false, fmt.Errorf("bound MAC %q: %w", mac, err)
	}
	link, err := h.LinkByName(device)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, nil
		}
		return false, fmt.Errorf("looking up %s: %w", device, err)
	}
	if strings.EqualFold(link.Attrs().HardwareAddr.String(), want.String()) {
		return false, nil
	}
	err = h.LinkSetHardwareAddr(link, want)
	if errors.Is(err, unix.EBUSY) && link.Attrs().Flags&net.FlagUp != 0 {
		if err = h.LinkSetDown(link); err == nil {
			err = h.LinkSetHardwareAddr(link, want)
			if upErr := h.LinkSetUp(link); err == nil {
				err = upErr
			}
		}
	}
	if err != nil {
		return false, fmt.Errorf("setting the MAC of %s to %s: %w", device, mac, err)
	}
	return true, nil
}
