package unitdeployment

import (
	"context"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/index"
	"github.com/edgeunit/edgeunit/controllers/internal/applied"
)

// observeUnits collects the selected units, sorted by name: their labels,
// their pools' taints, how many nodes they have and whether all of them
// are cut off, and their instances. A unit being deleted is no longer
// selected.
func (r *Reconciler) observeUnits(ctx context.Context, ud *edgev1.UnitDeployment, obs *observed) error {
	units, missing, err := r.selectedUnits(ctx, ud)
	if err != nil {
		return err
	}
	for _, name := range missing {
		obs.units = append(obs.units, unitState{Unit: Unit{Name: name}})
	}
	for i := range units {
		u := &units[i]
		st := unitState{Unit: Unit{Name: u.Name, Labels: u.Labels}, found: true}
		if st.Taints, err = r.taintsOf(ctx, u); err != nil {
			return err
		}
		if st.nodes, st.unreachable, err = r.nodesOf(ctx, u.Name); err != nil {
			return err
		}
		if st.instance, st.conflict, err = r.instanceOf(ctx, ud, u.Name); err != nil {
			return err
		}
		obs.units = append(obs.units, st)
	}
	slices.SortFunc(obs.units, func(a, b unitState) int { return strings.Compare(a.Name, b.Name) })
	return nil
}

// selectedUnits are the live units spec.units selects, and the names it
// lists that no live unit has.
func (r *Reconciler) selectedUnits(ctx context.Context, ud *edgev1.UnitDeployment) (units []edgev1.EdgeUnit, missing []string, err error) {
	sel := ud.Spec.Units
	if sel.Selector == nil {
		for _, name := range sel.Names {
			u := &edgev1.EdgeUnit{}
			err := r.Client.Get(ctx, types.NamespacedName{Name: name}, u)
			switch {
			case apierrors.IsNotFound(err) || err == nil && !u.DeletionTimestamp.IsZero():
				missing = append(missing, name)
			case err != nil:
				return nil, nil, fmt.Errorf("getting EdgeUnit %s: %w", name, err)
			default:
				units = append(units, *u)
			}
		}
		return units, missing, nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel.Selector)
	if err != nil {
		return nil, nil, fmt.Errorf("spec.units.selector: %w", err)
	}
	var list edgev1.EdgeUnitList
	if err := r.Client.List(ctx, &list, client.MatchingLabelsSelector{Selector: s}); err != nil {
		return nil, nil, fmt.Errorf("listing EdgeUnits: %w", err)
	}
	for _, u := range list.Items {
		if u.DeletionTimestamp.IsZero() {
			units = append(units, u)
		}
	}
	return units, nil, nil
}

// taintsOf are the taints of the unit's pools, which its instance
// tolerates. A pool that does not exist yet has none.
func (r *Reconciler) taintsOf(ctx context.Context, u *edgev1.EdgeUnit) ([]edgev1.NodePoolTaint, error) {
	var taints []edgev1.NodePoolTaint
	for _, name := range u.Spec.NodePools {
		pool := &edgev1.NodePool{}
		if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, pool); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("getting NodePool %s of EdgeUnit %s: %w", name, u.Name, err)
		}
		for _, t := range pool.Spec.Taints {
			if !slices.Contains(taints, t) {
				taints = append(taints, t)
			}
		}
	}
	slices.SortFunc(taints, func(a, b edgev1.NodePoolTaint) int {
		return strings.Compare(a.Key+"\x00"+a.Value+"\x00"+string(a.Effect), b.Key+"\x00"+b.Value+"\x00"+string(b.Effect))
	})
	return taints, nil
}

// nodesOf counts the unit's nodes and reports whether every one is cut off.
func (r *Reconciler) nodesOf(ctx context.Context, unit string) (n int, unreachable bool, err error) {
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes, client.MatchingFields{index.NodeByUnit: unit}, client.UnsafeDisableDeepCopy); err != nil {
		return 0, false, fmt.Errorf("listing nodes of EdgeUnit %s: %w", unit, err)
	}
	cut := 0
	for i := range nodes.Items {
		if Unreachable(&nodes.Items[i]) {
			cut++
		}
	}
	return len(nodes.Items), cut > 0 && cut == len(nodes.Items), nil
}

// Unreachable reports whether the cloud has lost the node: the node
// lifecycle controller tainted it unreachable, or its Ready condition is
// Unknown (heartbeats stopped).
func Unreachable(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeUnreachable {
			return true
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionUnknown
		}
	}
	return false
}

