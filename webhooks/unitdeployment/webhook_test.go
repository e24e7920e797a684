package unitdeployment_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

var uniq = suite.Uniq

// createUnit creates an EdgeUnit and waits until the webhook's cache has
// it.
func createUnit(ctx context.Context, labels map[string]string) string {
	GinkgoHelper()
	u := &edgev1.EdgeUnit{
		ObjectMeta: metav1.ObjectMeta{Name: uniq("unit"), Labels: labels},
		Spec:       edgev1.EdgeUnitSpec{NodePools: []string{uniq("pool")}},
	}
	Expect(k8s.Create(ctx, u)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, u))).To(Succeed()) })
	Eventually(func() error { return cached.Get(ctx, client.ObjectKeyFromObject(u), &edgev1.EdgeUnit{}) }).Should(Succeed())
	return u.Name
}

// newUD is a UnitDeployment of units, with one container "app".
func newUD(units edgev1.UnitSelector, overrides ...edgev1.UnitOverride) *edgev1.UnitDeployment {
	return &edgev1.UnitDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: uniq("web"), Namespace: namespace},
		Spec: edgev1.UnitDeploymentSpec{
			Units: units,
			Template: edgev1.InstanceTemplate{Spec: edgev1.InstanceSpec{Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:1"}}},
			}}},
			Overrides: overrides,
		},
	}
}

// create creates ud, deleted when the spec ends if it was accepted.
func create(ctx context.Context, ud *edgev1.UnitDeployment) error {
	err := k8s.Create(ctx, ud)
	if err == nil {
		DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, ud))).To(Succeed()) })
	}
	return err
}

// expectInvalid asserts err is an Invalid error naming field.
func expectInvalid(err error, field, detail string) {
	GinkgoHelper()
	Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
	Expect(err.Error()).To(ContainSubstring(field))
	Expect(err.Error()).To(ContainSubstring(detail))
}

var _ = Describe("UnitDeployment webhook", func() {
	BeforeEach(func() { warnings.Take() })

	It("accepts a valid UnitDeployment without warnings, and refuses an update that breaks it", func(ctx SpecContext) {
		eu := createUnit(ctx, map[string]string{"region": "eu"})
		ud := newUD(names(eu),
			edgev1.UnitOverride{Units: names(eu), Containers: []edgev1.ContainerOverride{{Name: "app", Image: "registry.example/web:2"}}},
			override(selector("region", "eu"), patch("add", "/spec/template/spec/containers/0/args", `["--edge"]`)),
		)
		Expect(create(ctx, ud)).To(Succeed())
		Expect(warnings.Take()).To(BeEmpty())

		ud.Spec.Overrides[1].Patches = append(ud.Spec.Overrides[1].Patches, patch("replace", "/metadata/namespace", `"elsewhere"`))
		expectInvalid(k8s.Update(ctx, ud), "spec.overrides[1].patches", "name or namespace")
	})

	It("refuses a patch that changes spec.selector, naming the override", func(ctx SpecContext) {
		err := create(ctx, newUD(names("shop-a"), override(names("shop-a"),
			patch("replace", "/spec/selector/matchLabels", `{"a":"b"}`))))
		expectInvalid(err, "spec.overrides[0].patches", "spec.selector")
	})

	It("refuses a patch that adds an unknown field", func(ctx SpecContext) {
		err := create(ctx, newUD(names("shop-a"),
			override(names("shop-a")),
			override(selector("tier", "gold"), patch("add", "/spec/template/spec/bogus", `true`))))
		expectInvalid(err, "spec.overrides[1].patches", `unknown field "bogus"`)
	})

	It("refuses an add without a value, which the schema lets through", func(ctx SpecContext) {
		err := create(ctx, newUD(names("shop-a"), override(names("shop-a"), patch("add", "/spec/template/spec/hostNetwork", ""))))
		expectInvalid(err, "spec.overrides[0].patches[0].value", "value is required")
	})

	It("refuses a container override of a container the template lacks", func(ctx SpecContext) {
		err := create(ctx, newUD(names("shop-a"), edgev1.UnitOverride{
			Units:      names("shop-a"),
			Containers: []edgev1.ContainerOverride{{Name: "sidecar", Image: "registry.example/sidecar:1"}},
		}))
		expectInvalid(err, "spec.overrides[0].containers[0].name", `"sidecar"`)
	})

	It("refuses units with both names and a selector (CEL)", func(ctx SpecContext) {
		both := edgev1.UnitSelector{Names: []string{"shop-a"}, Selector: &metav1.LabelSelector{}}
		expectInvalid(create(ctx, newUD(both)), "spec.units", "set exactly one of names and selector")
		expectInvalid(create(ctx, newUD(names("shop-a"), override(both))), "spec.overrides[0].units", "set exactly one of names and selector")
	})

	It("warns, without refusing, about a missing unit and an override of a unit spec.units does not select", func(ctx SpecContext) {
		eu, us := createUnit(ctx, map[string]string{"region": "eu"}), createUnit(ctx, map[string]string{"region": "us"})
		missing := uniq("missing")
		Expect(create(ctx, newUD(names(eu, missing), override(names(us))))).To(Succeed())
		Expect(warnings.Take()).To(ConsistOf(
			"spec.units.names[1]: EdgeUnit "+missing+" does not exist (yet); it gets an instance once it does",
			"spec.overrides[0].units.names: EdgeUnit "+us+" is not selected by spec.units; the override has no effect on it",
		))

		Expect(create(ctx, newUD(selector("region", "eu"), override(names(eu, us))))).To(Succeed())
		Expect(warnings.Take()).To(ConsistOf(
			"spec.overrides[0].units.names: EdgeUnit " + us + " is not selected by spec.units; the override has no effect on it",
		))
	})
})
