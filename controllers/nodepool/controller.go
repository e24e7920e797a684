// Package nodepool runs the NodePool controllers: one keeps each node's
// labels, annotations and taints in line with its pool, the other keeps
// pool status and the cleanup finalizer.
package nodepool

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/index"
)

// FieldOwner is the field manager of every write the NodePool controllers make.
const FieldOwner = "edgeunit-nodepool"

// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=nodepools,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=nodepools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=nodepools/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// PoolReconciler keeps a NodePool's status and finalizer.
type PoolReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
}

// SetupWithManager registers the indexes and both NodePool controllers.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts controller.Options) error {
	if err := index.Register(ctx, mgr); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &corev1.Node{}, indexPool, poolsOfNode); err != nil {
		return fmt.Errorf("indexing nodes by pool: %w", err)
	}
	nodes := &NodeReconciler{Client: mgr.GetClient()}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("nodepool-node").
		For(&corev1.Node{}, builder.WithPredicates(nodeKeysChanged)).
		Watches(&edgev1.NodePool{}, handler.EnqueueRequestsFromMapFunc(nodes.nodesOfPool), builder.WithPredicates(poolSpecChanged)).
		Watches(&edgev1.EdgeUnit{}, handler.EnqueueRequestsFromMapFunc(nodes.nodesOfUnit), builder.WithPredicates(poolSpecChanged)).
		WithOptions(opts).
		Complete(nodes); err != nil {
		return fmt.Errorf("creating the nodepool-node controller: %w", err)
	}
	pools := &PoolReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("nodepool-controller")}
	return ctrl.NewControllerManagedBy(mgr).
		Named("nodepool").
		For(&edgev1.NodePool{}, builder.WithPredicates(poolSpecChanged)).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(poolsOfNodeRequests), builder.WithPredicates(nodeStatusChanged)).
		Watches(&edgev1.EdgeUnit{}, handler.EnqueueRequestsFromMapFunc(poolsOfUnit), builder.WithPredicates(poolSpecChanged)).
		WithOptions(opts).
		Complete(pools)
}

// Reconcile brings one NodePool's finalizer and status up to date.
func (r *PoolReconciler) Reconcile(ctx context.Context, req reconcile.Request) (_ reconcile.Result, reterr error) {
	log := ctrl.LoggerFrom(ctx)
	pool := &edgev1.NodePool{}
	if err := r.Client.Get(ctx, req.NamespacedName, pool); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}

	if !pool.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.reconcileDelete(ctx, pool)
	}
	if !controllerutil.ContainsFinalizer(pool, edgev1.FinalizerNodePool) {
		if err := r.addFinalizer(ctx, pool); err != nil {
			return reconcile.Result{}, err
		}
	}

	members, err := r.members(ctx, pool.Name)
	if err != nil {
		return reconcile.Result{}, err
	}
	unit, err := unitName(ctx, r.Client, pool)
	if err != nil {
		return reconcile.Result{}, err
	}
	next := computeStatus(pool, unit, members)
	if statusEqual(pool.Status, next) {
		return reconcile.Result{}, nil
	}
	before := pool.DeepCopy()
	wasReady := isReady(pool.Status.Conditions)
	pool.Status = next
	if err := r.Client.Status().Patch(ctx, pool, client.MergeFrom(before), client.FieldOwner(FieldOwner)); err != nil {
		return reconcile.Result{}, fmt.Errorf("patching status of NodePool %s: %w", pool.Name, err)
	}
	if nowReady := isReady(next.Conditions); nowReady != wasReady {
		log.V(2).Info("NodePool readiness changed", "nodePool", klog.KObj(pool), "ready", nowReady)
		r.event(pool, nowReady)
	}
	return reconcile.Result{}, nil
}

func (r *PoolReconciler) event(pool *edgev1.NodePool, ready bool) {
	if r.Recorder == nil {
		return
	}
	if ready {
		r.Recorder.Eventf(pool, nil, corev1.EventTypeNormal, edgev1.ReasonSynced, "Sync", "All %d nodes carry the pool's keys", pool.Status.NodeCount)
		return
	}
	c := findCondition(pool.Status.Conditions, edgev1.ConditionReady)
	r.Recorder.Eventf(pool, nil, corev1.EventTypeWarning, c.Reason, "Sync", "%s", c.Message)
}

func (r *PoolReconciler) addFinalizer(ctx context.Context, pool *edgev1.NodePool) error {
	before := pool.DeepCopy()
	controllerutil.AddFinalizer(pool, edgev1.FinalizerNodePool)
	if err := r.Client.Patch(ctx, pool, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}), client.FieldOwner(FieldOwner)); err != nil {
		return fmt.Errorf("adding finalizer to NodePool %s: %w", pool.Name, err)
	}
	return nil
}

// members lists the nodes labelled into the pool.
func (r *PoolReconciler) members(ctx context.Context, pool string) ([]corev1.Node, error) {
	var list corev1.NodeList
	if err := r.Client.List(ctx, &list, client.MatchingFields{indexPool: pool}); err != nil {
		return nil, fmt.Errorf("listing nodes of NodePool %s: %w", pool, err)
	}
	out := list.Items[:0]
	for _, n := range list.Items {
		if n.Labels[edgev1.LabelNodePool] == pool {
			out = append(out, n)
		}
	}
	return out, nil
}
