// Package bindings runs the bindings controller: for every EdgeUnit with
// network autonomy it records in status.bindings each node's VTEP binding
// (a MAC derived from the node name, and the VTEP IP) and the IP of each pod
// on the unit's nodes, so the edge hubs can hand them back after a restart
// while the cloud is unreachable.
//
// It owns status.bindings and the NetworkBound condition, and nothing else
// of the EdgeUnit: it writes them with server-side apply under its own field
// manager, next to the EdgeUnit controller's.
//
// Rules (see desiredBindings and AssignMACs):
//   - a pod is bound to namespace/name → status.podIP on its node; the
//     binding stays while the pod object exists, also while the pod restarts
//     and has no IP, and follows the pod to a new IP; it goes with the pod
//     object, or when the pod finished (Succeeded/Failed);
//   - a node's VTEP MAC is derived from its name and unique in the cluster;
//     once recorded it never changes, unless two recorded MACs collide;
//   - bindings are removed when the unit switches the feature off.
package bindings

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/autonomy"
)

// FieldOwner is the field manager of the controller's status applies. It
// owns status.bindings and the NetworkBound condition.
const FieldOwner = "edgeunit-bindings"

// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=edgeunits,verbs=get;list;watch
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=edgeunits/status,verbs=get;patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// Reconciler records one EdgeUnit's bindings.
type Reconciler struct {
	// Client reads through the manager's cache and writes.
	Client client.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu sync.Mutex
	// applied is what the last apply wrote, per unit. The next pass may
	// run before the cache shows that write; a binding kept only in the
	// status (its pod has no IP now) must not be lost to the stale read.
	applied map[string]appliedStatus
}

type appliedStatus struct {
	uid types.UID
	// readVersion is the resourceVersion the write was computed from:
	// while the cache still shows it, the cache is behind the write.
	readVersion string
	bindings    []edgev1.NodeBinding
	condition   metav1.Condition
}

// SetupWithManager registers the indexes and the bindings controller. The
// pod index by node is the autonomy controller's (autonomy.PodByNode): set
// this controller up after that one, or alone.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts controller.Options) error {
	if err := registerIndexes(ctx, mgr); err != nil {
		return err
	}
	r := &Reconciler{Client: mgr.GetClient()}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("bindings").
		For(&edgev1.EdgeUnit{}, builder.WithPredicates(unitChanged)).
		Watches(&edgev1.EdgeUnit{}, handler.EnqueueRequestsFromMapFunc(r.otherMACUnits), builder.WithPredicates(unitMACsChanged)).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(unitOfNode), builder.WithPredicates(nodeBindingChanged)).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.unitOfPod), builder.WithPredicates(podBindingChanged)).
		WithOptions(opts).
		Complete(r); err != nil {
		return fmt.Errorf("creating the bindings controller: %w", err)
	}
	return nil
}

// Reconcile records the unit's bindings and NetworkBound condition, and
// writes them only when they changed.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	unit := &edgev1.EdgeUnit{}
	if err := r.Client.Get(ctx, req.NamespacedName, unit); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.Name)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !unit.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil // the bindings go with the unit
	}
	// While the cache has not caught up with the last write, that write is
	// the state to build on.
	prev, prevConds := unit.Status.Bindings, unit.Status.Conditions
	if last, ok := r.last(unit); ok {
		prev, prevConds = last.bindings, []metav1.Condition{last.condition}
	}
	in, err := r.observe(ctx, unit, prev)
	if err != nil {
		return reconcile.Result{}, err
	}
	bindings, sum := desiredBindings(in)
	cond := networkCondition(unit, sum)
	if unchanged(prev, prevConds, bindings, cond) {
		return reconcile.Result{}, nil
	}
	cond = nextCondition(prevConds, cond, metav1.NewTime(r.now().Truncate(time.Second)))
	apply := newStatusApply(unit.Name, bindings, cond)
	if err := r.Client.Status().Apply(ctx, apply, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(fmt.Errorf("applying bindings to EdgeUnit %s: %w", unit.Name, err))
	}
	r.remember(unit, bindings, cond)
	ctrl.LoggerFrom(ctx).V(2).Info("Recorded bindings", "edgeUnit", klog.KObj(unit), "resourceVersion", apply.Metadata.ResourceVersion,
		"nodes", sum.nodes, "pods", sum.pods, "status", cond.Status, "reason", cond.Reason)
	return reconcile.Result{}, nil
}

