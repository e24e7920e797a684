package autonomy

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// Window is how long a pod keeps running on a node the control plane
// cannot reach before the taint-eviction controller evicts it.
type Window struct {
	// Unbounded windows never end: the tolerations carry no seconds.
	Unbounded bool
	// Seconds of the window when it is bounded.
	Seconds int64
}

// Unbounded is the window of pools whose autonomy has no duration.
var Unbounded = Window{Unbounded: true}

// Shorter returns the shorter of two windows: a pod that may land in two
// places gets the window both can promise.
func Shorter(a, b Window) Window {
	switch {
	case a.Unbounded:
		return b
	case b.Unbounded:
		return a
	case a.Seconds <= b.Seconds:
		return a
	default:
		return b
	}
}

// covers says whether a toleration lasting seconds (nil: forever) keeps the
// pod at least as long as w.
func (w Window) covers(seconds *int64) bool {
	if seconds == nil {
		return true
	}
	return !w.Unbounded && *seconds >= w.Seconds
}

func (w Window) tolerationSeconds() *int64 {
	if w.Unbounded {
		return nil
	}
	s := w.Seconds
	return &s
}

func (w Window) String() string {
	if w.Unbounded {
		return edgev1.AutonomyUnbounded
	}
	return (time.Duration(w.Seconds) * time.Second).String()
}

// FromDuration converts a pool's autonomy duration (nil: unbounded) to a
// window, rounding up to whole seconds.
func FromDuration(d *time.Duration) Window {
	if d == nil {
		return Unbounded
	}
	secs := int64(math.Ceil(d.Seconds()))
	return Window{Seconds: max(secs, 0)}
}

// PoolWindow is the window of a pool's autonomy; false when it has none.
func PoolWindow(pool *edgev1.NodePool) (Window, bool) {
	a := pool.Spec.Autonomy
	if a == nil || !a.Enabled {
		return Window{}, false
	}
	if a.Duration == nil {
		return Unbounded, true
	}
	return FromDuration(&a.Duration.Duration), true
}

// NodeWindow is the window the NodePool controller recorded on a node: the
// autonomy label and the duration annotation. False when the node is not
// autonomous.
func NodeWindow(node *corev1.Node) (Window, bool, error) {
	if node.Labels[edgev1.LabelAutonomy] != "true" {
		return Window{}, false, nil
	}
	v, ok := node.Annotations[edgev1.AnnotationAutonomyDuration]
	if !ok || v == edgev1.AutonomyUnbounded {
		return Unbounded, true, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return Window{}, false, fmt.Errorf("node %s: annotation %s=%q is neither %q nor a positive duration", node.Name, edgev1.AnnotationAutonomyDuration, v, edgev1.AutonomyUnbounded)
	}
	return FromDuration(&d), true, nil
}

// LinkTaints are the NoExecute taints the node lifecycle controller puts on
// a node whose kubelet stopped reporting.
var LinkTaints = []string{corev1.TaintNodeUnreachable, corev1.TaintNodeNotReady}

// Tolerate returns tolerations that keep a pod through w on a cut-off node,
// and whether they differ from tolerations.
//
// The taint-eviction controller honours, per taint, only the first toleration
// in list order that tolerates it. So for each link taint:
//   - no toleration: append {key, Exists, NoExecute, w};
//   - the first match already lasts at least w (or forever): keep it, so a
//     user's longer toleration wins and autonomy never shortens a pod's life
//     (nor the 300 s that DefaultTolerationSeconds adds);
//   - the first match is for this key: change its tolerationSeconds;
//   - the first match is a broader toleration (empty key): insert ours
//     before it.
//
// Every change is one the apiserver accepts on a running pod as well:
// existing tolerations keep key, operator, value and effect; only their
// tolerationSeconds change, and new ones are added.
func Tolerate(tolerations []corev1.Toleration, w Window) ([]corev1.Toleration, bool) {
	out := slices.Clone(tolerations)
	changed := false
	for _, key := range LinkTaints {
		taint := corev1.Taint{Key: key, Effect: corev1.TaintEffectNoExecute}
		i := slices.IndexFunc(out, func(t corev1.Toleration) bool {
			return t.ToleratesTaint(logr.Discard(), &taint, false)
		})
		want := corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: w.tolerationSeconds()}
		switch {
		case i < 0:
			out = append(out, want)
		case w.covers(out[i].TolerationSeconds):
			continue
		case out[i].Key == key:
			t := out[i]
			t.TolerationSeconds = w.tolerationSeconds()
			out[i] = t
		default:
			out = slices.Insert(out, i, want)
		}
		changed = true
	}
	return out, changed
}
