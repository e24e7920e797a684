package topology_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	"github.com/edgeunit/edgeunit/controllers/topology"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

var k8s client.Client

func TestTopology(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Topology controller suite")
}

var _ = BeforeSuite(func() {
	c := suite.Start(testenv.ClusterOptions{})
	k8s = c.Client
	suite.StartManager(c, testenv.ManagerOptions{
		// The manager strips managed fields from its cache, as the real one does.
		Cache: cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
		Setup: func(ctx context.Context, mgr ctrl.Manager) error {
			return topology.SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: 2})
		},
	})
})
