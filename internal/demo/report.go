package demo

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers"
	"github.com/edgeunit/edgeunit/internal/certs"
)

// kubectlTimeout bounds each kubectl the summary runs.
const kubectlTimeout = 30 * time.Second

// summaryCommand is a kubectl invocation whose output the summary shows,
// without the --kubeconfig flag, and how to print the same without kubectl.
type summaryCommand struct {
	args []string
	// shown is the command as the user would type it, when the arguments
	// need shell quoting.
	shown  string
	client func(ctx context.Context, w io.Writer) error
}

// agentsJSONPath lists a TunnelEndpoint's connected agents one a line.
const agentsJSONPath = `{range .status.agents[*]}{.node}{"  servers="}{.servers}{"  lastSeen="}{.lastSeen}{"\n"}{end}`

func (d *Demo) summaryCommands() []summaryCommand {
	cmds := []summaryCommand{
		{args: []string{"get", "nodepools,nodes", "--show-labels"}, client: d.clientPrinter("nodepools,nodes")},
		{args: []string{"get", "edgeunits,tunnelendpoints", "-o", "wide"}, client: d.clientPrinter("edgeunits,tunnelendpoints")},
	}
	cmds = append(cmds, summaryCommand{
		args:   []string{"get", "edgeunits", bindingsUnit, "-o", "jsonpath=" + bindingsJSONPath},
		shown:  fmt.Sprintf("get edgeunits %s -o jsonpath='%s'", bindingsUnit, bindingsJSONPath),
		client: d.printBindingsWithClient(bindingsUnit),
	})
	cmds = append(cmds, d.udCommands()...)
	if d.Tunnel != nil {
		args := []string{"get", "tunnelendpoint", d.Tunnel.Endpoint, "-o", "jsonpath=" + agentsJSONPath}
		cmds = append(cmds, summaryCommand{
			args:   args,
			shown:  fmt.Sprintf("get tunnelendpoint %s -o jsonpath='%s'", d.Tunnel.Endpoint, agentsJSONPath),
			client: d.printAgentsWithClient,
		})
	}
	return cmds
}

