package bindings_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/autonomy"
	"github.com/edgeunit/edgeunit/controllers/bindings"
	"github.com/edgeunit/edgeunit/controllers/edgeunit"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

const namespace = "edgeunit-system"

var (
	k8s client.Client
	// cached is the manager's client: it reads through the cache the
	// controllers read.
	cached  client.Client
	restCfg *rest.Config
)

func TestBindings(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Bindings controller suite")
}

var _ = BeforeSuite(func() {
	c := suite.Start(testenv.ClusterOptions{Scheme: runtime.SchemeBuilder{edgev1.AddToScheme}, Namespaces: []string{namespace}})
	k8s, restCfg = c.Client, c.Config
	mgr := suite.StartManager(c, testenv.ManagerOptions{
		// As the manager does: no managed fields in the cache.
		Cache: cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
		Setup: func(ctx context.Context, mgr ctrl.Manager) error {
			copts := controller.Options{MaxConcurrentReconciles: 4}
			// The EdgeUnit controller writes the rest of the status; the autonomy
			// controller registers the pod index the bindings controller shares.
			if err := edgeunit.SetupWithManager(ctx, mgr, edgeunit.Options{
				Namespace: namespace, HubImage: "example.com/edgeunit:test", AgentImage: "example.com/edgeunit:test", Controller: copts,
			}); err != nil {
				return err
			}
			if err := autonomy.SetupWithManager(ctx, mgr, copts); err != nil {
				return err
			}
			return bindings.SetupWithManager(ctx, mgr, copts)
		},
	})
	cached = mgr.GetClient()
})
