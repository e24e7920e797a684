package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/tunnel/mux"
)

// ServerConfig configures a tunnel server replica.
type ServerConfig struct {
	// ID names this replica (its pod name); agents log it.
	ID string
	// TLSConfig serves the agent port. It must hold the serving certificate
	// and ClientCAs, the CA of agent certificates; NewServer requires and
	// verifies client certificates and TLS 1.3 whatever it says.
	TLSConfig *tls.Config
	// Resolver maps hosts to nodes for the frontends and routes CONNECT
	// destinations.
	Resolver Resolver
	// DialDirect dials a cloud-side CONNECT destination from the server;
	// a net.Dialer bounded by HandshakeTimeout when nil.
	DialDirect func(ctx context.Context, network, addr string) (net.Conn, error)
	// Metrics counts CONNECT routes and outcomes; nil counts nothing.
	Metrics *Metrics
	// Log is the server's logger.
	Log logr.Logger
	// HeartbeatInterval is how often the server pings each agent; a failed
	// ping drops the agent. Default 10s.
	HeartbeatInterval time.Duration
	// HandshakeTimeout bounds an agent's TLS handshake and hello, and the
	// agent's answer to a stream request. Default 10s.
	HandshakeTimeout time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// AgentInfo describes an agent connected to this replica.
type AgentInfo struct {
	Node string
	// Servers is how many replicas the agent says it is connected to.
	Servers int32
	// Since is when the current session started.
	Since time.Time
	// LastSeen is when this replica last heard from the agent.
	LastSeen time.Time
}

// Server is one tunnel-server replica: it accepts agents and opens streams to
// them for its frontends.
type Server struct {
	cfg    ServerConfig
	tlsCfg *tls.Config
	log    logr.Logger

	mu     sync.RWMutex
	agents map[string]*agentSession // node -> newest session
	// everConnected are the nodes that ever had an agent here: such a node
	// stays on the edge (its agent's route) while its agent is away, even
	// without a pool label, rather than being dialled from the cloud.
	everConnected map[string]bool
	seq           atomic.Uint64
}

type agentSession struct {
	id       uint64
	node     string
	remote   string
	sess     *mux.Session
	since    time.Time
	lastSeen atomic.Int64 // unix nanoseconds
	servers  atomic.Int32
}

// NewServer returns a server for cfg.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.TLSConfig == nil {
		return nil, errors.New("tunnel server needs a TLS config")
	}
	if cfg.Resolver == nil {
		return nil, errors.New("tunnel server needs a resolver")
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DialDirect == nil {
		cfg.DialDirect = (&net.Dialer{Timeout: cfg.HandshakeTimeout}).DialContext
	}
	t := cfg.TLSConfig.Clone()
	t.ClientAuth = tls.RequireAndVerifyClientCert
	t.MinVersion = tls.VersionTLS13
	if t.ClientCAs == nil && t.GetConfigForClient == nil {
		return nil, errors.New("tunnel server needs the CA of agent certificates (ClientCAs)")
	}
	return &Server{cfg: cfg, tlsCfg: t, log: cfg.Log, agents: map[string]*agentSession{}, everConnected: map[string]bool{}}, nil
}

// ServeAgents accepts agent connections on ln until ctx ends.
func (s *Server) ServeAgents(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				s.closeAll()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.closeAll()
			return fmt.Errorf("accepting agents: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handleAgent(ctx, conn)
		}()
	}
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.agents {
		_ = a.sess.Close()
	}
}

// authenticate runs the TLS handshake and the hello, returning the node.
func (s *Server) authenticate(ctx context.Context, raw net.Conn) (*tls.Conn, string, error) {
	deadline := s.cfg.Now().Add(s.cfg.HandshakeTimeout)
	_ = raw.SetDeadline(deadline)
	tc := tls.Server(newBatchConn(raw), s.tlsCfg)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, "", fmt.Errorf("TLS handshake: %w", err)
	}
	peers := tc.ConnectionState().PeerCertificates
	if len(peers) == 0 {
		return nil, "", errors.New("no client certificate")
	}
	node, err := certs.TunnelAgentNode(peers[0])
	if err != nil {
		return nil, "", err
	}
	var h hello
	if err := readFrame(tc, &h); err != nil {
		return nil, "", fmt.Errorf("reading hello: %w", err)
	}
	if h.Node != node {
		err := fmt.Errorf("agent claims node %q but its certificate is for node %q", h.Node, node)
		_ = writeFrame(tc, welcome{Error: err.Error()})
		return nil, "", err
	}
	if h.Version != protocolVersion {
		err := fmt.Errorf("unsupported protocol version %d, want %d", h.Version, protocolVersion)
		_ = writeFrame(tc, welcome{Error: err.Error()})
		return nil, "", err
	}
	if err := writeFrame(tc, welcome{OK: true, Server: s.cfg.ID}); err != nil {
		return nil, "", err
	}
	_ = raw.SetDeadline(time.Time{})
	return tc, node, nil
}

