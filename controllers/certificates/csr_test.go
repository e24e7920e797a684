package certificates_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/certificates"
	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/certs/csr"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

var _ = Describe("CSR approver and signer", func() {
	clientUsages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}

	It("approves and signs a node's own tunnel-agent identity", func(ctx SpecContext) {
		n1 := clientsetAs("system:node:n1", "system:nodes")
		name, key := createCSR(ctx, n1, certs.SignerTunnelAgent, certs.TunnelAgentIdentity.CommonName("n1"), certs.TunnelAgentOrganization, clientUsages, 3600)
		got := decided(ctx, name)
		Expect(condition(got, certificatesv1.CertificateApproved)).To(HaveField("Reason", certificates.ReasonAutoApproved))
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, got)).To(Succeed())
			g.Expect(got.Status.Certificate).NotTo(BeEmpty())
		}).Should(Succeed())

		cert, err := certs.ParseCert(got.Status.Certificate)
		Expect(err).NotTo(HaveOccurred())
		_, err = cert.Verify(x509.VerifyOptions{Roots: operatorCA(ctx).Pool(), CurrentTime: clk.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		Expect(err).NotTo(HaveOccurred())
		Expect(cert.Subject.CommonName).To(Equal("edgeunit:tunnel-agent:n1"))
		Expect(cert.Subject.Organization).To(Equal([]string{certs.TunnelAgentOrganization}))
		Expect(cert.ExtKeyUsage).To(Equal([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}))
		Expect(cert.DNSNames).To(BeEmpty())
		Expect(cert.IPAddresses).To(BeEmpty())
		Expect(cert.PublicKey.(*ecdsa.PublicKey).Equal(key.Public())).To(BeTrue())
		Expect(cert.NotAfter.Sub(cert.NotBefore)).To(Equal(time.Hour+5*time.Minute), "the signer honours expirationSeconds (NotBefore is backdated 5 minutes)")
		node, err := certs.TunnelAgentNode(cert)
		Expect(err).NotTo(HaveOccurred())
		Expect(node).To(Equal("n1"))
	})

	It("denies node n2 requesting n1's identity", func(ctx SpecContext) {
		n2 := clientsetAs("system:node:n2", "system:nodes")
		name, _ := createCSR(ctx, n2, certs.SignerTunnelAgent, certs.TunnelAgentIdentity.CommonName("n1"), certs.TunnelAgentOrganization, clientUsages, 3600)
		got := decided(ctx, name)
		Expect(condition(got, certificatesv1.CertificateApproved)).To(BeNil())
		denied := condition(got, certificatesv1.CertificateDenied)
		Expect(denied).NotTo(BeNil())
		Expect(denied.Reason).To(Equal(certificates.ReasonRequesterMismatch))
		Expect(denied.Message).To(ContainSubstring(`node "n2" may not request the identity of node "n1"`))
		Expect(got.Status.Certificate).To(BeEmpty())
	})

	It("denies a requester that is not a node", func(ctx SpecContext) {
		alice := clientsetAs("alice", "developers")
		name, _ := createCSR(ctx, alice, certs.SignerEdgeHub, certs.EdgeHubIdentity.CommonName("n1"), certs.EdgeHubOrganization, clientUsages, 3600)
		denied := condition(decided(ctx, name), certificatesv1.CertificateDenied)
		Expect(denied).NotTo(BeNil())
		Expect(denied.Reason).To(Equal(certificates.ReasonRequesterMismatch))
		Expect(denied.Message).To(ContainSubstring(`requester "alice"`))
	})

	It("approves a bootstrap token bound to the node and denies a bare one", func(ctx SpecContext) {
		bound := clientsetAs("system:bootstrap:abcdef", "system:bootstrappers", certs.BootstrapNodeGroup("edge-3.site"))
		name, _ := createCSR(ctx, bound, certs.SignerEdgeHub, certs.EdgeHubIdentity.CommonName("edge-3.site"), certs.EdgeHubOrganization, clientUsages, 3600)
		Expect(condition(decided(ctx, name), certificatesv1.CertificateApproved)).NotTo(BeNil())

		bare := clientsetAs("system:bootstrap:ghijkl", "system:bootstrappers")
		name, _ = createCSR(ctx, bare, certs.SignerEdgeHub, certs.EdgeHubIdentity.CommonName("edge-3.site"), certs.EdgeHubOrganization, clientUsages, 3600)
		denied := condition(decided(ctx, name), certificatesv1.CertificateDenied)
		Expect(denied).NotTo(BeNil())
		Expect(denied.Message).To(ContainSubstring("is not bound to node"))
	})
})

