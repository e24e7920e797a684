package edgeunit

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/index"
)

// indexEndpoint indexes EdgeUnits by the TunnelEndpoint they reference.
const indexEndpoint = "edgeunit.unit.tunnelEndpoint"

func endpointOfUnit(obj client.Object) []string {
	u, ok := obj.(*edgev1.EdgeUnit)
	if !ok || u.Spec.Tunnel == nil {
		return nil
	}
	return []string{u.Spec.Tunnel.Endpoint}
}

func requests(names []string) []reconcile.Request {
	slices.Sort(names)
	names = slices.Compact(names)
	reqs := make([]reconcile.Request, 0, len(names))
	for _, n := range names {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: n}})
	}
	return reqs
}

// unitsListing returns the units that list any of pools.
func (r *Reconciler) unitsListing(ctx context.Context, pools ...string) []string {
	var names []string
	for _, p := range pools {
		var units edgev1.EdgeUnitList
		if err := r.Client.List(ctx, &units, client.MatchingFields{index.UnitByPool: p}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Listing EdgeUnits of NodePool", "nodePool", p)
			continue
		}
		for i := range units.Items {
			names = append(names, units.Items[i].Name)
		}
	}
	return names
}

// unitsSharingPools maps a unit to the other units listing one of its
// pools: when it comes, changes its pools or goes, which unit owns a
// contested pool may change. An update calls it with the old and the new
// unit, so pools that left are covered.
func (r *Reconciler) unitsSharingPools(ctx context.Context, obj client.Object) []reconcile.Request {
	u, ok := obj.(*edgev1.EdgeUnit)
	if !ok {
		return nil
	}
	var names []string
	for _, n := range r.unitsListing(ctx, u.Spec.NodePools...) {
		if n != u.Name {
			names = append(names, n)
		}
	}
	return requests(names)
}

// unitsOfEndpoint maps a TunnelEndpoint to the units referencing it.
func (r *Reconciler) unitsOfEndpoint(ctx context.Context, obj client.Object) []reconcile.Request {
	var units edgev1.EdgeUnitList
	if err := r.Client.List(ctx, &units, client.MatchingFields{indexEndpoint: obj.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing EdgeUnits of TunnelEndpoint", "tunnelEndpoint", obj.GetName())
		return nil
	}
	names := make([]string, 0, len(units.Items))
	for i := range units.Items {
		names = append(names, units.Items[i].Name)
	}
	return requests(names)
}

// unitsOfNode maps a node to the units listing its pool, and to the unit
// its unit label names (the old and the new node both come through on an
// update, so a node moving between pools reaches both units).
func (r *Reconciler) unitsOfNode(ctx context.Context, obj client.Object) []reconcile.Request {
	var names []string
	if p := obj.GetLabels()[edgev1.LabelNodePool]; p != "" {
		names = r.unitsListing(ctx, p)
	}
	if u := obj.GetLabels()[edgev1.LabelUnit]; u != "" {
		names = append(names, u)
	}
	return requests(names)
}

// unitSpecChanged passes creations, deletions, spec changes and the start
// of a deletion; status-only updates are the controller's own writes.
var unitSpecChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() ||
			e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero()
	},
}

// endpointChanged passes TunnelEndpoint updates that change what units
// read: the agent port, the addresses and which agents are connected (not
// their heartbeats).
var endpointChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*edgev1.TunnelEndpoint)
		n, ok2 := e.ObjectNew.(*edgev1.TunnelEndpoint)
		if !ok1 || !ok2 {
			return true
		}
		return o.Spec.Ports.Agent != n.Spec.Ports.Agent ||
			!slices.Equal(o.Status.Addresses, n.Status.Addresses) ||
			!slices.Equal(agentNodes(o), agentNodes(n)) ||
			o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero()
	},
}

func agentNodes(te *edgev1.TunnelEndpoint) []string {
	out := make([]string, 0, len(te.Status.Agents))
	for _, a := range te.Status.Agents {
		out = append(out, a.Node)
	}
	slices.Sort(out)
	return out
}

// nodePoolChanged passes node creations and deletions and updates that
// move a node between pools or units or change its node conversion phase;
// heartbeats do not pass.
var nodePoolChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Node)
		n, ok2 := e.ObjectNew.(*corev1.Node)
		if !ok1 || !ok2 {
			return true
		}
		return o.Labels[edgev1.LabelNodePool] != n.Labels[edgev1.LabelNodePool] ||
			o.Labels[edgev1.LabelUnit] != n.Labels[edgev1.LabelUnit] ||
			o.Annotations[edgev1.AnnotationConversion] != n.Annotations[edgev1.AnnotationConversion]
	},
}
