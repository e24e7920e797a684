//go:build linux

package testbed

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/edgeunit/edgeunit/internal/testenv"
)

// cniPluginsDir is where Debian's containernetworking-plugins installs.
const cniPluginsDir = "/usr/lib/cni"

// assets are the binaries and images the testbed runs.
type assets struct {
	k8sBin  string // kube-apiserver, etcd, kubelet, kube-proxy, kube-controller-manager, kube-scheduler
	nodeBin string // containerd, containerd-shim-runc-v2, ctr
	e2eBin  string // manager, tunnel-server, edge-ipam, testapp
	images  []string
	runc    string
}

const buildHint = "run `make e2e-deps` (hack/build-k8s.sh, hack/build-containerd.sh, hack/build-e2e.sh; runc and containernetworking-plugins from Debian)"

func findAssets() (*assets, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	a := &assets{
		k8sBin:  filepath.Join(root, "bin", "k8s"),
		nodeBin: filepath.Join(root, "bin", "node"),
		e2eBin:  filepath.Join(root, "bin", "e2e"),
	}
	for _, img := range []string{"edgeunit", "pause", "testapp"} {
		a.images = append(a.images, filepath.Join(a.e2eBin, "images", img+".tar"))
	}
	var missing []string
	need := func(p string) {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	for _, b := range []string{"kube-apiserver", "etcd", "kubelet", "kube-proxy", "kube-controller-manager", "kube-scheduler"} {
		need(a.k8s(b))
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "ctr"} {
		need(filepath.Join(a.nodeBin, b))
	}
	for _, b := range []string{"manager", "tunnel-server", "edge-ipam", "testapp"} {
		need(a.e2e(b))
	}
	for _, img := range a.images {
		need(img)
	}
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		need(filepath.Join(cniPluginsDir, p))
	}
	if a.runc, err = exec.LookPath("runc"); err != nil {
		missing = append(missing, "runc")
	}
	for _, cmd := range []string{"ip", "nsenter", "unshare", "findmnt", "mount", "kubectl"} {
		if _, err := exec.LookPath(cmd); err != nil {
			missing = append(missing, cmd)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the e2e testbed lacks %s: %s", strings.Join(missing, ", "), buildHint)
	}
	return a, nil
}

func (a *assets) k8s(name string) string { return filepath.Join(a.k8sBin, name) }
func (a *assets) e2e(name string) string { return filepath.Join(a.e2eBin, name) }

// cniPlugins are the plugins a node's /opt/cni/bin links to.
func (a *assets) cniPlugins() map[string]string {
	m := map[string]string{"edge-ipam": a.e2e("edge-ipam")}
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		m[p] = filepath.Join(cniPluginsDir, p)
	}
	return m
}

// insecureTransport probes local processes' health endpoints, whose
// serving certificates are self-signed.
func insecureTransport() *http.Transport {
	return &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // local health probes only
}
