// Package pod gives pods that will run on autonomous NodePools NoExecute
// tolerations for unreachable and not-ready nodes, so a cut cloud link does
// not evict them before the pool's autonomy duration.
package pod

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/autonomy"
)

// Path is where the webhook server serves the mutation.
const Path = "/mutate--v1-pod"

// failurePolicy=ignore: the webhook sits in front of every pod creation in
// the cluster, and a manager that is down must not stop them; the autonomy
// controller fixes the tolerations of pods the webhook missed once they are
// bound. No namespace is excluded: with ignore, the manager's own pods
// cannot deadlock on it, and system DaemonSets on edge nodes want autonomy
// too. reinvocationPolicy=IfNeeded re-runs it when a later webhook changes
// the pod's placement. kube-apiserver runs its DefaultTolerationSeconds
// plugin before mutating webhooks, so the webhook sees (and lengthens) the
// 300 s tolerations it adds.
//
// +kubebuilder:webhook:path=/mutate--v1-pod,mutating=true,failurePolicy=ignore,sideEffects=None,timeoutSeconds=5,groups="",resources=pods,verbs=create,versions=v1,name=mpod.edge.edgeunit.io,admissionReviewVersions=v1,reinvocationPolicy=IfNeeded
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=edge.edgeunit.io,resources=nodepools,verbs=get;list;watch

// Mutator adds autonomy tolerations to pods whose node is known at
// admission.
type Mutator struct {
	// Reader reads Nodes and NodePools, normally the manager's cache.
	Reader client.Reader
}

var _ admission.Defaulter[*corev1.Pod] = &Mutator{}

// SetupWithManager registers the webhook with the manager's webhook server.
// It asks the cache for Node and NodePool informers up front, so the first
// pod admitted after a restart does not wait for their initial list.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	for _, obj := range []client.Object{&corev1.Node{}, &edgev1.NodePool{}} {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("starting the %T informer for the Pod webhook: %w", obj, err)
		}
	}
	return ctrl.NewWebhookManagedBy(mgr, &corev1.Pod{}).
		WithDefaulter(&Mutator{Reader: mgr.GetClient()}).
		WithDefaulterCustomPath(Path).
		Complete()
}

// Default adds or lengthens the tolerations. It never fails the request: a
// lookup error leaves the pod as it is, for the controller to fix.
func (m *Mutator) Default(ctx context.Context, pod *corev1.Pod) error {
	log := ctrl.LoggerFrom(ctx).WithValues("pod", klog.KObj(pod))
	targets, ok := TargetsOf(pod)
	if !ok {
		return nil
	}
	w, ok, err := m.window(ctx, targets)
	if err != nil {
		log.Error(err, "Leaving pod tolerations to the autonomy controller")
		return nil
	}
	if !ok {
		return nil
	}
	tolerations, changed := autonomy.Tolerate(pod.Spec.Tolerations, w)
	if !changed {
		return nil
	}
	pod.Spec.Tolerations = tolerations
	log.V(4).Info("Added autonomy tolerations", "window", w.String(), "nodes", targets.Nodes, "nodePools", targets.Pools, "daemonSet", isDaemonSetPod(pod))
	return nil
}

// window is the autonomy every target promises: false unless all targets
// are autonomous; the shortest of their windows.
func (m *Mutator) window(ctx context.Context, t Targets) (autonomy.Window, bool, error) {
	w, first := autonomy.Unbounded, true
	merge := func(next autonomy.Window, ok bool) bool {
		if !ok {
			return false
		}
		w, first = autonomy.Shorter(w, next), false
		return true
	}
	for _, name := range t.Nodes {
		node := &corev1.Node{}
		if err := m.Reader.Get(ctx, types.NamespacedName{Name: name}, node); err != nil {
			if apierrors.IsNotFound(err) {
				return w, false, nil
			}
			return w, false, fmt.Errorf("getting node %s: %w", name, err)
		}
		nw, ok, err := autonomy.NodeWindow(node)
		if err != nil {
			return w, false, err
		}
		if !merge(nw, ok) {
			return w, false, nil
		}
	}
	for _, name := range t.Pools {
		pool := &edgev1.NodePool{}
		if err := m.Reader.Get(ctx, types.NamespacedName{Name: name}, pool); err != nil {
			if apierrors.IsNotFound(err) {
				return w, false, nil
			}
			return w, false, fmt.Errorf("getting NodePool %s: %w", name, err)
		}
		if !merge(autonomy.PoolWindow(pool)) {
			return w, false, nil
		}
	}
	return w, !first, nil
}
