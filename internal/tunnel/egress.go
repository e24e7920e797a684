package tunnel

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/edgeunit/edgeunit/internal/certs"
)

// The identity kube-apiserver's egress client presents to the TCP CONNECT
// listener. The TunnelEndpoint controller issues it from the operator CA.
// Node identities come from the same CA, so the CA alone must not admit a
// client: a node's agent or hub certificate on the CONNECT port would let
// that node reach every other node's kubelet.
const (
	EgressCommonName   = "edgeunit:kube-apiserver-egress"
	EgressOrganization = "edgeunit:tunnel-egress"
)

// EgressClientRequest is the certificate kube-apiserver presents to the
// CONNECT listener.
func EgressClientRequest(lifetime time.Duration) certs.Request {
	return certs.Request{
		CommonName:   EgressCommonName,
		Organization: []string{EgressOrganization},
		Lifetime:     lifetime,
		Client:       true,
	}
}

// nodeOrganizations are the Organizations of node identities; a
// certificate carrying one is never a CONNECT client, whatever its name.
var nodeOrganizations = []string{certs.TunnelAgentOrganization, certs.EdgeHubOrganization}

// CheckConnectClient accepts a verified client certificate on the CONNECT
// listener only when its Common Name is one of allowed and it is no node
// identity.
func CheckConnectClient(cert *x509.Certificate, allowed []string) error {
	if cert == nil {
		return errors.New("no client certificate")
	}
	for _, o := range cert.Subject.Organization {
		if slices.Contains(nodeOrganizations, o) {
			return fmt.Errorf("certificate %q is a node identity (organization %q) and may not use the CONNECT listener", cert.Subject.CommonName, o)
		}
	}
	if !slices.Contains(allowed, cert.Subject.CommonName) {
		return fmt.Errorf("certificate %q may not use the CONNECT listener: allowed are %q", cert.Subject.CommonName, allowed)
	}
	return nil
}

// ConnectServerTLS is ServerTLS for the TCP CONNECT listener: a client
// certificate from clientCAFile is required and, on top of the chain, its
// name is checked with CheckConnectClient against allowedNames.
func ConnectServerTLS(certFile, keyFile, clientCAFile string, allowedNames []string) (*tls.Config, error) {
	if clientCAFile == "" {
		return nil, errors.New("the CONNECT listener needs the CA of its clients")
	}
	if len(allowedNames) == 0 {
		return nil, errors.New("the CONNECT listener needs the names of its clients")
	}
	cfg, err := ServerTLS(certFile, keyFile, clientCAFile)
	if err != nil {
		return nil, err
	}
	allowed := slices.Clone(allowedNames)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no client certificate")
		}
		return CheckConnectClient(cs.PeerCertificates[0], allowed)
	}
	return cfg, nil
}
