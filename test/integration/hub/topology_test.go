package hub_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/unitdeployment"
	"github.com/edgeunit/edgeunit/internal/hub/hubtest"
)

func slice(name, svc string, nodes ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i, n := range nodes {
		ep := discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("192.0.2.%d", i+1)}}
		if n != "" {
			ep.NodeName = new(n)
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

// endpointNodes maps slice name to the nodes of its endpoints ("-" for
// none) as seen by c.
func endpointNodes(ctx context.Context, c kubernetes.Interface) (map[string][]string, error) {
	l, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, s := range l.Items {
		nodes := []string{}
		for _, ep := range s.Endpoints {
			n := "-"
			if ep.NodeName != nil {
				n = *ep.NodeName
			}
			nodes = append(nodes, n)
		}
		slices.Sort(nodes)
		out[s.Name] = nodes
	}
	return out, nil
}

func expectNodes(t *testing.T, ctx context.Context, c kubernetes.Interface, want map[string][]string) {
	t.Helper()
	var last map[string][]string
	if err := hubtest.WaitFor(20*time.Second, 100*time.Millisecond, func() error {
		got, err := endpointNodes(ctx, c)
		if err != nil {
			return err
		}
		last = got
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("got %v, want %v", got, want)
		}
		return nil
	}); err != nil {
		t.Fatalf("endpoints: %v (last %v)", err, last)
	}
}

func TestHubServiceTopology(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp := hubtest.StartControlPlane(t)
	admin := must(kubernetes.NewForConfig(cp.AdminConfig("hubtest-admin")))
	seed(t, ctx, admin)
	svc := func(name, mode string) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
		if mode != "" {
			s.Annotations = map[string]string{v1alpha1.AnnotationTopology: mode}
		}
		return s
	}
	must(admin.CoreV1().Services(ns).Create(ctx, svc("web", "unit"), metav1.CreateOptions{}))
	must(admin.CoreV1().Services(ns).Create(ctx, svc("plain", ""), metav1.CreateOptions{}))
	must(admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice("web-a", "web", "edge-1", "edge-2", "edge-3", ""), metav1.CreateOptions{}))
	must(admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice("plain-a", "plain", "edge-1", "edge-3"), metav1.CreateOptions{}))

	hub := hubtest.StartHub(t, cp, cp.URL(), node)
	proxy := must(kubernetes.NewForConfig(hub.Config(kubeProxyUA)))
	kubelet := must(kubernetes.NewForConfig(hub.Config(kubeletUA)))

	// Unit u1 = edge-1, edge-2: kube-proxy sees only those for "web".
	expectNodes(t, ctx, proxy, map[string][]string{"web-a": {"edge-1", "edge-2"}, "plain-a": {"edge-1", "edge-3"}})
	// Other clients are not filtered.
	expectNodes(t, ctx, kubelet, map[string][]string{"web-a": {"-", "edge-1", "edge-2", "edge-3"}, "plain-a": {"edge-1", "edge-3"}})

	// A kube-proxy watch re-lists (410) when the topology changes.
	l := must(proxy.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{}))
	w := must(proxy.DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion}))
	defer w.Stop()
	must(admin.CoreV1().Services(ns).Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"`+v1alpha1.AnnotationTopology+`":"node"}}}`), metav1.PatchOptions{}))
	select {
	case ev := <-w.ResultChan():
		st, ok := ev.Object.(*metav1.Status)
		if ev.Type != watch.Error || !ok || st.Code != 410 {
			t.Fatalf("filtered watch got %v %+v on a topology change, want ERROR 410", ev.Type, ev.Object)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("filtered watch not ended on a topology change")
	}
	expectNodes(t, ctx, proxy, map[string][]string{"web-a": {"edge-1"}, "plain-a": {"edge-1", "edge-3"}})

	// Back to unit mode, and edge-3 joins unit u1.
	must(admin.CoreV1().Services(ns).Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"`+v1alpha1.AnnotationTopology+`":"unit"}}}`), metav1.PatchOptions{}))
	must(admin.CoreV1().Nodes().Patch(ctx, "edge-3", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+v1alpha1.LabelUnit+`":"u1"}}}`), metav1.PatchOptions{}))
	expectNodes(t, ctx, proxy, map[string][]string{"web-a": {"edge-1", "edge-2", "edge-3"}, "plain-a": {"edge-1", "edge-3"}})
	// edge-3 leaves again.
	must(admin.CoreV1().Nodes().Patch(ctx, "edge-3", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+v1alpha1.LabelUnit+`":"u2"}}}`), metav1.PatchOptions{}))
	want := map[string][]string{"web-a": {"edge-1", "edge-2"}, "plain-a": {"edge-1", "edge-3"}}
	expectNodes(t, ctx, proxy, want)

	// Offline, and after a restart offline, filtering works from the cache.
	cp.KillAPIServer()
	got := must(endpointNodes(ctx, proxy))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("offline endpoints %v, want %v", got, want)
	}
	hub.Stop()
	hub.Start()
	got = must(endpointNodes(ctx, proxy))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("endpoints after an offline restart %v, want %v", got, want)
	}
}

// TestHubFiltersUnitDeploymentService: the Service a UnitDeployment puts in
// front of its instances is filtered by each node's hub, so a client in a
// unit reaches only that unit's instance.
func TestHubFiltersUnitDeploymentService(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cp := hubtest.StartControlPlane(t)
	admin := must(kubernetes.NewForConfig(cp.AdminConfig("hubtest-admin")))
	seed(t, ctx, admin)
	ud := &v1alpha1.UnitDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-app", Namespace: ns, UID: "00000000-0000-0000-0000-000000000001"},
		Spec:       v1alpha1.UnitDeploymentSpec{Service: &v1alpha1.UnitServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}},
	}
	must(admin.CoreV1().Services(ns).Apply(ctx, unitdeployment.Service(ud), metav1.ApplyOptions{FieldManager: "hubtest"}))
	// One endpoint per unit's instance, as the EndpointSlice controller
	// would list them: u1's on edge-2, u2's on edge-3.
	must(admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice("shop-app-x", "shop-app", "edge-2", "edge-3"), metav1.CreateOptions{}))

	hub := hubtest.StartHub(t, cp, cp.URL(), node)
	proxy := must(kubernetes.NewForConfig(hub.Config(kubeProxyUA)))
	// edge-1 is in u1: its kube-proxy sees only u1's instance.
	expectNodes(t, ctx, proxy, map[string][]string{"shop-app-x": {"edge-2"}})
}
