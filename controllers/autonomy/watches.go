package autonomy

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// PodByNode indexes pods by spec.nodeName.
const PodByNode = "edgeunit.autonomy.pod.node"

func podNode(obj client.Object) []string {
	if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
		return []string{p.Spec.NodeName}
	}
	return nil
}

// podsOfNode maps a node whose autonomy changed to the pods bound to it.
func (r *Reconciler) podsOfNode(ctx context.Context, obj client.Object) []reconcile.Request {
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.MatchingFields{PodByNode: obj.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing pods of node", "node", obj.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(pods.Items))
	for _, p := range pods.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
	}
	return reqs
}

// podPlacementChanged passes bound pods when they appear, when they are
// bound and when their tolerations change; status updates do not matter.
var podPlacementChanged = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool {
		p, ok := e.Object.(*corev1.Pod)
		return ok && p.Spec.NodeName != ""
	},
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Pod)
		n, ok2 := e.ObjectNew.(*corev1.Pod)
		if !ok1 || !ok2 {
			return false
		}
		return n.Spec.NodeName != "" && (o.Spec.NodeName != n.Spec.NodeName ||
			!equality.Semantic.DeepEqual(o.Spec.Tolerations, n.Spec.Tolerations))
	},
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// nodeAutonomyChanged passes autonomous nodes when they appear and nodes
// whose autonomy label or duration annotation changes.
var nodeAutonomyChanged = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool {
		return e.Object.GetLabels()[edgev1.LabelAutonomy] == "true"
	},
	UpdateFunc: func(e event.UpdateEvent) bool {
		keys := func(o client.Object) []string {
			return []string{o.GetLabels()[edgev1.LabelAutonomy], o.GetAnnotations()[edgev1.AnnotationAutonomyDuration]}
		}
		return !slices.Equal(keys(e.ObjectOld), keys(e.ObjectNew))
	},
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}
