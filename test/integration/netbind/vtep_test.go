package netbind_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/netbind"
	"github.com/edgeunit/edgeunit/internal/netnstest"
)

const boundMAC = "0a:58:0a:f4:00:01"

// TestVTEPMACSurvivesFlannelRestartOffline: the hub sets the bound MAC on
// the VXLAN device and in flannel's node annotation; with kube-apiserver
// killed, flannel's device is deleted and recreated with a random MAC, and
// the bound MAC comes back; a restarted hub (a node rebooted offline) does
// the same from its durable copy alone; on reconnect the annotation
// pending since the offline change is written.
func TestVTEPMACSurvivesFlannelRestartOffline(t *testing.T) {
	ns := netnstest.New(t, "eu-netbind")
	nsPath := ns.Path
	h, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		t.Skipf("netlink in the test namespace unavailable: %v", err)
	}
	t.Cleanup(h.Close)
	const dev = "flannel.1"
	firstMAC := addVXLAN(t, h, dev)

	cp, c := controlPlane(t)
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Annotations: map[string]string{
		netbind.BackendDataAnnotation:           flannelData(firstMAC.String()),
		"flannel.alpha.coreos.com/backend-type": "vxlan",
	}}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	createUnit(t, ctx, c, []edgev1.NodeBinding{
		{Node: nodeName, VTEPMAC: boundMAC, VTEPIP: "192.0.2.10"},
		{Node: "edge-2", VTEPMAC: "0a:58:0a:f4:00:02"},
	})

	stateFile := filepath.Join(t.TempDir(), netbind.StateFileName)
	cfg := netbind.Config{NodeName: nodeName, Unit: unitName, StateFile: stateFile, StableVTEPMAC: true,
		VTEPDevice: dev, REST: nodeREST(cp), NetNS: nsPath,
		// Short so the test sees the follow-up checks; the resync is
		// a safety net the assertions below do not rely on.
		ResyncInterval: time.Minute, AnnotationResync: time.Minute}
	svc, stop := startService(t, cfg)

	eventually(t, 10*time.Second, "the bound MAC on the device", deviceMACIs(h, dev, boundMAC))
	eventually(t, 10*time.Second, "the bound MAC in flannel's annotation", annotationIs(ctx, c, boundMAC))
	eventually(t, 5*time.Second, "the durable copy", func() error {
		if b := svc.Store().Get(); b.VTEPMAC != boundMAC || b.AnnotationPending {
			return fmt.Errorf("durable copy %+v", b)
		}
		return nil
	})

	// flannel restarts just before the link is cut and publishes its new
	// random MAC; then the link goes, and its device is recreated with
	// yet another random MAC.
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, netbind.BackendDataAnnotation, flannelData("0a:00:00:00:00:99")))
	if err := c.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, rawMerge(patch)); err != nil {
		t.Fatal(err)
	}
	cp.KillAPIServer()
	recreate := func() {
		t.Helper()
		link, err := h.LinkByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkDel(link); err != nil {
			t.Fatal(err)
		}
		addVXLAN(t, h, dev)
	}
	applied := svc.MACsSet()
	recreate()
	start := time.Now()
	eventually(t, 5*time.Second, "the bound MAC back on the recreated device, offline", deviceMACIs(h, dev, boundMAC))
	t.Logf("MAC restored %s after the recreated device was up, apiserver down", time.Since(start))
	// The enforcer counts a set after the kernel took it: the count may
	// trail the device by a moment.
	eventually(t, 5*time.Second, "the enforcer counting its set", func() error {
		if n := svc.MACsSet(); n <= applied {
			return fmt.Errorf("the enforcer did not set the MAC again (%d sets)", n)
		}
		return nil
	})
	// The annotation check follows the MAC change on its own goroutine.
	eventually(t, 5*time.Second, "the annotation recorded as pending while offline", func() error {
		if !svc.Store().Get().AnnotationPending {
			return errors.New("annotation not pending")
		}
		return nil
	})

	// The node reboots offline: a new hub with only its durable copy, and
	// flannel recreates the device once more.
	stop()
	recreate()
	svc2, _ := startService(t, cfg)
	eventually(t, 5*time.Second, "the bound MAC from the durable copy after a restart offline", deviceMACIs(h, dev, boundMAC))
	if got := svc2.Store().Get(); got.VTEPMAC != boundMAC || !got.AnnotationPending {
		t.Fatalf("durable copy after restart %+v", got)
	}

	// On reconnect the annotation pending since the offline change is
	// fixed (flannel's stale MAC replaced).
	cp.StartAPIServer()
	eventually(t, 45*time.Second, "the annotation fixed after reconnect", annotationIs(ctx, c, boundMAC))
	eventually(t, 5*time.Second, "the pending flag cleared", func() error {
		if svc2.Store().Get().AnnotationPending {
			return fmt.Errorf("still pending")
		}
		return nil
	})
}
