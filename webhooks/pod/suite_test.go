package pod_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/testenv"
	podwebhook "github.com/edgeunit/edgeunit/webhooks/pod"
)

var k8s client.Client

func TestPodWebhook(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Pod webhook suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)

	env, err := testenv.Environment(false)
	Expect(err).NotTo(HaveOccurred())
	// The webhook configuration comes from this package's markers, as
	// `make manifests` renders it.
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{Paths: []string{webhookManifests("./webhooks/pod")}}
	cfg, err := env.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(edgev1.AddToScheme(scheme))
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	wh := env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:        scheme,
		Metrics:       metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{Host: wh.LocalServingHost, Port: wh.LocalServingPort, CertDir: wh.LocalServingCertDir}),
	})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	Expect(podwebhook.SetupWithManager(ctx, mgr)).To(Succeed())
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
	Eventually(func() error { return mgr.GetWebhookServer().StartedChecker()(nil) }).Should(Succeed())
	Eventually(func() bool { return mgr.GetCache().WaitForCacheSync(ctx) }).Should(BeTrue())
})

// webhookManifests renders the webhook configuration of pkgs with the
// repository's controller-gen into a temporary directory.
func webhookManifests(pkgs string) string {
	GinkgoHelper()
	root, err := testenv.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	dir, err := os.MkdirTemp("", "webhook-manifests-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	args := []string{"webhook", "paths=" + pkgs, "output:webhook:artifacts:config=" + dir}
	cmd := exec.Command(filepath.Join(root, "bin", "controller-gen-v0.21.0"), args...)
	if _, err := os.Stat(cmd.Path); err != nil {
		cmd = exec.Command("go", append([]string{"run", "sigs.k8s.io/controller-tools/cmd/controller-gen@v0.21.0"}, args...)...)
	}
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "controller-gen: %s", out)
	return filepath.Join(dir, "manifests.yaml")
}
