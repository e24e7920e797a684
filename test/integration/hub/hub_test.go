// Package hub_test runs the edge-hub binary against a real kube-apiserver
// and etcd, cuts the link by killing the apiserver, and checks what an edge
// node's components see.
package hub_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/hub/hubtest"
)

const (
	kubeletUA   = "kubelet/v1.36.3 (linux/amd64) kubernetes/hubtest"
	kubeProxyUA = "kube-proxy/v1.36.3 (linux/amd64) kubernetes/hubtest"
	node        = "edge-1"
	ns          = "edge"
)

// must fails the test (by a panic the testing package reports, after
// which cleanups still stop every process) when err is set.
func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return v
}

// seed creates the node, its lease and pods (some on the node).
func seed(t *testing.T, ctx context.Context, admin kubernetes.Interface) {
	t.Helper()
	must(admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}))
	for name, unit := range map[string]string{"edge-1": "u1", "edge-2": "u1", "edge-3": "u2"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.LabelUnit: unit}}}
		must(admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}))
	}
	now := metav1.NewMicroTime(time.Now())
	holder, dur := node, int32(40)
	must(admin.CoordinationV1().Leases("kube-node-lease").Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &now},
	}, metav1.CreateOptions{}))
	for i := range 6 {
		nodeName := node
		if i >= 4 {
			nodeName = "edge-2"
		}
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Namespace: ns, Labels: map[string]string{"app": "demo"}},
			Spec: corev1.PodSpec{NodeName: nodeName, AutomountServiceAccountToken: new(false),
				Containers: []corev1.Container{{Name: "c", Image: "example.invalid/app:1"}},
				// The Node authorizer lets a node read a ConfigMap its pods use.
				Volumes: []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{
					ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}}},
		}
		must(admin.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}))
	}
	must(admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}))
	// The Node authorizer learns the pods' bindings from its informers, a
	// moment after they are created.
	for _, attrs := range []authorizationv1.ResourceAttributes{
		{Namespace: ns, Resource: "configmaps", Verb: "get", Name: "cfg"},
		{Namespace: ns, Resource: "pods", Verb: "get", Name: "pod-0"},
	} {
		if err := hubtest.WaitFor(30*time.Second, 50*time.Millisecond, func() error {
			sar := must(admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{User: "system:node:" + node, Groups: []string{"system:nodes"}, ResourceAttributes: &attrs},
			}, metav1.CreateOptions{}))
			if !sar.Status.Allowed {
				return fmt.Errorf("node may not %s %s/%s: %s", attrs.Verb, attrs.Resource, attrs.Name, sar.Status.Reason)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

type view struct {
	Node   string
	Pods   map[string]string // name -> resourceVersion + labels
	CM     string
	ListRV string
}

// read reads the kubelet's view through the hub; every read must succeed.
func read(ctx context.Context, c kubernetes.Interface) (view, error) {
	var v view
	n, err := c.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return v, fmt.Errorf("get node: %w", err)
	}
	v.Node = n.Name + "@" + n.ResourceVersion
	pods, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
	if err != nil {
		return v, fmt.Errorf("list pods: %w", err)
	}
	v.ListRV = pods.ResourceVersion
	v.Pods = map[string]string{}
	for _, p := range pods.Items {
		v.Pods[p.Namespace+"/"+p.Name] = p.ResourceVersion + fmt.Sprint(p.Labels)
	}
	cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{})
	if err != nil {
		return v, fmt.Errorf("get configmap: %w", err)
	}
	v.CM = cm.ResourceVersion + cm.Data["k"]
	return v, nil
}