// instanceOf is the unit's instance as last seen: the cache's copy, or
// this reconciler's last write when the cache has not caught up with it.
// conflict reports an object of that name ud does not control.
func (r *Reconciler) instanceOf(ctx context.Context, ud *edgev1.UnitDeployment, unit string) (*appsv1.Deployment, bool, error) {
	key := types.NamespacedName{Namespace: ud.Namespace, Name: InstanceName(ud, unit)}
	d := &appsv1.Deployment{}
	err := r.Client.Get(ctx, key, d)
	switch {
	case apierrors.IsNotFound(err):
		d = nil
	case err != nil:
		return nil, false, fmt.Errorf("getting Deployment %s: %w", key, err)
	case !metav1.IsControlledBy(d, ud):
		return nil, true, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.applied[key]; w != nil {
		if d == nil || d.Generation < w.Generation {
			return w, false, nil
		}
		delete(r.applied, key)
	}
	return d, false, nil
}

// reconcileInstances renders every found unit's instance, then applies
// those the rollout plan allows now.
func (r *Reconciler) reconcileInstances(ctx context.Context, ud *edgev1.UnitDeployment, obs *observed) error {
	rendered := map[string]*appsv1.Deployment{}
	for i := range obs.units {
		u := &obs.units[i]
		if !u.found || u.conflict {
			continue
		}
		d, err := Instance(ud, u.Unit, obs.revision)
		if err != nil {
			u.renderErr = err
			continue
		}
		rendered[u.Name] = d
	}
	for _, name := range plan(ud.Spec.Rollout, obs.revision, obs.units) {
		i := slices.IndexFunc(obs.units, func(u unitState) bool { return u.Name == name })
		applied, err := r.applyInstance(ctx, ud, obs.units[i].instance, rendered[name])
		if err != nil {
			return err
		}
		obs.units[i].instance = applied
	}
	return nil
}

// applyInstance server-side applies d unless cur already holds what it
// would apply, and returns the instance as the server holds it.
func (r *Reconciler) applyInstance(ctx context.Context, ud *edgev1.UnitDeployment, cur, d *appsv1.Deployment) (*appsv1.Deployment, error) {
	ac, err := instanceApply(ud, d)
	if err != nil {
		return nil, err
	}
	if cur != nil && cur.Annotations[applied.Annotation] == ac.Annotations[applied.Annotation] {
		return cur, nil
	}
	key := types.NamespacedName{Namespace: d.Namespace, Name: d.Name}
	out := &appsv1.Deployment{}
	if err := applied.Apply(ctx, r.Client, ac, out, FieldOwner); err != nil {
		return nil, fmt.Errorf("Deployment %s: %w", key, err)
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Applied instance", "deployment", klog.KRef(key.Namespace, key.Name), "revision", d.Annotations[edgev1.AnnotationRevision])
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applied == nil {
		r.applied = map[types.NamespacedName]*appsv1.Deployment{}
	}
	r.applied[key] = out
	return out, nil
}

// pruneInstances deletes the instances of units no longer selected (or no
// longer existing). Only instances ud controls are touched.
func (r *Reconciler) pruneInstances(ctx context.Context, ud *edgev1.UnitDeployment, obs *observed) error {
	var list appsv1.DeploymentList
	if err := r.Client.List(ctx, &list, client.InNamespace(ud.Namespace), client.MatchingLabels{edgev1.LabelUnitDeployment: ud.Name}); err != nil {
		return fmt.Errorf("listing instances of UnitDeployment %s/%s: %w", ud.Namespace, ud.Name, err)
	}
	for i := range list.Items {
		d := &list.Items[i]
		unit := d.Labels[edgev1.LabelUnit]
		kept := slices.ContainsFunc(obs.units, func(u unitState) bool { return u.found && u.Name == unit })
		if kept || !metav1.IsControlledBy(d, ud) || !d.DeletionTimestamp.IsZero() {
			continue
		}
		err := r.Client.Delete(ctx, d, client.Preconditions{UID: &d.UID}, client.PropagationPolicy(metav1.DeletePropagationBackground))
		if client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting Deployment %s/%s of unit %s: %w", d.Namespace, d.Name, unit, err)
		}
		r.mu.Lock()
		delete(r.applied, client.ObjectKeyFromObject(d))
		r.mu.Unlock()
		ctrl.LoggerFrom(ctx).V(2).Info("Deleted instance of a unit no longer selected", "deployment", klog.KObj(d), "unit", unit)
	}
	return nil
}

// reconcileService applies the unit-local Service when spec.service is
// set and deletes the one ud controls when it is not.
func (r *Reconciler) reconcileService(ctx context.Context, ud *edgev1.UnitDeployment, obs *observed) error {
	key := types.NamespacedName{Namespace: ud.Namespace, Name: ud.Name}
	cur := &metav1.PartialObjectMetadata{}
	cur.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Service"))
	err := r.Client.Get(ctx, key, cur)
	switch {
	case apierrors.IsNotFound(err):
		cur = nil
	case err != nil:
		return fmt.Errorf("getting Service %s: %w", key, err)
	case !metav1.IsControlledBy(cur, ud):
		obs.serviceConflict = ud.Spec.Service != nil
		return nil
	}
	if ud.Spec.Service == nil {
		if cur == nil {
			return nil
		}
		if err := r.Client.Delete(ctx, cur, client.Preconditions{UID: &cur.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting Service %s: %w", key, err)
		}
		return nil
	}
	svc := Service(ud)
	if cur != nil && cur.Annotations[applied.Annotation] == svc.Annotations[applied.Annotation] {
		return nil
	}
	if err := r.Client.Apply(ctx, svc, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying Service %s: %w", key, err)
	}
	return nil
}
