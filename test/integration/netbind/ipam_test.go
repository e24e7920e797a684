package netbind_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/netbind"
	"github.com/edgeunit/edgeunit/internal/netbind/wire"
)

// cni drives edge-ipam as a CNI runtime's main plugin would (through the
// CNI library's invoke package), with host-local as its delegate.
type cni struct {
	t       *testing.T
	path    string // CNI_PATH with edge-ipam and host-local
	conf    []byte
	dataDir string
}

func newCNI(t *testing.T, hub string) *cni {
	t.Helper()
	binDir := t.TempDir()
	goBuild(t, binDir, "edge-ipam", "./cmd/edge-ipam")
	goBuild(t, binDir, "host-local", "github.com/containernetworking/plugins/plugins/ipam/host-local")
	c := &cni{t: t, path: binDir, dataDir: t.TempDir()}
	c.conf = c.netconf(hub, fmt.Sprintf(`{"type":"host-local","dataDir":%q}`, c.dataDir))
	return c
}

// netconf is the bridge configuration flannel's CNI plugin renders with
// edge-ipam as the IPAM: flannel writes the node's subnet ("ranges") and
// the cluster route into the IPAM section it was given.
func (c *cni) netconf(hub, delegate string) []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"cbr0","type":"bridge","bridge":"cni0","isGateway":true,"hairpinMode":true,
		"ipam":{"type":"edge-ipam","hub":%q,"timeout":"10s","delegate":%s,
			"ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}]}}`, hub, delegate))
}

func (c *cni) args(cmd, sandbox, pod string) *invoke.Args {
	return &invoke.Args{Command: cmd, ContainerID: sandbox, NetNS: "/var/run/netns/" + sandbox, IfName: "eth0",
		PluginArgsStr: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + pod + ";K8S_POD_INFRA_CONTAINER_ID=" + sandbox,
		Path:          c.path}
}

func (c *cni) addConf(conf []byte, sandbox, pod string) (string, error) {
	res, err := invoke.ExecPluginWithResult(context.Background(), filepath.Join(c.path, "edge-ipam"), conf, c.args("ADD", sandbox, pod), nil)
	if err != nil {
		return "", err
	}
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return "", err
	}
	if len(r.IPs) != 1 {
		return "", fmt.Errorf("result %v: want one IP", r)
	}
	return r.IPs[0].Address.IP.String(), nil
}

// add is ADD for a new sandbox of pod; it fails the test on error.
func (c *cni) add(sandbox, pod string) string {
	c.t.Helper()
	ip, err := c.addConf(c.conf, sandbox, pod)
	if err != nil {
		c.t.Fatalf("ADD %s (pod %s): %v", sandbox, pod, err)
	}
	return ip
}

func (c *cni) del(sandbox, pod string) {
	c.t.Helper()
	if err := invoke.ExecPluginWithoutResult(context.Background(), filepath.Join(c.path, "edge-ipam"), c.conf, c.args("DEL", sandbox, pod), nil); err != nil {
		c.t.Fatalf("DEL %s: %v", sandbox, err)
	}
}

func (c *cni) check(sandbox, pod string) error {
	return invoke.ExecPluginWithoutResult(context.Background(), filepath.Join(c.path, "edge-ipam"), c.conf, c.args("CHECK", sandbox, pod), nil)
}

// held reads host-local's store: IP -> sandbox.
func (c *cni) held() map[string]string {
	c.t.Helper()
	dir := filepath.Join(c.dataDir, "cbr0")
	entries, err := os.ReadDir(dir)
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if net.ParseIP(e.Name()) == nil {
			continue // lock, last_reserved_ip.0
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			c.t.Fatal(err)
		}
		out[e.Name()] = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	return out
}

// lookupPodIP asks the binding server over its unix socket.
func lookupPodIP(sock, pod string) (string, int, error) {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Get("http://netbind" + wire.PodIPPath + "?namespace=default&name=" + pod)
	if err != nil {
		return "", 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	var a wire.PodIP
	_ = json.NewDecoder(resp.Body).Decode(&a)
	return a.IP, resp.StatusCode, nil
}

// lookupBoundIPs asks the binding server for every bound IP.
func lookupBoundIPs(sock string) ([]string, error) {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Get("http://netbind" + wire.BoundIPsPath)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var a wire.BoundIPs
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%d: %v", resp.StatusCode, err)
	}
	return a.IPs, nil
}

func setPodBindings(t *testing.T, c ctrlclient.Client, pods map[string]string) {
	t.Helper()
	var u edgev1.EdgeUnit
	if err := c.Get(context.Background(), ctrlclient.ObjectKey{Name: unitName}, &u); err != nil {
		t.Fatal(err)
	}
	nb := edgev1.NodeBinding{Node: nodeName, VTEPMAC: boundMAC}
	for pod, ip := range pods {
		nb.Pods = append(nb.Pods, edgev1.PodIPBinding{Pod: "default/" + pod, IP: ip})
	}
	u.Status.Bindings = []edgev1.NodeBinding{nb}
	if err := c.Status().Update(context.Background(), &u); err != nil {
		t.Fatal(err)
	}
}

