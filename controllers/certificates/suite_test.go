package certificates_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	testingclock "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/edgeunit/edgeunit/controllers/certificates"
	"github.com/edgeunit/edgeunit/internal/testenv"
)

const (
	managerNS = "edgeunit-system"
	// managerUser is who the manager runs as: it holds exactly the RBAC
	// its kubebuilder markers grant, so the suite fails if they fall short.
	managerUser = "system:serviceaccount:edgeunit-system:edgeunit-manager"
)

var (
	k8s       client.Client
	restCfg   *rest.Config
	managerCf *rest.Config
	clk       *testingclock.FakeClock
)

func TestCertificates(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Certificates controller suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)

	env, err := testenv.Environment(false)
	Expect(err).NotTo(HaveOccurred())
	restCfg, err = env.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	k8s, err = client.New(restCfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	ctx := context.Background()

	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNS}})).To(Succeed())
	grantManager(ctx, managerNS)
	// Nodes, bootstrap tokens and anyone else may create CSRs (a real
	// cluster grants nodes this through the Node authorizer); what they
	// get is the approver's business.
	Expect(k8s.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "test-csr-requester"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"},
			Verbs: []string{"create", "get", "list", "watch"}}},
	})).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-csr-requester"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "test-csr-requester"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "system:authenticated"}},
	})).To(Succeed())

	managerCf = impersonating(managerUser, "system:serviceaccounts", "system:serviceaccounts:"+managerNS)
	clk = testingclock.NewFakeClock(time.Now())
	mgr, err := ctrl.NewManager(managerCf, ctrl.Options{
		Scheme:     scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptrTo(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	mctx, cancel := context.WithCancel(context.Background())
	Expect(certificates.SetupWithManager(mctx, mgr, certificates.Options{Namespace: managerNS, Clock: clk})).To(Succeed())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
	DeferCleanup(func() {
		cancel()
		Eventually(done, time.Minute).Should(BeClosed())
	})
})

// impersonating is the admin config acting as user in groups (plus
// system:authenticated, which the apiserver adds).
func impersonating(user string, groups ...string) *rest.Config {
	cfg := rest.CopyConfig(restCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append(groups, "system:authenticated")}
	return cfg
}

func clientsetAs(user string, groups ...string) kubernetes.Interface {
	cs, err := kubernetes.NewForConfig(impersonating(user, groups...))
	Expect(err).NotTo(HaveOccurred())
	return cs
}

// grantManager binds managerUser to the rules of this package's
// +kubebuilder:rbac markers, the namespaced ones (namespace=system) in ns,
// and waits until the authorizer has seen them.
func grantManager(ctx context.Context, ns string) {
	cluster, namespaced := markerRules()
	if ns == managerNS {
		Expect(k8s.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "test-manager"}, Rules: cluster})).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "test-manager"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "test-manager"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: managerUser}},
		})).To(Succeed())
	}
	Expect(k8s.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "test-manager"}, Rules: namespaced})).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "test-manager"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "test-manager"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: managerUser}},
	})).To(Succeed())
	cs, err := kubernetes.NewForConfig(impersonating(managerUser))
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() bool {
		_, err := cs.CoreV1().Secrets(ns).Get(ctx, certificates.CASecret, metav1.GetOptions{})
		return !apierrors.IsForbidden(err)
	}).Should(BeTrue(), "the manager's Role in %s never took effect", ns)
}

// markerRules reads the +kubebuilder:rbac markers of the package's sources,
// as controller-gen does, into cluster-wide and namespaced rules.
func markerRules() (cluster, namespaced []rbacv1.PolicyRule) {
	files, err := filepath.Glob("*.go")
	Expect(err).NotTo(HaveOccurred())
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		Expect(err).NotTo(HaveOccurred())
		for _, line := range strings.Split(string(data), "\n") {
			spec, ok := strings.CutPrefix(strings.TrimSpace(line), "// +kubebuilder:rbac:")
			if !ok {
				continue
			}
			var rule rbacv1.PolicyRule
			var ns string
			for _, kv := range strings.Split(spec, ",") {
				k, v, _ := strings.Cut(kv, "=")
				vals := strings.Split(strings.Trim(v, `"`), ";")
				switch k {
				case "groups":
					rule.APIGroups = vals
				case "resources":
					rule.Resources = vals
				case "resourceNames":
					rule.ResourceNames = vals
				case "verbs":
					rule.Verbs = vals
				case "namespace":
					ns = v
				default:
					Fail("unknown RBAC marker key " + k + " in " + f)
				}
			}
			if ns != "" {
				namespaced = append(namespaced, rule)
			} else {
				cluster = append(cluster, rule)
			}
		}
	}
	Expect(cluster).NotTo(BeEmpty())
	return cluster, namespaced
}

func ptrTo[T any](v T) *T { return &v }
