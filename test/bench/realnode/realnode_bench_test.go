//go:build e2e && linux

// Package realnode measures edgeunit on a real edge node of the e2e
// testbed (test/e2e/testbed: a real kubelet, containerd and runc in
// namespaces), each figure against the same node without the hub in the
// same run:
//
//   - bytes on the node's link in a steady window, the kubelet with 20
//     pods through the hub ÷ the same kubelet direct;
//   - the kubelet's first Lease renewal after a restart, through the hub ÷
//     direct;
//   - the hub's RSS with the kubelet and 20 pods;
//   - power cuts with the link cut: seconds from the kubelet's start to
//     the workload answering on its pod IP, per trial.
//
// Run with `make bench` (root). EDGEUNIT_BENCH_WINDOW sets the steady
// window (default 2m; the brief's figure is for 10m) and
// EDGEUNIT_BENCH_TRIALS the power cuts (default 20).
package realnode

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/test/e2e/testbed"
)

const (
	node     = "edge-1"
	pool     = "site"
	unit     = "site"
	pods     = 20
	appPort  = 8080
	waitLong = 5 * time.Minute
)

func durationEnv(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

func intEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// until waits for cond (testbed.Poll), failing the benchmark after timeout.
func until(b *testing.B, timeout time.Duration, what string, cond func() bool) {
	b.Helper()
	if err := testbed.Poll(context.Background(), timeout, func() (bool, error) { return cond(), nil }); err != nil {
		b.Fatalf("%s: %v", what, err)
	}
}

func appPod(i int) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%02d", i), Namespace: metav1.NamespaceDefault},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			AutomountServiceAccountToken:  new(false),
			TerminationGracePeriodSeconds: new(int64(1)),
			Containers: []corev1.Container{{
				Name: "app", Image: testbed.TestAppImage, ImagePullPolicy: corev1.PullNever,
				Args: []string{"serve", fmt.Sprintf("--listen=:%d", appPort)},
				Env:  []corev1.EnvVar{{Name: "POD_NAME", Value: fmt.Sprintf("app-%02d", i)}},
			}},
		},
	}
}

func BenchmarkRealNode(b *testing.B) {
	window := durationEnv("EDGEUNIT_BENCH_WINDOW", 2*time.Minute)
	trials := intEnv("EDGEUNIT_BENCH_TRIALS", 20)
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "edgeunit-bench-realnode-")
	if err != nil {
		b.Fatal(err)
	}
	tb, err := testbed.Start(ctx, testbed.Options{Dir: dir, Nodes: []testbed.NodeSpec{{Name: node, Pool: pool}}})
	if err != nil {
		b.Fatal(err)
	}
	tb.StopOnInterrupt()
	b.Cleanup(func() {
		if err := tb.Stop(); err != nil {
			b.Errorf("stopping the testbed (files kept in %s): %v", dir, err)
			return
		}
		_ = os.RemoveAll(dir)
	})
	c := tb.Cloud.Client
	n := tb.Node(node)
	// One pass whatever b.N is (make bench runs -benchtime 1x): the
	// objects it creates exist once per testbed.
	measure(ctx, b, tb, c, n, window, trials)
}

