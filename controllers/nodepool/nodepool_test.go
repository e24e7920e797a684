package nodepool_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/nodepool"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

var uniq = suite.Uniq

func newNode(ctx context.Context, name, pool string, ready bool, labels map[string]string, taints ...corev1.Taint) *corev1.Node {
	GinkgoHelper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}, Spec: corev1.NodeSpec{Taints: taints}}
	for k, v := range labels {
		n.Labels[k] = v
	}
	if pool != "" {
		n.Labels[edgev1.LabelNodePool] = pool
	}
	Expect(k8s.Create(ctx, n)).To(Succeed())
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	setReady(ctx, n.Name, status)
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, n))).To(Succeed()) })
	return n
}

// setReady patches the node's Ready condition without a resourceVersion:
// the controller may have written the node in between.
func setReady(ctx context.Context, name string, status corev1.ConditionStatus) {
	GinkgoHelper()
	patch := fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":%q,"reason":"Test","lastHeartbeatTime":%q,"lastTransitionTime":%q}]}}`,
		status, time.Now().UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339))
	Expect(k8s.Status().Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, client.RawPatch(types.StrategicMergePatchType, []byte(patch)))).To(Succeed())
}

// taintsNotByKubernetes drops the taints kube-apiserver's admission adds to
// new nodes (node.kubernetes.io/not-ready and the like).
func taintsNotByKubernetes(n *corev1.Node) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range n.Spec.Taints {
		if !strings.HasPrefix(t.Key, "node.kubernetes.io/") {
			out = append(out, t)
		}
	}
	return out
}

func samplePool(name string) *edgev1.NodePool {
	return &edgev1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: edgev1.NodePoolSpec{
			Labels:      map[string]string{"example.com/site": name, "tier": "edge"},
			Annotations: map[string]string{"example.com/contact": "ops"},
			Taints:      []edgev1.NodePoolTaint{{Key: "example.com/edge", Value: "true", Effect: "NoSchedule"}},
			Autonomy:    &edgev1.AutonomySpec{Enabled: true, Duration: &metav1.Duration{Duration: 2 * time.Hour}},
		},
	}
}

func createPool(ctx context.Context, p *edgev1.NodePool) *edgev1.NodePool {
	GinkgoHelper()
	Expect(k8s.Create(ctx, p)).To(Succeed())
	DeferCleanup(func(ctx context.Context) {
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, p))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(p), &edgev1.NodePool{}))
		}).Should(BeTrue(), "pool %s never went away", p.Name)
	})
	return p
}

// getNode reads a node; polled by Eventually, a failed read is retried.
// Outside one, call it with Default.
func getNode(ctx context.Context, name string) func(Gomega) *corev1.Node {
	return func(g Gomega) *corev1.Node {
		n := &corev1.Node{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: name}, n)).To(Succeed())
		return n
	}
}

// getPool is getNode for pools.
func getPool(ctx context.Context, name string) func(Gomega) *edgev1.NodePool {
	return func(g Gomega) *edgev1.NodePool {
		p := &edgev1.NodePool{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: name}, p)).To(Succeed())
		return p
	}
}

// updatePool changes a pool, retrying when the controller's status writes
// get in between.
func updatePool(ctx context.Context, name string, change func(*edgev1.NodePool)) *edgev1.NodePool {
	GinkgoHelper()
	var p *edgev1.NodePool
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p = getPool(ctx, name)(Default)
		change(p)
		return k8s.Update(ctx, p)
	})).To(Succeed())
	return p
}

func hasTaint(key string, effect corev1.TaintEffect, value string) func(*corev1.Node) bool {
	return func(n *corev1.Node) bool {
		for _, t := range n.Spec.Taints {
			if t.Key == key && t.Effect == effect && t.Value == value {
				return true
			}
		}
		return false
	}
}

func labels(n *corev1.Node) map[string]string      { return n.Labels }
func annotations(n *corev1.Node) map[string]string { return n.Annotations }

func condition(t string) func(*edgev1.NodePool) metav1.Condition {
	return func(p *edgev1.NodePool) metav1.Condition {
		if c := meta.FindStatusCondition(p.Status.Conditions, t); c != nil {
			return *c
		}
		return metav1.Condition{}
	}
}