// Report prints where the cluster is, what is in it and what to try.
func (d *Demo) Report(ctx context.Context, w io.Writer) error {
	fmt.Fprintf(w, "\nThe edgeunit demo is ready.\n\n")
	fmt.Fprintf(w, "  API server:  %s\n", d.APIServerURL)
	fmt.Fprintf(w, "  etcd:        %s\n", d.EtcdURL)
	fmt.Fprintf(w, "  kubeconfig:  %s\n", d.Kubeconfig)
	fmt.Fprintf(w, "               export KUBECONFIG=%s\n\n", d.Kubeconfig)

	kubectl, lookErr := d.kubectlPath()
	if lookErr != nil {
		fmt.Fprintf(w, "(kubectl not found: %v; the tables below come from the API client)\n\n", lookErr)
	}
	for _, c := range d.summaryCommands() {
		shown := c.shown
		if shown == "" {
			shown = strings.Join(c.args, " ")
		}
		fmt.Fprintf(w, "$ kubectl %s\n", shown)
		if lookErr == nil {
			out, err := d.runKubectl(ctx, kubectl, c.args...)
			if err == nil {
				fmt.Fprintf(w, "%s\n", out)
				continue
			}
			fmt.Fprintf(w, "(kubectl failed: %v; showing the same through the API client)\n", err)
		}
		if err := c.client(ctx, w); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	if err := d.printTunnel(ctx, w); err != nil {
		return err
	}
	if err := d.printUnitDeployments(ctx, w); err != nil {
		return err
	}
	d.printNextSteps(w)
	return nil
}

func (d *Demo) kubectlPath() (string, error) {
	if d.opts.Kubectl != "" {
		return exec.LookPath(d.opts.Kubectl)
	}
	return exec.LookPath("kubectl")
}

func (d *Demo) runKubectl(ctx context.Context, kubectl string, args ...string) (string, error) {
	return kubectlOutput(ctx, kubectl, d.Kubeconfig, filepath.Join(d.WorkDir, "kubectl-cache"), args...)
}

// kubectlOutput runs kubectl with a kubeconfig and a cache directory and
// returns what it printed, ending in one newline.
func kubectlOutput(ctx context.Context, kubectl, kubeconfig, cacheDir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, kubectlTimeout)
	defer cancel()
	full := append([]string{"--kubeconfig", kubeconfig, "--cache-dir", cacheDir}, args...)
	out, err := exec.CommandContext(ctx, kubectl, full...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimRight(string(out), "\n") + "\n", nil
}

func (d *Demo) printNextSteps(w io.Writer) {
	k := "kubectl --kubeconfig " + d.Kubeconfig
	spare := ""
	for _, n := range DefaultNodes {
		if n.Pool == "" {
			spare = n.Name
			break
		}
	}
	fmt.Fprintf(w, "Try next:\n")
	fmt.Fprintf(w, "  # The pools: status, members and the keys pushed to their nodes\n")
	fmt.Fprintf(w, "  %s get np -o yaml\n", k)
	fmt.Fprintf(w, "  %s describe node %s\n", k, DefaultNodes[0].Name)
	if spare != "" {
		fmt.Fprintf(w, "  # Move %s into the edge pool: it gets the pool's labels, annotations and taint\n", spare)
		fmt.Fprintf(w, "  %s label node %s %s=factory-a\n", k, spare, edgev1.LabelNodePool)
		fmt.Fprintf(w, "  %s get nodes -L %s,%s,%s\n", k, edgev1.LabelNodePool, edgev1.LabelPoolType, edgev1.LabelAutonomy)
		fmt.Fprintf(w, "  # ...and out again: exactly those keys are removed\n")
		fmt.Fprintf(w, "  %s label node %s %s-\n", k, spare, edgev1.LabelNodePool)
	}
	fmt.Fprintf(w, "  # Network autonomy: the VTEP MAC and pod IP bindings EdgeUnit %s records\n", bindingsUnit)
	fmt.Fprintf(w, "  %s get edgeunits %s -o yaml\n", k, bindingsUnit)
	if len(d.UnitDeployments) > 0 {
		key := d.UnitDeployments[0]
		fmt.Fprintf(w, "  # The processing unit: its status per unit, and the Deployment it stamped for each unit\n")
		fmt.Fprintf(w, "  %s get ud -A\n", k)
		fmt.Fprintf(w, "  %s get ud %s -n %s -o yaml\n", k, key.Name, key.Namespace)
		fmt.Fprintf(w, "  %s get deployments -n %s -l %s=%s -o yaml\n", k, key.Namespace, edgev1.LabelUnitDeployment, key.Name)
	}
	fmt.Fprintf(w, "  # The NodePool webhook rejects keys no node would accept\n")
	fmt.Fprintf(w, "  %s patch np cloud --type merge -p '{\"spec\":{\"labels\":{\"bad key\":\"x\"}}}'\n", k)
	if t := d.Tunnel; t != nil && len(t.Agents) > 0 && len(t.Units) > 0 {
		a := t.Agents[len(t.Agents)-1]
		unit := t.Units[0]
		fmt.Fprintf(w, "  # The agents' identities: CSRs the manager approved and signed\n")
		fmt.Fprintf(w, "  %s get csr\n", k)
		fmt.Fprintf(w, "  # Cut an agent off: watch the unit in a second terminal, pause the agent, and within about\n")
		fmt.Fprintf(w, "  # 20 s the server misses its heartbeats and TunnelConnected turns False; resume it and it\n")
		fmt.Fprintf(w, "  # reconnects within a second or two\n")
		fmt.Fprintf(w, "  %s get edgeunits %s -w -o custom-columns='NAME:.metadata.name,TUNNEL:.status.conditions[?(@.type==\"TunnelConnected\")].message'\n", k, unit)
		fmt.Fprintf(w, "  kill -STOP %d   # %s\n", a.Process.PID, a.Process.Name)
		fmt.Fprintf(w, "  kill -CONT %d\n", a.Process.PID)
		fmt.Fprintf(w, "  # Or stop it for good (TunnelConnected turns False within seconds); the demo reports its exit\n")
		fmt.Fprintf(w, "  kill %d\n", a.Process.PID)
		fmt.Fprintf(w, "  %s get tunnelendpoint %s -o yaml\n", k, t.Endpoint)
	}
	fmt.Fprintf(w, "  %s get edgeunits,tunnelendpoints -o wide\n\n", k)
}

// printTunnel says which tunnel processes run on this machine, and what the
// manager created that nothing runs here, with the statuses that follow
// from it.
func (d *Demo) printTunnel(ctx context.Context, w io.Writer) error {
	t := d.Tunnel
	if t == nil {
		return nil
	}
	fmt.Fprintf(w, "The tunnel runs on this machine as real processes (logs in %s):\n", t.Dir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  tunnel-server\tpid %d%s\tagents dial %s; HTTP CONNECT on %s; TLS passthrough on %s; http://%s/agents\n",
		t.Server.PID, exitedNote(t.Server), t.AgentAddress, t.ConnectSocket, t.PassthroughAddress, t.HealthAddress)
	ports := make([]string, 0, len(t.AllowedPorts))
	for _, p := range t.AllowedPorts {
		ports = append(ports, fmt.Sprint(p))
	}
	for _, a := range t.Agents {
		fmt.Fprintf(tw, "  tunnel-agent %s\tpid %d%s\tidentity %s from the CSR API; may open port %s of its node\n",
			a.Node, a.Process.PID, exitedNote(a.Process), certs.TunnelAgentIdentity.CommonName(a.Node), strings.Join(ports, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "  Binaries: %s. Serving certificate from Secret %s, issued by the manager.\n", t.Binaries, t.ServingSecret)

	var te edgev1.TunnelEndpoint
	if err := d.Client.Get(ctx, client.ObjectKey{Name: t.Endpoint}, &te); err != nil {
		return fmt.Errorf("getting TunnelEndpoint %s: %w", t.Endpoint, err)
	}
	if len(te.Status.Addresses) > 0 && !slices.Contains(te.Status.Addresses, t.AgentAddress) {
		fmt.Fprintf(w, "  The TunnelEndpoint's status.addresses (%s) is where its Service would expose the servers; this\n"+
			"  server listens on a free port instead, and the agents were given it with --servers.\n", strings.Join(te.Status.Addresses, ", "))
	}
	fmt.Fprintln(w)
	if err := d.printNotRunning(ctx, w, &te); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return nil
}

func exitedNote(p *process) string {
	if exited, _ := p.Exited(); exited {
		return " (exited)"
	}
	return ""
}

// printNotRunning lists the manager's Deployments and DaemonSets, which get
// no pods here, and the conditions that are False because of it.
func (d *Demo) printNotRunning(ctx context.Context, w io.Writer, te *edgev1.TunnelEndpoint) error {
	ns := controllers.DefaultNamespace
	var deps appsv1.DeploymentList
	if err := d.Client.List(ctx, &deps, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("listing Deployments in %s: %w", ns, err)
	}
	var dss appsv1.DaemonSetList
	if err := d.Client.List(ctx, &dss, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("listing DaemonSets in %s: %w", ns, err)
	}
	fmt.Fprintf(w, "What does not run here: no kube-controller-manager and no kubelet run in this cluster, so the\n"+
		"workloads the manager created in namespace %s get no pods:\n", ns)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, dep := range deps.Items {
		desired := int32(1)
		if dep.Spec.Replicas != nil {
			desired = *dep.Spec.Replicas
		}
		note := ""
		if dep.Labels["app.kubernetes.io/component"] == "tunnel-server" {
			note = "the tunnel-server process above stands in for it, so SERVERS counts 0"
		}
		fmt.Fprintf(tw, "  deployment/%s\t%d desired, %d ready\t%s\n", dep.Name, desired, dep.Status.ReadyReplicas, note)
	}
	for _, ds := range dss.Items {
		note := ""
		switch ds.Labels["app.kubernetes.io/name"] {
		case "tunnel-agent":
			note = "the tunnel-agent processes above stand in for its pods"
		case "edge-hub-installer", "edge-hub":
			note = "no edge hub runs here"
		}
		fmt.Fprintf(tw, "  daemonset/%s\t%d scheduled, %d ready\t%s\n", ds.Name, ds.Status.DesiredNumberScheduled, ds.Status.NumberReady, note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if c := meta.FindStatusCondition(te.Status.Conditions, edgev1.ConditionReady); c != nil && c.Status != metav1.ConditionTrue {
		fmt.Fprintf(w, "  TunnelEndpoint %s: Ready=%s (%s): %s\n", te.Name, c.Status, c.Reason, c.Message)
	}
	for _, name := range d.Tunnel.Units {
		var u edgev1.EdgeUnit
		if err := d.Client.Get(ctx, client.ObjectKey{Name: name}, &u); err != nil {
			return fmt.Errorf("getting EdgeUnit %s: %w", name, err)
		}
		for _, typ := range []string{edgev1.ConditionTunnelConnected, edgev1.ConditionHubReady} {
			if c := meta.FindStatusCondition(u.Status.Conditions, typ); c != nil {
				fmt.Fprintf(w, "  EdgeUnit %s: %s=%s: %s\n", u.Name, typ, c.Status, c.Message)
			}
		}
		if c := meta.FindStatusCondition(u.Status.Conditions, edgev1.ConditionReady); c != nil && c.Status != metav1.ConditionTrue {
			fmt.Fprintf(w, "  EdgeUnit %s: Ready=%s: %s\n", u.Name, c.Status, c.Message)
		}
	}
	return nil
}

func (d *Demo) clientPrinter(resources string) func(context.Context, io.Writer) error {
	return func(ctx context.Context, w io.Writer) error { return d.printWithClient(ctx, w, resources) }
}

// printAgentsWithClient prints what agentsJSONPath does.
func (d *Demo) printAgentsWithClient(ctx context.Context, w io.Writer) error {
	var te edgev1.TunnelEndpoint
	if err := d.Client.Get(ctx, client.ObjectKey{Name: d.Tunnel.Endpoint}, &te); err != nil {
		return fmt.Errorf("getting TunnelEndpoint %s: %w", d.Tunnel.Endpoint, err)
	}
	for _, a := range te.Status.Agents {
		fmt.Fprintf(w, "%s  servers=%d  lastSeen=%s\n", a.Node, a.Servers, a.LastSeen.UTC().Format(time.RFC3339))
	}
	return nil
}

// printWithClient prints roughly what kubectl would, for when it is missing.
func (d *Demo) printWithClient(ctx context.Context, w io.Writer, resources string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	defer tw.Flush()
	for _, r := range strings.Split(resources, ",") {
		switch r {
		case "nodepools":
			var l edgev1.NodePoolList
			if err := d.Client.List(ctx, &l); err != nil {
				return fmt.Errorf("listing NodePools: %w", err)
			}
			fmt.Fprintln(tw, "NAME\tTYPE\tREADY\tNODES\tREADY-NODES")
			for _, p := range l.Items {
				fmt.Fprintf(tw, "nodepool.edge.edgeunit.io/%s\t%s\t%s\t%d\t%d\n", p.Name, p.Spec.Type, condStatus(p.Status.Conditions), p.Status.NodeCount, p.Status.ReadyNodes)
			}
		case "nodes":
			var l corev1.NodeList
			if err := d.Client.List(ctx, &l); err != nil {
				return fmt.Errorf("listing nodes: %w", err)
			}
			fmt.Fprintln(tw, "\nNAME\tSTATUS\tLABELS")
			for _, n := range l.Items {
				status := "NotReady"
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						status = "Ready"
					}
				}
				fmt.Fprintf(tw, "node/%s\t%s\t%s\n", n.Name, status, joinLabels(n.Labels))
			}
		case "edgeunits":
			var l edgev1.EdgeUnitList
			if err := d.Client.List(ctx, &l); err != nil {
				return fmt.Errorf("listing EdgeUnits: %w", err)
			}
			fmt.Fprintln(tw, "NAME\tREADY\tPOOLS\tNODES\tHUB\tTUNNEL")
			for _, u := range l.Items {
				fmt.Fprintf(tw, "edgeunit.edge.edgeunit.io/%s\t%s\t%s\t%d\t%s\t%s\n", u.Name, condStatus(u.Status.Conditions), strings.Join(u.Spec.NodePools, ","), u.Status.NodeCount,
					condStatusOf(u.Status.Conditions, edgev1.ConditionHubReady), condStatusOf(u.Status.Conditions, edgev1.ConditionTunnelConnected))
			}
		case "tunnelendpoints":
			var l edgev1.TunnelEndpointList
			if err := d.Client.List(ctx, &l); err != nil {
				return fmt.Errorf("listing TunnelEndpoints: %w", err)
			}
			fmt.Fprintln(tw, "\nNAME\tREADY\tSERVERS\tAGENTS\tSERVICE")
			for _, t := range l.Items {
				fmt.Fprintf(tw, "tunnelendpoint.edge.edgeunit.io/%s\t%s\t%d\t%d\t%s\n", t.Name, condStatus(t.Status.Conditions), t.Status.ReadyServers, t.Status.ConnectedAgents, t.Spec.Service.Type)
			}
		default:
			return fmt.Errorf("no client printer for %q", r)
		}
	}
	return nil
}

func condStatus(conds []metav1.Condition) string {
	return condStatusOf(conds, edgev1.ConditionReady)
}

func condStatusOf(conds []metav1.Condition, typ string) string {
	if c := meta.FindStatusCondition(conds, typ); c != nil {
		return string(c.Status)
	}
	return ""
}

func joinLabels(labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}
