package nodepool_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/nodepool"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
	nodepoolwebhook "github.com/edgeunit/edgeunit/webhooks/nodepool"
)

var (
	k8s client.Client
	// cached is the manager's client: it reads through the cache the
	// controllers and the NodePool webhook read.
	cached client.Client
	env    *envtest.Environment
)

func TestNodePool(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "NodePool controller suite")
}

var _ = BeforeSuite(func() {
	c := suite.Start(testenv.ClusterOptions{
		Webhooks: []string{"vnodepool.edge.edgeunit.io"},
		Scheme:   runtime.SchemeBuilder{edgev1.AddToScheme},
	})
	k8s, env = c.Client, c.Env
	// StartManager returns once the webhook server answers, before specs
	// create pools.
	mgr := suite.StartManager(c, testenv.ManagerOptions{Setup: func(ctx context.Context, mgr ctrl.Manager) error {
		if err := nodepool.SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: 4}); err != nil {
			return err
		}
		return nodepoolwebhook.SetupWithManager(mgr)
	}})
	cached = mgr.GetClient()
})
