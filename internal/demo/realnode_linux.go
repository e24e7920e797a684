//go:build linux

package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers"
	"github.com/edgeunit/edgeunit/controllers/tunnelendpoint"
	"github.com/edgeunit/edgeunit/internal/conversion"
	"github.com/edgeunit/edgeunit/test/e2e/testbed"
)

// The real node, its workload and the waits of its start.
const (
	realNodeName    = "real-edge-1"
	realNodeStandIn = "cloud-stand-in"
	realNodeApp     = "testapp"
	realNodeAppPort = 8080
	// realNodeGrace is kube-controller-manager's
	// --node-monitor-grace-period: a cut link shows within it.
	realNodeGrace       = 20 * time.Second
	realNodeStepTimeout = 3 * time.Minute
	realNodeLogsTimeout = time.Minute
	// realNodeBackTimeout bounds the wait for the workload after a boot.
	realNodeBackTimeout = 2 * time.Minute
	// defaultTolerationSeconds is kube-apiserver's default
	// not-ready/unreachable tolerationSeconds, which the testbed keeps.
	defaultTolerationSeconds = 300
)

// realNode is the running real edge node and its cluster.
type realNode struct {
	o    RealNodeOptions
	plan realNodePlan
	// dir holds the testbed's files: the node's disk, certificates, logs.
	dir  string
	tb   *testbed.Testbed
	node *testbed.Node
	// podIP is the test app's pod IP, which a power cycle keeps.
	podIP string
	// kubeconfig is what was written to o.KubeconfigOut.
	kubeconfig []byte
	// tolerationSeconds is how long the test app tolerates an unreachable
	// node (nil: forever), hasToleration whether it does at all.
	tolerationSeconds *int64
	hasToleration     bool
}

