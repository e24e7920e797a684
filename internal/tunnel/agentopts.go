package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/certs/csr"
)

// AgentOptions are the tunnel-agent's flags.
type AgentOptions struct {
	NodeName   string
	Servers    string
	ServerDNS  string
	ServerName string
	CertFile   string
	KeyFile    string
	CAFile     string
	// Kubeconfig is the kubelet's kubeconfig: with it the agent requests
	// its identity through the CSR API as the node, keeps it in CertDir
	// and rotates it.
	Kubeconfig          string
	CertDir             string
	CertificateLifetime time.Duration
	AllowedPorts        string
	PodPorts            string
	NodeHosts           string
	HealthAddress       string
	BackoffInitial      time.Duration
	BackoffMax          time.Duration
	DiscoveryInterval   time.Duration
	KeepAlive           time.Duration

	// Clock decides when the CSR-issued certificate is rotated (the real
	// clock when nil); not a flag, for tests.
	Clock clock.WithTicker
}

// BindFlags registers the options on fs.
func (o *AgentOptions) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.NodeName, "node-name", os.Getenv("NODE_NAME"), "Name of this node; must match the client certificate (default: $NODE_NAME).")
	fs.StringVar(&o.Servers, "servers", "", "Comma-separated host:port of tunnel-server replicas (e.g. from TunnelEndpoint status).")
	fs.StringVar(&o.ServerDNS, "server-dns", "", "host:port of the servers' headless Service; every address it resolves to is a replica.")
	fs.StringVar(&o.ServerName, "server-name", "", "Name to verify in the servers' certificate (default: the host dialled).")
	fs.StringVar(&o.CertFile, "cert-file", "", "Static client certificate carrying this node's identity (PEM), reloaded when it changes; excludes --kubeconfig.")
	fs.StringVar(&o.KeyFile, "key-file", "", "Key of --cert-file (PEM).")
	fs.StringVar(&o.CAFile, "ca-file", "", "CA bundle that signs the servers' certificates.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "The kubelet's kubeconfig (e.g. /etc/kubernetes/kubelet.conf): the agent requests and rotates its identity through the CSR API as system:node:<node>, and with --pod-ports reads its Node; excludes --cert-file.")
	fs.StringVar(&o.CertDir, "cert-dir", "", "Directory where the agent keeps its CSR-issued certificate and key (with --kubeconfig); a valid one found there is used at once, offline too.")
	fs.DurationVar(&o.CertificateLifetime, "certificate-lifetime", 0, "Lifetime to request for the CSR-issued certificate (at least 10m); 0 leaves it to the signer.")
	fs.StringVar(&o.AllowedPorts, "allowed-ports", "10250", "Comma-separated node-local ports the agent may dial.")
	fs.StringVar(&o.PodPorts, "pod-ports", "", "Comma-separated ports of this node's own pods the agent may dial (pods are the addresses in its Node's spec.podCIDRs, read with --kubeconfig); empty opens no pod.")
	fs.StringVar(&o.NodeHosts, "node-hosts", "", "Comma-separated extra names or IPs of this node that targets may use (addresses on local interfaces are always allowed).")
	fs.StringVar(&o.HealthAddress, "health-address", "", "Address serving /healthz and /readyz (ready when connected to a server); empty disables it.")
	fs.DurationVar(&o.BackoffInitial, "backoff-initial", 200*time.Millisecond, "First reconnect delay.")
	fs.DurationVar(&o.BackoffMax, "backoff-max", 30*time.Second, "Cap of the reconnect delay.")
	fs.DurationVar(&o.DiscoveryInterval, "discovery-interval", 30*time.Second, "How often server replicas are looked up again.")
	fs.DurationVar(&o.KeepAlive, "keepalive", 10*time.Second, "Interval of pings that detect a dead server.")
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Validate reports bad flags.
func (o *AgentOptions) Validate() error {
	var errs []error
	if o.NodeName == "" {
		errs = append(errs, errors.New("--node-name is required (or set NODE_NAME)"))
	}
	if o.Servers == "" && o.ServerDNS == "" {
		errs = append(errs, errors.New("one of --servers and --server-dns is required"))
	}
	for _, s := range splitList(o.Servers) {
		if _, _, err := net.SplitHostPort(s); err != nil {
			errs = append(errs, fmt.Errorf("--servers entry %q: %w", s, err))
		}
	}
	if o.ServerDNS != "" {
		if _, _, err := net.SplitHostPort(o.ServerDNS); err != nil {
			errs = append(errs, fmt.Errorf("--server-dns %q: %w", o.ServerDNS, err))
		}
	}
	errs = append(errs, o.validateIdentity()...)
	if o.CAFile == "" {
		errs = append(errs, errors.New("--ca-file is required: it authenticates the tunnel servers"))
	}
	if _, err := ParsePorts(o.AllowedPorts); err != nil {
		errs = append(errs, fmt.Errorf("--allowed-ports: %w", err))
	}
	if o.PodPorts != "" {
		if _, err := ParsePorts(o.PodPorts); err != nil {
			errs = append(errs, fmt.Errorf("--pod-ports: %w", err))
		}
		if o.Kubeconfig == "" {
			errs = append(errs, errors.New("--pod-ports needs --kubeconfig: the agent reads its node's pod CIDRs from its Node with it"))
		}
	}
	if o.BackoffInitial <= 0 || o.BackoffMax < o.BackoffInitial {
		errs = append(errs, errors.New("--backoff-initial must be positive and at most --backoff-max"))
	}
	if o.DiscoveryInterval <= 0 || o.KeepAlive <= 0 {
		errs = append(errs, errors.New("--discovery-interval and --keepalive must be positive"))
	}
	return errors.Join(errs...)
}

// validateIdentity checks that exactly one source of the agent's client
// certificate is given: the CSR API (--kubeconfig with --cert-dir) or static
// files (--cert-file with --key-file).
func (o *AgentOptions) validateIdentity() []error {
	static := o.CertFile != "" || o.KeyFile != ""
	switch {
	case o.Kubeconfig != "" && static:
		return []error{errors.New("--kubeconfig and --cert-file/--key-file exclude each other: the identity comes either from the CSR API or from static files")}
	case o.Kubeconfig == "" && !static:
		return []error{errors.New("an identity is required: --kubeconfig (the kubelet's, with --cert-dir) to obtain it through the CSR API, or --cert-file and --key-file")}
	case static:
		var errs []error
		if o.CertFile == "" || o.KeyFile == "" {
			errs = append(errs, errors.New("--cert-file and --key-file go together"))
		}
		if o.CertDir != "" || o.CertificateLifetime != 0 {
			errs = append(errs, errors.New("--cert-dir and --certificate-lifetime apply only with --kubeconfig"))
		}
		return errs
	default:
		var errs []error
		if o.CertDir == "" {
			errs = append(errs, errors.New("--kubeconfig needs --cert-dir, where the issued certificate is kept"))
		}
		if o.CertificateLifetime < 0 || (o.CertificateLifetime > 0 && o.CertificateLifetime < 10*time.Minute) {
			errs = append(errs, fmt.Errorf("--certificate-lifetime %s: want 0 (the signer's default) or at least 10m", o.CertificateLifetime))
		}
		return errs
	}
}

// RunAgent runs the tunnel agent until ctx ends. With --kubeconfig it first
// makes sure it holds its identity (see ensureIdentity) and then keeps it
// rotated; /healthz answers meanwhile, /readyz once a server is connected.
func RunAgent(ctx context.Context, o AgentOptions, log logr.Logger) error {
	if err := o.Validate(); err != nil {
		return err
	}
	ports, _ := ParsePorts(o.AllowedPorts)
	policy := Policy{Ports: ports, Hosts: splitList(o.NodeHosts)}
	var nodeClient kubernetes.Interface
	if o.PodPorts != "" {
		policy.PodPorts, _ = ParsePorts(o.PodPorts)
		var err error
		if nodeClient, err = podCIDRClient(o); err != nil {
			return err
		}
	}
	var running atomic.Pointer[Agent]
	g, ctx := errgroup.WithContext(ctx)
	if o.HealthAddress != "" {
		ln, err := net.Listen("tcp", o.HealthAddress)
		if err != nil {
			return fmt.Errorf("listening for health checks: %w", err)
		}
		g.Go(func() error { return serveAgentHealth(ctx, ln, &running) })
	}
	g.Go(func() error {
		tlsCfg, err := agentTLS(ctx, o, g, log)
		if err != nil {
			return err
		}
		var disc MultiDiscovery
		if s := splitList(o.Servers); len(s) > 0 {
			disc = append(disc, StaticServers(s))
		}
		if o.ServerDNS != "" {
			host, port, _ := net.SplitHostPort(o.ServerDNS)
			disc = append(disc, DNSServers{Host: host, Port: port})
		}
		agent, err := NewAgent(AgentConfig{
			Node:              o.NodeName,
			TLSConfig:         tlsCfg,
			Discovery:         disc,
			DiscoveryInterval: o.DiscoveryInterval,
			Policy:            policy,
			NodeClient:        nodeClient,
			Backoff:           Backoff{Initial: o.BackoffInitial, Max: o.BackoffMax},
			KeepAlive:         o.KeepAlive,
			Log:               log,
		})
		if err != nil {
			return err
		}
		running.Store(agent)
		return agent.Run(ctx)
	})
	return g.Wait()
}

// agentTLS is the agent's client TLS configuration: static files, or the
// CSR-issued identity, whose rotation it starts in g.
func agentTLS(ctx context.Context, o AgentOptions, g *errgroup.Group, log logr.Logger) (*tls.Config, error) {
	if o.Kubeconfig == "" {
		cfg, err := ClientTLS(o.CertFile, o.KeyFile, o.CAFile, o.ServerName)
		if err != nil {
			return nil, fmt.Errorf("agent TLS: %w", err)
		}
		return cfg, nil
	}
	r, err := ensureIdentity(ctx, o, log)
	if err != nil {
		return nil, err
	}
	cfg, err := ClientTLSWith(r.GetClientCertificate, o.CAFile, o.ServerName)
	if err != nil {
		return nil, fmt.Errorf("agent TLS: %w", err)
	}
	g.Go(func() error {
		// Run returns only when ctx ends; it logs and retries failures,
		// keeping the current certificate while it is valid. New
		// connections present the newest certificate; sessions up already
		// are not disturbed.
		_ = r.Run(klog.NewContext(ctx, log.WithName("certificate")))
		return nil
	})
	return cfg, nil
}

func serveAgentHealth(ctx context.Context, ln net.Listener, running *atomic.Pointer[Agent]) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if a := running.Load(); a == nil || len(a.Connected()) == 0 {
			http.Error(w, "not connected to any tunnel server", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() { _ = hs.Close() })
	defer stop()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// podCIDRClient reads the agent's own Node with the kubelet's kubeconfig.
// Its user agent names the hub's tunnel-agent client, whose reads the hub
// caches: an agent restarting while the node is offline learns its pod
// CIDRs from the hub.
func podCIDRClient(o AgentOptions) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading --kubeconfig %s: %w", o.Kubeconfig, err)
	}
	rc.UserAgent = "tunnel-agent"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver client from %s: %w", o.Kubeconfig, err)
	}
	return cs, nil
}

