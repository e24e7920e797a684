package controllers

import (
	"unique"

	corev1 "k8s.io/api/core/v1"
)

// The manager caches every Node and every Pod of the cluster. Its
// transforms keep of each only what the controllers read, and share the
// strings that repeat from object to object (label and annotation keys,
// pool and unit names, the managed-keys record, taint keys) instead of
// holding a copy per object: at 10,000 nodes that is a third of a cached
// Node's memory.

// trimNode keeps of a cached Node its metadata (labels, annotations), its
// spec (taints), the Ready condition and the InternalIP address. The rest
// of the status (images, capacity, the other conditions, system info) is
// most of a real Node's size.
func trimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	n.ManagedFields = nil
	n.Labels = internMap(n.Labels)
	n.Annotations = internMap(n.Annotations)
	for i := range n.Spec.Taints {
		t := &n.Spec.Taints[i]
		t.Key, t.Value = intern(t.Key), intern(t.Value)
	}
	st := corev1.NodeStatus{}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			st.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			st.Addresses = append(st.Addresses, a)
		}
	}
	n.Status = st
	return n, nil
}

// trimPod keeps of a cached Pod what the autonomy and bindings controllers
// read: its metadata, the node it is bound to, its tolerations, whether it
// uses the host's network, its phase and IPs. Containers, volumes and
// container statuses, most of a Pod, are dropped. Nothing writes a cached
// Pod back: the autonomy controller patches tolerations only, with a
// JSON-patch test of the tolerations it read.
func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	p.ManagedFields = nil
	p.Labels = internMap(p.Labels)
	p.Annotations = internMap(p.Annotations)
	p.Spec = corev1.PodSpec{
		NodeName:    intern(p.Spec.NodeName),
		Tolerations: p.Spec.Tolerations,
		HostNetwork: p.Spec.HostNetwork,
	}
	p.Status = corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs}
	return p, nil
}

// intern returns s with storage shared by every equal string interned.
func intern(s string) string {
	if s == "" {
		return s
	}
	return unique.Make(s).Value()
}

// internMap returns m with its keys and values interned.
func internMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[intern(k)] = intern(v)
	}
	return out
}
