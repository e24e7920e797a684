package unitdeployment_test

import (
	"context"
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/unitdeployment"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

// fixture is one spec's namespace, units (each with one pool and one
// node) and UnitDeployment.
type fixture struct {
	ns    string
	units []string
	nodes map[string]string // unit -> node
}

func newFixture(ctx context.Context, units int, labels map[string]string) *fixture {
	GinkgoHelper()
	f := &fixture{ns: suite.Uniq("ud"), nodes: map[string]string{}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, ns))).To(Succeed()) })
	for range units {
		f.addUnit(ctx, labels)
	}
	return f
}

// addUnit creates a unit with a pool tainted like an edge pool and one
// Ready node labelled into the unit, as the EdgeUnit controller leaves it.
func (f *fixture) addUnit(ctx context.Context, labels map[string]string) string {
	GinkgoHelper()
	name := suite.Uniq("unit")
	pool := &edgev1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-pool"},
		Spec: edgev1.NodePoolSpec{Type: edgev1.NodePoolEdge, Taints: []edgev1.NodePoolTaint{
			{Key: "example.com/shop", Value: name, Effect: edgev1.TaintEffect(corev1.TaintEffectNoSchedule)},
		}},
	}
	unit := &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: edgev1.EdgeUnitSpec{NodePools: []string{pool.Name}}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name + "-node", Labels: map[string]string{edgev1.LabelUnit: name, edgev1.LabelNodePool: pool.Name}}}
	for _, obj := range []client.Object{pool, unit, node} {
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, obj))).To(Succeed()) })
	}
	setNodeReady(ctx, node.Name, corev1.ConditionTrue)
	f.units = append(f.units, name)
	f.nodes[name] = node.Name
	return name
}

func setNodeReady(ctx context.Context, name string, status corev1.ConditionStatus) {
	GinkgoHelper()
	n := &corev1.Node{}
	Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, n)).To(Succeed())
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	Expect(k8s.Status().Update(ctx, n)).To(Succeed())
}

func (f *fixture) ud(name string, units edgev1.UnitSelector) *edgev1.UnitDeployment {
	return &edgev1.UnitDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: edgev1.UnitDeploymentSpec{
			Units: units,
			Template: edgev1.InstanceTemplate{
				Metadata: edgev1.InstanceMetadata{Labels: map[string]string{"app": name}},
				Spec: edgev1.InstanceSpec{
					Replicas: ptr.To[int32](2),
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
					},
				},
			},
		},
	}
}

func instance(ctx context.Context, g Gomega, ud *edgev1.UnitDeployment, unit string) *appsv1.Deployment {
	d := &appsv1.Deployment{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ud.Namespace, Name: ud.Name + "-" + unit}, d)).To(Succeed())
	return d
}

// instances maps unit to revision for every instance of ud.
func instances(ctx context.Context, g Gomega, ud *edgev1.UnitDeployment) map[string]string {
	var list appsv1.DeploymentList
	g.Expect(k8s.List(ctx, &list, client.InNamespace(ud.Namespace), client.MatchingLabels{edgev1.LabelUnitDeployment: ud.Name})).To(Succeed())
	out := map[string]string{}
	for _, d := range list.Items {
		if d.DeletionTimestamp.IsZero() {
			out[d.Labels[edgev1.LabelUnit]] = d.Annotations[edgev1.AnnotationRevision]
		}
	}
	return out
}

// complete plays the Deployment controller: it reports the instance's
// latest spec rolled out and available.
func complete(ctx context.Context, ud *edgev1.UnitDeployment, unit string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		d := instance(ctx, g, ud, unit)
		n := ptr.Deref(d.Spec.Replicas, 1)
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
		g.Expect(k8s.Status().Update(ctx, d)).To(Succeed())
	}).Should(Succeed())
}

func get(ctx context.Context, g Gomega, ud *edgev1.UnitDeployment) *edgev1.UnitDeployment {
	cur := &edgev1.UnitDeployment{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ud), cur)).To(Succeed())
	return cur
}

func condition(ud *edgev1.UnitDeployment, t string) string {
	c := meta.FindStatusCondition(ud.Status.Conditions, t)
	if c == nil || c.ObservedGeneration != ud.Generation {
		return ""
	}
	return fmt.Sprintf("%s/%s", c.Status, c.Reason)
}

