package certificates

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/certs"
)

// Reasons of the conditions the approver and the signer set on CSRs.
const (
	ReasonAutoApproved = "EdgeunitAutoApproved"
	// ReasonInvalidRequest: the PEM, its signature or its key is unusable.
	ReasonInvalidRequest = "EdgeunitInvalidRequest"
	// ReasonInvalidIdentity: the subject, usages or SANs are not exactly
	// what the component may hold.
	ReasonInvalidIdentity = "EdgeunitInvalidIdentity"
	// ReasonRequesterMismatch: the requester is not the node the
	// certificate names.
	ReasonRequesterMismatch = "EdgeunitRequesterMismatch"
	// ReasonNodeNotInUnit: the node the certificate names does not exist
	// or is in no edge unit, so it runs no hub to serve with it.
	ReasonNodeNotInUnit = "EdgeunitNodeNotInUnit"
	// ReasonSigningFailed: the signer will not issue an approved request.
	ReasonSigningFailed = "EdgeunitSigningFailed"
)

// Identities of the requesters the approver trusts.
const (
	nodeUserPrefix      = "system:node:"
	nodesGroup          = "system:nodes"
	bootstrapUserPrefix = "system:bootstrap:"
	bootstrappersGroup  = "system:bootstrappers"
)

// verdict is the approver's decision on one CSR.
type verdict struct {
	Approve bool
	Reason  string
	Message string
}

// problem is why a CSR cannot be approved or signed.
type problem struct {
	Reason  string
	Message string
}

func (p *problem) Error() string { return p.Reason + ": " + p.Message }

func invalid(reason, format string, args ...any) *problem {
	return &problem{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// identityOf returns the edgeunit identity a CSR asks for, if the CSR is
// edgeunit's at all (certs.IdentityForRequest): everything under edgeunit's
// signers, and under the kubelet-serving signer only requests of the hub's
// in-cluster shape.
func identityOf(csr *certificatesv1.CertificateSigningRequest) (certs.Identity, bool) {
	req, _ := parseRequest(csr.Spec.Request)
	return certs.IdentityForRequest(csr.Spec.SignerName, req)
}

// review decides whether to approve a CSR for one of edgeunit's identities
// (identityOf). It approves only when the request asks for exactly what its
// component may hold on one node (inspect), the requester is that node
// (requesterMayHold) and, for an identity the cluster CA signs, the node is
// in an edge unit (nodeInUnit). Everything else is denied with a message
// naming what is wrong: Denied is final, and a request that cannot become
// right must not stay pending. It errs only when it cannot read the Node.
func review(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, nodes client.Reader) (verdict, error) {
	id, ok := identityOf(csr)
	if !ok {
		return verdict{Reason: ReasonInvalidIdentity, Message: fmt.Sprintf("signerName %q is not an edgeunit signer", csr.Spec.SignerName)}, nil
	}
	_, node, p := inspect(id, csr.Spec)
	if p == nil {
		p = requesterMayHold(id, csr.Spec.Username, csr.Spec.Groups, node)
	}
	if p == nil && id.ExternalSigner {
		var err error
		if p, err = nodeInUnit(ctx, nodes, node); err != nil {
			return verdict{}, err
		}
	}
	if p != nil {
		return verdict{Reason: p.Reason, Message: p.Message}, nil
	}
	return verdict{
		Approve: true,
		Reason:  ReasonAutoApproved,
		Message: fmt.Sprintf("Auto-approved %s identity of node %q requested by %q", id.Component, node, csr.Spec.Username),
	}, nil
}

// nodeInUnit requires the Node to exist and to be in an edge unit: only a
// unit's nodes run a hub, and a certificate that every pod trusts goes to no
// other node.
func nodeInUnit(ctx context.Context, nodes client.Reader, node string) (*problem, error) {
	n := &metav1.PartialObjectMetadata{}
	n.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
	if err := nodes.Get(ctx, client.ObjectKey{Name: node}, n); err != nil {
		if apierrors.IsNotFound(err) {
			return invalid(ReasonNodeNotInUnit, "node %q does not exist", node), nil
		}
		return nil, fmt.Errorf("reading node %q: %w", node, err)
	}
	if n.Labels[edgev1.LabelUnit] == "" {
		return invalid(ReasonNodeNotInUnit, "node %q is in no edge unit (no label %s): only a unit's nodes run a hub that serves in-cluster clients", node, edgev1.LabelUnit), nil
	}
	return nil, nil
}

// inspect parses the request and checks that it asks for id on one node and
// nothing more: subject, usages, SANs and key. It returns the parsed request
// and the node. The signer runs it again, so that a CSR a human approved by
// hand still cannot mint anything but a node identity.
func inspect(id certs.Identity, spec certificatesv1.CertificateSigningRequestSpec) (*x509.CertificateRequest, string, *problem) {
	req, p := parseRequest(spec.Request)
	if p != nil {
		return nil, "", p
	}
	if err := req.CheckSignature(); err != nil {
		return nil, "", invalid(ReasonInvalidRequest, "the certificate request's signature does not verify: %v", err)
	}
	if p := checkKey(req.PublicKey); p != nil {
		return nil, "", p
	}
	node, p := checkSubject(id, req)
	if p != nil {
		return nil, "", p
	}
	serving, p := checkUsages(id, spec.Usages)
	if p != nil {
		return nil, "", p
	}
	if p := checkSANs(id, req, serving); p != nil {
		return nil, "", p
	}
	return req, node, nil
}

// parseRequest parses spec.request: exactly one PEM CERTIFICATE REQUEST
// block. It does not check the signature.
func parseRequest(data []byte) (*x509.CertificateRequest, *problem) {
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, invalid(ReasonInvalidRequest, "spec.request holds no PEM CERTIFICATE REQUEST block")
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, invalid(ReasonInvalidRequest, "spec.request holds data after the CERTIFICATE REQUEST block")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, invalid(ReasonInvalidRequest, "parsing the certificate request: %v", err)
	}
	return req, nil
}

// checkKey accepts ECDSA P-256/P-384 and RSA of 2048 to 8192 bits.
func checkKey(pub any) *problem {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return invalid(ReasonInvalidRequest, "ECDSA curve %s is not accepted: use P-256 or P-384", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return invalid(ReasonInvalidRequest, "RSA key of %d bits is not accepted: use 2048 to 8192 bits", n)
		}
		return nil
	default:
		return invalid(ReasonInvalidRequest, "%T keys are not accepted: use ECDSA P-256/P-384 or RSA", pub)
	}
}

