package tunnel

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/edgeunit/edgeunit/internal/certs"
)

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
