package pod

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// nodeNameField is the only field node affinity can select on; the
// DaemonSet controller pins each of its pods to one node with it.
const nodeNameField = "metadata.name"

// Targets are the places a pod can land, known at admission: the pod runs
// on one of Nodes or on a node of one of Pools.
type Targets struct {
	Nodes []string
	Pools []string
}

// TargetsOf returns where pod will run, or false when admission cannot tell
// (the scheduler may put it anywhere; the autonomy controller handles it
// once it is bound). In order:
//   - spec.nodeName;
//   - a nodeSelector on the pool label (it narrows every affinity term);
//   - required node affinity whose every term pins nodes by metadata.name
//     (DaemonSet pods) or pools by the pool label with operator In.
func TargetsOf(pod *corev1.Pod) (Targets, bool) {
	if pod.Spec.NodeName != "" {
		return Targets{Nodes: []string{pod.Spec.NodeName}}, true
	}
	if p := pod.Spec.NodeSelector[edgev1.LabelNodePool]; p != "" {
		return Targets{Pools: []string{p}}, true
	}
	aff := pod.Spec.Affinity
	if aff == nil || aff.NodeAffinity == nil || aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return Targets{}, false
	}
	terms := aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		return Targets{}, false
	}
	var t Targets
	// Terms are ORed: every term must pin the pod, or it may run anywhere.
	for _, term := range terms {
		if nodes, ok := pinned(term.MatchFields, nodeNameField); ok {
			t.Nodes = append(t.Nodes, nodes...)
			continue
		}
		if pools, ok := pinned(term.MatchExpressions, edgev1.LabelNodePool); ok {
			t.Pools = append(t.Pools, pools...)
			continue
		}
		return Targets{}, false
	}
	slices.Sort(t.Nodes)
	slices.Sort(t.Pools)
	return Targets{Nodes: slices.Compact(t.Nodes), Pools: slices.Compact(t.Pools)}, true
}

// pinned returns the values of the In requirements on key within one term.
// Requirements within a term are ANDed, so any one In on key pins the term;
// with several, their intersection does.
func pinned(reqs []corev1.NodeSelectorRequirement, key string) ([]string, bool) {
	var values []string
	found := false
	for _, r := range reqs {
		if r.Key != key || r.Operator != corev1.NodeSelectorOpIn {
			continue
		}
		if !found {
			values, found = slices.Clone(r.Values), true
			continue
		}
		values = slices.DeleteFunc(values, func(v string) bool { return !slices.Contains(r.Values, v) })
	}
	return values, found && len(values) > 0
}

// isDaemonSetPod says whether a controller owner reference names a
// DaemonSet; only used for logging.
func isDaemonSetPod(pod *corev1.Pod) bool {
	ref := metav1.GetControllerOf(pod)
	return ref != nil && ref.Kind == "DaemonSet"
}
