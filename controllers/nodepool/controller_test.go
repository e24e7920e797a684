package nodepool

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/index"
)

// A pool's first pass adds the finalizer, then writes the status. The
// next pass may read the pool from a cache that has the finalizer write
// but not the status write after it: that version's status is one this
// reconciler already replaced, and it must not write the status again.
func TestNoStatusRewriteFromOwnFinalizerVersion(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, edgev1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	pool := &edgev1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: edgev1.NodePoolSpec{Labels: map[string]string{"tier": "edge"}}}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{edgev1.LabelNodePool: "p"}},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}

	var (
		finalizerRV string
		stale       *edgev1.NodePool // served instead of the pool when set
		writes      []string
	)
	c := fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(pool, node).
		WithStatusSubresource(&edgev1.NodePool{}).
		WithIndex(&corev1.Node{}, indexPool, poolsOfNode).
		WithIndex(&edgev1.EdgeUnit{}, index.UnitByPool, func(o client.Object) []string { return o.(*edgev1.EdgeUnit).Spec.NodePools }).
		WithInterceptorFuncs(interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if p, ok := obj.(*edgev1.NodePool); ok && stale != nil {
					stale.DeepCopyInto(p)
					return nil
				}
				return c.Get(ctx, key, obj, opts...)
			},
			Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
				writes = append(writes, "finalizer")
				if err := c.Apply(ctx, obj, opts...); err != nil {
					return err
				}
				finalizerRV = obj.(interface{ GetResourceVersion() string }).GetResourceVersion()
				return nil
			},
			SubResourceApply: func(ctx context.Context, c client.Client, sub string, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
				writes = append(writes, sub)
				return c.SubResource(sub).Apply(ctx, obj, opts...)
			},
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				writes = append(writes, sub)
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		}).Build()
	r := &PoolReconciler{Client: c}
	req := reconcile.Request{NamespacedName: types.NamespacedName{Name: "p"}}

	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatalf("first pass: %v", err)
	}
	if len(writes) != 2 || finalizerRV == "" {
		t.Fatalf("first pass wrote %v (finalizer at version %q), want the finalizer then the status", writes, finalizerRV)
	}
	current := &edgev1.NodePool{}
	if err := c.Get(ctx, req.NamespacedName, current); err != nil {
		t.Fatal(err)
	}
	if current.Status.NodeCount != 1 || current.Status.ReadyNodes != 1 {
		t.Fatalf("status after the first pass = %+v, want one member, Ready", current.Status)
	}

	stale = current.DeepCopy()
	stale.ResourceVersion, stale.Status = finalizerRV, edgev1.NodePoolStatus{}
	writes = nil
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatalf("second pass: %v", err)
	}
	if len(writes) != 0 {
		t.Errorf("a pass reading the finalizer write's version wrote %v, want nothing", writes)
	}
}
