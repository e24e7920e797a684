package identitytest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	certificatesv1 "k8s.io/api/certificates/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/edgeunit/edgeunit/controllers/certificates"
	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/certs/csr"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/tunnel"
)

// replica is an in-process tunnel-server on loopback that records the
// serial of every agent certificate it accepted.
type replica struct {
	*tunnel.Server
	addr string

	mu      sync.Mutex
	serials []*big.Int
	stop    func()
}

func (r *replica) accepted() []*big.Int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*big.Int(nil), r.serials...)
}

// startReplica serves agents on addr ("127.0.0.1:0" for any port). Agent
// certificates are checked against the fake clock: they are dated by it.
func startReplica(ca *certs.CA, serving tls.Certificate, addr string) *replica {
	GinkgoHelper()
	r := &replica{}
	srv, err := tunnel.NewServer(tunnel.ServerConfig{
		ID: "replica",
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{serving},
			ClientCAs:    ca.Pool(),
			Time:         clk.Now,
			VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
				r.mu.Lock()
				defer r.mu.Unlock()
				r.serials = append(r.serials, chains[0][0].SerialNumber)
				return nil
			},
		},
		Resolver:          tunnel.StaticResolver{"127.0.0.1": "edge-1"},
		Log:               GinkgoLogr.WithName("server"),
		HeartbeatInterval: time.Second,
	})
	Expect(err).NotTo(HaveOccurred())
	var ln net.Listener
	// The port of a replica that just stopped may take a moment to free.
	Eventually(func() error { ln, err = net.Listen("tcp", addr); return err }, 10*time.Second).Should(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeAgents(ctx, ln) }()
	r.Server, r.addr = srv, ln.Addr().String()
	r.stop = func() { cancel(); Eventually(done, 10*time.Second).Should(BeClosed()) }
	DeferCleanup(r.stop)
	return r
}

