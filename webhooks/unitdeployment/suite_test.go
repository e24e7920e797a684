package unitdeployment_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
	udwebhook "github.com/edgeunit/edgeunit/webhooks/unitdeployment"
)

// namespace holds the suite's UnitDeployments.
const namespace = "shop"

var (
	k8s client.Client
	// cached is the manager's client, which reads through the cache the
	// webhook reads.
	cached   client.Client
	warnings *suite.Warnings
)

func TestUnitDeploymentWebhook(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "UnitDeployment webhook suite")
}

var _ = BeforeSuite(func() {
	c := suite.Start(testenv.ClusterOptions{
		// The webhook configuration comes from this package's markers, as
		// `make manifests` renders it.
		WebhookPackages: []string{"./webhooks/unitdeployment"},
		Scheme:          runtime.SchemeBuilder{edgev1.AddToScheme},
		Namespaces:      []string{namespace},
	})
	k8s, warnings = suite.WarningClient(c)

	mgr := suite.StartManager(c, testenv.ManagerOptions{Setup: udwebhook.SetupWithManager})
	cached = mgr.GetClient()
})
