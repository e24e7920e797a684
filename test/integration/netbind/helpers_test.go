// Package netbind_test exercises network autonomy on real kernel objects and
// real binaries: a VXLAN device in a network namespace the test creates,
// kube-apiserver killed to cut the link, and edge-ipam driven through the
// CNI library against a real host-local store.
package netbind_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/vishvananda/netlink"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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
	return addVXLANWithMAC(t, h, name, randomMAC(t))
}

// addVXLANWithMAC is addVXLAN with the MAC given.
func addVXLANWithMAC(t *testing.T, h *netlink.Handle, name string, mac net.HardwareAddr) net.HardwareAddr {
	t.Helper()
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

// deviceMACIs checks the device's MAC.
func deviceMACIs(h *netlink.Handle, dev, want string) func() error {
	return func() error {
		got, err := deviceMAC(h, dev)
		if err != nil {
			return err
		}
		if !strings.EqualFold(got, want) {
			return fmt.Errorf("device MAC %s, want %s", got, want)
		}
		return nil
	}
}

// flannelData is flannel's backend-data annotation for a VXLAN VTEP.
func flannelData(mac string) string { return fmt.Sprintf(`{"VNI":1,"VtepMAC":%q}`, mac) }

// annotationIs checks that the node's backend-data annotation carries the
// MAC and kept flannel's other fields.
func annotationIs(ctx context.Context, c ctrlclient.Client, want string) func() error {
	return func() error {
		var n corev1.Node
		if err := c.Get(ctx, types.NamespacedName{Name: nodeName}, &n); err != nil {
			return err
		}
		var data map[string]any
		if err := json.Unmarshal([]byte(n.Annotations[netbind.BackendDataAnnotation]), &data); err != nil {
			return err
		}
		if mac, _ := data["VtepMAC"].(string); !strings.EqualFold(mac, want) || data["VNI"] != float64(1) {
			return fmt.Errorf("backend-data %v, want VtepMAC %s and VNI 1 kept", data, want)
		}
		return nil
	}
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
	return controlPlaneWith(t, hubtest.ControlPlaneOptions{})
}

// controlPlaneWith is controlPlane with options; its client is the admin's,
// and its scheme also knows RBAC.
func controlPlaneWith(t *testing.T, opts hubtest.ControlPlaneOptions) (*hubtest.ControlPlane, ctrlclient.Client) {
	t.Helper()
	cp := hubtest.StartControlPlaneWith(t, opts)
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
	_ = rbacv1.AddToScheme(scheme)
	_ = authorizationv1.AddToScheme(scheme)
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
	return &rest.Config{Host: cp.URL(), UserAgent: "edge-hub-netbind",
		TLSClientConfig: rest.TLSClientConfig{CAFile: cp.CAFile, CertFile: cert, KeyFile: key}}
}

// createUnit creates the EdgeUnit unitName and records bindings in its
// status, as the manager does.
func createUnit(t *testing.T, ctx context.Context, c ctrlclient.Client, bindings []edgev1.NodeBinding) *edgev1.EdgeUnit {
	t.Helper()
	return createNamedUnit(t, ctx, c, unitName, bindings)
}

// createNamedUnit is createUnit for the unit name.
func createNamedUnit(t *testing.T, ctx context.Context, c ctrlclient.Client, name string, bindings []edgev1.NodeBinding) *edgev1.EdgeUnit {
	t.Helper()
	u := &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: edgev1.EdgeUnitSpec{
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
