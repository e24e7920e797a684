//go:build e2e && linux

package e2e

import (
	"fmt"
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgeunit/edgeunit/internal/hub"
	"github.com/edgeunit/edgeunit/test/e2e/testbed"
)

// hubLog is the end of the hub static pod's log on node n.
func hubLog(n *testbed.Node) string {
	out, _ := n.Exec("sh", "-c", "tail -n 30 /var/log/pods/kube-system_edge-hub-*/*/*.log")
	return "\n--- edge-hub log on " + n.Name + "\n" + out
}

// inClusterIP is the address of the hubs' in-cluster listener.
func inClusterIP() string {
	host, _, _ := net.SplitHostPort(hub.DefaultListenInCluster)
	return host
}

// inClusterSpecs: a pod using client-go's InClusterConfig on a converted
// node talks to its node's hub, and reads its ConfigMap with the link cut.
func inClusterSpecs() {
	It("serves a pod using InClusterConfig through the hub, and keeps serving its ConfigMap while the link is cut", func(ctx SpecContext) {
		n := tb.Node(autonomousNode)
		host := inClusterIP()
		ns := metav1.NamespaceDefault

		By("the hub's in-cluster address is on the node's loopback interface")
		Eventually(func(g Gomega) {
			lo, err := n.Exec("ip", "-o", "addr", "show", "dev", "lo")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(lo).To(ContainSubstring(host + "/32 scope host"))
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())

		By("the hub's serving certificate: requested as the node, approved by edgeunit, signed by kube-controller-manager with the cluster CA")
		Eventually(func(g Gomega) {
			var csrs certificatesv1.CertificateSigningRequestList
			g.Expect(k8s.List(ctx, &csrs)).To(Succeed())
			issued := false
			for _, c := range csrs.Items {
				if c.Spec.SignerName == certificatesv1.KubeletServingSignerName && c.Spec.Username == "system:node:"+n.Name && len(c.Status.Certificate) > 0 {
					issued = true
				}
			}
			g.Expect(issued).To(BeTrue(), "an issued kubelet-serving CSR of %s", n.Name)
		}).WithContext(ctx).WithTimeout(2*time.Minute).Should(Succeed(), func() string { return describe(ctx, "csr") })

		By("the kubelet's view of the kubernetes Service names the hub's in-cluster address")
		Eventually(func(g Gomega) {
			out, err := n.Get("http://127.0.0.1:10261/api/v1/namespaces/default/services/kubernetes", "kubelet/e2e")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(out).To(ContainSubstring(`"clusterIP":"` + host + `"`))
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())

		By("a ConfigMap, readable by the namespace's default service account")
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "incluster-data", Namespace: ns}, Data: map[string]string{"greeting": "hello from the cloud"}}
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "incluster-reader", Namespace: ns},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{cm.Name}, Verbs: []string{"get"}}}}
		binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "incluster-reader", Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: ns}}}
		for _, o := range []client.Object{cm, role, binding} {
			Expect(k8s.Create(ctx, o)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { _ = k8s.Delete(ctx, o) })
		}

		By("a pod with a service account token on the node")
		pod := appPod(n.Name)
		pod.Name = "incluster-" + n.Name
		pod.Labels = map[string]string{"app": "e2e-incluster"}
		// What the ServiceAccount admission plugin (off in this
		// apiserver, as envtest runs it) mounts into every pod.
		pod.Spec.Volumes = []corev1.Volume{{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: new(int64(3607))}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
					Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace",
					FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
			}}}}}
		pod.Spec.ServiceAccountName = "default"
		pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}}
		Expect(k8s.Create(ctx, pod)).To(Succeed())
		// Gone before the power cut: the kubelet cannot request a new
		// token for it offline.
		DeferCleanup(func(ctx SpecContext) {
			_ = k8s.Delete(ctx, pod, client.GracePeriodSeconds(0))
		})
		var ip string
		Eventually(func(g Gomega) {
			p := getPod(ctx, g, pod.Name)
			g.Expect(podReady(p)).To(BeTrue())
			ip = p.Status.PodIP
		}).WithContext(ctx).WithTimeout(2*time.Minute).Should(Succeed(), func() string { return describe(ctx, "pods -A") })
		read := fmt.Sprintf("http://%s:%d/configmap?namespace=%s&name=%s&key=greeting", ip, appPort, ns, cm.Name)
		want := fmt.Sprintf("host=https://%s value=hello from the cloud\n", hub.DefaultListenInCluster)

		By("online: client-go's InClusterConfig reaches the hub, which verifies it with the cluster CA")
		Eventually(func(g Gomega) {
			out, err := n.Get(read, "")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(out).To(Equal(want))
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed(), func() string { return hubLog(n) })

		By("offline: the link is cut, and the pod keeps reading its ConfigMap from the hub's cache")
		Expect(n.CutLink()).To(Succeed())
		DeferCleanup(n.RestoreLink)
		Eventually(func(g Gomega) {
			out, err := n.Get(read, "")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(out).To(Equal(want))
		}).WithContext(ctx).WithTimeout(30*time.Second).Should(Succeed(), func() string { return hubLog(n) })
		for i := range 10 {
			out, err := n.Get(read, "")
			Expect(err).NotTo(HaveOccurred(), "read %d offline", i)
			Expect(out).To(Equal(want), "read %d offline", i)
		}

		restored := time.Now()
		Expect(n.RestoreLink()).To(Succeed())
		waitNodeBack(ctx, n, restored)
	})
}
