package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers"
	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/testenv"
)

// testBinDir holds the tunnel binaries every demo in these tests runs.
var testBinDir string

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, cleanup, err := TestBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	testBinDir = dir
	return m.Run()
}

// testOptions points the demo at the repository's binaries and config,
// with its kubeconfig in a test directory.
func testOptions(t *testing.T, out *bytes.Buffer) Options {
	t.Helper()
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		AssetsDir:     assets,
		BinDir:        testBinDir,
		KubeconfigOut: filepath.Join(t.TempDir(), "kubeconfig"),
		ReadyTimeout:  2 * time.Minute,
		Out:           out,
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestStart brings the demo up, checks the cluster through the printed
// kubeconfig, and checks that Stop leaves nothing behind.
func TestStart(t *testing.T) {
	ctx := testContext(t)
	var out bytes.Buffer
	d, err := Start(ctx, testOptions(t, &out))
	if err != nil {
		t.Fatalf("Start: %v\noutput:\n%s", err, out.String())
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = d.Stop()
		}
	})

	if want := "UnitDeployment default/line-dashboard: 1 of its 1 selected units have their instance (a Deployment)"; !strings.Contains(out.String(), want) {
		t.Errorf("Start's output lacks %q:\n%s", want, out.String())
	}
	var report bytes.Buffer
	if err := d.Report(ctx, &report); err != nil {
		t.Fatalf("Report: %v", err)
	}
	if d.Tunnel == nil || d.Tunnel.Server == nil || len(d.Tunnel.Agents) != 3 {
		t.Fatalf("Start ran tunnel %+v, want a server and 3 agents\noutput:\n%s", d.Tunnel, out.String())
	}
	victim := d.Tunnel.Agents[2]
	for _, want := range []string{
		"kubeconfig:  " + d.Kubeconfig, d.APIServerURL, "factory-a", "get np -o yaml",
		"factory-a-1  servers=1  lastSeen=",
		fmt.Sprintf("pid %d", d.Tunnel.Server.PID),
		fmt.Sprintf("kill -STOP %d", victim.Process.PID),
		"daemonset/edgeunit-hub-factory",
		"$ kubectl get ud -A",
		"UnitDeployment default/line-dashboard, revision ",
		": units selected 1, updated 1, ready 0.",
		"deployment/line-dashboard-factory: 4 replicas; nodeSelector edge.edgeunit.io/unit=factory; tolerates example.com/edge=factory-a:NoSchedule",
		"service/line-dashboard: ports 80/TCP; edge.edgeunit.io/topology=unit; trafficDistribution PreferSameZone (set by edgeunit-topology)",
		"Why no replica is ready: no kube-controller-manager runs in this cluster",
	} {
		if !strings.Contains(report.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, report.String())
		}
	}

	// The hints that read the cluster work as printed.
	if _, err := exec.LookPath("kubectl"); err == nil {
		ran := 0
		for _, line := range strings.Split(report.String(), "\n") {
			cmd := strings.TrimSpace(line)
			if !strings.HasPrefix(cmd, "kubectl --kubeconfig ") || !strings.Contains(cmd, " get ") {
				continue
			}
			cmd = strings.Replace(cmd, " -w ", " ", 1)
			kctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			out, err := exec.CommandContext(kctx, "sh", "-c", cmd).CombinedOutput()
			cancel()
			if err != nil {
				t.Errorf("hint %q fails: %v\n%s", cmd, err, out)
			}
			ran++
		}
		if ran < 5 {
			t.Errorf("ran %d kubectl get hints, want at least 5:\n%s", ran, report.String())
		}
	}

	// Without kubectl the same tables come from the client.
	d.opts.Kubectl = "edgeunit-no-such-kubectl"
	report.Reset()
	if err := d.Report(ctx, &report); err != nil {
		t.Fatalf("Report without kubectl: %v", err)
	}
	for _, re := range []string{
		`kubectl not found`,
		`nodepool\.edge\.edgeunit\.io/factory-a\s+Edge\s+True\s+3\s+3`,
		`node/factory-a-1\s+Ready\s+.*edge\.edgeunit\.io/pool-type=edge`,
		`edgeunit\.edge\.edgeunit\.io/factory\s+False\s+factory-a\s+3\s+False\s+True\n`,
		`tunnelendpoint\.edge\.edgeunit\.io/tunnel\s+False\s+0\s+3\s+ClusterIP`,
		`(?m)^factory-a-3  servers=1  lastSeen=`,
		`default\s+line-dashboard\s+False\s+1\s+0\s+1\s+0\n`,
		`default\s+deployment\.apps/line-dashboard-factory\s+0/4\s+0\s+0\s+factory\n`,
		`default\s+service/line-dashboard\s+ClusterIP\s+\S+\s+80/TCP\n`,
		`(?m)^  factory\s+3\s+deployment/line-dashboard-factory\s+4\s+0\s+0\s+[0-9a-f]{16}\s*$`,
	} {
		if !regexp.MustCompile(re).MatchString(report.String()) {
			t.Errorf("report without kubectl does not match %s:\n%s", re, report.String())
		}
	}

	// The kubeconfig file alone gives admin access.
	cfg, err := clientcmd.BuildConfigFromFlags("", d.Kubeconfig)
	if err != nil {
		t.Fatalf("loading the kubeconfig: %v", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: controllers.Scheme()})
	if err != nil {
		t.Fatal(err)
	}

	wantCounts := map[string]int32{"factory-a": 3, "cloud": 2}
	var pools edgev1.NodePoolList
	if err := c.List(ctx, &pools); err != nil {
		t.Fatalf("listing NodePools through the kubeconfig: %v", err)
	}
	if len(pools.Items) != len(wantCounts) {
		t.Errorf("got %d NodePools, want %d", len(pools.Items), len(wantCounts))
	}
	for _, p := range pools.Items {
		if !meta.IsStatusConditionTrue(p.Status.Conditions, edgev1.ConditionReady) {
			t.Errorf("NodePool %s is not Ready: %+v", p.Name, p.Status.Conditions)
		}
		if p.Status.NodeCount != wantCounts[p.Name] || p.Status.ReadyNodes != wantCounts[p.Name] {
			t.Errorf("NodePool %s: nodeCount %d, readyNodes %d, want %d", p.Name, p.Status.NodeCount, p.Status.ReadyNodes, wantCounts[p.Name])
		}
	}
	for _, kind := range []client.ObjectList{&edgev1.EdgeUnitList{}, &edgev1.TunnelEndpointList{}} {
		if err := c.List(ctx, kind); err != nil {
			t.Fatal(err)
		}
		if meta.LenList(kind) != 1 {
			t.Errorf("got %d %T items from the samples, want 1", meta.LenList(kind), kind)
		}
	}

	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != len(DefaultNodes) {
		t.Errorf("got %d nodes, want %d", len(nodes.Items), len(DefaultNodes))
	}
	for _, n := range nodes.Items {
		edge := n.Labels[edgev1.LabelNodePool] == "factory-a"
		if got := n.Labels["topology.kubernetes.io/region"]; n.Labels[edgev1.LabelNodePool] != "" && got != n.Labels[edgev1.LabelNodePool] {
			t.Errorf("node %s: region label %q, want the pool's %q", n.Name, got, n.Labels[edgev1.LabelNodePool])
		}
		if got := n.Labels[edgev1.LabelAutonomy] == "true"; got != edge {
			t.Errorf("node %s: autonomy label %v, want %v", n.Name, got, edge)
		}
		if got := hasTaint(n, "example.com/edge"); got != edge {
			t.Errorf("node %s: edge taint %v, want %v", n.Name, got, edge)
		}
		if hasTaint(n, corev1.TaintNodeNotReady) {
			t.Errorf("node %s still has the not-ready taint", n.Name)
		}
		if len(n.Status.Addresses) == 0 || !net.ParseIP(n.Status.Addresses[0].Address).IsLoopback() {
			t.Errorf("node %s: addresses %v, want a loopback InternalIP", n.Name, n.Status.Addresses)
		}
	}

	assertUnitDeployment(ctx, t, c)

	// Network autonomy: every factory-a node has a VTEP binding, and the
	// simulated pods' IPs are recorded under their nodes.
	unit := &edgev1.EdgeUnit{}
	if err := c.Get(ctx, client.ObjectKey{Name: "factory"}, unit); err != nil {
		t.Fatal(err)
	}
	podIPs := map[string]string{}
	for _, b := range unit.Status.Bindings {
		if b.VTEPMAC == "" || b.VTEPIP == "" {
			t.Errorf("node %s: VTEP binding %q/%q incomplete", b.Node, b.VTEPMAC, b.VTEPIP)
		}
		for _, p := range b.Pods {
			podIPs[b.Node+" "+p.Pod] = p.IP
		}
	}
	if len(unit.Status.Bindings) != 3 {
		t.Errorf("bindings for %d nodes, want the 3 factory-a nodes: %+v", len(unit.Status.Bindings), unit.Status.Bindings)
	}
	for _, p := range DefaultPods {
		if got := podIPs[p.Node+" default/"+p.Name]; got != p.IP {
			t.Errorf("pod %s on %s bound to %q, want %s", p.Name, p.Node, got, p.IP)
		}
	}

	// The tunnel runs for real: the server reports the agents it has, and
	// the EdgeUnit controller turns that into TunnelConnected.
	assertTunnel(ctx, t, c, []string{"factory-a-1", "factory-a-2", "factory-a-3"}, metav1.ConditionTrue)
	assertAgentCSRs(ctx, t, c, []string{"factory-a-1", "factory-a-2", "factory-a-3"})
	// ...so an agent that goes away shows: the server drops it, and the
	// unit is no longer TunnelConnected.
	if err := syscall.Kill(victim.Process.PID, syscall.SIGTERM); err != nil {
		t.Fatalf("stopping %s: %v", victim.Process.Name, err)
	}
	assertTunnel(ctx, t, c, []string{"factory-a-1", "factory-a-2"}, metav1.ConditionFalse)

	// The NodePool webhook is live: a key the CRD schema accepts but no
	// node would is refused by it.
	bad := &edgev1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: "bad"},
		Spec:       edgev1.NodePoolSpec{Labels: map[string]string{"bad key": "x"}},
	}
	err = c.Create(ctx, bad)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.labels[bad key]") {
		t.Errorf("creating a NodePool with an invalid label key: got %v, want the webhook's Invalid error", err)
	}

	stopped = true
	if err := d.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	assertStopped(t, d)
}

