// Package nodepool validates NodePools beyond what the CRD schema can say.
package nodepool

import (
	"context"
	"fmt"
	"maps"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// +kubebuilder:webhook:path=/validate-edge-edgeunit-io-v1alpha1-nodepool,mutating=false,failurePolicy=fail,sideEffects=None,groups=edge.edgeunit.io,resources=nodepools,verbs=create;update;delete,versions=v1alpha1,name=vnodepool.edge.edgeunit.io,admissionReviewVersions=v1
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=edgeunits,verbs=get;list;watch

// Validator checks NodePool keys with the exact rules kube-apiserver applies
// to Node labels, annotations and taints (the schema can only bound their
// size), so a pool is never accepted with keys no node would take, and warns
// when a pool still in use by an EdgeUnit is deleted.
type Validator struct {
	// Reader looks up EdgeUnits; nil skips the cross-object checks.
	Reader client.Reader
}

var _ admission.Validator[*edgev1.NodePool] = &Validator{}

// SetupWithManager registers the webhook with the manager's webhook server.
func SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &edgev1.NodePool{}).
		WithValidator(&Validator{Reader: mgr.GetClient()}).
		Complete()
}

// ValidateCreate validates a new pool.
func (v *Validator) ValidateCreate(_ context.Context, pool *edgev1.NodePool) (admission.Warnings, error) {
	return nil, toInvalid(pool, ValidateSpec(&pool.Spec))
}

// ValidateUpdate validates a changed pool.
func (v *Validator) ValidateUpdate(_ context.Context, _, pool *edgev1.NodePool) (admission.Warnings, error) {
	return nil, toInvalid(pool, ValidateSpec(&pool.Spec))
}

// ValidateDelete allows every deletion but warns when EdgeUnits still list
// the pool: their nodes leave the unit.
func (v *Validator) ValidateDelete(ctx context.Context, pool *edgev1.NodePool) (admission.Warnings, error) {
	if v.Reader == nil {
		return nil, nil
	}
	var units edgev1.EdgeUnitList
	if err := v.Reader.List(ctx, &units); err != nil {
		// A warning is advisory: never block a deletion on it.
		return admission.Warnings{fmt.Sprintf("could not check EdgeUnits that use NodePool %s: %v", pool.Name, err)}, nil
	}
	var warnings admission.Warnings
	for _, u := range units.Items {
		if slices.Contains(u.Spec.NodePools, pool.Name) {
			warnings = append(warnings, fmt.Sprintf("EdgeUnit %s lists NodePool %s; its nodes leave the unit", u.Name, pool.Name))
		}
	}
	return warnings, nil
}

// ValidateSpec applies Kubernetes' own key and value rules to a pool spec.
func ValidateSpec(spec *edgev1.NodePoolSpec) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("spec")
	for _, k := range slices.Sorted(maps.Keys(spec.Labels)) {
		val := spec.Labels[k]
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(p.Child("labels").Key(k), k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(val) {
			errs = append(errs, field.Invalid(p.Child("labels").Key(k), val, msg))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Annotations)) {
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(p.Child("annotations").Key(k), k, msg))
		}
	}
	for i, t := range spec.Taints {
		for _, msg := range validation.IsQualifiedName(t.Key) {
			errs = append(errs, field.Invalid(p.Child("taints").Index(i).Child("key"), t.Key, msg))
		}
		for _, msg := range validation.IsValidLabelValue(t.Value) {
			errs = append(errs, field.Invalid(p.Child("taints").Index(i).Child("value"), t.Value, msg))
		}
	}
	return errs
}

func toInvalid(pool *edgev1.NodePool, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(edgev1.GroupVersion.WithKind("NodePool").GroupKind(), pool.Name, errs)
}
