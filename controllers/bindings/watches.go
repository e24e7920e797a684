package bindings

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/autonomy"
)

// NodeByUnit indexes Nodes by their unit label.
const NodeByUnit = "edgeunit.bindings.node.unit"

// registerIndexes adds the node-by-unit index and, unless the autonomy
// controller registered it already, the pod-by-node index under the
// autonomy controller's name, so the cache keeps one copy of it.
func registerIndexes(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &corev1.Node{}, NodeByUnit, func(o client.Object) []string {
		if u := o.GetLabels()[edgev1.LabelUnit]; u != "" {
			return []string{u}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing nodes by unit: %w", err)
	}
	err := idx.IndexField(ctx, &corev1.Pod{}, autonomy.PodByNode, func(o client.Object) []string {
		if p, ok := o.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}
		}
		return nil
	})
	if err != nil && !isIndexerConflict(err) {
		return fmt.Errorf("indexing pods by node: %w", err)
	}
	return nil
}

func request(unit string) []reconcile.Request {
	if unit == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: unit}}}
}

// unitOfNode maps a node to the unit its label names; an update calls it
// with the old and the new node, so a node that leaves reaches both units.
func unitOfNode(_ context.Context, obj client.Object) []reconcile.Request {
	return request(obj.GetLabels()[edgev1.LabelUnit])
}

// unitOfPod maps a pod to the unit of its node, read from the cache.
func (r *Reconciler) unitOfPod(ctx context.Context, obj client.Object) []reconcile.Request {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.NodeName == "" {
		return nil
	}
	n := &corev1.Node{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: p.Spec.NodeName}, n, client.UnsafeDisableDeepCopy); err != nil {
		if client.IgnoreNotFound(err) != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Getting the node of a pod", "node", p.Spec.NodeName)
		}
		return nil
	}
	return request(n.Labels[edgev1.LabelUnit])
}

// otherMACUnits maps a unit whose recorded MACs changed to the other units
// that record MACs: MACs are unique across the cluster, so a collision
// between two units' records is resolved by both.
func (r *Reconciler) otherMACUnits(ctx context.Context, obj client.Object) []reconcile.Request {
	var units edgev1.EdgeUnitList
	if err := r.Client.List(ctx, &units, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing EdgeUnits")
		return nil
	}
	var reqs []reconcile.Request
	for i := range units.Items {
		if u := &units.Items[i]; u.Name != obj.GetName() && u.Spec.NetworkAutonomy.StableVTEPMAC {
			reqs = append(reqs, request(u.Name)...)
		}
	}
	return reqs
}

// unitChanged passes creations, spec changes and updates that change what
// this controller owns (its own writes come back once, as no-ops).
var unitChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*edgev1.EdgeUnit)
		n, ok2 := e.ObjectNew.(*edgev1.EdgeUnit)
		if !ok1 || !ok2 {
			return true
		}
		oc := meta.FindStatusCondition(o.Status.Conditions, edgev1.ConditionNetworkBound)
		nc := meta.FindStatusCondition(n.Status.Conditions, edgev1.ConditionNetworkBound)
		return o.Generation != n.Generation ||
			!equality.Semantic.DeepEqual(oc, nc) ||
			!bindingsEqual(o.Status.Bindings, n.Status.Bindings)
	},
	DeleteFunc: func(event.DeleteEvent) bool { return true },
}

// unitMACsChanged passes units whose recorded VTEP MACs change.
var unitMACsChanged = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool { return len(macsOf(e.Object)) > 0 },
	UpdateFunc: func(e event.UpdateEvent) bool {
		return !maps.Equal(macsOf(e.ObjectOld), macsOf(e.ObjectNew))
	},
	DeleteFunc:  func(e event.DeleteEvent) bool { return len(macsOf(e.Object)) > 0 },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

func macsOf(obj client.Object) map[string]string {
	u, ok := obj.(*edgev1.EdgeUnit)
	if !ok {
		return nil
	}
	return recordedMACs(u.Status.Bindings)
}

// nodeBindingChanged passes nodes that join or leave a unit and nodes
// whose VTEP IP changes; heartbeats do not pass.
var nodeBindingChanged = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool { return e.Object.GetLabels()[edgev1.LabelUnit] != "" },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Node)
		n, ok2 := e.ObjectNew.(*corev1.Node)
		if !ok1 || !ok2 {
			return true
		}
		return o.Labels[edgev1.LabelUnit] != n.Labels[edgev1.LabelUnit] || VTEPIP(o) != VTEPIP(n)
	},
	DeleteFunc:  func(e event.DeleteEvent) bool { return e.Object.GetLabels()[edgev1.LabelUnit] != "" },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// podBindingChanged passes bound pods when they appear, go, change IP or
// finish; other status churn does not pass.
var podBindingChanged = predicate.Funcs{
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
			o.Status.PodIP != n.Status.PodIP || bindable(o) != bindable(n))
	},
	DeleteFunc: func(e event.DeleteEvent) bool {
		p, ok := e.Object.(*corev1.Pod)
		return ok && p.Spec.NodeName != ""
	},
	GenericFunc: func(event.GenericEvent) bool { return false },
}