func byNames(names ...string) edgev1.UnitSelector { return edgev1.UnitSelector{Names: names} }

func byLabels(l map[string]string) edgev1.UnitSelector {
	return edgev1.UnitSelector{Selector: &metav1.LabelSelector{MatchLabels: l}}
}

func updateSpec(ctx context.Context, ud *edgev1.UnitDeployment, change func(*edgev1.UnitDeployment)) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		cur := get(ctx, g, ud)
		change(cur)
		g.Expect(k8s.Update(ctx, cur)).To(Succeed())
	}).Should(Succeed())
}

var _ = Describe("UnitDeployment", func() {
	It("stamps one pinned, owned instance per unit named, with overrides and patches, and reports each unit", func(ctx context.Context) {
		f := newFixture(ctx, 3, nil)
		a, b, c := f.units[0], f.units[1], f.units[2]
		ud := f.ud("web", byNames(a, b))
		ud.Spec.Overrides = []edgev1.UnitOverride{{
			Units:      byNames(b),
			Replicas:   ptr.To[int32](4),
			Containers: []edgev1.ContainerOverride{{Name: "app", Image: "app:flagship", Env: []corev1.EnvVar{{Name: "TIER", Value: "flagship"}}}},
			Patches: []edgev1.JSONPatch{{Op: "add", Path: "/spec/template/metadata/annotations",
				Value: &apiextensionsv1.JSON{Raw: []byte(`{"example.com/shop":"flagship"}`)}}},
		}}
		Expect(k8s.Create(ctx, ud)).To(Succeed())

		Eventually(func(g Gomega) {
			g.Expect(instances(ctx, g, ud)).To(HaveLen(2))
			da, db := instance(ctx, g, ud, a), instance(ctx, g, ud, b)
			g.Expect(metav1.IsControlledBy(da, get(ctx, g, ud))).To(BeTrue())
			g.Expect(da.Spec.Template.Spec.NodeSelector).To(Equal(map[string]string{edgev1.LabelUnit: a}))
			g.Expect(da.Spec.Selector.MatchLabels).To(Equal(map[string]string{edgev1.LabelUnitDeployment: "web", edgev1.LabelUnit: a}))
			g.Expect(da.Spec.Template.Spec.Tolerations).To(ConsistOf(corev1.Toleration{
				Key: "example.com/shop", Operator: corev1.TolerationOpEqual, Value: a, Effect: corev1.TaintEffectNoSchedule}))
			g.Expect(*da.Spec.Replicas).To(BeEquivalentTo(2))
			g.Expect(da.Spec.Template.Spec.Containers[0].Image).To(Equal("app:1"))
			g.Expect(*db.Spec.Replicas).To(BeEquivalentTo(4))
			g.Expect(db.Spec.Template.Spec.Containers[0].Image).To(Equal("app:flagship"))
			g.Expect(db.Spec.Template.Spec.Containers[0].Env).To(ConsistOf(corev1.EnvVar{Name: "TIER", Value: "flagship"}))
			g.Expect(db.Spec.Template.Annotations).To(HaveKeyWithValue("example.com/shop", "flagship"))
		}).Should(Succeed())
		_, err := func() (*appsv1.Deployment, error) {
			d := &appsv1.Deployment{}
			return d, k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "web-" + c}, d)
		}()
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "unit %s is not named and gets no instance", c)

		// Until the instances roll out, the UnitDeployment is progressing.
		Eventually(func(g Gomega) {
			cur := get(ctx, g, ud)
			g.Expect(condition(cur, edgev1.ConditionProgressing)).To(Equal("True/RollingOut"))
			g.Expect(condition(cur, edgev1.ConditionReady)).To(Equal("False/Unavailable"))
		}).Should(Succeed())
		complete(ctx, ud, a)
		complete(ctx, ud, b)
		Eventually(func(g Gomega) {
			cur := get(ctx, g, ud)
			g.Expect(condition(cur, edgev1.ConditionReady)).To(Equal("True/RolledOut"))
			g.Expect(condition(cur, edgev1.ConditionAvailable)).To(Equal("True/Available"))
			g.Expect(condition(cur, edgev1.ConditionProgressing)).To(Equal("False/RolledOut"))
			rev := cur.Status.UpdateRevision
			g.Expect(rev).NotTo(BeEmpty())
			g.Expect(cur.Status.Instances).To(Equal([]edgev1.UnitInstanceStatus{
				{Unit: a, Nodes: 1, Replicas: 2, ReadyReplicas: 2, UpdatedReplicas: 2, Revision: rev},
				{Unit: b, Nodes: 1, Replicas: 4, ReadyReplicas: 4, UpdatedReplicas: 4, Revision: rev},
			}))
			g.Expect(cur.Status.Units).To(BeEquivalentTo(2))
			g.Expect(cur.Status.ReadyUnits).To(BeEquivalentTo(2))
			g.Expect(cur.Status.ReadyReplicas).To(BeEquivalentTo(6))
		}).Should(Succeed())

		// Steady state: no further writes to the UnitDeployment or its instances.
		var rv, rvA string
		Eventually(func(g Gomega) {
			suite.Idle(g)
			rv, rvA = get(ctx, g, ud).ResourceVersion, instance(ctx, g, ud, a).ResourceVersion
		}).Should(Succeed())
		Consistently(func(g Gomega) {
			g.Expect(get(ctx, g, ud).ResourceVersion).To(Equal(rv))
			g.Expect(instance(ctx, g, ud, a).ResourceVersion).To(Equal(rvA))
		}, "2s").Should(Succeed())

		// A unit dropped from the list loses its instance; a name that is no unit is reported.
		updateSpec(ctx, ud, func(cur *edgev1.UnitDeployment) { cur.Spec.Units = byNames(b, "no-such-unit") })
		Eventually(func(g Gomega) {
			g.Expect(instances(ctx, g, ud)).To(HaveLen(1))
			g.Expect(instances(ctx, g, ud)).To(HaveKey(b))
			cur := get(ctx, g, ud)
			g.Expect(condition(cur, edgev1.ConditionReady)).To(Equal("False/UnitNotFound"))
			g.Expect(meta.FindStatusCondition(cur.Status.Conditions, edgev1.ConditionReady).Message).To(ContainSubstring("no-such-unit"))
		}).Should(Succeed())
	})

	It("follows a label selector as units gain, lose and delete the label", func(ctx context.Context) {
		shop := map[string]string{"example.com/tier": suite.Uniq("shop")}
		f := newFixture(ctx, 2, shop)
		other := f.addUnit(ctx, nil)
		ud := f.ud("app", byLabels(shop))
		Expect(k8s.Create(ctx, ud)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(instances(ctx, g, ud)).To(HaveLen(2))
			g.Expect(instances(ctx, g, ud)).To(HaveKey(f.units[0]))
			g.Expect(instances(ctx, g, ud)).To(HaveKey(f.units[1]))
		}).Should(Succeed())

		label := func(unit string, l map[string]string) {
			Eventually(func(g Gomega) {
				u := &edgev1.EdgeUnit{}
				g.Expect(k8s.Get(ctx, client.ObjectKey{Name: unit}, u)).To(Succeed())
				u.Labels = l
				g.Expect(k8s.Update(ctx, u)).To(Succeed())
			}).Should(Succeed())
		}
		label(other, shop)
		Eventually(func(g Gomega) { g.Expect(instances(ctx, g, ud)).To(HaveKey(other)) }).Should(Succeed())
		label(f.units[0], nil)
		Eventually(func(g Gomega) {
			g.Expect(instances(ctx, g, ud)).NotTo(HaveKey(f.units[0]))
			g.Expect(instances(ctx, g, ud)).To(HaveLen(2))
		}).Should(Succeed())

		// A deleted unit's instance goes; the rest is not disturbed.
		Expect(k8s.Delete(ctx, &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: other}})).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(instances(ctx, g, ud)).To(Equal(map[string]string{f.units[1]: get(ctx, g, ud).Status.UpdateRevision}))
			g.Expect(get(ctx, g, ud).Status.Units).To(BeEquivalentTo(1))
		}).Should(Succeed())
	})

	It("rolls a template change unit by unit, maxUnavailableUnits at a time, in unit order", func(ctx context.Context) {
		f := newFixture(ctx, 5, nil)
		ud := f.ud("roll", byNames(f.units...))
		ud.Spec.Rollout.MaxUnavailableUnits = 2
		Expect(k8s.Create(ctx, ud)).To(Succeed())
		var rev1 string
		Eventually(func(g Gomega) {
			g.Expect(instances(ctx, g, ud)).To(HaveLen(5))
			rev1 = get(ctx, g, ud).Status.UpdateRevision
			g.Expect(rev1).NotTo(BeEmpty())
		}).Should(Succeed())
		for _, u := range f.units {
			complete(ctx, ud, u)
		}
		Eventually(func(g Gomega) {
			g.Expect(condition(get(ctx, g, ud), edgev1.ConditionReady)).To(Equal("True/RolledOut"))
		}).Should(Succeed())

		updateSpec(ctx, ud, func(cur *edgev1.UnitDeployment) {
			cur.Spec.Template.Spec.Template.Spec.Containers[0].Image = "app:2"
		})
		var rev2 string
		// revisions lists the units at the new revision, in unit order.
		atNew := func(g Gomega) []string {
			var out []string
			revs := instances(ctx, g, ud)
			for _, u := range f.units {
				if revs[u] == rev2 {
					out = append(out, u)
				}
			}
			return out
		}
		Eventually(func(g Gomega) {
			cur := get(ctx, g, ud)
			rev2 = cur.Status.UpdateRevision
			g.Expect(rev2).NotTo(Equal(rev1))
			g.Expect(atNew(g)).To(Equal(f.units[:2]))
			g.Expect(condition(cur, edgev1.ConditionProgressing)).To(Equal("True/RollingOut"))
		}).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(atNew(g)).To(Equal(f.units[:2])) }, "1s").Should(Succeed())

		// One unit done frees one slot: the next unit in order moves.
		complete(ctx, ud, f.units[0])
		Eventually(func(g Gomega) { g.Expect(atNew(g)).To(Equal(f.units[:3])) }).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(atNew(g)).To(Equal(f.units[:3])) }, "1s").Should(Succeed())
		for _, u := range f.units[1:3] {
			complete(ctx, ud, u)
		}
		Eventually(func(g Gomega) { g.Expect(atNew(g)).To(Equal(f.units)) }).Should(Succeed())
		for _, u := range f.units[3:] {
			complete(ctx, ud, u)
		}
		Eventually(func(g Gomega) {
			cur := get(ctx, g, ud)
			g.Expect(condition(cur, edgev1.ConditionReady)).To(Equal("True/RolledOut"))
			g.Expect(cur.Status.UpdatedUnits).To(BeEquivalentTo(5))
			g.Expect(cur.Status.ReadyUnits).To(BeEquivalentTo(5))
		}).Should(Succeed())

		// Paused: a change waits, a new unit still gets an instance.
		updateSpec(ctx, ud, func(cur *edgev1.UnitDeployment) {
			cur.Spec.Rollout.Paused = true
			cur.Spec.Template.Spec.Template.Spec.Containers[0].Image = "app:3"
		})
		Eventually(func(g Gomega) {
			g.Expect(condition(get(ctx, g, ud), edgev1.ConditionProgressing)).To(Equal("False/Paused"))
		}).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(atNew(g)).To(Equal(f.units)) }, "1s").Should(Succeed())
	})

	It("skips a unit whose nodes are all unreachable and catches it up when it returns", func(ctx context.Context) {
		f := newFixture(ctx, 3, nil)
		ud := f.ud("cut", byNames(f.units...))
		Expect(k8s.Create(ctx, ud)).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(instances(ctx, g, ud)).To(HaveLen(3)) }).Should(Succeed())
		for _, u := range f.units {
			complete(ctx, ud, u)
		}
		cut := f.units[0]
		setNodeReady(ctx, f.nodes[cut], corev1.ConditionUnknown)
		Eventually(func(g Gomega) {
			g.Expect(get(ctx, g, ud).Status.Instances[0].Unreachable).To(BeTrue())
		}).Should(Succeed())

		rev1 := get(ctx, Default, ud).Status.UpdateRevision
		updateSpec(ctx, ud, func(cur *edgev1.UnitDeployment) {
			cur.Spec.Template.Spec.Template.Spec.Containers[0].Image = "app:2"
		})
		var rev2 string
		Eventually(func(g Gomega) {
			rev2 = get(ctx, g, ud).Status.UpdateRevision
			g.Expect(rev2).NotTo(Equal(rev1))
			g.Expect(instances(ctx, g, ud)[f.units[1]]).To(Equal(rev2))
		}).Should(Succeed())
		complete(ctx, ud, f.units[1])
		Eventually(func(g Gomega) { g.Expect(instances(ctx, g, ud)[f.units[2]]).To(Equal(rev2)) }).Should(Succeed())
		complete(ctx, ud, f.units[2])
		Eventually(func(g Gomega) {
			cur := get(ctx, g, ud)
			g.Expect(condition(cur, edgev1.ConditionProgressing)).To(Equal("True/WaitingOnUnreachable"))
			g.Expect(condition(cur, edgev1.ConditionReady)).To(Equal("False/WaitingOnUnreachable"))
			g.Expect(condition(cur, edgev1.ConditionAvailable)).To(Equal("True/Available"))
		}).Should(Succeed())
		Expect(instances(ctx, Default, ud)[cut]).NotTo(Equal(rev2), "the cut-off unit is not updated")

		setNodeReady(ctx, f.nodes[cut], corev1.ConditionTrue)
		Eventually(func(g Gomega) { g.Expect(instances(ctx, g, ud)[cut]).To(Equal(rev2)) }).Should(Succeed())
		complete(ctx, ud, cut)
		Eventually(func(g Gomega) {
			g.Expect(condition(get(ctx, g, ud), edgev1.ConditionReady)).To(Equal("True/RolledOut"))
		}).Should(Succeed())
	})

	It("keeps one unit-local Service in front of every instance, and removes it when unset", func(ctx context.Context) {
		f := newFixture(ctx, 2, nil)
		ud := f.ud("svc", byNames(f.units...))
		ud.Spec.Service = &edgev1.UnitServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}
		Expect(k8s.Create(ctx, ud)).To(Succeed())
		svc := &corev1.Service{}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "svc"}, svc)).To(Succeed())
			g.Expect(metav1.IsControlledBy(svc, get(ctx, g, ud))).To(BeTrue())
		}).Should(Succeed())
		Expect(svc.Annotations).To(HaveKeyWithValue(edgev1.AnnotationTopology, "unit"))
		Expect(svc.Spec.Selector).To(Equal(map[string]string{edgev1.LabelUnitDeployment: "svc"}))
		Expect(svc.Spec.Ports).To(HaveLen(1))
		Expect(svc.Spec.Ports[0].Port).To(BeEquivalentTo(80))
		Expect(svc.Spec.Ports[0].TargetPort).To(Equal(intstr.FromInt32(8080)))
		// Every instance's pods carry the Service's selector.
		Eventually(func(g Gomega) {
			for _, u := range f.units {
				g.Expect(instance(ctx, g, ud, u).Spec.Template.Labels).To(HaveKeyWithValue(edgev1.LabelUnitDeployment, "svc"))
			}
		}).Should(Succeed())

		updateSpec(ctx, ud, func(cur *edgev1.UnitDeployment) { cur.Spec.Service = nil })
		Eventually(func(g Gomega) {
			err := k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "svc"}, &corev1.Service{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
		}).Should(Succeed())
	})

	It("leaves a Deployment it does not control alone and reports the conflict", func(ctx context.Context) {
		f := newFixture(ctx, 1, nil)
		unit := f.units[0]
		taken := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "clash-" + unit, Namespace: f.ns, Labels: map[string]string{edgev1.LabelUnitDeployment: "someone-else"}},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}},
			},
		}
		Expect(k8s.Create(ctx, taken)).To(Succeed())
		ud := f.ud("clash", byNames(unit))
		Expect(k8s.Create(ctx, ud)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(condition(get(ctx, g, ud), edgev1.ConditionReady)).To(Equal("False/InstanceConflict"))
		}).Should(Succeed())
		cur := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(taken), cur)).To(Succeed())
		Expect(cur.Spec.Template.Spec.Containers[0].Image).To(Equal("x"))
		Expect(cur.OwnerReferences).To(BeEmpty())
	})
})

// The instance name is the documented <name>-<unit>.
var _ = It("names instances <name>-<unit>", func() {
	ud := &edgev1.UnitDeployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}}
	Expect(unitdeployment.InstanceName(ud, "shop-1")).To(Equal("web-shop-1"))
})
