package edgeunit_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/test/bench/benchutil"
)

// check says what is not converged yet ("" when all is), or fails.
type check func(ctx context.Context, c client.Client) (string, error)

// waitFor polls chk every pollEvery until it passes and returns the time
// from t0 to the end of the poll that confirmed it.
func waitFor(ctx context.Context, c client.Client, chk check, t0 time.Time, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	last := "not checked yet"
	for {
		why, err := chk(ctx, c)
		if err == nil && why == "" {
			return time.Since(t0), nil
		}
		if err != nil && ctx.Err() == nil {
			why = err.Error()
		}
		if why != "" {
			last = why
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return 0, fmt.Errorf("after %s: %s", time.Since(t0).Round(time.Millisecond), last)
		}
	}
}

// poolsConverged: every pool reports nodesPerPool ready nodes and Ready,
// then every node carries its pool's keys. unitsExist says whether the
// pools should also name their unit.
func poolsConverged(unitsExist bool) check {
	return func(ctx context.Context, c client.Client) (string, error) {
		var pools edgev1.NodePoolList
		if err := c.List(ctx, &pools); err != nil {
			return "", fmt.Errorf("listing NodePools: %w", err)
		}
		if len(pools.Items) != numPools {
			return fmt.Sprintf("%d of %d NodePools exist", len(pools.Items), numPools), nil
		}
		byName := map[string]*edgev1.NodePool{}
		var bad []string
		for i := range pools.Items {
			p := &pools.Items[i]
			byName[p.Name] = p
			if why := poolProblem(p, unitsExist); why != "" {
				bad = append(bad, p.Name+": "+why)
			}
		}
		if len(bad) > 0 {
			slices.Sort(bad)
			return fmt.Sprintf("%d of %d pools have no correct status yet, first %s", len(bad), numPools, bad[0]), nil
		}
		return nodesConverged(ctx, c, func(n *corev1.Node) string {
			return nodeProblem(n, byName[n.Labels[edgev1.LabelNodePool]], unitsExist)
		})
	}
}

// nodesConverged lists the nodes, only once all else holds, to keep the
// verifier's load on the apiserver low while the manager works.
func nodesConverged(ctx context.Context, c client.Client, problem func(*corev1.Node) string) (string, error) {
	var nodes corev1.NodeList
	// The checks only read: no copy of 10,000 cached nodes per poll.
	if err := c.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return "", fmt.Errorf("listing nodes: %w", err)
	}
	if len(nodes.Items) != numNodes {
		return fmt.Sprintf("%d of %d nodes exist", len(nodes.Items), numNodes), nil
	}
	var bad []string
	for i := range nodes.Items {
		if why := problem(&nodes.Items[i]); why != "" {
			bad = append(bad, nodes.Items[i].Name+": "+why)
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Sprintf("%d of %d nodes are not done, first %s", len(bad), numNodes, bad[0]), nil
	}
	return "", nil
}

func poolProblem(p *edgev1.NodePool, unitsExist bool) string {
	st := p.Status
	wantUnit := ""
	if unitsExist {
		wantUnit = unitName(unitOfPool(poolIndex(p.Name)))
	}
	switch {
	case st.ObservedGeneration != p.Generation:
		return fmt.Sprintf("observedGeneration %d, generation %d", st.ObservedGeneration, p.Generation)
	case st.NodeCount != nodesPerPool || st.ReadyNodes != nodesPerPool:
		return fmt.Sprintf("nodeCount %d, readyNodes %d, want %d", st.NodeCount, st.ReadyNodes, nodesPerPool)
	case st.Unit != wantUnit:
		return fmt.Sprintf("unit %q, want %q", st.Unit, wantUnit)
	}
	c := meta.FindStatusCondition(st.Conditions, edgev1.ConditionReady)
	if c == nil {
		return "no Ready condition"
	}
	if c.Status != metav1.ConditionTrue {
		return fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
	}
	return ""
}

