package tunnelendpoint

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/certificates"
	"github.com/edgeunit/edgeunit/controllers/internal/applied"
	"github.com/edgeunit/edgeunit/controllers/internal/conditions"
)

// reconcileServices applies the headless Service and the Service agents
// dial, and records the latter as the API server returned it (cluster IPs,
// node ports, load balancer ingress).
func (r *Reconciler) reconcileServices(ctx context.Context, te *edgev1.TunnelEndpoint, obs *observed) error {
	if err := r.apply(ctx, desiredHeadlessService(te, r.cfg), &corev1.Service{}); err != nil {
		obs.serviceErr = err
		return err
	}
	svc := &corev1.Service{}
	if err := r.apply(ctx, desiredService(te, r.cfg), svc); err != nil {
		obs.serviceErr = err
		return err
	}
	obs.service = svc
	return nil
}

// reconcileCertificate keeps the serving Secret's certificate issued by the
// operator CA for the current names, and kube-apiserver's egress client
// certificate in its own Secret, and re-issues each when two thirds of its
// lifetime have passed.
func (r *Reconciler) reconcileCertificate(ctx context.Context, te *edgev1.TunnelEndpoint, obs *observed) error {
	err := r.ensureCertificate(ctx, te, obs)
	obs.certErr = err
	return err
}

func (r *Reconciler) ensureCertificate(ctx context.Context, te *edgev1.TunnelEndpoint, obs *observed) error {
	now := r.Clock.Now()
	ca, err := certificates.EnsureCA(ctx, r.CAClient, r.cfg.Namespace, now)
	if err != nil {
		return err
	}
	obs.caHash = caHash(ca.CertPEM())

	key := types.NamespacedName{Namespace: r.cfg.Namespace, Name: SecretName(te.Name)}
	sec := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, key, sec); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading serving Secret %s: %w", key, err)
	}
	want := desiredSANs(te, r.cfg, obs.service)
	// Only the keys this controller writes: applying another writer's key
	// would take it over.
	data := map[string][]byte{}
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, corev1.ServiceAccountRootCAKey} {
		if v, ok := sec.Data[k]; ok {
			data[k] = v
		}
	}
	why := reissueReason(data, ca, want, lifetimeOf(te), now)
	if why != "" {
		kp, err := ca.Issue(issueRequest(te, r.cfg, want), now)
		if err != nil {
			return fmt.Errorf("issuing serving certificate for TunnelEndpoint %s: %w", te.Name, err)
		}
		data = map[string][]byte{
			corev1.TLSCertKey:              kp.CertPEM,
			corev1.TLSPrivateKeyKey:        kp.KeyPEM,
			corev1.ServiceAccountRootCAKey: ca.CertPEM(),
		}
	}
	if err := r.apply(ctx, desiredSecret(te, r.cfg, data), &corev1.Secret{}); err != nil {
		return err
	}
	ci, err := certInfoOf(data[corev1.TLSCertKey])
	if err != nil {
		return err
	}
	if why != "" {
		ci.IssuedNow = why
		ctrl.LoggerFrom(ctx).V(2).Info("Issued serving certificate", "secret", klog.KRef(key.Namespace, key.Name),
			"reason", why, "notAfter", ci.NotAfter, "renewAt", ci.RenewAt)
		r.event(te, corev1.EventTypeNormal, edgev1.ReasonIssued, "IssueCertificate",
			"Issued the serving certificate because %s; renewal after %s", why, ci.RenewAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	obs.cert = &ci
	if obs.egressCert, err = r.ensureEgressCertificate(ctx, te, ca, now); err != nil {
		return err
	}
	return nil
}

// reconcileDeployment applies the tunnel-server Deployment and records it
// as returned, with its status.
func (r *Reconciler) reconcileDeployment(ctx context.Context, te *edgev1.TunnelEndpoint, obs *observed) error {
	d := &appsv1.Deployment{}
	if err := r.apply(ctx, desiredDeployment(te, r.cfg, obs.caHash, obs.direct), d); err != nil {
		obs.deploymentErr = err
		return err
	}
	obs.deployment = d
	return nil
}

// apply server-side applies a child under FieldOwner and decodes the
// object the API server returned into out.
func (r *Reconciler) apply(ctx context.Context, ac runtime.ApplyConfiguration, out client.Object) error {
	return applied.Apply(ctx, r.Client, ac, out, FieldOwner)
}

// patchStatus applies this controller's status fields, and only those, on
// the status subresource when they changed. The servers' connectedAgents
// and agents are left to them: they are not in the applied object, so
// server-side apply neither sets nor removes them.
func (r *Reconciler) patchStatus(ctx context.Context, te *edgev1.TunnelEndpoint, obs observed, succeeded bool) error {
	prev := ownStatusOf(te.Status)
	next := computeStatus(te, obs, succeeded)
	if next.equal(prev) {
		return nil
	}
	raw, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("encoding status: %w", err)
	}
	status := map[string]any{}
	if err := json.Unmarshal(raw, &status); err != nil {
		return fmt.Errorf("encoding status: %w", err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": edgev1.GroupVersion.String(),
		"kind":       "TunnelEndpoint",
		"metadata":   map[string]any{"name": te.Name},
		"status":     status,
	}}
	if err := r.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("applying status of TunnelEndpoint %s: %w", te.Name, err))
	}
	if was, now := conditions.IsReady(prev.Conditions), conditions.IsReady(next.Conditions); was != now {
		ctrl.LoggerFrom(ctx).V(2).Info("TunnelEndpoint readiness changed", "tunnelEndpoint", klog.KObj(te), "ready", now)
		ready := conditions.Find(next.Conditions, edgev1.ConditionReady)
		typ := corev1.EventTypeWarning
		if now {
			typ = corev1.EventTypeNormal
		}
		r.event(te, typ, ready.Reason, "Reconcile", "%s", ready.Message)
	}
	return nil
}

func (r *Reconciler) addFinalizer(ctx context.Context, te *edgev1.TunnelEndpoint) error {
	if controllerutil.ContainsFinalizer(te, Finalizer) {
		return nil
	}
	before := te.DeepCopy()
	controllerutil.AddFinalizer(te, Finalizer)
	if err := r.Client.Patch(ctx, te, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}), client.FieldOwner(FieldOwner)); err != nil {
		return fmt.Errorf("adding finalizer to TunnelEndpoint %s: %w", te.Name, err)
	}
	return nil
}

func (r *Reconciler) event(te *edgev1.TunnelEndpoint, typ, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(te, nil, typ, reason, action, note, args...)
	}
}
