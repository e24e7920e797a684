// Package suite runs a Ginkgo suite's envtest control plane and manager
// (it fails the suite on their errors and stops them in DeferCleanup), and
// holds the small fixtures several suites share.
package suite

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/testenv"
)

// Start configures the suite as every envtest suite of the project runs
// (controller-runtime logs to GinkgoWriter; Eventually waits up to 30 s,
// polling every 100 ms) and starts a cluster that stops when the suite
// ends. Call it in BeforeSuite.
func Start(o testenv.ClusterOptions) *testenv.Cluster {
	GinkgoHelper()
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)

	c, err := testenv.StartCluster(o)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(c.Stop)
	return c
}

// StartManager starts a manager on c that stops when the suite ends. The
// suite fails if the manager returns an error, at once if it stops by
// itself.
func StartManager(c *testenv.Cluster, o testenv.ManagerOptions) *testenv.Manager {
	GinkgoHelper()
	m, err := c.StartManager(o)
	Expect(err).NotTo(HaveOccurred())
	go func() {
		defer GinkgoRecover()
		<-m.Done()
		if m.Ctx.Err() == nil {
			Expect(m.Err()).NotTo(HaveOccurred(), "the manager stopped")
		}
	}()
	DeferCleanup(m.Stop)
	return m
}

var seq atomic.Int64

// Uniq makes names unique across specs so they never see each other's
// objects: prefix-1, prefix-2, ...
func Uniq(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, seq.Add(1))
}

// AutonomousNode creates a node as the NodePool controller leaves it for an
// autonomous pool (duration "" means not autonomous), deleted when the
// spec ends, and returns its name.
func AutonomousNode(ctx context.Context, c client.Client, duration string) string {
	GinkgoHelper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: Uniq("node"), Labels: map[string]string{}, Annotations: map[string]string{}}}
	if duration != "" {
		n.Labels[edgev1.LabelAutonomy] = "true"
		n.Annotations[edgev1.AnnotationAutonomyDuration] = duration
	}
	Expect(c.Create(ctx, n)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(c.Delete(ctx, n))).To(Succeed()) })
	return n.Name
}

// AllowCSRs lets group create and watch CertificateSigningRequests through
// a ClusterRole and binding called name, as a real cluster lets nodes, and
// waits until the authorizer allows it.
func AllowCSRs(ctx context.Context, c client.Client, name, group string) {
	GinkgoHelper()
	Expect(c.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"},
			Verbs: []string{"create", "get", "list", "watch"}}},
	})).To(Succeed())
	Expect(c.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: group}},
	})).To(Succeed())
	Expect(testenv.WaitAllowed(ctx, c, "rbac-probe", []string{group}, authorizationv1.ResourceAttributes{
		Group: "certificates.k8s.io", Resource: "certificatesigningrequests", Verb: "create",
	}, 30*time.Second)).To(Succeed())
}

// Idle fails g while a reconcile of any controller of this process runs
// (controller-runtime's active-workers gauge). A spec that takes a
// resourceVersion to prove no further writes happen checks it after the
// cache caught up: a reconcile that starts later reads the final state.
func Idle(g Gomega) {
	families, err := metrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	busy := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "controller_runtime_active_workers" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && m.GetGauge().GetValue() != 0 {
					busy[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	g.Expect(busy).To(BeEmpty(), "reconciles still running, by controller")
}
