package autonomy

import (
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func tol(key string, secs *int64) corev1.Toleration {
	return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs}
}

var (
	unreachable = corev1.TaintNodeUnreachable
	notReady    = corev1.TaintNodeNotReady
)

func TestTolerate(t *testing.T) {
	twoHours := Window{Seconds: 7200}
	tests := map[string]struct {
		in      []corev1.Toleration
		w       Window
		want    []corev1.Toleration
		changed bool
	}{
		"none: both appended": {
			w:       twoHours,
			want:    []corev1.Toleration{tol(unreachable, ptr.To[int64](7200)), tol(notReady, ptr.To[int64](7200))},
			changed: true,
		},
		"defaults lengthened in place": {
			in:      []corev1.Toleration{tol(notReady, ptr.To[int64](300)), tol(unreachable, ptr.To[int64](300))},
			w:       twoHours,
			want:    []corev1.Toleration{tol(notReady, ptr.To[int64](7200)), tol(unreachable, ptr.To[int64](7200))},
			changed: true,
		},
		"unbounded drops the seconds": {
			in:      []corev1.Toleration{tol(notReady, ptr.To[int64](300)), tol(unreachable, ptr.To[int64](300))},
			w:       Unbounded,
			want:    []corev1.Toleration{tol(notReady, nil), tol(unreachable, nil)},
			changed: true,
		},
		"a longer user toleration stands": {
			in:   []corev1.Toleration{tol(notReady, ptr.To[int64](86400)), tol(unreachable, nil)},
			w:    twoHours,
			want: []corev1.Toleration{tol(notReady, ptr.To[int64](86400)), tol(unreachable, nil)},
		},
		"never shortened below the default": {
			in:   []corev1.Toleration{tol(notReady, ptr.To[int64](300)), tol(unreachable, ptr.To[int64](300))},
			w:    Window{Seconds: 60},
			want: []corev1.Toleration{tol(notReady, ptr.To[int64](300)), tol(unreachable, ptr.To[int64](300))},
		},
		"a tolerate-everything toleration covers both": {
			in:   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			w:    Unbounded,
			want: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		},
		"a shorter broad NoExecute toleration gets ours in front": {
			in: []corev1.Toleration{{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](30)}},
			w:  twoHours,
			want: []corev1.Toleration{
				tol(unreachable, ptr.To[int64](7200)), tol(notReady, ptr.To[int64](7200)),
				{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](30)},
			},
			changed: true,
		},
		"only the first match counts": {
			in:      []corev1.Toleration{tol(unreachable, ptr.To[int64](300)), tol(unreachable, nil), tol(notReady, nil)},
			w:       twoHours,
			want:    []corev1.Toleration{tol(unreachable, ptr.To[int64](7200)), tol(unreachable, nil), tol(notReady, nil)},
			changed: true,
		},
		"unrelated tolerations kept": {
			in:      []corev1.Toleration{{Key: "example.com/edge", Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoSchedule}},
			w:       twoHours,
			want:    []corev1.Toleration{{Key: "example.com/edge", Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoSchedule}, tol(unreachable, ptr.To[int64](7200)), tol(notReady, ptr.To[int64](7200))},
			changed: true,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			in := append([]corev1.Toleration(nil), tt.in...)
			got, changed := Tolerate(in, tt.w)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("tolerations (-want +got):\n%s", diff)
			}
			if changed != tt.changed {
				t.Errorf("changed = %v, want %v", changed, tt.changed)
			}
			if diff := cmp.Diff(tt.in, in); diff != "" {
				t.Errorf("input modified (-before +after):\n%s", diff)
			}
		})
	}
}

