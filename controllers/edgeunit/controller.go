// Package edgeunit runs the EdgeUnit controller: for each unit it applies
// the edge hub's installer and the tunnel agent, pinned to the unit's nodes,
// and reports their rollout and the unit's conditions.
package edgeunit

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/index"
	"github.com/edgeunit/edgeunit/controllers/internal/lastwrite"
)

// FieldOwner is the field manager of every write the EdgeUnit controller
// makes, and the app.kubernetes.io/managed-by of its children.
const FieldOwner = "edgeunit-edgeunit"

// Finalizer holds an EdgeUnit until its children are deleted, so cleanup
// does not depend on the garbage collector.
const Finalizer = edgev1.FinalizerEdgeUnit

// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=edgeunits,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=edgeunits/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=edgeunits/finalizers,verbs=update
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=tunnelendpoints,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Options configure the EdgeUnit controller.
type Options struct {
	// Namespace the children live in: the manager's namespace, which also
	// holds the operator CA Secret. Required.
	Namespace string
	// HubImage holds /edge-hub; it runs both the installer and the hub
	// unless a unit sets spec.hub.image. Required.
	HubImage string
	// AgentImage holds /tunnel-agent, unless a unit sets
	// spec.tunnel.agentImage. Required.
	AgentImage string
	// APIServerURL is the kube-apiserver address as nodes reach it. The
	// hubs dial it with the kubelet's credentials; empty leaves them the
	// server of the kubelet's kubeconfig.
	APIServerURL string
	// KubeletKubeconfig is the kubelet's kubeconfig on the nodes
	// (DefaultKubeletKubeconfig when empty). The hub proxies with its
	// credential and the tunnel agent requests its identity with it.
	KubeletKubeconfig string
	// KubeletPKIDir is the directory on the nodes holding the client
	// certificate that kubeconfig names (DefaultKubeletPKIDir when empty).
	KubeletPKIDir string
	// Controller options (workers, cache sync timeout).
	Controller controller.Options
}

// Defaults for Options: where kubeadm puts the kubelet's credentials.
const (
	DefaultKubeletKubeconfig = "/etc/kubernetes/kubelet.conf"
	DefaultKubeletPKIDir     = "/var/lib/kubelet/pki"
)

func (o Options) kubeletKubeconfig() string {
	if o.KubeletKubeconfig != "" {
		return o.KubeletKubeconfig
	}
	return DefaultKubeletKubeconfig
}

func (o Options) kubeletPKIDir() string {
	if o.KubeletPKIDir != "" {
		return o.KubeletPKIDir
	}
	return DefaultKubeletPKIDir
}

func (o Options) validate() error {
	var errs []error
	if !path.IsAbs(o.kubeletKubeconfig()) || !path.IsAbs(o.kubeletPKIDir()) {
		errs = append(errs, errors.New("the kubelet's kubeconfig and PKI directory must be absolute paths"))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("namespace is required"))
	}
	if o.HubImage == "" || o.AgentImage == "" {
		errs = append(errs, errors.New("default hub and agent images are required"))
	}
	return errors.Join(errs...)
}

// Reconciler keeps one EdgeUnit's children and status.
type Reconciler struct {
	// Client reads through the manager's cache and writes.
	Client client.Client
	// Direct reads through to the apiserver: the operator CA is created
	// once, by whichever controller asks first.
	Direct   client.Client
	Recorder events.EventRecorder
	Options  Options
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	// written remembers, per unit, what the server holds after this
	// reconciler's last writes and the resourceVersions those writes
	// superseded. Child and node events requeue a unit before the cache
	// has seen its own status write (status-only updates do not requeue
	// it); while the cache still shows a superseded version, the
	// remembered state stands in, so the same status (and its events) is
	// never written twice and the finalizer patch never conflicts.
	written lastwrite.Memory[edgev1.EdgeUnitStatus, *edgev1.EdgeUnitStatus]
}

// SetupWithManager registers the indexes and the EdgeUnit controller.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if err := o.validate(); err != nil {
		return fmt.Errorf("configuring the EdgeUnit controller: %w", err)
	}
	if err := index.Register(ctx, mgr); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &edgev1.EdgeUnit{}, indexEndpoint, endpointOfUnit); err != nil {
		return fmt.Errorf("indexing EdgeUnits by TunnelEndpoint: %w", err)
	}
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("creating a direct client: %w", err)
	}
	r := &Reconciler{
		Client:   mgr.GetClient(),
		Direct:   direct,
		Recorder: mgr.GetEventRecorder("edgeunit-controller"),
		Options:  o,
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("edgeunit").
		For(&edgev1.EdgeUnit{}, builder.WithPredicates(unitSpecChanged)).
		Owns(&appsv1.DaemonSet{}).
		// Metadata is enough to notice a changed or deleted ConfigMap, and
		// keeps every ConfigMap's data out of the cache.
		Owns(&corev1.ConfigMap{}, builder.OnlyMetadata).
		Watches(&edgev1.EdgeUnit{}, handler.EnqueueRequestsFromMapFunc(r.unitsSharingPools), builder.WithPredicates(unitSpecChanged)).
		Watches(&edgev1.TunnelEndpoint{}, handler.EnqueueRequestsFromMapFunc(r.unitsOfEndpoint), builder.WithPredicates(endpointChanged)).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.unitsOfNode), builder.WithPredicates(nodePoolChanged)).
		WithOptions(o.Controller).
		Complete(r)
}

// Reconcile brings one EdgeUnit's children and status up to date.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (_ reconcile.Result, reterr error) {
	unit := &edgev1.EdgeUnit{}
	if err := r.Client.Get(ctx, req.NamespacedName, unit); err != nil {
		if apierrors.IsNotFound(err) {
			r.written.Forget(req.Name)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	written := r.written.Freshen(unit, &unit.Status)
	if !unit.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.reconcileDelete(ctx, unit)
	}
	if !controllerutil.ContainsFinalizer(unit, Finalizer) {
		if err := r.addFinalizer(ctx, unit, written); err != nil {
			return reconcile.Result{}, err
		}
	}

	obs := &observed{}
	defer func() {
		reterr = errors.Join(reterr, r.patchStatus(ctx, unit, obs, reterr, written))
	}()
	phases := []func(context.Context, *edgev1.EdgeUnit, *observed) error{
		r.observePools,    // owned and contested pools, member nodes
		r.observeEndpoint, // the referenced TunnelEndpoint
		r.reconcileHub,    // hub ConfigMap + installer DaemonSet
		r.reconcileAgent,  // agent ConfigMap + DaemonSet, or their removal
	}
	for _, phase := range phases {
		if err := phase(ctx, unit, obs); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{}, nil
}

// addFinalizer server-side applies only the finalizer entry: no
// resourceVersion is involved, so it does not conflict with the bindings
// controller writing the unit's status from a fresher copy, and it drops no
// finalizer others add.
func (r *Reconciler) addFinalizer(ctx context.Context, unit *edgev1.EdgeUnit, written lastwrite.State[edgev1.EdgeUnitStatus]) error {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(edgev1.GroupVersion.WithKind("EdgeUnit"))
	u.SetName(unit.Name)
	u.SetFinalizers([]string{Finalizer})
	if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner)); err != nil {
		return fmt.Errorf("adding finalizer to EdgeUnit %s: %w", unit.Name, err)
	}
	written.Supersede(unit.ResourceVersion)
	controllerutil.AddFinalizer(unit, Finalizer)
	r.written.Remember(unit, &unit.Status, written)
	return nil
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}
