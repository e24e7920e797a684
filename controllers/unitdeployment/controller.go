// Package unitdeployment runs the UnitDeployment controller: for each
// processing unit it stamps one Deployment per selected EdgeUnit, pinned to
// the unit's nodes and changed by the unit's overrides, keeps an optional
// unit-local Service in front of them, moves template changes unit by unit,
// and reports per-unit status.
package unitdeployment

import (
	"context"
	"errors"
	"fmt"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/index"
	"github.com/edgeunit/edgeunit/controllers/internal/statusapply"
)

// FieldOwner is the field manager of every write the UnitDeployment
// controller makes.
const FieldOwner = "edgeunit-unitdeployment"

// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=unitdeployments,verbs=get;list;watch
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=unitdeployments/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=edgeunits,verbs=get;list;watch
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=nodepools,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// InstanceSelector selects instances by their label. The manager caches
// Deployments outside its own namespace through it, so it never holds
// every Deployment of the cluster.
func InstanceSelector() labels.Selector {
	req, err := labels.NewRequirement(edgev1.LabelUnitDeployment, selection.Exists, nil)
	if err != nil {
		panic(err) // A constant, valid key.
	}
	return labels.NewSelector().Add(*req)
}

// Reconciler keeps one UnitDeployment's instances, Service and status.
type Reconciler struct {
	// Client reads through the manager's cache and writes.
	Client   client.Client
	Recorder events.EventRecorder

	// applied remembers the instances this reconciler wrote, as the
	// server answered, until the cache shows that generation: a pass that
	// runs before the cache caught up must not count an instance it just
	// updated as outdated and available, or the rollout would take more
	// units at once than maxUnavailableUnits allows.
	mu      sync.Mutex
	applied map[types.NamespacedName]*appsv1.Deployment
}

// SetupWithManager registers the controller.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts controller.Options) error {
	if err := index.Register(ctx, mgr); err != nil {
		return err
	}
	r := &Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("unitdeployment-controller")}
	return ctrl.NewControllerManagedBy(mgr).
		Named("unitdeployment").
		For(&edgev1.UnitDeployment{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}, builder.WithPredicates(instanceChanged)).
		Owns(&corev1.Service{}, builder.OnlyMetadata).
		Watches(&edgev1.EdgeUnit{}, handler.EnqueueRequestsFromMapFunc(r.forUnit), builder.WithPredicates(unitChanged)).
		Watches(&edgev1.NodePool{}, handler.EnqueueRequestsFromMapFunc(r.forPool), builder.WithPredicates(poolTaintsChanged)).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.forNode), builder.WithPredicates(nodeReachabilityChanged)).
		WithOptions(opts).
		Complete(r)
}

// Reconcile brings one UnitDeployment's instances and status up to date.
// Instances are owned by the UnitDeployment, so the garbage collector
// deletes them with it: no finalizer.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (_ reconcile.Result, reterr error) {
	ud := &edgev1.UnitDeployment{}
	if err := r.Client.Get(ctx, req.NamespacedName, ud); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !ud.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}
	obs := &observed{revision: Revision(&ud.Spec)}
	defer func() {
		reterr = errors.Join(reterr, r.patchStatus(ctx, ud, obs, reterr))
	}()
	phases := []func(context.Context, *edgev1.UnitDeployment, *observed) error{
		r.observeUnits,       // selected units, their nodes, taints and instances
		r.reconcileInstances, // render, then apply what the rollout allows
		r.pruneInstances,     // delete instances of units no longer selected
		r.reconcileService,   // the unit-local Service, or its removal
	}
	for _, phase := range phases {
		if err := phase(ctx, ud, obs); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{}, nil
}

// patchStatus applies the status computed from the pass when it differs
// from what the object holds, and records condition transitions as events.
func (r *Reconciler) patchStatus(ctx context.Context, ud *edgev1.UnitDeployment, obs *observed, syncErr error) error {
	st := computeStatus(ud, obs, syncErr)
	if equality.Semantic.DeepEqual(st, ud.Status) {
		return nil
	}
	apply := statusapply.NewNamespaced("UnitDeployment", ud.Namespace, ud.Name, st)
	if err := r.Client.Status().Apply(ctx, apply, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("applying status of UnitDeployment %s/%s: %w", ud.Namespace, ud.Name, err)
	}
	r.recordTransitions(ud, st)
	return nil
}
