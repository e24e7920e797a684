package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

const (
	// webhookWait bounds the wait for the manager's webhook server.
	webhookWait = 30 * time.Second
	// managerStopWait bounds the wait for a stopped manager to return.
	managerStopWait = time.Minute
)

// ClusterOptions say what StartCluster installs. Without webhooks the
// control plane has the CRDs only.
type ClusterOptions struct {
	// Webhooks names the webhooks of config/webhook/manifests.yaml to
	// install (see EnvironmentWithWebhooks).
	Webhooks []string
	// WebhookPackages are package paths, relative to the repository root
	// (./webhooks/pod), whose +kubebuilder:webhook markers controller-gen
	// renders into the webhook configurations to install.
	WebhookPackages []string
	// Scheme adds types to the client-go ones in the cluster's scheme.
	Scheme runtime.SchemeBuilder
	// Namespaces are created before StartCluster returns.
	Namespaces []string
}

// Cluster is a running envtest control plane with an admin client.
type Cluster struct {
	Env    *envtest.Environment
	Config *rest.Config // the admin's
	Scheme *runtime.Scheme
	Client client.Client // the admin's, uncached

	webhooks bool
	started  bool // Env.Start was called
	tmp      string
}

// StartCluster starts kube-apiserver and etcd as o says. The caller calls
// Stop when done (with Ginkgo: DeferCleanup(c.Stop)); on error nothing is
// left running.
func StartCluster(o ClusterOptions) (_ *Cluster, err error) {
	c := &Cluster{Scheme: runtime.NewScheme()}
	scheme := append(runtime.SchemeBuilder{clientgoscheme.AddToScheme}, o.Scheme...)
	if err := scheme.AddToScheme(c.Scheme); err != nil {
		return nil, fmt.Errorf("building the scheme: %w", err)
	}
	if len(o.Webhooks) > 0 {
		c.Env, err = EnvironmentWithWebhooks(o.Webhooks...)
	} else {
		c.Env, err = Environment(false)
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	if len(o.WebhookPackages) > 0 {
		if c.tmp, err = os.MkdirTemp("", "webhook-manifests-"); err != nil {
			return nil, err
		}
		paths := make([]string, 0, len(o.WebhookPackages))
		for i, pkg := range o.WebhookPackages {
			dir := filepath.Join(c.tmp, fmt.Sprint(i))
			if err := RenderWebhookManifests(dir, pkg); err != nil {
				return nil, err
			}
			paths = append(paths, filepath.Join(dir, "manifests.yaml"))
		}
		c.Env.WebhookInstallOptions = envtest.WebhookInstallOptions{Paths: paths}
	}
	wh := &c.Env.WebhookInstallOptions
	c.webhooks = len(wh.Paths)+len(wh.ValidatingWebhooks)+len(wh.MutatingWebhooks) > 0
	if c.webhooks && wh.LocalServingPort == 0 {
		// The webhook port is chosen now but bound only when the manager
		// starts: outside the ephemeral range nobody takes it meanwhile.
		port, err := RestartablePort("127.0.0.1")
		if err != nil {
			return nil, err
		}
		wh.LocalServingHost, wh.LocalServingPort = "127.0.0.1", port
	}

	c.started = true
	if c.Config, err = c.Env.Start(); err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	if c.Client, err = client.New(c.Config, client.Options{Scheme: c.Scheme}); err != nil {
		return nil, err
	}
	for _, ns := range o.Namespaces {
		if err := c.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, fmt.Errorf("creating namespace %s: %w", ns, err)
		}
	}
	return c, nil
}

// Stop stops the control plane and removes the rendered webhook manifests.
func (c *Cluster) Stop() error {
	var err error
	if c.started {
		err = c.Env.Stop()
	}
	if c.tmp != "" {
		err = errors.Join(err, os.RemoveAll(c.tmp))
	}
	return err
}

// ManagerOptions say how StartManager runs a manager.
type ManagerOptions struct {
	// Config is whom the manager runs as; nil: the cluster's admin.
	Config *rest.Config
	Cache  cache.Options
	// Setup registers controllers and webhooks; ctx is the manager's.
	Setup func(ctx context.Context, mgr ctrl.Manager) error
}

// Manager is a manager running in the background until Stop.
type Manager struct {
	ctrl.Manager
	Ctx context.Context // the manager's, cancelled by Stop

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// StartManager builds a manager on the cluster's scheme, with metrics off,
// controller names unchecked (a suite may register a controller again) and
// the webhook server envtest's webhook configurations call, runs o.Setup
// and starts it. When the cluster has webhooks it returns once the webhook
// server answers. The caller calls Stop when done; on error nothing is left
// running.
func (c *Cluster) StartManager(o ManagerOptions) (*Manager, error) {
	cfg := o.Config
	if cfg == nil {
		cfg = c.Config
	}
	opts := ctrl.Options{
		Scheme:     c.Scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Cache:      o.Cache,
		Controller: config.Controller{SkipNameValidation: new(true)},
	}
	if c.webhooks {
		wh := c.Env.WebhookInstallOptions
		opts.WebhookServer = webhook.NewServer(webhook.Options{Host: wh.LocalServingHost, Port: wh.LocalServingPort, CertDir: wh.LocalServingCertDir})
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	m := &Manager{Manager: mgr, done: make(chan struct{})}
	m.Ctx, m.cancel = context.WithCancel(context.Background())
	if o.Setup != nil {
		if err := o.Setup(m.Ctx, mgr); err != nil {
			m.cancel()
			return nil, err
		}
	}
	go func() {
		defer close(m.done)
		m.err = mgr.Start(m.Ctx)
	}()
	if c.webhooks {
		started := mgr.GetWebhookServer().StartedChecker()
		if err := wait.PollUntilContextTimeout(m.Ctx, 100*time.Millisecond, webhookWait, true, func(context.Context) (bool, error) {
			select {
			case <-m.done:
				return false, fmt.Errorf("manager stopped: %w", m.err)
			default:
				return started(nil) == nil, nil
			}
		}); err != nil {
			return nil, errors.Join(fmt.Errorf("waiting for the webhook server: %w", err), m.Stop())
		}
	}
	return m, nil
}

// Done is closed when the manager has returned.
func (m *Manager) Done() <-chan struct{} { return m.done }

// Err is what the manager returned, once Done is closed.
func (m *Manager) Err() error { return m.err }

// Stop stops the manager and returns its error, or an error if it did not
// return within a minute.
func (m *Manager) Stop() error {
	m.cancel()
	select {
	case <-m.done:
		return m.err
	case <-time.After(managerStopWait):
		return fmt.Errorf("manager did not stop within %s", managerStopWait)
	}
}

// RenderWebhookManifests renders the webhook configuration of pkgs (package
// paths relative to the repository root) into dir/manifests.yaml with the
// repository's controller-gen, as `make manifests` does.
func RenderWebhookManifests(dir, pkgs string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	args := []string{"webhook", "paths=" + pkgs, "output:webhook:artifacts:config=" + dir}
	cmd := exec.Command(filepath.Join(root, "bin", "controller-gen-v0.21.0"), args...)
	if _, err := os.Stat(cmd.Path); err != nil {
		cmd = exec.Command("go", append([]string{"run", "sigs.k8s.io/controller-tools/cmd/controller-gen@v0.21.0"}, args...)...)
	}
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("controller-gen: %w: %s", err, out)
	}
	return nil
}
