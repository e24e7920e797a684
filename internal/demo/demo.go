package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/edgeunit/edgeunit/controllers"
)

// Timeouts of the steps that do not depend on the user's options.
const (
	controlPlaneStartTimeout = 60 * time.Second
	controlPlaneStopTimeout  = 20 * time.Second
	managerStartTimeout      = 60 * time.Second
	managerStopTimeout       = 30 * time.Second
	applyTimeout             = 30 * time.Second
)

// Demo is a running embedded environment. Start it with Start, stop it with
// Stop.
type Demo struct {
	opts Options
	// WorkDir holds etcd's data, the apiserver's certificates and the
	// control plane's logs. Stop removes it.
	WorkDir string
	// Kubeconfig is the path of the admin kubeconfig written for the user.
	// Stop removes it: it points at a cluster that no longer exists.
	Kubeconfig string
	// APIServerURL and EtcdURL are where the control plane listens.
	APIServerURL string
	EtcdURL      string
	// Config is an admin rest config for the control plane.
	Config *rest.Config
	// Client is an uncached admin client with controllers.Scheme().
	Client client.Client
	// Tunnel is the tunnel-server and the tunnel-agents running on this
	// machine; nil when the samples ask for no tunnel.
	Tunnel *Tunnel
	// UnitDeployments are the UnitDeployments in the cluster once their
	// instances are created and their statuses settled.
	UnitDeployments []types.NamespacedName

	// kubeconfig is what was written to Kubeconfig, so Stop removes the
	// file only while it is still this demo's.
	kubeconfig []byte
	env        *envtest.Environment
	apiLog     *os.File
	etcdLog    *os.File
	stopMgr    context.CancelFunc
	mgrStopped chan struct{}
	mgrErr     error
	// procs are the child processes (tunnel-server, tunnel-agents, the
	// real node's helper).
	procs *processes
	// realNode is the helper process of the real edge node, if one runs.
	realNode *realNodeHelper

	stopOnce sync.Once
	stopErr  error
}

// Run starts the demo, prints the summary and then keeps it running until
// ctx is cancelled (or returns at once with Options.ExitAfterSetup). It
// always stops what it started.
func Run(ctx context.Context, o Options) (err error) {
	d, err := Start(ctx, o)
	if err != nil {
		return err
	}
	defer func() {
		what := "the tunnel processes, the manager, kube-apiserver and etcd"
		if d.realNode.running() {
			what = "the real edge node and its cluster, " + what
		}
		fmt.Fprintf(d.opts.Out, "Stopping %s\n", what)
		if stopErr := d.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the demo: %w", stopErr))
		}
	}()
	if err := d.Report(ctx, d.opts.Out); err != nil {
		return err
	}
	if err := d.followRealNode(ctx); err != nil {
		return err
	}
	if d.opts.ExitAfterSetup {
		return nil
	}
	fmt.Fprintln(d.opts.Out, "The demo runs until you press Ctrl-C.")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.mgrStopped:
			return fmt.Errorf("the manager stopped unexpectedly: %w", d.mgrErr)
		case p := <-d.procs.exited:
			// Stopping an agent is one of the things to try: say what
			// happened and keep running.
			why := "exited"
			if p.err != nil {
				why = p.err.Error()
			}
			fmt.Fprintf(d.opts.Out, "%s (pid %d) %s; its log is %s\n", p.Name, p.PID, why, p.Log)
		}
	}
}

