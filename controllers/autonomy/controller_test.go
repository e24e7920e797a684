package autonomy_test

import (
	"context"
	"encoding/json"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/autonomy"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

var uniq = suite.Uniq

// newNode creates a node as the NodePool controller leaves it ("" duration:
// not autonomous).
func newNode(ctx context.Context, duration string) string {
	GinkgoHelper()
	return suite.AutonomousNode(ctx, k8s, duration)
}

func newPod(ctx context.Context, change func(*corev1.Pod)) *corev1.Pod {
	GinkgoHelper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: uniq("pod"), Namespace: "default"},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			Containers:                   []corev1.Container{{Name: "app", Image: "registry.example/app:1"}},
		},
	}
	if change != nil {
		change(p)
	}
	Expect(k8s.Create(ctx, p)).To(Succeed())
	DeferCleanup(func(ctx context.Context) {
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, p, client.GracePeriodSeconds(0)))).To(Succeed())
	})
	return p
}

// bind binds pod to node through pods/binding, as the scheduler does.
func bind(ctx context.Context, pod *corev1.Pod, node string) {
	GinkgoHelper()
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}
	Expect(k8s.SubResource("binding").Create(ctx, pod, b)).To(Succeed())
}

// tolerations reads the pod's tolerations; polled by Eventually, a failed
// read is retried.
func tolerations(ctx context.Context, pod *corev1.Pod) func() ([]corev1.Toleration, error) {
	return func() ([]corev1.Toleration, error) {
		p := &corev1.Pod{}
		err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), p)
		return p.Spec.Tolerations, err
	}
}

func link(key string, secs *int64) corev1.Toleration {
	return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs}
}

var defaults = []corev1.Toleration{link(corev1.TaintNodeNotReady, ptr.To[int64](300)), link(corev1.TaintNodeUnreachable, ptr.To[int64](300))}

// replaceTolerations writes a pod's tolerations as a JSON patch.
func replaceTolerations(ctx context.Context, pod *corev1.Pod, t []corev1.Toleration) error {
	patch, err := json.Marshal([]map[string]any{{"op": "replace", "path": "/spec/tolerations", "value": t}})
	Expect(err).NotTo(HaveOccurred())
	return k8s.Patch(ctx, pod, client.RawPatch(types.JSONPatchType, patch))
}

var _ = Describe("What kube-apiserver allows on a bound pod's tolerations", func() {
	// These specs pin down the limit the controller is built on; if a
	// future apiserver changes it, they fail first.
	// The pod carries a toleration of its own after the two that
	// DefaultTolerationSeconds adds on create (and re-adds on every update
	// that drops them, so removing those is a silent no-op).
	own := corev1.Toleration{Key: "example.com/edge", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	var pod *corev1.Pod
	BeforeEach(func(ctx SpecContext) {
		pod = newPod(ctx, func(p *corev1.Pod) {
			p.Spec.NodeName = newNode(ctx, "")
			p.Spec.Tolerations = []corev1.Toleration{own}
		})
		Expect(pod.Spec.Tolerations).To(Equal(append([]corev1.Toleration{own}, defaults...)), "DefaultTolerationSeconds is on")
	})

	It("allows raising, lowering and clearing tolerationSeconds", func(ctx SpecContext) {
		Expect(replaceTolerations(ctx, pod, []corev1.Toleration{own, link(corev1.TaintNodeNotReady, ptr.To[int64](7200)), link(corev1.TaintNodeUnreachable, nil)})).To(Succeed())
		Expect(replaceTolerations(ctx, pod, []corev1.Toleration{own, link(corev1.TaintNodeNotReady, ptr.To[int64](60)), link(corev1.TaintNodeUnreachable, ptr.To[int64](120))})).To(Succeed())
		Expect(tolerations(ctx, pod)()).To(Equal([]corev1.Toleration{own, link(corev1.TaintNodeNotReady, ptr.To[int64](60)), link(corev1.TaintNodeUnreachable, ptr.To[int64](120))}))
	})

	It("allows adding a toleration in front", func(ctx SpecContext) {
		added := corev1.Toleration{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](10)}
		Expect(replaceTolerations(ctx, pod, append([]corev1.Toleration{added, own}, defaults...))).To(Succeed())
		Expect(tolerations(ctx, pod)()).To(Equal(append([]corev1.Toleration{added, own}, defaults...)))
	})

	It("forbids removing a toleration or changing anything but its seconds", func(ctx SpecContext) {
		err := replaceTolerations(ctx, pod, defaults)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "removal: %v", err)
		Expect(err.Error()).To(ContainSubstring("existing toleration can not be modified except its tolerationSeconds"))

		changed := []corev1.Toleration{own, defaults[0], {Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpEqual, Effect: corev1.TaintEffectNoExecute}}
		err = replaceTolerations(ctx, pod, changed)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "operator change: %v", err)
	})
})

