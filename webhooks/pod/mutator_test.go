package pod_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

var uniq = suite.Uniq

// autonomousNode creates a node as the NodePool controller leaves it for
// an autonomous pool (duration "" means not autonomous), and waits until
// the webhook's cache has it: a node the cache has not seen yet is an
// unknown node to the webhook, which then leaves the pod alone.
func autonomousNode(ctx context.Context, duration string) string {
	GinkgoHelper()
	name := suite.AutonomousNode(ctx, k8s, duration)
	inCache(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})
	return name
}

// pool creates a NodePool and waits until the webhook's cache has it.
func pool(ctx context.Context, autonomy *edgev1.AutonomySpec) string {
	GinkgoHelper()
	p := &edgev1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: uniq("pool")}, Spec: edgev1.NodePoolSpec{Autonomy: autonomy}}
	Expect(k8s.Create(ctx, p)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, p))).To(Succeed()) })
	inCache(ctx, p.DeepCopy())
	return p.Name
}

// inCache waits until the manager's cache, which the webhook reads, holds
// obj. Nothing in this suite changes a node or pool after creating it, so
// the version the cache holds is the one created.
func inCache(ctx context.Context, obj client.Object) {
	GinkgoHelper()
	Eventually(func() error { return cached.Get(ctx, client.ObjectKeyFromObject(obj), obj) }).
		Should(Succeed(), "the cache never saw %T %s", obj, obj.GetName())
}

func newPod(change func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: uniq("pod"), Namespace: "default"},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			Containers:                   []corev1.Container{{Name: "app", Image: "registry.example/app:1"}},
		},
	}
	change(p)
	return p
}

// create creates pod and returns it as stored.
func create(ctx context.Context, p *corev1.Pod) *corev1.Pod {
	GinkgoHelper()
	Expect(k8s.Create(ctx, p)).To(Succeed())
	DeferCleanup(func(ctx context.Context) {
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, p, client.GracePeriodSeconds(0)))).To(Succeed())
	})
	return p
}

func link(key string, secs *int64) corev1.Toleration {
	return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs}
}

// defaults are the tolerations kube-apiserver's DefaultTolerationSeconds
// plugin adds.
var defaults = []corev1.Toleration{link(corev1.TaintNodeNotReady, ptr.To[int64](300)), link(corev1.TaintNodeUnreachable, ptr.To[int64](300))}

func onPools(pools ...string) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: edgev1.LabelNodePool, Operator: corev1.NodeSelectorOpIn, Values: pools}}}},
	}}}
}

var _ = Describe("Pod webhook", func() {
	It("lengthens the default tolerations of a pod with nodeName on an autonomous node", func(ctx SpecContext) {
		node := autonomousNode(ctx, "2h0m0s")
		p := create(ctx, newPod(func(p *corev1.Pod) { p.Spec.NodeName = node }))
		// One toleration per key: the webhook ran after DefaultTolerationSeconds
		// and changed its 300 s in place. An appended second toleration would
		// be ignored by the taint-eviction controller, which honours the
		// first match.
		Expect(p.Spec.Tolerations).To(ConsistOf(
			link(corev1.TaintNodeNotReady, ptr.To[int64](7200)),
			link(corev1.TaintNodeUnreachable, ptr.To[int64](7200)),
		))
	})

	It("leaves pods on nodes without autonomy with the defaults", func(ctx SpecContext) {
		node := autonomousNode(ctx, "")
		p := create(ctx, newPod(func(p *corev1.Pod) { p.Spec.NodeName = node }))
		Expect(p.Spec.Tolerations).To(Equal(defaults))
	})

	It("leaves pods whose node is unknown at admission to the controller", func(ctx SpecContext) {
		p := create(ctx, newPod(func(*corev1.Pod) {}))
		Expect(p.Spec.Tolerations).To(Equal(defaults))
	})

	It("gives unbounded tolerations without seconds", func(ctx SpecContext) {
		node := autonomousNode(ctx, edgev1.AutonomyUnbounded)
		p := create(ctx, newPod(func(p *corev1.Pod) { p.Spec.NodeName = node }))
		Expect(p.Spec.Tolerations).To(ConsistOf(link(corev1.TaintNodeNotReady, nil), link(corev1.TaintNodeUnreachable, nil)))
	})

	It("handles a DaemonSet pod pinned by node affinity", func(ctx SpecContext) {
		node := autonomousNode(ctx, "30m0s")
		p := create(ctx, newPod(func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "agent", UID: "00000000-0000-0000-0000-000000000001", Controller: ptr.To(true)}}
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}}},
			}}}
		}))
		Expect(p.Spec.Tolerations).To(ConsistOf(
			link(corev1.TaintNodeNotReady, ptr.To[int64](1800)),
			link(corev1.TaintNodeUnreachable, ptr.To[int64](1800)),
		))
	})

	It("handles a pod pinned to an autonomous pool by nodeSelector", func(ctx SpecContext) {
		p1 := pool(ctx, &edgev1.AutonomySpec{Enabled: true, Duration: &metav1.Duration{Duration: time.Hour}})
		p := create(ctx, newPod(func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{edgev1.LabelNodePool: p1} }))
		Expect(p.Spec.Tolerations).To(ConsistOf(
			link(corev1.TaintNodeNotReady, ptr.To[int64](3600)),
			link(corev1.TaintNodeUnreachable, ptr.To[int64](3600)),
		))
	})

	It("takes the shortest window of the pools a pod may land in", func(ctx SpecContext) {
		hour := pool(ctx, &edgev1.AutonomySpec{Enabled: true, Duration: &metav1.Duration{Duration: time.Hour}})
		forever := pool(ctx, &edgev1.AutonomySpec{Enabled: true})
		p := create(ctx, newPod(func(p *corev1.Pod) { p.Spec.Affinity = onPools(hour, forever) }))
		Expect(p.Spec.Tolerations).To(ConsistOf(
			link(corev1.TaintNodeNotReady, ptr.To[int64](3600)),
			link(corev1.TaintNodeUnreachable, ptr.To[int64](3600)),
		))
	})

	It("does nothing when one of the pools is not autonomous", func(ctx SpecContext) {
		auto := pool(ctx, &edgev1.AutonomySpec{Enabled: true})
		plain := pool(ctx, nil)
		p := create(ctx, newPod(func(p *corev1.Pod) { p.Spec.Affinity = onPools(auto, plain) }))
		Expect(p.Spec.Tolerations).To(Equal(defaults))
	})

	It("keeps a user's longer toleration", func(ctx SpecContext) {
		node := autonomousNode(ctx, "2h0m0s")
		p := create(ctx, newPod(func(p *corev1.Pod) {
			p.Spec.NodeName = node
			p.Spec.Tolerations = []corev1.Toleration{link(corev1.TaintNodeUnreachable, ptr.To[int64](86400))}
		}))
		Expect(p.Spec.Tolerations).To(ConsistOf(
			link(corev1.TaintNodeUnreachable, ptr.To[int64](86400)),
			link(corev1.TaintNodeNotReady, ptr.To[int64](7200)),
		))
	})
})
