//go:build linux

package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/edgeunit/edgeunit/controllers"
	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/testenv"
)

// ManagerNamespace is where the manager runs and keeps its children.
const ManagerNamespace = "edgeunit-system"

// TunnelAgentPort is where the tunnel-server listens for agents, on the
// cloud's link address (the samples' TunnelEndpoint port).
const TunnelAgentPort = 10262

const (
	controlPlaneTimeout = 2 * time.Minute
	processReadyTimeout = 90 * time.Second
)

// Cloud is the control plane and the cloud-side edgeunit processes.
type Cloud struct {
	Env *envtest.Environment
	// Config and Client are an admin's (system:masters).
	Config    *rest.Config
	Client    client.Client
	Clientset kubernetes.Interface
	// Kubeconfig is the admin's kubeconfig file, for kubectl.
	Kubeconfig string
	// APIServerURL is kube-apiserver's address on the cloud's link.
	APIServerURL string
	// ConnectSocket is where the tunnel-server takes kube-apiserver's
	// egress CONNECTs.
	ConnectSocket string

	ControllerManager, Scheduler, Manager, TunnelServer *Proc

	tb              *Testbed
	dir             string
	kubeletClientCA []byte
	apiLog          *os.File
	// webhookCertDir holds the manager's webhook serving certificate.
	webhookCertDir string
	// tunnelHealthURL is the tunnel-server's health and metrics address.
	tunnelHealthURL string
}

