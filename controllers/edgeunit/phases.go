package edgeunit

import (
	"context"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/certificates"
	"github.com/edgeunit/edgeunit/controllers/index"
	"github.com/edgeunit/edgeunit/controllers/internal/applied"
	"github.com/edgeunit/edgeunit/controllers/internal/lastwrite"
	"github.com/edgeunit/edgeunit/internal/certs"
)

// observed is what one pass saw and did; computeStatus turns it into status.
type observed struct {
	// ownedPools are the listed pools this unit owns (index.OwnerOf).
	ownedPools []string
	// claimed maps listed pools another unit owns to that unit.
	claimed map[string]string
	// nodes are the names of the nodes in the owned pools, sorted.
	nodes []string
	// conversion maps a node conversion phase, as the nodes report it, to
	// the nodes in it (sorted); nodes that reported nothing are under "".
	conversion map[edgev1.ConversionPhase][]string
	// endpoint is the referenced TunnelEndpoint; endpointMissing when the
	// unit references one that does not exist.
	endpoint        *edgev1.TunnelEndpoint
	endpointMissing bool
	// hub and agent are the DaemonSets as last seen, nil when absent.
	hub, agent *appsv1.DaemonSet
}

// observePools sorts the unit's pools into owned and claimed by another
// unit, and collects the owned pools' nodes. Both lookups go through cache
// indexes: a pass costs O(pools + nodes of the unit), whatever the cluster.
func (r *Reconciler) observePools(ctx context.Context, unit *edgev1.EdgeUnit, obs *observed) error {
	obs.claimed = map[string]string{}
	for _, pool := range unit.Spec.NodePools {
		var units edgev1.EdgeUnitList
		// Read-only lists: skip the cache's deep copies, which at thousands
		// of nodes per unit would dominate a pass.
		if err := r.Client.List(ctx, &units, client.MatchingFields{index.UnitByPool: pool}, client.UnsafeDisableDeepCopy); err != nil {
			return fmt.Errorf("listing EdgeUnits of NodePool %s: %w", pool, err)
		}
		if owner := index.OwnerOf(units.Items, pool); owner != nil && owner.Name != unit.Name {
			obs.claimed[pool] = owner.Name
			continue
		}
		obs.ownedPools = append(obs.ownedPools, pool)
		var nodes corev1.NodeList
		if err := r.Client.List(ctx, &nodes, client.MatchingFields{index.NodeByPool: pool}, client.UnsafeDisableDeepCopy); err != nil {
			return fmt.Errorf("listing nodes of NodePool %s: %w", pool, err)
		}
		for i := range nodes.Items {
			obs.nodes = append(obs.nodes, nodes.Items[i].Name)
			phase := edgev1.ConversionPhase(nodes.Items[i].Annotations[edgev1.AnnotationConversion])
			if obs.conversion == nil {
				obs.conversion = map[edgev1.ConversionPhase][]string{}
			}
			obs.conversion[phase] = append(obs.conversion[phase], nodes.Items[i].Name)
		}
	}
	slices.Sort(obs.nodes)
	obs.nodes = slices.Compact(obs.nodes)
	for phase, names := range obs.conversion {
		slices.Sort(names)
		obs.conversion[phase] = slices.Compact(names)
	}
	return nil
}

// observeEndpoint reads the TunnelEndpoint the unit references, if any.
func (r *Reconciler) observeEndpoint(ctx context.Context, unit *edgev1.EdgeUnit, obs *observed) error {
	if unit.Spec.Tunnel == nil {
		return nil
	}
	te := &edgev1.TunnelEndpoint{}
	err := r.Client.Get(ctx, types.NamespacedName{Name: unit.Spec.Tunnel.Endpoint}, te)
	switch {
	case apierrors.IsNotFound(err):
		obs.endpointMissing = true
		return nil
	case err != nil:
		return fmt.Errorf("getting TunnelEndpoint %s of EdgeUnit %s: %w", unit.Spec.Tunnel.Endpoint, unit.Name, err)
	}
	obs.endpoint = te
	return nil
}

// reconcileHub applies the hub's ConfigMap and its installer DaemonSet.
func (r *Reconciler) reconcileHub(ctx context.Context, unit *edgev1.EdgeUnit, obs *observed) error {
	cm, err := desiredHubConfigMap(unit, obs.ownedPools, r.Options)
	if err != nil {
		return err
	}
	if err := r.applyConfigMap(ctx, unit, cm); err != nil {
		return err
	}
	obs.hub, err = r.applyDaemonSet(ctx, unit, desiredHubDaemonSet(unit, r.Options))
	return err
}

// reconcileAgent applies the tunnel agent when the unit has a tunnel whose
// endpoint exists, and removes it otherwise. While the endpoint reports no
// address yet, agents that already run are left as they are: they keep
// their last servers rather than being torn down by a restarting endpoint.
func (r *Reconciler) reconcileAgent(ctx context.Context, unit *edgev1.EdgeUnit, obs *observed) error {
	if unit.Spec.Tunnel == nil || obs.endpoint == nil {
		return r.deleteChildren(ctx, unit, agentChildren(unit.Name))
	}
	if len(obs.endpoint.Status.Addresses) == 0 {
		ds, err := r.ownedDaemonSet(ctx, unit, agentName(unit.Name))
		obs.agent = ds
		return err
	}
	caPEM, err := r.caCertPEM(ctx)
	if err != nil {
		return err
	}
	cm, configHash := desiredAgentConfigMap(unit, obs.endpoint, caPEM, r.Options)
	if err := r.applyConfigMap(ctx, unit, cm); err != nil {
		return err
	}
	obs.agent, err = r.applyDaemonSet(ctx, unit, desiredAgentDaemonSet(unit, configHash, r.Options))
	return err
}

