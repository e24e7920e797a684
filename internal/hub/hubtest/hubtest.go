// Package hubtest runs a real control plane (etcd and kube-apiserver from
// the envtest binaries, as processes this package starts and stops itself)
// and the edge-hub binary, for the hub's integration tests and benchmarks.
// The apiserver can be killed and restarted on the same etcd data, so
// resourceVersions continue across a cut.
package hubtest

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/testenv"
)

// FreePort returns a loopback port nothing listens on right now, outside the
// kernel's ephemeral range so a process restarted on it finds it free again.
func FreePort(tb testing.TB) int {
	tb.Helper()
	p, err := testenv.RestartablePort("127.0.0.1")
	if err != nil {
		tb.Fatalf("finding a free port: %v", err)
	}
	return p
}

// Process is a child process with its log file.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Log  string
	done chan struct{}
	err  error
}

func startProcess(tb testing.TB, name, logPath, bin string, args ...string) *Process {
	tb.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		tb.Fatalf("log file: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		tb.Fatalf("starting %s: %v", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig and, when wait is set, waits (bounded) for the exit.
func (p *Process) Signal(sig syscall.Signal, wait time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = p.Cmd.Process.Signal(sig)
	if wait <= 0 {
		return nil
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(wait):
		_ = p.Cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %s after %v; killed", p.Name, wait, sig)
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill() { _ = p.Signal(syscall.SIGKILL, 10*time.Second) }

// Tail returns the end of the process log, for failure messages.
func (p *Process) Tail(n int) string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// ControlPlane is etcd plus kube-apiserver.
type ControlPlane struct {
	Dir      string
	assets   string
	etcdPort int
	peerPort int
	APIPort  int
	// BindAddress is the apiserver's address (127.0.0.1 unless
	// ControlPlaneOptions said otherwise).
	BindAddress string
	Etcd        *Process
	APIServer   *Process
	CA          *certs.CA
	CAFile      string
	// Admin credentials (system:masters).
	AdminCert, AdminKey string
	tb                  testing.TB
}

// ControlPlaneOptions adjust StartControlPlaneWith.
type ControlPlaneOptions struct {
	// BindAddress is the IP kube-apiserver listens on (and its serving
	// certificate names): an address of a veth reaching a test's network
	// namespace, for a hub running inside it. Default 127.0.0.1.
	BindAddress string
}

// StartControlPlane starts etcd and the apiserver and stops them when the
// test ends.
func StartControlPlane(tb testing.TB) *ControlPlane {
	tb.Helper()
	return StartControlPlaneWith(tb, ControlPlaneOptions{})
}

// StartControlPlaneWith is StartControlPlane with options.
func StartControlPlaneWith(tb testing.TB, opts ControlPlaneOptions) *ControlPlane {
	tb.Helper()
	assets, err := testenv.AssetsDir()
	if err != nil {
		tb.Skipf("envtest binaries unavailable: %v", err)
	}
	bind := cmp.Or(opts.BindAddress, "127.0.0.1")
	if net.ParseIP(bind) == nil {
		tb.Fatalf("bind address %q is not an IP", bind)
	}
	dir := tb.TempDir()
	cp := &ControlPlane{Dir: dir, assets: assets, tb: tb, BindAddress: bind,
		etcdPort: FreePort(tb), peerPort: FreePort(tb), APIPort: FreePort(tb)}
	cp.writePKI()
	tb.Cleanup(cp.Stop)
	cp.Etcd = startProcess(tb, "etcd", filepath.Join(dir, "etcd.log"), filepath.Join(assets, "etcd"),
		"--name=default",
		"--data-dir="+filepath.Join(dir, "etcd-data"),
		fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", cp.etcdPort),
		fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", cp.etcdPort),
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", cp.peerPort),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", cp.peerPort),
		fmt.Sprintf("--initial-cluster=default=http://127.0.0.1:%d", cp.peerPort),
		"--unsafe-no-fsync=true",
		"--quota-backend-bytes=4294967296",
	)
	cp.StartAPIServer()
	cp.grantNodes()
	return cp
}

// grantNodes grants nodes what an edgeunit install does (config/rbac), on
// top of the Node authorizer, and waits until the authorizer applies it.
func (cp *ControlPlane) grantNodes() {
	tb := cp.tb
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	scheme := runtime.NewScheme()
	_ = authorizationv1.AddToScheme(scheme)
	c, err := client.New(cp.AdminConfig("hubtest-admin"), client.Options{Scheme: scheme})
	if err != nil {
		tb.Fatal(err)
	}
	if err := testenv.ApplyManifest(ctx, c, testenv.NodeRBAC); err != nil {
		tb.Fatal(err)
	}
	if err := testenv.WaitAllowed(ctx, c, "system:node:any", []string{"system:nodes"},
		authorizationv1.ResourceAttributes{Resource: "nodes", Verb: "watch"}, 30*time.Second); err != nil {
		tb.Fatal(err)
	}
}

func (cp *ControlPlane) writePKI() {
	tb := cp.tb
	now := time.Now()
	ca, caPair, err := certs.NewCA("hubtest-ca", 24*time.Hour, now)
	if err != nil {
		tb.Fatal(err)
	}
	cp.CA = ca
	cp.CAFile = cp.write("ca.crt", caPair.CertPEM)
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	if ip := net.ParseIP(cp.BindAddress); !ip.IsLoopback() {
		ips = append(ips, ip)
	}
	serving, err := ca.Issue(certs.Request{CommonName: "kube-apiserver", DNSNames: []string{"localhost", "kubernetes"},
		IPs: ips, Lifetime: 24 * time.Hour, Server: true}, now)
	if err != nil {
		tb.Fatal(err)
	}
	cp.write("apiserver.crt", serving.CertPEM)
	cp.write("apiserver.key", serving.KeyPEM)
	admin, err := ca.Issue(certs.Request{CommonName: "hubtest-admin", Organization: []string{"system:masters"}, Lifetime: 24 * time.Hour, Client: true}, now)
	if err != nil {
		tb.Fatal(err)
	}
	cp.AdminCert, cp.AdminKey = cp.write("admin.crt", admin.CertPEM), cp.write("admin.key", admin.KeyPEM)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pub, _ := x509.MarshalPKIXPublicKey(key.Public())
	cp.write("sa.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	cp.write("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
}

func (cp *ControlPlane) write(name string, data []byte) string {
	p := filepath.Join(cp.Dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		cp.tb.Fatal(err)
	}
	return p
}

// NodeCredentials issues a client certificate for node, as a kubelet has
// one (user system:node:<node> in group system:nodes: the Node authorizer,
// NodeRestriction and the project's node RBAC decide what it may do), and
// returns cert and key files.
func (cp *ControlPlane) NodeCredentials(node string) (certFile, keyFile string) {
	return cp.ClientCredentials("system:node:"+node, "system:nodes")
}

// ClientCredentials issues a client certificate for user in groups and
// returns cert and key files.
func (cp *ControlPlane) ClientCredentials(user string, groups ...string) (certFile, keyFile string) {
	kp, err := cp.CA.Issue(certs.Request{CommonName: user, Organization: groups, Lifetime: 24 * time.Hour, Client: true}, time.Now())
	if err != nil {
		cp.tb.Fatal(err)
	}
	file := strings.NewReplacer(":", "_", "/", "_").Replace(user)
	return cp.write(file+".crt", kp.CertPEM), cp.write(file+".key", kp.KeyPEM)
}

// URL is the apiserver's address.
func (cp *ControlPlane) URL() string {
	return "https://" + net.JoinHostPort(cp.BindAddress, strconv.Itoa(cp.APIPort))
}

// StartAPIServer starts kube-apiserver (again) on the same port and etcd
// data, and waits until it is ready.
func (cp *ControlPlane) StartAPIServer() {
	tb := cp.tb
	tb.Helper()
	d := cp.Dir
	cp.APIServer = startProcess(tb, "kube-apiserver", filepath.Join(d, "apiserver.log"), filepath.Join(cp.assets, "kube-apiserver"),
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", cp.etcdPort),
		fmt.Sprintf("--secure-port=%d", cp.APIPort),
		"--bind-address="+cp.BindAddress,
		"--advertise-address="+cp.BindAddress,
		"--cert-dir="+filepath.Join(d, "apiserver-certs"),
		"--tls-cert-file="+filepath.Join(d, "apiserver.crt"),
		"--tls-private-key-file="+filepath.Join(d, "apiserver.key"),
		"--client-ca-file="+cp.CAFile,
		"--service-account-issuer="+cp.URL()+"/",
		"--service-account-key-file="+filepath.Join(d, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(d, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		// As a production cluster: nodes are authorized as nodes.
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--max-requests-inflight=2000",
		"--max-mutating-requests-inflight=1000",
	)
	if err := WaitFor(90*time.Second, 200*time.Millisecond, func() error {
		if cp.APIServer.Exited() {
			return fmt.Errorf("kube-apiserver exited: %s", cp.APIServer.Tail(3000))
		}
		return cp.ready()
	}); err != nil {
		tb.Fatalf("kube-apiserver not ready: %v\n%s", err, cp.APIServer.Tail(3000))
	}
}

func (cp *ControlPlane) ready() error {
	c := cp.adminHTTP()
	resp, err := c.Get(cp.URL() + "/readyz")
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz %d: %s", resp.StatusCode, b)
	}
	return nil
}

func (cp *ControlPlane) adminHTTP() *http.Client {
	pair, _ := tls.LoadX509KeyPair(cp.AdminCert, cp.AdminKey)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: cp.CA.Pool(), Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}}
}

// KillAPIServer kills kube-apiserver at once (a crash or cut cable).
func (cp *ControlPlane) KillAPIServer() { cp.APIServer.Kill() }

// Stop stops everything (also a test cleanup).
func (cp *ControlPlane) Stop() {
	if cp.APIServer != nil {
		_ = cp.APIServer.Signal(syscall.SIGTERM, 15*time.Second)
	}
	if cp.Etcd != nil {
		_ = cp.Etcd.Signal(syscall.SIGTERM, 15*time.Second)
	}
}

// AdminConfig is a client-go config for the admin, direct to the apiserver.
func (cp *ControlPlane) AdminConfig(userAgent string) *rest.Config {
	return &rest.Config{
		Host: cp.URL(), UserAgent: userAgent, QPS: -1,
		TLSClientConfig: rest.TLSClientConfig{CAFile: cp.CAFile, CertFile: cp.AdminCert, KeyFile: cp.AdminKey},
		ContentConfig:   rest.ContentConfig{ContentType: "application/json", AcceptContentTypes: "application/json"},
	}
}

// WaitFor polls fn every interval until it returns nil or timeout passes.
func WaitFor(timeout, interval time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = fn(); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}

// BuildHub builds cmd/edge-hub into the test's temporary directory (the
// build cache makes this a link step after the first time).
func BuildHub(tb testing.TB) string {
	tb.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "edge-hub")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./cmd/edge-hub")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./cmd/edge-hub: %v\n%s", err, out)
	}
	return path
}

