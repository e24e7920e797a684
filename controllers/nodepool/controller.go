// Package nodepool runs the NodePool controllers: one keeps each node's
// labels, annotations and taints in line with its pool, the other keeps
// pool status and the cleanup finalizer.
package nodepool

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
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
	"github.com/edgeunit/edgeunit/controllers/internal/conditions"
	"github.com/edgeunit/edgeunit/controllers/internal/lastwrite"
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

	// written remembers, per pool, what the server holds after this
	// reconciler's last writes and the resourceVersions those writes
	// superseded. Node events requeue a pool before the cache has seen
	// its own status write (status-only updates do not requeue it); while
	// the cache still shows a superseded version, the remembered state
	// stands in, so the same status is never written twice.
	written lastwrite.Memory[edgev1.NodePoolStatus, *edgev1.NodePoolStatus]
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
		if apierrors.IsNotFound(err) {
			r.written.Forget(req.Name)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	written := r.written.Freshen(pool, &pool.Status)

	if !pool.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.reconcileDelete(ctx, pool)
	}
	if !controllerutil.ContainsFinalizer(pool, edgev1.FinalizerNodePool) {
		if err := r.addFinalizer(ctx, pool, written); err != nil {
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
	wasReady := conditions.IsReady(pool.Status.Conditions)
	// Server-side apply of the whole status with every field explicit: the
	// server then holds next whatever it held before. A merge patch is a
	// diff from the copy this pass read, and from a stale copy it leaves
	// alone the fields that copy already had at next's value (a
	// notReadyNodes of 1 stays beside a readyNodes of 1), a status-only
	// change that requeues nothing.
	if err := r.Client.Status().Apply(ctx, newStatusApply(pool.Name, next), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return reconcile.Result{}, fmt.Errorf("applying status of NodePool %s: %w", pool.Name, err)
	}
	written.Supersede(pool.ResourceVersion)
	pool.Status = next
	r.written.Remember(pool, &pool.Status, written)
	if nowReady := conditions.IsReady(next.Conditions); nowReady != wasReady {
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
	c := conditions.Find(pool.Status.Conditions, edgev1.ConditionReady)
	r.Recorder.Eventf(pool, nil, corev1.EventTypeWarning, c.Reason, "Sync", "%s", c.Message)
}

// setFinalizer adds (or, with present false, removes) the cleanup
// finalizer by server-side applying only that list entry: no
// resourceVersion is involved, so it neither conflicts with nor drops
// finalizers others add. It returns the resourceVersion it wrote.
func (r *PoolReconciler) setFinalizer(ctx context.Context, pool *edgev1.NodePool, present bool) (string, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(edgev1.GroupVersion.WithKind("NodePool"))
	u.SetName(pool.Name)
	if present {
		u.SetFinalizers([]string{edgev1.FinalizerNodePool})
	}
	if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner)); err != nil {
		return "", err
	}
	// A finalizer some other way put there (an older version, a human) is
	// not this apply's to drop: remove that entry by position, guarded by
	// a test so a concurrent change to the list fails instead of removing
	// the wrong one.
	if i := slices.Index(u.GetFinalizers(), edgev1.FinalizerNodePool); !present && i >= 0 {
		patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/finalizers/%d","value":%q},{"op":"remove","path":"/metadata/finalizers/%d"}]`, i, edgev1.FinalizerNodePool, i)
		if err := r.Client.Patch(ctx, u, client.RawPatch(types.JSONPatchType, []byte(patch))); err != nil {
			return "", err
		}
	}
	return u.GetResourceVersion(), nil
}

func (r *PoolReconciler) addFinalizer(ctx context.Context, pool *edgev1.NodePool, written lastwrite.State[edgev1.NodePoolStatus]) error {
	rv, err := r.setFinalizer(ctx, pool, true)
	if err != nil {
		return fmt.Errorf("adding finalizer to NodePool %s: %w", pool.Name, err)
	}
	written.Supersede(pool.ResourceVersion)
	controllerutil.AddFinalizer(pool, edgev1.FinalizerNodePool)
	// pool is now the version the apply made, so a status write later in
	// this pass supersedes that one too: read from the cache, its status
	// is older than the one written.
	pool.ResourceVersion = rv
	r.written.Remember(pool, &pool.Status, written)
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
