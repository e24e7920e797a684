package edgeunit

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/internal/conditions"
	"github.com/edgeunit/edgeunit/controllers/internal/statusapply"
)

// maxListed bounds how many names a condition message lists.
const maxListed = 5

// ownedConditions are the condition types the EdgeUnit controller writes.
// NetworkBound belongs to the bindings controller, which applies it with
// status.bindings under its own field manager.
var ownedConditions = []string{
	edgev1.ConditionHubReady, edgev1.ConditionNodesConverted, edgev1.ConditionTunnelConnected, edgev1.ConditionTopologyProgrammed, edgev1.ConditionReady,
}

// computeStatus derives the unit's status from what the pass observed. A
// failed pass keeps the last status and only turns Ready to SyncFailed;
// observedGeneration moves only with a pass that succeeded. Pure: the same
// inputs give the same status, so an unchanged unit is never written.
func computeStatus(u *edgev1.EdgeUnit, obs *observed, syncErr error) edgev1.EdgeUnitStatus {
	st := *u.Status.DeepCopy()
	if syncErr != nil {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: edgev1.ConditionReady, Status: metav1.ConditionFalse, Reason: edgev1.ReasonSyncFailed,
			Message: conditions.Truncate(syncErr.Error()), ObservedGeneration: u.Generation,
		})
		return st
	}
	st.ObservedGeneration = u.Generation
	st.NodeCount = int32(len(obs.nodes))
	st.Hub = rolloutOf(obs.hub)
	st.TunnelAgent = rolloutOf(obs.agent)
	st.Conversion = conversionOf(obs)

	hub := hubCondition(obs)
	tunnel := tunnelCondition(u, obs)
	for _, c := range []metav1.Condition{
		hub,
		conversionCondition(u, obs),
		tunnel,
		topologyCondition(u),
		readyCondition(u, obs, hub, tunnel),
	} {
		c.ObservedGeneration = u.Generation
		c.Message = conditions.Truncate(c.Message)
		meta.SetStatusCondition(&st.Conditions, c)
	}
	return st
}

func hubCondition(obs *observed) metav1.Condition {
	c := metav1.Condition{Type: edgev1.ConditionHubReady, Status: metav1.ConditionFalse}
	n := int32(len(obs.nodes))
	ro := rolloutOf(obs.hub)
	switch {
	case n == 0:
		c.Reason = edgev1.ReasonNoNodes
		c.Message = "No node is in the unit's pools; a node joins a pool with the label " + edgev1.LabelNodePool + "=<pool>"
	case obs.hub == nil:
		c.Reason = edgev1.ReasonProgressing
		c.Message = "Waiting for the edge hub installer DaemonSet"
	case obs.hub.Status.ObservedGeneration < obs.hub.Generation:
		c.Reason = edgev1.ReasonProgressing
		c.Message = fmt.Sprintf("DaemonSet %s/%s has not picked up its latest spec yet", obs.hub.Namespace, obs.hub.Name)
	case ro.Desired == n && ro.Ready == n && ro.Updated == n:
		c.Status, c.Reason = metav1.ConditionTrue, edgev1.ReasonAvailable
		c.Message = fmt.Sprintf("The edge hub is ready on all %d nodes", n)
	default:
		c.Reason = edgev1.ReasonProgressing
		c.Message = fmt.Sprintf("The edge hub is ready on %d of %d nodes (installer scheduled on %d, updated on %d)", ro.Ready, n, ro.Desired, ro.Updated)
	}
	return c
}

// maxFailedNodes bounds status.conversion.failedNodes.
const maxFailedNodes = 10

func conversionOf(obs *observed) edgev1.ConversionStatus {
	return edgev1.ConversionStatus{
		Converted:   int32(len(obs.conversion[edgev1.ConversionConverted])),
		Converting:  int32(len(obs.conversion[edgev1.ConversionConverting])),
		RolledBack:  int32(len(obs.conversion[edgev1.ConversionRolledBack])),
		FailedNodes: conditions.FirstN(obs.conversion[edgev1.ConversionRolledBack], maxFailedNodes),
	}
}

