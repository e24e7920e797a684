package nodepool

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// reconcileDelete releases the finalizer once no node carries keys the pool
// put there. The node controller strips them: it sees the deletion as a
// pool that wants nothing.
func (r *PoolReconciler) reconcileDelete(ctx context.Context, pool *edgev1.NodePool) error {
	if !controllerutil.ContainsFinalizer(pool, edgev1.FinalizerNodePool) {
		return nil
	}
	var list corev1.NodeList
	if err := r.Client.List(ctx, &list, client.MatchingFields{indexPool: pool.Name}); err != nil {
		return fmt.Errorf("listing nodes of NodePool %s: %w", pool.Name, err)
	}
	for i := range list.Items {
		rec, err := readRecord(&list.Items[i])
		if err == nil && rec.Pool == pool.Name && !rec.empty() {
			// Not clean yet; the node's update will bring us back.
			ctrl.LoggerFrom(ctx).V(4).Info("Waiting for node cleanup", "node", klog.KObj(&list.Items[i]))
			return nil
		}
	}
	if _, err := r.setFinalizer(ctx, pool, false); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("removing finalizer from NodePool %s: %w", pool.Name, err))
	}
	r.written.Forget(pool.Name)
	ctrl.LoggerFrom(ctx).V(2).Info("Released NodePool", "nodePool", klog.KObj(pool))
	return nil
}
