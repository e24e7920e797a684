package pod_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
	podwebhook "github.com/edgeunit/edgeunit/webhooks/pod"
)

var (
	k8s client.Client
	// cached is the manager's client, which reads through the cache the
	// webhook reads.
	cached client.Client
)

func TestPodWebhook(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Pod webhook suite")
}

var _ = BeforeSuite(func() {
	c := suite.Start(testenv.ClusterOptions{
		// The webhook configuration comes from this package's markers, as
		// `make manifests` renders it.
		WebhookPackages: []string{"./webhooks/pod"},
		Scheme:          runtime.SchemeBuilder{edgev1.AddToScheme},
	})
	k8s = c.Client
	mgr := suite.StartManager(c, testenv.ManagerOptions{Setup: podwebhook.SetupWithManager})
	Eventually(func() bool { return mgr.GetCache().WaitForCacheSync(mgr.Ctx) }).Should(BeTrue())
	cached = mgr.GetClient()
})
