// Package lastwrite remembers, per object, what the server holds after a
// reconciler's last writes and the resourceVersions those writes
// superseded. Events can requeue an object before the cache has seen the
// reconciler's own write; while the cache still shows a superseded
// version, the remembered status and finalizers stand in, so the same
// status is never written twice and a finalizer patch never conflicts.
package lastwrite

import (
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// State is what a reconciler wrote to one object.
type State[S any] struct {
	superseded map[string]bool
	status     S
	finalizers []string
}

// Supersede records that a write replaced resourceVersion rv.
func (s State[S]) Supersede(rv string) { s.superseded[rv] = true }

// Memory holds the State of each object by name. S is the objects' status
// type.
type Memory[S any, PS interface {
	*S
	DeepCopy() *S
}] struct {
	m sync.Map // name -> State[S]
}

// Freshen replaces the status and finalizers of a stale cached obj (status
// is its status) with what was last written, and returns the record to
// extend with the writes of this pass.
func (m *Memory[S, PS]) Freshen(obj metav1.Object, status PS) State[S] {
	if v, ok := m.m.Load(obj.GetName()); ok {
		w := v.(State[S])
		if w.superseded[obj.GetResourceVersion()] {
			*status = *PS(&w.status).DeepCopy()
			obj.SetFinalizers(slices.Clone(w.finalizers))
			return w
		}
		m.m.Delete(obj.GetName())
	}
	return State[S]{superseded: map[string]bool{}}
}

// Remember records obj's status and finalizers as what the server holds
// after the writes of w.
func (m *Memory[S, PS]) Remember(obj metav1.Object, status PS, w State[S]) {
	w.status = *status.DeepCopy()
	w.finalizers = slices.Clone(obj.GetFinalizers())
	m.m.Store(obj.GetName(), w)
}

// Forget drops what was written to the object called name.
func (m *Memory[S, PS]) Forget(name string) { m.m.Delete(name) }
