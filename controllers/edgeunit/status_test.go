package edgeunit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func daemonSetWith(desired, ready, updated int32) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "edgeunit-system", Name: "ds", Generation: 1},
		Status: appsv1.DaemonSetStatus{
			ObservedGeneration: 1, DesiredNumberScheduled: desired, NumberReady: ready, UpdatedNumberScheduled: updated,
		},
	}
}

func connected(te *edgev1.TunnelEndpoint, nodes ...string) *edgev1.TunnelEndpoint {
	for _, n := range nodes {
		te.Status.Agents = append(te.Status.Agents, edgev1.ConnectedAgent{Node: n, Servers: 2})
	}
	te.Status.ConnectedAgents = int32(len(te.Status.Agents))
	return te
}

type wantCond struct {
	status metav1.ConditionStatus
	reason string
	// message must contain each of these.
	message []string
}

func TestComputeStatus(t *testing.T) {
	twoNodes := []string{"edge-1", "edge-2"}
	tests := map[string]struct {
		unit      *edgev1.EdgeUnit
		obs       observed
		err       error
		wantNodes int32
		wantHub   edgev1.RolloutStatus
		want      map[string]wantCond
	}{
		"no nodes yet": {
			unit: testUnit(),
			obs:  observed{hub: daemonSetWith(0, 0, 0)},
			want: map[string]wantCond{
				edgev1.ConditionHubReady:        {metav1.ConditionFalse, edgev1.ReasonNoNodes, []string{edgev1.LabelNodePool}},
				edgev1.ConditionTunnelConnected: {metav1.ConditionFalse, edgev1.ReasonDisabled, []string{"spec.tunnel"}},
				edgev1.ConditionReady:           {metav1.ConditionFalse, edgev1.ReasonNoNodes, nil},
			},
		},
		"hub everywhere, no tunnel": {
			unit:      testUnit(),
			obs:       observed{nodes: twoNodes, hub: daemonSetWith(2, 2, 2)},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 2, Updated: 2},
			want: map[string]wantCond{
				edgev1.ConditionHubReady:           {metav1.ConditionTrue, edgev1.ReasonAvailable, []string{"all 2 nodes"}},
				edgev1.ConditionTunnelConnected:    {metav1.ConditionFalse, edgev1.ReasonDisabled, nil},
				edgev1.ConditionTopologyProgrammed: {metav1.ConditionTrue, "Annotated", nil},
				edgev1.ConditionReady:              {metav1.ConditionTrue, edgev1.ReasonComponentsReady, nil},
			},
		},
		"every node converted": {
			unit: testUnit(),
			obs: observed{nodes: twoNodes, hub: daemonSetWith(2, 2, 2),
				conversion: map[edgev1.ConversionPhase][]string{edgev1.ConversionConverted: twoNodes}},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 2, Updated: 2},
			want: map[string]wantCond{
				edgev1.ConditionNodesConverted: {metav1.ConditionTrue, edgev1.ReasonConverted, []string{"all 2 nodes"}},
			},
		},
		"a node converting": {
			unit: testUnit(),
			obs: observed{nodes: twoNodes, hub: daemonSetWith(2, 2, 2),
				conversion: map[edgev1.ConversionPhase][]string{edgev1.ConversionConverted: {"edge-1"}, edgev1.ConversionConverting: {"edge-2"}}},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 2, Updated: 2},
			want: map[string]wantCond{
				edgev1.ConditionNodesConverted: {metav1.ConditionFalse, edgev1.ReasonConverting, []string{"1 of 2 nodes converted", "waiting for edge-2"}},
				// Conversion does not gate Ready.
				edgev1.ConditionReady: {metav1.ConditionTrue, edgev1.ReasonComponentsReady, nil},
			},
		},
		"a node rolled back": {
			unit: testUnit(),
			obs: observed{nodes: twoNodes, hub: daemonSetWith(2, 2, 2),
				conversion: map[edgev1.ConversionPhase][]string{edgev1.ConversionConverted: {"edge-1"}, edgev1.ConversionRolledBack: {"edge-2"}}},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 2, Updated: 2},
			want: map[string]wantCond{
				edgev1.ConditionNodesConverted: {metav1.ConditionFalse, edgev1.ReasonRolledBack, []string{"rolled back on edge-2", edgev1.AnnotationConversionMessage}},
			},
		},
		"manual conversion": {
			unit: func() *edgev1.EdgeUnit {
				u := testUnit()
				u.Spec.Hub.NodeConversion = edgev1.NodeConversionManual
				return u
			}(),
			obs:       observed{nodes: twoNodes, hub: daemonSetWith(2, 2, 2)},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 2, Updated: 2},
			want: map[string]wantCond{
				edgev1.ConditionNodesConverted: {metav1.ConditionFalse, edgev1.ReasonManual, []string{"0 of 2 nodes converted", "edge-hub convert"}},
			},
		},
		"hub rolling out": {
			unit:      testUnit(),
			obs:       observed{nodes: twoNodes, hub: daemonSetWith(2, 1, 2)},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 1, Updated: 2},
			want: map[string]wantCond{
				edgev1.ConditionHubReady: {metav1.ConditionFalse, edgev1.ReasonProgressing, []string{"ready on 1 of 2"}},
				edgev1.ConditionReady:    {metav1.ConditionFalse, edgev1.ReasonProgressing, []string{"HubReady: "}},
			},
		},
		"node not labelled into the unit yet": {
			unit:      testUnit(),
			obs:       observed{nodes: twoNodes, hub: daemonSetWith(1, 1, 1)},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 1, Ready: 1, Updated: 1},
			want: map[string]wantCond{
				edgev1.ConditionHubReady: {metav1.ConditionFalse, edgev1.ReasonProgressing, []string{"scheduled on 1"}},
			},
		},
		"DaemonSet spec not observed": {
			unit: testUnit(),
			obs: observed{nodes: twoNodes, hub: func() *appsv1.DaemonSet {
				ds := daemonSetWith(2, 2, 2)
				ds.Generation = 2
				return ds
			}()},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 2},
			want: map[string]wantCond{
				edgev1.ConditionHubReady: {metav1.ConditionFalse, edgev1.ReasonProgressing, []string{"latest spec"}},
			},
		},
		"endpoint missing": {
			unit:      testUnit(withTunnel),
			obs:       observed{nodes: twoNodes, hub: daemonSetWith(2, 2, 2), endpointMissing: true},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 2, Updated: 2},
			want: map[string]wantCond{
				edgev1.ConditionTunnelConnected: {metav1.ConditionFalse, edgev1.ReasonNotFound, []string{`TunnelEndpoint "tunnel"`, "spec.tunnel.endpoint"}},
				edgev1.ConditionReady:           {metav1.ConditionFalse, edgev1.ReasonNotFound, []string{"TunnelConnected: "}},
			},
		},
		"endpoint without addresses": {
			unit:      testUnit(withTunnel),
			obs:       observed{nodes: twoNodes, hub: daemonSetWith(2, 2, 2), endpoint: testEndpoint()},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 2, Updated: 2},
			want: map[string]wantCond{
				edgev1.ConditionTunnelConnected: {metav1.ConditionFalse, edgev1.ReasonProgressing, []string{"no address"}},
			},
		},
		"one agent not connected": {
			unit:      testUnit(withTunnel),
			obs:       observed{nodes: twoNodes, hub: daemonSetWith(2, 2, 2), agent: daemonSetWith(2, 2, 2), endpoint: connected(testEndpoint("a"), "edge-1", "cloud-9")},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 2, Updated: 2},
			want: map[string]wantCond{
				edgev1.ConditionTunnelConnected: {metav1.ConditionFalse, edgev1.ReasonNotConnected, []string{"1 of 2", "not connected: edge-2"}},
				edgev1.ConditionReady:           {metav1.ConditionFalse, edgev1.ReasonNotConnected, nil},
			},
		},
		"every agent connected": {
			unit:      testUnit(withTunnel),
			obs:       observed{nodes: twoNodes, hub: daemonSetWith(2, 2, 2), agent: daemonSetWith(2, 2, 2), endpoint: connected(testEndpoint("a"), "edge-1", "edge-2")},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 2, Updated: 2},
			want: map[string]wantCond{
				edgev1.ConditionTunnelConnected: {metav1.ConditionTrue, edgev1.ReasonConnected, []string{"All 2"}},
				edgev1.ConditionReady:           {metav1.ConditionTrue, edgev1.ReasonComponentsReady, []string{"agents are connected"}},
			},
		},
		"pool owned by another unit": {
			unit:      testUnit(),
			obs:       observed{nodes: twoNodes, hub: daemonSetWith(2, 2, 2), claimed: map[string]string{"factory-b": "older"}},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 2, Updated: 2},
			want: map[string]wantCond{
				edgev1.ConditionHubReady: {metav1.ConditionTrue, edgev1.ReasonAvailable, nil},
				edgev1.ConditionReady:    {metav1.ConditionFalse, edgev1.ReasonPoolClaimed, []string{"factory-b (owned by EdgeUnit older)"}},
			},
		},
		"topology never overclaims": {
			unit: testUnit(func(u *edgev1.EdgeUnit) {
				u.Spec.ServiceTopology.Mode = edgev1.TopologyAllServices
				u.Spec.NetworkAutonomy.StablePodIPs = true
			}),
			obs:       observed{nodes: twoNodes, hub: daemonSetWith(2, 2, 2)},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 2, Updated: 2},
			want: map[string]wantCond{
				edgev1.ConditionTopologyProgrammed: {metav1.ConditionFalse, "AllServices", nil},
				edgev1.ConditionReady:              {metav1.ConditionTrue, edgev1.ReasonComponentsReady, nil},
			},
		},
		"topology disabled": {
			unit:      testUnit(func(u *edgev1.EdgeUnit) { u.Spec.ServiceTopology.Mode = edgev1.TopologyDisabled }),
			obs:       observed{nodes: twoNodes, hub: daemonSetWith(2, 2, 2)},
			wantNodes: 2, wantHub: edgev1.RolloutStatus{Desired: 2, Ready: 2, Updated: 2},
			want: map[string]wantCond{
				edgev1.ConditionTopologyProgrammed: {metav1.ConditionFalse, "Disabled", nil},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			st := computeStatus(tc.unit, &tc.obs, tc.err)
			if st.ObservedGeneration != tc.unit.Generation {
				t.Errorf("observedGeneration = %d, want %d", st.ObservedGeneration, tc.unit.Generation)
			}
			if st.NodeCount != tc.wantNodes || st.Hub != tc.wantHub {
				t.Errorf("nodeCount %d hub %+v, want %d %+v", st.NodeCount, st.Hub, tc.wantNodes, tc.wantHub)
			}
			checkConditions(t, st.Conditions, tc.want, tc.unit.Generation)

			// Same inputs, same status: no second write.
			u := tc.unit.DeepCopy()
			u.Status = st
			if again := computeStatus(u, &tc.obs, nil); !statusEqual(st, again) {
				t.Errorf("recomputing changed the status:\n%+v\n%+v", st, again)
			}
		})
	}
}

