package conditions

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func TestFirstN(t *testing.T) {
	s := []string{"a", "b", "c", "d"}
	if got := FirstN(s, 2); !slices.Equal(got, []string{"a", "b", "and 2 more"}) {
		t.Errorf("FirstN(4 names, 2) = %q", got)
	}
	if got := FirstN(s, 4); !slices.Equal(got, s) {
		t.Errorf("FirstN(4 names, 4) = %q", got)
	}
	if !slices.Equal(s, []string{"a", "b", "c", "d"}) {
		t.Errorf("FirstN changed its input: %q", s)
	}
}

func TestFindAndIsReady(t *testing.T) {
	conds := []metav1.Condition{{Type: edgev1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ok"}}
	if got := Find(conds, edgev1.ConditionReady); got != conds[0] {
		t.Errorf("Find(Ready) = %+v, want %+v", got, conds[0])
	}
	if got := Find(conds, "Other"); got != (metav1.Condition{Type: "Other", Status: metav1.ConditionUnknown}) {
		t.Errorf("Find(missing) = %+v, want Unknown", got)
	}
	if !IsReady(conds) || IsReady(nil) {
		t.Error("IsReady does not follow the Ready condition")
	}
}
