//go:build e2e && linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/test/e2e/testbed"
)

const (
	servingSecret = "edgeunit-tunnel-" + endpointName + "-tls"
	appPort       = 8080
)

// podsOf lists the pods in namespace ns whose app.kubernetes.io/name is
// app, by node.
func podsOf(ctx context.Context, g Gomega, ns, app string) map[string]corev1.Pod {
	var pods corev1.PodList
	g.Expect(k8s.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/name": app})).To(Succeed())
	out := map[string]corev1.Pod{}
	for _, p := range pods.Items {
		out[p.Spec.NodeName] = p
	}
	return out
}

func unitConditions(ctx context.Context) []metav1.Condition {
	var u edgev1.EdgeUnit
	if err := k8s.Get(ctx, client.ObjectKey{Name: unitName}, &u); err != nil {
		return nil
	}
	return u.Status.Conditions
}

// appPod is the test workload on one node: the testapp image, pinned to
// the node, tolerating the pool's taint, with no service account token.
func appPod(node string) *corev1.Pod {
	return testbed.TestAppPod("testapp-"+node, appLabels, node, appPort,
		[]corev1.Toleration{{Key: "example.com/edge", Operator: corev1.TolerationOpExists}})
}

// One ordered container: each spec builds on the state the one before
// left (Ginkgo would shuffle top-level containers).
var _ = Describe("Real edge nodes", Ordered, func() {
	Context("joining a unit", joinSpecs)
	Context("serving in-cluster clients", inClusterSpecs)
	Context("cut off from the cloud", cutOffSpecs)
	Context("leaving a unit", leaveSpecs)
	// Last: it needs the second unit and the kube-proxies the leave specs
	// leave behind.
	Context("running a processing unit", processingUnitSpecs)
})

func joinSpecs() {
	It("registers each real kubelet as a Ready node of its pool", func(ctx SpecContext) {
		Eventually(func(g Gomega) {
			for _, n := range tb.Nodes {
				var node corev1.Node
				g.Expect(k8s.Get(ctx, client.ObjectKey{Name: n.Name}, &node)).To(Succeed())
				g.Expect(nodeReady(&node)).To(BeTrue(), "node %s Ready", n.Name)
				g.Expect(node.Labels).To(HaveKeyWithValue(edgev1.LabelNodePool, n.Pool))
			}
		}).WithContext(ctx).Should(Succeed(), func() string { return describe(ctx, "nodes") })
	})

	It("runs a workload on each node before it joins a unit", func(ctx SpecContext) {
		for _, n := range tb.Nodes {
			p := appPod(n.Name)
			Expect(k8s.Create(ctx, p)).To(Succeed())
			appPods[n.Name] = p.Name
		}
		Eventually(func(g Gomega) {
			for _, name := range appPods {
				p := getPod(ctx, g, name)
				g.Expect(podReady(p)).To(BeTrue(), "pod %s Ready", name)
				g.Expect(p.Status.PodIP).NotTo(BeEmpty())
			}
		}).WithContext(ctx).Should(Succeed(), func() string { return describe(ctx, "pods -A") })
	})

	It("installs the edge hub and the tunnel from config/samples, converts each node, and the unit turns Ready", func(ctx SpecContext) {
		before := map[string]*corev1.Pod{}
		for node, name := range appPods {
			before[node] = getPod(ctx, Default, name)
		}
		for _, n := range tb.Nodes {
			b, err := n.ReadFile(testbed.KubeletKubeconfig)
			Expect(err).NotTo(HaveOccurred())
			directKubeconfigs[n.Name] = string(b)
		}
		// The TunnelEndpoint and its server first: kube-apiserver calls
		// edgeunit's webhooks, which the NodePools and the EdgeUnit go
		// through, over its cluster egress, the tunnel (as on a cluster
		// whose egress selector is on).
		objs := samples()
		for _, o := range objs {
			if _, ok := o.(*edgev1.TunnelEndpoint); ok {
				Expect(k8s.Create(ctx, o)).To(Succeed(), "applying %T %s", o, o.GetName())
			}
		}
		Expect(tb.Cloud.StartTunnelServer(ctx, endpointName, servingSecret)).To(Succeed())
		for _, o := range objs {
			if _, ok := o.(*edgev1.TunnelEndpoint); !ok {
				Expect(k8s.Create(ctx, o)).To(Succeed(), "applying %T %s", o, o.GetName())
			}
		}
		direct, err := tb.Cloud.TunnelConnects(ctx, "direct", "ok")
		Expect(err).NotTo(HaveOccurred())
		Expect(direct).To(BeNumerically(">=", 1), "kube-apiserver called edgeunit's webhooks through the tunnel-server, which dialled the manager directly")

		By("the installer DaemonSet's pod runs on each real node, and the hub static pod with it")
		Eventually(func(g Gomega) {
			installers := podsOf(ctx, g, testbed.ManagerNamespace, "edge-hub-installer")
			hubs := podsOf(ctx, g, metav1.NamespaceSystem, "edge-hub")
			for _, n := range tb.Nodes {
				g.Expect(installers).To(HaveKey(n.Name), "installer pod on %s", n.Name)
				inst := installers[n.Name]
				g.Expect(podReady(&inst)).To(BeTrue(), "installer pod %s Ready", inst.Name)
				g.Expect(hubs).To(HaveKey(n.Name), "hub mirror pod on %s", n.Name)
				hub := hubs[n.Name]
				g.Expect(hub.Status.Phase).To(Equal(corev1.PodRunning), "hub pod %s", hub.Name)
			}
		}).WithContext(ctx).Should(Succeed(), func() string {
			return describe(ctx, "pods -A", "edgeunits", "daemonsets -A")
		})

		By("the installer points each kubelet at its hub, keeps the original, and the node stays Ready through the hub")
		for _, n := range tb.Nodes {
			waitConverted(ctx, n)
		}
		Eventually(func(g Gomega) {
			var u edgev1.EdgeUnit
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: unitName}, &u)).To(Succeed())
			g.Expect(condition(u.Status.Conditions, edgev1.ConditionNodesConverted)).To(Equal("True"), "%v", u.Status.Conditions)
			g.Expect(u.Status.Conversion.Converted).To(BeEquivalentTo(len(tb.Nodes)))
		}).WithContext(ctx).Should(Succeed(), func() string { return describe(ctx, "edgeunits", "nodes") })

		By("the switch restarted no pod")
		for node, name := range appPods {
			p := getPod(ctx, Default, name)
			Expect(p.UID).To(Equal(before[node].UID))
			Expect(podReady(p)).To(BeTrue(), "pod %s Ready", name)
			Expect(containerIDs(p)).To(Equal(containerIDs(before[node])), "pod %s kept its containers", name)
			Expect(restarts(p)).To(Equal(restarts(before[node])))
		}

		By("HubReady, TunnelConnected and Ready turn True")
		Eventually(func(g Gomega) {
			conds := unitConditions(ctx)
			for _, t := range []string{edgev1.ConditionHubReady, edgev1.ConditionTunnelConnected, edgev1.ConditionReady} {
				g.Expect(condition(conds, t)).To(Equal("True"), "EdgeUnit %s condition %s: %v", unitName, t, conds)
			}
		}).WithContext(ctx).Should(Succeed(), func() string { return describe(ctx, "edgeunits", "tunnelendpoints", "pods -A") })
	})

	It("reaches the kubelets behind the tunnel: kubectl logs, exec and port-forward", func(ctx SpecContext) {
		for node, pod := range appPods {
			By("kubectl logs " + pod)
			Eventually(func(g Gomega) {
				out, err := kubectl(ctx, "logs", pod)
				g.Expect(err).NotTo(HaveOccurred(), out)
				g.Expect(out).To(ContainSubstring("testapp serving pod=" + pod))
			}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())

			By("kubectl exec " + pod)
			out, err := kubectl(ctx, "exec", pod, "--", "/testapp", "echo", "hello", "from", node)
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(Equal("hello from " + node + "\n"))

			By("kubectl port-forward " + pod)
			pfCtx, cancel := context.WithCancel(ctx)
			pf := startKubectl(pfCtx, "port-forward", "--address=127.0.0.1", "pod/"+pod, fmt.Sprintf(":%d", appPort))
			var local string
			Eventually(func(g Gomega) {
				m := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+)`).FindStringSubmatch(pf.output())
				g.Expect(m).To(HaveLen(2), pf.output())
				local = m[1]
			}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
			body, err := httpGet(ctx, "http://127.0.0.1:"+local+"/")
			cancel()
			pf.wait()
			Expect(err).NotTo(HaveOccurred())
			Expect(body).To(Equal("testapp " + pod + "\n"))
		}
	})
}

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(b)) + "\n", err
}