// assertUnitDeployment checks what the samples' UnitDeployment made: one
// instance for the one unit it selects, pinned to that unit's nodes,
// tolerating its pool's taint, with the override's 4 replicas, at the
// status's revision; the unit-local Service; and a status that says the
// truth of this cluster: the instance exists and nothing of it is ready.
func assertUnitDeployment(ctx context.Context, t *testing.T, c client.Client) {
	t.Helper()
	ud := &edgev1.UnitDeployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "line-dashboard"}, ud); err != nil {
		t.Fatalf("getting the samples' UnitDeployment: %v", err)
	}
	st := ud.Status
	if st.ObservedGeneration != ud.Generation || st.UpdateRevision == "" || st.Units != 1 || st.UpdatedUnits != 1 || st.ReadyUnits != 0 || st.Replicas != 4 || st.ReadyReplicas != 0 {
		t.Errorf("UnitDeployment status %+v, want generation %d observed, 1 unit updated, none ready, 4 replicas", st, ud.Generation)
	}
	wantInstances := []edgev1.UnitInstanceStatus{{Unit: "factory", Nodes: 3, Replicas: 4, Revision: st.UpdateRevision}}
	if !slices.Equal(st.Instances, wantInstances) {
		t.Errorf("instances %+v, want %+v", st.Instances, wantInstances)
	}
	if c := meta.FindStatusCondition(st.Conditions, edgev1.ConditionReady); c == nil || c.Status != metav1.ConditionFalse || c.Reason != edgev1.ReasonUnavailable {
		t.Errorf("Ready %+v, want False with reason %s: no Deployment controller runs here", c, edgev1.ReasonUnavailable)
	}

	var deps appsv1.DeploymentList
	if err := c.List(ctx, &deps, client.MatchingLabels{edgev1.LabelUnitDeployment: ud.Name}); err != nil {
		t.Fatal(err)
	}
	if len(deps.Items) != 1 {
		t.Fatalf("got %d instances, want one for unit factory", len(deps.Items))
	}
	d := deps.Items[0]
	pod := d.Spec.Template.Spec
	switch {
	case d.Name != "line-dashboard-factory" || d.Namespace != "default" || !metav1.IsControlledBy(&d, ud):
		t.Errorf("instance %s/%s (owners %+v), want default/line-dashboard-factory controlled by the UnitDeployment", d.Namespace, d.Name, d.OwnerReferences)
	case d.Spec.Replicas == nil || *d.Spec.Replicas != 4:
		t.Errorf("instance replicas %v, want the override's 4", d.Spec.Replicas)
	case d.Annotations[edgev1.AnnotationRevision] != st.UpdateRevision:
		t.Errorf("instance revision %q, want %q", d.Annotations[edgev1.AnnotationRevision], st.UpdateRevision)
	case pod.NodeSelector[edgev1.LabelUnit] != "factory" || d.Spec.Selector.MatchLabels[edgev1.LabelUnit] != "factory":
		t.Errorf("instance nodeSelector %v, selector %v: want both on unit factory", pod.NodeSelector, d.Spec.Selector)
	case !slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Key == "example.com/edge" && tol.Value == "factory-a" && tol.Effect == corev1.TaintEffectNoSchedule
	}):
		t.Errorf("instance tolerations %+v lack the factory-a pool's taint", pod.Tolerations)
	}

	svc := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: ud.Name}, svc); err != nil {
		t.Fatalf("getting the UnitDeployment's Service: %v", err)
	}
	if svc.Annotations[edgev1.AnnotationTopology] != "unit" || svc.Spec.Selector[edgev1.LabelUnitDeployment] != ud.Name || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 {
		t.Errorf("Service annotations %v, selector %v, ports %+v: want unit topology, the instances' pods, port 80", svc.Annotations, svc.Spec.Selector, svc.Spec.Ports)
	}
}

