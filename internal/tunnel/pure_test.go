package tunnel

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func TestPolicyCheck(t *testing.T) {
	p := Policy{
		Ports:      []int{10250},
		Hosts:      []string{"edge-1"},
		LocalAddrs: func() ([]net.IP, error) { return []net.IP{net.ParseIP("192.0.2.10"), net.ParseIP("2001:db8::10")}, nil },
	}
	tests := map[string]struct {
		target string
		ok     bool
	}{
		"own address, kubelet port": {target: "192.0.2.10:10250", ok: true},
		"own IPv6 address":          {target: "[2001:db8::10]:10250", ok: true},
		"loopback":                  {target: "127.0.0.1:10250", ok: true},
		"own name":                  {target: "EDGE-1:10250", ok: true},
		"own address, other port":   {target: "192.0.2.10:22", ok: false},
		"another host":              {target: "192.0.2.11:10250", ok: false},
		"another name":              {target: "example.com:10250", ok: false},
		"unspecified":               {target: "0.0.0.0:10250", ok: false},
		"malformed":                 {target: "192.0.2.10", ok: false},
		"port out of range":         {target: "192.0.2.10:70000", ok: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := p.Check(tc.target)
			if tc.ok && err != nil {
				t.Fatalf("Check(%s) = %v, want allowed", tc.target, err)
			}
			if !tc.ok && !errors.Is(err, ErrForbidden) {
				t.Fatalf("Check(%s) = %v, want ErrForbidden", tc.target, err)
			}
		})
	}
}

func TestPolicyPods(t *testing.T) {
	// Node edge-1 has 192.0.2.10 and, on its pod bridge, 10.244.1.1; its
	// pods are 10.244.1.0/24 and fd00:10:244:1::/64. Node edge-2's pods are
	// 10.244.2.0/24.
	own := []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")}
	node := Policy{
		Ports:      []int{10250},
		Hosts:      []string{"edge-1"},
		LocalAddrs: func() ([]net.IP, error) { return []net.IP{net.ParseIP("192.0.2.10"), net.ParseIP("10.244.1.1")}, nil },
		PodPorts:   []int{8443},
		PodCIDRs:   func() []netip.Prefix { return own },
	}
	with := func(mutate func(*Policy)) Policy {
		p := node
		mutate(&p)
		return p
	}
	tests := map[string]struct {
		policy  Policy
		target  string
		wantWhy string // empty: allowed
	}{
		"own pod on a pod port":      {policy: node, target: "10.244.1.7:8443"},
		"own IPv6 pod on a pod port": {policy: node, target: "[fd00:10:244:1::7]:8443"},
		"own pod, IPv4-mapped":       {policy: node, target: "[::ffff:10.244.1.7]:8443"},
		"own pod on a node port":     {policy: node, target: "10.244.1.7:10250", wantWhy: "is a pod of this node (in 10.244.1.0/24) and port 10250 is not in the pod allowlist [8443]"},
		"own IPv6 pod on a node port": {policy: node, target: "[fd00:10:244:1::7]:10250",
			wantWhy: "is a pod of this node (in fd00:10:244:1::/64) and port 10250 is not in the pod allowlist [8443]"},
		"own pod on neither": {policy: node, target: "10.244.1.7:22", wantWhy: "port 22 is not in the allowlist [10250] nor in the pod allowlist [8443]"},
		"another node's pod": {policy: node, target: "10.244.2.7:8443", wantWhy: "10.244.2.7 is neither an address of this node nor in its pod CIDRs [10.244.1.0/24 fd00:10:244:1::/64]"},
		"another node's IPv6 pod": {policy: node, target: "[fd00:10:244:2::7]:8443",
			wantWhy: "fd00:10:244:2::7 is neither an address of this node nor in its pod CIDRs"},
		"another node's address":               {policy: node, target: "192.0.2.11:10250", wantWhy: "192.0.2.11 is neither an address of this node nor in its pod CIDRs"},
		"node address on a pod port":           {policy: node, target: "192.0.2.10:8443", wantWhy: "192.0.2.10 is this node and port 8443 is not in the allowlist [10250]"},
		"node name on a pod port":              {policy: node, target: "edge-1:8443", wantWhy: "edge-1 is this node and port 8443 is not in the allowlist [10250]"},
		"loopback on a pod port":               {policy: node, target: "127.0.0.1:8443", wantWhy: "127.0.0.1 is this node and port 8443 is not in the allowlist [10250]"},
		"bridge address on a pod port":         {policy: node, target: "10.244.1.1:8443", wantWhy: "10.244.1.1 is this node and port 8443 is not in the allowlist [10250]"},
		"bridge address is the node":           {policy: node, target: "10.244.1.1:10250"},
		"node address on a port in both lists": {policy: with(func(p *Policy) { p.Ports = []int{10250, 8443} }), target: "192.0.2.10:8443"},
		"pod ports empty": {policy: with(func(p *Policy) { p.PodPorts = nil }), target: "10.244.1.7:10250",
			wantWhy: "10.244.1.7 is a pod of this node (in 10.244.1.0/24) and the agent opens no pod ports"},
		"pod ports empty, pod CIDRs unknown": {policy: with(func(p *Policy) { p.PodPorts, p.PodCIDRs = nil, nil }), target: "10.244.1.7:10250",
			wantWhy: "10.244.1.7 is not an address of this node, and the agent opens no pods"},
		"pod CIDRs not known yet": {policy: with(func(p *Policy) { p.PodCIDRs = func() []netip.Prefix { return nil } }), target: "10.244.1.7:8443",
			wantWhy: "10.244.1.7 is not an address of this node, and this node's pod CIDRs are not known yet"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			addr, err := tc.policy.Check(tc.target)
			if tc.wantWhy == "" {
				if err != nil || addr != tc.target {
					t.Fatalf("Check(%s) = %q, %v; want it allowed as is", tc.target, addr, err)
				}
				return
			}
			if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tc.wantWhy) {
				t.Fatalf("Check(%s) = %v, want ErrForbidden because %q", tc.target, err, tc.wantWhy)
			}
		})
	}
}

