package edgeunit_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/certificates"
	"github.com/edgeunit/edgeunit/controllers/edgeunit"
	"github.com/edgeunit/edgeunit/internal/hubinstall"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

var uniq = suite.Uniq

func newUnit(ctx context.Context, name string, pools []string, mutate ...func(*edgev1.EdgeUnit)) *edgev1.EdgeUnit {
	GinkgoHelper()
	u := &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: edgev1.EdgeUnitSpec{NodePools: pools}}
	for _, m := range mutate {
		m(u)
	}
	Expect(k8s.Create(ctx, u)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, u))).To(Succeed()) })
	return u
}

func tunnelTo(endpoint string) func(*edgev1.EdgeUnit) {
	return func(u *edgev1.EdgeUnit) { u.Spec.Tunnel = &edgev1.TunnelSpec{Endpoint: endpoint} }
}

func newEndpoint(ctx context.Context, name string, addresses ...string) *edgev1.TunnelEndpoint {
	GinkgoHelper()
	te := &edgev1.TunnelEndpoint{ObjectMeta: metav1.ObjectMeta{Name: name}}
	Expect(k8s.Create(ctx, te)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, te))).To(Succeed()) })
	setEndpointStatus(ctx, name, func(st *edgev1.TunnelEndpointStatus) { st.Addresses = addresses })
	return te
}

func setEndpointStatus(ctx context.Context, name string, mutate func(*edgev1.TunnelEndpointStatus)) {
	GinkgoHelper()
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		te := &edgev1.TunnelEndpoint{}
		if err := k8s.Get(ctx, types.NamespacedName{Name: name}, te); err != nil {
			return err
		}
		mutate(&te.Status)
		return k8s.Status().Update(ctx, te)
	})).To(Succeed())
}

func newNode(ctx context.Context, name, pool string) *corev1.Node {
	GinkgoHelper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{edgev1.LabelNodePool: pool}}}
	Expect(k8s.Create(ctx, n)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, n))).To(Succeed()) })
	return n
}

func setNodePool(ctx context.Context, name, pool string) {
	GinkgoHelper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, edgev1.LabelNodePool, pool)
	Expect(k8s.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
}

func key(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: namespace, Name: name}
}

func hubName(unit string) string   { return "edgeunit-hub-" + unit }
func agentName(unit string) string { return "edgeunit-agent-" + unit }

// getUnit fetches a unit for Eventually.
func getUnit(ctx context.Context, name string) func() (*edgev1.EdgeUnit, error) {
	return func() (*edgev1.EdgeUnit, error) {
		u := &edgev1.EdgeUnit{}
		return u, k8s.Get(ctx, types.NamespacedName{Name: name}, u)
	}
}

// haveCondition matches a unit whose condition typ has status and reason,
// computed for its current generation.
func haveCondition(typ string, status metav1.ConditionStatus, reason string) OmegaMatcher {
	return WithTransform(func(u *edgev1.EdgeUnit) string {
		c := meta.FindStatusCondition(u.Status.Conditions, typ)
		if c == nil {
			return "<missing>"
		}
		return fmt.Sprintf("%s/%s gen=%v", c.Status, c.Reason, c.ObservedGeneration == u.Generation && u.Status.ObservedGeneration == u.Generation)
	}, Equal(fmt.Sprintf("%s/%s gen=true", status, reason)))
}

func conditionMessage(typ string) func(*edgev1.EdgeUnit) string {
	return func(u *edgev1.EdgeUnit) string {
		if c := meta.FindStatusCondition(u.Status.Conditions, typ); c != nil {
			return c.Message
		}
		return ""
	}
}

func notFound(ctx context.Context, obj client.Object, name string) func() bool {
	return func() bool { return apierrors.IsNotFound(k8s.Get(ctx, key(name), obj)) }
}