func (tb *Testbed) startCloud(ctx context.Context) (*Cloud, error) {
	c := &Cloud{tb: tb, dir: filepath.Join(tb.Dir, "cloud")}
	if err := os.MkdirAll(filepath.Join(c.dir, "tunnel"), 0o700); err != nil {
		return nil, err
	}
	c.ConnectSocket = filepath.Join(c.dir, "tunnel", "connect.sock")
	// kube-apiserver's client certificate for kubelets, from a CA the
	// kubelets trust for that.
	now := time.Now()
	kca, kcaKP, err := certs.NewCA("edgeunit-e2e-kubelet-client-ca", 24*time.Hour, now)
	if err != nil {
		return nil, err
	}
	c.kubeletClientCA = kcaKP.CertPEM
	akp, err := kca.Issue(certs.Request{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Lifetime: 24 * time.Hour, Client: true}, now)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"kubelet-client.crt": akp.CertPEM,
		"kubelet-client.key": akp.KeyPEM,
		"egress.yaml": fmt.Appendf(nil, `apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`, c.ConnectSocket),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(c.dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}

	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	webhookPort, err := testenv.RestartablePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	c.Env = &envtest.Environment{
		BinaryAssetsDirectory:    tb.assets.k8sBin,
		CRDDirectoryPaths:        []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: controlPlaneTimeout,
		ControlPlaneStopTimeout:  time.Minute,
		// Webhooks by URL on this machine: kube-apiserver calls them
		// directly (control-plane egress), not through the tunnel.
		CRDInstallOptions: envtest.CRDInstallOptions{MaxTime: time.Minute},
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			Paths:            []string{filepath.Join(root, "config", "webhook", "manifests.yaml")},
			LocalServingHost: "127.0.0.1",
			// Bound by the manager only later: a port below the ephemeral
			// range, which no client connection takes meanwhile.
			LocalServingPort: webhookPort,
		},
	}
	api := c.Env.ControlPlane.GetAPIServer()
	// Both set, or envtest picks a loopback address of its own.
	apiPort, err := testenv.RestartablePort(CloudIP)
	if err != nil {
		return nil, err
	}
	api.SecureServing.Address, api.SecureServing.Port = CloudIP, strconv.Itoa(apiPort)
	if c.apiLog, err = logFile(tb.LogDir, "kube-apiserver.log"); err != nil {
		return nil, err
	}
	api.Out, api.Err = c.apiLog, c.apiLog
	args := api.Configure()
	args.Set("authorization-mode", "Node,RBAC")
	args.Set("enable-admission-plugins", "NodeRestriction")
	args.Set("egress-selector-config-file", filepath.Join(c.dir, "egress.yaml"))
	// Service webhooks by endpoint: no kube-proxy runs beside kube-apiserver.
	args.Set("enable-aggregator-routing", "true")
	args.Set("kubelet-client-certificate", filepath.Join(c.dir, "kubelet-client.crt"))
	args.Set("kubelet-client-key", filepath.Join(c.dir, "kubelet-client.key"))
	args.Set("kubelet-preferred-address-types", "InternalIP")
	args.Set("allow-privileged", "true")
	args.Set("default-not-ready-toleration-seconds", strconv.Itoa(tb.opts.ToleratedSeconds))
	args.Set("default-unreachable-toleration-seconds", strconv.Itoa(tb.opts.ToleratedSeconds))
	// Before Start: it may fail after the processes are up (CRDs,
	// webhooks), and Stop copes with a partial start.
	tb.cleanup("kube-apiserver and etcd", func() error {
		if c.apiLog != nil {
			defer func() { _ = c.apiLog.Close() }()
		}
		return c.Env.Stop()
	})
	if c.Config, err = c.Env.Start(); err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w%s", err, tail(filepath.Join(tb.LogDir, "kube-apiserver.log"), 20))
	}
	c.APIServerURL = c.Config.Host
	// envtest starts them outside the testbed's cgroups: move them in, so
	// a run that is killed leaves nothing the next one cannot end.
	if err := tb.cloudCgroup.adoptChildren("etcd", "kube-apiserver"); err != nil {
		return nil, err
	}

	admin, err := c.Env.AddUser(envtest.User{Name: "edgeunit-e2e-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	c.Config = admin.Config()
	kc, err := admin.KubeConfig()
	if err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(c.dir, "admin.kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	if c.Client, err = client.New(c.Config, client.Options{Scheme: controllers.Scheme()}); err != nil {
		return nil, err
	}
	if c.Clientset, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ManagerNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	// What an install grants nodes on top of the Node authorizer.
	if err := testenv.ApplyManifest(ctx, c.Client, testenv.NodeRBAC); err != nil {
		return nil, fmt.Errorf("granting nodes what edgeunit's install grants them: %w", err)
	}
	// The CA of kube-apiserver's serving certificate, for the
	// kube-root-ca.crt ConfigMaps pods trust it by.
	// kube-controller-manager signs kubelet-serving certificates (the
	// hub's in-cluster listener's) with a cluster CA of its own, which
	// pods trust too: on kubeadm both are the one cluster CA.
	_, signing, err := certs.NewCA("edgeunit-e2e-cluster-ca", 24*time.Hour, time.Now())
	if err != nil {
		return nil, err
	}
	signingCert, signingKey := filepath.Join(c.dir, "cluster-signing.crt"), filepath.Join(c.dir, "cluster-signing.key")
	rootCA := filepath.Join(c.dir, "root-ca.crt")
	for f, data := range map[string][]byte{signingCert: signing.CertPEM, signingKey: signing.KeyPEM, rootCA: append(append([]byte{}, api.SecureServing.CA...), signing.CertPEM...)} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			return nil, err
		}
	}
	if err := c.startControllerManager(ctx, api.CertDir, rootCA,
		"--cluster-signing-kubelet-serving-cert-file="+signingCert,
		"--cluster-signing-kubelet-serving-key-file="+signingKey); err != nil {
		return nil, err
	}
	if err := c.startScheduler(ctx); err != nil {
		return nil, err
	}
	if err := c.routeWebhooksThroughTunnel(ctx, webhookPort); err != nil {
		return nil, err
	}
	if err := c.startManager(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func logFile(dir, name string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

// nodeCredentials is a node's kubelet identity: system:node:<name> in
// system:nodes, as a kubelet's client certificate.
func (c *Cloud) nodeCredentials(node string) (*rest.Config, error) {
	u, err := c.Env.AddUser(envtest.User{Name: "system:node:" + node, Groups: []string{"system:nodes"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("issuing the kubelet credentials of node %s: %w", node, err)
	}
	return u.Config(), nil
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	out := make([]int, 0, n)
	for range n {
		p, err := testenv.RestartablePort("127.0.0.1")
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (c *Cloud) startControllerManager(ctx context.Context, apiCertDir, rootCA string, extra ...string) (err error) {
	c.ControllerManager, err = c.startComponent(ctx, "kube-controller-manager", append([]string{
		"--controllers=*",
		"--service-account-private-key-file=" + filepath.Join(apiCertDir, "sa-signer.key"),
		"--root-ca-file=" + rootCA,
		"--use-service-account-credentials=false",
		"--node-monitor-period=2s",
		"--node-monitor-grace-period=" + c.tb.opts.NodeMonitorGracePeriod.String(),
		"--concurrent-gc-syncs=2",
		"--v=2",
	}, extra...)...)
	return err
}

func (c *Cloud) startScheduler(ctx context.Context) (err error) {
	c.Scheduler, err = c.startComponent(ctx, "kube-scheduler")
	return err
}

// startComponent runs a Kubernetes control-plane component as the admin,
// serving its health on a free loopback port, and waits until it is
// healthy.
func (c *Cloud) startComponent(ctx context.Context, name string, args ...string) (*Proc, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	p, err := startProc(name, filepath.Join(c.tb.LogDir, name+".log"), c.tb.cloudCgroup, nil,
		append([]string{c.tb.assets.k8s(name),
			"--kubeconfig=" + c.Kubeconfig,
			"--authentication-kubeconfig=" + c.Kubeconfig,
			"--authorization-kubeconfig=" + c.Kubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[0]),
			"--leader-elect=false",
		}, args...)...)
	if err != nil {
		return nil, err
	}
	c.tb.cleanup(name, func() error { return p.Stop(processStopGrace) })
	return p, waitHTTPS(ctx, p, "https://127.0.0.1:"+strconv.Itoa(ports[0])+"/healthz")
}

// startManager runs the edgeunit manager as its own process, serving the
// webhooks envtest installed (by URL, with envtest's serving certificate).
func (c *Cloud) startManager(ctx context.Context) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	wh := c.Env.WebhookInstallOptions
	c.Manager, err = startProc("manager", filepath.Join(c.tb.LogDir, "manager.log"), c.tb.cloudCgroup, nil,
		c.tb.assets.e2e("manager"),
		"--kubeconfig="+c.Kubeconfig,
		"--namespace="+ManagerNamespace,
		"--image="+EdgeunitImage,
		// No --node-apiserver-url: each hub dials the server of its
		// kubelet's kubeconfig, the original once the node is converted.
		"--webhook-cert-dir="+c.webhookCertDir,
		"--webhook-port="+strconv.Itoa(wh.LocalServingPort),
		"--provision-webhook-cert=false",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(ports[0]),
		"--zap-log-level=info",
	)
	if err != nil {
		return err
	}
	p := c.Manager
	c.tb.cleanup("manager", func() error { return p.Stop(processStopGrace) })
	return waitHTTPS(ctx, c.Manager, "http://127.0.0.1:"+strconv.Itoa(ports[0])+"/readyz")
}

// StartTunnelServer runs a tunnel-server for the TunnelEndpoint named
// endpoint, as its Deployment would in the cloud: it listens for agents on
// the cloud's link address and for kube-apiserver's egress on the socket
// the egress selector names, with the serving certificate the
// TunnelEndpoint controller issued.
func (c *Cloud) StartTunnelServer(ctx context.Context, endpoint, servingSecret string) error {
	dir := filepath.Join(c.dir, "tunnel")
	var sec corev1.Secret
	if err := Poll(ctx, processReadyTimeout, func() (bool, error) {
		err := c.Client.Get(ctx, client.ObjectKey{Namespace: ManagerNamespace, Name: servingSecret}, &sec)
		return err == nil && len(sec.Data["tls.crt"]) > 0, client.IgnoreNotFound(err)
	}); err != nil {
		return fmt.Errorf("waiting for the tunnel serving Secret %s: %w", servingSecret, err)
	}
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(dir, k), sec.Data[k], 0o600); err != nil {
			return err
		}
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	c.TunnelServer, err = startProc("tunnel-server", filepath.Join(c.tb.LogDir, "tunnel-server.log"), c.tb.cloudCgroup, nil,
		c.tb.assets.e2e("tunnel-server"),
		"--id=e2e-0",
		"--agent-address="+net.JoinHostPort(CloudIP, strconv.Itoa(TunnelAgentPort)),
		"--agent-cert-file="+filepath.Join(dir, "tls.crt"),
		"--agent-key-file="+filepath.Join(dir, "tls.key"),
		"--agent-client-ca-file="+filepath.Join(dir, "ca.crt"),
		"--connect-address=",
		"--connect-uds="+c.ConnectSocket,
		"--passthrough-address=127.0.0.1:"+strconv.Itoa(ports[0]),
		"--health-address=127.0.0.1:"+strconv.Itoa(ports[1]),
		"--kubeconfig="+c.Kubeconfig,
		"--tunnel-endpoint="+endpoint,
		"--direct-cidrs="+directCIDR(),
		"--status-interval=1s",
		"--heartbeat-interval=2s",
	)
	if err != nil {
		return err
	}
	p := c.TunnelServer
	c.tunnelHealthURL = "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.tb.cleanup("tunnel-server", func() error { return p.Stop(processStopGrace) })
	return waitHTTPS(ctx, c.TunnelServer, "http://127.0.0.1:"+strconv.Itoa(ports[1])+"/readyz")
}

// waitHTTPS waits until url answers 200 (TLS unverified: a probe of a
// local process's health), failing early when p exits.
func waitHTTPS(ctx context.Context, p *Proc, url string) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: insecureTransport()}
	var last error
	err := Poll(ctx, processReadyTimeout, func() (bool, error) {
		if exited, err := p.Exited(); exited {
			return false, fmt.Errorf("%s exited: %v", p.Name, err)
		}
		resp, err := hc.Get(url)
		if err != nil {
			last = err
			return false, nil
		}
		_ = resp.Body.Close()
		last = fmt.Errorf("%s: %s", url, resp.Status)
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w%s", p.Name, errors.Join(err, last), p.Tail(30))
	}
	return nil
}
