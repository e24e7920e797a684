package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"

	"github.com/edgeunit/edgeunit/internal/tunnel/mux"
)

// Backoff is a capped exponential backoff with jitter.
type Backoff struct {
	// Initial is the first delay. Default 200ms.
	Initial time.Duration
	// Max caps the delay. Default 30s.
	Max time.Duration
	// Rand returns a number in [0,1); math/rand when nil.
	Rand func() float64
}

// Delay returns the wait before retry attempt (0-based): a random duration
// in [d/2, d) with d = min(Max, Initial·2^attempt), so agents that lost the
// same server do not come back in lockstep.
func (b Backoff) Delay(attempt int) time.Duration {
	initial, maxDelay := b.Initial, b.Max
	if initial <= 0 {
		initial = 200 * time.Millisecond
	}
	if maxDelay <= 0 {
		maxDelay = 30 * time.Second
	}
	d := maxDelay
	if attempt < 30 && initial<<attempt < maxDelay {
		d = initial << attempt
	}
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	return d/2 + time.Duration(r()*float64(d/2))
}

// Discovery finds the server replicas to connect to, as host:port.
type Discovery interface {
	Servers(ctx context.Context) ([]string, error)
}

// StaticServers is a fixed list of replica addresses.
type StaticServers []string

// Servers implements Discovery.
func (s StaticServers) Servers(context.Context) ([]string, error) { return s, nil }

// DNSServers finds replicas behind a headless Service: every address the
// name resolves to is one replica.
type DNSServers struct {
	Host string
	Port string
	// Resolver defaults to net.DefaultResolver.
	Resolver *net.Resolver
}

// Servers implements Discovery.
func (d DNSServers) Servers(ctx context.Context) ([]string, error) {
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupHost(ctx, d.Host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", d.Host, err)
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip, d.Port))
	}
	return out, nil
}

// MultiDiscovery merges several discoveries; one failing does not hide the
// others' replicas.
type MultiDiscovery []Discovery

// Servers implements Discovery.
func (m MultiDiscovery) Servers(ctx context.Context) ([]string, error) {
	var all []string
	var errs []error
	for _, d := range m {
		s, err := d.Servers(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		all = append(all, s...)
	}
	sort.Strings(all)
	all = slices.Compact(all)
	if len(all) == 0 {
		return nil, errors.Join(errs...)
	}
	return all, nil
}

// AgentConfig configures a tunnel agent.
type AgentConfig struct {
	// Node is this node's name; it must match the client certificate.
	Node string
	// TLSConfig dials the servers: client certificate (Certificates or
	// GetClientCertificate) and RootCAs. ServerName defaults to the host of
	// the address dialled.
	TLSConfig *tls.Config
	// Discovery finds the server replicas.
	Discovery Discovery
	// DiscoveryInterval is how often replicas are looked up again.
	// Default 30s.
	DiscoveryInterval time.Duration
	// Policy says which local targets the agent dials.
	Policy Policy
	// NodeClient reads this node's Node for its pod CIDRs when
	// Policy.PodPorts names pod ports and Policy.PodCIDRs is nil. The
	// agent serves without waiting for it; pods are refused until the Node
	// has been read.
	NodeClient kubernetes.Interface
	// Backoff paces reconnects to a replica.
	Backoff Backoff
	// KeepAlive is the interval of session pings that detect a dead server.
	// Default 10s.
	KeepAlive time.Duration
	// DialTimeout bounds dialling a server or a target. Default 10s.
	DialTimeout time.Duration
	// Dial dials servers and targets; a net.Dialer when nil.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Log is the agent's logger.
	Log logr.Logger
}

// Agent keeps a session to every server replica and serves their streams.
type Agent struct {
	cfg AgentConfig
	log logr.Logger
	// podCIDRs, when set, is filled from NodeClient while the agent runs.
	podCIDRs *NodePodCIDRs

	mu       sync.Mutex
	sessions map[string]*mux.Session // replica address -> session
	changed  chan struct{}
}

// NewAgent returns an agent for cfg.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.Node == "" {
		return nil, errors.New("agent needs its node name")
	}
	if cfg.TLSConfig == nil {
		return nil, errors.New("agent needs a TLS config")
	}
	if cfg.Discovery == nil {
		return nil, errors.New("agent needs a way to find servers")
	}
	if len(cfg.Policy.Ports) == 0 {
		cfg.Policy.Ports = DefaultAllowedPorts
	}
	var podCIDRs *NodePodCIDRs
	if len(cfg.Policy.PodPorts) > 0 && cfg.Policy.PodCIDRs == nil {
		if cfg.NodeClient == nil {
			return nil, errors.New("agent with pod ports needs its node's pod CIDRs or a client to read them")
		}
		podCIDRs = &NodePodCIDRs{}
		cfg.Policy.PodCIDRs = podCIDRs.Get
	}
	if cfg.DiscoveryInterval <= 0 {
		cfg.DiscoveryInterval = 30 * time.Second
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 10 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.Dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		cfg.Dial = d.DialContext
	}
	return &Agent{cfg: cfg, log: cfg.Log.WithValues("node", cfg.Node), podCIDRs: podCIDRs, sessions: map[string]*mux.Session{}, changed: make(chan struct{})}, nil
}