// Hub is an edge-hub process.
type Hub struct {
	Bin, DataDir, Node  string
	HTTPPort, HTTPSPort int
	AdminPort           int
	// AdminHost is the admin listener's address; NetNS the network
	// namespace the hub runs in (empty: the test's).
	AdminHost, NetNS string
	Args             []string
	Proc             *Process
	tb               testing.TB
	restarts         int
}

// HubOptions adjust StartHubWith.
type HubOptions struct {
	// NetNS runs the hub inside this named network namespace (ip netns
	// exec), so what it does to network devices happens there. Its
	// loopback listeners are then the namespace's: set AdminHost to an
	// address of the namespace the test can route to.
	NetNS string
	// AdminHost is the address the admin listener binds and the test
	// polls. Default 127.0.0.1.
	AdminHost string
	// CertFile and KeyFile are the hub's client credentials. Default
	// NodeCredentials(node).
	CertFile, KeyFile string
	// Args are appended to the hub's flags.
	Args []string
}

// StartHub runs edge-hub for node against server with the node's
// credentials; extra flags are appended.
func StartHub(tb testing.TB, cp *ControlPlane, server, node string, extra ...string) *Hub {
	tb.Helper()
	return StartHubWith(tb, cp, server, node, HubOptions{Args: extra})
}