// startRealNode runs the testbed with one node in a pool of the samples'
// unit, applies the samples, starts the tunnel-server and a test app on
// the node, waits until the unit's hub installer has converted the node
// and the unit is Ready, and prints what a user should look at.
func startRealNode(ctx context.Context, o RealNodeOptions, out *realNodeService) (_ *realNode, err error) {
	start := time.Now()
	if err := testbed.Preflight(); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &skipError{reason: testbedBusy}
		}
		return nil, &skipError{reason: err.Error()}
	}
	samples, err := loadSamples(o.SamplesDir, controllers.Scheme())
	if err != nil {
		return nil, fmt.Errorf("loading samples from %s: %w", o.SamplesDir, err)
	}
	plan, err := planRealNode(samples, testbed.CloudIP, testbed.TunnelAgentPort)
	if err != nil {
		return nil, &skipError{reason: fmt.Sprintf("%s: %v", o.SamplesDir, err)}
	}
	// The name matches a testbed directory's, so that the next testbed
	// (a demo's or `make e2e`) removes what a killed demo left mounted.
	dir, err := os.MkdirTemp("", "edgeunit-e2e-demo-")
	if err != nil {
		return nil, err
	}
	r := &realNode{o: o, plan: plan, dir: dir}
	out.printf("Real edge node: starting its cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the manager)\n"+
		"  and booting node %s (containerd, runc, a kubelet) in namespaces of its own; files in %s", realNodeName, dir)
	r.tb, err = testbed.Start(ctx, testbed.Options{
		Dir:                    dir,
		Nodes:                  []testbed.NodeSpec{{Name: realNodeName, Pool: plan.pool}},
		NodeMonitorGracePeriod: realNodeGrace,
	})
	if err != nil {
		switch {
		case errors.Is(err, syscall.EWOULDBLOCK):
			_ = os.RemoveAll(dir)
			return nil, &skipError{reason: testbedBusy}
		case ctx.Err() != nil:
			// Interrupted: nothing to look at. A mount the stop left
			// makes this fail on it rather than go through it.
			_ = os.RemoveAll(dir)
			return nil, err
		}
		return nil, fmt.Errorf("starting the real node's cluster (its files and logs are kept in %s): %w", dir, err)
	}
	defer func() {
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			err = errors.Join(err, r.stop(false))
			return
		}
		err = errors.Join(fmt.Errorf("%w (the real node's files and logs are kept in %s)", err, dir), r.stop(true))
	}()
	r.node = r.tb.Node(realNodeName)
	out.printf("Real edge node: cluster up and node %s booted after %s", realNodeName, since(start))

	c := r.tb.Cloud.Client
	standIn := map[string]string{corev1.LabelTopologyZone: "cloud"}
	if plan.cloudPool != "" {
		standIn[edgev1.LabelNodePool] = plan.cloudPool
	}
	if err := r.tb.Cloud.StartStandInNode(ctx, realNodeStandIn, standIn); err != nil {
		return nil, err
	}
	if err := applySamples(ctx, c, plan.objects, applyTimeout); err != nil {
		return nil, err
	}
	applied := fmt.Sprintf("Real edge node: applied %d objects from %s", len(plan.objects), o.SamplesDir)
	if len(plan.changes) > 0 {
		applied += ", changed for this cluster: " + strings.Join(plan.changes, "; ")
	}
	out.print(applied)
	if err := r.tb.Cloud.StartTunnelServer(ctx, plan.endpoint, tunnelendpoint.SecretName(plan.endpoint)); err != nil {
		return nil, fmt.Errorf("starting the tunnel-server: %w", err)
	}
	out.printf("Real edge node: tunnel-server for TunnelEndpoint %s up: agents dial %s:%d, kube-apiserver's egress comes in on %s",
		plan.endpoint, testbed.CloudIP, testbed.TunnelAgentPort, r.tb.Cloud.ConnectSocket)

	if err := c.Create(ctx, r.appPod()); err != nil {
		return nil, fmt.Errorf("creating pod %s: %w", realNodeApp, err)
	}
	if err := r.wait(ctx, "pod default/"+realNodeApp+" to be Ready", realNodeStepTimeout, r.podReady); err != nil {
		return nil, err
	}
	out.printf("Real edge node: pod default/%s Ready on %s with IP %s, %s after the start", realNodeApp, realNodeName, r.podIP, since(start))

	// The conversion restarts the kubelet, which reports the hub's
	// static pod anew: its readiness is checked after.
	if err := r.wait(ctx, "the hub installer to convert "+realNodeName, realNodeStepTimeout, r.converted); err != nil {
		return nil, err
	}
	if err := r.wait(ctx, "the hub installer's pod and the hub's static pod to be Ready on "+realNodeName, realNodeStepTimeout, r.hubRunning); err != nil {
		return nil, err
	}
	out.printf("Real edge node: the hub runs and the hub installer converted %s (its kubelet talks to the cloud through the hub), %s after the start", realNodeName, since(start))
	if err := r.wait(ctx, "EdgeUnit "+plan.unit+" to be HubReady, TunnelConnected and Ready", realNodeStepTimeout, r.unitReady); err != nil {
		return nil, err
	}
	if err := r.writeKubeconfig(); err != nil {
		return nil, err
	}
	var logs string
	if err := r.wait(ctx, "kubectl logs "+realNodeApp+" to answer through the tunnel", realNodeLogsTimeout, func(ctx context.Context) (bool, string, error) {
		var err error
		logs, err = r.kubectl(ctx, "logs", realNodeApp)
		if err != nil {
			return false, err.Error(), nil
		}
		return strings.Contains(logs, "testapp serving pod="+realNodeApp), "logs: " + logs, nil
	}); err != nil {
		return nil, err
	}
	// The autonomy controller adds the pool's toleration after the pod is
	// bound: wait a little for it, then say what the pod has.
	_ = r.wait(ctx, "pod "+realNodeApp+" to tolerate an unreachable node for its pool's autonomy", 30*time.Second, r.autonomyToleration)
	summary, err := r.summary(ctx, logs, time.Since(start))
	if err != nil {
		return nil, err
	}
	out.print(summary)
	return r, nil
}

// testbedBusy says why a real node cannot start while another testbed runs.
const testbedBusy = "another real-node testbed runs on this machine (`make e2e`, a benchmark or another demo), and only one can at a time"

func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }

// appPod is the workload of the real node: the testbed's test app, pinned
// to the node, tolerating its pool's taints.
func (r *realNode) appPod() *corev1.Pod {
	var tolerations []corev1.Toleration
	for _, t := range r.plan.taints {
		tolerations = append(tolerations, corev1.Toleration{Key: t.Key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffect(t.Effect)})
	}
	return testbed.TestAppPod(realNodeApp, map[string]string{"app": realNodeApp}, realNodeName, realNodeAppPort, tolerations)
}

