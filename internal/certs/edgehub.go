package certs

import (
	"crypto/x509"
	"time"
)

// EdgeHubOrganization is the Organization of every edge-hub client
// certificate.
const EdgeHubOrganization = "edgeunit:edge-hubs"

// edgeHubCNPrefix prefixes the node name in an edge-hub's Common Name. Like
// the tunnel-agent's, it can never be mistaken for a kubelet's
// (system:node:...) identity.
const edgeHubCNPrefix = "edgeunit:edge-hub:"

// EdgeHubRequest is the client certificate of the edge-hub on node.
func EdgeHubRequest(node string, lifetime time.Duration) Request {
	return EdgeHubIdentity.Request(node, lifetime, false)
}

// EdgeHubNode returns the node name an edge-hub certificate carries. Like
// TunnelAgentNode it checks only the shape of the identity.
func EdgeHubNode(cert *x509.Certificate) (string, error) {
	return EdgeHubIdentity.NodeOf(cert)
}