func TestParsePorts(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    []int
		wantErr bool
	}{
		"one":        {in: "10250", want: []int{10250}},
		"several":    {in: "10250, 10255", want: []int{10250, 10255}},
		"empty":      {in: "", wantErr: true},
		"not number": {in: "kubelet", wantErr: true},
		"zero":       {in: "0", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParsePorts(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	tests := map[string]struct {
		attempt  int
		rand     float64
		min, max time.Duration
	}{
		"first, low jitter":   {attempt: 0, rand: 0, min: 100 * time.Millisecond, max: 100 * time.Millisecond},
		"first, high jitter":  {attempt: 0, rand: 0.999, min: 199 * time.Millisecond, max: 200 * time.Millisecond},
		"third doubles twice": {attempt: 2, rand: 0, min: 400 * time.Millisecond, max: 400 * time.Millisecond},
		"capped":              {attempt: 20, rand: 0.999, min: 2990 * time.Millisecond, max: 3 * time.Second},
		"huge attempt capped": {attempt: 1000, rand: 0, min: 1500 * time.Millisecond, max: 1500 * time.Millisecond},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := Backoff{Initial: 200 * time.Millisecond, Max: 3 * time.Second, Rand: func() float64 { return tc.rand }}
			if d := b.Delay(tc.attempt); d < tc.min || d > tc.max {
				t.Fatalf("Delay(%d) = %s, want in [%s, %s]", tc.attempt, d, tc.min, tc.max)
			}
		})
	}
}

func TestMergeAgents(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) metav1.Time { return metav1.NewTime(now.Add(-ago)) }
	entry := func(node string, servers int32, ago time.Duration) edgev1.ConnectedAgent {
		return edgev1.ConnectedAgent{Node: node, Servers: servers, LastSeen: at(ago)}
	}
	local := func(nodes ...string) []AgentInfo {
		var out []AgentInfo
		for _, n := range nodes {
			out = append(out, AgentInfo{Node: n, Servers: 2})
		}
		return out
	}
	tests := map[string]struct {
		current   []edgev1.ConnectedAgent
		local     []AgentInfo
		gone      []string
		want      []edgev1.ConnectedAgent
		wantCount int32
	}{
		"first report": {
			local: local("a", "b"), want: []edgev1.ConnectedAgent{entry("a", 2, 0), entry("b", 2, 0)}, wantCount: 2,
		},
		"keeps other replicas' agents": {
			current: []edgev1.ConnectedAgent{entry("c", 1, 10*time.Second)}, local: local("a"),
			want: []edgev1.ConnectedAgent{entry("a", 2, 0), entry("c", 1, 10*time.Second)}, wantCount: 2,
		},
		"fresh entries are not rewritten": {
			current: []edgev1.ConnectedAgent{entry("a", 2, 30*time.Second)}, local: local("a"),
			want: []edgev1.ConnectedAgent{entry("a", 2, 30*time.Second)}, wantCount: 1,
		},
		"old entries are refreshed": {
			current: []edgev1.ConnectedAgent{entry("a", 2, 90*time.Second)}, local: local("a"),
			want: []edgev1.ConnectedAgent{entry("a", 2, 0)}, wantCount: 1,
		},
		"servers change forces a refresh": {
			current: []edgev1.ConnectedAgent{entry("a", 1, 30*time.Second)}, local: local("a"),
			want: []edgev1.ConnectedAgent{entry("a", 2, 0)}, wantCount: 1,
		},
		"lastSeen never moves back": {
			current: []edgev1.ConnectedAgent{entry("a", 1, -10*time.Second)}, local: local("a"),
			want: []edgev1.ConnectedAgent{entry("a", 2, -10*time.Second)}, wantCount: 1,
		},
		"expired entries are dropped": {
			current: []edgev1.ConnectedAgent{entry("c", 1, 181*time.Second)}, local: local("a"),
			want: []edgev1.ConnectedAgent{entry("a", 2, 0)}, wantCount: 1,
		},
		"gone agents are dropped at once": {
			current: []edgev1.ConnectedAgent{entry("c", 1, 5*time.Second)}, gone: []string{"c"},
			want: []edgev1.ConnectedAgent{}, wantCount: 0,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, count := MergeAgents(MergeInput{Current: tc.current, Local: tc.local, Gone: tc.gone, Now: now, Refresh: time.Minute, TTL: 3 * time.Minute})
			if count != tc.wantCount {
				t.Fatalf("count = %d, want %d", count, tc.wantCount)
			}
			if !sameAgents(got, tc.want) {
				t.Fatalf("agents = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestMergeAgentsBoundsTheList(t *testing.T) {
	now := time.Now()
	var local []AgentInfo
	for i := range 300 {
		local = append(local, AgentInfo{Node: "node-" + string(rune('a'+i%26)) + time.Duration(i).String(), Servers: 1})
	}
	got, count := MergeAgents(MergeInput{Local: local, Now: now, Refresh: time.Minute, TTL: 3 * time.Minute})
	if len(got) != MaxListedAgents || count != 300 {
		t.Fatalf("listed %d with count %d, want %d listed and count 300", len(got), count, MaxListedAgents)
	}
}
