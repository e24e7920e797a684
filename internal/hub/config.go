// Package hub is the edge hub: a caching reverse proxy in front of
// kube-apiserver that lets an edge node keep working, and reboot, while its
// cloud link is cut.
//
// # Link states and thresholds
//
// The hub is online or offline. It goes offline at once when a request to
// the apiserver fails to connect or is reset (a killed apiserver refuses
// connections, so detection is immediate and the failing read itself is
// answered from the cache), or when FailureThreshold consecutive probes of
// /readyz fail (a silent link: at most FailureThreshold × (ProbeInterval +
// ProbeTimeout), 2 × (1 s + 1 s) = 4 s by default). Going offline cancels
// every request in flight to the apiserver. It goes back online after
// SuccessThreshold consecutive successful probes (2 × 1 s by default), so a
// flapping link does not bounce clients.
//
// # Online reads: streaming, recording, and a cut mid-answer
//
// An online GET or LIST is answered from the apiserver's response as it
// arrives: the hub holds at most the first 256 KiB, then streams the rest
// through while teeing it into pooled buffers for the recorder. When the
// client accepts gzip (client-go does), the hub asks the apiserver for gzip
// and relays the compressed bytes untouched, so the link carries what a
// direct client would get and the hub neither decompresses nor recompresses
// on the answer's path. Recording happens afterwards, on the recorder's own
// goroutine: it decodes the body, skips a LIST identical to the last one
// recorded for that collection (by CRC, without even decoding it), and
// writes in batched bbolt transactions. Bodies waiting for it are bounded
// (64 MiB; beyond that a body is simply not recorded this time), so a slow
// disk never stalls a reply and memory stays bounded.
//
// The trade-off: a failure before the first byte goes out (connection
// refused or reset, or a response that breaks within its first 256 KiB,
// which covers every GET of an object and typical filtered LISTs) is
// answered from the cache, so the client never sees it. A response cut
// after bytes were sent cannot be taken back: that one read fails (the
// hub aborts the client's response, so the client sees a broken body, never
// a truncated one that parses), exactly as it would have for a direct
// client. The cut marks the link offline at once, so every read issued
// after it is served from the cache: "no failed reads across a cut" holds
// for reads made after the cut is detected, plus all small answers in
// flight.
//
// Topology-filtered EndpointSlices are the exception: the hub must rewrite
// them, so they are read whole (identity-encoded) before being answered.
//
// # Offline writes
//
// While offline, the node's own Lease (kube-node-lease/<node>), its Node
// status, and the status of pods bound to it are answered locally from the
// cached object and journaled durably. As NodeRestriction admission would
// online, a status write for a pod bound to another node, or to none, gets
// 403 and is not journaled. The cached pod decides (a PUT body naming this
// node does not override it); a PUT of a pod with no cached copy is judged
// by the body's spec.nodeName. On reconnect journaled writes are replayed in
// order before new writes go upstream. A PUT replaces an earlier journaled
// PUT of the same object (it carries the full object). On replay a PUT that
// gets 409 Conflict is retried once with the object's current
// resourceVersion: the node is the only writer of its Lease and of the
// status it reports, so last writer wins is what would have happened online.
// A PATCH that gets 409 (a uid precondition: the pod was deleted and
// recreated) or any write that gets 404 (the object was deleted in the
// cloud) is dropped, since it described an object that no longer exists;
// other 4xx answers are dropped and counted; 5xx and connection errors keep
// the entry and retry with backoff.
// Every other write gets 503 with a message while offline, but one: the
// kubelet registers its Node first after a reboot, and a Node the hub has
// cached gets the apiserver's own 409 AlreadyExists, so the kubelet goes on
// to read it and report status; uncached, the create gets 503.
//
// # Encodings
//
// The kubelet and kube-proxy send protobuf bodies and accept protobuf or
// JSON. The hub asks the apiserver for JSON and caches and journals JSON: an
// offline PUT or POST body in protobuf (Lease, Node, Pod) is decoded into
// JSON at the door, journaled and cached as JSON, and replayed as JSON.
// Online, a write goes up as the client encoded it. Answers the hub holds
// go out as JSON when the client takes JSON (every client-go default does),
// else as protobuf for those kinds; a read by a client that takes no JSON
// goes to the apiserver (and gets 503 offline) rather than being served
// from the cache under a type it is not in.
//
// # In-cluster clients
//
// With ListenInCluster set, the hub also serves pods that use
// InClusterConfig, on a link-local address it puts on the node's loopback
// interface, over TLS with a cluster-CA certificate it obtains through the
// CSR API as the node (signer kubernetes.io/kubelet-serving). Once that
// listener serves, the kubelet's reads of the `default/kubernetes` Service
// name it, so the kubelet hands pods its address. Requests there carry the
// pod's token, which the hub forwards instead of the node's identity, and
// their answers are cached per user, learned once online with a
// SelfSubjectReview (see inCluster and callers).
package hub

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/netbind"
)

