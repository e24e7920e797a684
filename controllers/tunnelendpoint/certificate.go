package tunnelendpoint

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/certs"
)

// sans are the names a serving certificate must carry.
type sans struct {
	DNS []string
	IPs []net.IP
}

// desiredSANs are the serving certificate's names: both Services' DNS
// names (short to fully qualified), a wildcard under the headless Service
// for per-pod names, the Service's cluster IPs, its load balancer's ingress
// and the addresses from spec. Sorted and deduplicated, so comparing them
// with a certificate's is stable.
func desiredSANs(te *edgev1.TunnelEndpoint, cfg config, svc *corev1.Service) sans {
	dns := map[string]bool{}
	ips := map[string]net.IP{}
	add := func(host string) {
		host = strings.TrimSuffix(strings.TrimSpace(host), ".")
		if host == "" {
			return
		}
		// An IPv6 address may come in brackets, as in a URL.
		if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			ips[ip.String()] = ip
			return
		}
		dns[strings.ToLower(host)] = true
	}
	domain := cfg.ClusterDomain
	if domain == "" {
		domain = "cluster.local"
	}
	for _, name := range []string{ServiceName(te.Name), HeadlessServiceName(te.Name)} {
		add(name)
		add(name + "." + cfg.Namespace)
		add(name + "." + cfg.Namespace + ".svc")
		add(name + "." + cfg.Namespace + ".svc." + domain)
	}
	headless := HeadlessServiceName(te.Name) + "." + cfg.Namespace + ".svc"
	add("*." + headless)
	add("*." + headless + "." + domain)
	for _, a := range te.Spec.Service.Addresses {
		add(a)
	}
	if svc != nil {
		for _, ip := range svc.Spec.ClusterIPs {
			if ip != corev1.ClusterIPNone {
				add(ip)
			}
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			add(svc.Spec.ClusterIP)
		}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			add(in.IP)
			add(in.Hostname)
		}
	}
	out := sans{}
	for d := range dns {
		out.DNS = append(out.DNS, d)
	}
	slices.Sort(out.DNS)
	keys := make([]string, 0, len(ips))
	for k := range ips {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		out.IPs = append(out.IPs, ips[k])
	}
	return out
}

func (s sans) equal(cert *x509.Certificate) bool {
	dns := slices.Clone(cert.DNSNames)
	slices.Sort(dns)
	if !slices.Equal(s.DNS, dns) {
		return false
	}
	var have []string
	for _, ip := range cert.IPAddresses {
		have = append(have, ip.String())
	}
	slices.Sort(have)
	want := make([]string, 0, len(s.IPs))
	for _, ip := range s.IPs {
		want = append(want, ip.String())
	}
	slices.Sort(want)
	return slices.Equal(want, have)
}

// renewalTime is when a certificate has used two thirds of its lifetime
// (the rule of certs.NeedsRenewal).
func renewalTime(cert *x509.Certificate) time.Time {
	return cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) * 2 / 3)
}

// Why a serving certificate is (re)issued; empty when the current one is
// kept.
const (
	issueMissing    = "no certificate yet"
	issueUnreadable = "the stored certificate is unreadable"
	issueCAChanged  = "the CA changed"
	issueSANs       = "its names changed"
	issueLifetime   = "certificateLifetime was shortened"
	issueRenewal    = "two thirds of its lifetime have passed"
)

// reissueReason says whether the Secret's certificate must be replaced, and
// why. Pure: it reads only its arguments.
func reissueReason(data map[string][]byte, ca *certs.CA, want sans, lifetime time.Duration, now time.Time) string {
	crtPEM, keyPEM := data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey]
	if len(crtPEM) == 0 || len(keyPEM) == 0 {
		return issueMissing
	}
	if _, err := tls.X509KeyPair(crtPEM, keyPEM); err != nil {
		return issueUnreadable
	}
	cert, err := certs.ParseCert(crtPEM)
	if err != nil {
		return issueUnreadable
	}
	if !bytes.Equal(data[corev1.ServiceAccountRootCAKey], ca.CertPEM()) || cert.CheckSignatureFrom(ca.Cert) != nil {
		return issueCAChanged
	}
	if !want.equal(cert) {
		return issueSANs
	}
	// A certificate may outlive a shortened lifetime by the issuing
	// backdate at most; a lengthened one waits for the next renewal.
	if cert.NotAfter.After(now.Add(lifetime)) && cert.NotAfter.After(cert.NotBefore.Add(lifetime+10*time.Minute)) {
		return issueLifetime
	}
	if !now.Before(renewalTime(cert)) {
		return issueRenewal
	}
	return ""
}

// issueRequest is the serving certificate's request.
func issueRequest(te *edgev1.TunnelEndpoint, cfg config, want sans) certs.Request {
	return certs.Request{
		CommonName: ServiceName(te.Name) + "." + cfg.Namespace + ".svc",
		DNSNames:   want.DNS,
		IPs:        want.IPs,
		Lifetime:   lifetimeOf(te),
		Server:     true,
	}
}

// caHash identifies a CA bundle in the pod template annotation.
func caHash(caPEM []byte) string {
	sum := sha256.Sum256(caPEM)
	return hex.EncodeToString(sum[:8])
}

// certInfo is what status needs from the current serving certificate.
type certInfo struct {
	NotAfter  time.Time
	RenewAt   time.Time
	IssuedNow string // why it was issued in this pass, if it was
}

func certInfoOf(crtPEM []byte) (certInfo, error) {
	cert, err := certs.ParseCert(crtPEM)
	if err != nil {
		return certInfo{}, fmt.Errorf("parsing serving certificate: %w", err)
	}
	return certInfo{NotAfter: cert.NotAfter, RenewAt: renewalTime(cert)}, nil
}