// observe reads the unit's nodes and their pods and, for VTEP MACs, every
// node name and every recorded MAC of the cluster. All reads hit the cache
// through indexes, without deep copies: nothing here is modified.
func (r *Reconciler) observe(ctx context.Context, unit *edgev1.EdgeUnit, prev []edgev1.NodeBinding) (inputs, error) {
	na := unit.Spec.NetworkAutonomy
	in := inputs{stablePodIPs: na.StablePodIPs, stableVTEPMAC: na.StableVTEPMAC, prev: prev}
	if !na.StablePodIPs && !na.StableVTEPMAC {
		return in, nil
	}
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes, client.MatchingFields{NodeByUnit: unit.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return in, fmt.Errorf("listing nodes of EdgeUnit %s: %w", unit.Name, err)
	}
	in.nodes = make([]*corev1.Node, 0, len(nodes.Items))
	for i := range nodes.Items {
		in.nodes = append(in.nodes, &nodes.Items[i])
	}
	if na.StablePodIPs {
		in.pods = make(map[string][]*corev1.Pod, len(in.nodes))
		for _, n := range in.nodes {
			var pods corev1.PodList
			if err := r.Client.List(ctx, &pods, client.MatchingFields{autonomy.PodByNode: n.Name}, client.UnsafeDisableDeepCopy); err != nil {
				return in, fmt.Errorf("listing pods of node %s: %w", n.Name, err)
			}
			for i := range pods.Items {
				in.pods[n.Name] = append(in.pods[n.Name], &pods.Items[i])
			}
		}
	}
	if na.StableVTEPMAC {
		macs, err := r.clusterMACs(ctx, unit, in.prev)
		if err != nil {
			return in, err
		}
		in.macs = macs
	}
	return in, nil
}

// clusterMACs assigns the VTEP MACs of every node of the cluster, keeping
// those recorded by this unit (first) and by the others (by name).
func (r *Reconciler) clusterMACs(ctx context.Context, unit *edgev1.EdgeUnit, own []edgev1.NodeBinding) (map[string]string, error) {
	var all corev1.NodeList
	if err := r.Client.List(ctx, &all, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	names := make([]string, 0, len(all.Items))
	for i := range all.Items {
		names = append(names, all.Items[i].Name)
	}
	var units edgev1.EdgeUnitList
	if err := r.Client.List(ctx, &units, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing EdgeUnits: %w", err)
	}
	slices.SortFunc(units.Items, func(a, b edgev1.EdgeUnit) int { return cmp.Compare(a.Name, b.Name) })
	recorded := [][]edgev1.NodeBinding{own}
	for i := range units.Items {
		if units.Items[i].Name != unit.Name {
			recorded = append(recorded, units.Items[i].Status.Bindings)
		}
	}
	return AssignMACs(names, recordedMACs(recorded...)), nil
}

// last returns the unit's last write while the cache is behind it. Once
// the cache shows any later version (the write, or a write by someone
// else) the cache is the truth again.
func (r *Reconciler) last(unit *edgev1.EdgeUnit) (appliedStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.applied[unit.Name]
	if !ok || a.uid != unit.UID || a.readVersion != unit.ResourceVersion {
		delete(r.applied, unit.Name)
		return appliedStatus{}, false
	}
	return a, true
}

func (r *Reconciler) remember(unit *edgev1.EdgeUnit, bindings []edgev1.NodeBinding, c metav1.Condition) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applied == nil {
		r.applied = map[string]appliedStatus{}
	}
	r.applied[unit.Name] = appliedStatus{uid: unit.UID, readVersion: unit.ResourceVersion, bindings: bindings, condition: c}
}

func (r *Reconciler) forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.applied, name)
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// isIndexerConflict tells that an index of that name is already registered.
func isIndexerConflict(err error) bool {
	return err != nil && strings.Contains(err.Error(), "indexer conflict")
}
