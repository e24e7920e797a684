// Package conditions holds what the controllers share for the conditions
// and lists they write into status: lookups and bounded name lists.
package conditions

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// FirstN is s, or its first n entries and "and <k> more": names listed in a
// condition message or status stay bounded whatever their number.
func FirstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

// MaxMessage bounds a condition message (the API allows 32768).
const MaxMessage = 1024

// Truncate bounds a condition message to MaxMessage bytes.
func Truncate(s string) string {
	if len(s) <= MaxMessage {
		return s
	}
	return s[:MaxMessage-3] + "..."
}

// Find is the condition of type t, or one of that type with status
// Unknown.
func Find(conds []metav1.Condition, t string) metav1.Condition {
	if c := meta.FindStatusCondition(conds, t); c != nil {
		return *c
	}
	return metav1.Condition{Type: t, Status: metav1.ConditionUnknown}
}

// IsReady says whether the Ready condition is True.
func IsReady(conds []metav1.Condition) bool {
	return meta.IsStatusConditionTrue(conds, edgev1.ConditionReady)
}
