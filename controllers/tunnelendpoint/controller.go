// Package tunnelendpoint runs the TunnelEndpoint controller: for each
// endpoint it applies the tunnel-server Deployment, the Service agents dial
// and a headless Service listing every replica, keeps their serving
// certificate and kube-apiserver's egress client certificate (the only
// client the CONNECT listener admits) issued by the operator CA (renewed at
// two thirds of their lifetimes), and reports ready servers, agent addresses and conditions.
// Connected agents are reported into the same status by the servers
// themselves; this controller never writes those fields.
package tunnelendpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// FieldOwner is the field manager of every write the controller makes,
// children and its part of the status alike.
const FieldOwner = "edgeunit-tunnelendpoint"

// Finalizer holds a TunnelEndpoint until its children are deleted.
const Finalizer = edgev1.FinalizerTunnelEndpoint

// Defaults for Options.
const (
	DefaultImage          = "ghcr.io/edgeunit/edgeunit:latest"
	DefaultServiceAccount = "edgeunit-tunnel-server"
	DefaultClusterDomain  = "cluster.local"
)

// minRequeue keeps a renewal that is due right now from becoming a
// requeue of zero, which means none.
const minRequeue = time.Second

// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=tunnelendpoints,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=tunnelendpoints/status,verbs=get;patch
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=tunnelendpoints/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,namespace=system,resources=deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",namespace=system,resources=services,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Options configure the TunnelEndpoint controller.
type Options struct {
	// Namespace the manager runs in; the children live there. Required.
	Namespace string
	// Image of the tunnel server when spec.image is unset (DefaultImage).
	Image string
	// ServiceAccount of the server pods (DefaultServiceAccount). It needs
	// get/list/watch on nodes and get plus patch on tunnelendpoints/status;
	// the manager does not create it.
	ServiceAccount string
	// ClusterDomain for the Services' fully qualified names in the serving
	// certificate (DefaultClusterDomain).
	ClusterDomain string
	// EgressCertificateLifetime of kube-apiserver's egress client
	// certificate (DefaultEgressCertificateLifetime).
	EgressCertificateLifetime time.Duration
	// Controller options (workers, cache sync timeout).
	Controller controller.Options
	// Clock for issuing and renewing certificates; the real clock if nil.
	Clock clock.PassiveClock
}

// Reconciler reconciles TunnelEndpoints.
type Reconciler struct {
	// Client reads from the cache and writes.
	Client client.Client
	// APIReader reads the serving Secret live, so a pass never re-issues a
	// certificate because the cache lags the previous pass's write.
	APIReader client.Reader
	// CAClient reads and creates the operator CA Secret live (see
	// certificates.EnsureCA).
	CAClient client.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	cfg      config
}

// NewReconciler builds a Reconciler from a manager and options.
func NewReconciler(mgr ctrl.Manager, opts Options) (*Reconciler, error) {
	if opts.Namespace == "" {
		return nil, errors.New("the TunnelEndpoint controller needs the manager's namespace")
	}
	cfg := config{Namespace: opts.Namespace, Image: opts.Image, ServiceAccount: opts.ServiceAccount, ClusterDomain: opts.ClusterDomain, EgressLifetime: opts.EgressCertificateLifetime}
	if cfg.Image == "" {
		cfg.Image = DefaultImage
	}
	if cfg.ServiceAccount == "" {
		cfg.ServiceAccount = DefaultServiceAccount
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = DefaultClusterDomain
	}
	if cfg.EgressLifetime <= 0 {
		cfg.EgressLifetime = DefaultEgressCertificateLifetime
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return nil, fmt.Errorf("creating an uncached client: %w", err)
	}
	return &Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		CAClient:  direct,
		Recorder:  mgr.GetEventRecorder("tunnelendpoint-controller"),
		Clock:     clk,
		cfg:       cfg,
	}, nil
}

// SetupWithManager registers the TunnelEndpoint controller. The manager's
// cache should hold Deployments, Services and Secrets of opts.Namespace
// only (see CacheByObject): the RBAC is namespaced.
func SetupWithManager(_ context.Context, mgr ctrl.Manager, opts Options) error {
	r, err := NewReconciler(mgr, opts)
	if err != nil {
		return err
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("tunnelendpoint").
		For(&edgev1.TunnelEndpoint{}, builder.WithPredicates(endpointChanged)).
		Owns(&appsv1.Deployment{}, builder.WithPredicates(deploymentChanged)).
		Owns(&corev1.Service{}).
		Owns(&corev1.Secret{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.allEndpoints), builder.WithPredicates(isCASecret(opts.Namespace))).
		WithOptions(opts.Controller).
		Complete(r); err != nil {
		return fmt.Errorf("creating the tunnelendpoint controller: %w", err)
	}
	return nil
}

// Reconcile brings one TunnelEndpoint's children and status up to date.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (_ reconcile.Result, reterr error) {
	te := &edgev1.TunnelEndpoint{}
	if err := r.Client.Get(ctx, req.NamespacedName, te); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !te.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.reconcileDelete(ctx, te)
	}
	if err := r.addFinalizer(ctx, te); err != nil {
		return reconcile.Result{}, err
	}

	var obs observed
	defer func() {
		if err := r.patchStatus(ctx, te, obs, reterr == nil); err != nil {
			reterr = errors.Join(reterr, err)
		}
	}()
	// Order matters: the certificate names the Service's addresses, and
	// the Deployment mounts the certificate.
	for _, phase := range []func(context.Context, *edgev1.TunnelEndpoint, *observed) error{
		r.reconcileServices,
		r.reconcileCertificate,
		r.observeEgress,
		r.reconcileDeployment,
	} {
		if err := phase(ctx, te, &obs); err != nil {
			return reconcile.Result{}, err
		}
	}
	// Come back when a certificate is due for renewal: nothing else
	// would trigger a pass then.
	return reconcile.Result{RequeueAfter: requeueAfter(earliest(obs.cert, obs.egressCert), r.Clock.Now())}, nil
}

// requeueAfter is the time until the certificate's renewal.
func requeueAfter(ci *certInfo, now time.Time) time.Duration {
	if ci == nil {
		return 0
	}
	return max(ci.RenewAt.Sub(now), minRequeue)
}
