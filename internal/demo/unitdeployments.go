package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/unitdeployment"
)

// udCluster is what the demo reads to check and show UnitDeployments: the
// UnitDeployments, their instances and Services, and the nodes.
type udCluster struct {
	uds       []edgev1.UnitDeployment
	instances map[types.NamespacedName]*appsv1.Deployment
	services  map[types.NamespacedName]*corev1.Service
	nodes     []corev1.Node
}

// readUDCluster lists what udCluster holds. Instances and Services are
// found by the label the controller puts on both.
func readUDCluster(ctx context.Context, c client.Reader) (*udCluster, error) {
	var uds edgev1.UnitDeploymentList
	if err := c.List(ctx, &uds); err != nil {
		return nil, fmt.Errorf("listing UnitDeployments: %w", err)
	}
	slices.SortFunc(uds.Items, func(a, b edgev1.UnitDeployment) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	owned := client.HasLabels{edgev1.LabelUnitDeployment}
	var deps appsv1.DeploymentList
	if err := c.List(ctx, &deps, owned); err != nil {
		return nil, fmt.Errorf("listing the UnitDeployments' instances: %w", err)
	}
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs, owned); err != nil {
		return nil, fmt.Errorf("listing the UnitDeployments' Services: %w", err)
	}
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	cl := &udCluster{
		uds:       uds.Items,
		instances: map[types.NamespacedName]*appsv1.Deployment{},
		services:  map[types.NamespacedName]*corev1.Service{},
		nodes:     nodes.Items,
	}
	for i := range deps.Items {
		cl.instances[client.ObjectKeyFromObject(&deps.Items[i])] = &deps.Items[i]
	}
	for i := range svcs.Items {
		cl.services[client.ObjectKeyFromObject(&svcs.Items[i])] = &svcs.Items[i]
	}
	return cl, nil
}

// instance is ud's instance for unit when ud controls it.
func (cl *udCluster) instance(ud *edgev1.UnitDeployment, unit string) *appsv1.Deployment {
	d := cl.instances[types.NamespacedName{Namespace: ud.Namespace, Name: unitdeployment.InstanceName(ud, unit)}]
	if d == nil || !metav1.IsControlledBy(d, ud) {
		return nil
	}
	return d
}

func (cl *udCluster) nodesIn(unit string) int32 {
	n := int32(0)
	for i := range cl.nodes {
		if cl.nodes[i].Labels[edgev1.LabelUnit] == unit {
			n++
		}
	}
	return n
}

// unsettled says which UnitDeployments' statuses do not yet describe the
// cluster: status for an older generation, no Ready condition, a unit's
// node count or instance that differs from what exists, or a Service the
// spec asks for that is not there or has no trafficDistribution from the
// topology controller yet. It does not ask for the instances to be
// ready: in the demo nothing makes them so. Empty means every status can
// be shown as it is.
func unsettled(cl *udCluster) []string {
	var out []string
	for i := range cl.uds {
		ud := &cl.uds[i]
		key := ud.Namespace + "/" + ud.Name
		st := &ud.Status
		ready := meta.FindStatusCondition(st.Conditions, edgev1.ConditionReady)
		switch {
		case st.ObservedGeneration != ud.Generation:
			out = append(out, fmt.Sprintf("UnitDeployment %s: status is for generation %d, spec is at %d", key, st.ObservedGeneration, ud.Generation))
			continue
		case ready == nil:
			out = append(out, fmt.Sprintf("UnitDeployment %s has no Ready condition yet", key))
			continue
		}
		for _, is := range st.Instances {
			if want := cl.nodesIn(is.Unit); is.Nodes != want {
				out = append(out, fmt.Sprintf("UnitDeployment %s counts %d nodes in unit %s, which has %d", key, is.Nodes, is.Unit, want))
			}
			d := cl.instance(ud, is.Unit)
			switch {
			case d == nil && is.Revision != "":
				out = append(out, fmt.Sprintf("UnitDeployment %s lists instance %s, which does not exist", key, unitdeployment.InstanceName(ud, is.Unit)))
			case d != nil && d.Annotations[edgev1.AnnotationRevision] != is.Revision:
				out = append(out, fmt.Sprintf("UnitDeployment %s lists instance %s at revision %q, which is at %q", key, d.Name, is.Revision, d.Annotations[edgev1.AnnotationRevision]))
			}
		}
		if ud.Spec.Service == nil {
			continue
		}
		switch svc := cl.services[client.ObjectKeyFromObject(ud)]; {
		case svc == nil:
			out = append(out, fmt.Sprintf("UnitDeployment %s: Service %s does not exist yet", key, key))
		case svc.Spec.TrafficDistribution == nil:
			out = append(out, fmt.Sprintf("Service %s: the topology controller has not set its trafficDistribution yet", key))
		}
	}
	return out
}

