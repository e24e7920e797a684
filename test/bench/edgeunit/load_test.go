package edgeunit_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers"
	"github.com/edgeunit/edgeunit/test/bench/benchutil"
)

// benchWrites counts the bench's own writes the way kube-apiserver's
// apiserver_request_total keys them, so they can be taken out of its
// totals.
type benchWrites struct {
	mu sync.Mutex
	t  tally
}

func (w *benchWrites) observe(r benchutil.Request, status int, _ error, _ []byte) {
	if !r.Write {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t[r.Method+" "+resourceKey(r.Group, r.Resource, r.Sub)+" "+strconv.Itoa(status)]++
}

func (w *benchWrites) snapshot() tally {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.t.add(nil)
}

// newClient returns a client without client-side rate limit, so the load
// generator and the verifier are never the bottleneck; with w, it counts
// its writes.
func newClient(b *testing.B, cfg *rest.Config, w *benchWrites) client.Client {
	b.Helper()
	if w != nil {
		cfg = rest.CopyConfig(cfg)
		cfg.WrapTransport = benchutil.WrapTransport(w.observe)
	}
	return benchutil.NewClient(b, cfg)
}

// newVerifier returns a client that reads what the checks read from
// informers the bench runs: listing 10,000 nodes from kube-apiserver every
// pollEvery would load the apiserver the manager is measured against. A
// watch sees each change within milliseconds of the write.
func newVerifier(ctx context.Context, b *testing.B, cfg *rest.Config) client.Client {
	b.Helper()
	// The informers log through controller-runtime's logger; the bench
	// reports through its own output only.
	ctrllog.SetLogger(logr.Discard())
	cfg = benchutil.Unthrottled(cfg)
	scheme := controllers.Scheme()
	c, err := cache.New(cfg, cache.Options{Scheme: scheme})
	if err != nil {
		b.Fatalf("Creating the verifier's cache: %v", err)
	}
	for _, obj := range []client.Object{&corev1.Node{}, &edgev1.NodePool{}, &edgev1.EdgeUnit{}, &edgev1.TunnelEndpoint{},
		&appsv1.DaemonSet{}, &corev1.ConfigMap{}} {
		if _, err := c.GetInformer(ctx, obj); err != nil {
			b.Fatalf("Starting the verifier's informer for %T: %v", obj, err)
		}
	}
	go func() {
		if err := c.Start(ctx); err != nil {
			b.Logf("The verifier's cache stopped: %v", err)
		}
	}()
	if !c.WaitForCacheSync(ctx) {
		b.Fatal("The verifier's cache did not sync")
	}
	v, err := client.New(cfg, client.Options{Scheme: scheme, Cache: &client.CacheOptions{Reader: c}})
	if err != nil {
		b.Fatalf("Creating the verifier: %v", err)
	}
	return v
}

func nodeName(i int) string { return fmt.Sprintf("edge-node-%05d", i) }
func poolName(i int) string { return fmt.Sprintf("pool-%03d", i) }
func unitName(i int) string { return fmt.Sprintf("unit-%03d", i) }

// poolOfNode and unitOfPool lay the nodes out: node i is in pool
// i % numPools, pool p in unit p / poolsPerUnit.
func poolOfNode(i int) int { return i % numPools }
func unitOfPool(p int) int { return p / poolsPerUnit }

// createNodes creates the nodes, each labelled into its pool, then gives
// each a kubelet-like status with Ready=True through the status
// subresource.
func createNodes(ctx context.Context, c client.Client) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(createWorkers)
	for i := range numNodes {
		g.Go(func() error {
			return benchutil.CreateNode(ctx, c, nodeName(i), poolName(poolOfNode(i)), i)
		})
	}
	return g.Wait()
}

func desiredPool(i int) *edgev1.NodePool { return benchutil.Pool(poolName(i)) }

func desiredEndpoint() *edgev1.TunnelEndpoint {
	return &edgev1.TunnelEndpoint{
		ObjectMeta: metav1.ObjectMeta{Name: endpointName},
		Spec: edgev1.TunnelEndpointSpec{
			Service: edgev1.TunnelExposure{Type: "ClusterIP", Addresses: []string{"127.0.0.1"}},
		},
	}
}

func desiredUnit(u int) *edgev1.EdgeUnit {
	pools := make([]string, 0, poolsPerUnit)
	for p := u * poolsPerUnit; p < (u+1)*poolsPerUnit; p++ {
		pools = append(pools, poolName(p))
	}
	return &edgev1.EdgeUnit{
		ObjectMeta: metav1.ObjectMeta{Name: unitName(u)},
		Spec: edgev1.EdgeUnitSpec{
			NodePools: pools,
			Tunnel:    &edgev1.TunnelSpec{Endpoint: endpointName},
		},
	}
}

// createAll creates n objects with createWorkers concurrent creators.
func createAll(ctx context.Context, c client.Client, n int, obj func(int) client.Object) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(createWorkers)
	for i := range n {
		g.Go(func() error {
			o := obj(i)
			if err := c.Create(ctx, o); err != nil {
				return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
			}
			return nil
		})
	}
	return g.Wait()
}
