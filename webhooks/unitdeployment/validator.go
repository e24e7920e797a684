// Package unitdeployment validates UnitDeployments where the CRD schema and
// its CEL rules cannot: label selectors, container overrides and patches,
// which only rendering an instance proves right, and the EdgeUnits the
// UnitDeployment names.
package unitdeployment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	udcontroller "github.com/edgeunit/edgeunit/controllers/unitdeployment"
)

// +kubebuilder:webhook:path=/validate-edge-edgeunit-io-v1alpha1-unitdeployment,mutating=false,failurePolicy=fail,sideEffects=None,groups=edge.edgeunit.io,resources=unitdeployments,verbs=create;update,versions=v1alpha1,name=vunitdeployment.edge.edgeunit.io,admissionReviewVersions=v1
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=edgeunits,verbs=get;list;watch

// PlaceholderUnit is the unit every override is rendered for at admission.
// Overrides are forced to select it, so each one is proven whichever real
// units exist or match now.
const PlaceholderUnit = "validation-unit"

// valueOps are the patch operations that need a value.
var valueOps = []edgev1.PatchOp{"add", "replace", "test"}

// maxWarnings bounds the warnings of one request: kube-apiserver truncates
// warning headers past 4096 characters, and a list of a thousand missing
// units helps nobody.
const maxWarnings = 20

// Validator refuses a UnitDeployment whose instances the controller could
// not render, and warns about units it names that do not exist or that an
// override names in vain.
//
// Missing and unselected units are warnings, not refusals: units and
// UnitDeployments are applied in no particular order, and a unit's labels
// change after admission. The controller keeps selecting as units come and
// go. A selector that does not parse, an override of a container the
// template lacks, or patches that break the instance are refused: no order
// of events makes them right.
type Validator struct {
	// Reader reads EdgeUnits, through the manager's cache.
	Reader client.Reader
}

var _ admission.Validator[*edgev1.UnitDeployment] = &Validator{}

// SetupWithManager registers the webhook with the manager's webhook server.
func SetupWithManager(_ context.Context, mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &edgev1.UnitDeployment{}).
		WithValidator(&Validator{Reader: mgr.GetClient()}).
		Complete()
}

// ValidateCreate validates a new UnitDeployment.
func (v *Validator) ValidateCreate(ctx context.Context, ud *edgev1.UnitDeployment) (admission.Warnings, error) {
	return v.validate(ctx, ud)
}

// ValidateUpdate validates the changed UnitDeployment as if it were new:
// every check is about the spec alone, which an update may fix.
func (v *Validator) ValidateUpdate(ctx context.Context, _, ud *edgev1.UnitDeployment) (admission.Warnings, error) {
	return v.validate(ctx, ud)
}

// ValidateDelete allows every deletion.
func (v *Validator) ValidateDelete(context.Context, *edgev1.UnitDeployment) (admission.Warnings, error) {
	return nil, nil
}

func (v *Validator) validate(ctx context.Context, ud *edgev1.UnitDeployment) (admission.Warnings, error) {
	// A UnitDeployment being deleted must stay editable (finalizers).
	if !ud.DeletionTimestamp.IsZero() {
		return nil, nil
	}
	errs := ValidateSpec(ud)
	warnings := v.unitWarnings(ctx, ud)
	if len(errs) > 0 {
		return warnings, apierrors.NewInvalid(edgev1.GroupVersion.WithKind("UnitDeployment").GroupKind(), ud.Name, errs)
	}
	return warnings, nil
}

// ValidateSpec returns what makes ud's instances impossible to render:
// selectors that do not parse, a pod template without containers,
// container overrides of containers the template lacks, patch operations
// without their value, and overrides whose patches break the instance,
// alone or after the overrides before them.
func ValidateSpec(ud *edgev1.UnitDeployment) field.ErrorList {
	spec := field.NewPath("spec")
	errs := selectorErrors(ud.Spec.Units.Selector, spec.Child("units", "selector"))
	pod := &ud.Spec.Template.Spec.Template.Spec
	if len(pod.Containers) == 0 {
		errs = append(errs, field.Required(spec.Child("template", "spec", "template", "spec", "containers"),
			"the pod template needs at least one container"))
	}
	// Overrides refused here are not rendered: that would report the same
	// fault twice.
	unrenderable := map[int]bool{}
	for i, o := range ud.Spec.Overrides {
		path := spec.Child("overrides").Index(i)
		errs = append(errs, selectorErrors(o.Units.Selector, path.Child("units", "selector"))...)
		for j, co := range o.Containers {
			if !slices.ContainsFunc(pod.Containers, named(co.Name)) && !slices.ContainsFunc(pod.InitContainers, named(co.Name)) {
				errs = append(errs, field.Invalid(path.Child("containers").Index(j).Child("name"), co.Name,
					"the pod template has no container or init container of this name"))
				unrenderable[i] = true
			}
		}
		// JSON patch takes a missing value as null, which would silently
		// clear the field; the schema cannot require it (see JSONPatch).
		for k, p := range o.Patches {
			if p.Value == nil && slices.Contains(valueOps, p.Op) {
				errs = append(errs, field.Required(path.Child("patches").Index(k).Child("value"), "value is required for add, replace and test"))
				unrenderable[i] = true
			}
		}
	}
	return append(errs, renderErrors(ud, unrenderable)...)
}

func selectorErrors(sel *metav1.LabelSelector, path *field.Path) field.ErrorList {
	if sel == nil {
		return nil
	}
	if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
		return field.ErrorList{field.Invalid(path, sel, err.Error())}
	}
	return nil
}

func named(name string) func(c corev1.Container) bool {
	return func(c corev1.Container) bool { return c.Name == name }
}

