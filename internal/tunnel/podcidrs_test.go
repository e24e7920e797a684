package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

func TestPodCIDRsOfNode(t *testing.T) {
	tests := map[string]struct {
		spec corev1.NodeSpec
		want []netip.Prefix
	}{
		"dual stack": {spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24", "fd00:10:244:1::/64"}},
			want: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")}},
		"only the old field": {spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24"}, want: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}},
		"not allocated yet":  {},
		"unmasked":           {spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.1.9/24"}}, want: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}},
		"garbage skipped":    {spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.1.0/24", "0.0.0.0/0/8"}}, want: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := podCIDRsOfNode(&corev1.Node{Spec: tc.spec}, testLogger(t))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("pod CIDRs = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestAgentOpensItsOwnPodsOnly runs an agent whose Node cannot be read at
// first: it connects all the same and refuses pods. Once its Node is
// readable and gets its pod CIDRs, it dials its own pods on the pod port, and
// still refuses its pods on other ports, its own address on the pod port,
// and another node's pods. "Pods" are addresses no machine has: the agent's
// dialer sends its own pods' addresses to a loopback echo server and records
// every target, so a refused target is shown never to be dialled.
func TestAgentOpensItsOwnPodsOnly(t *testing.T) {
	p := newPKI(t)
	echo, _ := echoServer(t)
	srv := startServer(t, p, StaticResolver{}, 0)

	client := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.2.0/24", PodCIDRs: []string{"10.244.2.0/24"}}},
	)
	var offline, watching atomic.Bool
	offline.Store(true)
	client.PrependReactor("list", "nodes", func(clienttesting.Action) (bool, runtime.Object, error) {
		if offline.Load() {
			return true, nil, errors.New("kube-apiserver unreachable")
		}
		return false, nil, nil
	})
	client.PrependWatchReactor("nodes", func(a clienttesting.Action) (bool, watch.Interface, error) {
		// Registered before it is reported, so no update is missed.
		w, err := client.Tracker().Watch(a.GetResource(), a.GetNamespace())
		watching.Store(err == nil)
		return true, w, err
	})

	pods := map[string]bool{"10.244.1.5:8443": true, "[fd00:10:244:1::5]:8443": true}
	var mu sync.Mutex
	var dialled []string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialled = append(dialled, addr)
		mu.Unlock()
		if pods[addr] {
			addr = echo
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	a, err := NewAgent(AgentConfig{
		Node:      "node-a",
		TLSConfig: p.agentTLS(p.agentCert(t, "node-a")),
		Discovery: StaticServers{srv.agentAddr},
		Policy: Policy{
			Ports:      []int{10250},
			PodPorts:   []int{8443},
			LocalAddrs: func() ([]net.IP, error) { return []net.IP{net.ParseIP("192.0.2.10")}, nil },
		},
		NodeClient: client,
		Dial:       dial,
		Backoff:    Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		KeepAlive:  time.Second,
		Log:        testLogger(t).WithName("agent"),
	})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, a)
	eventually(t, 10*time.Second, "agent connected while its Node cannot be read", func() bool { return srv.Connected("node-a") })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(target string) error {
		c, err := srv.DialNode(ctx, "node-a", target)
		if err != nil {
			return err
		}
		defer c.Close()
		msg := []byte("to " + target)
		if _, err := c.Write(msg); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
			t.Fatalf("echo through %s = %q, %v", target, got, err)
		}
		return nil
	}
	refused := func(target, why string) {
		t.Helper()
		if err := open(target); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), why) {
			t.Fatalf("dial %s = %v, want ErrForbidden because %q", target, err, why)
		}
	}

	refused("10.244.1.5:8443", "pod CIDRs are not known yet")

	// Readable, but without pod CIDRs yet: they arrive on the watch.
	offline.Store(false)
	eventually(t, 10*time.Second, "the agent watching its Node", watching.Load)
	refused("10.244.1.5:8443", "pod CIDRs are not known yet")
	nodeA, err := client.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodeA.Spec.PodCIDR, nodeA.Spec.PodCIDRs = "10.244.1.0/24", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}
	if _, err := client.CoreV1().Nodes().Update(ctx, nodeA, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "own pod reachable on the pod port", func() bool { return open("10.244.1.5:8443") == nil })
	if err := open("[fd00:10:244:1::5]:8443"); err != nil {
		t.Fatalf("own IPv6 pod on the pod port: %v", err)
	}

	refused("10.244.2.5:8443", "neither an address of this node nor in its pod CIDRs")
	refused("10.244.1.5:10250", "not in the pod allowlist [8443]")
	refused("192.0.2.10:8443", "is this node and port 8443 is not in the allowlist [10250]")

	mu.Lock()
	defer mu.Unlock()
	for _, target := range []string{"10.244.2.5:8443", "10.244.1.5:10250", "192.0.2.10:8443"} {
		if slices.Contains(dialled, target) {
			t.Errorf("the agent dialled %s, which it refused", target)
		}
	}
	if n := slices.Index(dialled, "10.244.1.5:8443"); n < 0 {
		t.Errorf("dialled %v: the own pod was never dialled", dialled)
	}
	// Only its own Node is read: what the Node authorizer allows a node.
	for _, act := range client.Actions() {
		if act.GetResource().Resource != "nodes" || (act.GetVerb() != "list" && act.GetVerb() != "watch") {
			continue
		}
		var sel string
		switch r := act.(type) {
		case clienttesting.ListAction:
			sel = r.GetListRestrictions().Fields.String()
		case clienttesting.WatchAction:
			sel = r.GetWatchRestrictions().Fields.String()
		}
		if sel != "metadata.name=node-a" {
			t.Errorf("the agent %ss nodes with field selector %q, want only its own Node", act.GetVerb(), sel)
		}
	}
}

// TestRunAgentWithPodPortsOffline: with --pod-ports and kube-apiserver out of
// reach, the agent connects with the certificate on disk and refuses pods
// until it can read its Node.
func TestRunAgentWithPodPortsOffline(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, StaticResolver{}, 0)
	startOfflineAgent(t, p, srv, func(o *AgentOptions) { o.PodPorts = "8443" })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// A documentation address, on no interface of this machine.
	c, err := srv.DialNode(ctx, "edge-1", "198.51.100.5:8443")
	if c != nil {
		_ = c.Close()
	}
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "pod CIDRs are not known yet") {
		t.Fatalf("dial of a pod before the Node was read = %v, want ErrForbidden because its pod CIDRs are not known", err)
	}
}

// runUntilCleanup runs a until the test ends.
func runUntilCleanup(t testing.TB, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
	})
}
