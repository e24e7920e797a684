// Package controllers assembles the edgeunit manager: its caches, controllers
// and webhooks.
package controllers

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/autonomy"
	"github.com/edgeunit/edgeunit/controllers/bindings"
	"github.com/edgeunit/edgeunit/controllers/certificates"
	"github.com/edgeunit/edgeunit/controllers/edgeunit"
	"github.com/edgeunit/edgeunit/controllers/nodepool"
	"github.com/edgeunit/edgeunit/controllers/topology"
	"github.com/edgeunit/edgeunit/controllers/tunnelendpoint"
	"github.com/edgeunit/edgeunit/controllers/unitdeployment"
	webhookcerts "github.com/edgeunit/edgeunit/webhooks/certs"
	edgeunitwebhook "github.com/edgeunit/edgeunit/webhooks/edgeunit"
	nodepoolwebhook "github.com/edgeunit/edgeunit/webhooks/nodepool"
	podwebhook "github.com/edgeunit/edgeunit/webhooks/pod"
	unitdeploymentwebhook "github.com/edgeunit/edgeunit/webhooks/unitdeployment"
)

// Options configure the manager. Zero values take the defaults below.
type Options struct {
	MetricsAddr    string
	ProbeAddr      string
	WebhookHost    string
	WebhookPort    int
	WebhookCertDir string
	EnableWebhooks bool
	// ProvisionWebhookCert has the manager keep its own webhook serving
	// certificate (Secret, files, caBundle) in Namespace. Off when OLM or
	// cert-manager provide it.
	ProvisionWebhookCert bool
	// Namespace the manager runs in, where it keeps the children of
	// TunnelEndpoints and EdgeUnits and its CA. Default DefaultNamespace.
	Namespace string
	// NodeAPIServerURL is kube-apiserver's address as edge nodes reach it;
	// empty means the server of each node's kubelet kubeconfig.
	NodeAPIServerURL string
	// Image is the default image of the node components and tunnel
	// servers (one image holds every binary).
	Image            string
	LeaderElection   bool
	LeaderElectionNS string
	// QPS and Burst of the manager's API client. The defaults are sized so
	// a large initial sync is bounded by the apiserver, not by the client.
	QPS   float32
	Burst int
	// Concurrency is the number of workers per controller.
	Concurrency int
	// PprofAddr serves net/http/pprof when set ("" or "0" disables it).
	PprofAddr string
	// SharedProcess lets the process build more than one manager (the
	// demo's tests, benchmarks): controller-runtime then skips its check
	// that controller names are unique in the process. Off in the manager
	// binary, where a second controller of the same name is a bug.
	SharedProcess bool
}

// Defaults for Options.
const (
	DefaultQPS         = 300
	DefaultBurst       = 600
	DefaultConcurrency = 8
	DefaultNamespace   = "edgeunit-system"
	DefaultImage       = "ghcr.io/edgeunit/edgeunit:latest"
)

// Scheme returns a scheme with the built-in kinds and edgeunit's.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(edgev1.AddToScheme(s))
	return s
}

