package hub

import (
	"bytes"

	"github.com/edgeunit/edgeunit/internal/hub/kjson"
)

// answerFilter rewrites the objects of the answers one client gets for one
// resource: the service-topology filter of EndpointSlices, and the
// in-cluster endpoint of the kubelet's view of the `kubernetes` Service.
// The cache keeps answers as the apiserver gave them; filters apply on the
// way out, online and offline alike.
type answerFilter struct {
	// what names the filter in the messages that make a client re-list.
	what string
	// object returns obj rewritten; changed is false when it is served as
	// it is.
	object func(obj []byte) (out []byte, changed bool)
	// changes is closed when the filter's decisions change: a watch it
	// filters then ends with 410 Expired, so the client re-lists.
	changes func() <-chan struct{}
	// expireWatch, when set, says a watch starting now must end with 410
	// Expired at once: it continues a list filtered by decisions since
	// changed.
	expireWatch func() bool
}

// filterFor is the filter of client's reads of ri, or nil.
func (h *Hub) filterFor(client string, ri reqInfo) *answerFilter {
	component := componentOf(client)
	switch {
	case h.filtered[component] && ri.resource == "endpointslices" && ri.group == "discovery.k8s.io":
		return &answerFilter{what: "service topology", object: h.topo.filter, changes: h.topo.changes}
	case component == ClientKubelet && h.inCluster != nil && ri.prefix == "api" && ri.resource == "services" &&
		(ri.namespace == "" || ri.namespace == apiServiceNamespace):
		h.inCluster.viewed(ri)
		return &answerFilter{what: "in-cluster API endpoint", object: h.inCluster.rewriteService,
			changes: h.inCluster.changes, expireWatch: h.inCluster.expireWatch}
	}
	return nil
}

func (f *answerFilter) apply(obj []byte) []byte {
	out, _ := f.object(obj)
	return out
}

// list filters every item of a list response.
func (f *answerFilter) list(body []byte) []byte {
	l, err := kjson.ParseList(body)
	if err != nil || len(l.Items) == 0 {
		return body
	}
	var buf bytes.Buffer
	buf.Grow(len(body))
	buf.Write(body[:l.ItemsStart])
	buf.WriteByte('[')
	for i, it := range l.Items {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(f.apply(it))
	}
	buf.WriteByte(']')
	buf.Write(body[l.ItemsEnd:])
	return buf.Bytes()
}
