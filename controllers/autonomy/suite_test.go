package autonomy_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/autonomy"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

var k8s client.Client

func TestAutonomy(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Autonomy controller suite")
}

var _ = BeforeSuite(func() {
	c := suite.Start(testenv.ClusterOptions{Scheme: runtime.SchemeBuilder{edgev1.AddToScheme}})
	k8s = c.Client
	suite.StartManager(c, testenv.ManagerOptions{Setup: func(ctx context.Context, mgr ctrl.Manager) error {
		return autonomy.SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: 2})
	}})
})
