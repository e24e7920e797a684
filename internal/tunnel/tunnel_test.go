package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/testenv"
)

// connectVia sends CONNECT target to a proxy and returns the tunnelled
// connection, or the HTTP status on refusal.
func connectVia(t testing.TB, proxy, target string) (net.Conn, int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", target)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		_ = c.Close()
		t.Fatalf("reading CONNECT response: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		_ = c.Close()
		return nil, res.StatusCode
	}
	_ = c.SetDeadline(time.Time{})
	// Bytes after the response may already sit in br.
	return &bufferedConn{Conn: c, r: br}, res.StatusCode
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// echoServer echoes every connection on loopback and counts connections.
func echoServer(t testing.TB) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String(), &n
}

func TestConnectThroughTunnel(t *testing.T) {
	p := newPKI(t)
	echo, accepted := echoServer(t)
	echoPort := portOf(t, echo)
	srv := startServer(t, p, StaticResolver{"127.0.0.1": "node-a", "127.0.0.2": "node-b"}, 0)
	a := startAgent(t, "node-a", p.agentTLS(p.agentCert(t, "node-a")), []int{echoPort}, srv.agentAddr)
	eventually(t, 10*time.Second, "agent connected", func() bool { return srv.Connected("node-a") && len(a.Connected()) == 1 })

	c, code := connectVia(t, srv.connectAddr, echo)
	if code != http.StatusOK {
		t.Fatalf("CONNECT to an allowed target: status %d", code)
	}
	msg := []byte("hello through the tunnel")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, %v; want %q", got, err, msg)
	}
	_ = c.Close()

	// Refusals, each with its own status, and none reaches the echo server.
	before := accepted.Load()
	otherLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer otherLn.Close()
	tests := map[string]struct {
		target string
		want   int
	}{
		"port outside the allowlist": {target: otherLn.Addr().String(), want: http.StatusForbidden},
		"host off the egress policy": {target: "127.0.0.9:" + fmt.Sprint(echoPort), want: http.StatusForbidden},
		"node without an agent":      {target: "127.0.0.2:" + fmt.Sprint(echoPort), want: http.StatusServiceUnavailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, code := connectVia(t, srv.connectAddr, tc.target)
			if c != nil {
				_ = c.Close()
			}
			if code != tc.want {
				t.Fatalf("CONNECT %s: status %d, want %d", tc.target, code, tc.want)
			}
		})
	}
	if got := accepted.Load(); got != before {
		t.Fatalf("refused CONNECTs reached the echo server: %d connections, want %d", got, before)
	}
}

