package edgeunit_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

var uniq = suite.Uniq

func newPool(ctx context.Context) string {
	GinkgoHelper()
	p := &edgev1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: uniq("pool")}}
	Expect(k8s.Create(ctx, p)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, p))).To(Succeed()) })
	return p.Name
}

func newEndpoint(ctx context.Context) string {
	GinkgoHelper()
	te := &edgev1.TunnelEndpoint{
		ObjectMeta: metav1.ObjectMeta{Name: uniq("tunnel")},
		Spec: edgev1.TunnelEndpointSpec{
			Replicas: ptr.To[int32](1),
			Service:  edgev1.TunnelExposure{Type: "ClusterIP", Addresses: []string{"127.0.0.1"}},
		},
	}
	Expect(k8s.Create(ctx, te)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, te))).To(Succeed()) })
	// The webhook reads through the cache.
	Eventually(func() error { return cached.Get(ctx, client.ObjectKeyFromObject(te), &edgev1.TunnelEndpoint{}) }).Should(Succeed())
	return te.Name
}

func unit(name string, pools ...string) *edgev1.EdgeUnit {
	return &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: edgev1.EdgeUnitSpec{NodePools: pools}}
}

// createUnit creates u and waits until the webhook's cache has it.
func createUnit(ctx context.Context, u *edgev1.EdgeUnit) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, u)).To(Succeed())
	DeferCleanup(func(ctx context.Context) {
		cur := &edgev1.EdgeUnit{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(u), cur); err == nil && controllerutil.RemoveFinalizer(cur, "test.edgeunit.io/hold") {
			Expect(k8s.Update(ctx, cur)).To(Succeed())
		}
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, u))).To(Succeed())
	})
	Eventually(func() error { return cached.Get(ctx, client.ObjectKeyFromObject(u), &edgev1.EdgeUnit{}) }).Should(Succeed())
}

var _ = Describe("EdgeUnit webhook", func() {
	BeforeEach(func() { warnings.Take() })

	It("refuses a unit that claims a pool another unit lists, naming the field and the unit", func(ctx SpecContext) {
		p1, p2 := newPool(ctx), newPool(ctx)
		first := uniq("first")
		createUnit(ctx, unit(first, p1))

		err := k8s.Create(ctx, unit(uniq("second"), p2, p1))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.nodePools[1]"))
		Expect(err.Error()).To(ContainSubstring("EdgeUnit " + first))
		Expect(err.Error()).NotTo(ContainSubstring("spec.nodePools[0]"))
	})

	It("refuses an update that adds a claimed pool, and allows other edits", func(ctx SpecContext) {
		p1, p2 := newPool(ctx), newPool(ctx)
		first := uniq("first")
		createUnit(ctx, unit(first, p1))
		second := unit(uniq("second"), p2)
		createUnit(ctx, second)

		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(second), second)).To(Succeed())
		second.Spec.NodePools = []string{p2, p1}
		err := k8s.Update(ctx, second)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.nodePools[1]"))

		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(second), second)).To(Succeed())
		second.Spec.Hub.Image = "registry.example/hub:2"
		Expect(k8s.Update(ctx, second)).To(Succeed())
	})

	It("lets a pool go to a new unit while its old unit is being deleted", func(ctx SpecContext) {
		p1 := newPool(ctx)
		old := unit(uniq("old"), p1)
		old.Finalizers = []string{"test.edgeunit.io/hold"}
		createUnit(ctx, old)
		Expect(k8s.Delete(ctx, old)).To(Succeed())
		Eventually(func(g Gomega) {
			u := &edgev1.EdgeUnit{}
			g.Expect(cached.Get(ctx, client.ObjectKeyFromObject(old), u)).To(Succeed())
			g.Expect(u.DeletionTimestamp.IsZero()).To(BeFalse(), "the cache does not show the deletion yet")
		}).Should(Succeed())
		createUnit(ctx, unit(uniq("new"), p1))
	})

	It("warns, without refusing, about a missing TunnelEndpoint and NodePool", func(ctx SpecContext) {
		u := unit(uniq("unit"), "nowhere")
		u.Spec.Tunnel = &edgev1.TunnelSpec{Endpoint: "missing-tunnel"}
		createUnit(ctx, u)
		Expect(warnings.Take()).To(ConsistOf(
			ContainSubstring("spec.tunnel.endpoint: TunnelEndpoint missing-tunnel does not exist"),
			ContainSubstring("spec.nodePools[0]: NodePool nowhere does not exist"),
		))
	})

	It("does not warn when the references exist", func(ctx SpecContext) {
		p1 := newPool(ctx)
		Eventually(func() error { return cached.Get(ctx, client.ObjectKey{Name: p1}, &edgev1.NodePool{}) }).Should(Succeed())
		u := unit(uniq("unit"), p1)
		u.Spec.Tunnel = &edgev1.TunnelSpec{Endpoint: newEndpoint(ctx)}
		warnings.Take()
		createUnit(ctx, u)
		Expect(warnings.Take()).To(BeEmpty())
	})
})
