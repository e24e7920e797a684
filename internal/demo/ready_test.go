package demo

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func TestNotReady(t *testing.T) {
	pool := func(name string, gen, observed int64, ready metav1.ConditionStatus) edgev1.NodePool {
		p := edgev1.NodePool{
			ObjectMeta: metav1.ObjectMeta{Name: name, Generation: gen},
			Spec:       edgev1.NodePoolSpec{Type: edgev1.NodePoolEdge, Labels: map[string]string{"site": name}},
			Status:     edgev1.NodePoolStatus{ObservedGeneration: observed},
		}
		if ready != "" {
			p.Status.Conditions = []metav1.Condition{{Type: edgev1.ConditionReady, Status: ready, ObservedGeneration: observed, Reason: "R", Message: "m"}}
		}
		return p
	}
	node := func(name string, labels ...string) corev1.Node {
		n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
		for i := 0; i+1 < len(labels); i += 2 {
			n.Labels[labels[i]] = labels[i+1]
		}
		return n
	}
	synced := func(name, p string) corev1.Node {
		return node(name, edgev1.LabelNodePool, p, edgev1.LabelPoolType, "edge", "site", p)
	}
	tests := map[string]struct {
		pools []edgev1.NodePool
		nodes []corev1.Node
		want  []string
	}{
		"ready": {
			pools: []edgev1.NodePool{pool("a", 1, 1, metav1.ConditionTrue)},
			nodes: []corev1.Node{synced("n1", "a"), node("spare")},
		},
		"no condition": {
			pools: []edgev1.NodePool{pool("a", 1, 0, "")},
			want:  []string{"NodePool a has no Ready condition yet"},
		},
		"not ready": {
			pools: []edgev1.NodePool{pool("a", 1, 1, metav1.ConditionFalse)},
			want:  []string{"NodePool a is not Ready: R: m"},
		},
		"stale generation": {
			pools: []edgev1.NodePool{pool("a", 2, 1, metav1.ConditionTrue)},
			want:  []string{"NodePool a: status is for generation 1, spec is at 2"},
		},
		"node lacks labels": {
			pools: []edgev1.NodePool{pool("a", 1, 1, metav1.ConditionTrue)},
			nodes: []corev1.Node{node("n1", edgev1.LabelNodePool, "a")},
			want:  []string{"node n1 lacks the labels of NodePool a: edge.edgeunit.io/pool-type, site"},
		},
		"node in a missing pool": {
			pools: []edgev1.NodePool{pool("a", 1, 1, metav1.ConditionTrue)},
			nodes: []corev1.Node{node("n1", edgev1.LabelNodePool, "b")},
			want:  []string{"node n1 is labelled into NodePool b, which does not exist"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := notReady(tc.pools, tc.nodes)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("notReady() = %q, want %q", got, tc.want)
			}
		})
	}
}
