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
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	testingclock "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgeunit/edgeunit/controllers/certificates"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
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
	c := suite.Start(testenv.ClusterOptions{Namespaces: []string{managerNS}})
	k8s, restCfg = c.Client, c.Config
	ctx := context.Background()

	grantManager(ctx, managerNS)
	// Nodes, bootstrap tokens and anyone else may create CSRs (a real
	// cluster grants nodes this through the Node authorizer); what they
	// get is the approver's business.
	suite.AllowCSRs(ctx, k8s, "test-csr-requester", "system:authenticated")

	managerCf = impersonating(managerUser, "system:serviceaccounts", "system:serviceaccounts:"+managerNS)
	clk = testingclock.NewFakeClock(time.Now())
	suite.StartManager(c, testenv.ManagerOptions{Config: managerCf, Setup: func(ctx context.Context, mgr ctrl.Manager) error {
		return certificates.SetupWithManager(ctx, mgr, certificates.Options{Namespace: managerNS, Clock: clk})
	}})
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
