package nodepool

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/internal/conditions"
)

func ptr(s string) *string { return &s }

func testPool() *edgev1.NodePool {
	return &edgev1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: "site-a", Generation: 3},
		Spec: edgev1.NodePoolSpec{
			Type:        edgev1.NodePoolEdge,
			Labels:      map[string]string{"site": "a"},
			Annotations: map[string]string{"owner": "ops"},
			Taints:      []edgev1.NodePoolTaint{{Key: "edge", Value: "true", Effect: "NoSchedule"}},
			Autonomy:    &edgev1.AutonomySpec{Enabled: true, Duration: &metav1.Duration{Duration: time.Hour}},
		},
	}
}

func TestDesiredForPool(t *testing.T) {
	tests := map[string]struct {
		pool       *edgev1.NodePool
		wantLabels map[string]string
		wantAnnots map[string]string
		wantTaints int
		wantPool   string
		unit       string
	}{
		"unit label and topology zone": {
			pool:       &edgev1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: edgev1.NodePoolSpec{Type: edgev1.NodePoolCloud}},
			unit:       "u1",
			wantPool:   "c",
			wantLabels: map[string]string{edgev1.LabelPoolType: "cloud", edgev1.LabelUnit: "u1", corev1.LabelTopologyZone: "u1"},
			wantAnnots: map[string]string{},
		},
		"nil pool wants nothing": {pool: nil},
		"deleting pool wants nothing": {pool: func() *edgev1.NodePool {
			p := testPool()
			p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
			return p
		}()},
		"edge pool with bounded autonomy": {
			pool:       testPool(),
			wantPool:   "site-a",
			wantLabels: map[string]string{"site": "a", edgev1.LabelPoolType: "edge", edgev1.LabelAutonomy: "true"},
			wantAnnots: map[string]string{"owner": "ops", edgev1.AnnotationAutonomyDuration: "1h0m0s"},
			wantTaints: 1,
		},
		"unbounded autonomy": {
			pool: func() *edgev1.NodePool {
				p := testPool()
				p.Spec.Autonomy.Duration = nil
				return p
			}(),
			wantPool:   "site-a",
			wantLabels: map[string]string{"site": "a", edgev1.LabelPoolType: "edge", edgev1.LabelAutonomy: "true"},
			wantAnnots: map[string]string{"owner": "ops", edgev1.AnnotationAutonomyDuration: edgev1.AutonomyUnbounded},
			wantTaints: 1,
		},
		"cloud pool, defaults": {
			pool:       &edgev1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: edgev1.NodePoolSpec{Type: edgev1.NodePoolCloud}},
			wantPool:   "c",
			wantLabels: map[string]string{edgev1.LabelPoolType: "cloud"},
			wantAnnots: map[string]string{},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := desiredForPool(tc.pool, tc.unit)
			if d.pool != tc.wantPool {
				t.Errorf("pool = %q, want %q", d.pool, tc.wantPool)
			}
			if !mapsEqual(d.labels, tc.wantLabels) {
				t.Errorf("labels = %v, want %v", d.labels, tc.wantLabels)
			}
			if !mapsEqual(d.annotations, tc.wantAnnots) {
				t.Errorf("annotations = %v, want %v", d.annotations, tc.wantAnnots)
			}
			if len(d.taints) != tc.wantTaints {
				t.Errorf("taints = %v, want %d", d.taints, tc.wantTaints)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func record(t *testing.T, r managedRecord) string {
	t.Helper()
	return encodeRecord(r)
}

func TestPlanNode(t *testing.T) {
	want := desiredForPool(testPool(), "")
	owned := managedRecord{
		Pool:        "site-a",
		Labels:      []string{"site", "old", edgev1.LabelPoolType, edgev1.LabelAutonomy},
		Annotations: []string{"owner", edgev1.AnnotationAutonomyDuration},
		Taints:      []taintKey{{Key: "edge", Effect: corev1.TaintEffectNoSchedule}},
	}
	synced := func() *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:   "n1",
				Labels: map[string]string{"site": "a", edgev1.LabelPoolType: "edge", edgev1.LabelAutonomy: "true", "mine": "x"},
				Annotations: map[string]string{"owner": "ops", edgev1.AnnotationAutonomyDuration: "1h0m0s",
					edgev1.AnnotationManaged: record(t, managedRecord{Pool: "site-a", Labels: []string{"site", edgev1.LabelPoolType, edgev1.LabelAutonomy}, Annotations: []string{"owner", edgev1.AnnotationAutonomyDuration}, Taints: []taintKey{{Key: "edge", Effect: corev1.TaintEffectNoSchedule}}})},
			},
			Spec: corev1.NodeSpec{Taints: []corev1.Taint{
				{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoExecute},
				{Key: "edge", Value: "true", Effect: corev1.TaintEffectNoSchedule},
			}},
		}
	}
	tests := map[string]struct {
		node          func() *corev1.Node
		want          desiredKeys
		prev          managedRecord
		wantEmpty     bool
		wantLabels    map[string]*string
		wantTaints    []string
		wantConflicts []string
	}{
		"synced node needs nothing": {
			node: synced, want: want, prev: owned, wantEmpty: true,
		},
		"bare node gets everything": {
			node:       func() *corev1.Node { return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}} },
			want:       want,
			wantLabels: map[string]*string{"site": ptr("a"), edgev1.LabelPoolType: ptr("edge"), edgev1.LabelAutonomy: ptr("true")},
			wantTaints: []string{"edge:NoSchedule"},
		},
		"a key set by another writer is reported, not overwritten": {
			node: func() *corev1.Node {
				return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"site": "b"}}}
			},
			want:          want,
			wantLabels:    map[string]*string{edgev1.LabelPoolType: ptr("edge"), edgev1.LabelAutonomy: ptr("true")},
			wantTaints:    []string{"edge:NoSchedule"},
			wantConflicts: []string{"label site"},
		},
		"a key we set is brought back to the pool's value": {
			node: func() *corev1.Node {
				n := synced()
				n.Labels["site"] = "changed"
				return n
			},
			want: want, prev: owned,
			wantLabels: map[string]*string{"site": ptr("a")},
		},
		"leaving the pool removes only our keys": {
			node: synced, want: desiredKeys{}, prev: owned,
			wantLabels: map[string]*string{"site": nil, edgev1.LabelPoolType: nil, edgev1.LabelAutonomy: nil},
			wantTaints: []string{"node.kubernetes.io/not-ready:NoExecute"},
		},
		"a foreign taint with our key and another value is a conflict": {
			node: func() *corev1.Node {
				n := synced()
				n.Spec.Taints[1].Value = "other"
				return n
			},
			want: want, prev: managedRecord{},
			wantTaints:    nil,
			wantConflicts: []string{"taint edge:NoSchedule"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			plan := planNode(tc.node(), tc.want, tc.prev)
			if plan.empty() != tc.wantEmpty {
				t.Fatalf("empty = %v, want %v (plan %+v)", plan.empty(), tc.wantEmpty, plan)
			}
			for k, v := range tc.wantLabels {
				got, ok := plan.labels[k]
				if !ok {
					t.Errorf("label %s not planned", k)
					continue
				}
				if (got == nil) != (v == nil) || (got != nil && *got != *v) {
					t.Errorf("label %s = %v, want %v", k, deref(got), deref(v))
				}
			}
			for k := range plan.labels {
				if _, ok := tc.wantLabels[k]; !ok {
					t.Errorf("unexpected label change %s", k)
				}
			}
			if tc.wantTaints != nil {
				var got []string
				for _, tt := range plan.taints {
					got = append(got, tt.Key+":"+string(tt.Effect))
				}
				if !plan.taintsChanged || len(got) != len(tc.wantTaints) {
					t.Fatalf("taints = %v (changed %v), want %v", got, plan.taintsChanged, tc.wantTaints)
				}
				for i := range got {
					if got[i] != tc.wantTaints[i] {
						t.Errorf("taints = %v, want %v", got, tc.wantTaints)
					}
				}
			}
			if len(plan.conflicts) != len(tc.wantConflicts) {
				t.Fatalf("conflicts = %v, want %v", plan.conflicts, tc.wantConflicts)
			}
			for i := range plan.conflicts {
				if plan.conflicts[i] != tc.wantConflicts[i] {
					t.Errorf("conflicts = %v, want %v", plan.conflicts, tc.wantConflicts)
				}
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return "<remove>"
	}
	return *s
}

func TestMergePatchLocksOnlyTaintChanges(t *testing.T) {
	labelsOnly := nodePlan{labels: map[string]*string{"a": ptr("b"), "gone": nil}}
	raw, err := labelsOnly.mergePatch("42")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	meta := got["metadata"].(map[string]any)
	if _, ok := meta["resourceVersion"]; ok {
		t.Errorf("label-only patch carries a resourceVersion: %s", raw)
	}
	if l := meta["labels"].(map[string]any); l["gone"] != nil || l["a"] != "b" {
		t.Errorf("labels = %v", l)
	}

	withTaints := nodePlan{taintsChanged: true}
	raw, err = withTaints.mergePatch("42")
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got["metadata"].(map[string]any)["resourceVersion"] != "42" {
		t.Errorf("taint patch without resourceVersion: %s", raw)
	}
	spec := got["spec"].(map[string]any)
	if v, ok := spec["taints"]; !ok || v != nil {
		t.Errorf("emptied taints must be sent as null: %s", raw)
	}
}

func TestComputeStatus(t *testing.T) {
	pool := testPool()
	readyNode := func(name string, ready bool) corev1.Node {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		return corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}},
		}
	}
	tests := map[string]struct {
		members    []corev1.Node
		wantReady  metav1.ConditionStatus
		wantReason string
		wantCounts [3]int32
	}{
		"no members": {wantReady: metav1.ConditionTrue, wantReason: edgev1.ReasonNoNodes},
		"unsynced members": {
			members:    []corev1.Node{readyNode("b", true), readyNode("a", false)},
			wantReady:  metav1.ConditionFalse,
			wantReason: edgev1.ReasonSyncing,
			wantCounts: [3]int32{2, 1, 1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			st := computeStatus(pool, "", tc.members)
			if st.ObservedGeneration != 3 {
				t.Errorf("observedGeneration = %d", st.ObservedGeneration)
			}
			if got := [3]int32{st.NodeCount, st.ReadyNodes, st.NotReadyNodes}; got != tc.wantCounts {
				t.Errorf("counts = %v, want %v", got, tc.wantCounts)
			}
			c := conditions.Find(st.Conditions, edgev1.ConditionReady)
			if c.Status != tc.wantReady || c.Reason != tc.wantReason {
				t.Errorf("Ready = %s/%s, want %s/%s", c.Status, c.Reason, tc.wantReady, tc.wantReason)
			}
			if len(st.Nodes) != len(tc.members) {
				t.Errorf("nodes = %v", st.Nodes)
			}
			if len(st.Nodes) == 2 && st.Nodes[0] != "a" {
				t.Errorf("nodes not sorted: %v", st.Nodes)
			}
			// Recomputing from the result must not change it: no status flaps.
			pool2 := pool.DeepCopy()
			pool2.Status = st
			if again := computeStatus(pool2, "", tc.members); !statusEqual(again, st) {
				t.Errorf("status not stable:\n%+v\n%+v", st, again)
			}
		})
	}
}

func TestMemberListIsBounded(t *testing.T) {
	var members []corev1.Node
	for i := 0; i < 150; i++ {
		members = append(members, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: string(rune('a'+i%26)) + string(rune('a'+i/26))}})
	}
	st := computeStatus(testPool(), "", members)
	if len(st.Nodes) != maxListedNodes || st.NodeCount != 150 {
		t.Errorf("nodes listed = %d, count = %d", len(st.Nodes), st.NodeCount)
	}
}
