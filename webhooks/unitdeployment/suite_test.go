package unitdeployment_test

import (
	"context"
	"sync"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
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
	warnings = &warningRecorder{}
)

func TestUnitDeploymentWebhook(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "UnitDeployment webhook suite")
}

// warningRecorder keeps the admission warnings the test client receives.
type warningRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (w *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

// take returns and forgets the warnings seen so far.
func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.seen
	w.seen = nil
	return out
}

var _ = BeforeSuite(func() {
	c := suite.Start(testenv.ClusterOptions{
		// The webhook configuration comes from this package's markers, as
		// `make manifests` renders it.
		WebhookPackages: []string{"./webhooks/unitdeployment"},
		Scheme:          runtime.SchemeBuilder{edgev1.AddToScheme},
		Namespaces:      []string{namespace},
	})
	wcfg := rest.CopyConfig(c.Config)
	wcfg.WarningHandlerWithContext = warnings
	var err error
	k8s, err = client.New(wcfg, client.Options{Scheme: c.Scheme})
	Expect(err).NotTo(HaveOccurred())

	mgr := suite.StartManager(c, testenv.ManagerOptions{Setup: udwebhook.SetupWithManager})
	cached = mgr.GetClient()
})
