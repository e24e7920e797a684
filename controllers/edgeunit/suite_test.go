package edgeunit_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/edgeunit"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

const namespace = "edgeunit-system"

var (
	k8s client.Client
	// cached is the manager's client: it reads through the cache the
	// controller reads.
	cached client.Client
	opts   = edgeunit.Options{
		Namespace:    namespace,
		HubImage:     "example.com/edgeunit:test",
		AgentImage:   "example.com/tunnel-agent:test",
		APIServerURL: "https://203.0.113.10:6443",
	}
)

func TestEdgeUnit(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "EdgeUnit controller suite")
}

var _ = BeforeSuite(func() {
	// CRDs only: the webhooks are tested with their own package.
	c := suite.Start(testenv.ClusterOptions{Scheme: runtime.SchemeBuilder{edgev1.AddToScheme}, Namespaces: []string{namespace}})
	k8s = c.Client
	mgr := suite.StartManager(c, testenv.ManagerOptions{Setup: func(ctx context.Context, mgr ctrl.Manager) error {
		o := opts
		o.Controller = controller.Options{MaxConcurrentReconciles: 4}
		return edgeunit.SetupWithManager(ctx, mgr, o)
	}})
	cached = mgr.GetClient()
})