// renderErrors renders ud's instance for PlaceholderUnit with each override
// alone, then with all of them in order, and names the override where
// rendering breaks. The whole chain is checked because overrides select
// units by labels that change after admission: any of them may end up
// applying to the same unit. Overrides in skip are left out.
func renderErrors(ud *edgev1.UnitDeployment, skip map[int]bool) field.ErrorList {
	rev := udcontroller.Revision(&ud.Spec)
	var errs field.ErrorList
	var chain []int
	for i := range ud.Spec.Overrides {
		if skip[i] {
			continue
		}
		if err := render(ud, rev, []int{i}); err != nil {
			errs = append(errs, field.Invalid(patchesPath(ud, i), field.OmitValueType{}, detail(i, err)))
			continue
		}
		chain = append(chain, i)
	}
	if len(chain) < 2 || render(ud, rev, chain) == nil {
		return errs
	}
	// Each override renders alone: the first prefix that fails ends with
	// the override that does not compose with the ones before it.
	for k := 2; k <= len(chain); k++ {
		if err := render(ud, rev, chain[:k]); err != nil {
			i := chain[k-1]
			before := make([]string, k-1)
			for j, b := range chain[:k-1] {
				before[j] = fmt.Sprintf("spec.overrides[%d]", b)
			}
			errs = append(errs, field.Invalid(patchesPath(ud, i), field.OmitValueType{}, fmt.Sprintf(
				"after %s, which may select the same unit: %s", strings.Join(before, ", "), detail(i, err))))
			break
		}
	}
	return errs
}

// render renders ud's instance for PlaceholderUnit with exactly the
// overrides at indexes only (their indexes unchanged, so Instance's errors
// name them right) and checks the pod template keeps a container.
func render(ud *edgev1.UnitDeployment, rev string, only []int) error {
	// Instance does not modify its input: a shallow copy with new override
	// selectors is enough.
	probe := *ud
	probe.Spec.Overrides = make([]edgev1.UnitOverride, len(ud.Spec.Overrides))
	for i, o := range ud.Spec.Overrides {
		o.Units = edgev1.UnitSelector{Names: []string{}} // selects nothing
		if slices.Contains(only, i) {
			o.Units.Names = []string{PlaceholderUnit}
		}
		probe.Spec.Overrides[i] = o
	}
	d, err := udcontroller.Instance(&probe, udcontroller.Unit{Name: PlaceholderUnit}, rev)
	if err != nil {
		return err
	}
	// A template without containers is reported on its own.
	if len(d.Spec.Template.Spec.Containers) == 0 && len(ud.Spec.Template.Spec.Template.Spec.Containers) > 0 {
		return errors.New("the patches leave the pod template without containers")
	}
	return nil
}

// patchesPath is where an override that breaks the instance is reported:
// its patches, or the override itself when it has none (a container
// override can fail after a patch before it removed the container).
func patchesPath(ud *edgev1.UnitDeployment, i int) *field.Path {
	p := field.NewPath("spec", "overrides").Index(i)
	if len(ud.Spec.Overrides[i].Patches) == 0 {
		return p
	}
	return p.Child("patches")
}

// detail is Instance's error without the override and the "patches"
// it names, which the field path already says.
func detail(i int, err error) string {
	msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("spec.overrides[%d]: ", i))
	return strings.TrimPrefix(msg, "patches: ")
}

// unitWarnings warns about units spec.units names that do not exist, and
// about units an override names that spec.units does not select. A failed
// lookup is a warning too: it must never block the UnitDeployment.
func (v *Validator) unitWarnings(ctx context.Context, ud *edgev1.UnitDeployment) admission.Warnings {
	var warnings admission.Warnings
	units := ud.Spec.Units
	for i, name := range units.Names {
		switch u, err := v.unit(ctx, name); {
		case err != nil:
			warnings = append(warnings, fmt.Sprintf("spec.units.names[%d]: could not check that the EdgeUnit exists: %v", i, err))
		case u == nil:
			warnings = append(warnings, fmt.Sprintf("spec.units.names[%d]: EdgeUnit %s does not exist (yet); it gets an instance once it does", i, name))
		}
	}
	// An unparsable selector selects nothing; it is refused already.
	if units.Selector != nil {
		if _, err := metav1.LabelSelectorAsSelector(units.Selector); err != nil {
			return capped(warnings)
		}
	}
	for i, o := range ud.Spec.Overrides {
		for _, name := range o.Units.Names {
			var labels map[string]string
			if units.Selector != nil {
				u, err := v.unit(ctx, name)
				if err != nil {
					warnings = append(warnings, fmt.Sprintf("spec.overrides[%d].units.names: could not check that spec.units selects the EdgeUnit: %v", i, err))
					continue
				}
				if u == nil {
					continue // Its labels, once it exists, are unknown.
				}
				labels = u.Labels
			}
			if !udcontroller.Selects(units, name, labels) {
				warnings = append(warnings, fmt.Sprintf("spec.overrides[%d].units.names: EdgeUnit %s is not selected by spec.units; the override has no effect on it", i, name))
			}
		}
	}
	return capped(warnings)
}

// unit is the named EdgeUnit, or nil when it does not exist.
func (v *Validator) unit(ctx context.Context, name string) (*edgev1.EdgeUnit, error) {
	u := &edgev1.EdgeUnit{}
	if err := v.Reader.Get(ctx, types.NamespacedName{Name: name}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("getting EdgeUnit %s: %w", name, err)
	}
	return u, nil
}

func capped(warnings admission.Warnings) admission.Warnings {
	if len(warnings) <= maxWarnings {
		return warnings
	}
	return append(warnings[:maxWarnings-1:maxWarnings-1], fmt.Sprintf("%d more warnings like these left out", len(warnings)-maxWarnings+1))
}