// StartHubWith is StartHub with options.
func StartHubWith(tb testing.TB, cp *ControlPlane, server, node string, opts HubOptions) *Hub {
	tb.Helper()
	cert, key := opts.CertFile, opts.KeyFile
	if cert == "" {
		cert, key = cp.NodeCredentials(node)
	}
	// Ports are picked free in the test's namespace; a new namespace has
	// nothing listening, so they are free there too.
	h := &Hub{Bin: BuildHub(tb), DataDir: filepath.Join(tb.TempDir(), "hub"), Node: node,
		HTTPPort: FreePort(tb), HTTPSPort: FreePort(tb), AdminPort: FreePort(tb),
		AdminHost: cmp.Or(opts.AdminHost, "127.0.0.1"), NetNS: opts.NetNS, tb: tb}
	h.Args = append([]string{
		"--node-name=" + node, "--server=" + server, "--ca-file=" + cp.CAFile,
		"--cert-file=" + cert, "--key-file=" + key,
		"--data-dir=" + h.DataDir,
		fmt.Sprintf("--listen-http=127.0.0.1:%d", h.HTTPPort),
		fmt.Sprintf("--listen-https=127.0.0.1:%d", h.HTTPSPort),
		"--listen-admin=" + net.JoinHostPort(h.AdminHost, strconv.Itoa(h.AdminPort)),
		"--probe-interval=500ms", "--probe-timeout=2s", // a slow but live apiserver stays online
		"--v=2",
	}, opts.Args...)
	tb.Cleanup(func() {
		if h.Proc != nil {
			_ = h.Proc.Signal(syscall.SIGTERM, 10*time.Second)
			if tb.Failed() {
				tb.Logf("edge-hub log tail:\n%s", h.Proc.Tail(6000))
			}
		}
	})
	h.Start()
	return h
}

