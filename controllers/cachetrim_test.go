package controllers

import (
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTrimNodeKeepsWhatTheControllersRead(t *testing.T) {
	node := func(name string) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:          name,
				Labels:        map[string]string{"edge.edgeunit.io/nodepool": "pool-a", "kubernetes.io/hostname": name},
				Annotations:   map[string]string{"edge.edgeunit.io/managed": `{"pool":"pool-a"}`},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
			},
			Spec: corev1.NodeSpec{PodCIDR: "10.0.0.0/24", Taints: []corev1.Taint{{Key: "example.com/dedicated", Value: "pool-a", Effect: corev1.TaintEffectNoSchedule}}},
			Status: corev1.NodeStatus{
				Conditions: []corev1.NodeCondition{
					{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
					{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"},
				},
				Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: "172.16.0.1"}},
				NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "v1.36.3"},
				Images:    []corev1.ContainerImage{{Names: []string{"registry.example/app:1"}, SizeBytes: 1 << 20}},
			},
		}
	}
	got, err := trimNode(node("edge-1"))
	if err != nil {
		t.Fatal(err)
	}
	n := got.(*corev1.Node)
	want := node("edge-1")
	want.ManagedFields = nil
	want.Status = corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.16.0.1"}},
	}
	if !equality.Semantic.DeepEqual(n, want) {
		t.Errorf("trimmed node:\n%+v\nwant\n%+v", n, want)
	}

	// Two nodes of one pool share the storage of their repeated strings.
	other, _ := trimNode(node("edge-2"))
	o := other.(*corev1.Node)
	if unsafe.StringData(n.Labels["edge.edgeunit.io/nodepool"]) != unsafe.StringData(o.Labels["edge.edgeunit.io/nodepool"]) {
		t.Error("the pool label's value is not shared")
	}
	if unsafe.StringData(n.Annotations["edge.edgeunit.io/managed"]) != unsafe.StringData(o.Annotations["edge.edgeunit.io/managed"]) {
		t.Error("the managed-keys record is not shared")
	}
	if unsafe.StringData(n.Spec.Taints[0].Value) != unsafe.StringData(o.Spec.Taints[0].Value) {
		t.Error("the taint value is not shared")
	}
}

func TestTrimPodKeepsWhatTheControllersRead(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app-1", Namespace: "factory", Labels: map[string]string{"app": "app"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}},
		Spec: corev1.PodSpec{
			NodeName:    "edge-1",
			HostNetwork: true,
			Tolerations: []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}},
			Containers:  []corev1.Container{{Name: "app", Image: "registry.example/app:1", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}},
			Volumes:     []corev1.Volume{{Name: "data"}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.244.1.5", PodIPs: []corev1.PodIP{{IP: "10.244.1.5"}},
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true}},
		},
	}
	got, err := trimPod(pod.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app-1", Namespace: "factory", Labels: map[string]string{"app": "app"}},
		Spec:       corev1.PodSpec{NodeName: "edge-1", HostNetwork: true, Tolerations: pod.Spec.Tolerations},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1.5", PodIPs: []corev1.PodIP{{IP: "10.244.1.5"}}},
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("trimmed pod:\n%+v\nwant\n%+v", got, want)
	}
}

func TestTrimLeavesOtherObjectsAlone(t *testing.T) {
	cm := &corev1.ConfigMap{Data: map[string]string{"a": "b"}}
	for _, trim := range []func(any) (any, error){trimNode, trimPod} {
		got, err := trim(cm)
		if err != nil || got != any(cm) {
			t.Errorf("got %v, %v; want the object itself", got, err)
		}
	}
}
