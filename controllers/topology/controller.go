// Package topology programs the control-plane side of service topology:
// a Service annotated edge.edgeunit.io/topology gets spec.trafficDistribution
// so stock kube-proxy prefers endpoints in the client's unit ("unit":
// PreferSameZone, since the nodes of a unit carry
// topology.kubernetes.io/zone=<unit>) or on its node ("node":
// PreferSameNode). The strict filter that works offline is the edge hub's.
//
// The controller owns that one field and nothing else: it writes it with
// server-side apply under its own field manager, with an apply
// configuration holding only the Service's name, namespace and
// spec.trafficDistribution. Removing the annotation withdraws the
// controller's claim, which clears the value only if no other manager also
// set it.
package topology

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// FieldOwner is the field manager that owns spec.trafficDistribution.
const FieldOwner = "edgeunit-topology"

// Event reasons.
const (
	ReasonInvalidTopology = "InvalidTopology"
	ReasonFieldConflict   = "TrafficDistributionConflict"
)

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconciler keeps one Service's trafficDistribution in line with its
// topology annotation.
type Reconciler struct {
	Client client.Client
	// APIReader reads managed fields, which the cache strips.
	APIReader client.Reader
	Recorder  events.EventRecorder
}

// SetupWithManager registers the controller.
func SetupWithManager(_ context.Context, mgr ctrl.Manager, opts controller.Options) error {
	r := &Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("topology-controller")}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("topology").
		For(&corev1.Service{}, builder.WithPredicates(topologyChanged)).
		WithOptions(opts).
		Complete(r); err != nil {
		return fmt.Errorf("creating the topology controller: %w", err)
	}
	return nil
}

// Reconcile applies or withdraws the Service's trafficDistribution.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	svc := &corev1.Service{}
	if err := r.Client.Get(ctx, req.NamespacedName, svc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !svc.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}
	want, err := desiredDistribution(svc)
	if err != nil {
		log.Info("Ignoring invalid topology annotation", "service", klog.KObj(svc), "reason", err.Error())
		r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, ReasonInvalidTopology, "Program", "%v", err)
		return reconcile.Result{}, nil
	}
	if want == nil {
		return reconcile.Result{}, r.withdraw(ctx, svc)
	}
	if ptr.Equal(svc.Spec.TrafficDistribution, want) {
		return reconcile.Result{}, nil
	}
	return reconcile.Result{}, r.apply(ctx, svc, want)
}

func (r *Reconciler) apply(ctx context.Context, svc *corev1.Service, want *string) error {
	ac := corev1ac.Service(svc.Name, svc.Namespace).WithSpec(corev1ac.ServiceSpec().WithTrafficDistribution(*want))
	if err := r.Client.Apply(ctx, ac, client.FieldOwner(FieldOwner)); err != nil {
		if apierrors.IsConflict(err) {
			// Another manager set a different value: theirs stands.
			ctrl.LoggerFrom(ctx).Info("Leaving trafficDistribution another manager set", "service", klog.KObj(svc), "reason", err.Error())
			r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, ReasonFieldConflict, "Program",
				"Not setting trafficDistribution to %s: %v", *want, err)
			return nil
		}
		return fmt.Errorf("applying trafficDistribution of Service %s: %w", klog.KObj(svc), client.IgnoreNotFound(err))
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Set trafficDistribution", "service", klog.KObj(svc), "trafficDistribution", *want)
	return nil
}

// withdraw drops the controller's claim on trafficDistribution. Only
// Services that have a value and whose managed fields name the controller
// are written.
func (r *Reconciler) withdraw(ctx context.Context, cached *corev1.Service) error {
	if cached.Spec.TrafficDistribution == nil {
		return nil
	}
	svc := &corev1.Service{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(cached), svc); err != nil {
		return fmt.Errorf("reading Service %s: %w", klog.KObj(cached), client.IgnoreNotFound(err))
	}
	owned, err := ownsDistribution(svc.ManagedFields, FieldOwner)
	if err != nil || !owned {
		return err
	}
	// An apply configuration without the field releases it; the apiserver
	// removes the value when no other manager holds it.
	if err := r.Client.Apply(ctx, corev1ac.Service(svc.Name, svc.Namespace), client.FieldOwner(FieldOwner)); err != nil {
		return fmt.Errorf("releasing trafficDistribution of Service %s: %w", klog.KObj(svc), client.IgnoreNotFound(err))
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Released trafficDistribution", "service", klog.KObj(svc))
	return nil
}
