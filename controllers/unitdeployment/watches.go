package unitdeployment

import (
	"context"
	"maps"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/index"
)

// instanceChanged passes instance updates that change its spec, metadata
// or the counts status reports.
var instanceChanged = predicate.Or[client.Object](
	predicate.GenerationChangedPredicate{},
	predicate.LabelChangedPredicate{},
	predicate.AnnotationChangedPredicate{},
	predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		old, ok1 := e.ObjectOld.(*appsv1.Deployment)
		cur, ok2 := e.ObjectNew.(*appsv1.Deployment)
		if !ok1 || !ok2 {
			return true
		}
		o, n := old.Status, cur.Status
		return o.ObservedGeneration != n.ObservedGeneration || o.Replicas != n.Replicas ||
			o.UpdatedReplicas != n.UpdatedReplicas || o.ReadyReplicas != n.ReadyReplicas ||
			o.AvailableReplicas != n.AvailableReplicas || !e.ObjectNew.GetDeletionTimestamp().IsZero()
	}},
)

// unitChanged passes what changes a unit's selection or its instance: its
// labels (selectors, overrides), its pools (taints) and its deletion.
var unitChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		old, ok1 := e.ObjectOld.(*edgev1.EdgeUnit)
		cur, ok2 := e.ObjectNew.(*edgev1.EdgeUnit)
		if !ok1 || !ok2 {
			return true
		}
		return !maps.Equal(old.Labels, cur.Labels) || !slices.Equal(old.Spec.NodePools, cur.Spec.NodePools) ||
			old.DeletionTimestamp.IsZero() != cur.DeletionTimestamp.IsZero()
	},
}

// poolTaintsChanged passes pool creations, deletions and taint changes.
var poolTaintsChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		old, ok1 := e.ObjectOld.(*edgev1.NodePool)
		cur, ok2 := e.ObjectNew.(*edgev1.NodePool)
		return !ok1 || !ok2 || !equality.Semantic.DeepEqual(old.Spec.Taints, cur.Spec.Taints)
	},
}

// nodeReachabilityChanged passes node creations and deletions, unit label
// changes and a node becoming reachable or unreachable; heartbeats and
// other status updates do not need a pass.
var nodeReachabilityChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		old, ok1 := e.ObjectOld.(*corev1.Node)
		cur, ok2 := e.ObjectNew.(*corev1.Node)
		if !ok1 || !ok2 {
			return true
		}
		return old.Labels[edgev1.LabelUnit] != cur.Labels[edgev1.LabelUnit] || Unreachable(old) != Unreachable(cur)
	},
}

// forUnit maps a unit to the UnitDeployments that select it or have an
// instance for it (which must then go).
func (r *Reconciler) forUnit(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.selecting(ctx, obj.GetName(), obj.GetLabels())
}

// forPool maps a pool to the UnitDeployments of the unit that lists it.
func (r *Reconciler) forPool(ctx context.Context, obj client.Object) []reconcile.Request {
	var units edgev1.EdgeUnitList
	if err := r.Client.List(ctx, &units, client.MatchingFields{index.UnitByPool: obj.GetName()}); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range units.Items {
		reqs = append(reqs, r.selecting(ctx, units.Items[i].Name, units.Items[i].Labels)...)
	}
	return reqs
}

// forNode maps a node to the UnitDeployments of its unit.
func (r *Reconciler) forNode(ctx context.Context, obj client.Object) []reconcile.Request {
	name := obj.GetLabels()[edgev1.LabelUnit]
	if name == "" {
		return nil
	}
	u := &edgev1.EdgeUnit{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, u); err != nil {
		return nil
	}
	return r.selecting(ctx, u.Name, u.Labels)
}

// selecting lists the UnitDeployments whose spec selects the unit or whose
// status lists an instance for it.
func (r *Reconciler) selecting(ctx context.Context, unit string, unitLabels map[string]string) []reconcile.Request {
	var uds edgev1.UnitDeploymentList
	if err := r.Client.List(ctx, &uds); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range uds.Items {
		ud := &uds.Items[i]
		has := slices.ContainsFunc(ud.Status.Instances, func(s edgev1.UnitInstanceStatus) bool { return s.Unit == unit })
		if has || Selects(ud.Spec.Units, unit, unitLabels) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(ud)})
		}
	}
	return reqs
}

// eventTypes are the conditions whose changes are recorded as events.
var eventTypes = []string{edgev1.ConditionProgressing, edgev1.ConditionAvailable, edgev1.ConditionReady}

// recordTransitions records an event for each watched condition whose
// status changed.
func (r *Reconciler) recordTransitions(ud *edgev1.UnitDeployment, st edgev1.UnitDeploymentStatus) {
	if r.Recorder == nil {
		return
	}
	for _, t := range eventTypes {
		n := meta.FindStatusCondition(st.Conditions, t)
		if n == nil {
			continue
		}
		if p := meta.FindStatusCondition(ud.Status.Conditions, t); p != nil && p.Status == n.Status {
			continue
		}
		kind := corev1.EventTypeNormal
		if n.Status == metav1.ConditionFalse && t != edgev1.ConditionProgressing {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(ud, nil, kind, n.Reason, t, "%s=%s: %s", t, n.Status, n.Message)
	}
}