// echoServer echoes every connection on loopback.
func echoServer() string {
	GinkgoHelper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(ln.Close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// echoes checks that conn echoes a message.
func echoes(conn net.Conn, msg string) error {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return err
	}
	if string(got) != msg {
		return errors.New("echo garbled: " + string(got))
	}
	return nil
}

// nodeKubeconfig writes a kubeconfig authenticating as node's kubelet
// (system:node:<node> in system:nodes), with a client certificate as
// kubeadm's kubelet.conf has.
func nodeKubeconfig(dir, node string) string {
	GinkgoHelper()
	user, err := env.AddUser(envtest.User{Name: "system:node:" + node, Groups: []string{"system:nodes"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	kc, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(dir, node+".conf")
	Expect(os.WriteFile(path, kc, 0o600)).To(Succeed())
	return path
}

// agentRun is RunAgent running until the spec ends (or stop).
type agentRun struct {
	done chan struct{}
	err  error
	stop func()
}

func runAgent(o tunnel.AgentOptions) *agentRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &agentRun{done: make(chan struct{})}
	go func() { r.err = tunnel.RunAgent(ctx, o, GinkgoLogr.WithName("agent")); close(r.done) }()
	r.stop = func() { cancel(); Eventually(r.done, 10*time.Second).Should(BeClosed()) }
	DeferCleanup(r.stop)
	return r
}

func agentOptions(node, kubeconfig, certDir, caFile, server, echo string) tunnel.AgentOptions {
	_, port, _ := net.SplitHostPort(echo)
	return tunnel.AgentOptions{
		NodeName:            node,
		Servers:             server,
		Kubeconfig:          kubeconfig,
		CertDir:             certDir,
		CertificateLifetime: time.Hour,
		CAFile:              caFile,
		AllowedPorts:        port,
		BackoffInitial:      50 * time.Millisecond,
		BackoffMax:          500 * time.Millisecond,
		DiscoveryInterval:   time.Minute,
		KeepAlive:           time.Second,
		Clock:               clk,
	}
}

// onDisk is the certificate the agent keeps in certDir.
func onDisk(certDir string) func() (*x509.Certificate, error) {
	return func() (*x509.Certificate, error) {
		data, err := os.ReadFile(filepath.Join(certDir, certs.TunnelAgentIdentity.Component+".pem"))
		if err != nil {
			return nil, err
		}
		return certs.ParseCert(data)
	}
}

// requestsOf lists the agent CSRs of node.
func requestsOf(ctx context.Context, node string) []certificatesv1.CertificateSigningRequest {
	var list certificatesv1.CertificateSigningRequestList
	Expect(k8s.List(ctx, &list)).To(Succeed())
	var out []certificatesv1.CertificateSigningRequest
	for _, c := range list.Items {
		if strings.HasPrefix(c.Name, "edgeunit-tunnel-agent-"+node+"-") {
			out = append(out, c)
		}
	}
	return out
}

var _ = Describe("A tunnel-agent with --kubeconfig", func() {
	var (
		ca      *certs.CA
		serving tls.Certificate
		dir     string
		caFile  string
	)
	BeforeEach(func(ctx SpecContext) {
		var err error
		ca, err = certificates.EnsureCA(ctx, k8s, managerNS, clk.Now())
		Expect(err).NotTo(HaveOccurred())
		kp, err := ca.Issue(certs.Request{CommonName: "tunnel-server", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Lifetime: 24 * time.Hour, Server: true}, time.Now())
		Expect(err).NotTo(HaveOccurred())
		serving, err = tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
		Expect(err).NotTo(HaveOccurred())
		dir = GinkgoT().TempDir()
		caFile = filepath.Join(dir, "ca.crt")
		Expect(os.WriteFile(caFile, ca.CertPEM(), 0o600)).To(Succeed())
	})

	It("gets its identity through the CSR API, is accepted, and keeps its session across rotation", func(ctx SpecContext) {
		echo := echoServer()
		port, err := testenv.RestartablePort("127.0.0.1") // the replica restarts on it
		Expect(err).NotTo(HaveOccurred())
		srv := startReplica(ca, serving, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		certDir := filepath.Join(dir, "tunnel-agent")
		agent := runAgent(agentOptions("edge-1", nodeKubeconfig(dir, "edge-1"), certDir, caFile, srv.addr, echo))

		By("obtaining a certificate the approver approved for the node and the signer signed")
		Eventually(func() bool { return srv.Connected("edge-1") }).Should(BeTrue(), "agent never connected")
		first, err := onDisk(certDir)()
		Expect(err).NotTo(HaveOccurred())
		Expect(first.Subject.CommonName).To(Equal("edgeunit:tunnel-agent:edge-1"))
		Expect(first.NotAfter.Sub(first.NotBefore)).To(Equal(time.Hour+5*time.Minute), "--certificate-lifetime reaches the CSR")
		reqs := requestsOf(ctx, "edge-1")
		Expect(reqs).To(HaveLen(1))
		Expect(reqs[0].Spec.Username).To(Equal("system:node:edge-1"))
		Expect(reqs[0].Spec.SignerName).To(Equal(certs.SignerTunnelAgent))
		Expect(srv.accepted()).To(ConsistOf(first.SerialNumber), "the server accepted the CSR-issued certificate")

		By("relaying a stream to an allowed port of the node")
		conn, err := srv.Dial(ctx, echo)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		Expect(echoes(conn, "before rotation")).To(Succeed())

		By("rotating once the clock passes 80% of the lifetime")
		// Step only once the rotation loop waits on the clock.
		Eventually(clk.HasWaiters).Should(BeTrue())
		clk.Step(55 * time.Minute)
		var second *x509.Certificate
		Eventually(func(g Gomega) {
			second, err = onDisk(certDir)()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(second.SerialNumber).NotTo(Equal(first.SerialNumber))
		}).Should(Succeed())
		Expect(second.NotBefore).To(BeTemporally(">", first.NotBefore.Add(50*time.Minute)))
		Expect(requestsOf(ctx, "edge-1")).To(HaveLen(2))

		By("keeping the session: the open stream and new streams still work, without reconnecting")
		Expect(echoes(conn, "after rotation")).To(Succeed())
		conn2, err := srv.Dial(ctx, echo)
		Expect(err).NotTo(HaveOccurred())
		Expect(echoes(conn2, "new stream")).To(Succeed())
		_ = conn2.Close()
		Expect(srv.accepted()).To(HaveLen(1))

		By("reconnecting with the new certificate once the old one expired")
		clk.Step(10 * time.Minute) // past first.NotAfter: only the new certificate verifies
		Expect(clk.Now().After(first.NotAfter)).To(BeTrue())
		addr := srv.addr
		srv.stop()
		again := startReplica(ca, serving, addr)
		Eventually(func() bool { return again.Connected("edge-1") }).Should(BeTrue(), "agent never reconnected")
		Expect(again.accepted()).To(ConsistOf(second.SerialNumber))
		conn3, err := again.Dial(ctx, echo)
		Expect(err).NotTo(HaveOccurred())
		Expect(echoes(conn3, "after reconnecting")).To(Succeed())
		_ = conn3.Close()

		By("restarting cut off from kube-apiserver: the certificate on disk is used at once")
		agent.stop()
		Expect(agent.err).NotTo(HaveOccurred())
		Eventually(func() bool { return again.Connected("edge-1") }).Should(BeFalse())
		offline := agentOptions("edge-1", unreachableKubeconfig(dir), certDir, caFile, again.addr, echo)
		runAgent(offline)
		Eventually(func() bool { return again.Connected("edge-1") }).Should(BeTrue(), "agent did not reconnect offline")
		Expect(requestsOf(ctx, "edge-1")).To(HaveLen(2), "no new request was needed")
	})

	It("stops with a clear error when the CSR is denied", func(ctx SpecContext) {
		echo := echoServer()
		srv := startReplica(ca, serving, "127.0.0.1:0")
		// edge-2's kubelet credential asking for edge-1's identity.
		run := runAgent(agentOptions("edge-1", nodeKubeconfig(dir, "edge-2"), filepath.Join(dir, "certs"), caFile, srv.addr, echo))
		Eventually(run.done).Should(BeClosed())
		Expect(errors.Is(run.err, csr.ErrDenied)).To(BeTrue(), "got %v", run.err)
		Expect(run.err.Error()).To(ContainSubstring(`the tunnel-agent identity of node "edge-1" was refused`))
		Expect(run.err.Error()).To(ContainSubstring(`node "edge-2" may not request the identity of node "edge-1"`))
		Expect(srv.accepted()).To(BeEmpty())
	})
})

// unreachableKubeconfig points at a loopback port nobody listens on: port 1
// (tcpmux, unused), not a port freed by the test, which someone else may
// bind meanwhile.
func unreachableKubeconfig(dir string) string {
	GinkgoHelper()
	path := filepath.Join(dir, "offline.conf")
	Expect(os.WriteFile(path, []byte(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: unused}
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
`), 0o600)).To(Succeed())
	return path
}
