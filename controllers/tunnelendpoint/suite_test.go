package tunnelendpoint_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/tunnelendpoint"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

// namespace is the manager's namespace in the suite.
const namespace = "edgeunit-system"

var (
	k8s client.Client
	// cached is the manager's client: it reads through the cache the
	// controller and probe read.
	cached client.Client
	clk    *clocktesting.FakePassiveClock
	probe  *tunnelendpoint.Reconciler // a second reconciler, called directly
)

func TestTunnelEndpoint(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "TunnelEndpoint controller suite")
}

var _ = BeforeSuite(func() {
	c := suite.Start(testenv.ClusterOptions{Scheme: runtime.SchemeBuilder{edgev1.AddToScheme}, Namespaces: []string{namespace}})
	k8s = c.Client

	clk = clocktesting.NewFakePassiveClock(time.Now())
	opts := tunnelendpoint.Options{
		Namespace:  namespace,
		Image:      "example.com/edgeunit:test",
		Controller: controller.Options{MaxConcurrentReconciles: 2},
		Clock:      clk,
	}
	mgr := suite.StartManager(c, testenv.ManagerOptions{
		// The cache as the manager should configure it: children's kinds
		// only in the manager's namespace.
		Cache: cache.Options{ByObject: tunnelendpoint.CacheByObject(namespace)},
		Setup: func(ctx context.Context, mgr ctrl.Manager) (err error) {
			if err := tunnelendpoint.SetupWithManager(ctx, mgr, opts); err != nil {
				return err
			}
			probe, err = tunnelendpoint.NewReconciler(mgr, opts)
			return err
		},
	})
	Expect(mgr.GetCache().WaitForCacheSync(mgr.Ctx)).To(BeTrue())
	cached = mgr.GetClient()
})

func ptrTo[T any](v T) *T { return &v }
