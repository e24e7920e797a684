// Package wire is what the hub's binding server and edge-ipam share: the
// path and the JSON of a pod IP lookup. It has no dependencies so the CNI
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

// Error is the body of every non-200 answer.
type Error struct {
	Message string `json:"message"`
}
