//go:build e2e && linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/conversion"
	"github.com/edgeunit/edgeunit/test/e2e/testbed"
)

// secondUnit is the unit the plain node's pool moves to.
const secondUnit = "kiosk"

// originalKubeconfig is where the conversion keeps the kubelet's
// kubeconfig as it was, on the node.
const originalKubeconfig = conversion.DefaultStateDir + "/" + conversion.OriginalFile

// directKubeconfigs are the nodes' kubelet.conf as the testbed wrote them,
// before any conversion.
var directKubeconfigs = map[string]string{}

// containerIDs are a pod's containers' IDs by name: a restarted or
// recreated container changes its ID.
func containerIDs(p *corev1.Pod) map[string]string {
	ids := map[string]string{}
	for _, s := range p.Status.ContainerStatuses {
		ids[s.Name] = s.ContainerID
	}
	return ids
}

// kubeletServer is the server of the kubelet's kubeconfig on node n.
func kubeletServer(n *testbed.Node, path string) (string, error) {
	b, err := n.ReadFile(path)
	if err != nil {
		return "", err
	}
	kc, err := clientcmd.Load(b)
	if err != nil {
		return "", err
	}
	if c := kc.Contexts[kc.CurrentContext]; c != nil && kc.Clusters[c.Cluster] != nil {
		return kc.Clusters[c.Cluster].Server, nil
	}
	return "", fmt.Errorf("%s names no cluster", path)
}

func conversionPhase(ctx context.Context, g Gomega, node string) (edgev1.ConversionPhase, string) {
	var n corev1.Node
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: node}, &n)).To(Succeed())
	return edgev1.ConversionPhase(n.Annotations[edgev1.AnnotationConversion]), n.Annotations[edgev1.AnnotationConversionMessage]
}

// waitConverted waits until node n's kubelet talks to its hub: its
// kubeconfig names the hub, the original is kept, the node reports
// Converted, and the apiserver sees it Ready with a Lease renewed by the
// kubelet the conversion restarted.
func waitConverted(ctx context.Context, n *testbed.Node) {
	Eventually(func(g Gomega) {
		phase, msg := conversionPhase(ctx, g, n.Name)
		g.Expect(phase).To(Equal(edgev1.ConversionConverted), "node %s conversion (%s)", n.Name, msg)
		hubURL, err := n.HubURL()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(kubeletServer(n, testbed.KubeletKubeconfig)).To(Equal(hubURL), "the kubelet's kubeconfig on %s", n.Name)
		kept, err := n.ReadFile(originalKubeconfig)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(kept)).To(Equal(directKubeconfigs[n.Name]), "the original kept on %s, byte for byte", n.Name)
		var node corev1.Node
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: n.Name}, &node)).To(Succeed())
		g.Expect(nodeReady(&node)).To(BeTrue())
		var lease coordinationv1.Lease
		g.Expect(renewedAfter(ctx, n.Name, n.KubeletStarted(), &lease)).To(BeTrue(), "lease of %s renewed through the hub", n.Name)
	}).WithContext(ctx).Should(Succeed(), func() string { return describe(ctx, "nodes", "pods -A") + n.LogTail("systemd", 10) })
	GinkgoWriter.Printf("%s: converted; Lease renewed through the hub after the kubelet restarted at %s\n", n.Name, n.KubeletStarted().Format(time.RFC3339Nano))
}

// setUnit changes the unit's spec.
func setUnit(ctx context.Context, change func(*edgev1.EdgeUnit)) {
	Eventually(func(g Gomega) {
		var u edgev1.EdgeUnit
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: unitName}, &u)).To(Succeed())
		change(&u)
		g.Expect(k8s.Update(ctx, &u)).To(Succeed())
	}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
}

