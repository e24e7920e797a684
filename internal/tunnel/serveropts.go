package tunnel

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/certs"
)

// ServerOptions are the tunnel-server's flags.
type ServerOptions struct {
	ID string

	AgentAddress      string
	AgentCertFile     string
	AgentKeyFile      string
	AgentClientCAFile string

	ConnectAddress      string
	ConnectUDS          string
	ConnectCertFile     string
	ConnectKeyFile      string
	ConnectClientCAFile string
	ConnectClientNames  string

	PassthroughAddress    string
	PassthroughTargetPort int

	// DirectCIDRs are the cloud-side CIDRs the server dials itself.
	DirectCIDRs string

	HealthAddress string

	Kubeconfig     string
	TunnelEndpoint string
	StatusInterval time.Duration
	StatusRefresh  time.Duration

	HeartbeatInterval time.Duration
}

// BindFlags registers the options on fs.
func (o *ServerOptions) BindFlags(fs *flag.FlagSet) {
	id := os.Getenv("POD_NAME")
	if id == "" {
		id, _ = os.Hostname()
	}
	fs.StringVar(&o.ID, "id", id, "Name of this replica (default: $POD_NAME or the host name).")
	fs.StringVar(&o.AgentAddress, "agent-address", ":10262", "Address of the mTLS listener agents dial.")
	fs.StringVar(&o.AgentCertFile, "agent-cert-file", "", "Serving certificate of the agent listener (PEM).")
	fs.StringVar(&o.AgentKeyFile, "agent-key-file", "", "Key of the agent listener's certificate (PEM).")
	fs.StringVar(&o.AgentClientCAFile, "agent-client-ca-file", "", "CA bundle that signs agent client certificates.")
	fs.StringVar(&o.ConnectAddress, "connect-address", ":10263", "TCP address of the HTTP CONNECT listener for kube-apiserver's egress selector; empty disables it.")
	fs.StringVar(&o.ConnectUDS, "connect-uds", "", "Unix socket for the HTTP CONNECT listener, in addition to or instead of --connect-address.")
	fs.StringVar(&o.ConnectCertFile, "connect-cert-file", "", "Serving certificate of the TCP CONNECT listener; required with --connect-address.")
	fs.StringVar(&o.ConnectKeyFile, "connect-key-file", "", "Key of the CONNECT listener's certificate.")
	fs.StringVar(&o.ConnectClientCAFile, "connect-client-ca-file", "", "CA bundle of the client certificates the CONNECT listener requires (kube-apiserver's egress client).")
	fs.StringVar(&o.ConnectClientNames, "connect-client-names", certs.EgressCommonName, "Comma-separated Common Names of the client certificates the TCP CONNECT listener accepts; node identities are refused whatever their name.")
	fs.StringVar(&o.PassthroughAddress, "passthrough-address", ":10264", "Address of the SNI-routed TLS passthrough listener; empty disables it.")
	fs.IntVar(&o.PassthroughTargetPort, "passthrough-target-port", 10250, "Node port that passthrough connections reach (the kubelet's).")
	fs.StringVar(&o.DirectCIDRs, "direct-cidrs", "", "Comma-separated cloud-side CIDRs (the Service ranges, a cloud network) that the server dials itself for CONNECT; nodes outside Edge pools and their pods are dialled directly too, edge nodes and their pods through their agents, and anything else is refused.")
	fs.StringVar(&o.HealthAddress, "health-address", ":8081", "Address serving /healthz, /readyz, /agents and /metrics; empty disables it.")
	if fs.Lookup("kubeconfig") == nil {
		// controller-runtime registers --kubeconfig on the default set;
		// main reads it from there.
		fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "Kubeconfig to reach kube-apiserver (default: in-cluster).")
	}
	fs.StringVar(&o.TunnelEndpoint, "tunnel-endpoint", "", "TunnelEndpoint whose status lists connected agents; empty disables reporting.")
	fs.DurationVar(&o.StatusInterval, "status-interval", 10*time.Second, "Most frequent status write (batching period).")
	fs.DurationVar(&o.StatusRefresh, "status-refresh", time.Minute, "How often lastSeen is refreshed in status; entries expire after three times this.")
	fs.DurationVar(&o.HeartbeatInterval, "heartbeat-interval", 10*time.Second, "Interval of pings to each agent.")
}

// Validate reports bad flag combinations.
func (o *ServerOptions) Validate() error {
	var errs []error
	if o.ID == "" {
		errs = append(errs, errors.New("--id is required (no POD_NAME and no host name)"))
	}
	if o.AgentAddress == "" {
		errs = append(errs, errors.New("--agent-address is required"))
	}
	if o.AgentCertFile == "" || o.AgentKeyFile == "" {
		errs = append(errs, errors.New("--agent-cert-file and --agent-key-file are required"))
	}
	if o.AgentClientCAFile == "" {
		errs = append(errs, errors.New("--agent-client-ca-file is required: agents are authenticated by client certificate"))
	}
	if o.ConnectAddress == "" && o.ConnectUDS == "" {
		errs = append(errs, errors.New("one of --connect-address and --connect-uds is required"))
	}
	if o.ConnectAddress != "" && (o.ConnectCertFile == "" || o.ConnectKeyFile == "" || o.ConnectClientCAFile == "") {
		errs = append(errs, errors.New("--connect-address needs --connect-cert-file, --connect-key-file and --connect-client-ca-file: a TCP CONNECT listener must authenticate kube-apiserver"))
	}
	if o.ConnectAddress != "" && len(splitList(o.ConnectClientNames)) == 0 {
		errs = append(errs, errors.New("--connect-address needs --connect-client-names: the CA alone also signs node identities"))
	}
	if _, err := ParseCIDRs(splitList(o.DirectCIDRs)); err != nil {
		errs = append(errs, fmt.Errorf("--direct-cidrs: %w", err))
	}
	if o.PassthroughTargetPort < 1 || o.PassthroughTargetPort > 65535 {
		errs = append(errs, fmt.Errorf("--passthrough-target-port %d: want 1-65535", o.PassthroughTargetPort))
	}
	if o.StatusInterval <= 0 || o.StatusRefresh <= 0 || o.HeartbeatInterval <= 0 {
		errs = append(errs, errors.New("--status-interval, --status-refresh and --heartbeat-interval must be positive"))
	}
	for _, a := range []struct{ flag, v string }{{"agent-address", o.AgentAddress}, {"connect-address", o.ConnectAddress}, {"passthrough-address", o.PassthroughAddress}, {"health-address", o.HealthAddress}} {
		if a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: %w", a.flag, a.v, err))
		}
	}
	return errors.Join(errs...)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return rest.InClusterConfig()
}

