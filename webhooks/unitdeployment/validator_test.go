package unitdeployment_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	udwebhook "github.com/edgeunit/edgeunit/webhooks/unitdeployment"
)

// validUD is a UnitDeployment the validator accepts without warnings
// against the units of fakeReader, changed by change.
func validUD(change func(*edgev1.UnitDeployment)) *edgev1.UnitDeployment {
	ud := &edgev1.UnitDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: edgev1.UnitDeploymentSpec{
			Units: edgev1.UnitSelector{Names: []string{"shop-1", "shop-2"}},
			Template: edgev1.InstanceTemplate{Spec: edgev1.InstanceSpec{Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{
					InitContainers: []corev1.Container{{Name: "init", Image: "registry.example/init:1"}},
					Containers: []corev1.Container{{
						Name: "app", Image: "registry.example/web:1",
						Env: []corev1.EnvVar{{Name: "MODE", Value: "edge"}},
					}},
				},
			}}},
		},
	}
	if change != nil {
		change(ud)
	}
	return ud
}

func override(units edgev1.UnitSelector, patches ...edgev1.JSONPatch) edgev1.UnitOverride {
	return edgev1.UnitOverride{Units: units, Patches: patches}
}

func names(n ...string) edgev1.UnitSelector { return edgev1.UnitSelector{Names: n} }

func selector(k, v string) edgev1.UnitSelector {
	return edgev1.UnitSelector{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}}
}

func patch(op, path, value string) edgev1.JSONPatch {
	p := edgev1.JSONPatch{Op: edgev1.PatchOp(op), Path: path}
	if value != "" {
		p.Value = &apiextensionsv1.JSON{Raw: []byte(value)}
	}
	return p
}

func edgeUnit(name string, labels map[string]string) *edgev1.EdgeUnit {
	return &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// fakeReader holds shop-1 (region eu) and shop-2 (region us); shop-9 does
// not exist.
func fakeReader(t *testing.T) client.WithWatch {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := edgev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		edgeUnit("shop-1", map[string]string{"region": "eu"}),
		edgeUnit("shop-2", map[string]string{"region": "us"}),
	).Build()
}

// failingReader fails every Get as a broken cache would.
func failingReader(t *testing.T) client.WithWatch {
	return interceptor.NewClient(fakeReader(t), interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return errors.New("boom")
		},
	})
}