// Start starts (or restarts) the process and waits for /readyz.
func (h *Hub) Start() {
	h.tb.Helper()
	h.restarts++
	bin, args := h.Bin, h.Args
	if h.NetNS != "" {
		// ip execs the hub in place: the process (and its PID) is the hub.
		bin, args = "ip", append([]string{"netns", "exec", h.NetNS, h.Bin}, h.Args...)
	}
	h.Proc = startProcess(h.tb, "edge-hub", filepath.Join(filepath.Dir(h.DataDir), "hub.log"), bin, args...)
	hc := &http.Client{Timeout: 2 * time.Second}
	if err := WaitFor(30*time.Second, 50*time.Millisecond, func() error {
		if h.Proc.Exited() {
			return fmt.Errorf("edge-hub exited: %s", h.Proc.Tail(3000))
		}
		resp, err := hc.Get(h.AdminURL() + "/readyz")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	}); err != nil {
		h.tb.Fatalf("edge-hub not ready: %v", err)
	}
}

// Stop stops the hub gracefully.
func (h *Hub) Stop() { _ = h.Proc.Signal(syscall.SIGTERM, 10*time.Second) }

// Kill kills the hub with SIGKILL.
func (h *Hub) Kill() { h.Proc.Kill() }

// URL is the plain-HTTP proxy address (inside NetNS when that is set).
func (h *Hub) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", h.HTTPPort) }

