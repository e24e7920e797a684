//go:build e2e && linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgeunit/edgeunit/test/e2e/testbed"
)

// kubeletUA is how the hub tells the kubelet's requests from others'.
const kubeletUA = "kubelet/v1.36.3 (linux/amd64) kubernetes/e2e"

func getPod(ctx context.Context, g Gomega, name string) *corev1.Pod {
	var p corev1.Pod
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: name}, &p)).To(Succeed())
	return &p
}

func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, s := range p.Status.ContainerStatuses {
		n += s.RestartCount
	}
	return n
}

// appAnswers says whether the workload answers on ip from inside the node.
func appAnswers(n *testbed.Node, ip, pod string) bool {
	out, err := n.Get(fmt.Sprintf("http://%s:%d/", ip, appPort), "")
	return err == nil && out == "testapp "+pod+"\n"
}

// waitNodeBack waits until the node is Ready with a Lease renewed after t.
func waitNodeBack(ctx context.Context, n *testbed.Node, t time.Time) {
	Eventually(func(g Gomega) {
		var node corev1.Node
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: n.Name}, &node)).To(Succeed())
		g.Expect(nodeReady(&node)).To(BeTrue(), "node %s Ready", n.Name)
		var lease coordinationv1.Lease
		g.Expect(renewedAfter(ctx, n.Name, t, &lease)).To(BeTrue(), "lease of %s renewed after the link returned", n.Name)
	}).WithContext(ctx).Should(Succeed(), func() string { return describe(ctx, "nodes", "pods -A") })
}

