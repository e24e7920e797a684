package edgeunit_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
	edgeunitwebhook "github.com/edgeunit/edgeunit/webhooks/edgeunit"
)

var (
	k8s      client.Client
	cached   client.Client
	warnings *suite.Warnings
)

func TestEdgeUnitWebhook(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "EdgeUnit webhook suite")
}

var _ = BeforeSuite(func() {
	c := suite.Start(testenv.ClusterOptions{
		WebhookPackages: []string{"./webhooks/edgeunit"},
		Scheme:          runtime.SchemeBuilder{edgev1.AddToScheme},
	})
	k8s, warnings = suite.WarningClient(c)

	mgr := suite.StartManager(c, testenv.ManagerOptions{Setup: edgeunitwebhook.SetupWithManager})
	cached = mgr.GetClient()
})
