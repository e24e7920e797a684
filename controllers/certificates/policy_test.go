package certificates

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/certs"
)

func TestReview(t *testing.T) {
	p256 := mustECDSA(t, elliptic.P256())
	p224 := mustECDSA(t, elliptic.P224())
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	agentSubject := pkix.Name{CommonName: "edgeunit:tunnel-agent:n1", Organization: []string{certs.TunnelAgentOrganization}}
	hubSubject := pkix.Name{CommonName: "edgeunit:edge-hub:n1", Organization: []string{certs.EdgeHubOrganization}}
	node1 := requester{"system:node:n1", []string{"system:nodes", "system:authenticated"}}
	client := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	serving := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth, certificatesv1.UsageServerAuth}
	// The hub's in-cluster serving certificate: the kubelet's subject,
	// link-local IPs only, server auth only.
	kubeletSubject := func(node string) pkix.Name {
		return pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}
	}
	hubIP := []net.IP{net.ParseIP(certs.DefaultHubInClusterIP)}
	serveOnly := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	// n1 is in a unit, n2 is not, n3 does not exist.
	nodes := fake.NewClientBuilder().WithObjects(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{edgev1.LabelUnit: "site-a"}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}},
	).Build()
	node2 := requester{"system:node:n2", []string{"system:nodes", "system:authenticated"}}

	tests := map[string]struct {
		signer  string
		request []byte
		usages  []certificatesv1.KeyUsage
		by      requester
		// ignored: the CSR is not edgeunit's; it is neither approved nor
		// denied, nor signed.
		ignored bool
		// wantReason is the condition's reason; wantMessage a part of its
		// message.
		wantReason  string
		wantMessage string
	}{
		"agent on its own node": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: agentSubject}), usages: client, by: node1,
			wantReason: ReasonAutoApproved,
		},
		"RSA 2048 with key encipherment": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, rsa2048, x509.CertificateRequest{Subject: agentSubject}), by: node1,
			usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth},
			wantReason: ReasonAutoApproved,
		},
		"hub serving loopback": {
			signer: certs.SignerEdgeHub, usages: serving, by: node1,
			request:    makeCSR(t, p256, x509.CertificateRequest{Subject: hubSubject, DNSNames: []string{"localhost"}, IPAddresses: certs.LoopbackIPs()}),
			wantReason: ReasonAutoApproved,
		},
		"wrong node": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: agentSubject}), usages: client,
			by:         requester{"system:node:n2", []string{"system:nodes", "system:authenticated"}},
			wantReason: ReasonRequesterMismatch, wantMessage: `node "n2" may not request the identity of node "n1"`,
		},
		"node user without the nodes group": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: agentSubject}), usages: client,
			by:         requester{"system:node:n1", []string{"system:authenticated"}},
			wantReason: ReasonRequesterMismatch, wantMessage: `is not node "n1"`,
		},
		"not a node": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: agentSubject}), usages: client,
			by:         requester{"alice", []string{"system:authenticated"}},
			wantReason: ReasonRequesterMismatch, wantMessage: `requester "alice"`,
		},
		"bootstrap token bound to the node": {
			signer: certs.SignerEdgeHub, request: makeCSR(t, p256, x509.CertificateRequest{Subject: pkix.Name{CommonName: "edgeunit:edge-hub:edge-1.site.example", Organization: []string{certs.EdgeHubOrganization}}}), usages: client,
			by:         requester{"system:bootstrap:abcdef", []string{"system:bootstrappers", "system:bootstrappers:edgeunit:node:edge-1:site:example", "system:authenticated"}},
			wantReason: ReasonAutoApproved,
		},
		"bootstrap token bound to another node": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: agentSubject}), usages: client,
			by:         requester{"system:bootstrap:abcdef", []string{"system:bootstrappers", certs.BootstrapNodeGroup("n2"), "system:authenticated"}},
			wantReason: ReasonRequesterMismatch, wantMessage: `auth-extra-groups must include "system:bootstrappers:edgeunit:node:n1"`,
		},
		"bare bootstrap token": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: agentSubject}), usages: client,
			by:         requester{"system:bootstrap:abcdef", []string{"system:bootstrappers", "system:authenticated"}},
			wantReason: ReasonRequesterMismatch, wantMessage: `bootstrap token "abcdef" is not bound to node "n1"`,
		},
		"hub CN under the agent signer": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: pkix.Name{CommonName: "edgeunit:edge-hub:n1", Organization: []string{certs.TunnelAgentOrganization}}}), usages: client, by: node1,
			wantReason: ReasonInvalidIdentity, wantMessage: `common name "edgeunit:edge-hub:n1" is not a tunnel-agent identity`,
		},
		"kubelet CN": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes"}}}), usages: client, by: node1,
			wantReason: ReasonInvalidIdentity, wantMessage: "is not a tunnel-agent identity",
		},
		"invalid node name": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: pkix.Name{CommonName: "edgeunit:tunnel-agent:N_1", Organization: []string{certs.TunnelAgentOrganization}}}), usages: client,
			by:         requester{"system:node:N_1", []string{"system:nodes"}},
			wantReason: ReasonInvalidIdentity, wantMessage: "does not name a valid node",
		},
		"extra organization": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: pkix.Name{CommonName: "edgeunit:tunnel-agent:n1", Organization: []string{certs.TunnelAgentOrganization, "system:masters"}}}), usages: client, by: node1,
			wantReason: ReasonInvalidIdentity, wantMessage: `"edgeunit:tunnel-agents"] are not allowed`,
		},
		"no organization": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: pkix.Name{CommonName: "edgeunit:tunnel-agent:n1"}}), usages: client, by: node1,
			wantReason: ReasonInvalidIdentity, wantMessage: "organizations",
		},
		"extra subject attribute": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: pkix.Name{CommonName: "edgeunit:tunnel-agent:n1", Organization: []string{certs.TunnelAgentOrganization}, OrganizationalUnit: []string{"x"}}}), usages: client, by: node1,
			wantReason: ReasonInvalidIdentity, wantMessage: "subject attribute 2.5.4.11 is not allowed",
		},
		"DNS SAN on an agent": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: agentSubject, DNSNames: []string{"localhost"}}), usages: client, by: node1,
			wantReason: ReasonInvalidIdentity, wantMessage: "SANs",
		},
		"URI SAN": {
			signer: certs.SignerEdgeHub, request: makeCSR(t, p256, x509.CertificateRequest{Subject: hubSubject, URIs: []*url.URL{{Scheme: "spiffe", Host: "x"}}}), usages: serving, by: node1,
			wantReason: ReasonInvalidIdentity, wantMessage: "URI and email SANs are not allowed",
		},
		"email SAN": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: agentSubject, EmailAddresses: []string{"a@b.c"}}), usages: client, by: node1,
			wantReason: ReasonInvalidIdentity, wantMessage: "URI and email SANs are not allowed",
		},
		"hub serving a non-loopback IP": {
			signer: certs.SignerEdgeHub, usages: serving, by: node1,
			request:    makeCSR(t, p256, x509.CertificateRequest{Subject: hubSubject, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}),
			wantReason: ReasonInvalidIdentity, wantMessage: "IP SAN 10.0.0.1 is not allowed",
		},
		"hub serving another DNS name": {
			signer: certs.SignerEdgeHub, usages: serving, by: node1,
			request:    makeCSR(t, p256, x509.CertificateRequest{Subject: hubSubject, DNSNames: []string{"kubernetes.default.svc"}}),
			wantReason: ReasonInvalidIdentity, wantMessage: `DNS SAN "kubernetes.default.svc" is not allowed`,
		},
		"hub SANs without server auth": {
			signer: certs.SignerEdgeHub, usages: client, by: node1,
			request:    makeCSR(t, p256, x509.CertificateRequest{Subject: hubSubject, DNSNames: []string{"localhost"}}),
			wantReason: ReasonInvalidIdentity, wantMessage: "client identity",
		},
		"server auth on an agent": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: agentSubject}), usages: serving, by: node1,
			wantReason: ReasonInvalidIdentity, wantMessage: `usage "server auth" is not allowed for a tunnel-agent identity`,
		},
		"cert sign usage": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: agentSubject}), by: node1,
			usages:     []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth, certificatesv1.UsageCertSign},
			wantReason: ReasonInvalidIdentity, wantMessage: `usage "cert sign" is not allowed`,
		},
		"no client auth": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p256, x509.CertificateRequest{Subject: agentSubject}), by: node1,
			usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature},
			wantReason: ReasonInvalidIdentity, wantMessage: `usage "client auth" is required`,
		},
		"bad PEM": {
			signer: certs.SignerTunnelAgent, request: []byte("not a PEM"), usages: client, by: node1,
			wantReason: ReasonInvalidRequest, wantMessage: "no PEM CERTIFICATE REQUEST block",
		},
		"garbage in the PEM block": {
			signer: certs.SignerTunnelAgent, request: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1, 2, 3}}), usages: client, by: node1,
			wantReason: ReasonInvalidRequest, wantMessage: "parsing the certificate request",
		},
		"bad signature": {
			signer: certs.SignerTunnelAgent, request: tamper(t, makeCSR(t, p256, x509.CertificateRequest{Subject: agentSubject})), usages: client, by: node1,
			wantReason: ReasonInvalidRequest, wantMessage: "signature does not verify",
		},
		"weak RSA key": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, rsa1024, x509.CertificateRequest{Subject: agentSubject}), usages: client, by: node1,
			wantReason: ReasonInvalidRequest, wantMessage: "RSA key of 1024 bits is not accepted",
		},
		"P-224 key": {
			signer: certs.SignerTunnelAgent, request: makeCSR(t, p224, x509.CertificateRequest{Subject: agentSubject}), usages: client, by: node1,
			wantReason: ReasonInvalidRequest, wantMessage: "ECDSA curve P-224 is not accepted",
		},
		"foreign signer": {
			signer: "kubernetes.io/kube-apiserver-client", request: makeCSR(t, p256, x509.CertificateRequest{Subject: agentSubject}), usages: client, by: node1,
			ignored: true,
		},

		"hub in-cluster serving on a node in a unit": {
			signer: certs.SignerKubeletServing, usages: serveOnly, by: node1,
			request:    makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n1"), IPAddresses: hubIP}),
			wantReason: ReasonAutoApproved, wantMessage: `edge-hub-incluster identity of node "n1"`,
		},
		"hub in-cluster: RSA with key encipherment, IPv4 and IPv6 link-local": {
			signer: certs.SignerKubeletServing, by: node1,
			usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth},
			request:    makeCSR(t, rsa2048, x509.CertificateRequest{Subject: kubeletSubject("n1"), IPAddresses: []net.IP{net.ParseIP("169.254.31.1"), net.ParseIP("fe80::31:1")}}),
			wantReason: ReasonAutoApproved,
		},
		"hub in-cluster asked for by another node": {
			signer: certs.SignerKubeletServing, usages: serveOnly, by: node2,
			request:    makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n1"), IPAddresses: hubIP}),
			wantReason: ReasonRequesterMismatch, wantMessage: `node "n2" may not request the identity of node "n1"`,
		},
		"hub in-cluster by a bootstrap token bound to the node": {
			signer: certs.SignerKubeletServing, usages: serveOnly,
			by:         requester{"system:bootstrap:abcdef", []string{"system:bootstrappers", certs.BootstrapNodeGroup("n1"), "system:authenticated"}},
			request:    makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n1"), IPAddresses: hubIP}),
			wantReason: ReasonRequesterMismatch, wantMessage: `only "system:node:n1" in group "system:nodes" may request its edge-hub-incluster identity`,
		},
		"hub in-cluster by a user who is not a node": {
			signer: certs.SignerKubeletServing, usages: serveOnly, by: requester{"alice", []string{"system:authenticated"}},
			request:    makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n1"), IPAddresses: hubIP}),
			wantReason: ReasonRequesterMismatch, wantMessage: `requester "alice"`,
		},
		"hub in-cluster with client auth": {
			signer: certs.SignerKubeletServing, by: node1,
			usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth},
			request:    makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n1"), IPAddresses: hubIP}),
			wantReason: ReasonInvalidIdentity, wantMessage: `usage "client auth" is not allowed for a edge-hub-incluster identity`,
		},
		"hub in-cluster without server auth": {
			signer: certs.SignerKubeletServing, by: node1, usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature},
			request:    makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n1"), IPAddresses: hubIP}),
			wantReason: ReasonInvalidIdentity, wantMessage: `usages "digital signature" and "server auth" are required`,
		},
		"hub in-cluster on a node in no unit": {
			signer: certs.SignerKubeletServing, usages: serveOnly, by: node2,
			request:    makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n2"), IPAddresses: hubIP}),
			wantReason: ReasonNodeNotInUnit, wantMessage: `node "n2" is in no edge unit`,
		},
		"hub in-cluster on a node that does not exist": {
			signer: certs.SignerKubeletServing, usages: serveOnly, by: requester{"system:node:n3", []string{"system:nodes"}},
			request:    makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n3"), IPAddresses: hubIP}),
			wantReason: ReasonNodeNotInUnit, wantMessage: `node "n3" does not exist`,
		},
		"hub in-cluster with a bad signature": {
			signer: certs.SignerKubeletServing, usages: serveOnly, by: node1,
			request:    tamper(t, makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n1"), IPAddresses: hubIP})),
			wantReason: ReasonInvalidRequest, wantMessage: "signature does not verify",
		},
		"kubelet-serving with a DNS SAN is not ours": {
			signer: certs.SignerKubeletServing, usages: serveOnly, by: node1, ignored: true,
			request: makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n1"), DNSNames: []string{"n1"}, IPAddresses: hubIP}),
		},
		"kubelet-serving with a node IP beside the link-local one is not ours": {
			signer: certs.SignerKubeletServing, usages: serveOnly, by: node1, ignored: true,
			request: makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n1"), IPAddresses: []net.IP{hubIP[0], net.ParseIP("10.0.0.5")}}),
		},
		"kubelet-serving with a loopback IP is not ours": {
			signer: certs.SignerKubeletServing, usages: serveOnly, by: node1, ignored: true,
			request: makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n1"), IPAddresses: certs.LoopbackIPs()}),
		},
		"the kubelet's own serving CSR is not ours": {
			signer: certs.SignerKubeletServing, by: node1, ignored: true,
			usages:  []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth},
			request: makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n1"), DNSNames: []string{"n1.example"}, IPAddresses: []net.IP{net.ParseIP("192.0.2.11")}}),
		},
		"kubelet-serving without SANs is not ours": {
			signer: certs.SignerKubeletServing, usages: serveOnly, by: node1, ignored: true,
			request: makeCSR(t, p256, x509.CertificateRequest{Subject: kubeletSubject("n1")}),
		},
		"kubelet-serving with another organization is not ours": {
			signer: certs.SignerKubeletServing, usages: serveOnly, by: node1, ignored: true,
			request: makeCSR(t, p256, x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes", "system:masters"}}, IPAddresses: hubIP}),
		},
		"kubelet-serving for a hub CN is not ours": {
			signer: certs.SignerKubeletServing, usages: serveOnly, by: node1, ignored: true,
			request: makeCSR(t, p256, x509.CertificateRequest{Subject: hubSubject, IPAddresses: hubIP}),
		},
		"unparsable kubelet-serving CSR is not ours": {
			signer: certs.SignerKubeletServing, usages: serveOnly, by: node1, ignored: true,
			request: []byte("not a PEM"),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			csr := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
				SignerName: tc.signer, Request: tc.request, Usages: tc.usages, Username: tc.by.user, Groups: tc.by.groups,
			}}
			approved := csr.DeepCopy()
			approved.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
			// edgeunit signs only what its own signers issue, never what
			// kube-controller-manager signs.
			if want := !tc.ignored && tc.signer != certs.SignerKubeletServing; unsignedOurs(approved) != want {
				t.Errorf("the signer takes the approved CSR: %v, want %v", !want, want)
			}
			got, err := review(context.Background(), csr, nodes)
			if err != nil {
				t.Fatalf("review: %v", err)
			}
			if tc.ignored {
				if pendingOurs(csr) {
					t.Error("the approver takes a CSR that is not edgeunit's")
				}
				if got.Approve || got.Reason != ReasonInvalidIdentity {
					t.Errorf("review() of a CSR that is not edgeunit's = %+v, want no approval", got)
				}
				return
			}
			if !pendingOurs(csr) {
				t.Fatal("the approver leaves the CSR alone")
			}
			if got.Approve != (tc.wantReason == ReasonAutoApproved) || got.Reason != tc.wantReason {
				t.Fatalf("review() = %+v, want reason %s", got, tc.wantReason)
			}
			if !strings.Contains(got.Message, tc.wantMessage) {
				t.Errorf("message %q does not contain %q", got.Message, tc.wantMessage)
			}
		})
	}
}

func TestSignerLifetime(t *testing.T) {
	s := &Signer{DefaultLifetime: DefaultLifetime, MaxLifetime: DefaultMaxLifetime}
	secs := func(n int32) *int32 { return &n }
	tests := map[string]struct {
		in   *int32
		want string
	}{
		"unset takes the default": {nil, "24h0m0s"},
		"shorter is kept":         {secs(3600), "1h0m0s"},
		"longer is capped":        {secs(30 * 24 * 3600), "168h0m0s"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := s.lifetime(tc.in).String(); got != tc.want {
				t.Errorf("lifetime = %s, want %s", got, tc.want)
			}
		})
	}
}

type requester struct {
	user   string
	groups []string
}

func mustECDSA(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func makeCSR(t *testing.T, key any, tmpl x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// tamper flips a bit of the request's signature.
func tamper(t *testing.T, csrPEM []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(csrPEM)
	b := append([]byte{}, block.Bytes...)
	b[len(b)-3] ^= 0x01
	return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: b})
}