// conversionCondition says whether every node's kubelet talks to its hub,
// as the nodes' installers report it on their Nodes. It does not gate
// Ready: Ready says the unit's components run; a node not converted yet
// still works, only without the hub's protection.
func conversionCondition(u *edgev1.EdgeUnit, obs *observed) metav1.Condition {
	c := metav1.Condition{Type: edgev1.ConditionNodesConverted, Status: metav1.ConditionFalse}
	n := len(obs.nodes)
	converted := obs.conversion[edgev1.ConversionConverted]
	failed := obs.conversion[edgev1.ConversionRolledBack]
	switch {
	case n == 0:
		c.Reason = edgev1.ReasonNoNodes
		c.Message = "No node is in the unit's pools"
	case len(converted) == n:
		c.Status, c.Reason = metav1.ConditionTrue, edgev1.ReasonConverted
		c.Message = fmt.Sprintf("The kubelet talks to its edge hub on all %d nodes", n)
	case len(failed) > 0:
		c.Reason = edgev1.ReasonRolledBack
		c.Message = fmt.Sprintf("%d of %d nodes converted; the switch to the hub failed and was rolled back on %s (the node's annotation %s says why; the installer tries again later)",
			len(converted), n, strings.Join(conditions.FirstN(failed, maxListed), ", "), edgev1.AnnotationConversionMessage)
	case u.Spec.Hub.NodeConversion == edgev1.NodeConversionManual:
		c.Reason = edgev1.ReasonManual
		c.Message = fmt.Sprintf("spec.hub.nodeConversion is Manual: %d of %d nodes converted (run `edge-hub convert` on a node)", len(converted), n)
	default:
		var pending []string
		for _, node := range obs.nodes {
			if !slices.Contains(converted, node) {
				pending = append(pending, node)
			}
		}
		c.Reason = edgev1.ReasonConverting
		c.Message = fmt.Sprintf("%d of %d nodes converted; waiting for %s", len(converted), n, strings.Join(conditions.FirstN(pending, maxListed), ", "))
	}
	return c
}

