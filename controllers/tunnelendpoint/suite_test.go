package tunnelendpoint_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/tunnelendpoint"
	"github.com/edgeunit/edgeunit/internal/testenv"
)

// namespace is the manager's namespace in the suite.
const namespace = "edgeunit-system"

var (
	k8s   client.Client
	env   *envtest.Environment
	clk   *clocktesting.FakePassiveClock
	probe *tunnelendpoint.Reconciler // a second reconciler, called directly
)

func TestTunnelEndpoint(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "TunnelEndpoint controller suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)

	var err error
	env, err = testenv.Environment(false)
	Expect(err).NotTo(HaveOccurred())
	cfg, err := env.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(edgev1.AddToScheme(scheme))
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})).To(Succeed())

	// The cache as the manager should configure it: children's kinds
	// only in the manager's namespace.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:     scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Cache:      cache.Options{ByObject: tunnelendpoint.CacheByObject(namespace)},
		Controller: config.Controller{SkipNameValidation: ptrTo(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	clk = clocktesting.NewFakePassiveClock(time.Now())
	opts := tunnelendpoint.Options{
		Namespace:  namespace,
		Image:      "example.com/edgeunit:test",
		Controller: controller.Options{MaxConcurrentReconciles: 2},
		Clock:      clk,
	}
	ctx, cancel := context.WithCancel(context.Background())
	Expect(tunnelendpoint.SetupWithManager(ctx, mgr, opts)).To(Succeed())
	probe, err = tunnelendpoint.NewReconciler(mgr, opts)
	Expect(err).NotTo(HaveOccurred())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	DeferCleanup(func() {
		cancel()
		Eventually(done, time.Minute).Should(BeClosed())
	})
	Expect(mgr.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
})

func ptrTo[T any](v T) *T { return &v }
