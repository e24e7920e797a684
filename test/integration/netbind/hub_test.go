package netbind_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/bindings"
	"github.com/edgeunit/edgeunit/internal/hub/hubtest"
	"github.com/edgeunit/edgeunit/internal/hubinstall"
	"github.com/edgeunit/edgeunit/internal/netbind"
	"github.com/edgeunit/edgeunit/internal/netnstest"
	"github.com/edgeunit/edgeunit/internal/testenv"
)

// TestHubEnforcesBindings runs the real edge-hub binary, with netbind on,
// inside a network namespace holding flannel's VXLAN device; the hub
// reaches kube-apiserver over a veth pair, with a node identity that has
// only what the Node authorizer and RBAC grant a node (config/rbac/node_reader.yaml for the
// EdgeUnit). It checks issue 6's acceptance end to end: the hub sets the
// bound VTEP MAC when the device appears and fixes flannel's annotation;
// with kube-apiserver killed it sets it again on a recreated device, and
// again after a hub restart while offline (from its durable copy: its
// reads of the EdgeUnit are not answered offline); and edge-ipam, asking
// the hub's socket, gives the bound pod its IP across DEL/ADD online,
// offline, and after that restart.
//
// The bindings are written to the EdgeUnit's status subresource as the
// bindings controller would, with the MAC it would derive for the node;
// the controller itself is tested in controllers/bindings.
func TestHubEnforcesBindings(t *testing.T) {
	const (
		unit  = "u1"
		dev   = "flannel.1"
		pod   = "pod-a"
		podIP = "10.244.1.77" // host-local alone would give 10.244.1.2 first
		// laterIP is bound to pod-c after the hub started.
		laterIP = "10.244.1.99"
	)
	// The node's namespace, and the link the hub reaches the cloud over.
	ns := netnstest.New(t, "eu-hub")
	link := ns.Link(t)
	nl, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		t.Skipf("netlink in the test namespace unavailable: %v", err)
	}
	t.Cleanup(nl.Close)
	// Skip before anything starts where the kernel has no VXLAN.
	addVXLAN(t, nl, "probe.vx")
	if l, err := nl.LinkByName("probe.vx"); err != nil || nl.LinkDel(l) != nil {
		t.Fatalf("removing the probe device: %v", err)
	}

	cp, kc := controlPlaneWith(t, hubtest.ControlPlaneOptions{BindAddress: link.HostIP})
	ctx := t.Context()
	macs := bindings.DeriveMACs([]string{nodeName, "edge-2"})
	vtepMAC := macs[nodeName]
	flannelMAC := randomMAC(t) // what flannel's device will have, and publish

	grantNodeAccess(t, ctx, kc)
	if err := kc.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Annotations: map[string]string{
		netbind.BackendDataAnnotation:           flannelData(flannelMAC.String()),
		"flannel.alpha.coreos.com/backend-type": "vxlan",
	}}}); err != nil {
		t.Fatal(err)
	}
	createNamedUnit(t, ctx, kc, unit, []edgev1.NodeBinding{
		{Node: nodeName, VTEPMAC: vtepMAC, VTEPIP: link.NSIP, Pods: []edgev1.PodIPBinding{{Pod: "default/" + pod, IP: podIP}}},
		{Node: "edge-2", VTEPMAC: macs["edge-2"]},
	})

	// The installer's unit.yaml, and the hub in the node's namespace with
	// a node identity (no system:masters).
	unitFile := filepath.Join(t.TempDir(), hubinstall.KeyUnit)
	raw, err := yaml.Marshal(hubinstall.UnitFile{Unit: unit, StableVTEPMAC: true, StablePodIPs: true, VTEPDevice: dev})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(unitFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "netbind.sock")
	cert, key := cp.ClientCredentials("system:node:"+nodeName, "system:nodes")
	hub := hubtest.StartHubWith(t, cp, cp.URL(), nodeName, hubtest.HubOptions{
		NetNS: ns.Name, AdminHost: link.NSIP, CertFile: cert, KeyFile: key,
		Args: []string{"--netbind", "--netbind-unit-file=" + unitFile, "--netbind-listen=unix://" + sock,
			// Every client cached, "other" too: netbind's reads must still
			// not be answered from the hub's cache (see below).
			"--cache-clients=kubelet,kube-proxy,coredns,flannel,tunnel-agent,other"},
	})
	eventually(t, 20*time.Second, "the hub serving the pod's binding", servesPodIP(sock, pod, podIP))

	// flannel creates its device with a random MAC: the hub sets the
	// bound one. flannel then publishes the MAC it created the device
	// with, after the hub's first check: the hub's follow-up check fixes
	// the annotation again.
	eventually(t, 10*time.Second, "the bound MAC in the annotation flannel published before", annotationIs(ctx, kc, vtepMAC))
	addVXLANWithMAC(t, nl, dev, flannelMAC)
	eventually(t, 10*time.Second, "the bound MAC on the new device", deviceMACIs(nl, dev, vtepMAC))
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, netbind.BackendDataAnnotation, flannelData(flannelMAC.String()))
	if err := kc.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, rawMerge(patch)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 25*time.Second, "the bound MAC in the annotation flannel republished", annotationIs(ctx, kc, vtepMAC))

	// edge-ipam asks the hub: the pod keeps its IP across DEL/ADD. An
	// unbound pod in between shows host-local alone would not give it.
	c := newCNI(t, "unix://"+sock)
	sandbox := 0
	readd := func(when string) {
		t.Helper()
		if sandbox > 0 {
			c.del(fmt.Sprintf("sandbox-a%d", sandbox), pod)
		}
		sandbox++
		if got := c.add(fmt.Sprintf("sandbox-a%d", sandbox), pod); got != podIP {
			t.Fatalf("%s: %s got %s from edge-ipam, want its bound %s", when, pod, got, podIP)
		}
	}
	readd("online, first ADD")
	if got := c.add("sandbox-b1", "pod-b"); got == podIP {
		t.Fatalf("unbound pod-b got %s", got)
	}
	readd("online, after DEL")

	// A pod is bound later: netbind learns it from its watch, not from a
	// GET. The hub must not later answer netbind with the older GET it
	// recorded, which would roll the durable copy back.
	var u edgev1.EdgeUnit
	if err := kc.Get(ctx, ctrlclient.ObjectKey{Name: unit}, &u); err != nil {
		t.Fatal(err)
	}
	u.Status.Bindings[0].Pods = append(u.Status.Bindings[0].Pods, edgev1.PodIPBinding{Pod: "default/pod-c", IP: laterIP})
	if err := kc.Status().Update(ctx, &u); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the later binding served", servesPodIP(sock, "pod-c", laterIP))

	// The link is cut.
	cp.KillAPIServer()
	eventually(t, 10*time.Second, "the hub offline", hubReadyz(hub, "offline"))

	// flannel restarts offline: its device comes back with a new MAC.
	recreate := func() {
		t.Helper()
		l, err := nl.LinkByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		if err := nl.LinkDel(l); err != nil {
			t.Fatal(err)
		}
		addVXLAN(t, nl, dev)
	}
	recreate()
	eventually(t, 15*time.Second, "the bound MAC on the device recreated offline", deviceMACIs(nl, dev, vtepMAC))
	readd("offline")

	// The node crashes and reboots offline: flannel's device is new again
	// before the hub is back, and the hub has only what it kept on disk.
	hub.Kill()
	recreate()
	if err := deviceMACIs(nl, dev, vtepMAC)(); err == nil {
		t.Fatal("the recreated device already has the bound MAC: the test cannot tell")
	}
	hub.Start()
	eventually(t, 10*time.Second, "the bound MAC after the hub restarted offline", deviceMACIs(nl, dev, vtepMAC))
	eventually(t, 10*time.Second, "the binding served after the hub restarted offline", servesPodIP(sock, pod, podIP))
	readd("offline, after the hub restarted")
	eventually(t, 15*time.Second, "the later binding kept across the restart offline", servesPodIP(sock, "pod-c", laterIP))
	if err := hubReadyz(hub, "offline")(); err != nil {
		t.Fatalf("the apiserver is dead, yet: %v", err)
	}
}