// AdminURL is the metrics/health address.
func (h *Hub) AdminURL() string {
	return "http://" + net.JoinHostPort(h.AdminHost, strconv.Itoa(h.AdminPort))
}

// StorePath is the hub's cache file.
func (h *Hub) StorePath() string { return filepath.Join(h.DataDir, "cache.db") }

// Config is a client-go config through the hub's HTTP listener, with the
// kubelet's default encodings: protobuf bodies, protobuf or JSON answers.
func (h *Hub) Config(userAgent string) *rest.Config {
	return &rest.Config{Host: h.URL(), UserAgent: userAgent, QPS: -1,
		ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf",
			AcceptContentTypes: "application/vnd.kubernetes.protobuf,application/json"}}
}

// Metric returns the sum of the samples of a metric whose labels contain
// every one of labels ("k=\"v\"").
func (h *Hub) Metric(name string, labels ...string) (float64, error) {
	resp, err := http.Get(h.AdminURL() + "/metrics")
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	sum, found := 0.0, false
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		sum, found = sum+v, true
	}
	if !found {
		return 0, fmt.Errorf("metric %s%v not found", name, labels)
	}
	return sum, nil
}

// RSSKiB reads a process's resident and peak resident set size.
func RSSKiB(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			hwm, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return rss, hwm, nil
}

// SignKubeletServing stands in for edgeunit's approver and kube-controller-manager's
// kubelet-serving signer: it approves every pending kubelet-serving CSR and
// signs it with the cluster CA, until ctx ends.
func SignKubeletServing(ctx context.Context, tb testing.TB, admin kubernetes.Interface, ca *certs.CA) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		list, err := admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, c := range list.Items {
			if c.Spec.SignerName != certificatesv1.KubeletServingSignerName || len(c.Status.Certificate) > 0 {
				continue
			}
			c.Status.Conditions = append(c.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
				Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Test", LastUpdateTime: metav1.Now()})
			approved, err := admin.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, c.Name, &c, metav1.UpdateOptions{})
			if err != nil {
				continue
			}
			block, _ := pem.Decode(c.Spec.Request)
			req, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				tb.Errorf("CSR %s: %v", c.Name, err)
				continue
			}
			der, err := ca.Sign(certs.Request{CommonName: req.Subject.CommonName, Organization: req.Subject.Organization,
				IPs: req.IPAddresses, DNSNames: req.DNSNames, Lifetime: time.Hour, Server: true}, req.PublicKey, time.Now())
			if err != nil {
				tb.Errorf("signing CSR %s: %v", c.Name, err)
				continue
			}
			approved.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
			_, _ = admin.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, approved, metav1.UpdateOptions{})
		}
	}
}

// SeedInClusterReader creates what the in-cluster tests read with a pod's
// token: ConfigMap default/data (k: "from the cloud"), service account
// default/reader, which may get ConfigMaps in default, and
// default/stranger, which may not. token issues a one-hour token for one
// of them.
func SeedInClusterReader(ctx context.Context, tb testing.TB, admin kubernetes.Interface) (token func(sa string) string) {
	tb.Helper()
	check := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	_, err := admin.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Data: map[string]string{"k": "from the cloud"}}, metav1.CreateOptions{})
	check(err)
	for _, sa := range []string{"reader", "stranger"} {
		_, err := admin.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		check(err)
	}
	_, err = admin.RbacV1().Roles("default").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{})
	check(err)
	_, err = admin.RbacV1().RoleBindings("default").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "reader"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "reader", Namespace: "default"}}}, metav1.CreateOptions{})
	check(err)
	return func(sa string) string {
		tb.Helper()
		tr, err := admin.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
		check(err)
		return tr.Status.Token
	}
}