var _ = Describe("The node-side requester", func() {
	It("writes the identity, reuses it from disk and rotates it before expiry", func(ctx SpecContext) {
		n4 := clientsetAs("system:node:n4", "system:nodes")
		dir := GinkgoT().TempDir()
		cfg := csr.Config{Client: n4, Identity: certs.TunnelAgentIdentity, Node: "n4", Dir: dir, Lifetime: time.Hour, Clock: clk}
		r, err := csr.New(cfg)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.Ensure(ctx)).To(Succeed())

		first := r.Current()
		Expect(first.Leaf.Subject.CommonName).To(Equal("edgeunit:tunnel-agent:n4"))
		_, err = first.Leaf.Verify(x509.VerifyOptions{Roots: operatorCA(ctx).Pool(), CurrentTime: clk.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		Expect(err).NotTo(HaveOccurred())
		info, err := os.Stat(r.Path())
		Expect(err).NotTo(HaveOccurred())
		Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o600)))
		onDisk, err := tls.LoadX509KeyPair(r.Path(), r.Path())
		Expect(err).NotTo(HaveOccurred())
		Expect(onDisk.Certificate[0]).To(Equal(first.Certificate[0]))
		Expect(requestsBy(ctx, "edgeunit-tunnel-agent-n4-")).To(Equal(1))

		By("restarting: the certificate on disk is reused, no new request")
		again, err := csr.New(cfg)
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Ensure(ctx)).To(Succeed())
		Expect(again.Current().Certificate[0]).To(Equal(first.Certificate[0]))
		Expect(requestsBy(ctx, "edgeunit-tunnel-agent-n4-")).To(Equal(1))

		By("running the rotation loop and moving the clock past 80% of the lifetime")
		rctx, stop := context.WithCancel(ctx)
		loopDone := make(chan error, 1)
		go func() { loopDone <- r.Run(rctx) }()
		DeferCleanup(func() { stop(); Eventually(loopDone).Should(Receive(MatchError(context.Canceled))) })
		// Step only once the loop waits on the clock, or it would schedule
		// its timer from the new time and never fire.
		Eventually(clk.HasWaiters).Should(BeTrue())
		clk.Step(55 * time.Minute)

		Eventually(func() []byte { return r.Current().Certificate[0] }).ShouldNot(Equal(first.Certificate[0]))
		second := r.Current()
		Expect(second.Leaf.NotBefore).To(BeTemporally(">", first.Leaf.NotBefore.Add(50*time.Minute)), "the new certificate is dated by the signer at the stepped time")
		Expect(second.PrivateKey.(*ecdsa.PrivateKey).Equal(first.PrivateKey)).To(BeFalse(), "rotation uses a new key")
		Expect(requestsBy(ctx, "edgeunit-tunnel-agent-n4-")).To(Equal(2))
		onDisk, err = tls.LoadX509KeyPair(r.Path(), r.Path())
		Expect(err).NotTo(HaveOccurred())
		Expect(onDisk.Certificate[0]).To(Equal(second.Certificate[0]))
		leftovers, err := os.ReadDir(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(leftovers).To(HaveLen(1), "no temporary files are left behind")
	})

	It("gives a hub a loopback serving identity usable for mTLS with an agent", func(ctx SpecContext) {
		n5 := clientsetAs("system:node:n5", "system:nodes")
		hub, err := csr.New(csr.Config{Client: n5, Identity: certs.EdgeHubIdentity, Node: "n5", Dir: GinkgoT().TempDir(), ServeLoopback: true, Clock: clk})
		Expect(err).NotTo(HaveOccurred())
		Expect(hub.Ensure(ctx)).To(Succeed())
		agent, err := csr.New(csr.Config{Client: n5, Identity: certs.TunnelAgentIdentity, Node: "n5", Dir: GinkgoT().TempDir(), Clock: clk})
		Expect(err).NotTo(HaveOccurred())
		Expect(agent.Ensure(ctx)).To(Succeed())
		Expect(hub.Current().Leaf.NotAfter.Sub(hub.Current().Leaf.NotBefore)).To(Equal(certificates.DefaultLifetime+5*time.Minute), "no expirationSeconds: the signer's default")

		pool := operatorCA(ctx).Pool()
		addr, peer := serveOK(ctx, &tls.Config{
			GetCertificate: hub.GetCertificate, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, Time: clk.Now, MinVersion: tls.VersionTLS13,
		})
		conn, err := tls.Dial("tcp", addr, &tls.Config{
			GetClientCertificate: agent.GetClientCertificate, RootCAs: pool, ServerName: "localhost", Time: clk.Now, MinVersion: tls.VersionTLS13,
		})
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		Expect(io.ReadAll(conn)).To(Equal([]byte("ok")))
		Expect(peer).To(Receive(Equal("edgeunit:tunnel-agent:n5")))
	})

	It("reports a denied request as ErrDenied", func(ctx SpecContext) {
		n6 := clientsetAs("system:node:n6", "system:nodes")
		r, err := csr.New(csr.Config{Client: n6, Identity: certs.TunnelAgentIdentity, Node: "n1", Dir: GinkgoT().TempDir(), Clock: clk})
		Expect(err).NotTo(HaveOccurred())
		err = r.Ensure(ctx)
		Expect(errors.Is(err, csr.ErrDenied)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring(`node "n6" may not request the identity of node "n1"`))
		Expect(r.Current()).To(BeNil())
		_, err = r.GetClientCertificate(nil)
		Expect(err).To(HaveOccurred())
	})
})