// wait polls cond (done, what it saw) until done, failing with the last
// thing it saw and the pods of the cluster.
func (r *realNode) wait(ctx context.Context, what string, timeout time.Duration, cond func(context.Context) (bool, string, error)) error {
	var last string
	err := testbed.Poll(ctx, timeout, func() (bool, error) {
		ok, saw, err := cond(ctx)
		last = saw
		return ok, err
	})
	if err == nil {
		return nil
	}
	pods, _ := r.kubectl(context.WithoutCancel(ctx), "get", "pods", "-A", "-o", "wide")
	return fmt.Errorf("waiting for %s: %w; last seen: %s\n$ kubectl get pods -A -o wide\n%s", what, err, last, pods)
}

func (r *realNode) getPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	var p corev1.Pod
	err := r.tb.Cloud.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &p)
	return &p, err
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (r *realNode) podReady(ctx context.Context) (bool, string, error) {
	p, err := r.getPod(ctx, metav1.NamespaceDefault, realNodeApp)
	if err != nil {
		return false, err.Error(), nil
	}
	r.podIP = p.Status.PodIP
	return podIsReady(p) && p.Status.PodIP != "" && p.Spec.NodeName == realNodeName,
		fmt.Sprintf("pod %s: phase %s, node %q, IP %q, ready %t", p.Name, p.Status.Phase, p.Spec.NodeName, p.Status.PodIP, podIsReady(p)), nil
}

// hubRunning: the installer DaemonSet's pod and the hub's mirror pod are
// Ready on the node.
func (r *realNode) hubRunning(ctx context.Context) (bool, string, error) {
	find := func(ns, app string) (*corev1.Pod, error) {
		var pods corev1.PodList
		if err := r.tb.Cloud.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/name": app}); err != nil {
			return nil, err
		}
		for i := range pods.Items {
			if pods.Items[i].Spec.NodeName == realNodeName {
				return &pods.Items[i], nil
			}
		}
		return nil, nil
	}
	inst, err := find(testbed.ManagerNamespace, "edge-hub-installer")
	if err != nil || inst == nil {
		return false, fmt.Sprintf("no installer pod on the node yet (%v)", err), nil
	}
	hub, err := find(metav1.NamespaceSystem, "edge-hub")
	if err != nil || hub == nil {
		return false, fmt.Sprintf("installer pod %s ready %t; no hub mirror pod yet (%v)", inst.Name, podIsReady(inst), err), nil
	}
	return podIsReady(inst) && podIsReady(hub),
		fmt.Sprintf("installer pod %s ready %t; hub pod %s %s, ready %t", inst.Name, podIsReady(inst), hub.Name, hub.Status.Phase, podIsReady(hub)), nil
}

// converted: the Node reports Converted and the kubelet's kubeconfig on
// the node names the hub's listener.
func (r *realNode) converted(ctx context.Context) (bool, string, error) {
	var n corev1.Node
	if err := r.tb.Cloud.Client.Get(ctx, client.ObjectKey{Name: realNodeName}, &n); err != nil {
		return false, err.Error(), nil
	}
	phase := n.Annotations[edgev1.AnnotationConversion]
	if edgev1.ConversionPhase(phase) != edgev1.ConversionConverted {
		return false, fmt.Sprintf("conversion %q: %s", phase, n.Annotations[edgev1.AnnotationConversionMessage]), nil
	}
	hub, server, err := r.kubeletServer()
	if err != nil {
		return false, err.Error(), nil
	}
	return server == hub, fmt.Sprintf("the kubelet's kubeconfig names %s, the hub listens on %s", server, hub), nil
}

// kubeletServer is the hub's listener and the server the kubelet's
// kubeconfig names, read from the node's disk.
func (r *realNode) kubeletServer() (hub, server string, err error) {
	if hub, err = r.node.HubURL(); err != nil {
		return "", "", err
	}
	b, err := r.node.ReadFile(testbed.KubeletKubeconfig)
	if err != nil {
		return "", "", err
	}
	kc, err := clientcmd.Load(b)
	if err != nil {
		return "", "", err
	}
	if c := kc.Contexts[kc.CurrentContext]; c != nil && kc.Clusters[c.Cluster] != nil {
		return hub, kc.Clusters[c.Cluster].Server, nil
	}
	return "", "", fmt.Errorf("%s names no cluster", testbed.KubeletKubeconfig)
}