// Start brings the environment up: control plane, CRDs and webhooks,
// kubeconfig, manager, nodes, samples; waits until the pools are Ready; then
// runs the tunnel (server and agents as processes) and waits until its
// agents show as connected. With Options.RealNode it first starts the real
// edge node's helper, which starts its own cluster meanwhile (Run prints
// what it did after the summary).
// When a step fails, what was started so far is stopped again; the Demo
// returned with the error, if any, says where it ran.
func Start(ctx context.Context, o Options) (_ *Demo, err error) {
	if err := o.Complete(); err != nil {
		return nil, err
	}
	d := &Demo{opts: o, Kubeconfig: o.KubeconfigOut, procs: newProcesses()}
	defer func() {
		if err == nil {
			return
		}
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = fmt.Errorf("interrupted: %w", context.Cause(ctx))
		}
		if stopErr := d.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up: %w", stopErr))
		}
	}()
	// Checked between steps: a signal during a step that cannot be
	// interrupted (the control plane's start) stops the demo right after it.
	interrupted := func() error {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", context.Cause(ctx))
		}
		return nil
	}

	if d.WorkDir, err = os.MkdirTemp("", "edgeunit-demo-"); err != nil {
		return d, fmt.Errorf("creating the working directory: %w", err)
	}
	if err := d.startRealNodeHelper(); err != nil {
		return d, err
	}
	d.printf("Starting kube-apiserver and etcd from %s (working directory %s)\n", o.AssetsDir, d.WorkDir)
	if err := d.startControlPlane(); err != nil {
		return d, err
	}
	if err := interrupted(); err != nil {
		return d, err
	}
	d.printf("Control plane up at %s; CRDs from %s and webhooks from %s installed\n",
		d.APIServerURL, filepath.Join(o.ConfigDir, crdDir), filepath.Join(o.ConfigDir, webhookDir))

	if err := d.writeKubeconfig(); err != nil {
		return d, err
	}
	if err := d.startManager(ctx); err != nil {
		return d, err
	}
	if err := interrupted(); err != nil {
		return d, err
	}
	d.printf("Manager running, NodePool webhook serving on %s:%d\n",
		d.env.WebhookInstallOptions.LocalServingHost, d.env.WebhookInstallOptions.LocalServingPort)

	if err := registerNodes(ctx, d.Client, DefaultNodes); err != nil {
		return d, err
	}
	d.printf("Registered %d simulated nodes\n", len(DefaultNodes))

	samples, err := loadSamples(o.SamplesDir, d.Client.Scheme())
	if err != nil {
		return d, fmt.Errorf("loading samples from %s: %w", o.SamplesDir, err)
	}
	if err := applySamples(ctx, d.Client, samples, applyTimeout); err != nil {
		return d, err
	}
	d.printf("Applied %d objects from %s\n", len(samples), o.SamplesDir)

	if err := waitReady(ctx, d.Client, o.ReadyTimeout); err != nil {
		return d, err
	}
	if err := interrupted(); err != nil {
		return d, err
	}
	if err := registerPods(ctx, d.Client, DefaultPods); err != nil {
		return d, err
	}
	if err := waitBindings(ctx, d.Client, bindingsUnit, DefaultPods, o.ReadyTimeout); err != nil {
		return d, err
	}
	d.printf("Placed %d pods on the factory-a nodes; EdgeUnit %s records their IPs and the nodes' VTEP MACs\n", len(DefaultPods), bindingsUnit)

	uds, err := waitUnitDeployments(ctx, d.Client, o.ReadyTimeout)
	if err != nil {
		return d, err
	}
	d.UnitDeployments = uds.names()
	for _, line := range uds.created() {
		d.printf("%s\n", line)
	}

	if d.Tunnel, err = d.startTunnel(ctx); err != nil {
		return d, fmt.Errorf("running the tunnel: %w", err)
	}
	if d.Tunnel == nil {
		d.printf("No EdgeUnit in %s uses an existing TunnelEndpoint: no tunnel runs\n", o.SamplesDir)
	}
	return d, interrupted()
}

func (d *Demo) printf(format string, args ...any) {
	fmt.Fprintf(d.opts.Out, format, args...)
}

func (d *Demo) startControlPlane() error {
	var err error
	// The control plane's output goes to files in the working directory, so
	// a failed start can show why.
	if d.apiLog, err = os.Create(filepath.Join(d.WorkDir, "kube-apiserver.log")); err != nil {
		return err
	}
	if d.etcdLog, err = os.Create(filepath.Join(d.WorkDir, "etcd.log")); err != nil {
		return err
	}
	d.env = &envtest.Environment{
		BinaryAssetsDirectory: d.opts.AssetsDir,
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{
				Path:    filepath.Join(d.opts.AssetsDir, "kube-apiserver"),
				CertDir: filepath.Join(d.WorkDir, "kube-apiserver"),
				Out:     d.apiLog,
				Err:     d.apiLog,
			},
			Etcd: &envtest.Etcd{
				Path:    filepath.Join(d.opts.AssetsDir, "etcd"),
				DataDir: filepath.Join(d.WorkDir, "etcd"),
				Out:     d.etcdLog,
				Err:     d.etcdLog,
			},
		},
		Scheme:                   controllers.Scheme(),
		CRDDirectoryPaths:        []string{filepath.Join(d.opts.ConfigDir, crdDir)},
		ErrorIfCRDPathMissing:    true,
		WebhookInstallOptions:    envtest.WebhookInstallOptions{Paths: []string{filepath.Join(d.opts.ConfigDir, webhookDir)}, LocalServingHost: "127.0.0.1"},
		ControlPlaneStartTimeout: controlPlaneStartTimeout,
		ControlPlaneStopTimeout:  controlPlaneStopTimeout,
	}
	for _, dir := range []string{d.env.ControlPlane.APIServer.CertDir, d.env.ControlPlane.Etcd.DataDir} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
	}
	cfg, err := d.env.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w%s", err, d.logTails())
	}
	d.Config = cfg
	d.APIServerURL = strings.TrimSuffix(cfg.Host, "/")
	if u := d.env.ControlPlane.Etcd.URL; u != nil {
		d.EtcdURL = u.String()
	}
	if d.Client, err = client.New(cfg, client.Options{Scheme: d.env.Scheme}); err != nil {
		return fmt.Errorf("creating a client: %w", err)
	}
	return nil
}

