package tunnelendpoint

import (
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/certs"
)

// DefaultEgressCertificateLifetime is the lifetime of kube-apiserver's
// egress client certificate. kube-apiserver reads it only when it starts,
// so it lives far longer than the servers' certificates (which the servers
// reload): it is renewed at two thirds of its lifetime like them, and the
// new one must be installed on the control plane before the old expires.
const DefaultEgressCertificateLifetime = 365 * 24 * time.Hour

const egressSuffix = "-egress"

// EgressSecretName is the name of the Secret holding the client certificate
// kube-apiserver presents to the servers' CONNECT listener (ca.crt, tls.crt,
// tls.key), for the cluster admin to install with its egress selector
// configuration.
func EgressSecretName(te string) string { return baseName(te) + egressSuffix }

// issueIdentity: the stored certificate is not the egress identity.
const issueIdentity = "it is not the kube-apiserver egress identity"

// egressReissueReason says whether the egress Secret's certificate must be
// replaced, and why: the serving certificate's rules without names, and
// the identity the CONNECT listener accepts. Pure.
func egressReissueReason(data map[string][]byte, ca *certs.CA, lifetime time.Duration, now time.Time) string {
	if why := reissueReason(data, ca, sans{}, lifetime, now); why != "" {
		return why
	}
	cert, err := certs.ParseCert(data[corev1.TLSCertKey])
	if err != nil {
		return issueUnreadable
	}
	if cert.Subject.CommonName != certs.EgressCommonName ||
		!slices.Equal(cert.Subject.Organization, []string{certs.EgressOrganization}) ||
		!slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		return issueIdentity
	}
	return ""
}

// ensureEgressCertificate keeps the egress Secret's client certificate
// issued by ca, renewing it at two thirds of its lifetime.
func (r *Reconciler) ensureEgressCertificate(ctx context.Context, te *edgev1.TunnelEndpoint, ca *certs.CA, now time.Time) (*certInfo, error) {
	key := types.NamespacedName{Namespace: r.cfg.Namespace, Name: EgressSecretName(te.Name)}
	sec := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, key, sec); err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading egress Secret %s: %w", key, err)
	}
	data := map[string][]byte{}
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, corev1.ServiceAccountRootCAKey} {
		if v, ok := sec.Data[k]; ok {
			data[k] = v
		}
	}
	why := egressReissueReason(data, ca, r.cfg.EgressLifetime, now)
	if why != "" {
		kp, err := ca.Issue(certs.EgressClientRequest(r.cfg.EgressLifetime), now)
		if err != nil {
			return nil, fmt.Errorf("issuing kube-apiserver's egress certificate for TunnelEndpoint %s: %w", te.Name, err)
		}
		data = map[string][]byte{
			corev1.TLSCertKey:              kp.CertPEM,
			corev1.TLSPrivateKeyKey:        kp.KeyPEM,
			corev1.ServiceAccountRootCAKey: ca.CertPEM(),
		}
	}
	if err := r.apply(ctx, desiredEgressSecret(te, r.cfg, data), &corev1.Secret{}); err != nil {
		return nil, err
	}
	ci, err := certInfoOf(data[corev1.TLSCertKey])
	if err != nil {
		return nil, err
	}
	if why != "" {
		ci.IssuedNow = why
		ctrl.LoggerFrom(ctx).V(2).Info("Issued kube-apiserver egress certificate", "secret", klog.KRef(key.Namespace, key.Name),
			"reason", why, "notAfter", ci.NotAfter, "renewAt", ci.RenewAt)
		r.event(te, corev1.EventTypeNormal, edgev1.ReasonIssued, "IssueEgressCertificate",
			"Issued kube-apiserver's egress client certificate in Secret %s because %s; kube-apiserver reads it only at start: install it and restart kube-apiserver before %s",
			key.Name, why, ci.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return &ci, nil
}

// desiredEgressSecret is kube-apiserver's egress client Secret: tls.crt,
// tls.key and ca.crt (the CA of the servers' certificates).
func desiredEgressSecret(te *edgev1.TunnelEndpoint, cfg config, data map[string][]byte) *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(EgressSecretName(te.Name), cfg.Namespace).
		WithLabels(childLabels(te)).
		WithOwnerReferences(ownerRef(te)).
		WithType(corev1.SecretTypeTLS).
		WithData(maps.Clone(data))
}

// earliest is the certificate due for renewal first.
func earliest(cis ...*certInfo) *certInfo {
	var first *certInfo
	for _, ci := range cis {
		if ci != nil && (first == nil || ci.RenewAt.Before(first.RenewAt)) {
			first = ci
		}
	}
	return first
}
