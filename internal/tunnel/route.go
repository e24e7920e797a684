package tunnel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// RouteKind says how a CONNECT destination is reached.
type RouteKind string

const (
	// RouteAgent: through the agent of the node that has the destination.
	RouteAgent RouteKind = "agent"
	// RouteDirect: the server dials it itself, from the cloud.
	RouteDirect RouteKind = "direct"
	// RouteRefused: the destination is off policy.
	RouteRefused RouteKind = "refused"
)

// Route is where a CONNECT destination goes.
type Route struct {
	Kind RouteKind
	// Node whose agent dials Host, for RouteAgent.
	Node string
	// Host to dial.
	Host string
}

// Router decides the route of a CONNECT destination host. isEdge reports
// whether a node is reached through its agent.
type Router interface {
	Route(host string, isEdge func(node string) bool) (Route, error)
}

// ErrOffPolicy is returned for a destination that is neither on the edge
// nor on the cloud side: the server refuses it without dialling.
var ErrOffPolicy = errors.New("destination is off the egress policy")

// ErrDirectUnreachable is returned when the server could not dial a
// cloud-side destination itself.
var ErrDirectUnreachable = errors.New("target unreachable from the server")

// ParseCIDRs parses a list of CIDRs, naming the one that does not parse.
func ParseCIDRs(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("CIDR %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// route is the policy, shared by the resolvers: node names and addresses
// first, then pod CIDRs, then the direct CIDRs.
//   - An edge node, or a pod in an edge node's pod CIDR: its agent.
//   - A cloud node, or a pod on one: direct, since the server runs in the
//     cloud.
//   - An address in direct (the Service ranges, further cloud CIDRs): direct.
//   - Anything else is refused: the server is no open relay.
func route(host string, node, dialHost string, found bool, podNode string, direct []netip.Prefix, isEdge func(string) bool) (Route, error) {
	if found {
		if isEdge(node) {
			return Route{Kind: RouteAgent, Node: node, Host: dialHost}, nil
		}
		return Route{Kind: RouteDirect, Host: dialHost}, nil
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return Route{Kind: RouteRefused}, fmt.Errorf("%w: %q is not a known node and not an address", ErrOffPolicy, host)
	}
	addr = addr.Unmap()
	if podNode != "" {
		if isEdge(podNode) {
			return Route{Kind: RouteAgent, Node: podNode, Host: host}, nil
		}
		return Route{Kind: RouteDirect, Host: host}, nil
	}
	if slices.ContainsFunc(direct, func(p netip.Prefix) bool { return p.Contains(addr) }) {
		return Route{Kind: RouteDirect, Host: host}, nil
	}
	return Route{Kind: RouteRefused}, fmt.Errorf("%w: %s is not an edge node, a pod on a node, or in the direct CIDRs %v", ErrOffPolicy, host, direct)
}

// Route implements Router for a static table: every listed host is an edge
// node's, anything else is off policy.
func (r StaticResolver) Route(host string, _ func(string) bool) (Route, error) {
	node, found := r[host]
	return route(host, node, host, found, "", nil, func(string) bool { return true })
}

// Route implements Router from the Nodes: their names and addresses, their
// pod CIDRs, and the direct CIDRs.
func (r *NodeResolver) Route(host string, isEdge func(string) bool) (Route, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	node, found := r.byHost[strings.ToLower(host)]
	dialHost := host
	if found && net.ParseIP(host) == nil && r.dialIP[node] != "" {
		dialHost = r.dialIP[node]
	}
	podNode := ""
	if addr, err := netip.ParseAddr(host); err == nil && !found {
		addr = addr.Unmap()
		for _, pc := range r.podCIDRs {
			if pc.prefix.Contains(addr) {
				podNode = pc.node
				break
			}
		}
	}
	return route(host, node, dialHost, found, podNode, r.direct, func(n string) bool {
		return r.edge[n] || isEdge(n)
	})
}

// podCIDR is a node's pod range.
type podCIDR struct {
	prefix netip.Prefix
	node   string
}
