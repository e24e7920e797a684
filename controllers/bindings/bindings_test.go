package bindings

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func node(name, internalIP string, annotations map[string]string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
	if internalIP != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: internalIP}}
	}
	return n
}

func pod(key, nodeName, ip string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	ns, name, _ := strings.Cut(key, "/")
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{NodeName: nodeName}}
	p.Status.PodIP = ip
	p.Status.Phase = corev1.PodRunning
	for _, m := range mutate {
		m(p)
	}
	return p
}

func hostNetwork(p *corev1.Pod) { p.Spec.HostNetwork = true }

func phase(ph corev1.PodPhase) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Status.Phase = ph } }

func pb(key, ip string) edgev1.PodIPBinding { return edgev1.PodIPBinding{Pod: key, IP: ip} }

func TestDesiredBindings(t *testing.T) {
	n1, n2 := node("edge-1", "192.0.2.1", nil), node("edge-2", "192.0.2.2", map[string]string{AnnotationFlannelPublicIP: "198.51.100.2"})
	macs := map[string]string{"edge-1": "02:00:00:00:00:01", "edge-2": "02:00:00:00:00:02"}
	tests := map[string]struct {
		in   inputs
		want []edgev1.NodeBinding
	}{
		"network autonomy off: nothing, whatever was recorded": {
			in: inputs{nodes: []*corev1.Node{n1}, prev: []edgev1.NodeBinding{{Node: "edge-1", Pods: []edgev1.PodIPBinding{pb("a/x", "10.0.0.1")}}}},
		},
		"pod IPs: bound by namespace/name, sorted; hostNetwork, finished and IP-less new pods are not": {
			in: inputs{stablePodIPs: true, nodes: []*corev1.Node{n2, n1}, pods: map[string][]*corev1.Pod{
				"edge-1": {
					pod("default/web-2", "edge-1", "10.0.1.3"), pod("default/web-1", "edge-1", "10.0.1.2"),
					pod("kube-system/proxy", "edge-1", "192.0.2.1", hostNetwork),
					pod("default/job-done", "edge-1", "10.0.1.9", phase(corev1.PodSucceeded)),
					pod("default/job-failed", "edge-1", "10.0.1.8", phase(corev1.PodFailed)),
					pod("default/starting", "edge-1", "", phase(corev1.PodPending)),
				},
				"edge-2": {pod("apps/db-0", "edge-2", "10.0.2.2")},
			}},
			want: []edgev1.NodeBinding{
				{Node: "edge-1", Pods: []edgev1.PodIPBinding{pb("default/web-1", "10.0.1.2"), pb("default/web-2", "10.0.1.3")}},
				{Node: "edge-2", Pods: []edgev1.PodIPBinding{pb("apps/db-0", "10.0.2.2")}},
			},
		},
		"a restarting pod without an IP keeps its binding": {
			in: inputs{stablePodIPs: true, nodes: []*corev1.Node{n1},
				pods: map[string][]*corev1.Pod{"edge-1": {pod("default/web-1", "edge-1", "", phase(corev1.PodPending))}},
				prev: []edgev1.NodeBinding{{Node: "edge-1", Pods: []edgev1.PodIPBinding{pb("default/web-1", "10.0.1.2")}}}},
			want: []edgev1.NodeBinding{{Node: "edge-1", Pods: []edgev1.PodIPBinding{pb("default/web-1", "10.0.1.2")}}},
		},
		"a pod with a new IP is bound to it": {
			in: inputs{stablePodIPs: true, nodes: []*corev1.Node{n1},
				pods: map[string][]*corev1.Pod{"edge-1": {pod("default/web-1", "edge-1", "10.0.1.7")}},
				prev: []edgev1.NodeBinding{{Node: "edge-1", Pods: []edgev1.PodIPBinding{pb("default/web-1", "10.0.1.2")}}}},
			want: []edgev1.NodeBinding{{Node: "edge-1", Pods: []edgev1.PodIPBinding{pb("default/web-1", "10.0.1.7")}}},
		},
		"a kept IP another pod now has is dropped": {
			in: inputs{stablePodIPs: true, nodes: []*corev1.Node{n1},
				pods: map[string][]*corev1.Pod{"edge-1": {pod("default/web-1", "edge-1", ""), pod("default/web-9", "edge-1", "10.0.1.2")}},
				prev: []edgev1.NodeBinding{{Node: "edge-1", Pods: []edgev1.PodIPBinding{pb("default/web-1", "10.0.1.2")}}}},
			want: []edgev1.NodeBinding{{Node: "edge-1", Pods: []edgev1.PodIPBinding{pb("default/web-9", "10.0.1.2")}}},
		},
		"a deleted pod's binding goes, and a node without pods is left out": {
			in: inputs{stablePodIPs: true, nodes: []*corev1.Node{n1},
				prev: []edgev1.NodeBinding{{Node: "edge-1", Pods: []edgev1.PodIPBinding{pb("default/web-1", "10.0.1.2")}}}},
		},
		"a binding recorded on another node is not carried over": {
			in: inputs{stablePodIPs: true, nodes: []*corev1.Node{n1, n2},
				pods: map[string][]*corev1.Pod{"edge-2": {pod("default/web-1", "edge-2", "")}},
				prev: []edgev1.NodeBinding{{Node: "edge-1", Pods: []edgev1.PodIPBinding{pb("default/web-1", "10.0.1.2")}}}},
		},
		"VTEP only: every node, its MAC and VTEP IP (flannel's public-ip first), no pods": {
			in: inputs{stableVTEPMAC: true, nodes: []*corev1.Node{n2, n1, node("edge-3", "", nil)}, macs: macs,
				pods: map[string][]*corev1.Pod{"edge-1": {pod("default/web-1", "edge-1", "10.0.1.2")}}},
			want: []edgev1.NodeBinding{
				{Node: "edge-1", VTEPMAC: macs["edge-1"], VTEPIP: "192.0.2.1"},
				{Node: "edge-2", VTEPMAC: macs["edge-2"], VTEPIP: "198.51.100.2"},
				{Node: "edge-3"},
			},
		},
		"a node that reports no address keeps its recorded VTEP IP": {
			in: inputs{stableVTEPMAC: true, nodes: []*corev1.Node{node("edge-1", "", nil)}, macs: macs,
				prev: []edgev1.NodeBinding{{Node: "edge-1", VTEPMAC: macs["edge-1"], VTEPIP: "192.0.2.1"}}},
			want: []edgev1.NodeBinding{{Node: "edge-1", VTEPMAC: macs["edge-1"], VTEPIP: "192.0.2.1"}},
		},
		"both": {
			in: inputs{stablePodIPs: true, stableVTEPMAC: true, nodes: []*corev1.Node{n1}, macs: macs,
				pods: map[string][]*corev1.Pod{"edge-1": {pod("default/web-1", "edge-1", "10.0.1.2")}}},
			want: []edgev1.NodeBinding{{Node: "edge-1", VTEPMAC: macs["edge-1"], VTEPIP: "192.0.2.1", Pods: []edgev1.PodIPBinding{pb("default/web-1", "10.0.1.2")}}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, _ := desiredBindings(tc.in)
			if !equality.Semantic.DeepEqual(got, tc.want) {
				t.Errorf("desiredBindings =\n%+v\nwant\n%+v", got, tc.want)
			}
			if !bindingsEqual(got, tc.want) {
				t.Errorf("bindingsEqual disagrees with DeepEqual")
			}
		})
	}
}

