// Package benchutil holds what the envtest benchmarks under test/bench
// share: starting kube-apiserver and etcd with the project's CRDs, a
// counting RoundTripper for rest.Config.WrapTransport, and CPU and memory
// readers from /proc.
package benchutil

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/edgeunit/edgeunit/internal/testenv"
)

// StartEnv starts kube-apiserver and etcd with the project's CRDs and
// returns their admin config and an idempotent stop function.
func StartEnv(tb testing.TB) (*rest.Config, func() error) {
	tb.Helper()
	assets, err := testenv.AssetsDir()
	if err != nil {
		tb.Fatalf("Finding envtest binaries: %v", err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		tb.Fatalf("Finding the repository root: %v", err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		// A cold start on 2 busy cores can exceed the 20 s default.
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		tb.Fatalf("Starting envtest: %v", err)
	}
	return cfg, sync.OnceValue(env.Stop)
}