// NewManager builds a manager with every controller and webhook registered.
func NewManager(ctx context.Context, cfg *rest.Config, o Options) (ctrl.Manager, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = o.QPS, o.Burst
	if cfg.QPS == 0 {
		cfg.QPS = DefaultQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultBurst
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Image == "" {
		o.Image = DefaultImage
	}
	byObject := map[client.Object]cache.ByObject{
		&corev1.Node{}: {Transform: trimNode},
		&corev1.Pod{}:  {Transform: trimPod},
	}
	// Children live in the manager's namespace: cache only that namespace,
	// which is also all the namespaced RBAC allows.
	byObject[&appsv1.DaemonSet{}] = cache.ByObject{Namespaces: map[string]cache.Config{o.Namespace: {}}}
	byObject[&corev1.ConfigMap{}] = cache.ByObject{Namespaces: map[string]cache.Config{o.Namespace: {}}}
	for obj, by := range tunnelendpoint.CacheByObject(o.Namespace) {
		switch obj.(type) {
		case *corev1.Service:
			continue // The topology controller watches Services everywhere.
		case *appsv1.Deployment:
			// Elsewhere only UnitDeployments' instances.
			by.Namespaces[cache.AllNamespaces] = cache.Config{LabelSelector: unitdeployment.InstanceSelector()}
		}
		byObject[obj] = by
	}
	mopts := ctrl.Options{
		Scheme:                  Scheme(),
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.ProbeAddr,
		PprofBindAddress:        o.PprofAddr,
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        "edgeunit-manager.edge.edgeunit.io",
		LeaderElectionNamespace: o.LeaderElectionNS,
		Cache: cache.Options{
			ByObject:         byObject,
			DefaultTransform: cache.TransformStripManagedFields(),
		},
		Controller: config.Controller{SkipNameValidation: ptrTo(o.SharedProcess)},
	}
	if o.EnableWebhooks {
		mopts.WebhookServer = webhook.NewServer(webhook.Options{Host: o.WebhookHost, Port: o.WebhookPort, CertDir: o.WebhookCertDir})
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	if o.EnableWebhooks && o.ProvisionWebhookCert {
		if err := provisionWebhookCert(ctx, mgr, o); err != nil {
			return nil, err
		}
	}
	copts := controller.Options{MaxConcurrentReconciles: o.Concurrency, CacheSyncTimeout: 2 * time.Minute}
	if err := nodepool.SetupWithManager(ctx, mgr, copts); err != nil {
		return nil, err
	}
	if err := tunnelendpoint.SetupWithManager(ctx, mgr, tunnelendpoint.Options{Namespace: o.Namespace, Image: o.Image, Controller: copts}); err != nil {
		return nil, fmt.Errorf("setting up the TunnelEndpoint controller: %w", err)
	}
	if err := edgeunit.SetupWithManager(ctx, mgr, edgeunit.Options{
		Namespace: o.Namespace, HubImage: o.Image, AgentImage: o.Image, APIServerURL: o.NodeAPIServerURL, Controller: copts,
	}); err != nil {
		return nil, fmt.Errorf("setting up the EdgeUnit controller: %w", err)
	}
	if err := unitdeployment.SetupWithManager(ctx, mgr, copts); err != nil {
		return nil, fmt.Errorf("setting up the UnitDeployment controller: %w", err)
	}
	if err := certificates.SetupWithManager(ctx, mgr, certificates.Options{Namespace: o.Namespace, Controller: copts}); err != nil {
		return nil, fmt.Errorf("setting up the certificate controllers: %w", err)
	}
	if err := topology.SetupWithManager(ctx, mgr, copts); err != nil {
		return nil, fmt.Errorf("setting up the topology controller: %w", err)
	}
	if err := autonomy.SetupWithManager(ctx, mgr, copts); err != nil {
		return nil, fmt.Errorf("setting up the autonomy controller: %w", err)
	}
	// After autonomy: both use the pod-by-node index it registers.
	if err := bindings.SetupWithManager(ctx, mgr, copts); err != nil {
		return nil, fmt.Errorf("setting up the bindings controller: %w", err)
	}
	if o.EnableWebhooks {
		if err := nodepoolwebhook.SetupWithManager(mgr); err != nil {
			return nil, fmt.Errorf("registering NodePool webhook: %w", err)
		}
		if err := edgeunitwebhook.SetupWithManager(ctx, mgr); err != nil {
			return nil, fmt.Errorf("registering EdgeUnit webhook: %w", err)
		}
		if err := unitdeploymentwebhook.SetupWithManager(ctx, mgr); err != nil {
			return nil, fmt.Errorf("registering UnitDeployment webhook: %w", err)
		}
		if err := podwebhook.SetupWithManager(ctx, mgr); err != nil {
			return nil, fmt.Errorf("registering Pod webhook: %w", err)
		}
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return nil, fmt.Errorf("adding webhook readiness check: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding readiness check: %w", err)
	}
	return mgr, nil
}

// Names of the objects config/default installs for the webhook.
const (
	WebhookSecret     = "edgeunit-webhook-cert"
	WebhookService    = "edgeunit-webhook-service"
	WebhookValidating = "edgeunit-validating-webhook-configuration"
	WebhookMutating   = "edgeunit-mutating-webhook-configuration"
)

// provisionWebhookCert writes the webhook certificate before the webhook
// server starts (it reads the files at start) and keeps it renewed.
func provisionWebhookCert(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if o.Namespace == "" || o.WebhookCertDir == "" {
		return fmt.Errorf("provisioning the webhook certificate needs the manager's namespace and a cert dir")
	}
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return fmt.Errorf("creating a client: %w", err)
	}
	p := &webhookcerts.Provisioner{
		Client: direct, Namespace: o.Namespace, Secret: WebhookSecret, Service: WebhookService,
		CertDir: o.WebhookCertDir, Validating: []string{WebhookValidating}, Mutating: []string{WebhookMutating}, Interval: time.Hour,
	}
	if err := p.Ensure(ctx); err != nil {
		return fmt.Errorf("provisioning the webhook certificate: %w", err)
	}
	return mgr.Add(p)
}

func ptrTo[T any](v T) *T { return &v }