// cutOffSpecs run after the unit is Ready with a workload on each node.
func cutOffSpecs() {
	It("runs the workload again after a link cut and a power cut, from the hub's cache, with the same pod IP", func(ctx SpecContext) {
		n := tb.Node(autonomousNode)
		hubURL, err := n.HubURL()
		Expect(err).NotTo(HaveOccurred())
		Expect(kubeletServer(n, testbed.KubeletKubeconfig)).To(Equal(hubURL), "the node is converted (previous specs)")
		pod := appPods[n.Name]
		before := getPod(ctx, Default, pod)
		ip := before.Status.PodIP
		Expect(ip).NotTo(BeEmpty())
		Expect(appAnswers(n, ip, pod)).To(BeTrue())

		By("cutting the node's link to the cloud")
		Expect(n.CutLink()).To(Succeed())
		DeferCleanup(n.RestoreLink)

		By("cutting the power: kubelet, containerd, shims and containers die; /run and the containers' cgroups go")
		Expect(n.PowerCut()).To(Succeed())
		out, err := n.Get(fmt.Sprintf("http://%s:%d/", ip, appPort), "")
		// Refused, unreachable or silent: no answer at all.
		Expect(err).To(HaveOccurred(), "the workload is down after the power cut")
		Expect(out).NotTo(ContainSubstring("testapp "+pod), "no answer from the workload after the power cut")

		By("booting containerd and the kubelet with the cloud still unreachable")
		Expect(n.Boot(ctx)).To(Succeed())
		started := n.KubeletStarted()
		Eventually(func() bool { return appAnswers(n, ip, pod) }).WithContext(ctx).WithTimeout(2*time.Minute).WithPolling(100*time.Millisecond).
			Should(BeTrue(), "the workload answers on its old pod IP %s", ip)
		back := time.Since(started)
		GinkgoWriter.Printf("power cut offline: workload running again %s after the kubelet started\n", back.Round(10*time.Millisecond))
		AddReportEntry("workload back after an offline power cut", back.String())

		By("the node's Lease is renewed locally, through the hub")
		Eventually(func(g Gomega) {
			out, err := n.Get(hubURL+"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/"+n.Name, kubeletUA)
			g.Expect(err).NotTo(HaveOccurred())
			var lease coordinationv1.Lease
			g.Expect(json.Unmarshal([]byte(out), &lease)).To(Succeed())
			g.Expect(lease.Spec.RenewTime).NotTo(BeNil())
			g.Expect(lease.Spec.RenewTime.After(started)).To(BeTrue(), "renewed at %s, kubelet started %s", lease.Spec.RenewTime, started)
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())

		By("reconnecting: the journal replays, node and pod are Ready, same IP, no restart beyond the power cut's")
		restored := time.Now()
		Expect(n.RestoreLink()).To(Succeed())
		waitNodeBack(ctx, n, restored)
		Eventually(func(g Gomega) {
			p := getPod(ctx, g, pod)
			g.Expect(p.UID).To(Equal(before.UID))
			g.Expect(podReady(p)).To(BeTrue())
			g.Expect(p.Status.PodIP).To(Equal(ip))
			g.Expect(restarts(p)).To(BeNumerically("<=", restarts(before)+1))
		}).WithContext(ctx).Should(Succeed())
	})

	It("evicts pods of the pool without autonomy, and only those, when the links stay cut past tolerationSeconds", func(ctx SpecContext) {
		keep, evict := appPods[autonomousNode], appPods[plainNode]
		unreachable := func(p *corev1.Pod) *corev1.Toleration {
			for i, t := range p.Spec.Tolerations {
				if t.Key == corev1.TaintNodeUnreachable && t.Effect == corev1.TaintEffectNoExecute {
					return &p.Spec.Tolerations[i]
				}
			}
			return nil
		}
		By("the autonomous pool's pod tolerates an unreachable node for the pool's autonomy, the other for the default")
		Eventually(func(g Gomega) {
			t := unreachable(getPod(ctx, g, keep))
			g.Expect(t).NotTo(BeNil())
			g.Expect(t.TolerationSeconds == nil || *t.TolerationSeconds > int64(toleratedSeconds)).To(BeTrue(), "toleration %+v", t)
		}).WithContext(ctx).Should(Succeed())
		t := unreachable(getPod(ctx, Default, evict))
		Expect(t).NotTo(BeNil())
		Expect(t.TolerationSeconds).To(HaveValue(BeEquivalentTo(toleratedSeconds)))

		By("cutting both links (the stand-in cloud node stays healthy)")
		cut := time.Now()
		for _, n := range tb.Nodes {
			Expect(n.CutLink()).To(Succeed())
			DeferCleanup(n.RestoreLink)
		}
		Eventually(func(g Gomega) *metav1.Time { return getPod(ctx, g, evict).DeletionTimestamp }).WithContext(ctx).
			WithTimeout(nodeMonitorGrace+time.Duration(toleratedSeconds)*time.Second+2*time.Minute).
			ShouldNot(BeNil(), "the pod on the pool without autonomy is evicted")
		GinkgoWriter.Printf("pod %s evicted %s after the cut\n", evict, time.Since(cut).Round(time.Second))

		By("the autonomous node is tainted unreachable too, and its pod stays past the default toleration")
		var node corev1.Node
		Expect(k8s.Get(ctx, client.ObjectKey{Name: autonomousNode}, &node)).To(Succeed())
		Expect(node.Spec.Taints).To(ContainElement(HaveField("Key", corev1.TaintNodeUnreachable)))
		tainted := taintedSince(&node, corev1.TaintNodeUnreachable)
		Expect(tainted).NotTo(BeZero())
		// Until the default toleration has run out on it too, and more.
		stay := time.Until(tainted.Add(time.Duration(toleratedSeconds)*time.Second + 10*time.Second))
		Consistently(func(g Gomega) *metav1.Time { return getPod(ctx, g, keep).DeletionTimestamp }).WithContext(ctx).
			WithTimeout(max(stay, time.Second)).WithPolling(time.Second).Should(BeNil(), "the pod on the autonomous pool is not evicted")

		By("restoring the links")
		restored := time.Now()
		for _, n := range tb.Nodes {
			Expect(n.RestoreLink()).To(Succeed())
		}
		for _, n := range tb.Nodes {
			waitNodeBack(ctx, n, restored)
		}
		Expect(getPod(ctx, Default, keep).DeletionTimestamp).To(BeNil())
	})
}

// taintedSince is when the node got the taint, or zero.
func taintedSince(n *corev1.Node, key string) time.Time {
	for _, t := range n.Spec.Taints {
		if t.Key == key && t.TimeAdded != nil {
			return t.TimeAdded.Time
		}
	}
	return time.Time{}
}