func TestNodeWindow(t *testing.T) {
	node := func(labels, annotations map[string]string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: labels, Annotations: annotations}}
	}
	auto := map[string]string{edgev1.LabelAutonomy: "true"}
	tests := map[string]struct {
		node    *corev1.Node
		want    Window
		ok      bool
		wantErr bool
	}{
		"not autonomous":       {node: node(nil, map[string]string{edgev1.AnnotationAutonomyDuration: "1h"})},
		"label false":          {node: node(map[string]string{edgev1.LabelAutonomy: "false"}, nil)},
		"duration":             {node: node(auto, map[string]string{edgev1.AnnotationAutonomyDuration: "2h0m0s"}), want: Window{Seconds: 7200}, ok: true},
		"unbounded":            {node: node(auto, map[string]string{edgev1.AnnotationAutonomyDuration: "unbounded"}), want: Unbounded, ok: true},
		"no annotation":        {node: node(auto, nil), want: Unbounded, ok: true},
		"rounded up to 1 s":    {node: node(auto, map[string]string{edgev1.AnnotationAutonomyDuration: "90500ms"}), want: Window{Seconds: 91}, ok: true},
		"garbage is an error":  {node: node(auto, map[string]string{edgev1.AnnotationAutonomyDuration: "soon"}), wantErr: true},
		"negative is an error": {node: node(auto, map[string]string{edgev1.AnnotationAutonomyDuration: "-1h"}), wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok, err := NodeWindow(tt.node)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want || ok != tt.ok {
				t.Errorf("NodeWindow = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestPoolWindowAndShorter(t *testing.T) {
	pool := func(a *edgev1.AutonomySpec) *edgev1.NodePool {
		return &edgev1.NodePool{Spec: edgev1.NodePoolSpec{Autonomy: a}}
	}
	if _, ok := PoolWindow(pool(nil)); ok {
		t.Error("pool without autonomy is autonomous")
	}
	if _, ok := PoolWindow(pool(&edgev1.AutonomySpec{Enabled: false})); ok {
		t.Error("disabled autonomy is autonomous")
	}
	if w, ok := PoolWindow(pool(&edgev1.AutonomySpec{Enabled: true})); !ok || w != Unbounded {
		t.Errorf("no duration = %+v, %v; want unbounded", w, ok)
	}
	if w, ok := PoolWindow(pool(&edgev1.AutonomySpec{Enabled: true, Duration: &metav1.Duration{Duration: time.Hour}})); !ok || w.Seconds != 3600 {
		t.Errorf("1h = %+v, %v", w, ok)
	}
	tests := map[string]struct{ a, b, want Window }{
		"both unbounded": {Unbounded, Unbounded, Unbounded},
		"one bounded":    {Unbounded, Window{Seconds: 60}, Window{Seconds: 60}},
		"other bounded":  {Window{Seconds: 60}, Unbounded, Window{Seconds: 60}},
		"smaller wins":   {Window{Seconds: 600}, Window{Seconds: 60}, Window{Seconds: 60}},
	}
	for name, tt := range tests {
		if got := Shorter(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: Shorter = %+v, want %+v", name, got, tt.want)
		}
	}
}

func TestTolerationsPatch(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "42"}}
	b, err := tolerationsPatch(pod, []corev1.Toleration{tol(unreachable, nil)})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"test","path":"/metadata/resourceVersion","value":"42"},{"op":"add","path":"/spec/tolerations","value":[{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute"}]}]`
	if string(b) != want {
		t.Errorf("patch = %s\nwant    %s", b, want)
	}
	pod.Spec.Tolerations = []corev1.Toleration{tol(notReady, ptr.To[int64](300))}
	b, err = tolerationsPatch(pod, []corev1.Toleration{tol(notReady, nil)})
	if err != nil {
		t.Fatal(err)
	}
	want = `[{"op":"test","path":"/spec/tolerations","value":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}]},{"op":"replace","path":"/spec/tolerations","value":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute"}]}]`
	if string(b) != want {
		t.Errorf("patch = %s\nwant    %s", b, want)
	}
}

func TestRefused(t *testing.T) {
	gk := schema.GroupKind{Kind: "Pod"}
	tests := map[string]struct {
		err  error
		want bool
	}{
		"validation": {err: apierrors.NewInvalid(gk, "p", field.ErrorList{field.Forbidden(field.NewPath("spec", "tolerations"), "existing toleration can not be modified except its tolerationSeconds")}), want: true},
		"policy":     {err: apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p", errors.New("denied")), want: true},
		// A failed JSON patch test operation: 422 without causes.
		"stale":    {err: apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "patch", schema.GroupResource{}, "", "test failed", 0, false)},
		"conflict": {err: apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "p", errors.New("x"))},
	}
	for name, tt := range tests {
		if got := refused(tt.err); got != tt.want {
			t.Errorf("%s: refused = %v, want %v", name, got, tt.want)
		}
	}
}