func TestAgentAuthentication(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, StaticResolver{}, 0)
	otherCA, _, err := certs.NewCA("rogue-ca", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := otherCA.Issue(certs.TunnelAgentRequest("node-a", time.Hour), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Issued long ago so that it has expired by now.
	expired, err := p.ca.Issue(certs.TunnelAgentRequest("node-a", time.Minute), time.Now().Add(-4*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	notAgent, err := p.ca.Issue(certs.Request{CommonName: "node-a", Lifetime: time.Hour, Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		node    string
		cert    tls.Certificate
		wantErr string
	}{
		"own node":                    {node: "node-a", cert: p.agentCert(t, "node-a")},
		"claims another node":         {node: "node-b", cert: p.agentCert(t, "node-a"), wantErr: `agent claims node "node-b" but its certificate is for node "node-a"`},
		"certificate from unknown CA": {node: "node-a", cert: mustPair(t, rogue), wantErr: "unknown certificate authority"},
		"expired certificate":         {node: "node-a", cert: mustPair(t, expired), wantErr: "expired certificate"},
		"certificate of a non-agent":  {node: "node-a", cert: mustPair(t, notAgent), wantErr: "refused the agent"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a, err := NewAgent(AgentConfig{Node: tc.node, TLSConfig: p.agentTLS(tc.cert), Discovery: StaticServers{srv.agentAddr}, Log: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			errc := make(chan error, 1)
			go func() { _, err := a.session(ctx, srv.agentAddr, a.log); errc <- err }()
			if tc.wantErr == "" {
				eventually(t, 10*time.Second, "agent registered", func() bool { return srv.Connected(tc.node) })
				cancel()
				<-errc
				eventually(t, 10*time.Second, "agent unregistered", func() bool { return !srv.Connected(tc.node) })
				return
			}
			select {
			case err := <-errc:
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("session error = %v, want it to contain %q", err, tc.wantErr)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("refused agent's session did not end")
			}
			if srv.Connected("node-a") || srv.Connected("node-b") {
				t.Fatal("a refused agent is registered")
			}
		})
	}
}

// TestSlowStreamDoesNotStallOthers leaves one stream unread while another
// moves many times the stream window: per-stream flow control must keep the
// session going.
func TestSlowStreamDoesNotStallOthers(t *testing.T) {
	p := newPKI(t)
	const size = 32 << 20
	src, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	go func() {
		buf := bytes.Repeat([]byte("x"), 64<<10)
		for {
			c, err := src.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for sent := 0; sent < size; sent += len(buf) {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	srv := startServer(t, p, StaticResolver{"127.0.0.1": "node-a"}, 0)
	startAgent(t, "node-a", p.agentTLS(p.agentCert(t, "node-a")), []int{portOf(t, src.Addr().String())}, srv.agentAddr)
	eventually(t, 10*time.Second, "agent connected", func() bool { return srv.Connected("node-a") })

	slow, code := connectVia(t, srv.connectAddr, src.Addr().String())
	if code != http.StatusOK {
		t.Fatalf("CONNECT: %d", code)
	}
	defer slow.Close() // never read: its window fills and stays full
	fast, code := connectVia(t, srv.connectAddr, src.Addr().String())
	if code != http.StatusOK {
		t.Fatalf("CONNECT: %d", code)
	}
	defer fast.Close()
	_ = fast.SetReadDeadline(time.Now().Add(60 * time.Second))
	n, err := io.Copy(io.Discard, fast)
	if err != nil || n != size {
		t.Fatalf("fast stream moved %d bytes (%v) beside a stalled one, want %d", n, err, size)
	}
}

func TestPassthroughRoutesBySNIWithoutTerminatingTLS(t *testing.T) {
	p := newPKI(t)
	// The "kubelet" has its own certificate, from a CA the tunnel never sees.
	kcaCA, _, err := certs.NewCA("kubelet-ca", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kkp, err := kcaCA.Issue(certs.Request{CommonName: "node-a", DNSNames: []string{"node-a"}, Lifetime: time.Hour, Server: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kubelet := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "metrics of %s", r.TLS.ServerName)
	}))
	kubelet.TLS = &tls.Config{Certificates: []tls.Certificate{mustPair(t, kkp)}}
	kubelet.StartTLS()
	defer kubelet.Close()
	kport := portOf(t, kubelet.Listener.Addr().String())

	res := StaticResolver{"node-a": "node-a"}
	srv := startServer(t, p, passthroughResolver{res, "127.0.0.1"}, kport)
	startAgent(t, "node-a", p.agentTLS(p.agentCert(t, "node-a")), []int{kport}, srv.agentAddr)
	eventually(t, 10*time.Second, "agent connected", func() bool { return srv.Connected("node-a") })

	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: kcaCA.Pool(), ServerName: "node-a"},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", srv.passthroughAddr)
		},
	}}
	resp, err := client.Get("https://node-a/metrics")
	if err != nil {
		t.Fatalf("GET through passthrough: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "metrics of node-a" {
		t.Fatalf("body = %q", body)
	}
	// End to end: the certificate the client verified is the kubelet's.
	peer := resp.TLS.PeerCertificates[0]
	if _, err := peer.Verify(x509.VerifyOptions{Roots: kcaCA.Pool(), DNSName: "node-a"}); err != nil {
		t.Fatalf("client did not see the kubelet's own certificate: %v", err)
	}

	// An unknown SNI gets no connection.
	bad := &tls.Config{InsecureSkipVerify: true, ServerName: "node-z"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", srv.passthroughAddr, bad)
	if err == nil {
		_ = conn.Close()
		t.Fatal("passthrough to an unknown node succeeded")
	}
}

// passthroughResolver resolves names to a node and dials ip on it.
type passthroughResolver struct {
	StaticResolver
	ip string
}

func (r passthroughResolver) Resolve(host string) (string, string, error) {
	node, _, err := r.StaticResolver.Resolve(host)
	return node, r.ip, err
}

func TestAgentReconnectsAfterServerRestart(t *testing.T) {
	p := newPKI(t)
	cert := p.agentCert(t, "node-a")
	port, err := testenv.RestartablePort("127.0.0.1") // the server restarts on it
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv1, err := NewServer(ServerConfig{TLSConfig: &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.ca.Pool()}, Resolver: StaticResolver{}, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx1, stop1 := context.WithCancel(context.Background())
	done1 := make(chan struct{})
	go func() { _ = srv1.ServeAgents(ctx1, ln); close(done1) }()
	a := startAgent(t, "node-a", p.agentTLS(cert), nil, addr)
	eventually(t, 10*time.Second, "agent connected", func() bool { return srv1.Connected("node-a") })

	stop1()
	<-done1
	eventually(t, 10*time.Second, "agent notices the server is gone", func() bool { return len(a.Connected()) == 0 })
	restarted := time.Now()
	srv2, err := NewServer(ServerConfig{TLSConfig: &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.ca.Pool()}, Resolver: StaticResolver{}, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	go func() { _ = srv2.ServeAgents(ctx2, ln2) }()
	eventually(t, 10*time.Second, "agent reconnected", func() bool { return srv2.Connected("node-a") })
	t.Logf("agent back %s after the server restarted", time.Since(restarted))
}

// TestBatchConnSendsCorkedWritesTogether: the TLS records of one mux frame,
// written while corked, leave in one write.
func TestBatchConnSendsCorkedWritesTogether(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var writes atomic.Int32
	bc := newBatchConn(countingConn{Conn: a, n: &writes})
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 1024)
		n, _ := io.ReadAtLeast(b, buf, 10)
		got <- buf[:n]
	}()
	bc.Cork()
	for _, p := range []string{"head", "er", "body"} {
		if _, err := bc.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if writes.Load() != 0 {
		t.Fatal("corked write went out")
	}
	if err := bc.Uncork(); err != nil {
		t.Fatal(err)
	}
	if data := <-got; string(data) != "headerbody" {
		t.Fatalf("wire = %q", data)
	}
	if writes.Load() != 1 {
		t.Fatalf("%d writes, want 1", writes.Load())
	}
	// Uncorked writes go out at once.
	go func() { buf := make([]byte, 3); _, _ = io.ReadFull(b, buf); got <- buf }()
	if _, err := bc.Write([]byte("now")); err != nil {
		t.Fatal(err)
	}
	select {
	case data := <-got:
		if string(data) != "now" {
			t.Fatalf("wire = %q", data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("uncorked write held back")
	}
}

type countingConn struct {
	net.Conn
	n *atomic.Int32
}

func (c countingConn) Write(p []byte) (int, error) { c.n.Add(1); return c.Conn.Write(p) }

func TestFrameRoundTripAndLimits(t *testing.T) {
	var buf bytes.Buffer
	if err := writeFrame(&buf, request{Target: "10.0.0.1:10250"}); err != nil {
		t.Fatal(err)
	}
	var r request
	if err := readFrame(&buf, &r); err != nil || r.Target != "10.0.0.1:10250" {
		t.Fatalf("round trip = %+v, %v", r, err)
	}
	if err := writeFrame(&buf, request{Target: strings.Repeat("x", maxFrame)}); err == nil {
		t.Fatal("oversized frame written")
	}
	big := []byte{0xff, 0xff}
	if err := readFrame(bytes.NewReader(big), &r); err == nil {
		t.Fatal("oversized frame accepted")
	}
	if !errors.Is(reply{Code: codeForbidden}.err(), ErrForbidden) {
		t.Fatal("forbidden reply does not map to ErrForbidden")
	}
}
