package certs

import "time"

// The identity kube-apiserver's egress client presents to the tunnel-server's
// TCP CONNECT listener. The TunnelEndpoint controller issues it from the
// operator CA. Node identities come from the same CA, so the CA alone must
// not admit a client: a node's agent or hub certificate on the CONNECT port
// would let that node reach every other node's kubelet. It lives here, not in
// internal/tunnel, so the manager names it without linking the tunnel.
const (
	EgressCommonName   = "edgeunit:kube-apiserver-egress"
	EgressOrganization = "edgeunit:tunnel-egress"
)

// EgressClientRequest is the certificate kube-apiserver presents to the
// CONNECT listener.
func EgressClientRequest(lifetime time.Duration) Request {
	return Request{
		CommonName:   EgressCommonName,
		Organization: []string{EgressOrganization},
		Lifetime:     lifetime,
		Client:       true,
	}
}
