package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"slices"
	"testing"
	"time"
)

func TestIdentities(t *testing.T) {
	now := time.Now()
	ca, _, err := NewCA("test-ca", time.Hour*24, now)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		id       Identity
		node     string
		serve    bool
		wantCN   string
		wantSANs int
	}{
		"tunnel agent":         {id: TunnelAgentIdentity, node: "n1", wantCN: "edgeunit:tunnel-agent:n1"},
		"tunnel agent serving": {id: TunnelAgentIdentity, node: "n1", serve: true, wantCN: "edgeunit:tunnel-agent:n1"},
		"edge hub":             {id: EdgeHubIdentity, node: "edge-1.site", wantCN: "edgeunit:edge-hub:edge-1.site"},
		"edge hub serving":     {id: EdgeHubIdentity, node: "n1", serve: true, wantCN: "edgeunit:edge-hub:n1", wantSANs: 3},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			kp, err := ca.Issue(tc.id.Request(tc.node, time.Hour, tc.serve), now)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := ParseCert(kp.CertPEM)
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != tc.wantCN {
				t.Errorf("CN %q, want %q", cert.Subject.CommonName, tc.wantCN)
			}
			if n := len(cert.DNSNames) + len(cert.IPAddresses); n != tc.wantSANs {
				t.Errorf("%d SANs, want %d", n, tc.wantSANs)
			}
			if node, ok := tc.id.Node(cert.Subject.CommonName); !ok || node != tc.node {
				t.Errorf("Node() = %q, %v", node, ok)
			}
			nodeOf := TunnelAgentNode
			other := EdgeHubNode
			if tc.id.SignerName == SignerEdgeHub {
				nodeOf, other = EdgeHubNode, TunnelAgentNode
			}
			if node, err := nodeOf(cert); err != nil || node != tc.node {
				t.Errorf("node of certificate = %q, %v", node, err)
			}
			if _, err := other(cert); err == nil {
				t.Error("the certificate passes for the other component's identity")
			}
			if got, ok := IdentityForSigner(tc.id.SignerName); !ok || got != tc.id {
				t.Errorf("IdentityForSigner(%q) = %v, %v", tc.id.SignerName, got, ok)
			}
		})
	}
	if got := BootstrapNodeGroup("edge-1.site.example"); got != "system:bootstrappers:edgeunit:node:edge-1:site:example" {
		t.Errorf("BootstrapNodeGroup = %q", got)
	}
}

// TestHubInClusterIdentity: the hub's in-cluster certificate serves only,
// and only link-local addresses; under the kubelet-serving signer only a
// request of its exact shape is edgeunit's.
func TestHubInClusterIdentity(t *testing.T) {
	now := time.Now()
	ca, _, err := NewCA("cluster-ca", 24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	hubIP := net.ParseIP(DefaultHubInClusterIP)
	req, err := HubInClusterIdentity.LinkLocalRequest("edge-1", time.Hour, []net.IP{hubIP})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(req, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ParseCert(kp.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "system:node:edge-1" || !slices.Equal(cert.Subject.Organization, []string{"system:nodes"}) {
		t.Errorf("subject %q %q", cert.Subject.CommonName, cert.Subject.Organization)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("extended key usages %v, want server auth only", cert.ExtKeyUsage)
	}
	if len(cert.DNSNames) != 0 || len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(hubIP) {
		t.Errorf("SANs %q %v", cert.DNSNames, cert.IPAddresses)
	}
	if node, err := HubInClusterIdentity.NodeOf(cert); err != nil || node != "edge-1" {
		t.Errorf("NodeOf = %q, %v", node, err)
	}
	for _, id := range []Identity{TunnelAgentIdentity, EdgeHubIdentity} {
		if _, err := id.LinkLocalRequest("edge-1", time.Hour, []net.IP{hubIP}); err == nil {
			t.Errorf("a %s identity serves link-local addresses", id.Component)
		}
	}
	if _, ok := IdentityForSigner(SignerKubeletServing); ok {
		t.Error("IdentityForSigner makes every kubelet-serving request edgeunit's")
	}

	tests := map[string]struct {
		subject pkix.Name
		dns     []string
		ips     []net.IP
		want    bool
	}{
		"the hub's request":            {subject: pkix.Name{CommonName: "system:node:edge-1", Organization: []string{"system:nodes"}}, ips: []net.IP{hubIP, net.ParseIP("fe80::1")}, want: true},
		"the kubelet's own request":    {subject: pkix.Name{CommonName: "system:node:edge-1", Organization: []string{"system:nodes"}}, dns: []string{"edge-1"}, ips: []net.IP{net.ParseIP("192.0.2.7")}},
		"a DNS name beside the hub IP": {subject: pkix.Name{CommonName: "system:node:edge-1", Organization: []string{"system:nodes"}}, dns: []string{"edge-1"}, ips: []net.IP{hubIP}},
		"a node IP beside the hub IP":  {subject: pkix.Name{CommonName: "system:node:edge-1", Organization: []string{"system:nodes"}}, ips: []net.IP{hubIP, net.ParseIP("192.0.2.7")}},
		"no SANs":                      {subject: pkix.Name{CommonName: "system:node:edge-1", Organization: []string{"system:nodes"}}},
		"another organization":         {subject: pkix.Name{CommonName: "system:node:edge-1", Organization: []string{"system:nodes", "x"}}, ips: []net.IP{hubIP}},
		"another common name":          {subject: pkix.Name{CommonName: "edgeunit:edge-hub:edge-1", Organization: []string{"system:nodes"}}, ips: []net.IP{hubIP}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := &x509.CertificateRequest{Subject: tc.subject, DNSNames: tc.dns, IPAddresses: tc.ips}
			id, ok := IdentityForRequest(SignerKubeletServing, req)
			if ok != tc.want || (ok && id != HubInClusterIdentity) {
				t.Errorf("IdentityForRequest = %v, %v; want edgeunit's: %v", id.Component, ok, tc.want)
			}
		})
	}
	if id, ok := IdentityForRequest(SignerEdgeHub, nil); !ok || id != EdgeHubIdentity {
		t.Errorf("an unparsable request under edgeunit's own signer is not edgeunit's: %v, %v", id, ok)
	}
}
