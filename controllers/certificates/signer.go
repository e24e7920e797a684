package certificates

import (
	"context"
	"encoding/pem"
	"fmt"
	"slices"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/edgeunit/edgeunit/internal/certs"
)

// Signer issues approved CSRs for edgeunit's signers from the operator CA.
type Signer struct {
	Client client.Client
	// CA returns the operator CA (EnsureCA).
	CA    func(context.Context) (*certs.CA, error)
	Clock clock.PassiveClock
	// DefaultLifetime applies when the CSR sets no expirationSeconds;
	// MaxLifetime caps what it sets.
	DefaultLifetime time.Duration
	MaxLifetime     time.Duration
}

// Reconcile signs one approved CSR and writes the certificate through the
// status subresource. A request that is not a node identity — approved by
// hand, say — is marked Failed instead: signing must never mint more than
// the approver would have allowed.
func (s *Signer) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	csr := &certificatesv1.CertificateSigningRequest{}
	if err := s.Client.Get(ctx, req.NamespacedName, csr); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !unsignedOurs(csr) {
		return reconcile.Result{}, nil
	}
	id, _ := certs.IdentityForSigner(csr.Spec.SignerName)
	x509req, _, p := inspect(id, csr.Spec)
	if p != nil {
		return reconcile.Result{}, s.fail(ctx, csr, p)
	}
	ca, err := s.CA(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	now := s.Clock.Now()
	if !now.Before(ca.Cert.NotAfter) {
		// Retried: a human replaces the CA, then the request can succeed.
		return reconcile.Result{}, fmt.Errorf("signing CSR %s: the operator CA expired at %s", csr.Name, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	creq := certs.Request{
		CommonName:   x509req.Subject.CommonName,
		Organization: []string{id.Organization},
		DNSNames:     x509req.DNSNames,
		IPs:          x509req.IPAddresses,
		Lifetime:     s.lifetime(csr.Spec.ExpirationSeconds),
		Server:       slices.Contains(csr.Spec.Usages, certificatesv1.UsageServerAuth),
		Client:       true,
	}
	der, err := ca.Sign(creq, x509req.PublicKey, now)
	if err != nil {
		return reconcile.Result{}, s.fail(ctx, csr, &problem{Reason: ReasonSigningFailed, Message: err.Error()})
	}
	csr.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// Update, not patch: status.certificate is set once, and a conflict
	// means another signer got there first.
	if err := s.Client.Status().Update(ctx, csr); err != nil {
		return reconcile.Result{}, fmt.Errorf("writing the certificate of CSR %s: %w", csr.Name, err)
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Signed certificate signing request", "csr", klog.KObj(csr), "commonName", creq.CommonName, "lifetime", creq.Lifetime)
	return reconcile.Result{}, nil
}

// lifetime is the CSR's expirationSeconds capped to MaxLifetime, or
// DefaultLifetime. The apiserver enforces the 10-minute minimum.
func (s *Signer) lifetime(expirationSeconds *int32) time.Duration {
	if expirationSeconds == nil {
		return s.DefaultLifetime
	}
	return min(time.Duration(*expirationSeconds)*time.Second, s.MaxLifetime)
}

// fail marks a CSR Failed: the request cannot be signed as it stands.
func (s *Signer) fail(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, p *problem) error {
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type:           certificatesv1.CertificateFailed,
		Status:         corev1.ConditionTrue,
		Reason:         p.Reason,
		Message:        p.Message,
		LastUpdateTime: metav1.Now(),
	})
	if err := s.Client.Status().Update(ctx, csr); err != nil {
		return fmt.Errorf("marking CSR %s failed (%s): %w", csr.Name, p.Message, err)
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Refused to sign certificate signing request", "csr", klog.KObj(csr), "reason", p.Reason, "message", p.Message)
	return nil
}