// envtest runs no kube-controller-manager: nothing signs kubelet-serving
// requests unless a spec plays its part.
var _ = Describe("The hub's in-cluster serving certificate", func() {
	hubIP := net.ParseIP(certs.DefaultHubInClusterIP)
	serveOnly := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}

	It("is approved for a node in a unit, and signed by the cluster CA, not by edgeunit", func(ctx SpecContext) {
		node := nodeInUnit(ctx, "site-a")
		cs := clientsetAs("system:node:"+node, "system:nodes")
		hub, err := csr.New(csr.Config{Client: cs, Identity: certs.HubInClusterIdentity, Node: node, Dir: GinkgoT().TempDir(), IPs: []net.IP{hubIP}, Lifetime: time.Hour, Clock: clk})
		Expect(err).NotTo(HaveOccurred())
		ensured := make(chan error, 1)
		go func() { ensured <- hub.Ensure(ctx) }()

		By("the approver approving the request")
		var req certificatesv1.CertificateSigningRequest
		Eventually(func(g Gomega) {
			var list certificatesv1.CertificateSigningRequestList
			g.Expect(k8s.List(ctx, &list)).To(Succeed())
			var mine []certificatesv1.CertificateSigningRequest
			for _, c := range list.Items {
				if strings.HasPrefix(c.Name, "edgeunit-edge-hub-incluster-"+node+"-") {
					mine = append(mine, c)
				}
			}
			g.Expect(mine).To(HaveLen(1))
			req = mine[0]
			g.Expect(req.Status.Conditions).NotTo(BeEmpty())
		}).Should(Succeed())
		Expect(req.Spec.SignerName).To(Equal(certs.SignerKubeletServing))
		Expect(req.Spec.Usages).To(Equal(serveOnly))
		approved := condition(&req, certificatesv1.CertificateApproved)
		Expect(approved).NotTo(BeNil(), "conditions: %+v", req.Status.Conditions)
		Expect(approved.Reason).To(Equal(certificates.ReasonAutoApproved))

		By("edgeunit's signer leaving it to kube-controller-manager")
		Consistently(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&req), &req)).To(Succeed())
			g.Expect(req.Status.Certificate).To(BeEmpty())
			g.Expect(req.Status.Conditions).To(HaveLen(1))
		}, 2*time.Second, 200*time.Millisecond).Should(Succeed())

		By("playing kube-controller-manager: signing with the cluster CA")
		clusterCA, _, err := certs.NewCA("cluster-ca", 24*time.Hour, clk.Now())
		Expect(err).NotTo(HaveOccurred())
		block, _ := pem.Decode(req.Spec.Request)
		x509req, err := x509.ParseCertificateRequest(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		der, err := clusterCA.Sign(certs.Request{
			CommonName: x509req.Subject.CommonName, Organization: x509req.Subject.Organization, IPs: x509req.IPAddresses, Lifetime: time.Hour, Server: true,
		}, x509req.PublicKey, clk.Now())
		Expect(err).NotTo(HaveOccurred())
		req.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		Expect(k8s.Status().Update(ctx, &req)).To(Succeed())
		Eventually(ensured).Should(Receive(BeNil()))

		By("a client that trusts only the cluster CA accepting the hub at its link-local address")
		addr, _ := serveOK(ctx, &tls.Config{GetCertificate: hub.GetCertificate, MinVersion: tls.VersionTLS13})
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: clusterCA.Pool(), ServerName: certs.DefaultHubInClusterIP, Time: clk.Now, MinVersion: tls.VersionTLS13})
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		Expect(io.ReadAll(conn)).To(Equal([]byte("ok")))
		leaf := hub.Current().Leaf
		Expect(leaf.Subject.CommonName).To(Equal("system:node:" + node))
		Expect(leaf.ExtKeyUsage).To(Equal([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}))
	})

	It("is denied for a node in no unit, and a kubelet's own serving request is left alone", func(ctx SpecContext) {
		node := nodeInUnit(ctx, "")
		cs := clientsetAs("system:node:"+node, "system:nodes")
		kubelet := createServingCSR(ctx, cs, node, []string{node + ".example"}, []net.IP{net.ParseIP("192.0.2.17")},
			[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth})
		hub := createServingCSR(ctx, cs, node, nil, []net.IP{hubIP}, serveOnly)

		denied := condition(decided(ctx, hub), certificatesv1.CertificateDenied)
		Expect(denied).NotTo(BeNil())
		Expect(denied.Reason).To(Equal(certificates.ReasonNodeNotInUnit))
		Expect(denied.Message).To(ContainSubstring(`node %q is in no edge unit`, node))

		got := &certificatesv1.CertificateSigningRequest{}
		Consistently(func(g Gomega) {
			suite.Idle(g)
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: kubelet}, got)).To(Succeed())
			g.Expect(got.Status.Conditions).To(BeEmpty())
			g.Expect(got.Status.Certificate).To(BeEmpty())
		}, 2*time.Second, 200*time.Millisecond).Should(Succeed())
	})
})