func poolIndex(name string) int {
	var i int
	_, _ = fmt.Sscanf(name, "pool-%d", &i)
	return i
}

// nodeProblem says which of its pool's (and unit's) keys a node lacks.
func nodeProblem(n *corev1.Node, p *edgev1.NodePool, unitsExist bool) string {
	if problem := benchutil.PoolKeysProblem(n, p); problem != "" {
		return problem
	}
	wantUnit := ""
	if unitsExist {
		wantUnit = unitName(unitOfPool(poolIndex(p.Name)))
	}
	if got := n.Labels[edgev1.LabelUnit]; got != wantUnit {
		return fmt.Sprintf("label %s=%q, want %q", edgev1.LabelUnit, got, wantUnit)
	}
	return ""
}

// unitsConverged is what "every unit's children created and statuses
// correct" means on envtest, where no DaemonSet controller runs, so no
// DaemonSet ever gets a status and no agent ever connects. For each unit:
//
//   - its finalizer is set, status.observedGeneration == generation and
//     status.nodeCount == poolsPerUnit*nodesPerPool;
//   - status.hub and status.tunnelAgent are 0 desired / 0 ready / 0
//     updated: what the (unwritten) DaemonSet statuses report;
//   - HubReady=False, reason Progressing, for the current generation: the
//     hub DaemonSet's status.observedGeneration (0) is behind its
//     generation, so the rollout has not started;
//   - TunnelConnected=False, reason NotConnected, "0 of <nodeCount> tunnel
//     agents are connected to TunnelEndpoint "tunnel"": the endpoint has an
//     address, no agent is connected;
//   - Ready=False (reason Progressing, from HubReady), TopologyProgrammed
//     and NetworkBound present, all for the current generation;
//   - DaemonSets edgeunit-hub-<unit> and edgeunit-agent-<unit> and
//     ConfigMaps of the same names exist in the manager's namespace,
//     controlled by the unit; both DaemonSets select the nodes labelled
//     edge.edgeunit.io/unit=<unit>; the agent ConfigMap lists the
//     endpoint's address 127.0.0.1:10262;
//   - every pool reports Ready with its unit in status.unit, and every node
//     carries edge.edgeunit.io/unit=<unit> besides its pool's keys.
func unitsConverged(ctx context.Context, c client.Client) (string, error) {
	if why, err := unitsAndChildren(ctx, c); why != "" || err != nil {
		return why, err
	}
	return poolsConverged(true)(ctx, c)
}

