package bindings

import (
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// Status size budget: etcd refuses objects over 1.5 MiB by default; the
// bindings of the largest unit we support must leave room for the rest.
const maxStatusBytes = 1 << 20

const (
	sizeNodes       = 500
	sizePodsPerNode = 20
)

// SizeTestNodeName and SizeTestPodKey are realistic, long-ish names: an
// AWS-style node name and a Deployment pod's "namespace/name".
func SizeTestNodeName(i int) string {
	return fmt.Sprintf("ip-10-%d-%d-%d.eu-west-1.compute.internal", i/65536%256, i/256%256, i%256)
}

func SizeTestPodKey(i int) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	suffix := make([]byte, 5)
	for j, v := 0, i; j < 5; j, v = j+1, v/len(alphabet) {
		suffix[4-j] = alphabet[v%len(alphabet)]
	}
	return fmt.Sprintf("default/web-7d9f8c6b5-%s", suffix)
}

// sizeTestInputs are 500 nodes with 20 pods each, 10,000 pods in all, IPv4.
func sizeTestInputs() inputs {
	in := inputs{stablePodIPs: true, stableVTEPMAC: true, pods: map[string][]*corev1.Pod{}}
	var names []string
	for i := range sizeNodes {
		n := node(SizeTestNodeName(i), fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256), nil)
		in.nodes = append(in.nodes, n)
		names = append(names, n.Name)
		for j := range sizePodsPerNode {
			k := i*sizePodsPerNode + j
			in.pods[n.Name] = append(in.pods[n.Name], pod(SizeTestPodKey(k), n.Name, fmt.Sprintf("10.244.%d.%d", i%256, 100+j)))
		}
	}
	in.macs = DeriveMACs(names)
	return in
}

func TestStatusSizeAt10000Pods(t *testing.T) {
	bindings, sum := desiredBindings(sizeTestInputs())
	if sum.nodes != sizeNodes || sum.pods != sizeNodes*sizePodsPerNode {
		t.Fatalf("recorded %d nodes, %d pods", sum.nodes, sum.pods)
	}
	u := &edgev1.EdgeUnit{
		TypeMeta:   metav1.TypeMeta{APIVersion: edgev1.GroupVersion.String(), Kind: "EdgeUnit"},
		ObjectMeta: metav1.ObjectMeta{Name: "site-a", Generation: 1},
		Spec: edgev1.EdgeUnitSpec{NodePools: []string{"site-a"},
			NetworkAutonomy: edgev1.NetworkAutonomySpec{StablePodIPs: true, StableVTEPMAC: true, VTEPDevice: "flannel.1"}},
		Status: edgev1.EdgeUnitStatus{Bindings: bindings, NodeCount: sizeNodes, Conditions: []metav1.Condition{
			networkCondition(&edgev1.EdgeUnit{Spec: edgev1.EdgeUnitSpec{NetworkAutonomy: edgev1.NetworkAutonomySpec{StablePodIPs: true, StableVTEPMAC: true}}}, sum),
		}},
	}
	status, err := json.Marshal(u.Status)
	if err != nil {
		t.Fatal(err)
	}
	object, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("500 nodes / 10,000 pods: status %d bytes (%.1f%% of 1 MiB), object %d bytes, %.1f bytes per pod",
		len(status), 100*float64(len(status))/maxStatusBytes, len(object), float64(len(status))/float64(sum.pods))
	if len(status) >= maxStatusBytes {
		t.Errorf("status is %d bytes, want < %d", len(status), maxStatusBytes)
	}
}

func BenchmarkDesiredBindings10000Pods(b *testing.B) {
	in := sizeTestInputs()
	b.ResetTimer()
	for range b.N {
		desiredBindings(in)
	}
}

func BenchmarkAssignMACs10000Nodes(b *testing.B) {
	var names []string
	for i := range 10000 {
		names = append(names, SizeTestNodeName(i))
	}
	recorded := DeriveMACs(names[:5000])
	b.ResetTimer()
	for range b.N {
		AssignMACs(names, recorded)
	}
}