var (
	oidCommonName   = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidOrganization = asn1.ObjectIdentifier{2, 5, 4, 10}
)

// checkSubject requires exactly one CN of the identity's shape naming a
// valid node name, exactly the identity's Organization, and no other subject
// attribute.
func checkSubject(id certs.Identity, req *x509.CertificateRequest) (string, *problem) {
	var cns, orgs int
	for _, atv := range req.Subject.Names {
		switch {
		case atv.Type.Equal(oidCommonName):
			cns++
		case atv.Type.Equal(oidOrganization):
			orgs++
		default:
			return "", invalid(ReasonInvalidIdentity, "subject attribute %s is not allowed: a %s identity has only a common name and organization %q", atv.Type, id.Component, id.Organization)
		}
	}
	cn := req.Subject.CommonName
	node, ok := id.Node(cn)
	if cns != 1 || !ok {
		return "", invalid(ReasonInvalidIdentity, "common name %q is not a %s identity: want %q", cn, id.Component, id.CommonName("<node>"))
	}
	if errs := validation.IsDNS1123Subdomain(node); len(errs) > 0 {
		return "", invalid(ReasonInvalidIdentity, "common name %q does not name a valid node: %s", cn, strings.Join(errs, "; "))
	}
	if orgs != 1 || !slices.Equal(req.Subject.Organization, []string{id.Organization}) {
		return "", invalid(ReasonInvalidIdentity, "organizations %q are not allowed: a %s identity has exactly [%q]", req.Subject.Organization, id.Component, id.Organization)
	}
	return node, nil
}

// checkUsages requires client auth, allows digital signature and key
// encipherment (RSA key exchange needs it), and server auth only for
// identities that may serve loopback. It reports whether server auth was
// asked for. An identity that ServesLinkLocal has usages of its own
// (checkServingUsages).
func checkUsages(id certs.Identity, usages []certificatesv1.KeyUsage) (serving bool, _ *problem) {
	if id.ServesLinkLocal {
		return true, checkServingUsages(id, usages)
	}
	client := false
	for _, u := range usages {
		switch u {
		case certificatesv1.UsageClientAuth:
			client = true
		case certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		case certificatesv1.UsageServerAuth:
			if !id.MayServeLoopback {
				return false, invalid(ReasonInvalidIdentity, "usage %q is not allowed for a %s identity: allowed are %q", u, id.Component, allowedUsages(id))
			}
			serving = true
		default:
			return false, invalid(ReasonInvalidIdentity, "usage %q is not allowed for a %s identity: allowed are %q", u, id.Component, allowedUsages(id))
		}
	}
	if !client {
		return false, invalid(ReasonInvalidIdentity, "usage %q is required for a %s identity", certificatesv1.UsageClientAuth, id.Component)
	}
	return serving, nil
}