// nodeInUnit creates a Node, in unit when unit is not "", deleted when the
// spec ends, and returns its name.
func nodeInUnit(ctx context.Context, unit string) string {
	GinkgoHelper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: suite.Uniq("hub-node")}}
	if unit != "" {
		n.Labels = map[string]string{edgev1.LabelUnit: unit}
	}
	Expect(k8s.Create(ctx, n)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, n))).To(Succeed()) })
	return n.Name
}

// createServingCSR submits, as cs, a kubelet-serving CSR of node for the
// SANs dns and ips and returns its name.
func createServingCSR(ctx context.Context, cs kubernetes.Interface, node string, dns []string, ips []net.IP, usages []certificatesv1.KeyUsage) string {
	GinkgoHelper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	req, err := certutil.MakeCSR(key, &pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}, dns, ips)
	Expect(err).NotTo(HaveOccurred())
	created, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-serving-"},
		Spec:       certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: certs.SignerKubeletServing, Usages: usages},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return created.Name
}

// createCSR submits a CSR as cs and returns its name and key.
func createCSR(ctx context.Context, cs kubernetes.Interface, signer, cn, org string, usages []certificatesv1.KeyUsage, seconds int32) (string, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	req, err := certutil.MakeCSR(key, &pkix.Name{CommonName: cn, Organization: []string{org}}, nil, nil)
	Expect(err).NotTo(HaveOccurred())
	created, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"},
		Spec:       certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: signer, Usages: usages, ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return created.Name, key
}

// decided waits for the approver's decision on a CSR.
func decided(ctx context.Context, name string) *certificatesv1.CertificateSigningRequest {
	got := &certificatesv1.CertificateSigningRequest{}
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, got)).To(Succeed())
		g.Expect(got.Status.Conditions).NotTo(BeEmpty())
	}).Should(Succeed())
	return got
}

func condition(c *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequestCondition {
	for i := range c.Status.Conditions {
		if c.Status.Conditions[i].Type == t {
			return &c.Status.Conditions[i]
		}
	}
	return nil
}

func operatorCA(ctx context.Context) *certs.CA {
	sec := &corev1.Secret{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNS, Name: certificates.CASecret}, sec)).To(Succeed())
	ca, err := certs.LoadCA(certs.KeyPair{CertPEM: sec.Data[corev1.TLSCertKey], KeyPEM: sec.Data[corev1.TLSPrivateKeyKey]})
	Expect(err).NotTo(HaveOccurred())
	return ca
}

// requestsBy counts the CSRs whose name starts with prefix.
func requestsBy(ctx context.Context, prefix string) int {
	var list certificatesv1.CertificateSigningRequestList
	Expect(k8s.List(ctx, &list)).To(Succeed())
	n := 0
	for _, c := range list.Items {
		if strings.HasPrefix(c.Name, prefix) {
			n++
		}
	}
	return n
}

// serveOK serves one TLS connection on loopback with cfg: after the
// handshake it sends the client certificate's common name, if any, on peer
// and writes "ok". The listener closes when the spec ends.
func serveOK(ctx context.Context, cfg *tls.Config) (addr string, peer <-chan string) {
	GinkgoHelper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(ln.Close)
	names := make(chan string, 1)
	go func() {
		defer GinkgoRecover()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if tc.HandshakeContext(ctx) == nil {
			if chain := tc.ConnectionState().PeerCertificates; len(chain) > 0 {
				names <- chain[0].Subject.CommonName
			}
			_, _ = io.WriteString(conn, "ok")
		}
	}()
	return ln.Addr().String(), names
}