func TestNetworkCondition(t *testing.T) {
	unit := func(podIPs, vtep bool) *edgev1.EdgeUnit {
		u := &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: "site-a", Generation: 3}}
		u.Spec.NetworkAutonomy = edgev1.NetworkAutonomySpec{StablePodIPs: podIPs, StableVTEPMAC: vtep, VTEPDevice: "flannel.1"}
		return u
	}
	tests := map[string]struct {
		unit    *edgev1.EdgeUnit
		sum     summary
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		"disabled":         {unit(false, false), summary{}, metav1.ConditionFalse, edgev1.ReasonDisabled, "neither"},
		"no nodes":         {unit(true, false), summary{}, metav1.ConditionFalse, edgev1.ReasonNoNodes, edgev1.LabelUnit + "=site-a"},
		"over the limits":  {unit(true, false), summary{nodes: 2, overflow: []string{"edge-1"}}, metav1.ConditionFalse, edgev1.ReasonLimitExceeded, "edge-1"},
		"no VTEP IP yet":   {unit(false, true), summary{nodes: 2, noVTEPIP: []string{"edge-2"}}, metav1.ConditionUnknown, edgev1.ReasonBindingsPending, "1 of 2 nodes"},
		"bound, both":      {unit(true, true), summary{nodes: 2, pods: 7}, metav1.ConditionTrue, edgev1.ReasonSynced, "VTEP MACs of 2 nodes and the IPs of 7 pods"},
		"bound, pods only": {unit(true, false), summary{nodes: 2, pods: 7}, metav1.ConditionTrue, edgev1.ReasonSynced, "Recorded the IPs of 7 pods"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := networkCondition(tc.unit, tc.sum)
			if c.Type != edgev1.ConditionNetworkBound || c.Status != tc.status || c.Reason != tc.reason || !strings.Contains(c.Message, tc.message) {
				t.Errorf("condition = %s %s %s %q, want NetworkBound %s %s containing %q", c.Type, c.Status, c.Reason, c.Message, tc.status, tc.reason, tc.message)
			}
			if c.ObservedGeneration != 3 {
				t.Errorf("observedGeneration = %d, want 3", c.ObservedGeneration)
			}
		})
	}
}

func TestPodsBeyondTheLimitAreNotRecorded(t *testing.T) {
	var pods []*corev1.Pod
	for i := range maxPodsPerNode + 3 {
		pods = append(pods, pod(fmt.Sprintf("default/p-%04d", i), "edge-1", fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)))
	}
	got, sum := desiredBindings(inputs{stablePodIPs: true, nodes: []*corev1.Node{node("edge-1", "192.0.2.1", nil)}, pods: map[string][]*corev1.Pod{"edge-1": pods}})
	if len(got) != 1 || len(got[0].Pods) != maxPodsPerNode || got[0].Pods[maxPodsPerNode-1].Pod != fmt.Sprintf("default/p-%04d", maxPodsPerNode-1) {
		t.Fatalf("recorded %d pods, want the first %d by name", len(got[0].Pods), maxPodsPerNode)
	}
	if len(sum.overflow) != 1 || sum.overflow[0] != "edge-1" {
		t.Errorf("overflow = %v, want [edge-1]", sum.overflow)
	}
}

func TestStatusApplyCarriesOnlyBindingsAndNetworkBound(t *testing.T) {
	c := metav1.Condition{Type: edgev1.ConditionNetworkBound, Status: metav1.ConditionFalse, Reason: edgev1.ReasonDisabled, Message: "off"}
	raw, err := json.Marshal(newStatusApply("site-a", nil, c))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"apiVersion":"edge.edgeunit.io/v1alpha1","kind":"EdgeUnit","metadata":{"name":"site-a"},"status":{"conditions":[{"type":"NetworkBound","status":"False","lastTransitionTime":null,"reason":"Disabled","message":"off"}]}}`
	if string(raw) != want {
		t.Errorf("apply configuration\n%s\nwant\n%s", raw, want)
	}
}
