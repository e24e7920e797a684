package certificates

import (
	"context"
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Approver approves or denies pending CSRs for edgeunit's identities: it
// approves a request only when the node it names asked for it (review), and
// denies everything else at once, so that no request stays pending. A
// kubelet-serving request that is not the hub's shape is not edgeunit's: it
// is never decided here.
type Approver struct {
	Client client.Client
	// Nodes reads Nodes uncached: a denial is final, and must not rest on a
	// cache that has yet to see a node join its unit.
	Nodes client.Reader
}

// Reconcile decides one CSR and records the decision through the approval
// subresource.
func (a *Approver) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	csr := &certificatesv1.CertificateSigningRequest{}
	if err := a.Client.Get(ctx, req.NamespacedName, csr); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !pendingOurs(csr) {
		return reconcile.Result{}, nil
	}
	v, err := review(ctx, csr, a.Nodes)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("reviewing CSR %s: %w", csr.Name, err)
	}
	cond := certificatesv1.CertificateSigningRequestCondition{
		Type:           certificatesv1.CertificateDenied,
		Status:         corev1.ConditionTrue,
		Reason:         v.Reason,
		Message:        v.Message,
		LastUpdateTime: metav1.Now(),
	}
	if v.Approve {
		cond.Type = certificatesv1.CertificateApproved
	}
	csr.Status.Conditions = append(csr.Status.Conditions, cond)
	// An Update carries the resourceVersion read: if someone decided in the
	// meantime the write conflicts and the retry sees the decision.
	if err := a.Client.SubResource("approval").Update(ctx, csr); err != nil {
		return reconcile.Result{}, fmt.Errorf("recording %s on CSR %s: %w", cond.Type, csr.Name, err)
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Decided certificate signing request", "csr", klog.KObj(csr),
		"decision", cond.Type, "reason", v.Reason, "message", v.Message, "requester", csr.Spec.Username)
	return reconcile.Result{}, nil
}
