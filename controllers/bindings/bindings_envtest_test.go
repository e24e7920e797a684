package bindings_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/bindings"
	"github.com/edgeunit/edgeunit/controllers/edgeunit"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

var uniq = suite.Uniq

func newUnit(ctx context.Context, name string, na edgev1.NetworkAutonomySpec) *edgev1.EdgeUnit {
	GinkgoHelper()
	if na.VTEPDevice == "" {
		na.VTEPDevice = "flannel.1"
	}
	u := &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: edgev1.EdgeUnitSpec{NodePools: []string{name}, NetworkAutonomy: na}}
	Expect(k8s.Create(ctx, u)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, u))).To(Succeed()) })
	return u
}

// newNode creates a node of the unit (its pool and unit labels, as the
// NodePool controller sets them) with an InternalIP.
func newNode(ctx context.Context, name, unit, internalIP string) {
	GinkgoHelper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{edgev1.LabelNodePool: unit, edgev1.LabelUnit: unit}}}
	Expect(k8s.Create(ctx, n)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, n))).To(Succeed()) })
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: internalIP}}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	Expect(k8s.Status().Update(ctx, n)).To(Succeed())
}

func setNodeReady(ctx context.Context, name string, ready corev1.ConditionStatus) {
	GinkgoHelper()
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n := &corev1.Node{}
		if err := k8s.Get(ctx, types.NamespacedName{Name: name}, n); err != nil {
			return err
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
		return k8s.Status().Update(ctx, n)
	})).To(Succeed())
}

func newPod(ctx context.Context, name, node, ip string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	GinkgoHelper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			AutomountServiceAccountToken: new(false),
			Containers:                   []corev1.Container{{Name: "app", Image: "example.com/app:1"}},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	Expect(k8s.Create(ctx, p)).To(Succeed())
	DeferCleanup(func(ctx context.Context) {
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, p, client.GracePeriodSeconds(0)))).To(Succeed())
	})
	setPodIP(ctx, p.Name, ip)
	return p
}

// setPodIP sets the pod's IP as the kubelet would; "" is a restarting pod
// whose sandbox is gone.
func setPodIP(ctx context.Context, name, ip string) {
	GinkgoHelper()
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p := &corev1.Pod{}
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, p); err != nil {
			return err
		}
		p.Status.Phase, p.Status.PodIP, p.Status.PodIPs = corev1.PodPending, "", nil
		if ip != "" {
			p.Status.Phase, p.Status.PodIP, p.Status.PodIPs = corev1.PodRunning, ip, []corev1.PodIP{{IP: ip}}
		}
		return k8s.Status().Update(ctx, p)
	})).To(Succeed())
}

func getUnit(ctx context.Context, name string) func(Gomega) *edgev1.EdgeUnit {
	return func(g Gomega) *edgev1.EdgeUnit {
		u := &edgev1.EdgeUnit{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: name}, u)).To(Succeed())
		return u
	}
}

// podIPs flattens a unit's pod bindings to "namespace/name@node" → IP.
func podIPs(u *edgev1.EdgeUnit) map[string]string {
	out := map[string]string{}
	for _, nb := range u.Status.Bindings {
		for _, p := range nb.Pods {
			out[p.Pod+"@"+nb.Node] = p.IP
		}
	}
	return out
}

// vteps maps a unit's nodes to "MAC IP".
func vteps(u *edgev1.EdgeUnit) map[string]string {
	out := map[string]string{}
	for _, nb := range u.Status.Bindings {
		out[nb.Node] = nb.VTEPMAC + " " + nb.VTEPIP
	}
	return out
}

// settledRV waits until the unit's status is complete (settled matches),
// the controllers' cache shows the version the API serves and no pass is
// running, so none can still be working from an older state, and returns
// that version.
func settledRV(ctx context.Context, name string, settled OmegaMatcher) string {
	GinkgoHelper()
	var rv string
	Eventually(func(g Gomega) {
		u := getUnit(ctx, name)(g)
		g.Expect(u).To(settled)
		inCache := &edgev1.EdgeUnit{}
		g.Expect(cached.Get(ctx, client.ObjectKeyFromObject(u), inCache)).To(Succeed())
		g.Expect(inCache.ResourceVersion).To(Equal(u.ResourceVersion), "the cache lags behind the API")
		suite.Idle(g)
		rv = u.ResourceVersion
	}).Should(Succeed())
	return rv
}

func networkBound(status metav1.ConditionStatus, reason string) OmegaMatcher {
	return WithTransform(func(u *edgev1.EdgeUnit) string {
		c := meta.FindStatusCondition(u.Status.Conditions, edgev1.ConditionNetworkBound)
		if c == nil {
			return "none"
		}
		if c.ObservedGeneration != u.Generation {
			return fmt.Sprintf("%s/%s for generation %d of %d", c.Status, c.Reason, c.ObservedGeneration, u.Generation)
		}
		return string(c.Status) + "/" + c.Reason
	}, Equal(string(status)+"/"+reason))
}