func TestValidator(t *testing.T) {
	tests := map[string]struct {
		ud      *edgev1.UnitDeployment
		failGet bool
		// fields the refusal names, exactly; none means allowed.
		fields []string
		// detail is in the refusal's message.
		detail   string
		warnings admission.Warnings
	}{
		"valid, by names": {ud: validUD(nil)},
		"valid, by selector, with every kind of override": {ud: validUD(func(ud *edgev1.UnitDeployment) {
			ud.Spec.Units = selector("region", "eu")
			ud.Spec.Overrides = []edgev1.UnitOverride{
				{Units: selector("tier", "gold"), Replicas: new(int32(3))},
				{Units: names("shop-1"), Containers: []edgev1.ContainerOverride{
					{Name: "app", Image: "registry.example/web:2", Env: []corev1.EnvVar{{Name: "MODE", Value: "gold"}}},
					{Name: "init", Image: "registry.example/init:2"},
				}},
				override(selector("region", "eu"),
					patch("add", "/spec/template/spec/containers/0/args", `["--verbose"]`),
					patch("replace", "/spec/template/spec/containers/0/env/0/value", `"patched"`),
					patch("add", "/metadata/labels/team", `"a"`),
					patch("test", "/spec/template/spec/containers/0/name", `"app"`),
				),
			}
		})},
		"an override of units that exist nowhere is still rendered": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{override(selector("never", "matches"), patch("add", "/spec/bogus", `1`))}
			}),
			fields: []string{"spec.overrides[0].patches"}, detail: `unknown field "bogus"`,
		},
		"spec.units.selector does not parse": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Units = edgev1.UnitSelector{Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "region", Operator: metav1.LabelSelectorOpIn},
				}}}
				// Not warned about: the selector selects nothing.
				ud.Spec.Overrides = []edgev1.UnitOverride{override(names("shop-2"))}
			}),
			fields: []string{"spec.units.selector"}, detail: "values set can't be empty",
		},
		"an override's selector does not parse": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{
					override(names("shop-1")),
					override(edgev1.UnitSelector{Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
						{Key: "region", Operator: "Near", Values: []string{"eu"}},
					}}}),
				}
			}),
			fields: []string{"spec.overrides[1].units.selector"}, detail: "not a valid label selector operator",
		},
		"the pod template has no containers": {
			ud:     validUD(func(ud *edgev1.UnitDeployment) { ud.Spec.Template.Spec.Template.Spec.Containers = nil }),
			fields: []string{"spec.template.spec.template.spec.containers"},
		},
		"a container override names an absent container": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{{Units: names("shop-1"), Containers: []edgev1.ContainerOverride{
					{Name: "app", Image: "registry.example/web:2"},
					{Name: "sidecar", Image: "registry.example/sidecar:1"},
				}}}
			}),
			fields: []string{"spec.overrides[0].containers[1].name"}, detail: `"sidecar"`,
		},
		"a patch changes spec.selector": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{override(names("shop-1"), patch("replace", "/spec/selector/matchLabels", `{"a":"b"}`))}
			}),
			fields: []string{"spec.overrides[0].patches"}, detail: "spec.selector",
		},
		"a patch renames the instance": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{override(names("shop-1"), patch("replace", "/metadata/name", `"other"`))}
			}),
			fields: []string{"spec.overrides[0].patches"}, detail: "name or namespace",
		},
		"a patch unpins the instance from its unit": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{override(names("shop-1"), patch("remove", "/spec/template/spec/nodeSelector", ""))}
			}),
			fields: []string{"spec.overrides[0].patches"}, detail: edgev1.LabelUnit,
		},
		"a patch adds an unknown field": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{override(names("shop-1"), patch("add", "/spec/template/spec/bogus", `true`))}
			}),
			fields: []string{"spec.overrides[0].patches"}, detail: `unknown field "bogus"`,
		},
		"a patch sets a field of the wrong type": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{override(names("shop-1"), patch("replace", "/spec/replicas", `"three"`))}
			}),
			fields: []string{"spec.overrides[0].patches"}, detail: "not a Deployment",
		},
		"a patch's path does not exist": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{override(names("shop-1"), patch("replace", "/spec/template/spec/containers/3/image", `"x"`))}
			}),
			fields: []string{"spec.overrides[0].patches"},
		},
		"a patch removes every container": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{override(names("shop-1"), patch("remove", "/spec/template/spec/containers/0", ""))}
			}),
			fields: []string{"spec.overrides[0].patches"}, detail: "without containers",
		},
		"add, replace and test without a value": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{override(names("shop-1"),
					patch("add", "/spec/template/spec/hostNetwork", ""),
					patch("remove", "/spec/template/spec/containers/0/env", ""),
					patch("replace", "/spec/replicas", ""),
				)}
			}),
			fields: []string{"spec.overrides[0].patches[0].value", "spec.overrides[0].patches[2].value"},
		},
		"overrides that render alone but not one after the other": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{
					override(selector("region", "eu"), patch("remove", "/spec/template/spec/containers/0/env", "")),
					override(names("shop-1")),
					override(names("shop-2"), patch("replace", "/spec/template/spec/containers/0/env/0/value", `"x"`)),
				}
			}),
			fields: []string{"spec.overrides[2].patches"}, detail: "after spec.overrides[0], spec.overrides[1], which may select the same unit",
		},
		"a container override after a patch renamed its container": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{
					override(names("shop-1"), patch("replace", "/spec/template/spec/containers/0/name", `"renamed"`)),
					{Units: names("shop-1"), Containers: []edgev1.ContainerOverride{{Name: "app", Image: "registry.example/web:2"}}},
				}
			}),
			fields: []string{"spec.overrides[1]"}, detail: `no container "app"`,
		},
		"each broken override is named once": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Overrides = []edgev1.UnitOverride{
					override(names("shop-1"), patch("add", "/spec/bogus", `1`)),
					{Units: names("shop-1"), Containers: []edgev1.ContainerOverride{{Name: "nope"}}},
					override(names("shop-2"), patch("replace", "/spec/selector/matchLabels", `{"a":"b"}`)),
					override(names("shop-2"), patch("add", "/spec/template/spec/containers/0/args", `["ok"]`)),
				}
			}),
			fields: []string{"spec.overrides[0].patches", "spec.overrides[1].containers[0].name", "spec.overrides[2].patches"},
		},
		"a UnitDeployment being deleted is not checked": {ud: validUD(func(ud *edgev1.UnitDeployment) {
			ud.DeletionTimestamp = new(metav1.Now())
			ud.Finalizers = []string{"example.com/hold"}
			ud.Spec.Units.Names = []string{"shop-9"}
			ud.Spec.Template.Spec.Template.Spec.Containers = nil
		})},

		"warns about a unit that does not exist": {
			ud:       validUD(func(ud *edgev1.UnitDeployment) { ud.Spec.Units.Names = []string{"shop-1", "shop-9"} }),
			warnings: admission.Warnings{"spec.units.names[1]: EdgeUnit shop-9 does not exist (yet); it gets an instance once it does"},
		},
		"warns about override names spec.units.names lacks": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Units.Names = []string{"shop-1"}
				ud.Spec.Overrides = []edgev1.UnitOverride{
					override(selector("region", "us")), // a selector is not checked
					override(names("shop-1", "shop-2", "shop-9")),
				}
			}),
			warnings: admission.Warnings{
				"spec.overrides[1].units.names: EdgeUnit shop-2 is not selected by spec.units; the override has no effect on it",
				"spec.overrides[1].units.names: EdgeUnit shop-9 is not selected by spec.units; the override has no effect on it",
			},
		},
		"warns about override names spec.units.selector does not match, if they exist": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Units = selector("region", "eu")
				ud.Spec.Overrides = []edgev1.UnitOverride{override(names("shop-1", "shop-2", "shop-9"))}
			}),
			warnings: admission.Warnings{
				"spec.overrides[0].units.names: EdgeUnit shop-2 is not selected by spec.units; the override has no effect on it",
			},
		},
		"warns about failed lookups, without refusing": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Units.Names = []string{"shop-1"}
			}),
			failGet:  true,
			warnings: admission.Warnings{"spec.units.names[0]: could not check that the EdgeUnit exists: getting EdgeUnit shop-1: boom"},
		},
		"warns about failed lookups of override names": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Units = selector("region", "eu")
				ud.Spec.Overrides = []edgev1.UnitOverride{override(names("shop-2"))}
			}),
			failGet:  true,
			warnings: admission.Warnings{"spec.overrides[0].units.names: could not check that spec.units selects the EdgeUnit: getting EdgeUnit shop-2: boom"},
		},
		"warns along with a refusal": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Units.Names = []string{"shop-9"}
				ud.Spec.Overrides = []edgev1.UnitOverride{{Units: names("shop-9"), Containers: []edgev1.ContainerOverride{{Name: "nope"}}}}
			}),
			fields:   []string{"spec.overrides[0].containers[0].name"},
			warnings: admission.Warnings{"spec.units.names[0]: EdgeUnit shop-9 does not exist (yet); it gets an instance once it does"},
		},
		"caps the warnings": {
			ud: validUD(func(ud *edgev1.UnitDeployment) {
				ud.Spec.Units.Names = nil
				for i := range 25 {
					ud.Spec.Units.Names = append(ud.Spec.Units.Names, fmt.Sprintf("gone-%d", i))
				}
			}),
			warnings: func() admission.Warnings {
				var w admission.Warnings
				for i := range 19 {
					w = append(w, fmt.Sprintf("spec.units.names[%d]: EdgeUnit gone-%d does not exist (yet); it gets an instance once it does", i, i))
				}
				return append(w, "6 more warnings like these left out")
			}(),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			reader := fakeReader(t)
			if tc.failGet {
				reader = failingReader(t)
			}
			v := &udwebhook.Validator{Reader: reader}
			ctx := t.Context()
			warnings, err := v.ValidateCreate(ctx, tc.ud)
			checkResult(t, "create", warnings, err, tc.fields, tc.detail, tc.warnings)
			// An update is held to the same rules, whatever it changes.
			warnings, err = v.ValidateUpdate(ctx, validUD(nil), tc.ud)
			checkResult(t, "update", warnings, err, tc.fields, tc.detail, tc.warnings)
		})
	}
}

