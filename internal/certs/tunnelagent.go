package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
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
	return Request{
		CommonName:   tunnelAgentCNPrefix + node,
		Organization: []string{TunnelAgentOrganization},
		Lifetime:     lifetime,
		Client:       true,
	}
}

// TunnelAgentNode returns the node name a tunnel-agent certificate carries.
// It checks only the shape of the identity; chain and validity are the TLS
// stack's job.
func TunnelAgentNode(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", errors.New("no client certificate")
	}
	isAgent := false
	for _, o := range cert.Subject.Organization {
		if o == TunnelAgentOrganization {
			isAgent = true
		}
	}
	if !isAgent {
		return "", fmt.Errorf("certificate %q is not a tunnel-agent identity: organization %q missing", cert.Subject.CommonName, TunnelAgentOrganization)
	}
	node, ok := strings.CutPrefix(cert.Subject.CommonName, tunnelAgentCNPrefix)
	if !ok || node == "" || len(node) > 253 {
		return "", fmt.Errorf("certificate common name %q does not name a node", cert.Subject.CommonName)
	}
	return node, nil
}