// NetworkBound is the bindings controller's: computeStatus neither sets it
// nor drops it, and the apply configuration leaves it out, with the
// bindings.
func TestNetworkBoundIsLeftToTheBindingsController(t *testing.T) {
	for name, na := range map[string]edgev1.NetworkAutonomySpec{
		"off": {},
		"on":  {StablePodIPs: true, StableVTEPMAC: true, VTEPDevice: "flannel.1"},
	} {
		t.Run(name, func(t *testing.T) {
			u := testUnit(func(u *edgev1.EdgeUnit) { u.Spec.NetworkAutonomy = na })
			obs := &observed{nodes: []string{"edge-1"}, hub: daemonSetWith(1, 1, 1)}
			if c := meta.FindStatusCondition(computeStatus(u, obs, nil).Conditions, edgev1.ConditionNetworkBound); c != nil {
				t.Errorf("computeStatus set %s: %+v", c.Type, *c)
			}

			theirs := metav1.Condition{Type: edgev1.ConditionNetworkBound, Status: metav1.ConditionTrue, Reason: edgev1.ReasonSynced, ObservedGeneration: u.Generation}
			u.Status.Conditions = []metav1.Condition{theirs}
			u.Status.Bindings = []edgev1.NodeBinding{{Node: "edge-1", VTEPMAC: "02:00:00:00:00:01"}}
			st := computeStatus(u, obs, nil)
			if c := meta.FindStatusCondition(st.Conditions, edgev1.ConditionNetworkBound); c == nil || *c != theirs {
				t.Errorf("computeStatus changed the bindings controller's condition: %+v", c)
			}
			apply := newStatusApply(u.Name, st)
			var types []string
			for _, c := range apply.Status.Conditions {
				types = append(types, c.Type)
			}
			if strings.Join(types, ",") != "HubReady,NodesConverted,TunnelConnected,TopologyProgrammed,Ready" {
				t.Errorf("applied conditions %v, want only the EdgeUnit controller's", types)
			}
			raw, err := json.Marshal(apply)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(raw), "bindings") || strings.Contains(string(raw), edgev1.ConditionNetworkBound) {
				t.Errorf("apply configuration carries the bindings controller's fields: %s", raw)
			}
		})
	}
}