// leaveSpecs run last: the plain node leaves the unit, and a switch that
// cannot work is rolled back.
func leaveSpecs() {
	It("reverts a node that leaves its unit and removes its hub, without restarting its pods", func(ctx SpecContext) {
		n := tb.Node(plainNode)
		// As the testbed wrote it, before any conversion: the kept copy
		// must not have changed either.
		original := directKubeconfigs[n.Name]
		Expect(original).NotTo(BeEmpty())
		// The autonomy spec had the node's first pod evicted.
		p := appPod(n.Name)
		p.Name = "stays-" + n.Name
		Expect(k8s.Create(ctx, p)).To(Succeed())
		var pod *corev1.Pod
		Eventually(func(g Gomega) {
			pod = getPod(ctx, g, p.Name)
			g.Expect(podReady(pod)).To(BeTrue(), "pod %s Ready", p.Name)
		}).WithContext(ctx).Should(Succeed(), func() string { return describe(ctx, "pods -A") })
		left := time.Now()

		By("taking the node's pool out of the unit")
		setUnit(ctx, func(u *edgev1.EdgeUnit) {
			u.Spec.NodePools = slices.DeleteFunc(u.Spec.NodePools, func(p string) bool { return p == plainPool })
		})

		By("the installer, told to stop, restores the kubelet's kubeconfig, restarts the kubelet and removes the hub")
		Eventually(func(g Gomega) {
			phase, msg := conversionPhase(ctx, g, n.Name)
			g.Expect(phase).To(Equal(edgev1.ConversionReverted), "node %s conversion (%s)", n.Name, msg)
			current, err := n.ReadFile(testbed.KubeletKubeconfig)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(string(current)).To(Equal(string(original)), "the kubelet's kubeconfig is the original again")
			g.Expect(n.KubeletStarted()).To(BeTemporally(">", left), "the kubelet was restarted")
			_, err = n.ReadFile("/etc/kubernetes/manifests/edge-hub.yaml")
			g.Expect(os.IsNotExist(err)).To(BeTrue(), "the hub's static pod manifest is gone: %v", err)
			g.Expect(podsOf(ctx, g, metav1.NamespaceSystem, "edge-hub")).NotTo(HaveKey(n.Name), "hub mirror pod on %s", n.Name)
			g.Expect(podsOf(ctx, g, testbed.ManagerNamespace, "edge-hub-installer")).NotTo(HaveKey(n.Name), "installer pod on %s", n.Name)
			lo, err := n.Exec("ip", "-o", "addr", "show", "dev", "lo")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(lo).NotTo(ContainSubstring(inClusterIP()+"/"), "the hub's in-cluster address is off the loopback interface")
		}).WithContext(ctx).Should(Succeed(), func() string {
			return describe(ctx, "nodes", "pods -A", "edgeunits") + n.LogTail("systemd", 10)
		})
		waitNodeBack(ctx, n, n.KubeletStarted())

		By("its pod kept running; the unit counts the node that stayed")
		p = getPod(ctx, Default, pod.Name)
		Expect(p.UID).To(Equal(pod.UID))
		Expect(podReady(p)).To(BeTrue())
		Expect(containerIDs(p)).To(Equal(containerIDs(pod)))
		Eventually(func(g Gomega) {
			var u edgev1.EdgeUnit
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: unitName}, &u)).To(Succeed())
			g.Expect(u.Status.NodeCount).To(BeEquivalentTo(1))
			g.Expect(condition(u.Status.Conditions, edgev1.ConditionNodesConverted)).To(Equal("True"))
		}).WithContext(ctx).Should(Succeed())
	})

	It("rolls a switch back when the kubelet cannot reach the hub, says so, and converts once it can", func(ctx SpecContext) {
		n := tb.Node(plainNode)
		original, err := n.ReadFile(testbed.KubeletKubeconfig)
		Expect(err).NotTo(HaveOccurred())

		By("blocking the hub's listener on the node's loopback")
		block := []string{"INPUT", "-i", "lo", "-p", "tcp", "--dport", "10261", "-j", "REJECT", "--reject-with", "tcp-reset"}
		out, err := n.Exec(append([]string{"iptables", "-I"}, block...)...)
		Expect(err).NotTo(HaveOccurred(), out)
		blocked := true
		unblock := func() error {
			if !blocked {
				return nil
			}
			blocked = false
			_, err := n.Exec(append([]string{"iptables", "-D"}, block...)...)
			return err
		}
		DeferCleanup(unblock)

		By("the node's pool becomes a unit of its own, with a short conversion timeout")
		starts := n.KubeletStarts()
		Expect(k8s.Create(ctx, &edgev1.EdgeUnit{
			ObjectMeta: metav1.ObjectMeta{Name: secondUnit},
			Spec: edgev1.EdgeUnitSpec{
				NodePools: []string{plainPool},
				Hub:       edgev1.HubSpec{ConversionTimeout: &metav1.Duration{Duration: 20 * time.Second}},
			},
		})).To(Succeed())

		By("the switch is tried, fails, and is rolled back")
		Eventually(func(g Gomega) {
			phase, msg := conversionPhase(ctx, g, n.Name)
			g.Expect(phase).To(Equal(edgev1.ConversionRolledBack), "node %s conversion (%s)", n.Name, msg)
			g.Expect(msg).To(ContainSubstring("not Ready through the hub within 20s"))
			current, err := n.ReadFile(testbed.KubeletKubeconfig)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(string(current)).To(Equal(string(original)), "the kubelet's kubeconfig is the original again")
			var u edgev1.EdgeUnit
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: secondUnit}, &u)).To(Succeed())
			g.Expect(u.Status.Conversion.RolledBack).To(BeEquivalentTo(1))
			g.Expect(u.Status.Conversion.FailedNodes).To(Equal([]string{n.Name}))
			c := meta.FindStatusCondition(u.Status.Conditions, edgev1.ConditionNodesConverted)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(edgev1.ReasonRolledBack))
			g.Expect(c.Message).To(ContainSubstring(n.Name))
		}).WithContext(ctx).WithTimeout(4*time.Minute).Should(Succeed(), func() string {
			return describe(ctx, "nodes", "pods -A", "edgeunits") + n.LogTail("systemd", 10)
		})
		Expect(n.KubeletStarts()-starts).To(BeNumerically(">=", 2), "the kubelet was restarted onto the hub and back")
		waitNodeBack(ctx, n, n.KubeletStarted())

		By("unblocking: after its backoff the installer tries again, and the node converts")
		Expect(unblock()).To(Succeed())
		waitConverted(ctx, n)
		Eventually(func(g Gomega) {
			var u edgev1.EdgeUnit
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: secondUnit}, &u)).To(Succeed())
			g.Expect(condition(u.Status.Conditions, edgev1.ConditionNodesConverted)).To(Equal("True"), "%v", u.Status.Conditions)
			g.Expect(u.Status.Conversion.RolledBack).To(BeZero())
		}).WithContext(ctx).Should(Succeed())
	})

	It("keeps Service traffic in its unit with a real kube-proxy reading through the hub, online and offline", func(ctx SpecContext) {
		for _, n := range tb.Nodes {
			Expect(n.StartKubeProxy()).To(Succeed())
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "unit-local", Namespace: metav1.NamespaceDefault,
				Annotations: map[string]string{edgev1.AnnotationTopology: "unit"}},
			Spec: corev1.ServiceSpec{Selector: appLabels, Ports: []corev1.ServicePort{{Port: appPort, TargetPort: intOrPort(appPort)}}},
		}
		Expect(k8s.Create(ctx, svc)).To(Succeed())
		Expect(svc.Spec.ClusterIP).NotTo(BeEmpty())
		// The workload on each node, one per unit: edge-1's first pod and
		// the pod edge-2 kept through its moves.
		local := map[string]*corev1.Pod{
			autonomousNode: getPod(ctx, Default, appPods[autonomousNode]),
			plainNode:      getPod(ctx, Default, "stays-"+plainNode),
		}
		url := fmt.Sprintf("http://%s:%d/", svc.Spec.ClusterIP, appPort)

		// onlyLocal checks that node n's kube-proxy programs only its own
		// unit's endpoint, and that its client pod reaches only that one.
		onlyLocal := func(n *testbed.Node) {
			mine, other := local[n.Name], local[otherNode(n.Name)]
			Eventually(func(g Gomega) {
				rules, err := n.Exec("iptables-save", "-t", "nat")
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(rules).To(ContainSubstring(fmt.Sprintf("%s:%d", mine.Status.PodIP, appPort)), "kube-proxy on %s programs its unit's endpoint", n.Name)
				g.Expect(rules).NotTo(ContainSubstring(fmt.Sprintf("%s:%d", other.Status.PodIP, appPort)), "kube-proxy on %s programs the other unit's endpoint", n.Name)
			}).WithContext(ctx).WithTimeout(2*time.Minute).Should(Succeed(), func() string { return n.LogTail("kube-proxy", 15) })
			for i := range 20 {
				out, err := n.Get(fmt.Sprintf("http://%s:%d/fetch?url=%s", mine.Status.PodIP, appPort, url), "")
				Expect(err).NotTo(HaveOccurred(), "request %d from %s's client pod to the Service", i, n.Name)
				Expect(out).To(Equal("testapp "+mine.Name+"\n"), "request %d from %s", i, n.Name)
			}
		}
		By("online: each unit's client pod reaches only its unit's endpoint")
		for _, n := range tb.Nodes {
			onlyLocal(n)
		}

		By("offline: edge-1's link cut, its kube-proxy's rules removed and kube-proxy started again, reading from the hub's cache")
		n := tb.Node(autonomousNode)
		Expect(n.CutLink()).To(Succeed())
		DeferCleanup(n.RestoreLink)
		Expect(n.StopKubeProxy()).To(Succeed())
		rules, err := n.Exec("iptables-save", "-t", "nat")
		Expect(err).NotTo(HaveOccurred())
		Expect(rules).NotTo(ContainSubstring(local[n.Name].Status.PodIP), "kube-proxy's rules are gone")
		Expect(n.StartKubeProxy()).To(Succeed())
		onlyLocal(n)
		restored := time.Now()
		Expect(n.RestoreLink()).To(Succeed())
		waitNodeBack(ctx, n, restored)
	})
}

// otherNode is the testbed's other edge node.
func otherNode(name string) string {
	if name == autonomousNode {
		return plainNode
	}
	return autonomousNode
}
