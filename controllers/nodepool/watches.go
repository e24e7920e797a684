package nodepool

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// indexPool indexes nodes by the pool they are labelled into and the pool
// whose keys they carry, which differ while a node moves between pools.
const indexPool = "edgeunit.nodepool"

func poolsOfNode(obj client.Object) []string {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return nil
	}
	var pools []string
	if p := node.Labels[edgev1.LabelNodePool]; p != "" {
		pools = append(pools, p)
	}
	if rec, err := readRecord(node); err == nil && rec.Pool != "" && !slices.Contains(pools, rec.Pool) {
		pools = append(pools, rec.Pool)
	}
	return pools
}

func poolsOfNodeRequests(_ context.Context, obj client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	for _, p := range poolsOfNode(obj) {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: p}})
	}
	return reqs
}

// nodesOfPool maps a pool to the nodes labelled into it or carrying its keys.
func (r *NodeReconciler) nodesOfPool(ctx context.Context, obj client.Object) []reconcile.Request {
	var list corev1.NodeList
	if err := r.Client.List(ctx, &list, client.MatchingFields{indexPool: obj.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing nodes of NodePool", "nodePool", obj.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, n := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: n.Name}})
	}
	return reqs
}

// nodesOfUnit maps a unit to the nodes of the pools it lists. An update
// calls it with the old and the new unit, so pools that left are covered.
func (r *NodeReconciler) nodesOfUnit(ctx context.Context, obj client.Object) []reconcile.Request {
	u, ok := obj.(*edgev1.EdgeUnit)
	if !ok {
		return nil
	}
	var reqs []reconcile.Request
	for _, p := range u.Spec.NodePools {
		reqs = append(reqs, r.nodesOfPool(ctx, &edgev1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: p}})...)
	}
	return reqs
}

func poolsOfUnit(_ context.Context, obj client.Object) []reconcile.Request {
	u, ok := obj.(*edgev1.EdgeUnit)
	if !ok {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(u.Spec.NodePools))
	for _, p := range u.Spec.NodePools {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: p}})
	}
	return reqs
}

// poolSpecChanged passes creations, deletions, spec changes and the start
// of a deletion; status-only updates are the pool controller's own writes.
var poolSpecChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() ||
			e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero() ||
			!slices.Equal(e.ObjectOld.GetFinalizers(), e.ObjectNew.GetFinalizers())
	},
}

// nodeKeysChanged passes node updates that touch what the node controller
// writes or reads: labels, annotations, taints.
var nodeKeysChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Node)
		n, ok2 := e.ObjectNew.(*corev1.Node)
		if !ok1 || !ok2 {
			return true
		}
		return keysChanged(o, n)
	},
}

// nodeStatusChanged passes node updates that change a pool's status:
// membership, keys and readiness.
var nodeStatusChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Node)
		n, ok2 := e.ObjectNew.(*corev1.Node)
		if !ok1 || !ok2 {
			return true
		}
		return keysChanged(o, n) || nodeReady(o) != nodeReady(n)
	},
}

func keysChanged(o, n *corev1.Node) bool {
	return !equality.Semantic.DeepEqual(o.Labels, n.Labels) ||
		!equality.Semantic.DeepEqual(o.Annotations, n.Annotations) ||
		!equality.Semantic.DeepEqual(o.Spec.Taints, n.Spec.Taints)
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