var _ = Describe("Autonomy controller", func() {
	It("lengthens the tolerations of a pod once the scheduler binds it to an autonomous node", func(ctx SpecContext) {
		node := newNode(ctx, "2h0m0s")
		pod := newPod(ctx, nil)
		Expect(pod.Spec.Tolerations).To(Equal(defaults))
		bind(ctx, pod, node)
		Eventually(tolerations(ctx, pod)).Should(Equal([]corev1.Toleration{
			link(corev1.TaintNodeNotReady, ptr.To[int64](7200)), link(corev1.TaintNodeUnreachable, ptr.To[int64](7200)),
		}))
	})

	It("makes the tolerations of a pod bound to an unbounded node unbounded", func(ctx SpecContext) {
		node := newNode(ctx, edgev1.AutonomyUnbounded)
		pod := newPod(ctx, nil)
		bind(ctx, pod, node)
		Eventually(tolerations(ctx, pod)).Should(Equal([]corev1.Toleration{link(corev1.TaintNodeNotReady, nil), link(corev1.TaintNodeUnreachable, nil)}))
	})

	It("follows a node that becomes autonomous, and leaves other pods alone", func(ctx SpecContext) {
		plain := newNode(ctx, "")
		later := newNode(ctx, "")
		untouched := newPod(ctx, nil)
		bind(ctx, untouched, plain)
		pod := newPod(ctx, nil)
		bind(ctx, pod, later)

		n := &corev1.Node{}
		Expect(k8s.Get(ctx, types.NamespacedName{Name: later}, n)).To(Succeed())
		before := n.DeepCopy()
		n.Labels = map[string]string{edgev1.LabelAutonomy: "true"}
		n.Annotations = map[string]string{edgev1.AnnotationAutonomyDuration: "45m0s"}
		Expect(k8s.Patch(ctx, n, client.MergeFrom(before))).To(Succeed())

		Eventually(tolerations(ctx, pod)).Should(Equal([]corev1.Toleration{
			link(corev1.TaintNodeNotReady, ptr.To[int64](2700)), link(corev1.TaintNodeUnreachable, ptr.To[int64](2700)),
		}))
		// The controller saw untouched's binding before the node change.
		Expect(tolerations(ctx, untouched)()).To(Equal(defaults))
	})

	It("keeps a user's longer toleration and patches nothing else", func(ctx SpecContext) {
		node := newNode(ctx, "1h0m0s")
		pod := newPod(ctx, func(p *corev1.Pod) {
			p.Labels = map[string]string{"app": "x"}
			p.Spec.Tolerations = []corev1.Toleration{link(corev1.TaintNodeUnreachable, nil)}
		})
		bind(ctx, pod, node)
		Eventually(tolerations(ctx, pod)).Should(Equal([]corev1.Toleration{
			link(corev1.TaintNodeUnreachable, nil), link(corev1.TaintNodeNotReady, ptr.To[int64](3600)),
		}))
		p := &corev1.Pod{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), p)).To(Succeed())
		Expect(p.Labels).To(Equal(map[string]string{"app": "x"}))
		var ours []string
		for _, m := range p.ManagedFields {
			if m.Manager == autonomy.FieldOwner {
				ours = append(ours, string(m.FieldsV1.Raw))
			}
		}
		Expect(ours).To(ConsistOf(`{"f:spec":{"f:tolerations":{}}}`))
	})
})
