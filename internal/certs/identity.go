package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// Signer names of the Kubernetes CSR API under which nodes request their
// edgeunit identities. The operator approves and signs everything under
// these. Of the Kubernetes signers (kubernetes.io/...) it approves only the
// hub's requests under SignerKubeletServing (see IdentityForRequest) and
// signs none.
const (
	SignerTunnelAgent = "edge.edgeunit.io/tunnel-agent"
	SignerEdgeHub     = "edge.edgeunit.io/edge-hub"
)

// Identity is what the certificate of one node component may say: its
// signer, its Common Name shape and its one Organization. An identity is
// bound to a node by name; the CSR approver checks that only that node asks
// for it.
type Identity struct {
	// Component is the component's name, used in file and CSR names.
	Component string
	// SignerName is the CSR API signer that issues this identity.
	SignerName string
	// Organization is the identity's only Organization.
	Organization string
	// MayServeLoopback says the certificate may also carry server auth for
	// the loopback names (LoopbackDNSNames, LoopbackIPs) and nothing else:
	// the edge-hub serves kubelet and friends on 127.0.0.1 with it. A
	// loopback name proves nothing about which node answers, so handing it
	// to every hub gives no node power over another.
	MayServeLoopback bool
	// ServesLinkLocal says the certificate is a serving certificate and
	// nothing else, for link-local addresses of the node only
	// (LinkLocalRequest, CheckLinkLocalIPs).
	ServesLinkLocal bool
	// ExternalSigner says a signer other than edgeunit's issues the
	// identity: edgeunit approves its requests but must never sign them.
	ExternalSigner bool

	cnPrefix string
}

// The identities nodes may hold.
var (
	TunnelAgentIdentity = Identity{Component: "tunnel-agent", SignerName: SignerTunnelAgent, Organization: TunnelAgentOrganization, cnPrefix: tunnelAgentCNPrefix}
	EdgeHubIdentity     = Identity{Component: "edge-hub", SignerName: SignerEdgeHub, Organization: EdgeHubOrganization, MayServeLoopback: true, cnPrefix: edgeHubCNPrefix}
)

// Identities lists every node identity edgeunit approves, those another
// signer issues (ExternalSigner) included.
func Identities() []Identity {
	return []Identity{TunnelAgentIdentity, EdgeHubIdentity, HubInClusterIdentity}
}

// IdentityForSigner returns the identity issued under signerName when
// signerName is one of edgeunit's own signers. A signer edgeunit shares with
// others names no identity by itself: see IdentityForRequest.
func IdentityForSigner(signerName string) (Identity, bool) {
	for _, id := range Identities() {
		if id.SignerName == signerName && !id.ExternalSigner {
			return id, true
		}
	}
	return Identity{}, false
}

// IdentityForRequest returns the identity a certificate request under
// signerName asks for. Under edgeunit's own signers that is the signer's
// identity, whatever the request says: the approver denies a request that
// asks for more. Under a signer edgeunit shares (SignerKubeletServing) only a
// request of exactly an identity's shape is edgeunit's: the identity's Common
// Name and Organization, and nothing but link-local IP SANs. Every other
// request there, the kubelet's own serving certificate (its host name and
// node addresses) first of all, belongs to other approvers. req is nil when
// the request does not parse; then only an own signer's identity is found.
func IdentityForRequest(signerName string, req *x509.CertificateRequest) (Identity, bool) {
	if id, ok := IdentityForSigner(signerName); ok {
		return id, true
	}
	if req == nil {
		return Identity{}, false
	}
	for _, id := range Identities() {
		if id.ExternalSigner && id.SignerName == signerName && id.claims(req) {
			return id, true
		}
	}
	return Identity{}, false
}

// claims says whether req has the shape of this link-local serving
// identity. It checks no more than the shape: the approver checks the rest
// and denies what is wrong.
func (id Identity) claims(req *x509.CertificateRequest) bool {
	_, ok := id.Node(req.Subject.CommonName)
	return ok && id.ServesLinkLocal &&
		slices.Equal(req.Subject.Organization, []string{id.Organization}) &&
		len(req.DNSNames) == 0 && len(req.EmailAddresses) == 0 && len(req.URIs) == 0 &&
		CheckLinkLocalIPs(req.IPAddresses) == nil
}

// CommonName is the identity's Common Name on node.
func (id Identity) CommonName(node string) string { return id.cnPrefix + node }

// Node returns the node a Common Name of this identity names; ok is false
// when commonName is not of this identity.
func (id Identity) Node(commonName string) (node string, ok bool) {
	node, ok = strings.CutPrefix(commonName, id.cnPrefix)
	return node, ok && node != ""
}

// NodeOf returns the node a certificate of this identity carries: it must
// hold the identity's Organization and a Common Name of its shape naming a
// node. Chain and validity are the TLS stack's job.
func (id Identity) NodeOf(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", errors.New("no client certificate")
	}
	if !slices.Contains(cert.Subject.Organization, id.Organization) {
		return "", fmt.Errorf("certificate %q is not a %s identity: organization %q missing", cert.Subject.CommonName, id.Component, id.Organization)
	}
	node, ok := id.Node(cert.Subject.CommonName)
	if !ok || len(node) > 253 {
		return "", fmt.Errorf("certificate common name %q does not name a node", cert.Subject.CommonName)
	}
	return node, nil
}

// Request is the client certificate of this identity on node. With
// serveLoopback (only for identities that MayServeLoopback) it also serves
// the loopback names. An identity that ServesLinkLocal is no client: its
// request is LinkLocalRequest.
func (id Identity) Request(node string, lifetime time.Duration, serveLoopback bool) Request {
	req := Request{
		CommonName:   id.CommonName(node),
		Organization: []string{id.Organization},
		Lifetime:     lifetime,
		Client:       true,
	}
	if serveLoopback && id.MayServeLoopback {
		req.Server = true
		req.DNSNames = LoopbackDNSNames()
		req.IPs = LoopbackIPs()
	}
	return req
}

// LoopbackDNSNames are the only DNS names a node identity may serve.
func LoopbackDNSNames() []string { return []string{"localhost"} }

// LoopbackIPs are the only addresses a node identity may serve.
func LoopbackIPs() []net.IP { return []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} }

// BootstrapNodeGroupPrefix prefixes the group that binds a bootstrap token
// to one node (see BootstrapNodeGroup).
const BootstrapNodeGroupPrefix = "system:bootstrappers:edgeunit:node:"

// BootstrapNodeGroup is the group a bootstrap token must carry (in its
// Secret's auth-extra-groups) for its holder to obtain node's identities
// before the node has a kubelet credential. A bootstrap token by itself names
// no node — kubeadm hands one token to many machines — so without this
// binding any holder could claim any node's identity. The token authenticator
// allows only [a-z0-9:-] in extra groups, so the dots of the node name become
// colons (a colon never occurs in a node name, so the mapping is one to one).
// Node names longer than 242 characters cannot be bound this way.
func BootstrapNodeGroup(node string) string {
	return BootstrapNodeGroupPrefix + strings.ReplaceAll(node, ".", ":")
}
