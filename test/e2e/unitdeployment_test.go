//go:build e2e && linux

package e2e

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/test/e2e/testbed"
)

// processingUnitSpecs run a UnitDeployment across the testbed's two units
// (factory: edge-1, kiosk: edge-2) with the real Deployment controller,
// scheduler, kubelets and kube-proxy reading through the hubs.
func processingUnitSpecs() {
	It("stamps a UnitDeployment per unit, rolls a change one unit at a time, and keeps its Service in each unit", func(ctx SpecContext) {
		const name = "shop-app"
		labels := map[string]string{"app.kubernetes.io/name": name}
		pod := testbed.TestAppPod("unused", labels, "", appPort, nil)
		// The UnitDeployment pins and tolerates: the template does neither.
		pod.Spec.NodeSelector, pod.Spec.Tolerations = nil, nil
		ud := &edgev1.UnitDeployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault},
			Spec: edgev1.UnitDeploymentSpec{
				Units: edgev1.UnitSelector{Names: []string{unitName, secondUnit}},
				Template: edgev1.InstanceTemplate{Spec: edgev1.InstanceSpec{
					Replicas: ptr.To[int32](1),
					Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod.Spec},
				}},
				Overrides: []edgev1.UnitOverride{{
					Units:      edgev1.UnitSelector{Names: []string{secondUnit}},
					Containers: []edgev1.ContainerOverride{{Name: "app", Env: []corev1.EnvVar{{Name: "SHOP", Value: secondUnit}}}},
				}},
				Service: &edgev1.UnitServiceSpec{Ports: []corev1.ServicePort{{Port: appPort, TargetPort: intOrPort(appPort)}}},
				Rollout: edgev1.UnitRolloutSpec{MaxUnavailableUnits: 1},
			},
		}
		Expect(k8s.Create(ctx, ud)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) {
			Expect(client.IgnoreNotFound(k8s.Delete(ctx, ud))).To(Succeed())
		})
		nodeOf := map[string]string{unitName: autonomousNode, secondUnit: plainNode}

		By("one ready instance per unit, on the unit's node, with its override")
		pods := waitUnitDeploymentReady(ctx, ud, nodeOf)
		Expect(pods[plainNode].Spec.Containers[0].Env).To(ContainElement(corev1.EnvVar{Name: "SHOP", Value: secondUnit}))
		Expect(pods[autonomousNode].Spec.Containers[0].Env).NotTo(ContainElement(HaveField("Name", "SHOP")))

		By("from each unit, the Service answers with that unit's pod only")
		svc := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ud.Namespace, Name: name}, svc)).To(Succeed())
		for _, n := range tb.Nodes {
			mine := pods[n.Name]
			url := fmt.Sprintf("http://%s:%d/", svc.Spec.ClusterIP, appPort)
			Eventually(func(g Gomega) {
				out, err := n.Get(fmt.Sprintf("http://%s:%d/fetch?url=%s", mine.Status.PodIP, appPort, url), "")
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(out).To(Equal("testapp " + mine.Name + "\n"))
			}).WithContext(ctx).WithTimeout(2*time.Minute).Should(Succeed(), func() string { return n.LogTail("kube-proxy", 15) })
			for i := range 10 {
				out, err := n.Get(fmt.Sprintf("http://%s:%d/fetch?url=%s", mine.Status.PodIP, appPort, url), "")
				Expect(err).NotTo(HaveOccurred(), "request %d from %s", i, n.Name)
				Expect(out).To(Equal("testapp "+mine.Name+"\n"), "request %d from %s", i, n.Name)
			}
		}

		By("a template change moves one unit at a time")
		cur := &edgev1.UnitDeployment{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ud), cur)).To(Succeed())
		oldRev := cur.Status.UpdateRevision
		Eventually(func() error {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(ud), cur); err != nil {
				return err
			}
			cur.Spec.Template.Spec.Template.Spec.Containers[0].Env = append(cur.Spec.Template.Spec.Template.Spec.Containers[0].Env,
				corev1.EnvVar{Name: "RELEASE", Value: "2"})
			return k8s.Update(ctx, cur)
		}).WithContext(ctx).Should(Succeed())
		maxRolling, updated := 0, map[string]bool{}
		Eventually(func(g Gomega) {
			var list appsv1.DeploymentList
			g.Expect(k8s.List(ctx, &list, client.InNamespace(ud.Namespace), client.MatchingLabels{edgev1.LabelUnitDeployment: name})).To(Succeed())
			rolling := 0
			for _, d := range list.Items {
				rev := d.Annotations[edgev1.AnnotationRevision]
				done := d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == 1 && d.Status.Replicas == 1 && d.Status.AvailableReplicas == 1
				if rev != oldRev && !done {
					rolling++
				}
				if rev != oldRev && done {
					updated[d.Labels[edgev1.LabelUnit]] = true
				}
			}
			maxRolling = max(maxRolling, rolling)
			g.Expect(updated).To(HaveLen(2))
		}).WithContext(ctx).WithTimeout(3*time.Minute).WithPolling(100*time.Millisecond).Should(Succeed(), func() string {
			return describe(ctx, "unitdeployments -A", "deployments", "pods -o wide")
		})
		Expect(maxRolling).To(BeNumerically("<=", 1), "units updating at once with maxUnavailableUnits 1")
		pods = waitUnitDeploymentReady(ctx, ud, nodeOf)
		for _, p := range pods {
			Expect(p.Spec.Containers[0].Env).To(ContainElement(corev1.EnvVar{Name: "RELEASE", Value: "2"}))
		}

		By("deleting the UnitDeployment deletes its instances and Service (garbage collector)")
		Expect(k8s.Delete(ctx, ud)).To(Succeed())
		Eventually(func(g Gomega) {
			var list appsv1.DeploymentList
			g.Expect(k8s.List(ctx, &list, client.InNamespace(ud.Namespace), client.MatchingLabels{edgev1.LabelUnitDeployment: name})).To(Succeed())
			g.Expect(list.Items).To(BeEmpty())
			g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ud.Namespace, Name: name}, &corev1.Service{}))).To(BeTrue())
		}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Succeed())
	})
}