// TestEdgeIPAMKeepsPodIPs: a pod gets its IP back across DEL/ADD, with the
// apiserver up, with it killed, and after the hub restarts offline; while
// it is down a new pod does not get its IP, though host-local's round robin
// comes to it next; a bound IP held by another sandbox, or out of range,
// falls back to a fresh IP, so two pods never share one; with no hub at
// all, pods still get IPs.
func TestEdgeIPAMKeepsPodIPs(t *testing.T) {
	cp, kc := controlPlane(t)
	ctx := context.Background()
	if err := kc.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}); err != nil {
		t.Fatal(err)
	}
	createUnit(t, ctx, kc, nil)
	sock := filepath.Join(t.TempDir(), "netbind.sock")
	stateFile := filepath.Join(t.TempDir(), netbind.StateFileName)
	cfg := netbind.Config{NodeName: nodeName, Unit: unitName, StateFile: stateFile, StablePodIPs: true,
		Listen: "unix://" + sock, REST: nodeREST(cp)}
	_, stop := startService(t, cfg)
	c := newCNI(t, "unix://"+sock)

	// First start: no binding yet, host-local picks X, the range's first
	// address after the gateway.
	x := c.add("sandbox-a1", "pod-a")
	if x != "10.244.1.2" {
		t.Fatalf("the first pod got %s, want 10.244.1.2 (where host-local's round robin goes after the range's end)", x)
	}
	// The manager records X as pod-a's IP (and, wrongly, for pod-d too,
	// and an address outside this node's range for pod-e), and the range's
	// last address H as pod-h's.
	const h = "10.244.1.254"
	setPodBindings(t, kc, map[string]string{"pod-a": x, "pod-d": x, "pod-e": "10.99.0.5", "pod-h": h})
	eventually(t, 10*time.Second, "the binding served", func() error {
		ip, code, err := lookupPodIP(sock, "pod-a")
		if err != nil || ip != x {
			return fmt.Errorf("lookup: %q %d %v", ip, code, err)
		}
		return nil
	})
	if _, code, err := lookupPodIP(sock, "pod-b"); err != nil || code != http.StatusNotFound {
		t.Fatalf("unbound pod: %d %v, want 404", code, err)
	}
	if ips, err := lookupBoundIPs(sock); err != nil || strings.Join(ips, ",") != "10.244.1.2,10.244.1.254,10.99.0.5" {
		t.Fatalf("bound IPs %v %v, want X, H and pod-e's", ips, err)
	}

	// Another pod holding X: pod-d's (bad) binding must not give it X.
	if d := c.add("sandbox-d1", "pod-d"); d == x {
		t.Fatalf("pod-d got %s, which pod-a holds", d)
	}
	if e := c.add("sandbox-e1", "pod-e"); !strings.HasPrefix(e, "10.244.1.") {
		t.Fatalf("pod-e got %s, want a fresh IP in the node's range", e)
	}

	// pod-a's sandbox is torn down, and pod-h's started: H is the range's
	// last address, so host-local's round robin wraps around to X next.
	// A new pod must not get X while pod-a is down; pod-a gets it back.
	c.del("sandbox-a1", "pod-a")
	if got := c.add("sandbox-h1", "pod-h"); got != h {
		t.Fatalf("pod-h got %s, want its bound %s", got, h)
	}
	if b := c.add("sandbox-b1", "pod-b"); b == x || b == h {
		t.Fatalf("a new pod got %s, bound to a pod that is down", b)
	}
	if got := c.add("sandbox-a2", "pod-a"); got != x {
		t.Fatalf("online: pod-a got %s after DEL/ADD, want %s", got, x)
	}
	if err := c.check("sandbox-a2", "pod-a"); err != nil {
		t.Fatalf("CHECK: %v", err)
	}

	// Never two pods on one IP, also under concurrent ADDs where four
	// pods are bound to the same free IP Y.
	const y = "10.244.1.200"
	bindings := map[string]string{"pod-a": x, "pod-d": x, "pod-e": "10.99.0.5", "pod-h": h}
	for i := range 4 {
		bindings[fmt.Sprintf("pod-g%d", i)] = y
	}
	setPodBindings(t, kc, bindings)
	eventually(t, 10*time.Second, "the new bindings served", func() error {
		if ip, code, err := lookupPodIP(sock, "pod-g3"); err != nil || ip != y {
			return fmt.Errorf("lookup: %q %d %v", ip, code, err)
		}
		return nil
	})
	var mu sync.Mutex
	got := map[string][]string{}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			pod := fmt.Sprintf("pod-g%d", i)
			ip, err := c.addConf(c.conf, "sandbox-"+pod, pod)
			if err != nil {
				t.Errorf("concurrent ADD %s: %v", pod, err)
				return
			}
			mu.Lock()
			got[ip] = append(got[ip], pod)
			mu.Unlock()
		})
	}
	wg.Wait()
	for ip, pods := range got {
		if len(pods) > 1 {
			t.Errorf("%s given to %v", ip, pods)
		}
	}
	if len(got[y]) != 1 || !slices.Contains([]string{"pod-g0", "pod-g1", "pod-g2", "pod-g3"}, got[y][0]) {
		t.Errorf("the contended bound IP %s went to %v, want exactly one of pod-g0..3", y, got[y])
	}

	// The link is cut. Again pod-a is down while pod-h's new sandbox
	// leaves host-local's round robin just before X: the durable copy
	// alone keeps X for pod-a.
	cp.KillAPIServer()
	c.del("sandbox-a2", "pod-a")
	c.del("sandbox-h1", "pod-h")
	if got := c.add("sandbox-h2", "pod-h"); got != h {
		t.Fatalf("offline: pod-h got %s, want %s", got, h)
	}
	if got := c.add("sandbox-c1", "pod-c"); got == x {
		t.Fatalf("offline: a new pod got %s, bound to pod-a, which is down", got)
	}
	if got := c.add("sandbox-a3", "pod-a"); got != x {
		t.Fatalf("offline: pod-a got %s after DEL/ADD, want %s", got, x)
	}

	// The hub restarts while cut off: the durable copy alone.
	stop()
	_, stop2 := startService(t, cfg)
	c.del("sandbox-a3", "pod-a")
	if got := c.add("sandbox-a4", "pod-a"); got != x {
		t.Fatalf("offline after a hub restart: pod-a got %s, want %s", got, x)
	}
	if owner := c.held()[x]; owner != "sandbox-a4" {
		t.Fatalf("host-local's store gives %s to %q, want sandbox-a4", x, owner)
	}

	// No hub at all: ADD still succeeds with a fresh IP.
	stop2()
	if f := c.add("sandbox-f1", "pod-f"); f == x {
		t.Fatalf("pod-f got pod-a's %s", f)
	}

	// host-local's store: one file per IP, so one holder per IP; and no
	// sandbox holds two.
	held := c.held()
	seen := map[string]string{}
	for ip, sandbox := range held {
		if other, ok := seen[sandbox]; ok {
			t.Errorf("sandbox %s holds %s and %s", sandbox, ip, other)
		}
		seen[sandbox] = ip
	}
	if len(held) != 15 { // a4, b1, c1, d1, e1, f1, g0..g7, h2
		t.Errorf("host-local holds %d IPs, want 15: %v", len(held), held)
	}
}