func (r *realNode) unitReady(ctx context.Context) (bool, string, error) {
	var u edgev1.EdgeUnit
	if err := r.tb.Cloud.Client.Get(ctx, client.ObjectKey{Name: r.plan.unit}, &u); err != nil {
		return false, err.Error(), nil
	}
	var saw []string
	ok := true
	for _, t := range []string{edgev1.ConditionHubReady, edgev1.ConditionTunnelConnected, edgev1.ConditionReady} {
		s := condStatusOf(u.Status.Conditions, t)
		ok = ok && s == string(metav1.ConditionTrue)
		saw = append(saw, t+"="+s)
	}
	return ok, strings.Join(saw, " "), nil
}

// autonomyToleration records the test app's toleration of an unreachable
// node, done once it is longer than the default.
func (r *realNode) autonomyToleration(ctx context.Context) (bool, string, error) {
	p, err := r.getPod(ctx, metav1.NamespaceDefault, realNodeApp)
	if err != nil {
		return false, err.Error(), nil
	}
	r.hasToleration, r.tolerationSeconds = false, nil
	for _, t := range p.Spec.Tolerations {
		if t.Key == corev1.TaintNodeUnreachable && t.Effect == corev1.TaintEffectNoExecute {
			r.hasToleration, r.tolerationSeconds = true, t.TolerationSeconds
		}
	}
	longer := r.hasToleration && (r.tolerationSeconds == nil || *r.tolerationSeconds > defaultTolerationSeconds)
	return longer, fmt.Sprintf("tolerations %v", p.Spec.Tolerations), nil
}

// writeKubeconfig gives the user the admin kubeconfig of the real node's
// cluster, next to the demo's.
func (r *realNode) writeKubeconfig() error {
	raw, err := os.ReadFile(r.tb.Cloud.Kubeconfig)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.o.KubeconfigOut), 0o700); err != nil {
		return err
	}
	tmp := r.o.KubeconfigOut + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, r.o.KubeconfigOut); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	r.kubeconfig = raw
	return nil
}

// kubectl runs kubectl against the real node's cluster and returns its
// standard output.
func (r *realNode) kubectl(ctx context.Context, args ...string) (string, error) {
	kubectl := r.o.Kubectl
	if kubectl == "" {
		kubectl = "kubectl"
	}
	return kubectlOutput(ctx, kubectl, r.tb.Cloud.Kubeconfig, filepath.Join(r.dir, "kubectl-cache"), args...)
}

