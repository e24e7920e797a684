package certs

import (
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
