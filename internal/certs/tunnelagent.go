package certs

import (
	"crypto/x509"
	"time"
)

// TunnelAgentOrganization is the Organization of every tunnel-agent client
// certificate.
const TunnelAgentOrganization = "edgeunit:tunnel-agents"

// tunnelAgentCNPrefix prefixes the node name in a tunnel-agent's Common Name.
// A prefix of our own keeps an agent certificate from ever passing for a
// kubelet's (system:node:...) should the CAs be mixed up.
const tunnelAgentCNPrefix = "edgeunit:tunnel-agent:"

// TunnelAgentRequest is the client certificate of the tunnel-agent on node.
func TunnelAgentRequest(node string, lifetime time.Duration) Request {
	return TunnelAgentIdentity.Request(node, lifetime, false)
}

// TunnelAgentNode returns the node name a tunnel-agent certificate carries.
// It checks only the shape of the identity; chain and validity are the TLS
// stack's job.
func TunnelAgentNode(cert *x509.Certificate) (string, error) {
	return TunnelAgentIdentity.NodeOf(cert)
}
