package certs

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// SignerKubeletServing is the Kubernetes signer of kubelet serving
// certificates. kube-controller-manager signs its approved requests with the
// cluster CA, which every pod trusts (the kube-root-ca.crt ConfigMap), but
// never approves them itself.
const SignerKubeletServing = "kubernetes.io/kubelet-serving"

// Where the edge-hub serves in-cluster clients by default: a link-local
// address on a dummy interface of the node, and a port.
const (
	DefaultHubInClusterIP   = "169.254.31.1"
	DefaultHubInClusterPort = 10269
)

// The kubelet's identity, which kube-controller-manager requires of every
// request under SignerKubeletServing.
const (
	nodeCNPrefix      = "system:node:"
	nodesOrganization = "system:nodes"
)

// HubInClusterIdentity is the edge-hub's serving certificate for in-cluster
// clients (pods using InClusterConfig), which trust only the cluster CA: the
// hub requests it under SignerKubeletServing with the kubelet's credential,
// edgeunit's approver approves it, and kube-controller-manager signs it. It
// has the kubelet's subject (system:node:<node>, Organization system:nodes),
// which that signer requires, but serves only: server auth and no client
// auth, so it can never authenticate to the apiserver as the node. Its only
// SANs are link-local addresses (169.254.0.0/16, fe80::/10): every node
// holds the same address as a local one, so traffic a node's pods send to
// it is delivered on that node and never leaves it. A certificate for it
// therefore gives no node power over another node's traffic, the same
// argument as for MayServeLoopback.
var HubInClusterIdentity = Identity{
	Component:       "edge-hub-incluster",
	SignerName:      SignerKubeletServing,
	Organization:    nodesOrganization,
	ServesLinkLocal: true,
	ExternalSigner:  true,
	cnPrefix:        nodeCNPrefix,
}

// LinkLocalRequest is the serving certificate of an identity that
// ServesLinkLocal on node, for ips (CheckLinkLocalIPs) and nothing else.
func (id Identity) LinkLocalRequest(node string, lifetime time.Duration, ips []net.IP) (Request, error) {
	if !id.ServesLinkLocal {
		return Request{}, fmt.Errorf("a %s identity does not serve link-local addresses", id.Component)
	}
	if err := CheckLinkLocalIPs(ips); err != nil {
		return Request{}, err
	}
	return Request{
		CommonName:   id.CommonName(node),
		Organization: []string{id.Organization},
		IPs:          slices.Clone(ips),
		Lifetime:     lifetime,
		Server:       true,
	}, nil
}

// CheckLinkLocalIPs requires at least one address, each link-local unicast.
func CheckLinkLocalIPs(ips []net.IP) error {
	if len(ips) == 0 {
		return errors.New("no IP address: at least one link-local address is required")
	}
	for _, ip := range ips {
		if !ip.IsLinkLocalUnicast() {
			return fmt.Errorf("IP address %s is not link-local: only addresses in 169.254.0.0/16 and fe80::/10 may be served", ip)
		}
	}
	return nil
}