// assertTunnel waits (bounded) until the TunnelEndpoint lists exactly the
// agents of nodes and EdgeUnit factory's TunnelConnected is want.
func assertTunnel(ctx context.Context, t *testing.T, c client.Client, nodes []string, want metav1.ConditionStatus) {
	t.Helper()
	var te edgev1.TunnelEndpoint
	var unit edgev1.EdgeUnit
	var got []string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Name: "tunnel"}, &te); err != nil {
			return false, err
		}
		if err := c.Get(ctx, client.ObjectKey{Name: "factory"}, &unit); err != nil {
			return false, err
		}
		got = got[:0]
		for _, a := range te.Status.Agents {
			got = append(got, a.Node)
		}
		slices.Sort(got)
		cond := meta.FindStatusCondition(unit.Status.Conditions, edgev1.ConditionTunnelConnected)
		return slices.Equal(got, nodes) && te.Status.ConnectedAgents == int32(len(nodes)) && cond != nil && cond.Status == want, nil
	})
	if err != nil {
		t.Fatalf("want agents %v listed, connectedAgents=%d and TunnelConnected=%s: %v\nTunnelEndpoint status: agents %v, connectedAgents %d\nEdgeUnit conditions: %+v",
			nodes, len(nodes), want, err, got, te.Status.ConnectedAgents, unit.Status.Conditions)
	}
}