func checkConditions(t *testing.T, conds []metav1.Condition, want map[string]wantCond, gen int64) {
	t.Helper()
	for typ, w := range want {
		c := meta.FindStatusCondition(conds, typ)
		if c == nil {
			t.Errorf("condition %s missing", typ)
			continue
		}
		if c.Status != w.status || c.Reason != w.reason {
			t.Errorf("%s = %s/%s (%s), want %s/%s", typ, c.Status, c.Reason, c.Message, w.status, w.reason)
		}
		for _, m := range w.message {
			if !strings.Contains(c.Message, m) {
				t.Errorf("%s message %q lacks %q", typ, c.Message, m)
			}
		}
		if gen >= 0 && c.ObservedGeneration != gen {
			t.Errorf("%s observedGeneration = %d, want %d", typ, c.ObservedGeneration, gen)
		}
	}
}

func TestComputeStatusOnFailureKeepsObservedGeneration(t *testing.T) {
	u := testUnit()
	u.Status = computeStatus(u, &observed{nodes: []string{"edge-1"}, hub: daemonSetWith(1, 1, 1)}, nil)
	u.Generation++
	st := computeStatus(u, &observed{}, errors.New("applying DaemonSet: boom"))
	if st.ObservedGeneration != u.Generation-1 {
		t.Errorf("observedGeneration = %d after a failed pass, want the last good %d", st.ObservedGeneration, u.Generation-1)
	}
	if st.NodeCount != 1 || st.Hub.Ready != 1 {
		t.Errorf("failed pass dropped the last observation: %+v", st)
	}
	checkConditions(t, st.Conditions, map[string]wantCond{
		edgev1.ConditionReady:    {metav1.ConditionFalse, edgev1.ReasonSyncFailed, []string{"boom"}},
		edgev1.ConditionHubReady: {metav1.ConditionTrue, edgev1.ReasonAvailable, nil},
	}, -1)
}

func TestTransitions(t *testing.T) {
	cond := func(typ string, s metav1.ConditionStatus, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: s, Reason: "R", Message: msg}
	}
	tests := map[string]struct {
		prev, next []metav1.Condition
		want       []string
	}{
		"first status": {
			next: []metav1.Condition{cond("Ready", "False", ""), cond("HubReady", "False", ""), cond("NetworkBound", "Unknown", "")},
			want: []string{"HubReady", "Ready"},
		},
		"message only": {
			prev: []metav1.Condition{cond("Ready", "False", "1 of 2")},
			next: []metav1.Condition{cond("Ready", "False", "2 of 3")},
		},
		"status flips": {
			prev: []metav1.Condition{cond("Ready", "False", ""), cond("TunnelConnected", "True", "")},
			next: []metav1.Condition{cond("Ready", "True", ""), cond("TunnelConnected", "False", "")},
			want: []string{"TunnelConnected", "Ready"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, c := range transitions(tc.prev, tc.next) {
				got = append(got, c.Type)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("transitions = %v, want %v", got, tc.want)
			}
		})
	}
}
