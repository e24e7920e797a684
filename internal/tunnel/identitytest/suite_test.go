// Package identitytest runs a tunnel-agent that obtains its identity
// through the Kubernetes CSR API against a real kube-apiserver with
// edgeunit's CSR approver and signer, and an in-process tunnel-server on
// loopback.
package identitytest

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/klog/v2"
	testingclock "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/edgeunit/edgeunit/controllers/certificates"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

const managerNS = "edgeunit-system"

var (
	env *envtest.Environment
	k8s client.Client
	// clk dates the certificates the signer issues and drives the agent's
	// rotation, so a rotation takes a clock step instead of 40 minutes.
	clk *testingclock.FakeClock
)

func TestAgentIdentity(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Tunnel agent identity suite")
}

var _ = BeforeSuite(func() {
	klog.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	c := suite.Start(testenv.ClusterOptions{Namespaces: []string{managerNS}})
	env, k8s = c.Env, c.Client
	ctx := context.Background()
	// Nodes may request certificates, as the Node authorizer and the
	// system:node role let them in a real cluster.
	suite.AllowCSRs(ctx, k8s, "test-node-csr", "system:nodes")

	clk = testingclock.NewFakeClock(time.Now())
	suite.StartManager(c, testenv.ManagerOptions{Setup: func(ctx context.Context, mgr ctrl.Manager) error {
		return certificates.SetupWithManager(ctx, mgr, certificates.Options{Namespace: managerNS, Clock: clk})
	}})
})
