package certificates

import (
	"context"
	"errors"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/edgeunit/edgeunit/internal/certs"
)

// Approving needs `approve` and signing needs `sign` on the signers
// resource, limited to edgeunit's signer names (the CertificateApproval and
// CertificateSigning admission plugins check them); the conditions and the
// certificate are written through the approval and status subresources only.
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests,verbs=get;list;watch
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests/approval,verbs=update
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests/status,verbs=update
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=signers,resourceNames=edge.edgeunit.io/tunnel-agent;edge.edgeunit.io/edge-hub,verbs=approve;sign
// The hub's in-cluster serving certificates (certs.HubInClusterIdentity) need
// `approve` on the kubelet-serving signer and nothing more:
// kube-controller-manager signs them. The approver reads the Node first.
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=signers,resourceNames=kubernetes.io/kubelet-serving,verbs=approve
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get

// Defaults for Options.
const (
	// DefaultLifetime of a node identity whose CSR sets no expirationSeconds.
	// Nodes rotate at two thirds of it, so a node may be cut off from the
	// cloud for about 8 hours without its identity expiring.
	DefaultLifetime = 24 * time.Hour
	// DefaultMaxLifetime caps spec.expirationSeconds.
	DefaultMaxLifetime = 7 * 24 * time.Hour
)

// Options configure the certificate controllers.
type Options struct {
	// Namespace holding the CA Secret: the manager's own. Required.
	Namespace string
	// DefaultLifetime of certificates whose CSR asks for none
	// (DefaultLifetime when zero).
	DefaultLifetime time.Duration
	// MaxLifetime caps the lifetime a CSR asks for (DefaultMaxLifetime when
	// zero).
	MaxLifetime time.Duration
	// Controller options of both controllers.
	Controller controller.Options
	// Clock dates certificates (the real clock when nil).
	Clock clock.PassiveClock
}

// SetupWithManager registers the CSR approver for edgeunit's node identities
// (certs.Identities) and the CSR signer for those edgeunit signs. The signer
// reads the CA Secret with an uncached client and creates it on first use
// (EnsureCA), so the manager needs no Secret cache.
func SetupWithManager(_ context.Context, mgr ctrl.Manager, o Options) error {
	if o.Namespace == "" {
		return errors.New("certificates: the CA namespace is required")
	}
	if o.DefaultLifetime == 0 {
		o.DefaultLifetime = DefaultLifetime
	}
	if o.MaxLifetime == 0 {
		o.MaxLifetime = DefaultMaxLifetime
	}
	if o.DefaultLifetime > o.MaxLifetime {
		o.DefaultLifetime = o.MaxLifetime
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("creating an uncached client for the CA: %w", err)
	}

	a := &Approver{Client: mgr.GetClient(), Nodes: mgr.GetAPIReader()}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("csr-approver").
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(predicate.NewPredicateFuncs(pendingOurs))).
		WithOptions(o.Controller).
		Complete(a); err != nil {
		return fmt.Errorf("creating the csr-approver controller: %w", err)
	}

	s := &Signer{
		Client:          mgr.GetClient(),
		CA:              func(ctx context.Context) (*certs.CA, error) { return EnsureCA(ctx, direct, o.Namespace, o.Clock.Now()) },
		Clock:           o.Clock,
		DefaultLifetime: o.DefaultLifetime,
		MaxLifetime:     o.MaxLifetime,
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("csr-signer").
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(predicate.NewPredicateFuncs(unsignedOurs))).
		WithOptions(o.Controller).
		Complete(s); err != nil {
		return fmt.Errorf("creating the csr-signer controller: %w", err)
	}
	return nil
}

// ours says whether the CSR asks for one of edgeunit's identities
// (identityOf); any other, the kubelet's own serving certificate under the
// same signer as the hub's included, is left to other approvers.
func ours(csr *certificatesv1.CertificateSigningRequest) bool {
	_, ok := identityOf(csr)
	return ok
}

func hasCondition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == t {
			return true
		}
	}
	return false
}

// pending: ours, neither approved nor denied.
func pendingOurs(obj client.Object) bool {
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	return ok && ours(csr) && !hasCondition(csr, certificatesv1.CertificateApproved) && !hasCondition(csr, certificatesv1.CertificateDenied)
}

// unsigned: ours and signed by edgeunit (not an ExternalSigner identity),
// approved, not denied or failed, no certificate yet.
func unsignedOurs(obj client.Object) bool {
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	if !ok {
		return false
	}
	id, ok := identityOf(csr)
	return ok && !id.ExternalSigner && hasCondition(csr, certificatesv1.CertificateApproved) &&
		!hasCondition(csr, certificatesv1.CertificateDenied) && !hasCondition(csr, certificatesv1.CertificateFailed) &&
		len(csr.Status.Certificate) == 0
}
