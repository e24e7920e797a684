// Package autonomy gives pods bound to nodes of autonomous NodePools the
// NoExecute tolerations for unreachable and not-ready nodes that the Pod
// webhook could not give them at admission (their node was only known once
// the scheduler bound them, or the webhook was down).
//
// What kube-apiserver allows on a pod after creation (checked against
// v1.36.3 in this package's envtest suite, and in ValidatePodUpdate):
//   - tolerations may be added, at any position;
//   - the tolerationSeconds of an existing toleration may change in either
//     direction, and between a number and unset (unbounded);
//   - an existing toleration may not be removed, nor its key, operator,
//     value or effect changed ("existing toleration can not be modified
//     except its tolerationSeconds"). Dropping one of the two tolerations
//     DefaultTolerationSeconds adds is silently undone: that plugin runs on
//     updates too and adds them back with 300 s.
//
// Tolerate only makes changes of the first two kinds, so the controller can
// give a bound pod the same tolerations the webhook would have. What it
// cannot do: take tolerations away (a pool that turns autonomy off, or a
// node that leaves an autonomous pool, leaves running pods with their
// tolerations), and it never shortens them (see Tolerate). Until it patches
// a freshly bound pod, the pod has the 300 s that DefaultTolerationSeconds
// gave it. An admission policy that refuses the change (such as the
// PodTolerationRestriction plugin) is reported as a Warning Event on the
// pod.
package autonomy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// FieldOwner is the field manager of the controller's pod patches.
const FieldOwner = "edgeunit-autonomy"

// Event reasons.
const (
	ReasonTolerationsRejected = "AutonomyTolerationsRejected"
)

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconciler keeps the autonomy tolerations of one bound pod.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
}

// SetupWithManager indexes pods by node and registers the controller.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts controller.Options) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &corev1.Pod{}, PodByNode, podNode); err != nil {
		return fmt.Errorf("indexing pods by node: %w", err)
	}
	r := &Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("autonomy-controller")}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("autonomy").
		For(&corev1.Pod{}, builder.WithPredicates(podPlacementChanged)).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.podsOfNode), builder.WithPredicates(nodeAutonomyChanged)).
		WithOptions(opts).
		Complete(r); err != nil {
		return fmt.Errorf("creating the autonomy controller: %w", err)
	}
	return nil
}

// Reconcile adds or lengthens the pod's link tolerations when its node is
// autonomous.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	pod := &corev1.Pod{}
	if err := r.Client.Get(ctx, req.NamespacedName, pod); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !running(pod) {
		return reconcile.Result{}, nil
	}
	node := &corev1.Node{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: pod.Spec.NodeName}, node); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	w, ok, err := NodeWindow(node)
	if err != nil {
		// The node's next change requeues its pods.
		return reconcile.Result{}, reconcile.TerminalError(err)
	}
	if !ok {
		return reconcile.Result{}, nil
	}
	tolerations, changed := Tolerate(pod.Spec.Tolerations, w)
	if !changed {
		return reconcile.Result{}, nil
	}
	patch, err := tolerationsPatch(pod, tolerations)
	if err != nil {
		return reconcile.Result{}, err
	}
	if err := r.Client.Patch(ctx, pod, client.RawPatch(types.JSONPatchType, patch), client.FieldOwner(FieldOwner)); err != nil {
		if refused(err) {
			log.Error(err, "Pod tolerations cannot be changed", "pod", klog.KObj(pod), "node", klog.KObj(node))
			r.Recorder.Eventf(pod, node, corev1.EventTypeWarning, ReasonTolerationsRejected, "Tolerate",
				"Cannot give the pod NoExecute tolerations for node autonomy (%s): %v", w, err)
			return reconcile.Result{}, nil
		}
		// A stale cache fails the test operation: retry on the fresh pod.
		return reconcile.Result{}, fmt.Errorf("patching tolerations of pod %s: %w", klog.KObj(pod), client.IgnoreNotFound(err))
	}
	log.V(2).Info("Set autonomy tolerations", "pod", klog.KObj(pod), "node", klog.KObj(node), "window", w.String())
	return reconcile.Result{}, nil
}

func running(pod *corev1.Pod) bool {
	return pod.Spec.NodeName != "" && pod.DeletionTimestamp.IsZero() &&
		pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// tolerationsPatch replaces spec.tolerations only if they are still what the
// controller saw, so it never drops a toleration someone else just added.
func tolerationsPatch(pod *corev1.Pod, tolerations []corev1.Toleration) ([]byte, error) {
	ops := []jsonPatchOp{
		{Op: "test", Path: "/spec/tolerations", Value: pod.Spec.Tolerations},
		{Op: "replace", Path: "/spec/tolerations", Value: tolerations},
	}
	if len(pod.Spec.Tolerations) == 0 {
		// No list to test against: guard with the resourceVersion.
		ops = []jsonPatchOp{
			{Op: "test", Path: "/metadata/resourceVersion", Value: pod.ResourceVersion},
			{Op: "add", Path: "/spec/tolerations", Value: tolerations},
		}
	}
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encoding tolerations patch: %w", err)
	}
	return b, nil
}

// refused tells pod validation refusing the change from a failed test
// operation, which kube-apiserver also reports as 422 but without causes.
func refused(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !errors.As(err, &status) {
		return apierrors.IsForbidden(err)
	}
	d := status.Status().Details
	return d != nil && len(d.Causes) > 0
}
