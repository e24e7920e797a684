// Package edgeunit validates EdgeUnits against other objects, which the
// CRD schema cannot see.
package edgeunit

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/index"
)

// +kubebuilder:webhook:path=/validate-edge-edgeunit-io-v1alpha1-edgeunit,mutating=false,failurePolicy=fail,sideEffects=None,groups=edge.edgeunit.io,resources=edgeunits,verbs=create;update,versions=v1alpha1,name=vedgeunit.edge.edgeunit.io,admissionReviewVersions=v1
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=edgeunits,verbs=get;list;watch
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=nodepools,verbs=get;list;watch
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=tunnelendpoints,verbs=get;list;watch

// Validator refuses a unit that claims a NodePool another unit already
// lists, and warns about references to objects that do not exist yet.
//
// A missing TunnelEndpoint (or NodePool) is a warning, not a refusal: GitOps
// tools and `kubectl apply -f dir/` create related objects in no particular
// order, and refusing would make the unit fail until a retry. The EdgeUnit
// controller reports the lasting state as TunnelConnected=False with reason
// NotFound. A pool claimed twice is refused because there is no order in
// which that becomes right.
//
// Reads go through the manager's cache, so two units applied within the
// cache's lag can both pass; index.OwnerOf then gives the pool to the older
// unit and every controller agrees on that.
type Validator struct {
	// Reader lists EdgeUnits through the index.UnitByPool index and reads
	// NodePools and TunnelEndpoints.
	Reader client.Reader
}

var _ admission.Validator[*edgev1.EdgeUnit] = &Validator{}

// SetupWithManager registers the shared indexes and the webhook.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := index.Register(ctx, mgr); err != nil {
		return err
	}
	return ctrl.NewWebhookManagedBy(mgr, &edgev1.EdgeUnit{}).
		WithValidator(&Validator{Reader: mgr.GetClient()}).
		Complete()
}

// ValidateCreate checks every pool of a new unit.
func (v *Validator) ValidateCreate(ctx context.Context, unit *edgev1.EdgeUnit) (admission.Warnings, error) {
	return v.validate(ctx, unit, nil)
}

// ValidateUpdate checks only pools the update adds, so a unit caught in an
// earlier double claim can still be edited (the older unit keeps the pool).
func (v *Validator) ValidateUpdate(ctx context.Context, old, unit *edgev1.EdgeUnit) (admission.Warnings, error) {
	return v.validate(ctx, unit, old.Spec.NodePools)
}

// ValidateDelete allows every deletion.
func (v *Validator) ValidateDelete(context.Context, *edgev1.EdgeUnit) (admission.Warnings, error) {
	return nil, nil
}

func (v *Validator) validate(ctx context.Context, unit *edgev1.EdgeUnit, had []string) (admission.Warnings, error) {
	if !unit.DeletionTimestamp.IsZero() {
		return nil, nil
	}
	var errs field.ErrorList
	var warnings admission.Warnings
	pools := field.NewPath("spec", "nodePools")
	for i, pool := range unit.Spec.NodePools {
		others, err := v.claimants(ctx, unit.Name, pool)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		if len(others) > 0 && !slices.Contains(had, pool) {
			errs = append(errs, field.Invalid(pools.Index(i), pool,
				fmt.Sprintf("NodePool %s already belongs to EdgeUnit %s; a pool belongs to at most one unit", pool, others[0])))
		}
		warnings = append(warnings, v.missing(ctx, &edgev1.NodePool{}, pool,
			fmt.Sprintf("spec.nodePools[%d]: NodePool %s does not exist (yet); the unit has no nodes from it until it does", i, pool))...)
	}
	if t := unit.Spec.Tunnel; t != nil {
		warnings = append(warnings, v.missing(ctx, &edgev1.TunnelEndpoint{}, t.Endpoint, fmt.Sprintf(
			"spec.tunnel.endpoint: TunnelEndpoint %s does not exist (yet); the unit's tunnel agents have nothing to dial until it does (condition TunnelConnected=False, reason NotFound)", t.Endpoint))...)
	}
	if len(errs) > 0 {
		return warnings, apierrors.NewInvalid(edgev1.GroupVersion.WithKind("EdgeUnit").GroupKind(), unit.Name, errs)
	}
	return warnings, nil
}

// claimants are the other live units that list pool, sorted.
func (v *Validator) claimants(ctx context.Context, self, pool string) ([]string, error) {
	var units edgev1.EdgeUnitList
	if err := v.Reader.List(ctx, &units, client.MatchingFields{index.UnitByPool: pool}); err != nil {
		return nil, fmt.Errorf("listing EdgeUnits of NodePool %s: %w", pool, err)
	}
	var names []string
	for _, u := range units.Items {
		if u.Name != self && u.DeletionTimestamp.IsZero() && slices.Contains(u.Spec.NodePools, pool) {
			names = append(names, u.Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// missing returns warning when the named object does not exist. A failed
// lookup is a warning too: it must never block the unit.
func (v *Validator) missing(ctx context.Context, obj client.Object, name, warning string) admission.Warnings {
	err := v.Reader.Get(ctx, types.NamespacedName{Name: name}, obj)
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return admission.Warnings{warning}
	default:
		return admission.Warnings{fmt.Sprintf("could not check that %s exists: %v", name, err)}
	}
}
