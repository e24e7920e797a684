package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeunit/edgeunit/internal/certs"
)

// writeFile writes data to name in dir and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAgentIdentityFlags(t *testing.T) {
	base := []string{"--node-name=edge-1", "--servers=127.0.0.1:10262", "--ca-file=/ca.crt"}
	tests := map[string]struct {
		args    []string
		wantErr string // empty: valid
	}{
		"CSR API":                      {args: []string{"--kubeconfig=/etc/kubernetes/kubelet.conf", "--cert-dir=/var/lib/edgeunit/tunnel-agent"}},
		"CSR API with a lifetime":      {args: []string{"--kubeconfig=/k", "--cert-dir=/d", "--certificate-lifetime=2h"}},
		"static files":                 {args: []string{"--cert-file=/tls.crt", "--key-file=/tls.key"}},
		"neither":                      {wantErr: "an identity is required: --kubeconfig"},
		"both":                         {args: []string{"--kubeconfig=/k", "--cert-dir=/d", "--cert-file=/tls.crt", "--key-file=/tls.key"}, wantErr: "exclude each other"},
		"kubeconfig and a key only":    {args: []string{"--kubeconfig=/k", "--cert-dir=/d", "--key-file=/tls.key"}, wantErr: "exclude each other"},
		"kubeconfig without cert-dir":  {args: []string{"--kubeconfig=/k"}, wantErr: "--kubeconfig needs --cert-dir"},
		"certificate without its key":  {args: []string{"--cert-file=/tls.crt"}, wantErr: "--cert-file and --key-file go together"},
		"cert-dir with static files":   {args: []string{"--cert-file=/tls.crt", "--key-file=/tls.key", "--cert-dir=/d"}, wantErr: "apply only with --kubeconfig"},
		"lifetime below the API floor": {args: []string{"--kubeconfig=/k", "--cert-dir=/d", "--certificate-lifetime=5m"}, wantErr: "at least 10m"},
		"no server CA":                 {args: []string{"--kubeconfig=/k", "--cert-dir=/d", "--ca-file="}, wantErr: "--ca-file is required"},
		"pod ports":                    {args: []string{"--kubeconfig=/k", "--cert-dir=/d", "--pod-ports=8443,9443"}},
		"pod ports with static files":  {args: []string{"--cert-file=/tls.crt", "--key-file=/tls.key", "--pod-ports=8443"}, wantErr: "--pod-ports needs --kubeconfig"},
		"bad pod port":                 {args: []string{"--kubeconfig=/k", "--cert-dir=/d", "--pod-ports=8443,70000"}, wantErr: "--pod-ports: invalid port"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var o AgentOptions
			fs := flag.NewFlagSet("tunnel-agent", flag.ContinueOnError)
			o.BindFlags(fs)
			if err := fs.Parse(append(append([]string{}, base...), tc.args...)); err != nil {
				t.Fatal(err)
			}
			err := o.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want valid", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// unreachableKubeconfig is a kubeconfig whose apiserver refuses every
// connection: the node is cut off from the cloud. Port 1 (tcpmux, unused),
// not a port freed by the test, which someone else may bind meanwhile.
func unreachableKubeconfig(t testing.TB, dir string) string {
	t.Helper()
	const addr = "127.0.0.1:1"
	return writeFile(t, dir, "kubelet.conf", fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://%s", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: not-used}
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
`, addr))
}

// agentRun is a RunAgent running until the test ends.
type agentRun struct {
	done chan struct{} // closed when RunAgent returned
	err  error
}

func runAgent(t *testing.T, o AgentOptions) *agentRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &agentRun{done: make(chan struct{})}
	go func() { r.err = RunAgent(ctx, o, testLogger(t).WithName("agent")); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
	})
	return r
}

// startOfflineAgent runs RunAgent for edge-1 against srv with
// kube-apiserver out of reach and a certificate on disk, in the file the
// CSR requester keeps (certificate then key); change adjusts the options.
// It returns once the agent is connected.
func startOfflineAgent(t *testing.T, p *pki, srv *testServer, change func(*AgentOptions)) {
	t.Helper()
	dir := t.TempDir()
	kp, err := p.ca.Issue(certs.TunnelAgentIdentity.Request("edge-1", time.Hour, false), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(dir, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, certDir, certs.TunnelAgentIdentity.Component+".pem", append(append([]byte{}, kp.CertPEM...), kp.KeyPEM...))
	o := AgentOptions{
		NodeName:   "edge-1",
		Servers:    srv.agentAddr,
		Kubeconfig: unreachableKubeconfig(t, dir),
		CertDir:    certDir,
		CAFile:     writeFile(t, dir, "ca.crt", p.ca.CertPEM()),
	}
	setAgentDefaults(&o)
	if change != nil {
		change(&o)
	}
	run := runAgent(t, o)
	eventually(t, 10*time.Second, "agent connected with the certificate on disk", func() bool {
		select {
		case <-run.done:
			t.Fatalf("agent stopped: %v", run.err)
		default:
		}
		return srv.Connected("edge-1")
	})
}

func TestRunAgentOfflineUsesCertificateOnDisk(t *testing.T) {
	p := newPKI(t)
	startOfflineAgent(t, p, startServer(t, p, StaticResolver{}, 0), nil)
}

func TestRunAgentOfflineWithoutCertificateFails(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	o := AgentOptions{
		NodeName:   "edge-1",
		Servers:    "127.0.0.1:1",
		Kubeconfig: unreachableKubeconfig(t, dir),
		CertDir:    filepath.Join(dir, "certs"),
		CAFile:     writeFile(t, dir, "ca.crt", p.ca.CertPEM()),
	}
	setAgentDefaults(&o)
	run := runAgent(t, o)
	select {
	case <-run.done:
		if err := run.err; err == nil || !strings.Contains(err.Error(), `obtaining the tunnel-agent certificate of node "edge-1" through the CSR API`) {
			t.Fatalf("RunAgent = %v, want a clear error about the CSR API", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RunAgent blocks with no certificate and no apiserver")
	}
}

// setAgentDefaults fills what BindFlags would default.
func setAgentDefaults(o *AgentOptions) {
	fs := flag.NewFlagSet("defaults", flag.ContinueOnError)
	var d AgentOptions
	d.BindFlags(fs)
	o.AllowedPorts = d.AllowedPorts
	o.BackoffInitial, o.BackoffMax = 50*time.Millisecond, 500*time.Millisecond
	o.DiscoveryInterval, o.KeepAlive = d.DiscoveryInterval, time.Second
}

func TestAgentSessionEndsWithItsCertificate(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, StaticResolver{}, 0)
	// Long enough for the agent to start and connect, and for the poll to
	// see it connected, on a loaded machine.
	kp, err := p.ca.Issue(certs.TunnelAgentRequest("node-a", 15*time.Second), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert := mustPair(t, kp)
	startAgent(t, "node-a", p.agentTLS(cert), nil, srv.agentAddr)
	eventually(t, 10*time.Second, "agent connected", func() bool { return srv.Connected("node-a") })
	eventually(t, 30*time.Second, "session ended at the certificate's expiry", func() bool { return !srv.Connected("node-a") })
	// Ended by the expiry, not before it (a second's slack for the wall
	// clock, which dates the certificate, being stepped meanwhile).
	if now, notAfter := time.Now(), cert.Leaf.NotAfter; now.Before(notAfter.Add(-time.Second)) {
		t.Fatalf("the session ended at %s, before the certificate expired at %s", now.Format(time.RFC3339Nano), notAfter.Format(time.RFC3339))
	}
	// Reconnecting with the expired certificate fails.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if srv.Connected("node-a") {
			t.Fatal("an agent with an expired certificate reconnected")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connectTLS sends CONNECT target over TLS with cert and returns the
// response status, or the error that ended the exchange.
func connectTLS(t *testing.T, proxy string, ca *certs.CA, cert *tls.Certificate, target string) (net.Conn, int, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", proxy, cfg)
	if err != nil {
		return nil, 0, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", target); err != nil {
		_ = c.Close()
		return nil, 0, err
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		_ = c.Close()
		return nil, 0, err
	}
	if res.StatusCode != http.StatusOK {
		_ = c.Close()
		return nil, res.StatusCode, nil
	}
	_ = c.SetDeadline(time.Time{})
	return &bufferedConn{Conn: c, r: br}, res.StatusCode, nil
}

func TestConnectListenerAcceptsOnlyTheEgressIdentity(t *testing.T) {
	p := newPKI(t)
	echo, accepted := echoServer(t)
	srv := startServer(t, p, StaticResolver{"127.0.0.1": "node-a"}, 0)
	startAgent(t, "node-a", p.agentTLS(p.agentCert(t, "node-a")), []int{portOf(t, echo)}, srv.agentAddr)
	eventually(t, 10*time.Second, "agent connected", func() bool { return srv.Connected("node-a") })

	// The TCP CONNECT listener as RunServer builds it, from files.
	dir := t.TempDir()
	srvKP, err := p.ca.Issue(certs.Request{CommonName: "tunnel-server", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Lifetime: time.Hour, Server: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var o ServerOptions
	o.BindFlags(flag.NewFlagSet("tunnel-server", flag.ContinueOnError))
	tcfg, err := ConnectServerTLS(writeFile(t, dir, "tls.crt", srvKP.CertPEM), writeFile(t, dir, "tls.key", srvKP.KeyPEM),
		writeFile(t, dir, "ca.crt", p.ca.CertPEM()), splitList(o.ConnectClientNames))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.ServeConnect(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("CONNECT listener did not stop")
		}
	})

	issue := func(req certs.Request) *tls.Certificate {
		kp, err := p.ca.Issue(req, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c := mustPair(t, kp)
		return &c
	}
	// kube-apiserver's egress client gets through.
	c, code, err := connectTLS(t, ln.Addr().String(), p.ca, issue(certs.EgressClientRequest(time.Hour)), echo)
	if err != nil || code != http.StatusOK {
		t.Fatalf("CONNECT with the egress certificate: status %d, %v", code, err)
	}
	msg := []byte("egress")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
		t.Fatalf("echo = %q, %v", got, err)
	}
	_ = c.Close()
	before := accepted.Load()

	agentPair := p.agentCert(t, "node-a")
	otherCA, _, err := certs.NewCA("other", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreignKP, err := otherCA.Issue(certs.EgressClientRequest(time.Hour), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign := mustPair(t, foreignKP)
	refused := map[string]*tls.Certificate{
		"an agent's certificate":                &agentPair,
		"a hub's certificate":                   issue(certs.EdgeHubIdentity.Request("node-a", time.Hour, true)),
		"a node identity named like the egress": issue(certs.Request{CommonName: certs.EgressCommonName, Organization: []string{certs.TunnelAgentOrganization}, Lifetime: time.Hour, Client: true}),
		"another client of the operator CA":     issue(certs.Request{CommonName: "someone", Lifetime: time.Hour, Client: true}),
		"a serving certificate of the CA":       issue(certs.Request{CommonName: certs.EgressCommonName, Lifetime: time.Hour, Server: true}),
		"the egress name from another CA":       &foreign,
		"no certificate":                        {},
	}
	for name, cert := range refused {
		t.Run(name, func(t *testing.T) {
			c, code, err := connectTLS(t, ln.Addr().String(), p.ca, cert, echo)
			if c != nil {
				_ = c.Close()
			}
			if err == nil {
				t.Fatalf("CONNECT answered %d, want the TLS handshake refused", code)
			}
		})
	}
	if n := accepted.Load(); n != before {
		t.Errorf("refused clients reached the target %d times", n-before)
	}
}

func TestCheckConnectClient(t *testing.T) {
	p := newPKI(t)
	leaf := func(req certs.Request) error {
		kp, err := p.ca.Issue(req, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c := mustPair(t, kp)
		return CheckConnectClient(c.Leaf, []string{certs.EgressCommonName, "custom-apiserver"})
	}
	if err := leaf(certs.EgressClientRequest(time.Hour)); err != nil {
		t.Errorf("egress identity refused: %v", err)
	}
	if err := leaf(certs.Request{CommonName: "custom-apiserver", Lifetime: time.Hour, Client: true}); err != nil {
		t.Errorf("an allowed name refused: %v", err)
	}
	if err := leaf(certs.TunnelAgentRequest("node-a", time.Hour)); err == nil {
		t.Error("an agent identity is accepted")
	}
	if err := CheckConnectClient(nil, []string{certs.EgressCommonName}); err == nil {
		t.Error("no certificate is accepted")
	}
}
