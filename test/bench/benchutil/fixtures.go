package benchutil

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// CreateNode creates node number i, labelled into pool, then gives it a
// kubelet-like status with Ready=True through the status subresource, as
// a joining kubelet would.
func CreateNode(ctx context.Context, c client.Client, name, pool string, i int) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				edgev1.LabelNodePool:               pool,
				"kubernetes.io/hostname":           name,
				"kubernetes.io/os":                 "linux",
				"kubernetes.io/arch":               "amd64",
				"node.kubernetes.io/instance-type": "edge-small",
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256)},
	}
	if err := c.Create(ctx, node); err != nil {
		return fmt.Errorf("creating node %s: %w", name, err)
	}
	before := node.DeepCopy()
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	node.Status = corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("172.%d.%d.%d", 16+i/65536, i/256%256, i%256)},
			{Type: corev1.NodeHostName, Address: name},
		},
		Capacity: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("4"),
			corev1.ResourceMemory: resource.MustParse("8Gi"),
			corev1.ResourcePods:   resource.MustParse("110"),
		},
		Allocatable: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("3800m"),
			corev1.ResourceMemory: resource.MustParse("7Gi"),
			corev1.ResourcePods:   resource.MustParse("110"),
		},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion: "v1.36.3", OperatingSystem: "linux", Architecture: "amd64",
			ContainerRuntimeVersion: "containerd://2.1.0", OSImage: "Ubuntu 24.04 LTS",
		},
	}
	if err := c.Status().Patch(ctx, node, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("setting status of node %s: %w", name, err)
	}
	return nil
}

// Pool is the NodePool the benchmarks create: two labels, an annotation, a
// taint and bounded autonomy, so every kind of key is pushed.
func Pool(name string) *edgev1.NodePool {
	return &edgev1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: edgev1.NodePoolSpec{
			Type:        edgev1.NodePoolEdge,
			Labels:      map[string]string{"example.com/site": name, "example.com/tier": "edge"},
			Annotations: map[string]string{"example.com/contact": "ops-" + name + "@example.com"},
			Taints:      []edgev1.NodePoolTaint{{Key: "example.com/dedicated", Value: name, Effect: "NoSchedule"}},
			Autonomy:    &edgev1.AutonomySpec{Enabled: true, Duration: &metav1.Duration{Duration: time.Hour}},
		},
	}
}

// PoolKeysProblem says which of its pool's labels, annotations, taints or
// the autonomy label a node lacks, or "" when it carries them all.
func PoolKeysProblem(n *corev1.Node, p *edgev1.NodePool) string {
	if p == nil {
		return "no pool " + n.Labels[edgev1.LabelNodePool]
	}
	for k, v := range p.Spec.Labels {
		if n.Labels[k] != v {
			return fmt.Sprintf("label %s=%q, want %q", k, n.Labels[k], v)
		}
	}
	if got := n.Labels[edgev1.LabelAutonomy]; got != "true" {
		return fmt.Sprintf("label %s=%q, want \"true\"", edgev1.LabelAutonomy, got)
	}
	for k, v := range p.Spec.Annotations {
		if n.Annotations[k] != v {
			return fmt.Sprintf("annotation %s=%q, want %q", k, n.Annotations[k], v)
		}
	}
	for _, t := range p.Spec.Taints {
		if !slices.ContainsFunc(n.Spec.Taints, func(h corev1.Taint) bool {
			return h.Key == t.Key && h.Value == t.Value && string(h.Effect) == string(t.Effect)
		}) {
			return fmt.Sprintf("no taint %s=%s:%s", t.Key, t.Value, t.Effect)
		}
	}
	return ""
}