func TestHubKeepsNodeWorkingAcrossCutAndRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cp := hubtest.StartControlPlane(t)
	admin := must(kubernetes.NewForConfig(cp.AdminConfig("hubtest-admin")))
	seed(t, ctx, admin)
	hub := hubtest.StartHub(t, cp, cp.URL(), node)
	kubelet := must(kubernetes.NewForConfig(hub.Config(kubeletUA)))

	// The hub goes online after its first good probes.
	if err := hubtest.WaitFor(20*time.Second, 100*time.Millisecond, func() error {
		v, err := hub.Metric("edgehub_cloud_online")
		if err != nil || v != 1 {
			return fmt.Errorf("online=%v err=%v", v, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// A kubelet-style informer (streaming list + watch) through the hub.
	factory := informers.NewSharedInformerFactoryWithOptions(kubelet, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
		}))
	podInformer := factory.Core().V1().Pods().Informer()
	stopInf := make(chan struct{})
	defer close(stopInf)
	factory.Start(stopInf)
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.HasSynced) {
		t.Fatal("informer through the hub never synced")
	}
	if got := len(podInformer.GetStore().List()); got != 4 {
		t.Fatalf("informer through hub sees %d pods on %s, want 4", got, node)
	}

	// A change made in the cloud reaches the cache through the watch.
	must(admin.CoreV1().Pods(ns).Patch(ctx, "pod-0", types.MergePatchType, []byte(`{"metadata":{"labels":{"rev":"2"}}}`), metav1.PatchOptions{}))
	if err := hubtest.WaitFor(20*time.Second, 50*time.Millisecond, func() error {
		o, ok, _ := podInformer.GetStore().GetByKey(ns + "/pod-0")
		if !ok || o.(*corev1.Pod).Labels["rev"] != "2" {
			return fmt.Errorf("label not seen yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// kubelet reads its Lease before renewing it, as the lease controller does.
	must(kubelet.CoordinationV1().Leases("kube-node-lease").Get(ctx, node, metav1.GetOptions{}))
	before, err := read(ctx, kubelet)
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Pods) != 4 || !strings.Contains(before.Pods[ns+"/pod-0"], "rev:2") {
		t.Fatalf("online view wrong: %+v", before)
	}
	// Let the recorder write the last responses.
	if err := hubtest.WaitFor(10*time.Second, 50*time.Millisecond, func() error {
		v, err := hub.Metric("edgehub_cache_records_total", `kind="response"`)
		if err != nil || v < 3 {
			return fmt.Errorf("responses recorded=%v err=%v", v, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Cut: kill the apiserver.
	cut := time.Now()
	cp.KillAPIServer()
	firstAnswer := time.Duration(0)
	for i := range 20 {
		after, err := read(ctx, kubelet)
		if err != nil {
			t.Fatalf("read %d after the cut failed: %v", i, err)
		}
		if firstAnswer == 0 {
			firstAnswer = time.Since(cut)
		}
		if fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("offline view differs:\n before %+v\n after  %+v", before, after)
		}
	}
	t.Logf("first cached answer %s after the kill", firstAnswer)
	if v, _ := hub.Metric("edgehub_cloud_online"); v != 0 {
		t.Fatalf("hub still reports online after the apiserver was killed")
	}

	// Writes the hub cannot take get a clear 503.
	_, err = kubelet.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "cloud link is down") {
		t.Fatalf("offline create: want 503 with a message, got %v", err)
	}

	// Offline writes of the node's own objects are answered and journaled.
	lease := must(kubelet.CoordinationV1().Leases("kube-node-lease").Get(ctx, node, metav1.GetOptions{}))
	renew := metav1.NewMicroTime(time.Now().Add(time.Hour).Truncate(time.Second))
	lease.Spec.RenewTime = &renew
	must(kubelet.CoordinationV1().Leases("kube-node-lease").Update(ctx, lease, metav1.UpdateOptions{}))
	nodePatch := `{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"offline-written"}]}}`
	patched := must(kubelet.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, []byte(nodePatch), metav1.PatchOptions{}, "status"))
	if len(patched.Status.Conditions) != 1 || patched.Status.Conditions[0].Message != "offline-written" {
		t.Fatalf("offline node status patch answer: %+v", patched.Status)
	}
	podPatch := `{"status":{"phase":"Running","message":"offline-pod-status"}}`
	must(kubelet.CoreV1().Pods(ns).Patch(ctx, "pod-1", types.StrategicMergePatchType, []byte(podPatch), metav1.PatchOptions{}, "status"))
	if d, _ := hub.Metric("edgehub_journal_depth"); d != 3 {
		t.Fatalf("journal depth %v, want 3", d)
	}

	// Restart the hub while offline: it serves from disk at once.
	hub.Stop()
	hub.Start()
	if v, _ := hub.Metric("edgehub_cloud_online"); v != 0 {
		t.Fatal("restarted hub claims to be online")
	}
	afterRestart, err := read(ctx, kubelet)
	if err != nil {
		t.Fatalf("read after offline restart: %v", err)
	}
	if fmt.Sprint(afterRestart.Pods) != fmt.Sprint(before.Pods) || afterRestart.CM != before.CM {
		t.Fatalf("view after offline restart differs:\n before %+v\n after  %+v", before, afterRestart)
	}
	// A kubelet rebooted offline registers its Node first: the hub says
	// it exists, as the apiserver would, so the kubelet reads it.
	_, err = kubelet.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		t.Fatalf("offline registration of the node: %v, want 409 AlreadyExists", err)
	}
	n := must(kubelet.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}))
	if len(n.Status.Conditions) != 1 || n.Status.Conditions[0].Message != "offline-written" {
		t.Fatalf("offline-written node status not served after restart: %+v", n.Status)
	}
	if d, _ := hub.Metric("edgehub_journal_depth"); d != 3 {
		t.Fatalf("journal depth after restart %v, want 3", d)
	}
	// An offline watch is held open, and must end with 410 when the cloud
	// returns so the client re-lists.
	w := must(kubelet.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: before.ListRV}))
	defer w.Stop()
	select {
	case ev := <-w.ResultChan():
		t.Fatalf("offline watch delivered %v before the cloud returned", ev.Type)
	case <-time.After(500 * time.Millisecond):
	}

	// The cloud returns: journaled writes reach the apiserver, in order.
	cp.StartAPIServer()
	if err := hubtest.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		if d, err := hub.Metric("edgehub_journal_depth"); err != nil || d != 0 {
			return fmt.Errorf("journal depth %v err %v", d, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	l := must(admin.CoordinationV1().Leases("kube-node-lease").Get(ctx, node, metav1.GetOptions{}))
	if l.Spec.RenewTime == nil || !l.Spec.RenewTime.Time.Equal(renew.Time) {
		t.Fatalf("offline lease renewal not replayed: %v want %v", l.Spec.RenewTime, renew)
	}
	cn := must(admin.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}))
	if len(cn.Status.Conditions) != 1 || cn.Status.Conditions[0].Message != "offline-written" {
		t.Fatalf("offline node status not replayed: %+v", cn.Status.Conditions)
	}
	cpod := must(admin.CoreV1().Pods(ns).Get(ctx, "pod-1", metav1.GetOptions{}))
	if cpod.Status.Message != "offline-pod-status" {
		t.Fatalf("offline pod status not replayed: %+v", cpod.Status)
	}
	if v, err := hub.Metric("edgehub_journal_replayed_total", `result="applied`); err != nil || v != 3 {
		t.Fatalf("replayed metric %v (%v), want 3 applied", v, err)
	}

	// The watch held over the cut ends with 410 so the client re-lists.
	expectWatchGone(t, w, "the cloud returned")

	// Online again: reads are proxied and see cloud changes.
	must(admin.CoreV1().ConfigMaps(ns).Patch(ctx, "cfg", types.MergePatchType, []byte(`{"data":{"k":"v2"}}`), metav1.PatchOptions{}))
	if err := hubtest.WaitFor(20*time.Second, 100*time.Millisecond, func() error {
		cm, err := kubelet.CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{})
		if err != nil || cm.Data["k"] != "v2" {
			return fmt.Errorf("configmap through hub: %v %v", cm, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// expectWatchGone fails unless the watch held over a cut ends with 410
// within 30 s of when, so its client re-lists.
func expectWatchGone(t *testing.T, w watch.Interface, when string) {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("held watch closed without an event")
		}
		st, isStatus := ev.Object.(*metav1.Status)
		if ev.Type != watch.Error || !isStatus || st.Code != 410 {
			t.Fatalf("held watch got %v %+v, want ERROR 410", ev.Type, ev.Object)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("held watch not ended after %s", when)
	}
}