// unitsAndChildren is the part of unitsConverged about the units' statuses
// and children.
func unitsAndChildren(ctx context.Context, c client.Client) (string, error) {
	var units edgev1.EdgeUnitList
	if err := c.List(ctx, &units); err != nil {
		return "", fmt.Errorf("listing EdgeUnits: %w", err)
	}
	if len(units.Items) != numUnits {
		return fmt.Sprintf("%d of %d EdgeUnits exist", len(units.Items), numUnits), nil
	}
	var bad []string
	for i := range units.Items {
		if why := unitProblem(&units.Items[i]); why != "" {
			bad = append(bad, units.Items[i].Name+": "+why)
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Sprintf("%d of %d units have no correct status yet, first %s", len(bad), numUnits, bad[0]), nil
	}

	var dss appsv1.DaemonSetList
	if err := c.List(ctx, &dss, client.InNamespace(managerNamespace)); err != nil {
		return "", fmt.Errorf("listing DaemonSets: %w", err)
	}
	var cms corev1.ConfigMapList
	if err := c.List(ctx, &cms, client.InNamespace(managerNamespace)); err != nil {
		return "", fmt.Errorf("listing ConfigMaps: %w", err)
	}
	ds := map[string]*appsv1.DaemonSet{}
	for i := range dss.Items {
		ds[dss.Items[i].Name] = &dss.Items[i]
	}
	cm := map[string]*corev1.ConfigMap{}
	for i := range cms.Items {
		cm[cms.Items[i].Name] = &cms.Items[i]
	}
	for i := range units.Items {
		u := &units.Items[i]
		for _, name := range []string{"edgeunit-hub-" + u.Name, "edgeunit-agent-" + u.Name} {
			d := ds[name]
			switch {
			case d == nil:
				bad = append(bad, "no DaemonSet "+name)
			case !metav1.IsControlledBy(d, u):
				bad = append(bad, "DaemonSet "+name+" is not controlled by its unit")
			case d.Spec.Template.Spec.NodeSelector[edgev1.LabelUnit] != u.Name:
				bad = append(bad, fmt.Sprintf("DaemonSet %s selects nodes %v", name, d.Spec.Template.Spec.NodeSelector))
			}
			m := cm[name]
			switch {
			case m == nil:
				bad = append(bad, "no ConfigMap "+name)
			case !metav1.IsControlledBy(m, u):
				bad = append(bad, "ConfigMap "+name+" is not controlled by its unit")
			}
		}
		if m := cm["edgeunit-agent-"+u.Name]; m != nil && !strings.Contains(m.Data["servers"], endpointAddress) {
			bad = append(bad, fmt.Sprintf("ConfigMap edgeunit-agent-%s lists servers %q, want %s", u.Name, m.Data["servers"], endpointAddress))
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Sprintf("%d problems with the units' children, first %s", len(bad), bad[0]), nil
	}
	return "", nil
}

func unitProblem(u *edgev1.EdgeUnit) string {
	st := u.Status
	want := int32(poolsPerUnit) * nodesPerPool
	switch {
	case !slices.Contains(u.Finalizers, edgev1.FinalizerEdgeUnit):
		return "no finalizer"
	case st.ObservedGeneration != u.Generation:
		return fmt.Sprintf("observedGeneration %d, generation %d", st.ObservedGeneration, u.Generation)
	case st.NodeCount != want:
		return fmt.Sprintf("nodeCount %d, want %d", st.NodeCount, want)
	case st.Hub != (edgev1.RolloutStatus{}) || st.TunnelAgent != (edgev1.RolloutStatus{}):
		return fmt.Sprintf("hub rollout %+v, agent rollout %+v, want zero (no DaemonSet controller runs)", st.Hub, st.TunnelAgent)
	}
	expect := []struct {
		typ, reason, msgPrefix string
		status                 metav1.ConditionStatus
	}{
		{edgev1.ConditionHubReady, edgev1.ReasonProgressing, "DaemonSet " + managerNamespace + "/edgeunit-hub-" + u.Name + " has not picked up its latest spec yet", metav1.ConditionFalse},
		{edgev1.ConditionTunnelConnected, edgev1.ReasonNotConnected, fmt.Sprintf("0 of %d tunnel agents are connected to TunnelEndpoint %q", want, endpointName), metav1.ConditionFalse},
		{edgev1.ConditionReady, edgev1.ReasonProgressing, "HubReady: ", metav1.ConditionFalse},
		{edgev1.ConditionTopologyProgrammed, "", "", ""},
		{edgev1.ConditionNetworkBound, "", "", ""},
	}
	for _, e := range expect {
		c := meta.FindStatusCondition(st.Conditions, e.typ)
		switch {
		case c == nil:
			return "no " + e.typ + " condition"
		case c.ObservedGeneration != u.Generation:
			return fmt.Sprintf("%s for generation %d, want %d", e.typ, c.ObservedGeneration, u.Generation)
		case e.status != "" && (c.Status != e.status || c.Reason != e.reason || !strings.HasPrefix(c.Message, e.msgPrefix)):
			return fmt.Sprintf("%s=%s %s: %q, want %s %s: %q...", e.typ, c.Status, c.Reason, c.Message, e.status, e.reason, e.msgPrefix)
		}
	}
	return ""
}
