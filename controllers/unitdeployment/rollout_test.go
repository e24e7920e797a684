package unitdeployment

import (
	"errors"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// dep is an instance at revision rev; done says whether its own rollout
// is complete.
func dep(rev string, done bool) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Generation: 2, Annotations: map[string]string{edgev1.AnnotationRevision: rev}},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
	}
	if done {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 2}
	} else {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 3, UpdatedReplicas: 1, ReadyReplicas: 2, AvailableReplicas: 2}
	}
	return d
}

// unit is a found, reachable unit with one node.
func unit(name string, d *appsv1.Deployment) unitState {
	return unitState{Unit: Unit{Name: name}, found: true, nodes: 1, instance: d}
}

func TestPlan(t *testing.T) {
	tests := map[string]struct {
		rollout edgev1.UnitRolloutSpec
		units   []unitState
		want    []string
	}{
		"new units get an instance at once, whatever the budget": {
			rollout: edgev1.UnitRolloutSpec{MaxUnavailableUnits: 1},
			units:   []unitState{unit("a", nil), unit("b", nil), unit("c", dep("old", false))},
			want:    []string{"a", "b", "c"},
		},
		"outdated units move maxUnavailableUnits at a time, in unit order": {
			rollout: edgev1.UnitRolloutSpec{MaxUnavailableUnits: 2},
			units:   []unitState{unit("a", dep("old", true)), unit("b", dep("old", true)), unit("c", dep("old", true)), unit("d", dep("old", true))},
			want:    []string{"a", "b"},
		},
		"units still rolling take the budget": {
			rollout: edgev1.UnitRolloutSpec{MaxUnavailableUnits: 2},
			units:   []unitState{unit("a", dep("new", false)), unit("b", dep("new", true)), unit("c", dep("old", true)), unit("d", dep("old", true))},
			want:    []string{"a", "b", "c"},
		},
		"an unavailable outdated unit is updated without taking budget": {
			rollout: edgev1.UnitRolloutSpec{MaxUnavailableUnits: 1},
			units:   []unitState{unit("a", dep("new", false)), unit("b", dep("old", false)), unit("c", dep("old", true))},
			want:    []string{"a", "b"},
		},
		"unreachable units wait and do not hold the others back": {
			rollout: edgev1.UnitRolloutSpec{MaxUnavailableUnits: 1},
			units: []unitState{
				{Unit: Unit{Name: "a"}, found: true, nodes: 3, unreachable: true, instance: dep("old", false)},
				unit("b", dep("old", true)), unit("c", dep("old", true)),
			},
			want: []string{"b"},
		},
		"a unit with no nodes is updated at once": {
			rollout: edgev1.UnitRolloutSpec{MaxUnavailableUnits: 1},
			units:   []unitState{{Unit: Unit{Name: "a"}, found: true, instance: dep("old", false)}, unit("b", dep("old", true)), unit("c", dep("old", true))},
			want:    []string{"a", "b"},
		},
		"paused holds outdated instances, not new ones": {
			rollout: edgev1.UnitRolloutSpec{MaxUnavailableUnits: 5, Paused: true},
			units:   []unitState{unit("a", dep("old", true)), unit("b", nil), unit("c", dep("new", true))},
			want:    []string{"b", "c"},
		},
		"missing, conflicting and unrenderable units are skipped": {
			rollout: edgev1.UnitRolloutSpec{MaxUnavailableUnits: 5},
			units: []unitState{
				{Unit: Unit{Name: "a"}},
				{Unit: Unit{Name: "b"}, found: true, nodes: 1, conflict: true},
				{Unit: Unit{Name: "c"}, found: true, nodes: 1, renderErr: errors.New("bad patch")},
				unit("d", nil),
			},
			want: []string{"d"},
		},
		"a zero budget still allows one unit": {
			units: []unitState{unit("a", dep("old", true)), unit("b", dep("old", true))},
			want:  []string{"a"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := plan(tc.rollout, "new", tc.units); !slices.Equal(got, tc.want) {
				t.Errorf("plan = %v, want %v", got, tc.want)
			}
		})
	}
}
