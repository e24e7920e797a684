// Package wire is what the hub's binding server and edge-ipam share: the
// paths and the JSON of its answers. It has no dependencies so the CNI
// plugin stays small.
package wire

// PodIPPath answers GET ?namespace=..&name=.. with PodIP, or 404 when the
// pod has no binding on this node.
const PodIPPath = "/v1/podip"

// PodIP is the answer of PodIPPath.
type PodIP struct {
	// IP is the pod's bound IP.
	IP string `json:"ip"`
}

// BoundIPsPath answers GET with BoundIPs: every IP bound to a pod of this
// node, so edge-ipam can keep fresh allocations off them. With stable pod
// IPs off nothing is bound and the list is empty.
const BoundIPsPath = "/v1/bound-ips"

// BoundIPs is the answer of BoundIPsPath.
type BoundIPs struct {
	// IPs are the bound IPs, sorted, each once; never null.
	IPs []string `json:"ips"`
}

// Error is the body of every non-200 answer.
type Error struct {
	Message string `json:"message"`
}