func checkResult(t *testing.T, op string, warnings admission.Warnings, err error, fields []string, detail string, wantWarnings admission.Warnings) {
	t.Helper()
	if diff := cmp.Diff(wantWarnings, warnings); diff != "" {
		t.Errorf("%s: warnings (-want +got):\n%s", op, diff)
	}
	if len(fields) == 0 {
		if err != nil {
			t.Errorf("%s: refused: %v", op, err)
		}
		return
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("%s: got %v, want an Invalid error", op, err)
	}
	var got []string
	for _, c := range err.(apierrors.APIStatus).Status().Details.Causes {
		got = append(got, c.Field)
	}
	slices.Sort(got)
	if diff := cmp.Diff(fields, got); diff != "" {
		t.Errorf("%s: refused fields (-want +got):\n%s\nerror: %v", op, diff, err)
	}
	if !strings.Contains(err.Error(), detail) {
		t.Errorf("%s: error %q does not say %q", op, err, detail)
	}
}

func TestValidateDeleteAllowsAnything(t *testing.T) {
	v := &udwebhook.Validator{Reader: failingReader(t)}
	broken := validUD(func(ud *edgev1.UnitDeployment) { ud.Spec.Template.Spec.Template.Spec.Containers = nil })
	warnings, err := v.ValidateDelete(t.Context(), broken)
	if err != nil || warnings != nil {
		t.Errorf("ValidateDelete = %v, %v; want nothing", warnings, err)
	}
}