// Connected returns the replica addresses the agent has a session with.
func (a *Agent) Connected() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.sessions))
	for addr := range a.sessions {
		out = append(out, addr)
	}
	sort.Strings(out)
	return out
}

// Changed returns a channel closed at the next change of sessions.
func (a *Agent) Changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

// Run keeps sessions to every discovered replica until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	if a.podCIDRs != nil {
		// In the background: sessions do not wait for the Node.
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.podCIDRs.Run(ctx, a.cfg.NodeClient, a.cfg.Node, a.log.WithName("pod-cidrs"))
		}()
	}
	loops := map[string]context.CancelFunc{}
	tick := time.NewTicker(a.cfg.DiscoveryInterval)
	defer tick.Stop()
	for {
		addrs, err := a.cfg.Discovery.Servers(ctx)
		if err != nil {
			a.log.Error(err, "Discovering tunnel servers")
		}
		if err == nil || len(addrs) > 0 {
			for addr, stop := range loops {
				if !slices.Contains(addrs, addr) {
					a.log.V(2).Info("Tunnel server gone", "server", addr)
					stop()
					delete(loops, addr)
				}
			}
			for _, addr := range addrs {
				if _, ok := loops[addr]; ok {
					continue
				}
				lctx, stop := context.WithCancel(ctx)
				loops[addr] = stop
				wg.Add(1)
				go func() {
					defer wg.Done()
					a.connectLoop(lctx, addr)
				}()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// connectLoop keeps one replica connected, backing off between attempts.
func (a *Agent) connectLoop(ctx context.Context, addr string) {
	log := a.log.WithValues("server", addr)
	attempt := 0
	for ctx.Err() == nil {
		established, err := a.session(ctx, addr, log)
		if ctx.Err() != nil {
			return
		}
		// After a session that was up, the server is most likely restarting:
		// retry soon. Only failed attempts back off further.
		if established {
			attempt = 0
		}
		delay := a.cfg.Backoff.Delay(attempt)
		attempt++
		log.Info("Tunnel session ended, reconnecting", "error", errString(err), "after", delay.String())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// session connects to addr and serves the session until it ends; it says
// whether the session was established.
func (a *Agent) session(ctx context.Context, addr string, log logr.Logger) (bool, error) {
	err := a.connect(ctx, addr, log)
	if errors.Is(err, errSessionEnded) {
		return true, err
	}
	return false, err
}

var errSessionEnded = errors.New("session ended")

func (a *Agent) connect(ctx context.Context, addr string, log logr.Logger) error {
	dctx, cancel := context.WithTimeout(ctx, a.cfg.DialTimeout)
	defer cancel()
	raw, err := a.cfg.Dial(dctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dialling %s: %w", addr, err)
	}
	tcfg := a.cfg.TLSConfig.Clone()
	tcfg.MinVersion = tls.VersionTLS13
	if tcfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		tcfg.ServerName = host
	}
	deadline, _ := dctx.Deadline()
	_ = raw.SetDeadline(deadline)
	tc := tls.Client(newBatchConn(raw), tcfg)
	if err := tc.HandshakeContext(dctx); err != nil {
		_ = raw.Close()
		return fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	var w welcome
	if err := writeFrame(tc, hello{Version: protocolVersion, Node: a.cfg.Node}); err == nil {
		err = readFrame(tc, &w)
		if err != nil {
			_ = raw.Close()
			// With TLS 1.3 the server checks our certificate after our side
			// of the handshake is done: its verdict arrives here.
			return fmt.Errorf("server %s refused the agent: %w", addr, err)
		}
	} else {
		_ = raw.Close()
		return err
	}
	if !w.OK {
		_ = raw.Close()
		return fmt.Errorf("server %s refused the agent: %s", addr, w.Error)
	}
	_ = raw.SetDeadline(time.Time{})
	sess := mux.Client(tc, muxConfig(tc, a.cfg.KeepAlive))
	defer sess.Close()
	log.Info("Connected to tunnel server", "replica", w.Server)
	a.setSession(addr, sess)
	defer a.setSession(addr, nil)
	stop := context.AfterFunc(ctx, func() { _ = sess.Close() })
	defer stop()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return fmt.Errorf("%w: %s: %w", errSessionEnded, addr, err)
		}
		go a.serveStream(ctx, st, log)
	}
}

func (a *Agent) setSession(addr string, sess *mux.Session) {
	a.mu.Lock()
	if sess == nil {
		delete(a.sessions, addr)
	} else {
		a.sessions[addr] = sess
	}
	n := int32(len(a.sessions))
	all := make([]*mux.Session, 0, n)
	for _, s := range a.sessions {
		all = append(all, s)
	}
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
	// Tell every replica how many replicas we reach, for status.
	for _, s := range all {
		go a.report(s, n)
	}
}

func (a *Agent) report(sess *mux.Session, servers int32) {
	st, err := sess.OpenStream()
	if err != nil {
		return
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(a.cfg.DialTimeout))
	_ = writeFrame(st, request{Kind: kindReport, Servers: servers})
}

// serveStream answers one server request: policy, dial, relay.
func (a *Agent) serveStream(ctx context.Context, st *mux.Stream, log logr.Logger) {
	_ = st.SetDeadline(time.Now().Add(a.cfg.DialTimeout))
	var req request
	if err := readFrame(st, &req); err != nil {
		_ = st.Close()
		return
	}
	log = log.WithValues("target", req.Target)
	addr, err := a.cfg.Policy.Check(req.Target)
	if err != nil {
		log.Info("Refused target", "reason", err.Error())
		_ = writeFrame(st, reply{Code: codeForbidden, Error: err.Error()})
		_ = st.Close()
		return
	}
	dctx, cancel := context.WithTimeout(ctx, a.cfg.DialTimeout)
	defer cancel()
	conn, err := a.cfg.Dial(dctx, "tcp", addr)
	if err != nil {
		log.V(2).Info("Target unreachable", "error", err.Error())
		_ = writeFrame(st, reply{Code: codeUnreachable, Error: err.Error()})
		_ = st.Close()
		return
	}
	if err := writeFrame(st, reply{Code: codeOK}); err != nil {
		_ = conn.Close()
		_ = st.Close()
		return
	}
	_ = st.SetDeadline(time.Time{})
	log.V(4).Info("Relaying")
	splice(st, conn)
}