// summary is what the user sees once the node is up: where the cluster
// is, what runs on the node, and what to try.
func (r *realNode) summary(ctx context.Context, logs string, took time.Duration) (string, error) {
	n := r.node
	var b strings.Builder
	fmt.Fprintf(&b, "\nThe real edge node is ready, %s after the demo started it. It runs in a cluster of its own, next to the\n"+
		"simulated one: a real node needs what that cluster does not run (kube-controller-manager, kube-scheduler,\n"+
		"the Node authorizer, and the tunnel as kube-apiserver's egress).\n\n", took.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "  API server:  %s\n", strings.TrimSuffix(r.tb.Cloud.APIServerURL, "/"))
	fmt.Fprintf(&b, "  kubeconfig:  %s\n", r.o.KubeconfigOut)
	fmt.Fprintf(&b, "  node:        %s at %s: containerd, runc and a kubelet in network namespace %s, with a mount\n"+
		"               namespace and cgroups of their own; its link to the cloud is %s on this machine\n", n.Name, n.IP, n.NetNS(), n.LinkDevice())
	fmt.Fprintf(&b, "  stand-in:    %s, a Node that heartbeats and runs nothing, so that kube-controller-manager sees a\n"+
		"               healthy zone when the edge link is cut (as a cluster with cloud nodes would)\n", realNodeStandIn)
	fmt.Fprintf(&b, "  logs:        %s\n\n", r.tb.LogDir)
	k := "kubectl --kubeconfig " + r.o.KubeconfigOut
	for _, args := range [][]string{
		{"get", "nodes", "-o", "wide"},
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "edgeunits,tunnelendpoints", "-o", "wide"},
	} {
		got, err := r.kubectl(ctx, args...)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "$ kubectl %s\n%s\n", strings.Join(args, " "), strings.TrimRight(got, "\n"))
	}
	if err := r.explainPending(ctx, &b); err != nil {
		return "", err
	}
	hub, _, err := r.kubeletServer()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "\nThe product converted node %s: the hub installer's pod pointed its kubelet at the hub\n"+
		"(%s on the node names %s; the original is kept in\n%s/%s), and the Node reports %s.\n\n",
		n.Name, testbed.KubeletKubeconfig, hub, conversion.DefaultStateDir, conversion.OriginalFile, edgev1.ConversionConverted)
	fmt.Fprintf(&b, "$ kubectl logs %s\n%s\n", realNodeApp, strings.TrimRight(logs, "\n"))
	fmt.Fprintf(&b, "(kube-apiserver reaches kubelets only through its egress selector, the tunnel-server's CONNECT\n"+
		"socket; EdgeUnit %s is TunnelConnected)\n\n", r.plan.unit)

	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	powerCycle := exe + " real-node power-cycle"
	if r.o.Socket != DefaultRealNodeSocket() {
		powerCycle += " --socket " + r.o.Socket
	}
	stays := fmt.Sprintf("pod %s has no toleration of an unreachable node: it is evicted %ds after the taint", realNodeApp, defaultTolerationSeconds)
	switch {
	case r.hasToleration && r.tolerationSeconds == nil:
		stays = fmt.Sprintf("pod %s stays: it tolerates that for ever", realNodeApp)
	case r.hasToleration:
		stays = fmt.Sprintf("pod %s stays: it tolerates that for %ds", realNodeApp, *r.tolerationSeconds)
		if *r.tolerationSeconds > defaultTolerationSeconds {
			stays += fmt.Sprintf(" (the autonomy of pool %s)", r.plan.pool)
		}
	}
	url := fmt.Sprintf("http://%s:%d/", r.podIP, realNodeAppPort)
	fmt.Fprintf(&b, "Try the real node (as root, in another terminal, while the demo runs):\n")
	fmt.Fprintf(&b, "  # Watch the node and its pods (a terminal each)\n")
	fmt.Fprintf(&b, "  %s get nodes -w\n", k)
	fmt.Fprintf(&b, "  %s get pods -o wide -w\n", k)
	fmt.Fprintf(&b, "  # Cut the node's link to the cloud (the cloud end of its veth goes down): kubectl logs no longer\n"+
		"  # reaches it, and after kube-controller-manager's grace period (%s here) the node turns NotReady\n"+
		"  # and is tainted unreachable; %s\n", realNodeGrace, stays)
	fmt.Fprintf(&b, "  ip link set %s down\n", n.LinkDevice())
	fmt.Fprintf(&b, "  # The workload still answers, from inside the node\n")
	fmt.Fprintf(&b, "  ip netns exec %s %s get %s\n", n.NetNS(), r.tb.TestAppBinary(), url)
	fmt.Fprintf(&b, "  # Power-cycle the node, the link still cut: everything on it is killed, /run and the containers'\n"+
		"  # cgroups go; then containerd and the kubelet boot, and the kubelet runs the pod again from what\n"+
		"  # the hub cached, on the same IP (it prints how long that took)\n")
	fmt.Fprintf(&b, "  %s\n", powerCycle)
	fmt.Fprintf(&b, "  ip netns exec %s %s get %s\n", n.NetNS(), r.tb.TestAppBinary(), url)
	fmt.Fprintf(&b, "  # Mend the link: the node turns Ready again, and kubectl reaches the pod again\n")
	fmt.Fprintf(&b, "  ip link set %s up\n", n.LinkDevice())
	fmt.Fprintf(&b, "  %s logs %s\n", k, realNodeApp)
	fmt.Fprintf(&b, "  %s exec %s -- /testapp echo hello from %s\n", k, realNodeApp, n.Name)
	return b.String(), nil
}