// applyDaemonSet server-side applies ds unless the cached copy is ours and
// carries the hash of the same configuration, and returns the DaemonSet.
// Skipping the no-op apply keeps DaemonSet status churn from turning into
// writes.
func (r *Reconciler) applyDaemonSet(ctx context.Context, unit *edgev1.EdgeUnit, ds *appsv1ac.DaemonSetApplyConfiguration) (*appsv1.DaemonSet, error) {
	hash := applied.Hash(ds)
	ds.WithAnnotations(map[string]string{applied.Annotation: hash})
	key := types.NamespacedName{Namespace: *ds.GetNamespace(), Name: *ds.GetName()}
	cur := &appsv1.DaemonSet{}
	err := r.Client.Get(ctx, key, cur)
	if client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("getting DaemonSet %s: %w", key, err)
	}
	if err == nil && upToDate(cur, unit, hash) {
		return cur, nil
	}
	out := &appsv1.DaemonSet{}
	if err := applied.Apply(ctx, r.Client, ds, out, FieldOwner); err != nil {
		return nil, fmt.Errorf("DaemonSet %s: %w", key, err)
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Applied DaemonSet", "daemonSet", klog.KRef(key.Namespace, key.Name), "hash", hash)
	return out, nil
}

// applyConfigMap is applyDaemonSet for ConfigMaps, whose cache holds only
// metadata.
func (r *Reconciler) applyConfigMap(ctx context.Context, unit *edgev1.EdgeUnit, cm *corev1ac.ConfigMapApplyConfiguration) error {
	hash := applied.Hash(cm)
	cm.WithAnnotations(map[string]string{applied.Annotation: hash})
	key := types.NamespacedName{Namespace: *cm.GetNamespace(), Name: *cm.GetName()}
	cur := configMapMeta()
	err := r.Client.Get(ctx, key, cur)
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("getting ConfigMap %s: %w", key, err)
	}
	if err == nil && upToDate(cur, unit, hash) {
		return nil
	}
	if err := r.Client.Apply(ctx, cm, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying ConfigMap %s: %w", key, err)
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Applied ConfigMap", "configMap", klog.KRef(key.Namespace, key.Name), "hash", hash)
	return nil
}

func upToDate(cur metav1.Object, unit *edgev1.EdgeUnit, hash string) bool {
	return cur.GetDeletionTimestamp().IsZero() &&
		metav1.IsControlledBy(cur, unit) &&
		cur.GetAnnotations()[applied.Annotation] == hash
}

// ownedDaemonSet returns the named DaemonSet if the unit controls it.
func (r *Reconciler) ownedDaemonSet(ctx context.Context, unit *edgev1.EdgeUnit, name string) (*appsv1.DaemonSet, error) {
	ds := &appsv1.DaemonSet{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.Options.Namespace, Name: name}, ds)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("getting DaemonSet %s/%s: %w", r.Options.Namespace, name, err)
	case !metav1.IsControlledBy(ds, unit):
		return nil, nil
	}
	return ds, nil
}

func configMapMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	return m
}

// patchStatus is the pass's one status write, made only when the status
// changed; it records events for the conditions that changed status.
func (r *Reconciler) patchStatus(ctx context.Context, unit *edgev1.EdgeUnit, obs *observed, syncErr error, written lastwrite.State[edgev1.EdgeUnitStatus]) error {
	next := computeStatus(unit, obs, syncErr)
	if statusEqual(unit.Status, next) {
		return nil
	}
	before := unit.DeepCopy()
	unit.Status = next
	// Server-side apply of only the fields this controller owns: the
	// bindings controller writes status.bindings and the NetworkBound
	// condition of the same object, and a merge patch carries the whole
	// conditions list, so from a stale copy it would undo that entry.
	if err := r.Client.Status().Apply(ctx, newStatusApply(unit.Name, next), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("applying status of EdgeUnit %s: %w", unit.Name, err))
	}
	written.Supersede(before.ResourceVersion)
	r.written.Remember(unit, &unit.Status, written)
	for _, t := range transitions(before.Status.Conditions, next.Conditions) {
		ctrl.LoggerFrom(ctx).V(2).Info("EdgeUnit condition changed", "edgeUnit", klog.KObj(unit),
			"type", t.Type, "status", t.Status, "reason", t.Reason)
		if r.Recorder != nil {
			// The condition type is the action: the events library folds
			// events of one object with the same type, reason and action
			// into a series whatever their note, and HubReady and Ready
			// often change together with the same reason.
			r.Recorder.Eventf(unit, nil, eventType(t), t.Reason, t.Type, "%s is %s: %s", t.Type, t.Status, t.Message)
		}
	}
	return nil
}

// caCertPEM is the operator CA's certificate, which agents trust. The CA
// never changes once made, so the cached Secret is read first; only when
// there is none yet is it made (or read) through the apiserver.
func (r *Reconciler) caCertPEM(ctx context.Context) ([]byte, error) {
	sec := &corev1.Secret{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Options.Namespace, Name: certificates.CASecret}, sec)
	if err == nil {
		if _, perr := certs.ParseCert(sec.Data[corev1.TLSCertKey]); perr == nil {
			return sec.Data[corev1.TLSCertKey], nil
		}
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading the CA Secret: %w", err)
	}
	ca, err := certificates.EnsureCA(ctx, r.Direct, r.Options.Namespace, r.now())
	if err != nil {
		return nil, err
	}
	return ca.CertPEM(), nil
}