// waitUnitDeployments polls until every UnitDeployment's status describes
// its instances as they are (unsettled is empty), and returns what it read
// last.
func waitUnitDeployments(ctx context.Context, c client.Reader, timeout time.Duration) (*udCluster, error) {
	var (
		pending []string
		cl      *udCluster
	)
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var err error
		if cl, err = readUDCluster(ctx, c); err != nil {
			pending = []string{err.Error()}
			return false, nil
		}
		pending = unsettled(cl)
		return len(pending) == 0, nil
	})
	if err == nil {
		return cl, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("the UnitDeployments' statuses did not settle within %s: %w", timeout, errors.New(strings.Join(pending, "; ")))
}

// created says, per UnitDeployment, how many of its selected units have
// their instance.
func (cl *udCluster) created() []string {
	var out []string
	for i := range cl.uds {
		ud := &cl.uds[i]
		n := 0
		for _, is := range ud.Status.Instances {
			if cl.instance(ud, is.Unit) != nil {
				n++
			}
		}
		out = append(out, fmt.Sprintf("UnitDeployment %s/%s: %d of its %d selected units have their instance (a Deployment)", ud.Namespace, ud.Name, n, ud.Status.Units))
	}
	return out
}

// names are the UnitDeployments' keys.
func (cl *udCluster) names() []types.NamespacedName {
	out := make([]types.NamespacedName, 0, len(cl.uds))
	for i := range cl.uds {
		out = append(out, client.ObjectKeyFromObject(&cl.uds[i]))
	}
	return out
}

// printUnitDeployments shows each UnitDeployment's instances per unit, as
// its status reports them, the Deployment and Service behind them, its
// conditions, and why nothing of it is ready in this cluster.
func (d *Demo) printUnitDeployments(ctx context.Context, w io.Writer) error {
	if len(d.UnitDeployments) == 0 {
		return nil
	}
	cl, err := readUDCluster(ctx, d.Client)
	if err != nil {
		return err
	}
	return writeUnitDeployments(w, cl)
}