// Client names the hub tells apart.
const (
	ClientKubelet     = "kubelet"
	ClientKubeProxy   = "kube-proxy"
	ClientCoreDNS     = "coredns"
	ClientFlannel     = "flannel"
	ClientTunnelAgent = "tunnel-agent"
	ClientOther       = "other"
	// ClientHub is the hub's own clients: its topology watches, and
	// netbind's requests through the proxy, which are never cached.
	ClientHub = "edge-hub"
)

// DefaultListenInCluster is the in-cluster listener's address
// (Config.ListenInCluster) edgeunit's manager gives hubs.
var DefaultListenInCluster = net.JoinHostPort(certs.DefaultHubInClusterIP, strconv.Itoa(certs.DefaultHubInClusterPort))

// Config is the hub's configuration (flags or a YAML/JSON file).
type Config struct {
	// NodeName is the node this hub runs on.
	NodeName string `json:"nodeName"`

	// Kubeconfig holds the node's credentials and the apiserver address.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// OriginalKubeconfig is Kubeconfig as it was before node conversion
	// pointed it at this hub (package conversion saves it): when
	// Kubeconfig's server is this hub and Server is unset, the apiserver's
	// address comes from here.
	OriginalKubeconfig string `json:"originalKubeconfig,omitempty"`
	// Server, CAFile, CertFile, KeyFile and TokenFile set the apiserver and
	// credentials directly, overriding the kubeconfig.
	Server    string `json:"server,omitempty"`
	CAFile    string `json:"caFile,omitempty"`
	CertFile  string `json:"certFile,omitempty"`
	KeyFile   string `json:"keyFile,omitempty"`
	TokenFile string `json:"tokenFile,omitempty"`

	// ListenHTTP is the plain-HTTP proxy address (loopback only).
	ListenHTTP string `json:"listenHTTP,omitempty"`
	// ListenHTTPS is the HTTPS proxy address for kubelet.
	ListenHTTPS string `json:"listenHTTPS,omitempty"`
	// ListenAdmin serves /healthz, /readyz and /metrics.
	ListenAdmin string `json:"listenAdmin,omitempty"`
	// ListenInCluster is where in-cluster clients (pods using
	// InClusterConfig) reach the hub: a link-local address the hub puts on
	// the node's loopback interface (host scope), served over TLS with a
	// cluster-CA certificate. The kubelet's view of the
	// `default/kubernetes` Service names it. Empty: off.
	ListenInCluster string `json:"listenInCluster,omitempty"`
	// ServingCertFile/ServingKeyFile: the HTTPS certificate; generated
	// under DataDir/pki when empty.
	ServingCertFile string `json:"servingCertFile,omitempty"`
	ServingKeyFile  string `json:"servingKeyFile,omitempty"`
	// ClientCAFile verifies client certificates on the HTTPS listener, which
	// then identify clients (CN system:node:* is kubelet, system:kube-proxy
	// is kube-proxy).
	ClientCAFile string `json:"clientCAFile,omitempty"`

	// DataDir holds the cache file and generated certificates.
	DataDir string `json:"dataDir,omitempty"`

	// NetBind enforces the node's network bindings (VTEP MAC, pod IPs for
	// edge-ipam), online and offline.
	NetBind netbind.Options `json:"netBind,omitempty"`

	// CacheClients are the clients whose reads are cached.
	CacheClients []string `json:"cacheClients,omitempty"`
	// TopologyClients get service-topology-filtered EndpointSlices.
	TopologyClients []string `json:"topologyClients,omitempty"`

	ProbeInterval    Duration `json:"probeInterval,omitempty"`
	ProbeTimeout     Duration `json:"probeTimeout,omitempty"`
	DialTimeout      Duration `json:"dialTimeout,omitempty"`
	FailureThreshold int      `json:"failureThreshold,omitempty"`
	SuccessThreshold int      `json:"successThreshold,omitempty"`

	// JournalMaxEntries bounds the offline write journal.
	JournalMaxEntries int `json:"journalMaxEntries,omitempty"`

	// Verbosity: 0 info, 2 state changes, 4 detail.
	Verbosity int `json:"verbosity,omitempty"`

	// Profiling serves Go's /debug/pprof on the admin listener.
	Profiling bool `json:"profiling,omitempty"`
}

// Duration is a time.Duration written as "1s" in config files.
type Duration struct{ time.Duration }