// checkServingUsages requires server auth and digital signature, allows key
// encipherment, and refuses everything else, client auth first of all: a
// certificate of system:node:<node> that may authenticate clients would be
// the node's credential for the apiserver. kube-controller-manager's
// kubelet-serving signer accepts exactly these sets, so a request it would
// fail is denied here, with a reason, instead.
func checkServingUsages(id certs.Identity, usages []certificatesv1.KeyUsage) *problem {
	var server, signature bool
	for _, u := range usages {
		switch u {
		case certificatesv1.UsageServerAuth:
			server = true
		case certificatesv1.UsageDigitalSignature:
			signature = true
		case certificatesv1.UsageKeyEncipherment:
		default:
			return invalid(ReasonInvalidIdentity, "usage %q is not allowed for a %s identity: allowed are %q", u, id.Component, allowedUsages(id))
		}
	}
	if !server || !signature {
		return invalid(ReasonInvalidIdentity, "usages %q and %q are required for a %s identity", certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth, id.Component)
	}
	return nil
}

func allowedUsages(id certs.Identity) []certificatesv1.KeyUsage {
	if id.ServesLinkLocal {
		return []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth}
	}
	u := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth}
	if id.MayServeLoopback {
		u = append(u, certificatesv1.UsageServerAuth)
	}
	return u
}

// checkSANs rejects every SAN except, for a serving loopback identity, the
// loopback names, and requires link-local IP SANs and nothing else of an
// identity that ServesLinkLocal. URIs and emails are never allowed.
func checkSANs(id certs.Identity, req *x509.CertificateRequest, serving bool) *problem {
	if len(req.URIs) > 0 || len(req.EmailAddresses) > 0 {
		return invalid(ReasonInvalidIdentity, "URI and email SANs are not allowed in a %s identity", id.Component)
	}
	if id.ServesLinkLocal {
		if len(req.DNSNames) > 0 {
			return invalid(ReasonInvalidIdentity, "DNS SANs %q are not allowed: a %s identity serves only link-local IP addresses", req.DNSNames, id.Component)
		}
		if err := certs.CheckLinkLocalIPs(req.IPAddresses); err != nil {
			return invalid(ReasonInvalidIdentity, "a %s identity serves only link-local IP addresses: %v", id.Component, err)
		}
		return nil
	}
	if len(req.DNSNames) == 0 && len(req.IPAddresses) == 0 {
		return nil
	}
	if !serving {
		return invalid(ReasonInvalidIdentity, "SANs %q %q are not allowed in a %s client identity", req.DNSNames, req.IPAddresses, id.Component)
	}
	for _, d := range req.DNSNames {
		if !slices.Contains(certs.LoopbackDNSNames(), d) {
			return invalid(ReasonInvalidIdentity, "DNS SAN %q is not allowed: a %s may serve only %q", d, id.Component, certs.LoopbackDNSNames())
		}
	}
	for _, ip := range req.IPAddresses {
		if !slices.ContainsFunc(certs.LoopbackIPs(), ip.Equal) {
			return invalid(ReasonInvalidIdentity, "IP SAN %s is not allowed: a %s may serve only %v", ip, id.Component, certs.LoopbackIPs())
		}
	}
	return nil
}

// requesterMayHold says whether the CSR's requester may hold identity id of
// node. Two requesters may:
//   - the node itself: user system:node:<node> in group system:nodes (the
//     kubelet's credential, which node components reuse);
//   - a bootstrap token bound to the node by its Secret's auth-extra-groups
//     (certs.BootstrapNodeGroup). A bare bootstrap token is refused: it names
//     no node, is usually shared by many machines, and "the Node object does
//     not exist yet" is no binding either — any token holder could claim the
//     name of a node that has yet to join and keep its identity afterwards.
//     No bootstrap token may request an identity the cluster CA signs
//     (ExternalSigner): every pod trusts it, and the node that needs it is in
//     a unit, so it has joined and holds the kubelet's credential.
func requesterMayHold(id certs.Identity, username string, groups []string, node string) *problem {
	switch {
	case username == nodeUserPrefix+node && slices.Contains(groups, nodesGroup):
		return nil
	case strings.HasPrefix(username, nodeUserPrefix) && slices.Contains(groups, nodesGroup):
		return invalid(ReasonRequesterMismatch, "node %q may not request the identity of node %q", strings.TrimPrefix(username, nodeUserPrefix), node)
	case id.ExternalSigner:
		return invalid(ReasonRequesterMismatch, "requester %q (groups %q) is not node %q: only %q in group %q may request its %s identity", username, groups, node, nodeUserPrefix+node, nodesGroup, id.Component)
	case strings.HasPrefix(username, bootstrapUserPrefix) && slices.Contains(groups, bootstrappersGroup):
		if slices.Contains(groups, certs.BootstrapNodeGroup(node)) {
			return nil
		}
		return invalid(ReasonRequesterMismatch, "bootstrap token %q is not bound to node %q: its Secret's auth-extra-groups must include %q", strings.TrimPrefix(username, bootstrapUserPrefix), node, certs.BootstrapNodeGroup(node))
	default:
		return invalid(ReasonRequesterMismatch, "requester %q (groups %q) is not node %q: only %q in group %q or a bootstrap token bound to the node may request its identity", username, groups, node, nodeUserPrefix+node, nodesGroup)
	}
}