// converged matches a pool whose status is complete for its current
// generation: exactly nodes as members, all of them Ready and carrying the
// pool's keys, no owning unit, both conditions Synced and computed for
// that generation, and the finalizer in place.
func converged(nodes ...string) OmegaMatcher {
	synced := SatisfyAll(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", edgev1.ReasonSynced))
	return SatisfyAll(
		HaveField("Finalizers", ContainElement(edgev1.FinalizerNodePool)),
		WithTransform(func(p *edgev1.NodePool) []string {
			var stale []string
			if p.Status.ObservedGeneration != p.Generation {
				stale = append(stale, "status")
			}
			for _, c := range p.Status.Conditions {
				if c.ObservedGeneration != p.Generation {
					stale = append(stale, c.Type)
				}
			}
			return stale
		}, BeEmpty()),
		HaveField("Status.NodeCount", BeEquivalentTo(len(nodes))),
		HaveField("Status.ReadyNodes", BeEquivalentTo(len(nodes))),
		HaveField("Status.NotReadyNodes", BeEquivalentTo(0)),
		HaveField("Status.Nodes", ConsistOf(nodes)),
		HaveField("Status.Unit", BeEmpty()),
		WithTransform(condition(edgev1.ConditionNodesSynced), synced),
		WithTransform(condition(edgev1.ConditionReady), synced),
	)
}

var _ = Describe("NodePool controller", func() {
	It("pushes labels, annotations, taints and autonomy to member nodes", func(ctx SpecContext) {
		pool := createPool(ctx, samplePool(uniq("site")))
		n := newNode(ctx, uniq("edge"), pool.Name, true, nil)
		Eventually(getNode(ctx, n.Name)).Should(SatisfyAll(
			WithTransform(labels, HaveKeyWithValue("example.com/site", pool.Name)),
			WithTransform(labels, HaveKeyWithValue("tier", "edge")),
			WithTransform(labels, HaveKeyWithValue(edgev1.LabelPoolType, "edge")),
			WithTransform(labels, HaveKeyWithValue(edgev1.LabelAutonomy, "true")),
			WithTransform(annotations, HaveKeyWithValue("example.com/contact", "ops")),
			WithTransform(annotations, HaveKeyWithValue(edgev1.AnnotationAutonomyDuration, "2h0m0s")),
			WithTransform(hasTaint("example.com/edge", corev1.TaintEffectNoSchedule, "true"), BeTrue()),
		))
	})

	It("reports membership, readiness and observedGeneration in status", func(ctx SpecContext) {
		pool := createPool(ctx, samplePool(uniq("status")))
		a := newNode(ctx, uniq("a"), pool.Name, true, nil)
		b := newNode(ctx, uniq("b"), pool.Name, false, nil)
		newNode(ctx, uniq("outsider"), "", true, nil)
		Eventually(getPool(ctx, pool.Name)).Should(SatisfyAll(
			HaveField("Status.NodeCount", BeEquivalentTo(2)),
			HaveField("Status.ReadyNodes", BeEquivalentTo(1)),
			HaveField("Status.NotReadyNodes", BeEquivalentTo(1)),
			HaveField("Status.Nodes", Equal([]string{a.Name, b.Name})),
			HaveField("Status.ObservedGeneration", BeNumerically("==", getPool(ctx, pool.Name)(Default).Generation)),
			WithTransform(condition(edgev1.ConditionReady), HaveField("Status", metav1.ConditionTrue)),
			WithTransform(condition(edgev1.ConditionNodesSynced), HaveField("Reason", edgev1.ReasonSynced)),
		))
		Expect(getPool(ctx, pool.Name)(Default).Finalizers).To(ContainElement(edgev1.FinalizerNodePool))

		By("a node turning Ready")
		setReady(ctx, b.Name, corev1.ConditionTrue)
		Eventually(getPool(ctx, pool.Name)).Should(HaveField("Status.ReadyNodes", BeEquivalentTo(2)))
	})

	It("never overwrites keys another writer holds, and reports them", func(ctx SpecContext) {
		pool := createPool(ctx, samplePool(uniq("conflict")))
		n := newNode(ctx, uniq("held"), pool.Name, true, map[string]string{"tier": "core"},
			corev1.Taint{Key: "example.com/other", Effect: corev1.TaintEffectNoExecute})
		Eventually(getPool(ctx, pool.Name)).Should(
			WithTransform(condition(edgev1.ConditionNodesSynced), SatisfyAll(
				HaveField("Status", metav1.ConditionFalse),
				HaveField("Reason", edgev1.ReasonKeyConflict),
				HaveField("Message", ContainSubstring(n.Name+": label tier")),
			)))
		// The pool reports the conflict from the node as it is, possibly
		// before the node controller's patch: wait for the keys that patch
		// sets, then check the other writer's are still there.
		Eventually(getNode(ctx, n.Name)).Should(SatisfyAll(
			WithTransform(labels, HaveKeyWithValue("example.com/site", pool.Name)),
			WithTransform(hasTaint("example.com/edge", corev1.TaintEffectNoSchedule, "true"), BeTrue()),
		))
		got := getNode(ctx, n.Name)(Default)
		Expect(got.Labels).To(HaveKeyWithValue("tier", "core"))
		Expect(got.Labels).To(HaveKeyWithValue("example.com/site", pool.Name))
		Expect(hasTaint("example.com/other", corev1.TaintEffectNoExecute, "")(got)).To(BeTrue())
		Expect(hasTaint("example.com/edge", corev1.TaintEffectNoSchedule, "true")(got)).To(BeTrue())

		By("the pool dropping the label leaves the other writer's value in place")
		updatePool(ctx, pool.Name, func(p *edgev1.NodePool) { delete(p.Spec.Labels, "tier") })
		Eventually(getPool(ctx, pool.Name)).Should(WithTransform(condition(edgev1.ConditionReady), HaveField("Status", metav1.ConditionTrue)))
		Expect(getNode(ctx, n.Name)(Default).Labels).To(HaveKeyWithValue("tier", "core"))
	})

	It("removes exactly the keys it set when the spec changes", func(ctx SpecContext) {
		pool := createPool(ctx, samplePool(uniq("change")))
		n := newNode(ctx, uniq("edge"), pool.Name, true, map[string]string{"own": "kept"})
		Eventually(getNode(ctx, n.Name)).Should(WithTransform(labels, HaveKey("tier")))

		updatePool(ctx, pool.Name, func(p *edgev1.NodePool) {
			delete(p.Spec.Labels, "tier")
			p.Spec.Labels["zone"] = "z1"
			p.Spec.Annotations = nil
			p.Spec.Taints[0].Value = "changed"
			p.Spec.Autonomy = nil
		})

		Eventually(getNode(ctx, n.Name)).Should(SatisfyAll(
			WithTransform(labels, Not(HaveKey("tier"))),
			WithTransform(labels, HaveKeyWithValue("zone", "z1")),
			WithTransform(labels, HaveKeyWithValue("own", "kept")),
			WithTransform(labels, Not(HaveKey(edgev1.LabelAutonomy))),
			WithTransform(annotations, Not(HaveKey("example.com/contact"))),
			WithTransform(annotations, Not(HaveKey(edgev1.AnnotationAutonomyDuration))),
			WithTransform(hasTaint("example.com/edge", corev1.TaintEffectNoSchedule, "changed"), BeTrue()),
			WithTransform(taintsNotByKubernetes, HaveLen(1)),
		))
	})

	It("removes its keys when a node leaves, and moves them when it changes pools", func(ctx SpecContext) {
		a := createPool(ctx, samplePool(uniq("from")))
		bSpec := samplePool(uniq("to"))
		bSpec.Spec.Taints = nil
		b := createPool(ctx, bSpec)
		n := newNode(ctx, uniq("mover"), a.Name, true, map[string]string{"own": "kept"},
			corev1.Taint{Key: "example.com/other", Effect: corev1.TaintEffectNoExecute})
		Eventually(getNode(ctx, n.Name)).Should(WithTransform(labels, HaveKeyWithValue("example.com/site", a.Name)))

		By("moving to another pool")
		Expect(k8s.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name}}, client.RawPatch(types.MergePatchType,
			[]byte(fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, edgev1.LabelNodePool, b.Name))))).To(Succeed())
		Eventually(getNode(ctx, n.Name)).Should(SatisfyAll(
			WithTransform(labels, HaveKeyWithValue("example.com/site", b.Name)),
			WithTransform(hasTaint("example.com/edge", corev1.TaintEffectNoSchedule, "true"), BeFalse()),
			WithTransform(hasTaint("example.com/other", corev1.TaintEffectNoExecute, ""), BeTrue()),
		))
		Eventually(getPool(ctx, a.Name)).Should(HaveField("Status.NodeCount", BeEquivalentTo(0)))
		Eventually(getPool(ctx, b.Name)).Should(HaveField("Status.NodeCount", BeEquivalentTo(1)))

		By("leaving every pool")
		Expect(k8s.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name}}, client.RawPatch(types.MergePatchType,
			[]byte(fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, edgev1.LabelNodePool))))).To(Succeed())
		Eventually(getNode(ctx, n.Name)).Should(SatisfyAll(
			WithTransform(labels, Equal(map[string]string{"own": "kept"})),
			WithTransform(annotations, BeEmpty()),
			WithTransform(taintsNotByKubernetes, HaveLen(1)),
		))
	})

	It("cleans its nodes before letting a deleted pool go", func(ctx SpecContext) {
		pool := samplePool(uniq("gone"))
		Expect(k8s.Create(ctx, pool)).To(Succeed())
		n := newNode(ctx, uniq("edge"), pool.Name, true, map[string]string{"own": "kept"})
		Eventually(getNode(ctx, n.Name)).Should(WithTransform(annotations, HaveKey(edgev1.AnnotationManaged)))
		Eventually(getPool(ctx, pool.Name)).Should(HaveField("Finalizers", ContainElement(edgev1.FinalizerNodePool)))

		Expect(k8s.Delete(ctx, pool)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(pool), &edgev1.NodePool{}))
		}).Should(BeTrue())
		got := getNode(ctx, n.Name)(Default)
		Expect(got.Labels).To(Equal(map[string]string{"own": "kept", edgev1.LabelNodePool: pool.Name}))
		Expect(got.Annotations).To(BeEmpty())
		Expect(taintsNotByKubernetes(got)).To(BeEmpty())
	})

	It("labels the nodes of a pool with the unit that owns it, and follows moves between units", func(ctx SpecContext) {
		pool := createPool(ctx, samplePool(uniq("unitpool")))
		n := newNode(ctx, uniq("edge"), pool.Name, true, nil)
		u1 := &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: uniq("u")}, Spec: edgev1.EdgeUnitSpec{NodePools: []string{pool.Name}}}
		Expect(k8s.Create(ctx, u1)).To(Succeed())
		DeferCleanup(func(ctx context.Context) { _ = k8s.Delete(ctx, u1) })
		Eventually(getNode(ctx, n.Name)).Should(SatisfyAll(
			WithTransform(labels, HaveKeyWithValue(edgev1.LabelUnit, u1.Name)),
			WithTransform(labels, HaveKeyWithValue(corev1.LabelTopologyZone, u1.Name)),
		))
		Eventually(getPool(ctx, pool.Name)).Should(HaveField("Status.Unit", u1.Name))

		By("the pool moving to another unit")
		Expect(k8s.Delete(ctx, u1)).To(Succeed())
		u2 := &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: uniq("u")}, Spec: edgev1.EdgeUnitSpec{NodePools: []string{pool.Name}}}
		Expect(k8s.Create(ctx, u2)).To(Succeed())
		DeferCleanup(func(ctx context.Context) { _ = k8s.Delete(ctx, u2) })
		Eventually(getNode(ctx, n.Name)).Should(WithTransform(labels, HaveKeyWithValue(edgev1.LabelUnit, u2.Name)))
		Eventually(getPool(ctx, pool.Name)).Should(HaveField("Status.Unit", u2.Name))

		By("the unit dropping the pool")
		Expect(k8s.Delete(ctx, u2)).To(Succeed())
		Eventually(getNode(ctx, n.Name)).Should(SatisfyAll(
			WithTransform(labels, Not(HaveKey(edgev1.LabelUnit))),
			WithTransform(labels, Not(HaveKey(corev1.LabelTopologyZone))),
		))
		Eventually(getPool(ctx, pool.Name)).Should(HaveField("Status.Unit", ""))
	})

	It("releases a pool whose finalizer another client put there", func(ctx SpecContext) {
		pool := samplePool(uniq("legacy"))
		pool.Finalizers = []string{edgev1.FinalizerNodePool, "example.com/keep"}
		Expect(k8s.Create(ctx, pool)).To(Succeed())
		Eventually(getPool(ctx, pool.Name)).Should(WithTransform(condition(edgev1.ConditionReady), HaveField("Status", metav1.ConditionTrue)))
		Expect(k8s.Delete(ctx, pool)).To(Succeed())
		Eventually(getPool(ctx, pool.Name)).Should(HaveField("Finalizers", Equal([]string{"example.com/keep"})))
		p := getPool(ctx, pool.Name)(Default)
		p.Finalizers = nil
		Expect(k8s.Update(ctx, p)).To(Succeed())
	})

	It("writes the whole status when it read a stale copy of the pool", func(ctx SpecContext) {
		pool := createPool(ctx, samplePool(uniq("stale")))
		n := newNode(ctx, uniq("edge"), pool.Name, true, nil)
		Eventually(getPool(ctx, pool.Name)).Should(converged(n.Name))
		// The interleaving of a pool's first passes: the first counted the
		// node before its Ready patch and wrote notReadyNodes 1; the next
		// reads the pool from a cache that has the first pass's finalizer
		// write but not yet its status write, so no status at all.
		// Status-only writes do not wake the running controller.
		var stale *edgev1.NodePool
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			p := getPool(ctx, pool.Name)(Default)
			stale = p.DeepCopy()
			stale.Status = edgev1.NodePoolStatus{}
			p.Status.ReadyNodes, p.Status.NotReadyNodes = 0, 1
			return k8s.Status().Update(ctx, p)
		})).To(Succeed())

		probe := &nodepool.PoolReconciler{Client: staleReader{Client: cached, pool: stale}}
		_, err := probe.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Name: pool.Name}})
		Expect(err).NotTo(HaveOccurred())
		Expect(getPool(ctx, pool.Name)(Default)).To(converged(n.Name))
	})

	It("makes no writes once converged", func(ctx SpecContext) {
		pool := createPool(ctx, samplePool(uniq("idle")))
		n := newNode(ctx, uniq("edge"), pool.Name, true, nil)
		// Converged: the pool's status is complete for its generation (a
		// status computed while the node's Ready patch had not reached the
		// cache is Synced too, and is rewritten once it does), the
		// controllers' cache shows the versions the API serves, and no pass
		// is running, so none can still be working from an older state.
		var nodeRV, poolRV string
		Eventually(func(g Gomega) {
			node, p := getNode(ctx, n.Name)(g), getPool(ctx, pool.Name)(g)
			g.Expect(p).To(converged(n.Name))
			g.Expect(node.Annotations).To(HaveKey(edgev1.AnnotationManaged))
			inCache := []client.Object{&corev1.Node{}, &edgev1.NodePool{}}
			for i, obj := range []client.Object{node, p} {
				g.Expect(cached.Get(ctx, client.ObjectKeyFromObject(obj), inCache[i])).To(Succeed())
				g.Expect(inCache[i].GetResourceVersion()).To(Equal(obj.GetResourceVersion()), "the cache lags behind %T %s", obj, obj.GetName())
			}
			suite.Idle(g)
			nodeRV, poolRV = node.ResourceVersion, p.ResourceVersion
		}).Should(Succeed())
		// An unrelated change wakes both controllers up; neither may write.
		other := newNode(ctx, uniq("unrelated"), "", true, nil)
		Expect(k8s.Patch(ctx, other, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`)))).To(Succeed())
		poolRV = updatePool(ctx, pool.Name, func(p *edgev1.NodePool) { p.Annotations = map[string]string{"touched": "yes"} }).ResourceVersion
		Consistently(func(g Gomega) []string {
			return []string{getNode(ctx, n.Name)(g).ResourceVersion, getPool(ctx, pool.Name)(g).ResourceVersion}
		}, 3*time.Second, 200*time.Millisecond).Should(Equal([]string{nodeRV, poolRV}))
	})
})

// staleReader serves pool instead of what the cache holds for that pool.
type staleReader struct {
	client.Client
	pool *edgev1.NodePool
}

func (s staleReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if p, ok := obj.(*edgev1.NodePool); ok && key.Name == s.pool.Name {
		s.pool.DeepCopyInto(p)
		return nil
	}
	return s.Client.Get(ctx, key, obj, opts...)
}

var _ = Describe("NodePool validation", func() {
	invalid := func(ctx context.Context, p *edgev1.NodePool, field string) {
		GinkgoHelper()
		err := k8s.Create(ctx, p)
		if err == nil {
			DeferCleanup(func(ctx context.Context) { _ = k8s.Delete(ctx, p) })
		}
		Expect(err).To(HaveOccurred())
		Expect(apierrors.IsInvalid(err) || apierrors.IsForbidden(err)).To(BeTrue(), "unexpected error %v", err)
		Expect(err.Error()).To(ContainSubstring(field))
	}

	It("rejects a bad taint effect naming the field", func(ctx SpecContext) {
		p := samplePool(uniq("bad"))
		p.Spec.Taints[0].Effect = "Evict"
		invalid(ctx, p, "spec.taints[0].effect")
	})

	It("rejects a too-long label value naming the field", func(ctx SpecContext) {
		p := samplePool(uniq("bad"))
		p.Spec.Labels["tier"] = strings.Repeat("x", 64)
		invalid(ctx, p, "spec.labels")
	})

	It("rejects reserved keys", func(ctx SpecContext) {
		p := samplePool(uniq("bad"))
		p.Spec.Labels[edgev1.LabelUnit] = "u"
		invalid(ctx, p, "spec.labels")
	})

	It("rejects label keys Kubernetes would refuse on a Node (webhook)", func(ctx SpecContext) {
		p := samplePool(uniq("bad"))
		p.Spec.Labels["bad key!"] = "v"
		invalid(ctx, p, `spec.labels[bad key!]`)
	})

	It("rejects autonomy on a Cloud pool and a duration without enabled", func(ctx SpecContext) {
		p := samplePool(uniq("bad"))
		p.Spec.Type = edgev1.NodePoolCloud
		invalid(ctx, p, "autonomy")
		q := samplePool(uniq("bad"))
		q.Spec.Autonomy.Enabled = false
		invalid(ctx, q, "spec.autonomy")
	})

	It("keeps type immutable", func(ctx SpecContext) {
		p := createPool(ctx, samplePool(uniq("immutable")))
		Expect(p.Spec.Type).To(Equal(edgev1.NodePoolEdge), "type defaults to Edge")
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			p = getPool(ctx, p.Name)(Default)
			p.Spec.Type = edgev1.NodePoolCloud
			p.Spec.Autonomy = nil
			return k8s.Update(ctx, p)
		})
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "unexpected error %v", err)
		Expect(err.Error()).To(SatisfyAll(ContainSubstring("spec.type"), ContainSubstring("immutable")))
	})

	It("warns when deleting a pool an EdgeUnit still lists", func(ctx SpecContext) {
		p := createPool(ctx, samplePool(uniq("used")))
		u := &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: uniq("unit")}, Spec: edgev1.EdgeUnitSpec{NodePools: []string{p.Name}}}
		Expect(k8s.Create(ctx, u)).To(Succeed())
		DeferCleanup(func(ctx context.Context) { _ = k8s.Delete(ctx, u) })
		// The webhook lists EdgeUnits from the manager's cache: delete only
		// once the cache has the unit.
		Eventually(func() error { return cached.Get(ctx, client.ObjectKeyFromObject(u), &edgev1.EdgeUnit{}) }).Should(Succeed())
		var warnings []string
		cfg := rest.CopyConfig(env.Config)
		cfg.WarningHandler = warningCollector{texts: &warnings}
		c, err := client.New(cfg, client.Options{Scheme: k8s.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() error { return c.Delete(ctx, p) }).Should(Succeed())
		Expect(warnings).To(ContainElement(ContainSubstring("EdgeUnit " + u.Name + " lists NodePool " + p.Name)))
	})
})

type warningCollector struct{ texts *[]string }

func (w warningCollector) HandleWarningHeader(_ int, _ string, text string) {
	*w.texts = append(*w.texts, text)
}