func (s *Server) handleAgent(ctx context.Context, raw net.Conn) {
	log := s.log.WithValues("remote", raw.RemoteAddr().String())
	tc, node, err := s.authenticate(ctx, raw)
	if err != nil {
		log.Info("Rejected agent", "reason", err.Error())
		_ = raw.Close()
		return
	}
	log = log.WithValues("node", node)
	sess := mux.Server(tc, muxConfig(tc, 0))
	now := s.cfg.Now()
	a := &agentSession{id: s.seq.Add(1), node: node, remote: raw.RemoteAddr().String(), sess: sess, since: now}
	a.lastSeen.Store(now.UnixNano())
	a.servers.Store(1)
	s.register(a)
	log.V(2).Info("Agent connected")
	defer func() {
		s.unregister(a)
		_ = sess.Close()
		log.V(2).Info("Agent disconnected")
	}()
	go s.acceptFromAgent(a)
	tick := time.NewTicker(s.cfg.HeartbeatInterval)
	defer tick.Stop()
	// The session lasts no longer than the certificate that opened it: an
	// agent that can no longer renew its identity (its node was removed,
	// say) loses the tunnel. A rotating agent reconnects with its new one.
	notAfter := tc.ConnectionState().PeerCertificates[0].NotAfter
	expired := time.NewTimer(notAfter.Sub(s.cfg.Now()))
	defer expired.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sess.CloseChan():
			return
		case <-expired.C:
			log.Info("Agent certificate expired, ending the session", "notAfter", notAfter)
			return
		case <-tick.C:
			if _, err := sess.Ping(); err != nil {
				log.Info("Agent missed a heartbeat", "error", err.Error())
				return
			}
			a.lastSeen.Store(s.cfg.Now().UnixNano())
		}
	}
}

// acceptFromAgent takes the agent's report streams.
func (s *Server) acceptFromAgent(a *agentSession) {
	for {
		st, err := a.sess.AcceptStream()
		if err != nil {
			return
		}
		go func() {
			defer st.Close()
			_ = st.SetDeadline(s.cfg.Now().Add(s.cfg.HandshakeTimeout))
			var req request
			if err := readFrame(st, &req); err != nil || req.Kind != kindReport {
				return
			}
			if req.Servers > 0 {
				a.servers.Store(req.Servers)
			}
			a.lastSeen.Store(s.cfg.Now().UnixNano())
		}()
	}
}

func (s *Server) register(a *agentSession) {
	s.mu.Lock()
	old := s.agents[a.node]
	s.agents[a.node] = a
	s.everConnected[a.node] = true
	s.mu.Unlock()
	if old != nil {
		// The agent reconnected before we noticed the old session die.
		_ = old.sess.Close()
	}
}

func (s *Server) unregister(a *agentSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.agents[a.node]; cur != nil && cur.id == a.id {
		delete(s.agents, a.node)
	}
}

// hadAgent reports whether node's agent connected to this replica since it
// started.
func (s *Server) hadAgent(node string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.everConnected[node]
}

func (s *Server) agent(node string) *agentSession {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.agents[node]
}

// Agents lists the agents connected to this replica, sorted by node.
func (s *Server) Agents() []AgentInfo {
	s.mu.RLock()
	out := make([]AgentInfo, 0, len(s.agents))
	for _, a := range s.agents {
		out = append(out, AgentInfo{Node: a.node, Servers: a.servers.Load(), Since: a.since, LastSeen: time.Unix(0, a.lastSeen.Load())})
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// Connected says whether node's agent is connected to this replica.
func (s *Server) Connected(node string) bool { return s.agent(node) != nil }

// Dial reaches addr (host:port) on whichever node owns host.
func (s *Server) Dial(ctx context.Context, addr string) (net.Conn, error) {
	conn, _, err := s.DialRoute(ctx, addr)
	return conn, err
}

// DialRoute dials a CONNECT destination by its route: an edge node, or a
// pod on one, through that node's agent; a cloud-side destination
// directly; anything else not at all. It returns the route it took.
func (s *Server) DialRoute(ctx context.Context, addr string) (net.Conn, Route, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, Route{Kind: RouteRefused}, fmt.Errorf("%w: malformed address %q: %v", ErrOffPolicy, addr, err)
	}
	rt, err := s.cfg.Resolver.Route(host, s.hadAgent)
	if err != nil {
		return nil, rt, err
	}
	target := net.JoinHostPort(rt.Host, port)
	if rt.Kind == RouteDirect {
		conn, err := s.cfg.DialDirect(ctx, "tcp", target)
		if err != nil {
			return nil, rt, fmt.Errorf("%w: dialling %s: %v", ErrDirectUnreachable, target, err)
		}
		return conn, rt, nil
	}
	conn, err := s.DialNode(ctx, rt.Node, target)
	return conn, rt, err
}

// DialNode asks node's agent to dial target and returns the stream.
func (s *Server) DialNode(ctx context.Context, node, target string) (net.Conn, error) {
	a := s.agent(node)
	if a == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoAgent, node)
	}
	st, err := a.sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("opening stream to node %s: %w", node, err)
	}
	_ = st.SetDeadline(s.cfg.Now().Add(s.cfg.HandshakeTimeout))
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var rep reply
	if err := writeFrame(st, request{Target: target}); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("asking node %s for %s: %w", node, target, err)
	}
	if err := readFrame(st, &rep); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("waiting for node %s to dial %s: %w", node, target, err)
	}
	if err := rep.err(); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("node %s, target %s: %w", node, target, err)
	}
	if !stop() {
		_ = st.Close()
		return nil, ctx.Err()
	}
	_ = st.SetDeadline(time.Time{})
	a.lastSeen.Store(s.cfg.Now().UnixNano())
	return st, nil
}
