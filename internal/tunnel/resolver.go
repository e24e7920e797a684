package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// Resolver maps a host the cloud wants to reach to the node that has it and
// the host the node's agent should dial (Resolve, for the passthrough
// frontend, which reaches only nodes), and decides the route of a CONNECT
// destination (Route).
type Resolver interface {
	Resolve(host string) (node, dialHost string, err error)
	Router
}

// StaticResolver maps hosts to nodes from a fixed table; the agent dials the
// host as given. For tests and benchmarks.
type StaticResolver map[string]string

// Resolve implements Resolver.
func (r StaticResolver) Resolve(host string) (string, string, error) {
	if node, ok := r[host]; ok {
		return node, host, nil
	}
	return "", "", fmt.Errorf("%w: %q", ErrUnknownTarget, host)
}

// NodeResolver resolves hosts from Node objects: a Node's name and every
// address in its status (InternalIP, ExternalIP, Hostname, DNS names) map to
// it. A name resolves to the node's InternalIP, which the agent dials.
type NodeResolver struct {
	mu       sync.RWMutex
	byHost   map[string]string   // host (lower case) -> node
	nodes    map[string][]string // node -> its hosts, to unindex
	dialIP   map[string]string   // node -> InternalIP (or first IP)
	edge     map[string]bool     // node -> in an Edge pool
	podCIDRs []podCIDR
	direct   []netip.Prefix
	synced   func() bool
}

// NewNodeResolver starts watching Nodes; it stops with ctx. direct are the
// cloud-side CIDRs the server dials itself (see Route).
func NewNodeResolver(ctx context.Context, client kubernetes.Interface, direct []netip.Prefix) *NodeResolver {
	r := &NodeResolver{byHost: map[string]string{}, nodes: map[string][]string{}, dialIP: map[string]string{}, edge: map[string]bool{}, direct: direct}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Hour,
		informers.WithTransform(func(obj any) (any, error) {
			// Keep only what routing needs: Nodes are big and many.
			n, ok := obj.(*corev1.Node)
			if !ok {
				return obj, nil
			}
			t := &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: n.Name, ResourceVersion: n.ResourceVersion},
				Spec:       corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
				Status:     corev1.NodeStatus{Addresses: n.Status.Addresses},
			}
			if v, ok := n.Labels[edgev1.LabelPoolType]; ok {
				t.Labels = map[string]string{edgev1.LabelPoolType: v}
			}
			return t, nil
		}))
	inf := factory.Core().V1().Nodes().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.upsert(obj) },
		UpdateFunc: func(_, obj any) { r.upsert(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				r.remove(n.Name)
			}
		},
	})
	r.synced = inf.HasSynced
	factory.Start(ctx.Done())
	return r
}

// HasSynced says whether the first list of Nodes is in.
func (r *NodeResolver) HasSynced() bool { return r.synced == nil || r.synced() }

func (r *NodeResolver) upsert(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	hosts := []string{strings.ToLower(n.Name)}
	dial := ""
	for _, a := range n.Status.Addresses {
		if a.Address == "" {
			continue
		}
		hosts = append(hosts, strings.ToLower(a.Address))
		if ip := net.ParseIP(a.Address); ip != nil && (dial == "" || a.Type == corev1.NodeInternalIP && !r.isInternal(n, dial)) {
			dial = a.Address
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(n.Name)
	for _, h := range hosts {
		r.byHost[h] = n.Name
	}
	r.nodes[n.Name] = hosts
	r.dialIP[n.Name] = dial
	r.edge[n.Name] = n.Labels[edgev1.LabelPoolType] == strings.ToLower(string(edgev1.NodePoolEdge))
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			r.podCIDRs = append(r.podCIDRs, podCIDR{prefix: p.Masked(), node: n.Name})
		}
	}
}

func (r *NodeResolver) isInternal(n *corev1.Node, addr string) bool {
	for _, a := range n.Status.Addresses {
		if a.Address == addr && a.Type == corev1.NodeInternalIP {
			return true
		}
	}
	return false
}

func (r *NodeResolver) remove(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(name)
}

func (r *NodeResolver) removeLocked(name string) {
	for _, h := range r.nodes[name] {
		if r.byHost[h] == name {
			delete(r.byHost, h)
		}
	}
	delete(r.nodes, name)
	delete(r.dialIP, name)
	delete(r.edge, name)
	r.podCIDRs = slices.DeleteFunc(r.podCIDRs, func(p podCIDR) bool { return p.node == name })
}

// Resolve implements Resolver.
func (r *NodeResolver) Resolve(host string) (string, string, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	node, ok := r.byHost[strings.ToLower(host)]
	if !ok {
		return "", "", fmt.Errorf("%w: %q", ErrUnknownTarget, host)
	}
	if net.ParseIP(host) != nil {
		return node, host, nil
	}
	if ip := r.dialIP[node]; ip != "" {
		return node, ip, nil
	}
	return node, host, nil
}