// recordMACs writes VTEP bindings into a unit's status as the bindings
// controller would have recorded them earlier.
func recordMACs(ctx context.Context, unit string, macs map[string]string) {
	GinkgoHelper()
	var nbs []map[string]any
	for node, mac := range macs {
		nbs = append(nbs, map[string]any{"node": node, "vtepMAC": mac})
	}
	apply := map[string]any{
		"apiVersion": edgev1.GroupVersion.String(), "kind": "EdgeUnit", "metadata": map[string]any{"name": unit},
		"status": map[string]any{"bindings": nbs},
	}
	raw, err := json.Marshal(apply)
	Expect(err).NotTo(HaveOccurred())
	u := &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: unit}}
	Expect(k8s.Status().Patch(ctx, u, client.RawPatch(types.ApplyPatchType, raw), client.FieldOwner(bindings.FieldOwner), client.ForceOwnership)).To(Succeed())
}

var _ = Describe("Bindings controller", func() {
	It("keeps a pod's IP binding across pod and node restarts, follows a new IP and drops it with the pod", func(ctx SpecContext) {
		name := uniq("pods")
		node := name + "-node"
		newUnit(ctx, name, edgev1.NetworkAutonomySpec{StablePodIPs: true})
		newNode(ctx, node, name, "192.0.2.10")
		newPod(ctx, "web-a-"+name, node, "10.244.1.5")
		newPod(ctx, "host-"+name, node, "192.0.2.10", func(p *corev1.Pod) { p.Spec.HostNetwork = true })

		a, b := "default/web-a-"+name+"@"+node, "default/web-b-"+name+"@"+node
		Eventually(getUnit(ctx, name)).Should(SatisfyAll(
			WithTransform(podIPs, Equal(map[string]string{a: "10.244.1.5"})),
			networkBound(metav1.ConditionTrue, edgev1.ReasonSynced),
		))

		By("restarting the pod: its IP is gone from the pod's status")
		setPodIP(ctx, "web-a-"+name, "")
		// Another pod's binding shows the controller has seen the restart.
		newPod(ctx, "web-b-"+name, node, "10.244.1.6")
		Eventually(getUnit(ctx, name)).Should(WithTransform(podIPs, HaveKeyWithValue(b, "10.244.1.6")))
		Expect(podIPs(getUnit(ctx, name)(Default))).To(HaveKeyWithValue(a, "10.244.1.5"))

		By("restarting the node")
		setNodeReady(ctx, node, corev1.ConditionFalse)
		setNodeReady(ctx, node, corev1.ConditionTrue)
		setPodIP(ctx, "web-a-"+name, "10.244.1.5")
		Consistently(getUnit(ctx, name), 2*time.Second).Should(WithTransform(podIPs, Equal(map[string]string{a: "10.244.1.5", b: "10.244.1.6"})))

		By("giving the pod a new IP")
		setPodIP(ctx, "web-a-"+name, "10.244.1.9")
		Eventually(getUnit(ctx, name)).Should(WithTransform(podIPs, Equal(map[string]string{a: "10.244.1.9", b: "10.244.1.6"})))

		By("deleting the pod")
		Expect(k8s.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-a-" + name}}, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(getUnit(ctx, name)).Should(WithTransform(podIPs, Equal(map[string]string{b: "10.244.1.6"})))

		By("switching stable pod IPs off")
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			u := getUnit(ctx, name)(Default)
			u.Spec.NetworkAutonomy.StablePodIPs = false
			return k8s.Update(ctx, u)
		})).To(Succeed())
		Eventually(getUnit(ctx, name)).Should(SatisfyAll(
			WithTransform(func(u *edgev1.EdgeUnit) []edgev1.NodeBinding { return u.Status.Bindings }, BeEmpty()),
			networkBound(metav1.ConditionFalse, edgev1.ReasonDisabled),
		))
	})

	It("records each node's VTEP MAC and IP, and resolves MAC collisions across units deterministically", func(ctx SpecContext) {
		unitA, unitB := uniq("mac-a"), uniq("mac-b")
		nodeA, nodeB := unitA+"-node", unitB+"-node"
		newUnit(ctx, unitA, edgev1.NetworkAutonomySpec{StableVTEPMAC: true})
		newNode(ctx, nodeA, unitA, "192.0.2.21")
		Eventually(getUnit(ctx, unitA)).Should(SatisfyAll(
			WithTransform(vteps, Equal(map[string]string{nodeA: bindings.MACOf(nodeA, 0) + " 192.0.2.21"})),
			networkBound(metav1.ConditionTrue, edgev1.ReasonSynced),
		))

		By("flannel's public-ip annotation is the VTEP IP")
		Expect(k8s.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeA}},
			client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+bindings.AnnotationFlannelPublicIP+`":"198.51.100.21"}}}`)))).To(Succeed())
		Eventually(getUnit(ctx, unitA)).Should(WithTransform(vteps, Equal(map[string]string{nodeA: bindings.MACOf(nodeA, 0) + " 198.51.100.21"})))

		By("a node joining another unit derives the MAC node A holds: node A keeps it, the newcomer rehashes")
		taken := bindings.MACOf(nodeB, 0)
		recordMACs(ctx, unitA, map[string]string{nodeA: taken})
		Eventually(getUnit(ctx, unitA)).Should(WithTransform(vteps, Equal(map[string]string{nodeA: taken + " 198.51.100.21"})))
		newUnit(ctx, unitB, edgev1.NetworkAutonomySpec{StableVTEPMAC: true})
		newNode(ctx, nodeB, unitB, "192.0.2.22")
		Eventually(getUnit(ctx, unitB)).Should(WithTransform(vteps, Equal(map[string]string{nodeB: bindings.MACOf(nodeB, 1) + " 192.0.2.22"})))
		Expect(vteps(getUnit(ctx, unitA)(Default))).To(Equal(map[string]string{nodeA: taken + " 198.51.100.21"}))

		By("two units recorded the same MAC: the first node by name keeps it, on both sides")
		recordMACs(ctx, unitB, map[string]string{nodeB: taken})
		Eventually(getUnit(ctx, unitB)).Should(WithTransform(vteps, Equal(map[string]string{nodeB: bindings.MACOf(nodeB, 1) + " 192.0.2.22"})))
		Consistently(getUnit(ctx, unitA), 2*time.Second).Should(WithTransform(vteps, Equal(map[string]string{nodeA: taken + " 198.51.100.21"})))
	})

	It("shares the status with the EdgeUnit controller: each writes its own fields, neither undoes the other's", func(ctx SpecContext) {
		name := uniq("shared")
		node := name + "-node"
		newUnit(ctx, name, edgev1.NetworkAutonomySpec{StablePodIPs: true, StableVTEPMAC: true})
		newNode(ctx, node, name, "192.0.2.30")
		newPod(ctx, "web-"+name, node, "10.244.3.4")
		// Complete: both controllers' fields for the generation, the node's
		// VTEP binding with the InternalIP it was given after it was created
		// as well as the pod's, and the finalizer.
		settled := SatisfyAll(
			WithTransform(podIPs, Equal(map[string]string{"default/web-" + name + "@" + node: "10.244.3.4"})),
			WithTransform(vteps, Equal(map[string]string{node: bindings.MACOf(node, 0) + " 192.0.2.30"})),
			networkBound(metav1.ConditionTrue, edgev1.ReasonSynced),
			WithTransform(func(u *edgev1.EdgeUnit) bool { return u.Status.ObservedGeneration == u.Generation }, BeTrue()),
			WithTransform(func(u *edgev1.EdgeUnit) []string { return u.Finalizers }, ContainElement(edgeunit.Finalizer)),
			WithTransform(func(u *edgev1.EdgeUnit) []string {
				var ts []string
				for _, c := range u.Status.Conditions {
					if c.ObservedGeneration == u.Generation {
						ts = append(ts, c.Type)
					}
				}
				return ts
			}, ConsistOf(edgev1.ConditionHubReady, edgev1.ConditionNodesConverted, edgev1.ConditionTunnelConnected, edgev1.ConditionTopologyProgrammed, edgev1.ConditionNetworkBound, edgev1.ConditionReady)),
			WithTransform(func(u *edgev1.EdgeUnit) int32 { return u.Status.NodeCount }, Equal(int32(1))),
		)
		Eventually(getUnit(ctx, name)).Should(settled)

		By("no flapping: once settled, nobody writes the unit")
		rv := settledRV(ctx, name, settled)
		Consistently(func(g Gomega) string { return getUnit(ctx, name)(g).ResourceVersion }, 3*time.Second).Should(Equal(rv))

		By("a spec change makes both controllers write: each keeps the other's fields")
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			u := getUnit(ctx, name)(Default)
			u.Spec.Hub.Image = "example.com/edgeunit:v2"
			return k8s.Update(ctx, u)
		})).To(Succeed())
		Eventually(getUnit(ctx, name)).Should(SatisfyAll(settled, WithTransform(func(u *edgev1.EdgeUnit) int64 { return u.Status.ObservedGeneration }, Equal(int64(2)))))
		rv = settledRV(ctx, name, SatisfyAll(settled, WithTransform(func(u *edgev1.EdgeUnit) int64 { return u.Status.ObservedGeneration }, Equal(int64(2)))))
		Consistently(func(g Gomega) string { return getUnit(ctx, name)(g).ResourceVersion }, 3*time.Second).Should(Equal(rv))

		By("field ownership: bindings and NetworkBound are the bindings controller's, the rest the EdgeUnit controller's")
		u := getUnit(ctx, name)(Default)
		owned := map[string]string{}
		for _, mf := range u.ManagedFields {
			if mf.Subresource == "status" && mf.FieldsV1 != nil {
				owned[mf.Manager+"/"+string(mf.Operation)] = string(mf.FieldsV1.Raw)
			}
		}
		Expect(owned).To(HaveKey(bindings.FieldOwner + "/Apply"))
		Expect(owned).To(HaveKey(edgeunit.FieldOwner + "/Apply"))
		Expect(owned[bindings.FieldOwner+"/Apply"]).To(SatisfyAll(ContainSubstring(`"f:bindings"`), ContainSubstring(`{\"type\":\"NetworkBound\"}`), Not(ContainSubstring(`{\"type\":\"Ready\"}`))))
		Expect(owned[edgeunit.FieldOwner+"/Apply"]).To(SatisfyAll(ContainSubstring(`{\"type\":\"Ready\"}`), Not(ContainSubstring(`"f:bindings"`)), Not(ContainSubstring(`NetworkBound`))))
	})

	It("fits 500 nodes and 10,000 pods in the status well under 1 MiB", func(ctx SpecContext) {
		name := uniq("size")
		newUnit(ctx, name, edgev1.NetworkAutonomySpec{StablePodIPs: true})
		var nbs []edgev1.NodeBinding
		for i := range 500 {
			nb := edgev1.NodeBinding{Node: bindings.SizeTestNodeName(i), VTEPMAC: bindings.MACOf(bindings.SizeTestNodeName(i), 0), VTEPIP: fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256)}
			for j := range 20 {
				nb.Pods = append(nb.Pods, edgev1.PodIPBinding{Pod: bindings.SizeTestPodKey(i*20 + j), IP: fmt.Sprintf("10.244.%d.%d", i%256, 100+j)})
			}
			nbs = append(nbs, nb)
		}
		// Server-side apply as the controller writes it, under another field
		// manager: the controller, seeing no node in this unit, records
		// nothing and must not remove what it does not own.
		apply := map[string]any{
			"apiVersion": edgev1.GroupVersion.String(), "kind": "EdgeUnit", "metadata": map[string]any{"name": name},
			"status": map[string]any{"bindings": nbs},
		}
		body, err := json.Marshal(apply)
		Expect(err).NotTo(HaveOccurred())
		u := &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: name}}
		Expect(k8s.Status().Patch(ctx, u, client.RawPatch(types.ApplyPatchType, body), client.FieldOwner("size-test"))).To(Succeed())

		cs, err := kubernetes.NewForConfig(restCfg)
		Expect(err).NotTo(HaveOccurred())
		var raw []byte
		Eventually(func(g Gomega) {
			raw, err = cs.Discovery().RESTClient().Get().AbsPath("/apis/edge.edgeunit.io/v1alpha1/edgeunits", name).DoRaw(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(json.Unmarshal(raw, u)).To(Succeed())
			g.Expect(u).To(networkBound(metav1.ConditionFalse, edgev1.ReasonNoNodes))
		}).Should(Succeed())
		Expect(u.Status.Bindings).To(HaveLen(500))
		pods := 0
		for _, nb := range u.Status.Bindings {
			pods += len(nb.Pods)
		}
		Expect(pods).To(Equal(10000))

		status, err := json.Marshal(u.Status)
		Expect(err).NotTo(HaveOccurred())
		managed, err := json.Marshal(u.ManagedFields)
		Expect(err).NotTo(HaveOccurred())
		u.ManagedFields = nil
		bare, err := json.Marshal(u)
		Expect(err).NotTo(HaveOccurred())
		AddReportEntry("EdgeUnit size at 500 nodes / 10,000 pods", fmt.Sprintf(
			"status %d bytes (%.1f%% of 1 MiB); object as served %d bytes, of which managedFields %d; object without managedFields %d",
			len(status), 100*float64(len(status))/(1<<20), len(raw), len(managed), len(bare)))
		GinkgoWriter.Printf("SIZE status=%d served=%d managedFields=%d bare=%d\n", len(status), len(raw), len(managed), len(bare))
		Expect(len(status)).To(BeNumerically("<", 1<<20))
		Expect(len(raw)).To(BeNumerically("<", 1<<20), "the whole object, managedFields included, stays under 1 MiB (etcd's default limit is 1.5 MiB)")
		Expect(strings.Count(string(raw), `"pod":`)).To(Equal(10000))
	})
})