func measure(ctx context.Context, b *testing.B, tb *testbed.Testbed, c client.Client, n *testbed.Node, window time.Duration, trials int) {
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	must(c.Create(ctx, &edgev1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: pool},
		Spec: edgev1.NodePoolSpec{Type: edgev1.NodePoolEdge, Autonomy: &edgev1.AutonomySpec{Enabled: true}}}))
	for i := range pods {
		must(c.Create(ctx, appPod(i)))
	}
	allReady := func() bool {
		var list corev1.PodList
		if c.List(ctx, &list, client.InNamespace(metav1.NamespaceDefault)) != nil || len(list.Items) != pods {
			return false
		}
		for _, p := range list.Items {
			if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				return false
			}
		}
		return true
	}
	until(b, waitLong, "20 pods running, direct", allReady)

	b.Log("direct: the kubelet talks to kube-apiserver")
	readyDirect := kubeletReportsIn(ctx, b, c, n)
	bytesDirect := steadyBytes(b, n, window)

	b.Log("through the hub: an EdgeUnit installs it, `edge-hub convert` points the kubelet at it")
	// Stable pod IPs, so a pod comes back on its IP after a power cut.
	// Manual conversion: the benchmark switches the node itself, when it
	// has measured it direct.
	must(c.Create(ctx, &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: unit}, Spec: edgev1.EdgeUnitSpec{
		NodePools:       []string{pool},
		Hub:             edgev1.HubSpec{NodeConversion: edgev1.NodeConversionManual},
		NetworkAutonomy: edgev1.NetworkAutonomySpec{StablePodIPs: true, StableVTEPMAC: true, VTEPDevice: "flannel.1"},
	}}))
	until(b, waitLong, "hub installed", func() bool {
		_, err := n.HubURL()
		_, rerr := n.RSS("edge-hub")
		return err == nil && rerr == nil
	})
	must(n.PointAtHub())
	until(b, waitLong, "20 pods running through the hub", allReady)
	readyHub := kubeletReportsIn(ctx, b, c, n)
	bytesHub := steadyBytes(b, n, window)
	rss, err := n.RSS("edge-hub")
	must(err)

	until(b, waitLong, "the unit's bindings on the node (NetworkBound)", func() bool {
		var u edgev1.EdgeUnit
		return c.Get(ctx, client.ObjectKey{Name: unit}, &u) == nil && meta.IsStatusConditionTrue(u.Status.Conditions, edgev1.ConditionNetworkBound)
	})
	b.Logf("power cuts with the link cut, %d trials", trials)
	var first corev1.Pod
	must(c.Get(ctx, client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: "app-00"}, &first))
	ip := first.Status.PodIP
	must(n.CutLink())
	var backs []time.Duration
	for i := range trials {
		must(n.PowerCut())
		must(n.Boot(ctx))
		start := n.KubeletStarted()
		until(b, waitLong, fmt.Sprintf("trial %d: workload back", i), func() bool {
			out, err := n.Get(fmt.Sprintf("http://%s:%d/", ip, appPort), "")
			return err == nil && out == "testapp app-00\n"
		})
		backs = append(backs, time.Since(start))
		b.Logf("trial %2d: workload running again %.2f s after the kubelet started", i+1, time.Since(start).Seconds())
	}
	must(n.RestoreLink())

	slices.Sort(backs)
	ratio := float64(bytesHub) / float64(bytesDirect)
	b.ReportMetric(ratio, "link-bytes-hub/direct")
	b.ReportMetric(float64(bytesHub)/window.Minutes(), "link-bytes-hub/min")
	b.ReportMetric(float64(bytesDirect)/window.Minutes(), "link-bytes-direct/min")
	b.ReportMetric(readyHub.Seconds()/readyDirect.Seconds(), "kubelet-report-hub/direct")
	b.ReportMetric(float64(rss)/(1<<20), "hub-RSS-MiB")
	b.ReportMetric(backs[len(backs)/2].Seconds(), "powercut-p50-s")
	b.ReportMetric(backs[len(backs)-1].Seconds(), "powercut-max-s")
	b.Logf("link bytes in %s with %d pods: hub %d, direct %d: %.2fx (target <= 1.0x)", window, pods, bytesHub, bytesDirect, ratio)
	b.Logf("kubelet's first Lease renewal after a restart: hub %s, direct %s: %.2fx", readyHub, readyDirect, readyHub.Seconds()/readyDirect.Seconds())
	b.Logf("hub RSS with the kubelet and %d pods: %.1f MiB", pods, float64(rss)/(1<<20))
	b.Logf("power cut offline, workload back after the kubelet starts: min %.2f s, p50 %.2f s, max %.2f s over %d trials (target <= 3 s each; brief <= 10 s)",
		backs[0].Seconds(), backs[len(backs)/2].Seconds(), backs[len(backs)-1].Seconds(), len(backs))
}

// kubeletReportsIn restarts the kubelet and returns how long it takes to
// renew its Lease in kube-apiserver.
func kubeletReportsIn(ctx context.Context, b *testing.B, c client.Client, n *testbed.Node) time.Duration {
	b.Helper()
	if err := n.RestartKubelet(); err != nil {
		b.Fatal(err)
	}
	start := n.KubeletStarted()
	until(b, waitLong, "the kubelet renews its Lease", func() bool {
		var l coordinationv1.Lease
		err := c.Get(ctx, client.ObjectKey{Namespace: corev1.NamespaceNodeLease, Name: n.Name}, &l)
		return err == nil && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(start)
	})
	return time.Since(start)
}

// steadyBytes is what crosses the node's link in window, after a settling
// minute.
func steadyBytes(b *testing.B, n *testbed.Node, window time.Duration) uint64 {
	b.Helper()
	time.Sleep(time.Minute)
	before, err := n.LinkBytes()
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(window)
	after, err := n.LinkBytes()
	if err != nil {
		b.Fatal(err)
	}
	return after - before
}
