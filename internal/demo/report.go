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

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// kubectlTimeout bounds each kubectl the summary runs.
const kubectlTimeout = 30 * time.Second

// summaryCommands are the kubectl invocations whose output the summary
// shows, without the --kubeconfig flag.
var summaryCommands = [][]string{
	{"get", "nodepools,nodes", "--show-labels"},
	{"get", "edgeunits,tunnelendpoints"},
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
	for _, args := range summaryCommands {
		fmt.Fprintf(w, "$ kubectl %s\n", strings.Join(args, " "))
		if lookErr == nil {
			out, err := d.runKubectl(ctx, kubectl, args...)
			if err == nil {
				fmt.Fprintf(w, "%s\n", out)
				continue
			}
			fmt.Fprintf(w, "(kubectl failed: %v; showing the same through the API client)\n", err)
		}
		if err := d.printWithClient(ctx, w, args[1]); err != nil {
			return err
		}
		fmt.Fprintln(w)
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
	ctx, cancel := context.WithTimeout(ctx, kubectlTimeout)
	defer cancel()
	full := append([]string{"--kubeconfig", d.Kubeconfig, "--cache-dir", filepath.Join(d.WorkDir, "kubectl-cache")}, args...)
	out, err := exec.CommandContext(ctx, kubectl, full...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
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
	fmt.Fprintf(w, "  # The NodePool webhook rejects keys no node would accept\n")
	fmt.Fprintf(w, "  %s patch np cloud --type merge -p '{\"spec\":{\"labels\":{\"bad key\":\"x\"}}}'\n", k)
	fmt.Fprintf(w, "  %s get edgeunits,tunnelendpoints -o wide\n\n", k)
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
			fmt.Fprintln(tw, "NAME\tREADY\tPOOLS\tNODES")
			for _, u := range l.Items {
				fmt.Fprintf(tw, "edgeunit.edge.edgeunit.io/%s\t%s\t%s\t%d\n", u.Name, condStatus(u.Status.Conditions), strings.Join(u.Spec.NodePools, ","), u.Status.NodeCount)
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
	if c := meta.FindStatusCondition(conds, edgev1.ConditionReady); c != nil {
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
