// Package benchutil holds what the envtest benchmarks under test/bench
// share: starting and tearing down kube-apiserver and etcd with the
// project's CRDs, unthrottled clients, running a benchmark and watching
// its steady state, a counting RoundTripper for rest.Config.WrapTransport,
// counters by key, gathered metrics' samples, a logr sink for the manager
// under test, settings from the environment, and CPU and memory readers
// from /proc.
package benchutil

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/edgeunit/edgeunit/controllers"
	"github.com/edgeunit/edgeunit/internal/testenv"
)

// StartEnv starts kube-apiserver and etcd with the project's CRDs and
// returns their admin config and the Teardown that stops them, which runs
// at the test's cleanup unless run before.
func StartEnv(tb testing.TB) (*rest.Config, *Teardown) {
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
	t := &Teardown{tb: tb, stopEnv: env.Stop}
	tb.Cleanup(t.Run)
	return cfg, t
}

// Teardown stops what a benchmark run started: the functions passed to
// Add, the last added first, then the control plane, logging its error.
// It runs once, when Run is first called or at the test's cleanup,
// whichever comes first.
type Teardown struct {
	tb      testing.TB
	stopEnv func() error
	stops   []func()
	once    sync.Once
}

// Add adds stop, to run before what was added earlier and before the
// control plane stops.
func (t *Teardown) Add(stop func()) { t.stops = append(t.stops, stop) }

// Run runs the teardown the first time it is called and does nothing after.
func (t *Teardown) Run() {
	t.once.Do(func() {
		for i := len(t.stops) - 1; i >= 0; i-- {
			t.stops[i]()
		}
		if err := t.stopEnv(); err != nil {
			t.tb.Logf("Stopping envtest: %v", err)
		}
	})
}

// Unthrottled returns a copy of cfg without client-side rate limit.
func Unthrottled(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0
	return cfg
}

// NewClient returns an uncached client of the project's scheme without
// client-side rate limit, so a benchmark's load generator and verifier are
// never its bottleneck.
func NewClient(tb testing.TB, cfg *rest.Config) client.Client {
	tb.Helper()
	c, err := client.New(Unthrottled(cfg), client.Options{Scheme: controllers.Scheme()})
	if err != nil {
		tb.Fatalf("Creating a client: %v", err)
	}
	return c
}
