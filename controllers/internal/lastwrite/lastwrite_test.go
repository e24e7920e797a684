package lastwrite

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func TestMemory(t *testing.T) {
	var m Memory[edgev1.NodePoolStatus, *edgev1.NodePoolStatus]
	pool := func(rv string, nodes int32, finalizers ...string) *edgev1.NodePool {
		return &edgev1.NodePool{
			ObjectMeta: metav1.ObjectMeta{Name: "p", ResourceVersion: rv, Finalizers: finalizers},
			Status:     edgev1.NodePoolStatus{NodeCount: nodes},
		}
	}
	// A pass at version 1 writes status and finalizer (versions 2, 3).
	p := pool("1", 0)
	w := m.Freshen(p, &p.Status)
	w.Supersede("1")
	p.Finalizers, p.Status.NodeCount = []string{"f"}, 3
	m.Remember(p, &p.Status, w)

	// The cache still shows version 1: what was written stands in.
	cached := pool("1", 0)
	m.Freshen(cached, &cached.Status)
	if cached.Status.NodeCount != 3 || len(cached.Finalizers) != 1 || cached.Finalizers[0] != "f" {
		t.Errorf("superseded version after Freshen: %+v, want the written status and finalizer", cached)
	}
	// The cache has caught up (version 4): it is kept as read.
	fresh := pool("4", 5, "g")
	m.Freshen(fresh, &fresh.Status)
	if fresh.Status.NodeCount != 5 || len(fresh.Finalizers) != 1 || fresh.Finalizers[0] != "g" {
		t.Errorf("newer version after Freshen: %+v, want it unchanged", fresh)
	}
	// A newer version made Freshen forget: version 1 is read as it is.
	stale := pool("1", 0)
	m.Freshen(stale, &stale.Status)
	if stale.Status.NodeCount != 0 || stale.Finalizers != nil {
		t.Errorf("after a newer version was seen, Freshen changed version 1: %+v", stale)
	}
	// The remembered status is a copy: the caller's later edits don't leak in.
	m2 := Memory[edgev1.NodePoolStatus, *edgev1.NodePoolStatus]{}
	q := pool("1", 1)
	w = m2.Freshen(q, &q.Status)
	w.Supersede("1")
	q.Status.Conditions = []metav1.Condition{{Type: "Ready"}}
	m2.Remember(q, &q.Status, w)
	q.Status.Conditions[0].Type = "Changed"
	r := pool("1", 0)
	m2.Freshen(r, &r.Status)
	if len(r.Status.Conditions) != 1 || r.Status.Conditions[0].Type != "Ready" {
		t.Errorf("remembered conditions = %+v, want the copy taken at Remember", r.Status.Conditions)
	}
}
