package topology_test

import (
	"context"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/topology"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

var uniq = suite.Uniq

// newService creates a Service the way a user's tool would, with
// client-side writes under the manager name "user".
func newService(ctx context.Context, annotations map[string]string, change func(*corev1.Service)) *corev1.Service {
	GinkgoHelper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: uniq("svc"), Namespace: "default", Annotations: annotations, Labels: map[string]string{"app": "web"}},
		Spec: corev1.ServiceSpec{
			Selector:        map[string]string{"app": "web"},
			Ports:           []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
			SessionAffinity: corev1.ServiceAffinityClientIP,
		},
	}
	if change != nil {
		change(svc)
	}
	Expect(k8s.Create(ctx, svc, client.FieldOwner("user"))).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, svc))).To(Succeed()) })
	return svc
}

// get reads the Service; polled by Eventually, a failed read is retried.
// Outside one, call it with Default.
func get(ctx context.Context, svc *corev1.Service) func(Gomega) *corev1.Service {
	return func(g Gomega) *corev1.Service {
		s := &corev1.Service{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(svc), s)).To(Succeed())
		return s
	}
}

func distribution(s *corev1.Service) string {
	if s.Spec.TrafficDistribution == nil {
		return ""
	}
	return *s.Spec.TrafficDistribution
}

// setAnnotation sets (or, with value nil, removes) the topology annotation
// with a merge patch, as kubectl annotate does.
func setAnnotation(ctx context.Context, svc *corev1.Service, value *string) {
	GinkgoHelper()
	v := "null"
	if value != nil {
		v = fmt.Sprintf("%q", *value)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, edgev1.AnnotationTopology, v)
	Expect(k8s.Patch(ctx, svc, client.RawPatch(types.MergePatchType, []byte(patch)), client.FieldOwner("user"))).To(Succeed())
}

func ptrTo(s string) *string { return &s }

// ownedBy returns the managers whose entries mention trafficDistribution.
func ownedBy(s *corev1.Service) []string {
	var out []string
	for _, m := range s.ManagedFields {
		if m.FieldsV1 != nil && strings.Contains(string(m.FieldsV1.Raw), `"f:trafficDistribution"`) {
			out = append(out, fmt.Sprintf("%s/%s", m.Manager, m.Operation))
		}
	}
	return out
}

var _ = Describe("Topology controller", func() {
	It("sets PreferSameZone for unit topology and releases it when the annotation goes", func(ctx SpecContext) {
		svc := newService(ctx, map[string]string{edgev1.AnnotationTopology: topology.TopologyUnit}, nil)
		Eventually(get(ctx, svc)).Should(WithTransform(distribution, Equal(corev1.ServiceTrafficDistributionPreferSameZone)))

		s := get(ctx, svc)(Default)
		Expect(ownedBy(s)).To(ConsistOf(topology.FieldOwner + "/Apply"))
		Expect(s.Spec.SessionAffinity).To(Equal(corev1.ServiceAffinityClientIP))
		Expect(s.Spec.Ports).To(HaveLen(1))
		Expect(s.Labels).To(Equal(map[string]string{"app": "web"}))
		// Another manager changes another field; the controller leaves it be.
		Expect(k8s.Patch(ctx, s, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"sessionAffinity":"None"}}`)), client.FieldOwner("user"))).To(Succeed())

		setAnnotation(ctx, svc, nil)
		Eventually(get(ctx, svc)).Should(WithTransform(distribution, BeEmpty()))
		s = get(ctx, svc)(Default)
		Expect(s.Spec.SessionAffinity).To(Equal(corev1.ServiceAffinityNone))
		Expect(s.Spec.Selector).To(Equal(map[string]string{"app": "web"}))
		for _, m := range s.ManagedFields {
			Expect(m.Manager).NotTo(Equal(topology.FieldOwner), "the controller's entry is gone")
		}
	})

	It("sets PreferSameNode for node topology and follows a change to unit", func(ctx SpecContext) {
		svc := newService(ctx, map[string]string{edgev1.AnnotationTopology: topology.TopologyNode}, nil)
		Eventually(get(ctx, svc)).Should(WithTransform(distribution, Equal(corev1.ServiceTrafficDistributionPreferSameNode)))
		setAnnotation(ctx, svc, ptrTo(topology.TopologyUnit))
		Eventually(get(ctx, svc)).Should(WithTransform(distribution, Equal(corev1.ServiceTrafficDistributionPreferSameZone)))
	})

	It("leaves a value another manager set when the annotation goes", func(ctx SpecContext) {
		svc := newService(ctx, nil, func(s *corev1.Service) {
			s.Spec.TrafficDistribution = ptrTo(corev1.ServiceTrafficDistributionPreferSameZone)
		})
		setAnnotation(ctx, svc, ptrTo(topology.TopologyUnit))
		// Same value: nothing to write.
		setAnnotation(ctx, svc, nil)
		// A later, unrelated Service proves the controller has caught up.
		marker := newService(ctx, map[string]string{edgev1.AnnotationTopology: topology.TopologyUnit}, nil)
		Eventually(get(ctx, marker)).Should(WithTransform(distribution, Equal(corev1.ServiceTrafficDistributionPreferSameZone)))
		s := get(ctx, svc)(Default)
		Expect(distribution(s)).To(Equal(corev1.ServiceTrafficDistributionPreferSameZone))
		Expect(ownedBy(s)).To(ConsistOf("user/Update"))
	})

	It("does not fight another manager's different value", func(ctx SpecContext) {
		svc := newService(ctx, map[string]string{edgev1.AnnotationTopology: topology.TopologyUnit}, func(s *corev1.Service) {
			s.Spec.TrafficDistribution = ptrTo(corev1.ServiceTrafficDistributionPreferSameNode)
		})
		Eventually(events(ctx, svc)).Should(ContainElement(topology.ReasonFieldConflict))
		s := get(ctx, svc)(Default)
		Expect(distribution(s)).To(Equal(corev1.ServiceTrafficDistributionPreferSameNode))
		Expect(ownedBy(s)).To(ConsistOf("user/Update"))
	})

	It("reports an invalid annotation and writes nothing", func(ctx SpecContext) {
		svc := newService(ctx, map[string]string{edgev1.AnnotationTopology: "zone"}, nil)
		Eventually(events(ctx, svc)).Should(ContainElement(topology.ReasonInvalidTopology))
		s := get(ctx, svc)(Default)
		Expect(s.Spec.TrafficDistribution).To(BeNil())
		for _, m := range s.ManagedFields {
			Expect(m.Manager).NotTo(Equal(topology.FieldOwner))
		}
	})
})

func events(ctx context.Context, svc *corev1.Service) func(Gomega) []string {
	return func(g Gomega) []string {
		var list eventsv1.EventList
		g.Expect(k8s.List(ctx, &list, client.InNamespace(svc.Namespace))).To(Succeed())
		var reasons []string
		for _, e := range list.Items {
			if e.Regarding.Name == svc.Name && e.Regarding.Kind == "Service" {
				reasons = append(reasons, e.Reason)
			}
		}
		return reasons
	}
}
