package edgeunit

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// child names one object the controller may have made for a unit.
type child struct {
	name string
	// newObj returns an empty object of the child's kind to read into.
	newObj func() client.Object
}

func daemonSet() client.Object { return &appsv1.DaemonSet{} }
func configMap() client.Object { return configMapMeta() }

// The DaemonSets go first: their pods mount the ConfigMaps.
func hubChildren(unit string) []child {
	return []child{{hubName(unit), daemonSet}, {hubName(unit), configMap}}
}

func agentChildren(unit string) []child {
	return []child{{agentName(unit), daemonSet}, {agentName(unit), configMap}}
}

// reconcileDelete deletes the unit's children and then releases it. It
// does not wait for the garbage collector, which envtest and some
// clusters do not run. The installer pods then go with their DaemonSet:
// each, told to stop, finds the unit gone, points its node's kubelet back
// at the apiserver and removes the hub's static pod (package conversion);
// the hub's cache stays on the node's disk.
func (r *Reconciler) reconcileDelete(ctx context.Context, unit *edgev1.EdgeUnit) error {
	if !controllerutil.ContainsFinalizer(unit, Finalizer) {
		return nil
	}
	if err := r.deleteChildren(ctx, unit, append(hubChildren(unit.Name), agentChildren(unit.Name)...)); err != nil {
		return err
	}
	before := unit.DeepCopy()
	controllerutil.RemoveFinalizer(unit, Finalizer)
	if err := r.Client.Patch(ctx, unit, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}), client.FieldOwner(FieldOwner)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("removing finalizer from EdgeUnit %s: %w", unit.Name, err))
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Released EdgeUnit", "edgeUnit", klog.KObj(unit))
	return nil
}

// deleteChildren deletes the children the unit controls; an object of the
// same name that someone else controls is left alone.
func (r *Reconciler) deleteChildren(ctx context.Context, unit *edgev1.EdgeUnit, children []child) error {
	for _, c := range children {
		obj := c.newObj()
		key := types.NamespacedName{Namespace: r.Options.Namespace, Name: c.name}
		if err := r.Client.Get(ctx, key, obj); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return fmt.Errorf("getting %s %s: %w", kindOf(obj), key, err)
		}
		if !metav1.IsControlledBy(obj, unit) || !obj.GetDeletionTimestamp().IsZero() {
			continue
		}
		uid := obj.GetUID()
		err := r.Client.Delete(ctx, obj,
			client.Preconditions{UID: &uid},
			client.PropagationPolicy(metav1.DeletePropagationBackground))
		if client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %s %s: %w", kindOf(obj), key, err)
		}
		ctrl.LoggerFrom(ctx).V(2).Info("Deleted child", "kind", kindOf(obj), "object", klog.KRef(key.Namespace, key.Name), "edgeUnit", klog.KObj(unit))
	}
	return nil
}

func kindOf(obj client.Object) string {
	if _, ok := obj.(*appsv1.DaemonSet); ok {
		return "DaemonSet"
	}
	return obj.GetObjectKind().GroupVersionKind().Kind
}
