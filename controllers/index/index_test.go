package index

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func TestOwnerOf(t *testing.T) {
	t0 := metav1.NewTime(time.Unix(1000, 0))
	t1 := metav1.NewTime(time.Unix(2000, 0))
	unit := func(name string, created metav1.Time, deleting bool, pools ...string) edgev1.EdgeUnit {
		u := edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: created}, Spec: edgev1.EdgeUnitSpec{NodePools: pools}}
		if deleting {
			u.DeletionTimestamp = &t1
		}
		return u
	}
	tests := map[string]struct {
		units []edgev1.EdgeUnit
		want  string
	}{
		"no unit":                         {units: []edgev1.EdgeUnit{unit("a", t0, false, "other")}, want: ""},
		"single claim":                    {units: []edgev1.EdgeUnit{unit("a", t0, false, "p")}, want: "a"},
		"older unit wins":                 {units: []edgev1.EdgeUnit{unit("young", t1, false, "p"), unit("old", t0, false, "p")}, want: "old"},
		"name breaks ties":                {units: []edgev1.EdgeUnit{unit("b", t0, false, "p"), unit("a", t0, false, "p")}, want: "a"},
		"deleting unit releases the pool": {units: []edgev1.EdgeUnit{unit("old", t0, true, "p"), unit("young", t1, false, "p")}, want: "young"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := ""
			if u := OwnerOf(tc.units, "p"); u != nil {
				got = u.Name
			}
			if got != tc.want {
				t.Errorf("owner = %q, want %q", got, tc.want)
			}
		})
	}
}
