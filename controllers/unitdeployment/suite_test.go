package unitdeployment_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/unitdeployment"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
)

var k8s client.Client

func TestUnitDeployment(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "UnitDeployment controller suite")
}

var _ = BeforeSuite(func() {
	// CRDs only: the webhook is tested with its own package.
	c := suite.Start(testenv.ClusterOptions{Scheme: runtime.SchemeBuilder{edgev1.AddToScheme}})
	k8s = c.Client
	// The manager's cache sees Deployments as in production: instances only.
	suite.StartManager(c, testenv.ManagerOptions{Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
		&appsv1.Deployment{}: {Label: unitdeployment.InstanceSelector()},
	}}, Setup: func(ctx context.Context, mgr ctrl.Manager) error {
		return unitdeployment.SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: 4})
	}})
})
