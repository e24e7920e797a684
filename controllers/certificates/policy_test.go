package certificates

import (
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

	tests := map[string]struct {
		signer  string
		request []byte
		usages  []certificatesv1.KeyUsage
		by      requester
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
			wantReason: ReasonInvalidIdentity, wantMessage: "is not an edgeunit signer",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			csr := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
				SignerName: tc.signer, Request: tc.request, Usages: tc.usages, Username: tc.by.user, Groups: tc.by.groups,
			}}
			got := review(csr)
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