// ensureIdentity returns a requester holding this node's tunnel-agent
// certificate. A valid certificate in --cert-dir is used at once, so an
// agent restarting cut off from kube-apiserver still connects; without one
// it asks the CSR API as the node and waits (at most csr.DefaultIssueTimeout)
// for the certificate.
func ensureIdentity(ctx context.Context, o AgentOptions, log logr.Logger) (*csr.Requester, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading --kubeconfig %s: %w", o.Kubeconfig, err)
	}
	rc.UserAgent = "edgeunit-tunnel-agent"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver client from %s: %w", o.Kubeconfig, err)
	}
	r, err := csr.New(csr.Config{
		Client:   cs,
		Identity: certs.TunnelAgentIdentity,
		Node:     o.NodeName,
		Dir:      o.CertDir,
		Lifetime: o.CertificateLifetime,
		Clock:    o.Clock,
	})
	if err != nil {
		return nil, err
	}
	if err := r.Ensure(klog.NewContext(ctx, log.WithName("certificate"))); err != nil {
		if errors.Is(err, csr.ErrDenied) {
			return nil, fmt.Errorf("the tunnel-agent identity of node %q was refused; --kubeconfig must be the kubelet's of that node (authenticating as system:node:%s): %w", o.NodeName, o.NodeName, err)
		}
		return nil, fmt.Errorf("obtaining the tunnel-agent certificate of node %q through the CSR API (no valid one in %s): %w", o.NodeName, o.CertDir, err)
	}
	cert := r.Current().Leaf
	log.Info("Using tunnel-agent certificate", "path", r.Path(), "commonName", cert.Subject.CommonName, "notAfter", cert.NotAfter)
	return r, nil
}