// RunServer runs a tunnel-server replica until ctx ends.
func RunServer(ctx context.Context, o ServerOptions, log logr.Logger) error {
	if err := o.Validate(); err != nil {
		return err
	}
	rc, err := restConfig(o.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kube-apiserver client config: %w", err)
	}
	rc.UserAgent = "edgeunit-tunnel-server"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kube-apiserver client: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	direct, err := ParseCIDRs(splitList(o.DirectCIDRs))
	if err != nil {
		return fmt.Errorf("--direct-cidrs: %w", err)
	}
	resolver := NewNodeResolver(ctx, cs, direct)
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}

	agentTLS, err := ServerTLS(o.AgentCertFile, o.AgentKeyFile, o.AgentClientCAFile)
	if err != nil {
		return fmt.Errorf("agent listener TLS: %w", err)
	}
	srv, err := NewServer(ServerConfig{ID: o.ID, TLSConfig: agentTLS, Resolver: resolver, Metrics: metrics, Log: log, HeartbeatInterval: o.HeartbeatInterval})
	if err != nil {
		return err
	}

	g, ctx := errgroup.WithContext(ctx)
	agentLn, err := net.Listen("tcp", o.AgentAddress)
	if err != nil {
		return fmt.Errorf("listening for agents: %w", err)
	}
	log.Info("Listening for agents", "address", agentLn.Addr().String())
	g.Go(func() error { return srv.ServeAgents(ctx, agentLn) })

	if o.ConnectAddress != "" {
		ctls, err := ConnectServerTLS(o.ConnectCertFile, o.ConnectKeyFile, o.ConnectClientCAFile, splitList(o.ConnectClientNames))
		if err != nil {
			return fmt.Errorf("CONNECT listener TLS: %w", err)
		}
		ln, err := net.Listen("tcp", o.ConnectAddress)
		if err != nil {
			return fmt.Errorf("listening for CONNECT: %w", err)
		}
		log.Info("Serving HTTP CONNECT", "address", ln.Addr().String(), "clientNames", splitList(o.ConnectClientNames), "directCIDRs", direct)
		g.Go(func() error { return srv.ServeConnect(ctx, tls.NewListener(ln, ctls)) })
	}
	if o.ConnectUDS != "" {
		_ = os.Remove(o.ConnectUDS)
		ln, err := net.Listen("unix", o.ConnectUDS)
		if err != nil {
			return fmt.Errorf("listening for CONNECT on %s: %w", o.ConnectUDS, err)
		}
		if err := os.Chmod(o.ConnectUDS, 0o600); err != nil {
			return fmt.Errorf("restricting %s: %w", o.ConnectUDS, err)
		}
		log.Info("Serving HTTP CONNECT", "socket", o.ConnectUDS, "directCIDRs", direct)
		g.Go(func() error { return srv.ServeConnect(ctx, ln) })
	}
	if o.PassthroughAddress != "" {
		ln, err := net.Listen("tcp", o.PassthroughAddress)
		if err != nil {
			return fmt.Errorf("listening for passthrough: %w", err)
		}
		log.Info("Serving TLS passthrough", "address", ln.Addr().String(), "targetPort", o.PassthroughTargetPort)
		g.Go(func() error { return srv.ServePassthrough(ctx, ln, o.PassthroughTargetPort) })
	}
	if o.HealthAddress != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !resolver.HasSynced() {
				http.Error(w, "nodes not synced", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok"))
		})
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/agents", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(srv.Agents())
		})
		hs := &http.Server{Addr: o.HealthAddress, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		ln, err := net.Listen("tcp", o.HealthAddress)
		if err != nil {
			return fmt.Errorf("listening for health checks: %w", err)
		}
		g.Go(func() error {
			stop := context.AfterFunc(ctx, func() { _ = hs.Close() })
			defer stop()
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	if o.TunnelEndpoint != "" {
		scheme := runtime.NewScheme()
		if err := edgev1.AddToScheme(scheme); err != nil {
			return err
		}
		c, err := client.New(rc, client.Options{Scheme: scheme})
		if err != nil {
			return fmt.Errorf("status client: %w", err)
		}
		rep := &Reporter{Client: c, Name: o.TunnelEndpoint, Agents: srv, Log: log.WithName("status"), Interval: o.StatusInterval, Refresh: o.StatusRefresh}
		g.Go(func() error { rep.Run(ctx); return nil })
	}
	return g.Wait()
}
