package tunnel

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func testNode(name, poolType, ip string, podCIDRs ...string) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{PodCIDRs: podCIDRs},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}},
	}
	if poolType != "" {
		n.Labels = map[string]string{edgev1.LabelPoolType: poolType}
	}
	return n
}

func TestNodeResolverRoute(t *testing.T) {
	direct, err := ParseCIDRs([]string{"10.96.0.0/12", "172.31.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	r := &NodeResolver{byHost: map[string]string{}, nodes: map[string][]string{}, dialIP: map[string]string{}, edge: map[string]bool{}, direct: direct}
	r.upsert(testNode("edge-1", "edge", "192.168.1.10", "10.244.1.0/24", "fd00:1::/64"))
	r.upsert(testNode("cloud-1", "cloud", "192.168.0.5", "10.244.0.0/24"))
	r.upsert(testNode("plain", "", "192.168.0.6", "10.244.9.0/24"))
	// An edge node without a pool label yet, whose agent is connected.
	r.upsert(testNode("edge-2", "", "192.168.2.10", "10.244.2.0/24"))
	agents := map[string]bool{"edge-2": true}
	isEdge := func(n string) bool { return agents[n] }

	tests := map[string]struct {
		host    string
		want    Route
		refused string
	}{
		"an edge node by name, dialled at its address": {host: "edge-1", want: Route{Kind: RouteAgent, Node: "edge-1", Host: "192.168.1.10"}},
		"an edge node by address":                      {host: "192.168.1.10", want: Route{Kind: RouteAgent, Node: "edge-1", Host: "192.168.1.10"}},
		"a pod on an edge node":                        {host: "10.244.1.7", want: Route{Kind: RouteAgent, Node: "edge-1", Host: "10.244.1.7"}},
		"an IPv6 pod on an edge node":                  {host: "fd00:1::7", want: Route{Kind: RouteAgent, Node: "edge-1", Host: "fd00:1::7"}},
		"a node with a connected agent":                {host: "10.244.2.3", want: Route{Kind: RouteAgent, Node: "edge-2", Host: "10.244.2.3"}},
		"a cloud node":                                 {host: "cloud-1", want: Route{Kind: RouteDirect, Host: "192.168.0.5"}},
		"a pod on a cloud node":                        {host: "10.244.0.9", want: Route{Kind: RouteDirect, Host: "10.244.0.9"}},
		"a pod on a node outside any pool":             {host: "10.244.9.9", want: Route{Kind: RouteDirect, Host: "10.244.9.9"}},
		"a ClusterIP":                                  {host: "10.96.0.10", want: Route{Kind: RouteDirect, Host: "10.96.0.10"}},
		"a listed cloud network":                       {host: "172.31.4.4", want: Route{Kind: RouteDirect, Host: "172.31.4.4"}},
		"an address nobody claims":                     {host: "203.0.113.9", refused: "203.0.113.9 is not an edge node, a pod on a node, or in the direct CIDRs"},
		"a name that is no node":                       {host: "webhook.example.com", refused: `"webhook.example.com" is not a known node and not an address`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := r.Route(tc.host, isEdge)
			if tc.refused != "" {
				if !errors.Is(err, ErrOffPolicy) || !strings.Contains(err.Error(), tc.refused) || got.Kind != RouteRefused {
					t.Fatalf("Route(%q) = %+v, %v; want refused with %q", tc.host, got, err, tc.refused)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Route(%q) = %+v, %v; want %+v", tc.host, got, err, tc.want)
			}
		})
	}

	// A node that goes away takes its pods' range with it.
	r.remove("edge-1")
	if got, err := r.Route("10.244.1.7", isEdge); !errors.Is(err, ErrOffPolicy) {
		t.Errorf("after the node left: Route = %+v, %v; want refused", got, err)
	}
}

func TestParseCIDRs(t *testing.T) {
	got, err := ParseCIDRs([]string{"10.96.0.1/12", " fd00::/64"})
	if err != nil || got[0].String() != "10.96.0.0/12" || got[1].String() != "fd00::/64" {
		t.Errorf("ParseCIDRs = %v, %v", got, err)
	}
	if _, err := ParseCIDRs([]string{"10.0.0.0"}); err == nil || !strings.Contains(err.Error(), `"10.0.0.0"`) {
		t.Errorf("a bare address parsed: %v", err)
	}
}

func TestMetricsCountRoutesAndOutcomes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.connect(RouteAgent, nil)
	m.connect(RouteAgent, ErrNoAgent)
	m.connect(RouteDirect, ErrUnreachable)
	m.connect("", ErrOffPolicy)
	(*Metrics)(nil).connect(RouteAgent, nil) // a server without metrics
	for labels, want := range map[[2]string]float64{
		{"agent", "ok"}: 1, {"agent", "no_agent"}: 1, {"direct", "unreachable"}: 1, {"refused", "forbidden"}: 1, {"direct", "ok"}: 0,
	} {
		var got dto.Metric
		if err := m.connects.WithLabelValues(labels[0], labels[1]).Write(&got); err != nil {
			t.Fatal(err)
		}
		if got.GetCounter().GetValue() != want {
			t.Errorf("%v = %v, want %v", labels, got.GetCounter().GetValue(), want)
		}
	}
}

// TestConnectRoutesByDestination: through the CONNECT frontend, an edge
// node's address goes through its agent, a cloud-side address is dialled
// by the server, and an address neither claims is refused before any dial.
func TestConnectRoutesByDestination(t *testing.T) {
	p := newPKI(t)
	// 127.0.77.0/24 stands for the cloud network; 127.0.0.1 is edge node
	// node-a's address.
	direct, err := ParseCIDRs([]string{"127.0.77.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	res := &NodeResolver{byHost: map[string]string{}, nodes: map[string][]string{}, dialIP: map[string]string{}, edge: map[string]bool{}, direct: direct}
	res.upsert(testNode("node-a", "edge", "127.0.0.1"))
	cloudLn, err := net.Listen("tcp", "127.0.77.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cloudLn.Close()
	go func() {
		for {
			c, err := cloudLn.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("cloud\n"))
			_ = c.Close()
		}
	}()
	edgeAddr, edgeAccepted := echoServer(t)
	srv := startServer(t, p, res, 0)
	a := startAgent(t, "node-a", p.agentTLS(p.agentCert(t, "node-a")), []int{portOf(t, edgeAddr)}, srv.agentAddr)
	eventually(t, 10*time.Second, "agent connected", func() bool { return srv.Connected("node-a") && len(a.Connected()) == 1 })

	c, code := connectVia(t, srv.connectAddr, cloudLn.Addr().String())
	if code != http.StatusOK {
		t.Fatalf("CONNECT to the cloud network: status %d", code)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(c); err != nil || string(got) != "cloud\n" {
		t.Fatalf("cloud backend answered %q, %v", got, err)
	}
	_ = c.Close()

	c, code = connectVia(t, srv.connectAddr, edgeAddr)
	if code != http.StatusOK {
		t.Fatalf("CONNECT to the edge node: status %d", code)
	}
	_ = c.Close()
	eventually(t, 10*time.Second, "the edge node's echo server reached through the agent", func() bool { return edgeAccepted.Load() == 1 })

	c, code = connectVia(t, srv.connectAddr, "127.0.78.1:80")
	if c != nil {
		_ = c.Close()
	}
	if code != http.StatusForbidden {
		t.Fatalf("CONNECT off policy: status %d, want 403", code)
	}
}