func tunnelCondition(u *edgev1.EdgeUnit, obs *observed) metav1.Condition {
	c := metav1.Condition{Type: edgev1.ConditionTunnelConnected, Status: metav1.ConditionFalse}
	te := obs.endpoint
	switch {
	case u.Spec.Tunnel == nil:
		c.Reason = edgev1.ReasonDisabled
		c.Message = "spec.tunnel is unset: no tunnel agent runs"
	case obs.endpointMissing || te == nil:
		c.Reason = edgev1.ReasonNotFound
		c.Message = fmt.Sprintf("TunnelEndpoint %q (spec.tunnel.endpoint) does not exist: no tunnel agent runs until it is created", u.Spec.Tunnel.Endpoint)
	case len(te.Status.Addresses) == 0:
		c.Reason = edgev1.ReasonProgressing
		c.Message = fmt.Sprintf("TunnelEndpoint %q reports no address for agents to dial yet", te.Name)
	case len(obs.nodes) == 0:
		c.Reason = edgev1.ReasonNoNodes
		c.Message = "No node is in the unit's pools"
	default:
		connected := map[string]bool{}
		for _, a := range te.Status.Agents {
			connected[a.Node] = true
		}
		var missing []string
		for _, n := range obs.nodes {
			if !connected[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			c.Status, c.Reason = metav1.ConditionTrue, edgev1.ReasonConnected
			c.Message = fmt.Sprintf("All %d tunnel agents are connected to TunnelEndpoint %q", len(obs.nodes), te.Name)
			break
		}
		c.Reason = edgev1.ReasonNotConnected
		c.Message = fmt.Sprintf("%d of %d tunnel agents are connected to TunnelEndpoint %q; not connected: %s",
			len(obs.nodes)-len(missing), len(obs.nodes), te.Name, strings.Join(conditions.FirstN(missing, maxListed), ", "))
		if int(te.Status.ConnectedAgents) > len(te.Status.Agents) {
			c.Message += fmt.Sprintf(" (the endpoint lists %d of its %d agents, so some of these may be connected)", len(te.Status.Agents), te.Status.ConnectedAgents)
		}
	}
	return c
}

// topologyCondition: the hubs filter EndpointSlices themselves; the unit
// only puts its mode into their configuration. The hub implements the
// per-Service annotation (mode Annotated); the other modes are recorded
// for it but not enforced, so they are not reported as programmed.
func topologyCondition(u *edgev1.EdgeUnit) metav1.Condition {
	mode := topologyMode(u)
	c := metav1.Condition{Type: edgev1.ConditionTopologyProgrammed, Status: metav1.ConditionFalse, Reason: string(mode)}
	switch mode {
	case edgev1.TopologyAnnotated:
		c.Status = metav1.ConditionTrue
		c.Message = "The edge hubs keep EndpointSlices of Services annotated " + edgev1.AnnotationTopology + " to the unit or node"
	case edgev1.TopologyDisabled:
		c.Message = "Service topology is disabled for the unit; the edge hubs still honour a Service's " + edgev1.AnnotationTopology + " annotation"
	default:
		c.Message = fmt.Sprintf("Mode %s is in the hubs' unit configuration, but the edge hub filters only Services annotated %s", mode, edgev1.AnnotationTopology)
	}
	return c
}

// readyCondition sums up the unit: its pools, its hubs and, when it has a
// tunnel, its agents. Topology and network bindings do not gate it.
func readyCondition(u *edgev1.EdgeUnit, obs *observed, hub, tunnel metav1.Condition) metav1.Condition {
	var reasons, msgs []string
	if len(obs.claimed) > 0 {
		var claims []string
		for _, p := range slices.Sorted(maps.Keys(obs.claimed)) {
			claims = append(claims, fmt.Sprintf("%s (owned by EdgeUnit %s)", p, obs.claimed[p]))
		}
		reasons = append(reasons, edgev1.ReasonPoolClaimed)
		msgs = append(msgs, "NodePools owned by an older EdgeUnit are left to it: "+strings.Join(conditions.FirstN(claims, maxListed), ", "))
	}
	if hub.Status != metav1.ConditionTrue {
		reasons = append(reasons, hub.Reason)
		msgs = append(msgs, "HubReady: "+hub.Message)
	}
	if u.Spec.Tunnel != nil && tunnel.Status != metav1.ConditionTrue {
		reasons = append(reasons, tunnel.Reason)
		msgs = append(msgs, "TunnelConnected: "+tunnel.Message)
	}
	if len(reasons) > 0 {
		return metav1.Condition{Type: edgev1.ConditionReady, Status: metav1.ConditionFalse, Reason: reasons[0], Message: strings.Join(msgs, "; ")}
	}
	msg := hub.Message
	if u.Spec.Tunnel != nil {
		msg += "; " + tunnel.Message
	}
	return metav1.Condition{Type: edgev1.ConditionReady, Status: metav1.ConditionTrue, Reason: edgev1.ReasonComponentsReady, Message: msg}
}

// ownedStatus is the part of the status the EdgeUnit controller owns, as
// it server-side applies it: counts are explicit, so a zero is written, not
// left to a previous owner; conditions are only the owned types.
type ownedStatus struct {
	ObservedGeneration int64              `json:"observedGeneration"`
	NodeCount          int32              `json:"nodeCount"`
	Hub                ownedRollout       `json:"hub"`
	TunnelAgent        ownedRollout       `json:"tunnelAgent"`
	Conversion         ownedConversion    `json:"conversion"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

type ownedConversion struct {
	Converted   int32    `json:"converted"`
	Converting  int32    `json:"converting"`
	RolledBack  int32    `json:"rolledBack"`
	FailedNodes []string `json:"failedNodes,omitempty"`
}

type ownedRollout struct {
	Desired int32 `json:"desired"`
	Ready   int32 `json:"ready"`
	Updated int32 `json:"updated"`
}

func ownedPart(st edgev1.EdgeUnitStatus) ownedStatus {
	o := ownedStatus{
		ObservedGeneration: st.ObservedGeneration,
		NodeCount:          st.NodeCount,
		Hub:                ownedRollout(st.Hub),
		TunnelAgent:        ownedRollout(st.TunnelAgent),
		Conversion:         ownedConversion(st.Conversion),
	}
	for _, c := range st.Conditions {
		if slices.Contains(ownedConditions, c.Type) {
			o.Conditions = append(o.Conditions, c)
		}
	}
	return o
}

// newStatusApply is the server-side apply configuration of the EdgeUnit controller's part of a unit's status.
func newStatusApply(name string, st edgev1.EdgeUnitStatus) *statusapply.Apply[ownedStatus] {
	return statusapply.New("EdgeUnit", name, ownedPart(st))
}

// statusEqual compares statuses; meta.SetStatusCondition keeps transition
// times when a condition's status did not change.
func statusEqual(a, b edgev1.EdgeUnitStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}

// eventTypes are the conditions whose changes are recorded as events.
var eventTypes = []string{edgev1.ConditionHubReady, edgev1.ConditionNodesConverted, edgev1.ConditionTunnelConnected, edgev1.ConditionReady}

// transitions returns the conditions in next whose status differs from
// prev (a condition absent from prev counts as changed).
func transitions(prev, next []metav1.Condition) []metav1.Condition {
	var out []metav1.Condition
	for _, t := range eventTypes {
		n := meta.FindStatusCondition(next, t)
		if n == nil {
			continue
		}
		if p := meta.FindStatusCondition(prev, t); p == nil || p.Status != n.Status {
			out = append(out, *n)
		}
	}
	return out
}

func eventType(c metav1.Condition) string {
	if c.Status == metav1.ConditionTrue || c.Reason == edgev1.ReasonProgressing || c.Reason == edgev1.ReasonDisabled {
		return corev1.EventTypeNormal
	}
	return corev1.EventTypeWarning
}
