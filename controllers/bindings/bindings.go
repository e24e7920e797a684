package bindings

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// Limits of the EdgeUnit API (status.bindings and .pods MaxItems).
const (
	maxNodes       = 1000
	maxPodsPerNode = 512
)

// AnnotationFlannelPublicIP is where flannel records the address its VTEP
// uses when it differs from the node's InternalIP.
const AnnotationFlannelPublicIP = "flannel.alpha.coreos.com/public-ip"

// VTEPIP is the address of a node's VXLAN endpoint: flannel's public-ip
// annotation when set, else the node's first InternalIP.
func VTEPIP(n *corev1.Node) string {
	if ip := n.Annotations[AnnotationFlannelPublicIP]; ip != "" {
		return ip
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && a.Address != "" {
			return a.Address
		}
	}
	return ""
}

// inputs is what a pass observed for one unit.
type inputs struct {
	stablePodIPs, stableVTEPMAC bool
	// nodes of the unit.
	nodes []*corev1.Node
	// pods bound to the unit's nodes, by node name.
	pods map[string][]*corev1.Pod
	// macs are the VTEP MACs of every node of the cluster (AssignMACs).
	macs map[string]string
	// prev are the bindings last recorded for the unit.
	prev []edgev1.NodeBinding
}

// summary counts what desiredBindings recorded, for the condition.
type summary struct {
	nodes, pods int
	// noVTEPIP lists the nodes without an address for their VTEP.
	noVTEPIP []string
	// overflow lists nodes (or "nodes") whose bindings did not fit the API's
	// limits.
	overflow []string
}

// desiredBindings computes a unit's bindings, sorted by node and pod. A node
// is bound to its MAC (in.macs) and VTEP IP, kept while the node reports
// no address. A pod
// is bound to its status.podIP; while that is empty (the pod restarts) it
// keeps the IP recorded before, unless another pod on the node now has
// that IP. hostNetwork pods (their IP is the node's) and pods that
// finished (their IP is released for good) are not bound. A pod's binding
// goes when the pod object goes.
func desiredBindings(in inputs) ([]edgev1.NodeBinding, summary) {
	var sum summary
	if !in.stablePodIPs && !in.stableVTEPMAC {
		return nil, sum
	}
	prev := make(map[string]map[string]string, len(in.prev))
	prevVTEPIP := make(map[string]string, len(in.prev))
	for _, nb := range in.prev {
		ips := make(map[string]string, len(nb.Pods))
		for _, p := range nb.Pods {
			ips[p.Pod] = p.IP
		}
		prev[nb.Node] = ips
		prevVTEPIP[nb.Node] = nb.VTEPIP
	}

	nodes := slices.SortedFunc(slices.Values(in.nodes), func(a, b *corev1.Node) int { return cmp.Compare(a.Name, b.Name) })
	nodes = slices.CompactFunc(nodes, func(a, b *corev1.Node) bool { return a.Name == b.Name })
	if len(nodes) > maxNodes {
		sum.overflow = append(sum.overflow, "nodes")
		nodes = nodes[:maxNodes]
	}
	out := make([]edgev1.NodeBinding, 0, len(nodes))
	for _, n := range nodes {
		nb := edgev1.NodeBinding{Node: n.Name}
		if in.stableVTEPMAC {
			nb.VTEPMAC = in.macs[n.Name]
			// A node that reports no address for a moment (a restarting
			// kubelet) keeps the VTEP IP recorded before.
			if nb.VTEPIP = VTEPIP(n); nb.VTEPIP == "" {
				nb.VTEPIP = prevVTEPIP[n.Name]
			}
			if nb.VTEPIP == "" {
				sum.noVTEPIP = append(sum.noVTEPIP, n.Name)
			}
		}
		if in.stablePodIPs {
			nb.Pods = podBindings(in.pods[n.Name], prev[n.Name])
			if len(nb.Pods) > maxPodsPerNode {
				sum.overflow = append(sum.overflow, n.Name)
				nb.Pods = nb.Pods[:maxPodsPerNode]
			}
		}
		if !in.stableVTEPMAC && len(nb.Pods) == 0 {
			continue // nothing to record for the node
		}
		sum.pods += len(nb.Pods)
		out = append(out, nb)
	}
	sum.nodes = len(nodes)
	if len(out) == 0 {
		return nil, sum
	}
	return out, sum
}

// podBindings binds the pods of one node, sorted by namespace/name.
func podBindings(pods []*corev1.Pod, prev map[string]string) []edgev1.PodIPBinding {
	live := make(map[string]bool, len(pods))
	for _, p := range pods {
		if bindable(p) && p.Status.PodIP != "" {
			live[p.Status.PodIP] = true
		}
	}
	var out []edgev1.PodIPBinding
	for _, p := range pods {
		if !bindable(p) {
			continue
		}
		key := p.Namespace + "/" + p.Name
		switch ip, had := prev[key]; {
		case p.Status.PodIP != "":
			out = append(out, edgev1.PodIPBinding{Pod: key, IP: p.Status.PodIP})
		case had && !live[ip]:
			out = append(out, edgev1.PodIPBinding{Pod: key, IP: ip})
		}
	}
	slices.SortFunc(out, func(a, b edgev1.PodIPBinding) int { return cmp.Compare(a.Pod, b.Pod) })
	return slices.CompactFunc(out, func(a, b edgev1.PodIPBinding) bool { return a.Pod == b.Pod })
}

func bindable(p *corev1.Pod) bool {
	return !p.Spec.HostNetwork && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// recordedMACs collects the VTEP MACs recorded in the given units' bindings,
// by node. A node recorded in two units (it is moving between them) keeps
// the MAC of the first unit listed that has one.
func recordedMACs(units ...[]edgev1.NodeBinding) map[string]string {
	out := map[string]string{}
	for _, bs := range units {
		for _, nb := range bs {
			if _, ok := out[nb.Node]; !ok && nb.VTEPMAC != "" {
				out[nb.Node] = nb.VTEPMAC
			}
		}
	}
	return out
}
