// Package netbind_test exercises network autonomy on real kernel objects and
// real binaries: a VXLAN device in a network namespace the test creates,
// kube-apiserver killed to cut the link, and edge-ipam driven through the
// CNI library against a real host-local store.
package netbind_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/hub/hubtest"
	"github.com/edgeunit/edgeunit/internal/netbind"
	"github.com/edgeunit/edgeunit/internal/testenv"
)

const (
	nodeName = "edge-1"
	unitName = "unit-a"
)

// newNetNS creates a named network namespace, removed when the test ends
// even if it fails. It skips when the kernel (or the sandbox) refuses.
func newNetNS(t *testing.T) (path string, h netns.NsHandle) {
	t.Helper()
	name := fmt.Sprintf("eu-netbind-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Skipf("network namespaces unavailable: reading the current namespace: %v", err)
	}
	defer func() { _ = orig.Close() }()
	h, err = netns.NewNamed(name)
	// NewNamed moved this thread into the new namespace: move it back
	// before anything else runs on it.
	if serr := netns.Set(orig); serr != nil {
		panic(fmt.Sprintf("cannot return to the original network namespace: %v", serr))
	}
	if err != nil {
		t.Skipf("the kernel refused to create a network namespace (needs root/CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		_ = h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("deleting network namespace %s: %v", name, err)
		}
	})
	return filepath.Join("/var/run/netns", name), h
}

func randomMAC(t *testing.T) net.HardwareAddr {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[0] = (b[0] | 0x02) &^ 0x01 // locally administered unicast, as flannel's
	return b
}

// addVXLAN creates (or recreates) the device as flannel does, with a
// random MAC, and brings it up.
func addVXLAN(t *testing.T, h *netlink.Handle, name string) net.HardwareAddr {
	t.Helper()
	mac := randomMAC(t)
	vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac, MTU: 1450}, VxlanId: 1, Port: 8472, Learning: false}
	if err := h.LinkAdd(vx); err != nil {
		t.Skipf("the kernel refused to create a vxlan device (vxlan module missing?): %v", err)
	}
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	return mac
}

func deviceMAC(h *netlink.Handle, name string) (string, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		return "", err
	}
	return link.Attrs().HardwareAddr.String(), nil
}

// eventually polls fn every 50 ms until it returns nil, failing the test
// with fn's last error after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	if err := hubtest.WaitFor(timeout, 50*time.Millisecond, fn); err != nil {
		t.Fatalf("%s: not within %s: %v", what, timeout, err)
	}
}

func testLog(t *testing.T) logr.Logger { return testr.NewWithOptions(t, testr.Options{Verbosity: 4}) }

// controlPlane starts etcd and kube-apiserver with edgeunit's CRDs.
func controlPlane(t *testing.T) (*hubtest.ControlPlane, ctrlclient.Client) {
	t.Helper()
	cp := hubtest.StartControlPlane(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cp.AdminConfig("netbind-test")
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{filepath.Join(root, "config", "crd", "bases")}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("installing CRDs: %v", err)
	}
	scheme := k8sruntime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	_ = edgev1.AddToScheme(scheme)
	c, err := ctrlclient.New(cfg, ctrlclient.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cp, c
}

// nodeREST is the node's own identity, direct to the apiserver.
func nodeREST(cp *hubtest.ControlPlane) *rest.Config {
	cert, key := cp.NodeCredentials(nodeName)
	return &rest.Config{Host: cp.URL(), UserAgent: "edge-hub-netbind", Timeout: 2 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{CAFile: cp.CAFile, CertFile: cert, KeyFile: key}}
}

// createUnit creates the EdgeUnit and records bindings in its status, as
// the manager does.
func createUnit(t *testing.T, ctx context.Context, c ctrlclient.Client, bindings []edgev1.NodeBinding) *edgev1.EdgeUnit {
	t.Helper()
	u := &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: unitName}, Spec: edgev1.EdgeUnitSpec{
		NodePools:       []string{"pool-a"},
		NetworkAutonomy: edgev1.NetworkAutonomySpec{StablePodIPs: true, StableVTEPMAC: true, VTEPDevice: "flannel.1"},
	}}
	if err := c.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	u.Status.Bindings = bindings
	if err := c.Status().Update(ctx, u); err != nil {
		t.Fatal(err)
	}
	return u
}

// startService runs netbind until the test ends (or stop is called).
func startService(t *testing.T, cfg netbind.Config) (svc *netbind.Service, stop func()) {
	t.Helper()
	svc, err := netbind.New(cfg, testLog(t).WithName("netbind"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("netbind: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("netbind did not stop")
		}
	}
	t.Cleanup(stop)
	return svc, stop
}

// goBuild builds a package into dir.
func goBuild(t *testing.T, dir, name, pkg string) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, strings.TrimSpace(string(out)))
	}
}

type rawMergePatch []byte

func (p rawMergePatch) Type() types.PatchType                  { return types.MergePatchType }
func (p rawMergePatch) Data(ctrlclient.Object) ([]byte, error) { return p, nil }

func rawMerge(b []byte) ctrlclient.Patch { return rawMergePatch(b) }
