package nodepool

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/index"
)

// NodeReconciler keeps one node's labels, annotations and taints in line
// with its pool, with at most one patch per change.
type NodeReconciler struct {
	Client client.Client

	// patchedFrom remembers, per node, the resourceVersion the last patch
	// was computed from. While the cache still shows that version the patch
	// has not come back through the watch yet, and patching again would be
	// a duplicate write (or a conflict).
	patchedFrom sync.Map
}

// Reconcile plans and applies the node's keys.
func (r *NodeReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	node := &corev1.Node{}
	if err := r.Client.Get(ctx, req.NamespacedName, node); err != nil {
		if apierrors.IsNotFound(err) {
			r.patchedFrom.Delete(req.Name)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if rv, ok := r.patchedFrom.Load(node.Name); ok {
		if rv == node.ResourceVersion {
			return reconcile.Result{}, nil
		}
		r.patchedFrom.Delete(node.Name)
	}

	pool, err := r.poolOf(ctx, node)
	if err != nil {
		return reconcile.Result{}, err
	}
	prev, err := readRecord(node)
	if err != nil {
		// Someone broke the record: do not guess which keys were ours.
		log.Error(err, "Ignoring unreadable record of managed keys", "node", klog.KObj(node))
	}
	unit, err := unitName(ctx, r.Client, pool)
	if err != nil {
		return reconcile.Result{}, err
	}
	plan := planNode(node, desiredForPool(pool, unit), prev)
	if plan.empty() {
		return reconcile.Result{}, nil
	}
	patch, err := plan.mergePatch(node.ResourceVersion)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("encoding patch for node %s: %w", node.Name, err)
	}
	from := node.ResourceVersion
	if err := r.Client.Patch(ctx, node, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(FieldOwner)); err != nil {
		if apierrors.IsConflict(err) {
			// The node changed under us; its update event requeues it.
			log.V(4).Info("Node changed while patching, will retry", "node", klog.KObj(node))
			return reconcile.Result{Requeue: true}, nil
		}
		return reconcile.Result{}, fmt.Errorf("patching node %s: %w", node.Name, client.IgnoreNotFound(err))
	}
	r.patchedFrom.Store(node.Name, from)
	log.V(2).Info("Synced node keys", "node", klog.KObj(node), "nodePool", node.Labels[edgev1.LabelNodePool])
	return reconcile.Result{}, nil
}

func (r *NodeReconciler) poolOf(ctx context.Context, node *corev1.Node) (*edgev1.NodePool, error) {
	name := node.Labels[edgev1.LabelNodePool]
	if name == "" {
		return nil, nil
	}
	pool := &edgev1.NodePool{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, pool); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("getting NodePool %s of node %s: %w", name, node.Name, err)
	}
	return pool, nil
}

// unitName is the name of the EdgeUnit owning pool, or "".
func unitName(ctx context.Context, c client.Reader, pool *edgev1.NodePool) (string, error) {
	if pool == nil {
		return "", nil
	}
	u, err := index.UnitOfPool(ctx, c, pool.Name)
	if err != nil || u == nil {
		return "", err
	}
	return u.Name, nil
}