// writeUnitDeployments prints what printUnitDeployments shows of cl.
func writeUnitDeployments(w io.Writer, cl *udCluster) error {
	notReady := false
	for i := range cl.uds {
		ud := &cl.uds[i]
		st := &ud.Status
		fmt.Fprintf(w, "UnitDeployment %s/%s, revision %s: units selected %d, updated %d, ready %d. Its instances,\n"+
			"one Deployment per unit, as its status reports them:\n", ud.Namespace, ud.Name, st.UpdateRevision, st.Units, st.UpdatedUnits, st.ReadyUnits)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  UNIT\tNODES\tINSTANCE\tREPLICAS\tREADY\tUPDATED\tREVISION")
		for _, is := range st.Instances {
			inst := "(none)"
			if cl.instance(ud, is.Unit) != nil {
				inst = "deployment/" + unitdeployment.InstanceName(ud, is.Unit)
			}
			rev := is.Revision
			if rev == "" {
				rev = "-"
			}
			if is.Unreachable {
				rev += "  (every node of the unit is unreachable)"
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%d\t%d\t%s\n", is.Unit, is.Nodes, inst, is.Replicas, is.ReadyReplicas, is.UpdatedReplicas, rev)
			notReady = notReady || is.ReadyReplicas < is.Replicas
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, is := range st.Instances {
			if dep := cl.instance(ud, is.Unit); dep != nil {
				fmt.Fprintf(w, "  deployment/%s: %s\n", dep.Name, describeInstance(dep))
			}
		}
		if svc := cl.services[client.ObjectKeyFromObject(ud)]; svc != nil && metav1.IsControlledBy(svc, ud) {
			fmt.Fprintf(w, "  service/%s: %s\n", svc.Name, describeService(svc))
		}
		for _, t := range []string{edgev1.ConditionProgressing, edgev1.ConditionAvailable, edgev1.ConditionReady} {
			if c := meta.FindStatusCondition(st.Conditions, t); c != nil {
				fmt.Fprintf(w, "  %s=%s (%s): %s\n", c.Type, c.Status, c.Reason, c.Message)
			}
		}
	}
	if notReady {
		fmt.Fprintf(w, "  Why no replica is ready: no kube-controller-manager runs in this cluster, so no Deployment\n"+
			"  controller makes ReplicaSets or pods for these instances, and no kubelet runs behind the simulated\n"+
			"  nodes. READY stays 0 and Ready False, as the status says. What the UnitDeployment controller did is\n"+
			"  real: the instances above, pinned to their units, at the revision shown, and the Service. Deleting\n"+
			"  the UnitDeployment here would leave its instances: the garbage collector is part of\n"+
			"  kube-controller-manager too.\n")
	}
	fmt.Fprintln(w)
	return nil
}

// describeInstance says how an instance is tied to its unit: replicas,
// node selector, tolerations.
func describeInstance(d *appsv1.Deployment) string {
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	parts := []string{fmt.Sprintf("%d replicas", replicas)}
	pod := &d.Spec.Template.Spec
	var sel []string
	for _, k := range slices.Sorted(maps.Keys(pod.NodeSelector)) {
		sel = append(sel, k+"="+pod.NodeSelector[k])
	}
	if len(sel) > 0 {
		parts = append(parts, "nodeSelector "+strings.Join(sel, ","))
	}
	var tols []string
	for _, t := range pod.Tolerations {
		s := t.Key
		if t.Value != "" {
			s += "=" + t.Value
		}
		if t.Effect != "" {
			s += ":" + string(t.Effect)
		}
		tols = append(tols, s)
	}
	if len(tols) > 0 {
		parts = append(parts, "tolerates "+strings.Join(tols, ", "))
	}
	return strings.Join(parts, "; ")
}

// describeService says what the Service exposes and how its traffic is
// kept in the client's unit.
func describeService(svc *corev1.Service) string {
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
	}
	parts := []string{"ports " + strings.Join(ports, ",")}
	if v, ok := svc.Annotations[edgev1.AnnotationTopology]; ok {
		parts = append(parts, edgev1.AnnotationTopology+"="+v)
	}
	if td := svc.Spec.TrafficDistribution; td != nil {
		td := "trafficDistribution " + *td
		if m := fieldManager(svc.ManagedFields, "f:trafficDistribution"); m != "" {
			td += " (set by " + m + ")"
		}
		parts = append(parts, td)
	} else {
		parts = append(parts, "no trafficDistribution yet")
	}
	return strings.Join(parts, "; ")
}

// fieldManager is the manager whose managed fields hold field (a key
// such as "f:trafficDistribution"), or "".
func fieldManager(entries []metav1.ManagedFieldsEntry, field string) string {
	for _, e := range entries {
		if e.FieldsV1 != nil && bytes.Contains(e.FieldsV1.Raw, []byte(`"`+field+`"`)) {
			return e.Manager
		}
	}
	return ""
}

// printUDsWithClient prints what `kubectl get ud -A` does.
func (d *Demo) printUDsWithClient(ctx context.Context, w io.Writer) error {
	var l edgev1.UnitDeploymentList
	if err := d.Client.List(ctx, &l); err != nil {
		return fmt.Errorf("listing UnitDeployments: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tREADY\tUNITS\tREADY-UNITS\tUPDATED-UNITS\tREADY-REPLICAS")
	for _, ud := range l.Items {
		st := ud.Status
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", ud.Namespace, ud.Name, condStatus(st.Conditions), st.Units, st.ReadyUnits, st.UpdatedUnits, st.ReadyReplicas)
	}
	return tw.Flush()
}

// printUDChildrenWithClient prints what `kubectl get deployments,services
// -A -l edge.edgeunit.io/unitdeployment -L edge.edgeunit.io/unit` does,
// in short.
func (d *Demo) printUDChildrenWithClient(ctx context.Context, w io.Writer) error {
	owned := client.HasLabels{edgev1.LabelUnitDeployment}
	var deps appsv1.DeploymentList
	if err := d.Client.List(ctx, &deps, owned); err != nil {
		return fmt.Errorf("listing the UnitDeployments' instances: %w", err)
	}
	var svcs corev1.ServiceList
	if err := d.Client.List(ctx, &svcs, owned); err != nil {
		return fmt.Errorf("listing the UnitDeployments' Services: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tREADY\tUP-TO-DATE\tAVAILABLE\tUNIT")
	for _, dep := range deps.Items {
		replicas := int32(1)
		if dep.Spec.Replicas != nil {
			replicas = *dep.Spec.Replicas
		}
		fmt.Fprintf(tw, "%s\tdeployment.apps/%s\t%d/%d\t%d\t%d\t%s\n", dep.Namespace, dep.Name, dep.Status.ReadyReplicas, replicas,
			dep.Status.UpdatedReplicas, dep.Status.AvailableReplicas, dep.Labels[edgev1.LabelUnit])
	}
	fmt.Fprintln(tw, "\nNAMESPACE\tNAME\tTYPE\tCLUSTER-IP\tPORT(S)")
	for _, svc := range svcs.Items {
		var ports []string
		for _, p := range svc.Spec.Ports {
			ports = append(ports, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		}
		fmt.Fprintf(tw, "%s\tservice/%s\t%s\t%s\t%s\n", svc.Namespace, svc.Name, svc.Spec.Type, svc.Spec.ClusterIP, strings.Join(ports, ","))
	}
	return tw.Flush()
}

// udCommands are the summary's kubectl commands for the UnitDeployments.
func (d *Demo) udCommands() []summaryCommand {
	if len(d.UnitDeployments) == 0 {
		return nil
	}
	return []summaryCommand{
		{args: []string{"get", "ud", "-A"}, client: d.printUDsWithClient},
		{
			args:   []string{"get", "deployments,services", "-A", "-l", edgev1.LabelUnitDeployment, "-L", edgev1.LabelUnit},
			client: d.printUDChildrenWithClient,
		},
	}
}