// UnmarshalJSON parses "1s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", s, err)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes "1s".
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ListenHTTP:        "127.0.0.1:10261",
		ListenHTTPS:       "127.0.0.1:10268",
		ListenAdmin:       "127.0.0.1:10267",
		DataDir:           "/var/lib/edge-hub",
		CacheClients:      []string{ClientKubelet, ClientKubeProxy, ClientCoreDNS, ClientFlannel, ClientTunnelAgent},
		TopologyClients:   []string{ClientKubeProxy, ClientCoreDNS},
		ProbeInterval:     Duration{time.Second},
		ProbeTimeout:      Duration{time.Second},
		DialTimeout:       Duration{2 * time.Second},
		FailureThreshold:  2,
		SuccessThreshold:  2,
		JournalMaxEntries: 10000,
	}
}

// StorePath is the cache file.
func (c Config) StorePath() string { return filepath.Join(c.DataDir, "cache.db") }

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("--node-name is required"))
	}
	if c.Kubeconfig == "" && c.Server == "" {
		errs = append(errs, errors.New("either --kubeconfig or --server is required"))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("--cert-file and --key-file go together"))
	}
	if (c.ServingCertFile == "") != (c.ServingKeyFile == "") {
		errs = append(errs, errors.New("--serving-cert-file and --serving-key-file go together"))
	}
	for name, addr := range map[string]string{"--listen-http": c.ListenHTTP, "--listen-https": c.ListenHTTPS, "--listen-admin": c.ListenAdmin} {
		if addr == "" {
			continue // disabled
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, addr, err))
			continue
		}
		if name != "--listen-admin" {
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				errs = append(errs, fmt.Errorf("%s %q: the proxy forwards with the node's credentials, so it listens on loopback only", name, addr))
			}
		}
	}
	if c.ListenInCluster != "" {
		host, _, err := net.SplitHostPort(c.ListenInCluster)
		switch ip := net.ParseIP(host); {
		case err != nil:
			errs = append(errs, fmt.Errorf("--listen-in-cluster %q: %w", c.ListenInCluster, err))
		case ip == nil || ip.To4() == nil || !ip.IsLinkLocalUnicast():
			errs = append(errs, fmt.Errorf("--listen-in-cluster %q: must be an IPv4 link-local address (169.254.0.0/16): pods' traffic to it stays on the node", c.ListenInCluster))
		case c.ListenHTTP == "":
			errs = append(errs, errors.New("--listen-in-cluster needs --listen-http: the hub requests its certificate through it"))
		}
	}
	if c.ListenHTTP == "" && c.ListenHTTPS == "" {
		errs = append(errs, errors.New("at least one of --listen-http and --listen-https is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	known := map[string]bool{ClientKubelet: true, ClientKubeProxy: true, ClientCoreDNS: true, ClientFlannel: true, ClientTunnelAgent: true, ClientOther: true}
	for _, list := range [][]string{c.CacheClients, c.TopologyClients} {
		for _, cl := range list {
			if !known[cl] {
				errs = append(errs, fmt.Errorf("unknown client %q (known: kubelet, kube-proxy, coredns, flannel, tunnel-agent, other)", cl))
			}
		}
	}
	for name, d := range map[string]time.Duration{"--probe-interval": c.ProbeInterval.Duration, "--probe-timeout": c.ProbeTimeout.Duration, "--dial-timeout": c.DialTimeout.Duration} {
		if d <= 0 || d > 5*time.Minute {
			errs = append(errs, fmt.Errorf("%s %s: must be in (0, 5m]", name, d))
		}
	}
	if c.FailureThreshold < 1 || c.SuccessThreshold < 1 {
		errs = append(errs, errors.New("--failure-threshold and --success-threshold must be at least 1"))
	}
	if c.JournalMaxEntries < 1 {
		errs = append(errs, errors.New("--journal-max-entries must be at least 1"))
	}
	return errors.Join(errs...)
}

// BindFlags registers flags writing into c.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.NodeName, "node-name", c.NodeName, "name of the node this hub runs on (required)")
	c.NetBind.BindFlags(fs)
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig with the node's credentials and the apiserver address")
	fs.StringVar(&c.Server, "server", c.Server, "apiserver URL (overrides the kubeconfig)")
	fs.StringVar(&c.CAFile, "ca-file", c.CAFile, "CA bundle verifying the apiserver")
	fs.StringVar(&c.CertFile, "cert-file", c.CertFile, "node client certificate")
	fs.StringVar(&c.KeyFile, "key-file", c.KeyFile, "node client key")
	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "node bearer token file")
	fs.StringVar(&c.ListenHTTP, "listen-http", c.ListenHTTP, "plain HTTP proxy address on loopback (empty: off)")
	fs.StringVar(&c.ListenHTTPS, "listen-https", c.ListenHTTPS, "HTTPS proxy address on loopback (empty: off)")
	fs.StringVar(&c.ListenAdmin, "listen-admin", c.ListenAdmin, "address of /healthz, /readyz and /metrics (empty: off)")
	fs.StringVar(&c.ListenInCluster, "listen-in-cluster", c.ListenInCluster, "TLS address for in-cluster clients, a link-local IP and port, e.g. "+DefaultListenInCluster+" (empty: off)")
	fs.StringVar(&c.ServingCertFile, "serving-cert-file", c.ServingCertFile, "HTTPS serving certificate (generated when empty)")
	fs.StringVar(&c.ServingKeyFile, "serving-key-file", c.ServingKeyFile, "HTTPS serving key")
	fs.StringVar(&c.ClientCAFile, "client-ca-file", c.ClientCAFile, "CA verifying client certificates on the HTTPS listener")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory of the cache file and generated certificates")
	fs.Func("cache-clients", "comma-separated clients whose reads are cached (default "+strings.Join(c.CacheClients, ",")+")", func(s string) error {
		c.CacheClients = splitList(s)
		return nil
	})
	fs.Func("topology-clients", "comma-separated clients served topology-filtered EndpointSlices (default "+strings.Join(c.TopologyClients, ",")+")", func(s string) error {
		c.TopologyClients = splitList(s)
		return nil
	})
	fs.DurationVar(&c.ProbeInterval.Duration, "probe-interval", c.ProbeInterval.Duration, "apiserver health probe interval")
	fs.DurationVar(&c.ProbeTimeout.Duration, "probe-timeout", c.ProbeTimeout.Duration, "apiserver health probe timeout")
	fs.DurationVar(&c.DialTimeout.Duration, "dial-timeout", c.DialTimeout.Duration, "timeout to connect to the apiserver")
	fs.IntVar(&c.FailureThreshold, "failure-threshold", c.FailureThreshold, "consecutive failed probes before going offline")
	fs.IntVar(&c.SuccessThreshold, "success-threshold", c.SuccessThreshold, "consecutive good probes before going back online")
	fs.IntVar(&c.JournalMaxEntries, "journal-max-entries", c.JournalMaxEntries, "bound of the offline write journal")
	fs.IntVar(&c.Verbosity, "v", c.Verbosity, "log verbosity (0, 2 state changes, 4 detail)")
	fs.BoolVar(&c.Profiling, "profiling", c.Profiling, "serve /debug/pprof on the admin listener")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// LoadConfig builds the configuration from args: defaults, then the file
// named by --config, then the flags given explicitly.
func LoadConfig(args []string) (Config, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("edge-hub", flag.ContinueOnError)
	configFile := fs.String("config", "", "YAML or JSON config file (flags given explicitly override it)")
	cfg.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *configFile != "" {
		fileCfg := DefaultConfig()
		raw, err := os.ReadFile(*configFile)
		if err != nil {
			return cfg, fmt.Errorf("reading config: %w", err)
		}
		if err := yaml.UnmarshalStrict(raw, &fileCfg); err != nil {
			return cfg, fmt.Errorf("parsing config %s: %w", *configFile, err)
		}
		// Re-apply the flags given explicitly on top of the file.
		fs2 := flag.NewFlagSet("edge-hub", flag.ContinueOnError)
		fs2.String("config", "", "")
		fileCfg.BindFlags(fs2)
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name := range set {
			if name == "config" {
				continue
			}
			if err := fs2.Set(name, fs.Lookup(name).Value.String()); err != nil {
				return cfg, err
			}
		}
		// Func flags have no readable value: take them from cfg.
		if set["cache-clients"] {
			fileCfg.CacheClients = cfg.CacheClients
		}
		if set["topology-clients"] {
			fileCfg.TopologyClients = cfg.TopologyClients
		}
		cfg = fileCfg
	}
	return cfg, cfg.Validate()
}

// isOwnListener says whether server is one of the hub's own proxy
// listeners.
func (c Config) isOwnListener(server string) bool {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return false
	}
	for _, l := range []string{c.ListenHTTP, c.ListenHTTPS} {
		if l != "" && sameHostPort(u.Host, l) {
			return true
		}
	}
	return false
}

// sameHostPort compares two host:port addresses, taking "localhost" and
// any loopback address as the same host.
func sameHostPort(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb {
		return false
	}
	loop := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "localhost" || (ip != nil && ip.IsLoopback())
	}
	return ha == hb || (loop(ha) && loop(hb))
}
