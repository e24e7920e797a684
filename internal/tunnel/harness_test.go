package tunnel

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"

	"github.com/edgeunit/edgeunit/internal/certs"
)

type pki struct {
	ca     *certs.CA
	server tls.Certificate
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	now := time.Now()
	ca, _, err := certs.NewCA("tunnel-test-ca", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(certs.Request{CommonName: "tunnel-server", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Lifetime: time.Hour, Server: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{ca: ca, server: mustPair(t, kp)}
}

func mustPair(t testing.TB, kp certs.KeyPair) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p *pki) agentCert(t testing.TB, node string) tls.Certificate {
	t.Helper()
	kp, err := p.ca.Issue(certs.TunnelAgentRequest(node, time.Hour), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return mustPair(t, kp)
}

func (p *pki) agentTLS(cert tls.Certificate) *tls.Config {
	// Like ClientTLS: always present the certificate, even to a server that
	// does not list its CA, so the server is the one to refuse it.
	return &tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }, RootCAs: p.ca.Pool()}
}

type testServer struct {
	*Server
	agentAddr, connectAddr, passthroughAddr string
}

func testLogger(t testing.TB) logr.Logger {
	if tt, ok := t.(*testing.T); ok && testing.Verbose() {
		return testr.New(tt)
	}
	return logr.Discard()
}

// startServer runs a server with agent, CONNECT (plain TCP) and passthrough
// listeners on loopback ports chosen by the kernel.
func startServer(t testing.TB, p *pki, res Resolver, passthroughPort int) *testServer {
	t.Helper()
	srv, err := NewServer(ServerConfig{
		ID:                "test-replica",
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.ca.Pool()},
		Resolver:          res,
		Log:               testLogger(t).WithName("server"),
		HeartbeatInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	al, cl, pl := listen(), listen(), listen()
	done := make(chan struct{}, 3)
	go func() { _ = srv.ServeAgents(ctx, al); done <- struct{}{} }()
	go func() { _ = srv.ServeConnect(ctx, cl); done <- struct{}{} }()
	go func() { _ = srv.ServePassthrough(ctx, pl, passthroughPort); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		for range 3 {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("server did not stop")
				return
			}
		}
	})
	return &testServer{Server: srv, agentAddr: al.Addr().String(), connectAddr: cl.Addr().String(), passthroughAddr: pl.Addr().String()}
}

// startAgent runs an agent against the given server addresses.
func startAgent(t testing.TB, node string, tlsCfg *tls.Config, ports []int, servers ...string) *Agent {
	t.Helper()
	a, err := NewAgent(AgentConfig{
		Node:      node,
		TLSConfig: tlsCfg,
		Discovery: StaticServers(servers),
		Policy:    Policy{Ports: ports},
		Backoff:   Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		KeepAlive: time.Second,
		Log:       testLogger(t).WithName("agent"),
	})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, a)
	return a
}

// eventually polls cond every 20ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func portOf(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ParsePorts(p)
	if err != nil {
		t.Fatal(err)
	}
	return n[0]
}
