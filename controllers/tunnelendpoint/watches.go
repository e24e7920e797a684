package tunnelendpoint

import (
	"context"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/certificates"
)

// CacheByObject restricts the manager's cache of the kinds this controller
// owns to the manager's namespace, matching its namespaced RBAC. Merge it
// into cache.Options.ByObject.
func CacheByObject(namespace string) map[client.Object]cache.ByObject {
	ns := map[string]cache.Config{namespace: {}}
	return map[client.Object]cache.ByObject{
		&appsv1.Deployment{}: {Namespaces: ns},
		&corev1.Service{}:    {Namespaces: ns},
		&corev1.Secret{}:     {Namespaces: ns},
	}
}

// endpointChanged passes creations, deletions, spec changes and the start
// of a deletion. Status updates, most of them the servers reporting their
// agents, do not need a pass.
var endpointChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() ||
			e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero() ||
			!slices.Equal(e.ObjectOld.GetFinalizers(), e.ObjectNew.GetFinalizers())
	},
}

// deploymentChanged passes Deployment updates that change its spec,
// metadata this controller sets, or the replica counts status reports.
var deploymentChanged = predicate.Or[client.Object](
	predicate.GenerationChangedPredicate{},
	predicate.LabelChangedPredicate{},
	predicate.AnnotationChangedPredicate{},
	predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*appsv1.Deployment)
		n, ok2 := e.ObjectNew.(*appsv1.Deployment)
		if !ok1 || !ok2 {
			return true
		}
		return o.Status.ObservedGeneration != n.Status.ObservedGeneration ||
			o.Status.AvailableReplicas != n.Status.AvailableReplicas ||
			o.Status.UpdatedReplicas != n.Status.UpdatedReplicas ||
			!slices.Equal(o.OwnerReferences, n.OwnerReferences)
	}},
)

// isCASecret passes the operator CA Secret: a new CA means new serving
// certificates everywhere.
func isCASecret(namespace string) predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == namespace && o.GetName() == certificates.CASecret
	})
}

func (r *Reconciler) allEndpoints(ctx context.Context, _ client.Object) []reconcile.Request {
	var list edgev1.TunnelEndpointList
	if err := r.Client.List(ctx, &list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing TunnelEndpoints for a CA change")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, te := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: te.Name}})
	}
	return reqs
}
