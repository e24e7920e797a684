package tunnelendpoint

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// children are a TunnelEndpoint's objects, by name.
func children(te *edgev1.TunnelEndpoint, namespace string) []client.Object {
	meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: namespace, Name: name} }
	return []client.Object{
		&appsv1.Deployment{ObjectMeta: meta(DeploymentName(te.Name))},
		&corev1.Service{ObjectMeta: meta(ServiceName(te.Name))},
		&corev1.Service{ObjectMeta: meta(HeadlessServiceName(te.Name))},
		&corev1.Secret{ObjectMeta: meta(SecretName(te.Name))},
		&corev1.Secret{ObjectMeta: meta(EgressSecretName(te.Name))},
	}
}

// reconcileDelete deletes the children the endpoint controls, then
// releases the finalizer. Owner references would have the garbage
// collector do the same; the finalizer makes it happen, and in order,
// where none runs.
func (r *Reconciler) reconcileDelete(ctx context.Context, te *edgev1.TunnelEndpoint) error {
	if !controllerutil.ContainsFinalizer(te, Finalizer) {
		return nil
	}
	for _, obj := range children(te, r.cfg.Namespace) {
		if err := r.deleteControlled(ctx, te, obj); err != nil {
			return err
		}
	}
	before := te.DeepCopy()
	controllerutil.RemoveFinalizer(te, Finalizer)
	if err := r.Client.Patch(ctx, te, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}), client.FieldOwner(FieldOwner)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("removing finalizer from TunnelEndpoint %s: %w", te.Name, err))
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Released TunnelEndpoint", "tunnelEndpoint", klog.KObj(te))
	return nil
}

// deleteControlled deletes obj if the endpoint controls it: an object of
// the same name that someone else made is left alone. It reads live, so a
// child created just before is not missed.
func (r *Reconciler) deleteControlled(ctx context.Context, te *edgev1.TunnelEndpoint, obj client.Object) error {
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("reading %T %s: %w", obj, klog.KObj(obj), err)
	}
	if !metav1.IsControlledBy(obj, te) {
		ctrl.LoggerFrom(ctx).V(4).Info("Leaving an object the endpoint does not control", "object", klog.KObj(obj))
		return nil
	}
	uid := obj.GetUID()
	if err := r.Client.Delete(ctx, obj, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting %T %s: %w", obj, klog.KObj(obj), err)
	}
	ctrl.LoggerFrom(ctx).V(4).Info("Deleted child", "object", klog.KObj(obj))
	return nil
}
