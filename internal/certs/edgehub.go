package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
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
	return Request{
		CommonName:   edgeHubCNPrefix + node,
		Organization: []string{EdgeHubOrganization},
		Lifetime:     lifetime,
		Client:       true,
	}
}

// EdgeHubNode returns the node name an edge-hub certificate carries. Like
// TunnelAgentNode it checks only the shape of the identity.
func EdgeHubNode(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", errors.New("no client certificate")
	}
	if !slices.Contains(cert.Subject.Organization, EdgeHubOrganization) {
		return "", fmt.Errorf("certificate %q is not an edge-hub identity: organization %q missing", cert.Subject.CommonName, EdgeHubOrganization)
	}
	node, ok := strings.CutPrefix(cert.Subject.CommonName, edgeHubCNPrefix)
	if !ok || node == "" || len(node) > 253 {
		return "", fmt.Errorf("certificate common name %q does not name a node", cert.Subject.CommonName)
	}
	return node, nil
}