// logTails returns the last lines the control plane wrote, for errors.
func (d *Demo) logTails() string {
	var b strings.Builder
	for _, f := range []*os.File{d.apiLog, d.etcdLog} {
		if f == nil {
			continue
		}
		raw, err := os.ReadFile(f.Name())
		if err != nil || len(raw) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s", filepath.Base(f.Name()), strings.Join(lines, "\n"))
	}
	return b.String()
}

// startManager runs the manager in-process against the control plane and
// waits until its caches are synced and its webhook server answers, since
// the NodePool webhook fails closed.
func (d *Demo) startManager(ctx context.Context) error {
	wio := &d.env.WebhookInstallOptions
	// The manager keeps its CA and the children of TunnelEndpoints and
	// EdgeUnits in its namespace, as `make deploy` would create it.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllers.DefaultNamespace}}
	if err := d.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", ns.Name, err)
	}
	// The manager outlives ctx's cancellation until Stop, so Stop can shut
	// it down before the apiserver.
	mgrCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.stopMgr = cancel
	mgr, err := controllers.NewManager(mgrCtx, d.Config, controllers.Options{
		EnableWebhooks: true,
		WebhookHost:    wio.LocalServingHost,
		WebhookPort:    wio.LocalServingPort,
		WebhookCertDir: wio.LocalServingCertDir,
		MetricsAddr:    "0",
		ProbeAddr:      "0",
		// Tests start several demos in one process.
		SharedProcess: true,
	})
	if err != nil {
		return err
	}
	d.mgrStopped = make(chan struct{})
	go func() {
		defer close(d.mgrStopped)
		d.mgrErr = mgr.Start(mgrCtx)
	}()

	startCtx, cancelStart := context.WithTimeout(ctx, managerStartTimeout)
	defer cancelStart()
	select {
	case <-mgr.Elected():
	case <-d.mgrStopped:
		return fmt.Errorf("starting the manager: %w", d.mgrErr)
	case <-startCtx.Done():
		return fmt.Errorf("starting the manager: %w", context.Cause(startCtx))
	}
	if !mgr.GetCache().WaitForCacheSync(startCtx) {
		return fmt.Errorf("waiting for the manager's caches to sync: %w", context.Cause(startCtx))
	}
	started := mgr.GetWebhookServer().StartedChecker()
	var lastErr error
	if err := wait.PollUntilContextCancel(startCtx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		lastErr = started(nil)
		return lastErr == nil, nil
	}); err != nil {
		return fmt.Errorf("waiting for the webhook server: %w", errors.Join(err, lastErr))
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Manager started")
	return nil
}

// Stop ends the tunnel processes and the real node's helper (by PID), shuts
// the manager down, then
// kube-apiserver and etcd, and removes the working directory and the
// kubeconfig. It is safe to call more than once and on a partly started
// demo.
func (d *Demo) Stop() error {
	d.stopOnce.Do(func() { d.stopErr = d.stop() })
	return d.stopErr
}

func (d *Demo) stop() error {
	var errs []error
	// The tunnel first: its server reports to the apiserver until it ends.
	// The real node's helper stops its own cluster.
	if d.procs != nil {
		if err := d.procs.stopAll(); err != nil {
			errs = append(errs, err)
		}
	}
	if h := d.realNode; h != nil {
		if exited, err := h.proc.Exited(); exited && err != nil {
			errs = append(errs, h.proc.exitError())
		}
	}
	if d.stopMgr != nil {
		d.stopMgr()
		select {
		case <-d.mgrStopped:
			if d.mgrErr != nil {
				errs = append(errs, fmt.Errorf("manager: %w", d.mgrErr))
			}
		case <-time.After(managerStopTimeout):
			errs = append(errs, fmt.Errorf("the manager did not stop within %s", managerStopTimeout))
		}
	}
	if d.env != nil {
		if err := d.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping the control plane: %w", err))
		}
	}
	for _, f := range []*os.File{d.apiLog, d.etcdLog} {
		if f != nil {
			_ = f.Close()
		}
	}
	if d.WorkDir != "" {
		if err := os.RemoveAll(d.WorkDir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := d.removeKubeconfig(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ManagerStopped is closed when the manager returns.
func (d *Demo) ManagerStopped() <-chan struct{} {
	return d.mgrStopped
}