// grantNodeAccess waits until the node identity has what a cluster gives
// a kubelet's: the control plane runs the Node authorizer, and hubtest
// installs the project's node_reader.yaml as shipped, which is what lets
// it read EdgeUnits.
func grantNodeAccess(t *testing.T, ctx context.Context, kc ctrlclient.Client) {
	t.Helper()
	user, groups := "system:node:"+nodeName, []string{"system:nodes"}
	for _, attrs := range []authorizationv1.ResourceAttributes{
		{Resource: "nodes", Verb: "get", Name: nodeName},
		{Group: edgev1.GroupVersion.Group, Resource: "edgeunits", Verb: "watch"},
	} {
		if err := testenv.WaitAllowed(ctx, kc, user, groups, attrs, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// servesPodIP checks the hub's binding server.
func servesPodIP(sock, pod, want string) func() error {
	return func() error {
		ip, code, err := lookupPodIP(sock, pod)
		if err != nil {
			return err
		}
		if ip != want {
			return fmt.Errorf("pod %s: %d %q, want %s", pod, code, ip, want)
		}
		return nil
	}
}

// hubReadyz checks that the hub's /readyz answers 200 mentioning state.
func hubReadyz(h *hubtest.Hub, state string) func() error {
	hc := &http.Client{Timeout: 2 * time.Second}
	return func() error {
		resp, err := hc.Get(h.AdminURL() + "/readyz")
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), state) {
			return fmt.Errorf("readyz %d %q, want 200 %s", resp.StatusCode, b, state)
		}
		return nil
	}
}
