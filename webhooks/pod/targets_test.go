package pod

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func required(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
	}}
}

func fields(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func exprs(reqs ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: reqs}
}

func in(key string, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}
}

func TestTargetsOf(t *testing.T) {
	tests := map[string]struct {
		spec corev1.PodSpec
		meta metav1.ObjectMeta
		want Targets
		ok   bool
	}{
		"nothing known": {},
		"nodeName":      {spec: corev1.PodSpec{NodeName: "n1"}, want: Targets{Nodes: []string{"n1"}}, ok: true},
		"nodeName beats selectors": {
			spec: corev1.PodSpec{NodeName: "n1", NodeSelector: map[string]string{edgev1.LabelNodePool: "p"}},
			want: Targets{Nodes: []string{"n1"}}, ok: true,
		},
		"DaemonSet pod": {
			meta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "ds", UID: "u", Controller: ptr.To(true)}}},
			spec: corev1.PodSpec{Affinity: required(fields("metadata.name", corev1.NodeSelectorOpIn, "n2"))},
			want: Targets{Nodes: []string{"n2"}}, ok: true,
		},
		"pool nodeSelector": {
			spec: corev1.PodSpec{NodeSelector: map[string]string{edgev1.LabelNodePool: "p", "other": "x"}},
			want: Targets{Pools: []string{"p"}}, ok: true,
		},
		"pool affinity, two terms": {
			spec: corev1.PodSpec{Affinity: required(exprs(in(edgev1.LabelNodePool, "b", "a")), exprs(in("zone", "z"), in(edgev1.LabelNodePool, "c")))},
			want: Targets{Pools: []string{"a", "b", "c"}}, ok: true,
		},
		"ANDed requirements intersect": {
			spec: corev1.PodSpec{Affinity: required(exprs(in(edgev1.LabelNodePool, "a", "b"), in(edgev1.LabelNodePool, "b", "c")))},
			want: Targets{Pools: []string{"b"}}, ok: true,
		},
		"empty intersection is unknown": {
			spec: corev1.PodSpec{Affinity: required(exprs(in(edgev1.LabelNodePool, "a"), in(edgev1.LabelNodePool, "b")))},
		},
		"mixed node and pool terms": {
			spec: corev1.PodSpec{Affinity: required(fields("metadata.name", corev1.NodeSelectorOpIn, "n1"), exprs(in(edgev1.LabelNodePool, "p")))},
			want: Targets{Nodes: []string{"n1"}, Pools: []string{"p"}}, ok: true,
		},
		"one unpinned term is unknown": {
			spec: corev1.PodSpec{Affinity: required(exprs(in(edgev1.LabelNodePool, "p")), exprs(in("zone", "z")))},
		},
		"NotIn does not pin": {
			spec: corev1.PodSpec{Affinity: required(exprs(corev1.NodeSelectorRequirement{Key: edgev1.LabelNodePool, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"p"}}))},
		},
		"Exists does not pin": {
			spec: corev1.PodSpec{Affinity: required(exprs(corev1.NodeSelectorRequirement{Key: edgev1.LabelNodePool, Operator: corev1.NodeSelectorOpExists}))},
		},
		"preferred affinity does not pin": {
			spec: corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 1, Preference: exprs(in(edgev1.LabelNodePool, "p"))}},
			}}},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := TargetsOf(&corev1.Pod{ObjectMeta: tt.meta, Spec: tt.spec})
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v (targets %+v)", ok, tt.ok, got)
			}
			if diff := cmp.Diff(tt.want, got); ok && diff != "" {
				t.Errorf("targets (-want +got):\n%s", diff)
			}
		})
	}
}