// explainPending says why pods are Pending, in the scheduler's words; the
// TunnelEndpoint's Deployment finds no node here, and the tunnel-server
// runs as a process on this machine instead.
func (r *realNode) explainPending(ctx context.Context, w io.Writer) error {
	var pods corev1.PodList
	if err := r.tb.Cloud.Client.List(ctx, &pods); err != nil {
		return err
	}
	var lines []string
	serverPending := false
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodPending || p.Spec.NodeName != "" {
			continue
		}
		why := "not scheduled yet"
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Message != "" {
				why = c.Message
			}
		}
		lines = append(lines, fmt.Sprintf("Pod %s/%s is Pending: %s", p.Namespace, p.Name, why))
		serverPending = serverPending || p.Labels[tunnelendpoint.LabelTunnelEndpoint] == r.plan.endpoint
	}
	if serverPending {
		var te edgev1.TunnelEndpoint
		if err := r.tb.Cloud.Client.Get(ctx, client.ObjectKey{Name: r.plan.endpoint}, &te); err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("The tunnel-server runs as a process on this machine instead of the TunnelEndpoint's Deployment (pid %d),\n"+
			"so TunnelEndpoint %s counts its ready servers as %d, and its connected agents as %d.", r.tb.Cloud.TunnelServer.PID(), te.Name, te.Status.ReadyServers, te.Status.ConnectedAgents))
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(lines, "\n"))
	}
	return nil
}

// PowerCycle cuts the node's power and boots it again, and waits until the
// test app answers on its pod IP from inside the node.
func (r *realNode) PowerCycle(ctx context.Context, progress func(string)) error {
	n := r.node
	linkState := func() (string, error) {
		up, err := n.LinkUp()
		if err != nil {
			return "", err
		}
		if up {
			return "up", nil
		}
		return "cut", nil
	}
	before, err := linkState()
	if err != nil {
		return err
	}
	url := fmt.Sprintf("http://%s:%d/", r.podIP, realNodeAppPort)
	want := fmt.Sprintf("testapp %s\n", realNodeApp)
	cut := time.Now()
	if err := n.PowerCut(); err != nil {
		return fmt.Errorf("cutting the power of %s: %w", n.Name, err)
	}
	progress(fmt.Sprintf("Power cut on %s (its link to the cloud is %s): the kubelet, containerd, the shims and the containers\n"+
		"were killed, /run emptied and the dead containers' cgroups removed, as a reboot leaves them (%s)", n.Name, before, since(cut)))
	if got, err := n.Get(url, ""); err == nil {
		return fmt.Errorf("%s still answers after the power cut: %q", url, got)
	}
	progress(fmt.Sprintf("Nothing answers on %s now", url))
	if err := n.Boot(ctx); err != nil {
		return fmt.Errorf("booting %s: %w", n.Name, err)
	}
	started := n.KubeletStarted()
	progress(fmt.Sprintf("Booted: containerd and the kubelet started, %s after the cut", started.Sub(cut).Round(100*time.Millisecond)))
	if err := testbed.Poll(ctx, realNodeBackTimeout, func() (bool, error) {
		got, err := n.Get(url, "")
		return err == nil && got == want, nil
	}); err != nil {
		return fmt.Errorf("%s does not answer on %s after the boot: %w%s", realNodeApp, url, err, n.LogTail("kubelet", 20))
	}
	back := time.Since(started)
	after, err := linkState()
	if err != nil {
		return err
	}
	from := ""
	if before == "cut" && after == "cut" {
		from = ", with the cloud unreachable all along: the kubelet read its pod from the hub's cache"
	}
	progress(fmt.Sprintf("%s answers on its pod IP %s again, %s after the kubelet started%s", realNodeApp, r.podIP, back.Round(10*time.Millisecond), from))
	return nil
}

// stop stops the testbed and removes the kubeconfig it gave the user;
// its files go too unless keep is set or the stop failed.
func (r *realNode) stop(keep bool) error {
	var errs []error
	if r.tb != nil {
		if err := r.tb.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping the real node's testbed: %w", err))
		}
	}
	if r.kubeconfig != nil {
		if cur, err := os.ReadFile(r.o.KubeconfigOut); err == nil && bytes.Equal(cur, r.kubeconfig) {
			if err := os.Remove(r.o.KubeconfigOut); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 && !keep {
		if err := os.RemoveAll(r.dir); err != nil {
			errs = append(errs, err)
		}
	} else if len(errs) > 0 {
		errs = append(errs, fmt.Errorf("the real node's files and logs are kept in %s", r.dir))
	}
	return errors.Join(errs...)
}