// setDaemonSetStatus plays the DaemonSet controller, which envtest lacks.
func setDaemonSetStatus(ctx context.Context, name string, desired, ready, updated int32) {
	GinkgoHelper()
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ds := &appsv1.DaemonSet{}
		if err := k8s.Get(ctx, key(name), ds); err != nil {
			return err
		}
		ds.Status = appsv1.DaemonSetStatus{
			ObservedGeneration: ds.Generation, DesiredNumberScheduled: desired, CurrentNumberScheduled: desired,
			NumberReady: ready, NumberAvailable: ready, UpdatedNumberScheduled: updated,
		}
		return k8s.Status().Update(ctx, ds)
	})).To(Succeed())
}

func expectControlledBy(obj client.Object, u *edgev1.EdgeUnit) {
	GinkgoHelper()
	refs := obj.GetOwnerReferences()
	Expect(refs).To(HaveLen(1))
	Expect(refs[0].UID).To(Equal(u.UID))
	Expect(refs[0].Kind).To(Equal("EdgeUnit"))
	Expect(refs[0].Controller).To(HaveValue(BeTrue()))
	Expect(obj.GetLabels()).To(HaveKeyWithValue(edgev1.LabelUnit, u.Name))
}

var _ = Describe("EdgeUnit controller", func() {
	It("applies the hub and the tunnel agent, owned by the unit and pinned to its nodes", func(ctx SpecContext) {
		te := newEndpoint(ctx, uniq("tunnel"), "tunnel.example.com", "203.0.113.7")
		u := newUnit(ctx, uniq("factory"), []string{uniq("pool")}, tunnelTo(te.Name))

		hubDS := &appsv1.DaemonSet{}
		Eventually(func() error { return k8s.Get(ctx, key(hubName(u.Name)), hubDS) }).Should(Succeed())
		expectControlledBy(hubDS, u)
		Expect(hubDS.Spec.Template.Spec.NodeSelector).To(Equal(map[string]string{edgev1.LabelUnit: u.Name}))
		Expect(hubDS.Spec.Template.Spec.Containers[0].Command).To(Equal([]string{"/edge-hub", "install"}))
		Expect(hubDS.Spec.Template.Spec.Containers[0].Image).To(Equal(opts.HubImage))

		hubCM := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, key(hubName(u.Name)), hubCM)).To(Succeed())
		expectControlledBy(hubCM, u)
		Expect(hubCM.Data).To(HaveKey(hubinstall.KeyManifest))
		Expect(hubCM.Data[hubinstall.KeyConfig]).To(ContainSubstring(opts.APIServerURL))
		Expect(hubCM.Data[hubinstall.KeyUnit]).To(ContainSubstring(u.Spec.NodePools[0]))

		agentDS := &appsv1.DaemonSet{}
		Eventually(func() error { return k8s.Get(ctx, key(agentName(u.Name)), agentDS) }).Should(Succeed())
		expectControlledBy(agentDS, u)
		Expect(agentDS.Spec.Template.Spec.NodeSelector).To(Equal(map[string]string{edgev1.LabelUnit: u.Name}))
		Expect(agentDS.Spec.Template.Spec.HostNetwork).To(BeTrue())
		// The agent obtains its identity through the CSR API with the
		// kubelet's credential and keeps it on the node.
		agent := agentDS.Spec.Template.Spec.Containers[0]
		Expect(agent.Args).To(ContainElements("--kubeconfig=/etc/kubernetes/kubelet.conf", "--cert-dir=/var/lib/edgeunit/tunnel-agent"))
		Expect(agent.Args).NotTo(ContainElement(HavePrefix("--cert-file")))
		Expect(agent.Args).NotTo(ContainElement(HavePrefix("--key-file")))
		Expect(agent.VolumeMounts).To(ContainElements(
			corev1.VolumeMount{Name: "kubelet-kubeconfig", MountPath: "/etc/kubernetes/kubelet.conf", ReadOnly: true},
			corev1.VolumeMount{Name: "kubelet-pki", MountPath: "/var/lib/kubelet/pki", ReadOnly: true},
			corev1.VolumeMount{Name: "cert-dir", MountPath: "/var/lib/edgeunit/tunnel-agent"},
		))
		hostPaths := map[string]corev1.HostPathVolumeSource{}
		for _, v := range agentDS.Spec.Template.Spec.Volumes {
			if v.HostPath != nil {
				hostPaths[v.Name] = *v.HostPath
			}
		}
		Expect(hostPaths).To(HaveLen(3))
		Expect(hostPaths["kubelet-kubeconfig"]).To(Equal(corev1.HostPathVolumeSource{Path: "/etc/kubernetes/kubelet.conf", Type: ptrTo(corev1.HostPathFile)}))
		Expect(hostPaths["kubelet-pki"]).To(Equal(corev1.HostPathVolumeSource{Path: "/var/lib/kubelet/pki", Type: ptrTo(corev1.HostPathDirectory)}))
		Expect(hostPaths["cert-dir"]).To(Equal(corev1.HostPathVolumeSource{Path: "/var/lib/edgeunit/tunnel-agent", Type: ptrTo(corev1.HostPathDirectoryOrCreate)}))

		agentCM := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, key(agentName(u.Name)), agentCM)).To(Succeed())
		expectControlledBy(agentCM, u)
		Expect(agentCM.Data["servers"]).To(Equal("203.0.113.7:10262,tunnel.example.com:10262"))
		Expect(agentCM.Data["allowedPorts"]).To(Equal("10250"))

		// The agents trust the operator CA: its certificate, never its key.
		ca := &corev1.Secret{}
		Expect(k8s.Get(ctx, key(certificates.CASecret), ca)).To(Succeed())
		Expect(agentCM.Data["ca.crt"]).To(Equal(string(ca.Data[corev1.TLSCertKey])))
		for _, v := range agentCM.Data {
			Expect(v).NotTo(ContainSubstring("PRIVATE KEY"))
		}
	})

	It("reports rollout counts from the DaemonSets and records events on transitions", func(ctx SpecContext) {
		pool := uniq("pool")
		u := newUnit(ctx, uniq("site"), []string{pool})
		newNode(ctx, uniq("edge"), pool)
		newNode(ctx, uniq("edge"), pool)
		Eventually(getUnit(ctx, u.Name)).Should(SatisfyAll(
			haveCondition(edgev1.ConditionHubReady, metav1.ConditionFalse, edgev1.ReasonProgressing),
			WithTransform(func(u *edgev1.EdgeUnit) int32 { return u.Status.NodeCount }, Equal(int32(2))),
		))

		setDaemonSetStatus(ctx, hubName(u.Name), 2, 1, 2)
		Eventually(getUnit(ctx, u.Name)).Should(SatisfyAll(
			WithTransform(func(u *edgev1.EdgeUnit) edgev1.RolloutStatus { return u.Status.Hub }, Equal(edgev1.RolloutStatus{Desired: 2, Ready: 1, Updated: 2})),
			haveCondition(edgev1.ConditionHubReady, metav1.ConditionFalse, edgev1.ReasonProgressing),
			WithTransform(conditionMessage(edgev1.ConditionHubReady), ContainSubstring("ready on 1 of 2")),
		))

		setDaemonSetStatus(ctx, hubName(u.Name), 2, 2, 2)
		// The complete status for the generation: every condition the
		// controller writes, and the final counts.
		Eventually(getUnit(ctx, u.Name)).Should(SatisfyAll(
			WithTransform(func(u *edgev1.EdgeUnit) edgev1.RolloutStatus { return u.Status.Hub }, Equal(edgev1.RolloutStatus{Desired: 2, Ready: 2, Updated: 2})),
			WithTransform(func(u *edgev1.EdgeUnit) edgev1.RolloutStatus { return u.Status.TunnelAgent }, BeZero()),
			WithTransform(func(u *edgev1.EdgeUnit) int32 { return u.Status.NodeCount }, Equal(int32(2))),
			WithTransform(func(u *edgev1.EdgeUnit) []string { return u.Finalizers }, ContainElement(edgeunit.Finalizer)),
			haveCondition(edgev1.ConditionHubReady, metav1.ConditionTrue, edgev1.ReasonAvailable),
			haveCondition(edgev1.ConditionTunnelConnected, metav1.ConditionFalse, edgev1.ReasonDisabled),
			haveCondition(edgev1.ConditionTopologyProgrammed, metav1.ConditionTrue, string(edgev1.TopologyAnnotated)),
			haveCondition(edgev1.ConditionReady, metav1.ConditionTrue, edgev1.ReasonComponentsReady),
		))

		Eventually(func(g Gomega) []string {
			var list eventsv1.EventList
			g.Expect(k8s.List(ctx, &list)).To(Succeed())
			var reasons []string
			for _, e := range list.Items {
				if e.Regarding.Name == u.Name && e.Regarding.Kind == "EdgeUnit" {
					reasons = append(reasons, e.Reason)
				}
			}
			return reasons
		}).Should(ContainElements(edgev1.ReasonAvailable, edgev1.ReasonComponentsReady))

		// Steady state: nothing more is written, neither status nor children.
		// versions reads the unit, the hub DaemonSet and the hub ConfigMap
		// (only its metadata: the controller caches no more of it) through c.
		versions := func(g Gomega, c client.Reader) []string {
			cm := &metav1.PartialObjectMetadata{}
			cm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
			var out []string
			for _, obj := range []client.Object{&edgev1.EdgeUnit{}, &appsv1.DaemonSet{}, cm} {
				name := hubName(u.Name)
				ns := namespace
				if _, ok := obj.(*edgev1.EdgeUnit); ok {
					name, ns = u.Name, ""
				}
				g.Expect(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, obj)).To(Succeed())
				out = append(out, obj.GetResourceVersion())
			}
			return out
		}
		// Take them once the controller's cache shows what the API serves
		// and no pass is running, so none can still be working from an
		// older state.
		var before []string
		Eventually(func(g Gomega) {
			before = versions(g, k8s)
			g.Expect(versions(g, cached)).To(Equal(before), "the cache lags behind the API")
			suite.Idle(g)
		}).Should(Succeed())
		Consistently(func(g Gomega) []string { return versions(g, k8s) }, 2*time.Second, 200*time.Millisecond).Should(Equal(before))
	})

	It("propagates TunnelEndpoint address changes to the agents' configuration", func(ctx SpecContext) {
		te := newEndpoint(ctx, uniq("tunnel"), "a.example.com")
		u := newUnit(ctx, uniq("factory"), []string{uniq("pool")}, tunnelTo(te.Name))
		cm := &corev1.ConfigMap{}
		Eventually(func() (string, error) {
			err := k8s.Get(ctx, key(agentName(u.Name)), cm)
			return cm.Data["servers"], err
		}).Should(Equal("a.example.com:10262"))
		// The pass that applied the ConfigMap applies the DaemonSet next.
		ds := &appsv1.DaemonSet{}
		var oldHash string
		Eventually(func() (string, error) {
			err := k8s.Get(ctx, key(agentName(u.Name)), ds)
			oldHash = ds.Spec.Template.Annotations[edgev1.Prefix+"config-hash"]
			return oldHash, err
		}).ShouldNot(BeEmpty())

		setEndpointStatus(ctx, te.Name, func(st *edgev1.TunnelEndpointStatus) {
			st.Addresses = []string{"b.example.com", "c.example.com"}
		})
		Eventually(func() (string, error) {
			err := k8s.Get(ctx, key(agentName(u.Name)), cm)
			return cm.Data["servers"], err
		}).Should(Equal("b.example.com:10262,c.example.com:10262"))
		// The agents get their servers from env: the pod template changes, so they roll.
		Eventually(func() (string, error) {
			err := k8s.Get(ctx, key(agentName(u.Name)), ds)
			return ds.Spec.Template.Annotations[edgev1.Prefix+"config-hash"], err
		}).ShouldNot(Equal(oldHash))
	})

	It("reports connected agents of the unit's nodes from the TunnelEndpoint", func(ctx SpecContext) {
		pool := uniq("pool")
		te := newEndpoint(ctx, uniq("tunnel"), "a.example.com")
		u := newUnit(ctx, uniq("factory"), []string{pool}, tunnelTo(te.Name))
		n1, n2 := newNode(ctx, uniq("edge"), pool), newNode(ctx, uniq("edge"), pool)
		Eventually(getUnit(ctx, u.Name)).Should(SatisfyAll(
			haveCondition(edgev1.ConditionTunnelConnected, metav1.ConditionFalse, edgev1.ReasonNotConnected),
			WithTransform(conditionMessage(edgev1.ConditionTunnelConnected), ContainSubstring("0 of 2")),
		))
		setEndpointStatus(ctx, te.Name, func(st *edgev1.TunnelEndpointStatus) {
			st.Agents = []edgev1.ConnectedAgent{{Node: n1.Name, Servers: 1}, {Node: "elsewhere", Servers: 1}}
			st.ConnectedAgents = 2
		})
		Eventually(getUnit(ctx, u.Name)).Should(
			WithTransform(conditionMessage(edgev1.ConditionTunnelConnected), SatisfyAll(ContainSubstring("1 of 2"), ContainSubstring(n2.Name))))
		setEndpointStatus(ctx, te.Name, func(st *edgev1.TunnelEndpointStatus) {
			st.Agents = append(st.Agents, edgev1.ConnectedAgent{Node: n2.Name, Servers: 1})
			st.ConnectedAgents = 3
		})
		Eventually(getUnit(ctx, u.Name)).Should(haveCondition(edgev1.ConditionTunnelConnected, metav1.ConditionTrue, edgev1.ReasonConnected))
	})

	It("removes the agent when spec.tunnel is unset", func(ctx SpecContext) {
		te := newEndpoint(ctx, uniq("tunnel"), "a.example.com")
		u := newUnit(ctx, uniq("factory"), []string{uniq("pool")}, tunnelTo(te.Name))
		Eventually(func() error { return k8s.Get(ctx, key(agentName(u.Name)), &appsv1.DaemonSet{}) }).Should(Succeed())

		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(u), u)).To(Succeed())
		before := u.DeepCopy()
		u.Spec.Tunnel = nil
		Expect(k8s.Patch(ctx, u, client.MergeFrom(before))).To(Succeed())

		Eventually(notFound(ctx, &appsv1.DaemonSet{}, agentName(u.Name))).Should(BeTrue())
		Eventually(notFound(ctx, &corev1.ConfigMap{}, agentName(u.Name))).Should(BeTrue())
		Eventually(getUnit(ctx, u.Name)).Should(haveCondition(edgev1.ConditionTunnelConnected, metav1.ConditionFalse, edgev1.ReasonDisabled))
		// The hub stays.
		Expect(k8s.Get(ctx, key(hubName(u.Name)), &appsv1.DaemonSet{})).To(Succeed())
	})

	It("waits for a missing TunnelEndpoint and picks it up when it is created", func(ctx SpecContext) {
		teName := uniq("tunnel")
		u := newUnit(ctx, uniq("factory"), []string{uniq("pool")}, tunnelTo(teName))
		Eventually(getUnit(ctx, u.Name)).Should(SatisfyAll(
			haveCondition(edgev1.ConditionTunnelConnected, metav1.ConditionFalse, edgev1.ReasonNotFound),
			WithTransform(conditionMessage(edgev1.ConditionTunnelConnected), ContainSubstring(teName)),
			haveCondition(edgev1.ConditionReady, metav1.ConditionFalse, edgev1.ReasonNoNodes),
			WithTransform(conditionMessage(edgev1.ConditionReady), ContainSubstring("TunnelConnected: TunnelEndpoint")),
		))
		Expect(notFound(ctx, &appsv1.DaemonSet{}, agentName(u.Name))()).To(BeTrue())

		newEndpoint(ctx, teName, "a.example.com")
		Eventually(func() error { return k8s.Get(ctx, key(agentName(u.Name)), &appsv1.DaemonSet{}) }).Should(Succeed())
		Eventually(getUnit(ctx, u.Name)).Should(haveCondition(edgev1.ConditionTunnelConnected, metav1.ConditionFalse, edgev1.ReasonNoNodes))
	})

	It("removes every child when the unit is deleted, without a garbage collector", func(ctx SpecContext) {
		te := newEndpoint(ctx, uniq("tunnel"), "a.example.com")
		u := newUnit(ctx, uniq("factory"), []string{uniq("pool")}, tunnelTo(te.Name))
		for _, name := range []string{hubName(u.Name), agentName(u.Name)} {
			Eventually(func() error { return k8s.Get(ctx, key(name), &appsv1.DaemonSet{}) }).Should(Succeed())
			Eventually(func() error { return k8s.Get(ctx, key(name), &corev1.ConfigMap{}) }).Should(Succeed())
		}
		Eventually(getUnit(ctx, u.Name)).Should(WithTransform(func(u *edgev1.EdgeUnit) []string { return u.Finalizers }, ContainElement(edgeunit.Finalizer)))

		Expect(k8s.Delete(ctx, u)).To(Succeed())
		for _, name := range []string{hubName(u.Name), agentName(u.Name)} {
			Eventually(notFound(ctx, &appsv1.DaemonSet{}, name)).Should(BeTrue())
			Eventually(notFound(ctx, &corev1.ConfigMap{}, name)).Should(BeTrue())
		}
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(u), &edgev1.EdgeUnit{}))
		}).Should(BeTrue())
	})

	It("follows nodes and pools moving between units, and leaves a contested pool to its owner", func(ctx SpecContext) {
		p1, p2 := uniq("pool"), uniq("pool")
		a := newUnit(ctx, uniq("unit-a"), []string{p1})
		b := newUnit(ctx, uniq("unit-b"), []string{p2})
		n := newNode(ctx, uniq("edge"), p1)
		nodeCount := func(name string) func() (int32, error) {
			return func() (int32, error) {
				u, err := getUnit(ctx, name)()
				return u.Status.NodeCount, err
			}
		}
		Eventually(nodeCount(a.Name)).Should(Equal(int32(1)))
		Eventually(nodeCount(b.Name)).Should(Equal(int32(0)))

		// A node moves between pools, so between units.
		setNodePool(ctx, n.Name, p2)
		Eventually(nodeCount(a.Name)).Should(Equal(int32(0)))
		Eventually(nodeCount(b.Name)).Should(Equal(int32(1)))

		// A pool moves between units.
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(b), b)).To(Succeed())
		before := b.DeepCopy()
		b.Spec.NodePools = []string{uniq("pool")}
		Expect(k8s.Patch(ctx, b, client.MergeFrom(before))).To(Succeed())
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(a), a)).To(Succeed())
		before = a.DeepCopy()
		a.Spec.NodePools = []string{p1, p2}
		Expect(k8s.Patch(ctx, a, client.MergeFrom(before))).To(Succeed())
		Eventually(nodeCount(a.Name)).Should(Equal(int32(1)))
		Eventually(nodeCount(b.Name)).Should(Equal(int32(0)))
		Eventually(func() (string, error) {
			cm := &corev1.ConfigMap{}
			err := k8s.Get(ctx, key(hubName(a.Name)), cm)
			return cm.Data[hubinstall.KeyUnit], err
		}).Should(SatisfyAll(ContainSubstring(p1), ContainSubstring(p2)))

		// A younger unit claiming p2 does not get it, and says so.
		c := newUnit(ctx, uniq("unit-c"), []string{p2})
		Eventually(getUnit(ctx, c.Name)).Should(SatisfyAll(
			haveCondition(edgev1.ConditionReady, metav1.ConditionFalse, edgev1.ReasonPoolClaimed),
			WithTransform(conditionMessage(edgev1.ConditionReady), ContainSubstring(fmt.Sprintf("%s (owned by EdgeUnit %s)", p2, a.Name))),
			WithTransform(func(u *edgev1.EdgeUnit) int32 { return u.Status.NodeCount }, Equal(int32(0))),
		))
		Consistently(nodeCount(a.Name), time.Second, 100*time.Millisecond).Should(Equal(int32(1)))

		// When the owner lets go, the claimant takes the pool.
		Expect(k8s.Delete(ctx, a)).To(Succeed())
		Eventually(nodeCount(c.Name)).Should(Equal(int32(1)))
		Eventually(getUnit(ctx, c.Name)).ShouldNot(haveCondition(edgev1.ConditionReady, metav1.ConditionFalse, edgev1.ReasonPoolClaimed))
	})

	DescribeTable("rejects invalid EdgeUnits with a message naming the field",
		func(ctx SpecContext, name string, spec map[string]any, wantField, wantMessage string) {
			if name == "" {
				name = uniq("bad")
			}
			obj := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": edgev1.GroupVersion.String(),
				"kind":       "EdgeUnit",
				"metadata":   map[string]any{"name": name},
				"spec":       spec,
			}}
			err := k8s.Create(ctx, obj)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(SatisfyAll(ContainSubstring(wantField), ContainSubstring(wantMessage)))
		},
		Entry("no pools", "", map[string]any{"nodePools": []any{}},
			"spec.nodePools", "at least 1 items"),
		Entry("missing pools", "", map[string]any{},
			"spec.nodePools", "Required value"),
		Entry("a pool name no NodePool could have", "", map[string]any{"nodePools": []any{"shop-1", "Bad_Pool!"}},
			"spec.nodePools[1]", "should match"),
		Entry("stable VTEP MAC without a device", "", map[string]any{
			"nodePools":       []any{"p"},
			"networkAutonomy": map[string]any{"stableVTEPMAC": true, "vtepDevice": ""},
		}, "spec.networkAutonomy", "vtepDevice is required when stableVTEPMAC is true"),
		// A rule on the object root has no field path ("<nil>: Invalid
		// value"); only its message names the field.
		Entry("name longer than a label value", strings.Repeat("u", 64), map[string]any{"nodePools": []any{"p"}},
			"metadata.name", "at most 63 characters"),
		Entry("health check interval out of range", "", map[string]any{
			"nodePools": []any{"p"},
			"hub":       map[string]any{"healthCheckInterval": "2m"},
		}, "spec.hub.healthCheckInterval", "between 1s and 1m"),
		Entry("unknown cache client", "", map[string]any{
			"nodePools": []any{"p"},
			"hub":       map[string]any{"cacheClients": []any{"kubectl"}},
		}, "spec.hub.cacheClients[0]", "Unsupported value"),
		Entry("tunnel without an endpoint", "", map[string]any{
			"nodePools": []any{"p"},
			"tunnel":    map[string]any{"allowedPorts": []any{10250}},
		}, "spec.tunnel.endpoint", "Required value"),
		Entry("allowed port out of range", "", map[string]any{
			"nodePools": []any{"p"},
			"tunnel":    map[string]any{"endpoint": "t", "allowedPorts": []any{70000}},
		}, "spec.tunnel.allowedPorts[0]", "less than or equal to 65535"),
	)
})

func ptrTo[T any](v T) *T { return &v }