// assertAgentCSRs checks that each node's agent identity came from a CSR
// the node itself made and the manager approved and signed.
func assertAgentCSRs(ctx context.Context, t *testing.T, c client.Client, nodes []string) {
	t.Helper()
	var csrs certificatesv1.CertificateSigningRequestList
	if err := c.List(ctx, &csrs); err != nil {
		t.Fatal(err)
	}
	issued := map[string]bool{}
	for _, r := range csrs.Items {
		approved := false
		for _, cond := range r.Status.Conditions {
			approved = approved || cond.Type == certificatesv1.CertificateApproved
		}
		if r.Spec.SignerName == certs.SignerTunnelAgent && approved && len(r.Status.Certificate) > 0 {
			issued[strings.TrimPrefix(r.Spec.Username, "system:node:")] = true
		}
	}
	for _, n := range nodes {
		if !issued[n] {
			t.Errorf("no approved and issued %s CSR requested by system:node:%s (CSRs: %d)", certs.SignerTunnelAgent, n, len(csrs.Items))
		}
	}
}

// TestStartFailsHalfway makes the samples fail after the control plane and
// the manager are up, and checks that Start stops them again.
func TestStartFailsHalfway(t *testing.T) {
	ctx := testContext(t)
	samples := t.TempDir()
	// Accepted by the CRD schema, refused by the webhook.
	pool := "apiVersion: edge.edgeunit.io/v1alpha1\nkind: NodePool\nmetadata:\n  name: broken\nspec:\n  labels:\n    \"bad key\": x\n"
	if err := os.WriteFile(filepath.Join(samples, "pool.yaml"), []byte(pool), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	o := testOptions(t, &out)
	o.SamplesDir = samples
	d, err := Start(ctx, o)
	if err == nil {
		_ = d.Stop()
		t.Fatal("Start succeeded with a sample the webhook refuses")
	}
	if !strings.Contains(err.Error(), "pool.yaml#1") || !strings.Contains(err.Error(), "bad key") {
		t.Errorf("error %q does not name the sample and the invalid key", err)
	}
	if d == nil || d.APIServerURL == "" {
		t.Fatalf("Start failed before the control plane was up: %v", err)
	}
	assertStopped(t, d)
}

func TestCompleteErrors(t *testing.T) {
	tests := map[string]struct {
		opts Options
		want string
	}{
		"missing binaries": {
			opts: Options{AssetsDir: t.TempDir()},
			want: "run `make envtest`",
		},
		"not a config dir": {
			opts: Options{AssetsDir: fakeAssets(t), ConfigDir: t.TempDir()},
			want: "does not look like edgeunit's config directory",
		},
		"negative timeout": {
			opts: Options{ReadyTimeout: -time.Second},
			want: "--ready-timeout must not be negative",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.opts.Complete()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Complete() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func fakeAssets(t *testing.T) string {
	dir := t.TempDir()
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if err := os.WriteFile(filepath.Join(dir, bin), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// assertStopped checks that nothing the demo started is left: no process
// using its working directory, no listener on the apiserver's or etcd's
// port, no working directory, webhook certificates or kubeconfig.
func assertStopped(t *testing.T, d *Demo) {
	t.Helper()
	if pids := processesUsing(t, d.WorkDir); len(pids) > 0 {
		t.Errorf("processes still use %s: %v", d.WorkDir, pids)
	}
	// The processes are checked, not their ports: once free, a port may
	// be anyone's.
	for _, p := range d.procs.all() {
		if testenv.Running(p.PID, strings.Fields(p.Name)[0]) {
			t.Errorf("%s (pid %d) is still there", p.Name, p.PID)
		}
	}
	paths := []string{d.WorkDir, d.Kubeconfig}
	if d.env != nil && d.env.WebhookInstallOptions.LocalServingCertDir != "" {
		paths = append(paths, d.env.WebhookInstallOptions.LocalServingCertDir)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left behind (stat: %v)", p, err)
		}
	}
}

// processesUsing lists the processes whose command line mentions dir; the
// demo's kube-apiserver and etcd keep their files there.
func processesUsing(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var pids []string
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if bytes.Contains(cmdline, []byte(dir)) {
			pids = append(pids, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return pids
}

func hasTaint(n corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}
