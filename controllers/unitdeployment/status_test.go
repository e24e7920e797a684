package unitdeployment

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func cond(t, status, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: t, Status: metav1.ConditionStatus(status), Reason: reason, Message: msg, ObservedGeneration: 3}
}

func TestComputeStatusConditions(t *testing.T) {
	tests := map[string]struct {
		paused bool
		units  []unitState
		want   []metav1.Condition
	}{
		"every unit rolled out": {
			units: []unitState{unit("a", dep("new", true)), unit("b", dep("new", true))},
			want: []metav1.Condition{
				cond("Progressing", "False", "RolledOut", "Every unit runs revision new"),
				cond("Available", "True", "Available", "Every replica is available (reachable units with nodes: 2)"),
				cond("Ready", "True", "RolledOut", "2 units run revision new with every replica available"),
			},
		},
		"rolling out": {
			units: []unitState{unit("a", dep("new", false)), unit("b", dep("old", true))},
			want: []metav1.Condition{
				cond("Progressing", "True", "RollingOut", "Revision new is rolling out (maxUnavailableUnits 1); not done in a, b"),
				cond("Available", "True", "Available", "Every replica is available (reachable units with nodes: 2)"),
				cond("Ready", "False", "RollingOut", "Revision new is rolling out (maxUnavailableUnits 1); not done in a, b"),
			},
		},
		"paused": {
			paused: true,
			units:  []unitState{unit("a", dep("new", true)), unit("b", dep("old", true))},
			want: []metav1.Condition{
				cond("Progressing", "False", "Paused", "spec.rollout.paused holds b at an older revision"),
				cond("Available", "True", "Available", "Every replica is available (reachable units with nodes: 2)"),
				cond("Ready", "False", "Paused", "spec.rollout.paused holds b at an older revision"),
			},
		},
		"waiting on an unreachable unit; an empty unit is reported": {
			units: []unitState{
				unit("a", dep("new", true)),
				{Unit: Unit{Name: "b"}, found: true, nodes: 2, unreachable: true, instance: dep("old", false)},
				{Unit: Unit{Name: "c"}, found: true, instance: dep("new", false)},
			},
			want: []metav1.Condition{
				cond("Progressing", "True", "WaitingOnUnreachable", "Every other unit runs revision new; waiting for the nodes of b to be reachable again"),
				cond("Available", "True", "Available", "Every replica is available (reachable units with nodes: 1); units with no nodes: c"),
				cond("Ready", "False", "WaitingOnUnreachable", "Every other unit runs revision new; waiting for the nodes of b to be reachable again"),
			},
		},
		"a named unit is missing": {
			units: []unitState{{Unit: Unit{Name: "gone"}}, unit("a", dep("new", true))},
			want: []metav1.Condition{
				cond("Progressing", "False", "RolledOut", "Every unit runs revision new"),
				cond("Available", "True", "Available", "Every replica is available (reachable units with nodes: 1)"),
				cond("Ready", "False", "UnitNotFound", "spec.units names EdgeUnits that do not exist: gone"),
			},
		},
		"an override breaks a unit's instance": {
			units: []unitState{{Unit: Unit{Name: "a"}, found: true, nodes: 1, renderErr: errors.New("spec.overrides[0]: bad")}},
			want: []metav1.Condition{
				cond("Progressing", "False", "RolledOut", "Every unit runs revision new"),
				cond("Available", "False", "Unavailable", "Not every replica is available in a"),
				cond("Ready", "False", "Invalid", "The instance cannot be rendered for a (spec.overrides[0]: bad)"),
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ud := &edgev1.UnitDeployment{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
			ud.Spec.Rollout.Paused = tc.paused
			st := computeStatus(ud, &observed{revision: "new", units: tc.units}, nil)
			for i := range st.Conditions {
				st.Conditions[i].LastTransitionTime = metav1.Time{}
			}
			if !equality.Semantic.DeepEqual(st.Conditions, tc.want) {
				t.Errorf("conditions\n got %+v\nwant %+v", st.Conditions, tc.want)
			}
		})
	}
}

func TestComputeStatusCounts(t *testing.T) {
	ud := &edgev1.UnitDeployment{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
	units := []unitState{
		unit("a", dep("new", true)),
		unit("b", dep("old", true)),
		{Unit: Unit{Name: "c"}, found: true, nodes: 4, unreachable: true},
		{Unit: Unit{Name: "gone"}},
	}
	st := computeStatus(ud, &observed{revision: "new", units: units}, nil)
	want := []edgev1.UnitInstanceStatus{
		{Unit: "a", Nodes: 1, Replicas: 2, ReadyReplicas: 2, UpdatedReplicas: 2, Revision: "new"},
		{Unit: "b", Nodes: 1, Replicas: 2, ReadyReplicas: 2, Revision: "old"},
		{Unit: "c", Nodes: 4, Unreachable: true},
	}
	if !equality.Semantic.DeepEqual(st.Instances, want) {
		t.Errorf("instances\n got %+v\nwant %+v", st.Instances, want)
	}
	if st.Units != 3 || st.UpdatedUnits != 1 || st.ReadyUnits != 1 || st.Replicas != 4 || st.ReadyReplicas != 4 || st.UpdatedReplicas != 2 ||
		st.UpdateRevision != "new" || st.ObservedGeneration != 3 {
		t.Errorf("totals %+v", st)
	}

	// A failed pass keeps the status and turns only Ready.
	failed := ud.DeepCopy()
	failed.Generation = 4
	failed.Status = st
	next := computeStatus(failed, &observed{}, errors.New("apiserver down"))
	if next.ObservedGeneration != 3 || !equality.Semantic.DeepEqual(next.Instances, st.Instances) {
		t.Errorf("a failed pass changed the status: %+v", next)
	}
	ready := meta.FindStatusCondition(next.Conditions, edgev1.ConditionReady)
	if ready.Status != metav1.ConditionFalse || ready.Reason != edgev1.ReasonSyncFailed || ready.Message != "apiserver down" {
		t.Errorf("Ready %+v", ready)
	}
}
