package demo

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// FieldOwner is the field manager of everything the demo writes.
const FieldOwner = "edgeunit-demo"

// LabelSimulated marks the nodes the demo registers: no kubelet runs behind
// them.
const LabelSimulated = "demo.edgeunit.io/simulated"

// SimulatedNode is a node the demo registers as if its kubelet had joined.
type SimulatedNode struct {
	Name string
	// Pool is the NodePool the node is labelled into; empty for none.
	Pool string
	// IP is its InternalIP, on loopback: later parts of the demo serve
	// node-side components there.
	IP string
}

// DefaultNodes are the nodes the demo registers: three at an edge site, two
// in the cloud and a spare one that belongs to no pool yet.
var DefaultNodes = []SimulatedNode{
	{Name: "factory-a-1", Pool: "factory-a", IP: "127.0.10.1"},
	{Name: "factory-a-2", Pool: "factory-a", IP: "127.0.10.2"},
	{Name: "factory-a-3", Pool: "factory-a", IP: "127.0.10.3"},
	{Name: "cloud-1", Pool: "cloud", IP: "127.0.20.1"},
	{Name: "cloud-2", Pool: "cloud", IP: "127.0.20.2"},
	{Name: "spare-1", IP: "127.0.30.1"},
}

// KubeletVersion is what the simulated nodes report.
const KubeletVersion = "v1.36.3"

// desiredNode is the node's metadata and spec as the demo owns them.
func desiredNode(n SimulatedNode) *corev1ac.NodeApplyConfiguration {
	labels := map[string]string{
		corev1.LabelHostname:   n.Name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: "amd64",
		LabelSimulated:         "true",
	}
	if n.Pool != "" {
		labels[edgev1.LabelNodePool] = n.Pool
	}
	return corev1ac.Node(n.Name).WithLabels(labels)
}

// desiredNodeStatus is the status a healthy kubelet would report.
func desiredNodeStatus(n SimulatedNode, now metav1.Time) *corev1ac.NodeApplyConfiguration {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return corev1ac.Node(n.Name).WithStatus(corev1ac.NodeStatus().
		WithCapacity(capacity).
		WithAllocatable(capacity).
		WithAddresses(
			corev1ac.NodeAddress().WithType(corev1.NodeInternalIP).WithAddress(n.IP),
			corev1ac.NodeAddress().WithType(corev1.NodeHostName).WithAddress(n.Name),
		).
		WithConditions(corev1ac.NodeCondition().
			WithType(corev1.NodeReady).
			WithStatus(corev1.ConditionTrue).
			WithReason("KubeletReady").
			WithMessage("simulated by edgeunit-demo").
			WithLastHeartbeatTime(now).
			WithLastTransitionTime(now)).
		WithNodeInfo(corev1ac.NodeSystemInfo().
			WithKubeletVersion(KubeletVersion).
			WithOperatingSystem("linux").
			WithArchitecture("amd64")))
}

// registerNodes applies each node and then its status, as a kubelet
// registers and then reports.
func registerNodes(ctx context.Context, c client.Client, nodes []SimulatedNode) error {
	now := metav1.Now()
	for _, n := range nodes {
		if err := c.Apply(ctx, desiredNode(n), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("registering node %s: %w", n.Name, err)
		}
		if err := c.Status().Apply(ctx, desiredNodeStatus(n, now), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("reporting status of node %s: %w", n.Name, err)
		}
		if err := untaintReady(ctx, c, n.Name); err != nil {
			return fmt.Errorf("removing the not-ready taint from node %s: %w", n.Name, err)
		}
	}
	return nil
}

// untaintReady removes the not-ready taint that kube-apiserver puts on new
// nodes, as the node lifecycle controller (not running here) would once the
// node reports Ready.
func untaintReady(ctx context.Context, c client.Client, name string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, node); err != nil {
			return err
		}
		before := node.DeepCopy()
		node.Spec.Taints = slices.DeleteFunc(node.Spec.Taints, func(t corev1.Taint) bool {
			return t.Key == corev1.TaintNodeNotReady
		})
		if len(node.Spec.Taints) == len(before.Spec.Taints) {
			return nil
		}
		// Taints are an atomic list: the optimistic lock keeps a concurrent
		// writer's taints.
		return c.Patch(ctx, node, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}), client.FieldOwner(FieldOwner))
	})
}