// waitUnitDeploymentReady waits for ud to report Ready with every unit's
// pod running on the unit's node (nodeOf: unit -> node) at the update
// revision, and returns those pods by node.
func waitUnitDeploymentReady(ctx context.Context, ud *edgev1.UnitDeployment, nodeOf map[string]string) map[string]corev1.Pod {
	GinkgoHelper()
	pods := map[string]corev1.Pod{}
	Eventually(func(g Gomega) {
		cur := &edgev1.UnitDeployment{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ud), cur)).To(Succeed())
		ready := meta.FindStatusCondition(cur.Status.Conditions, edgev1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.ObservedGeneration).To(Equal(cur.Generation))
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), ready.Message)
		g.Expect(cur.Status.ReadyUnits).To(BeEquivalentTo(len(nodeOf)))
		var list corev1.PodList
		g.Expect(k8s.List(ctx, &list, client.InNamespace(ud.Namespace), client.MatchingLabels{edgev1.LabelUnitDeployment: ud.Name})).To(Succeed())
		clear(pods)
		for _, p := range list.Items {
			if p.DeletionTimestamp.IsZero() && p.Status.Phase == corev1.PodRunning {
				g.Expect(p.Spec.NodeName).To(Equal(nodeOf[p.Labels[edgev1.LabelUnit]]), "pod %s runs in its unit", p.Name)
				pods[p.Spec.NodeName] = p
			}
		}
		g.Expect(pods).To(HaveLen(len(nodeOf)))
	}).WithContext(ctx).WithTimeout(3*time.Minute).Should(Succeed(), func() string {
		return describe(ctx, "unitdeployments -A", "deployments", "pods -o wide")
	})
	return pods
}
