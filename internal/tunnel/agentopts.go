package tunnel

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
)

// AgentOptions are the tunnel-agent's flags.
type AgentOptions struct {
	NodeName          string
	Servers           string
	ServerDNS         string
	ServerName        string
	CertFile          string
	KeyFile           string
	CAFile            string
	AllowedPorts      string
	NodeHosts         string
	HealthAddress     string
	BackoffInitial    time.Duration
	BackoffMax        time.Duration
	DiscoveryInterval time.Duration
	KeepAlive         time.Duration
}

// BindFlags registers the options on fs.
func (o *AgentOptions) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.NodeName, "node-name", os.Getenv("NODE_NAME"), "Name of this node; must match the client certificate (default: $NODE_NAME).")
	fs.StringVar(&o.Servers, "servers", "", "Comma-separated host:port of tunnel-server replicas (e.g. from TunnelEndpoint status).")
	fs.StringVar(&o.ServerDNS, "server-dns", "", "host:port of the servers' headless Service; every address it resolves to is a replica.")
	fs.StringVar(&o.ServerName, "server-name", "", "Name to verify in the servers' certificate (default: the host dialled).")
	fs.StringVar(&o.CertFile, "cert-file", "", "Client certificate carrying this node's identity (PEM).")
	fs.StringVar(&o.KeyFile, "key-file", "", "Key of the client certificate (PEM).")
	fs.StringVar(&o.CAFile, "ca-file", "", "CA bundle that signs the servers' certificates.")
	fs.StringVar(&o.AllowedPorts, "allowed-ports", "10250", "Comma-separated node-local ports the agent may dial.")
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
	if o.CertFile == "" || o.KeyFile == "" || o.CAFile == "" {
		errs = append(errs, errors.New("--cert-file, --key-file and --ca-file are required"))
	}
	if _, err := ParsePorts(o.AllowedPorts); err != nil {
		errs = append(errs, fmt.Errorf("--allowed-ports: %w", err))
	}
	if o.BackoffInitial <= 0 || o.BackoffMax < o.BackoffInitial {
		errs = append(errs, errors.New("--backoff-initial must be positive and at most --backoff-max"))
	}
	if o.DiscoveryInterval <= 0 || o.KeepAlive <= 0 {
		errs = append(errs, errors.New("--discovery-interval and --keepalive must be positive"))
	}
	return errors.Join(errs...)
}

// RunAgent runs the tunnel agent until ctx ends.
func RunAgent(ctx context.Context, o AgentOptions, log logr.Logger) error {
	if err := o.Validate(); err != nil {
		return err
	}
	ports, _ := ParsePorts(o.AllowedPorts)
	tlsCfg, err := ClientTLS(o.CertFile, o.KeyFile, o.CAFile, o.ServerName)
	if err != nil {
		return fmt.Errorf("agent TLS: %w", err)
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
		Policy:            Policy{Ports: ports, Hosts: splitList(o.NodeHosts)},
		Backoff:           Backoff{Initial: o.BackoffInitial, Max: o.BackoffMax},
		KeepAlive:         o.KeepAlive,
		Log:               log,
	})
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return agent.Run(ctx) })
	if o.HealthAddress != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if len(agent.Connected()) == 0 {
				http.Error(w, "not connected to any tunnel server", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok"))
		})
		ln, err := net.Listen("tcp", o.HealthAddress)
		if err != nil {
			return fmt.Errorf("listening for health checks: %w", err)
		}
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			stop := context.AfterFunc(ctx, func() { _ = hs.Close() })
			defer stop()
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	return g.Wait()
}
