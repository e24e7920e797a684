package certificates

import (
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
	"k8s.io/apimachinery/pkg/util/validation"

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

// review decides whether to approve a CSR for one of edgeunit's signers. It
// approves only when the request asks for exactly what its component may hold
// on one node (inspect) and the requester is that node (requesterMayHold).
// Everything else is denied with a message naming what is wrong: Denied is
// final, and a request that cannot become right must not stay pending.
func review(csr *certificatesv1.CertificateSigningRequest) verdict {
	id, ok := certs.IdentityForSigner(csr.Spec.SignerName)
	if !ok {
		return verdict{Reason: ReasonInvalidIdentity, Message: fmt.Sprintf("signerName %q is not an edgeunit signer", csr.Spec.SignerName)}
	}
	_, node, p := inspect(id, csr.Spec)
	if p == nil {
		p = requesterMayHold(csr.Spec.Username, csr.Spec.Groups, node)
	}
	if p != nil {
		return verdict{Reason: p.Reason, Message: p.Message}
	}
	return verdict{
		Approve: true,
		Reason:  ReasonAutoApproved,
		Message: fmt.Sprintf("Auto-approved %s identity of node %q requested by %q", id.Component, node, csr.Spec.Username),
	}
}

// inspect parses the request and checks that it asks for id on one node and
// nothing more: subject, usages, SANs and key. It returns the parsed request
// and the node. The signer runs it again, so that a CSR a human approved by
// hand still cannot mint anything but a node identity.
func inspect(id certs.Identity, spec certificatesv1.CertificateSigningRequestSpec) (*x509.CertificateRequest, string, *problem) {
	block, rest := pem.Decode(spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, "", invalid(ReasonInvalidRequest, "spec.request holds no PEM CERTIFICATE REQUEST block")
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, "", invalid(ReasonInvalidRequest, "spec.request holds data after the CERTIFICATE REQUEST block")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, "", invalid(ReasonInvalidRequest, "parsing the certificate request: %v", err)
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
// asked for.
func checkUsages(id certs.Identity, usages []certificatesv1.KeyUsage) (serving bool, _ *problem) {
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

func allowedUsages(id certs.Identity) []certificatesv1.KeyUsage {
	u := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth}
	if id.MayServeLoopback {
		u = append(u, certificatesv1.UsageServerAuth)
	}
	return u
}

// checkSANs rejects every SAN except, for a serving loopback identity, the
// loopback names. URIs and emails are never allowed.
func checkSANs(id certs.Identity, req *x509.CertificateRequest, serving bool) *problem {
	if len(req.URIs) > 0 || len(req.EmailAddresses) > 0 {
		return invalid(ReasonInvalidIdentity, "URI and email SANs are not allowed in a %s identity", id.Component)
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

// requesterMayHold says whether the CSR's requester may hold an identity of
// node. Two requesters may:
//   - the node itself: user system:node:<node> in group system:nodes (the
//     kubelet's credential, which node components reuse);
//   - a bootstrap token bound to the node by its Secret's auth-extra-groups
//     (certs.BootstrapNodeGroup). A bare bootstrap token is refused: it names
//     no node, is usually shared by many machines, and "the Node object does
//     not exist yet" is no binding either — any token holder could claim the
//     name of a node that has yet to join and keep its identity afterwards.
func requesterMayHold(username string, groups []string, node string) *problem {
	switch {
	case username == nodeUserPrefix+node && slices.Contains(groups, nodesGroup):
		return nil
	case strings.HasPrefix(username, nodeUserPrefix) && slices.Contains(groups, nodesGroup):
		return invalid(ReasonRequesterMismatch, "node %q may not request the identity of node %q", strings.TrimPrefix(username, nodeUserPrefix), node)
	case strings.HasPrefix(username, bootstrapUserPrefix) && slices.Contains(groups, bootstrappersGroup):
		if slices.Contains(groups, certs.BootstrapNodeGroup(node)) {
			return nil
		}
		return invalid(ReasonRequesterMismatch, "bootstrap token %q is not bound to node %q: its Secret's auth-extra-groups must include %q", strings.TrimPrefix(username, bootstrapUserPrefix), node, certs.BootstrapNodeGroup(node))
	default:
		return invalid(ReasonRequesterMismatch, "requester %q (groups %q) is not node %q: only %q in group %q or a bootstrap token bound to the node may request its identity", username, groups, node, nodeUserPrefix+node, nodesGroup)
	}
}