// TestEdgeIPAMErrors: bad configuration gets CNI error 7 with a message
// naming the problem; VERSION lists the spec versions.
func TestEdgeIPAMErrors(t *testing.T) {
	c := newCNI(t, "unix:///nonexistent/netbind.sock")
	tests := map[string]struct {
		conf string
		want string
	}{
		"no range":     {conf: strings.Replace(string(c.conf), `"ranges"`, `"rangez"`, 1), want: `unknown field "rangez"`},
		"bad delegate": {conf: string(c.netconf("unix:///run/x.sock", `"host-local"`)), want: `"delegate" must be an object`},
		"remote hub":   {conf: string(c.netconf("http://192.0.2.1:8080", `{"type":"host-local"}`)), want: "loopback only"},
		"bad timeout":  {conf: strings.Replace(string(c.conf), `"10s"`, `"forever"`, 1), want: `"timeout" "forever"`},
		"unknown key":  {conf: strings.Replace(string(c.conf), `"timeout"`, `"timeot"`, 1), want: `unknown field "timeot"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := c.addConf([]byte(tc.conf), "sandbox-x", "pod-x")
			var cniErr *types.Error
			if !errors.As(err, &cniErr) {
				t.Fatalf("error %v (%T), want a CNI error", err, err)
			}
			if cniErr.Code != types.ErrInvalidNetworkConfig || !strings.Contains(cniErr.Msg, tc.want) {
				t.Fatalf("error code %d %q, want code %d containing %q", cniErr.Code, cniErr.Msg, types.ErrInvalidNetworkConfig, tc.want)
			}
		})
	}
	t.Run("hub unreachable", func(t *testing.T) {
		ip, err := c.addConf(c.conf, "sandbox-y", "pod-y")
		if err != nil || ip == "" {
			t.Fatalf("ADD with the hub unreachable: %q %v, want a fresh IP", ip, err)
		}
	})
	t.Run("version", func(t *testing.T) {
		info, err := invoke.GetVersionInfo(context.Background(), filepath.Join(c.path, "edge-ipam"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(info.SupportedVersions(), ","), "1.0.0") {
			t.Fatalf("supported versions %v lack 1.0.0", info.SupportedVersions())
		}
	})
}
