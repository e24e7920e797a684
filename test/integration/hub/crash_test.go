package hub_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/edgeunit/edgeunit/internal/hub/hubtest"
	"github.com/edgeunit/edgeunit/internal/hub/store"
)

// storm runs workers doing op until stop closes or each did max calls.
func storm(workers, max int, stop <-chan struct{}, op func(w, i int) error) (ok *atomic.Int64, wait func()) {
	ok = &atomic.Int64{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range max {
				select {
				case <-stop:
					return
				default:
				}
				if op(w, i) == nil {
					ok.Add(1)
				}
			}
		})
	}
	return ok, wg.Wait
}

func verifyStore(t *testing.T, path string) store.OpenResult {
	t.Helper()
	s, res, err := store.Open(path, 5*time.Second, logr.Discard())
	if err != nil {
		t.Fatalf("opening the store after kill -9: %v", err)
	}
	_ = s.Close()
	return res
}

func TestHubStoreSurvivesKill9DuringWriteStorm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cp := hubtest.StartControlPlane(t)
	admin := must(kubernetes.NewForConfig(cp.AdminConfig("hubtest-admin")))
	seed(t, ctx, admin)
	hub := hubtest.StartHub(t, cp, cp.URL(), node)
	kubelet := must(kubernetes.NewForConfig(hub.Config(kubeletUA)))
	sel := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()}

	// Online: LISTs rewrite collections while the cloud keeps changing pods
	// and watches record events; kill -9 lands at a random moment.
	for round := range 3 {
		if err := hubtest.WaitFor(20*time.Second, 100*time.Millisecond, func() error {
			_, err := kubelet.CoreV1().Pods("").List(ctx, sel)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		w := must(kubelet.CoreV1().Pods("").Watch(ctx, sel))
		stop := make(chan struct{})
		_, waitReaders := storm(3, 2000, stop, func(_, _ int) error {
			_, err := kubelet.CoreV1().Pods("").List(ctx, sel)
			return err
		})
		_, waitWriters := storm(1, 2000, stop, func(_, i int) error {
			_, err := admin.CoreV1().Pods(ns).Patch(ctx, fmt.Sprintf("pod-%d", i%4), types.MergePatchType,
				[]byte(fmt.Sprintf(`{"metadata":{"labels":{"round":"%d-%d"}}}`, round, i)), metav1.PatchOptions{})
			return err
		})
		time.Sleep(time.Duration(200+rand.IntN(800)) * time.Millisecond) // the random moment of the kill
		hub.Kill()
		close(stop)
		waitReaders()
		waitWriters()
		w.Stop()
		if res := verifyStore(t, hub.StorePath()); res.Quarantined != "" || res.Verified == 0 {
			t.Fatalf("round %d: store after kill -9: %+v", round, res)
		}
		hub.Start()
	}

	// Offline: every acknowledged journaled write must survive kill -9.
	cp.KillAPIServer()
	if err := hubtest.WaitFor(10*time.Second, 50*time.Millisecond, func() error {
		if v, _ := hub.Metric("edgehub_cloud_online"); v != 0 {
			return fmt.Errorf("still online")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	acked, waitWriters := storm(4, 500, stop, func(w, i int) error {
		p := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("storm-%d-%d", w, i), Namespace: ns},
			// Bound to the hub's node: offline only those pods' status is
			// taken (uncached, the body's nodeName decides).
			Spec:   corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{Message: "offline"},
		}
		_, err := kubelet.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
	if err := hubtest.WaitFor(20*time.Second, 20*time.Millisecond, func() error {
		if acked.Load() < 20 {
			return fmt.Errorf("%d writes acknowledged", acked.Load())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Duration(50+rand.IntN(300)) * time.Millisecond)
	hub.Kill()
	close(stop)
	waitWriters()
	n := acked.Load()
	if res := verifyStore(t, hub.StorePath()); res.Quarantined != "" {
		t.Fatalf("store after kill -9 in the journal storm: %+v", res)
	}
	s, _, err := store.Open(hub.StorePath(), 5*time.Second, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	depth := int64(s.JournalDepth())
	_ = s.Close()
	// Each acknowledged write is durable; at most the in-flight ones (one
	// per worker) may be there without an acknowledgment.
	if depth < n || depth > n+4 {
		t.Fatalf("journal holds %d writes after kill -9, %d were acknowledged", depth, n)
	}
	t.Logf("journal storm: %d acknowledged, %d journaled", n, depth)

	// And the hub restarted on it serves offline at once.
	hub.Start()
	pods := must(kubelet.CoreV1().Pods("").List(ctx, sel))
	if len(pods.Items) != 4 {
		t.Fatalf("offline list after kill -9 has %d pods, want 4", len(pods.Items))
	}
}

func TestHubDetectsCorruptStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp := hubtest.StartControlPlane(t)
	admin := must(kubernetes.NewForConfig(cp.AdminConfig("hubtest-admin")))
	seed(t, ctx, admin)
	const marker = "corruption-canary-value-0123456789"
	must(admin.CoreV1().Pods(ns).Patch(ctx, "pod-0", types.MergePatchType, []byte(`{"metadata":{"annotations":{"canary":"`+marker+`"}}}`), metav1.PatchOptions{}))
	hub := hubtest.StartHub(t, cp, cp.URL(), node)
	kubelet := must(kubernetes.NewForConfig(hub.Config(kubeletUA)))
	sel := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()}
	if err := hubtest.WaitFor(20*time.Second, 100*time.Millisecond, func() error {
		if _, err := kubelet.CoreV1().Pods("").List(ctx, sel); err != nil {
			return err
		}
		if v, err := hub.Metric("edgehub_cache_records_total", `kind="list"`); err != nil || v < 1 {
			return fmt.Errorf("list not recorded yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	hub.Stop()

	// Flip a byte inside the recorded pod.
	raw := must(os.ReadFile(hub.StorePath()))
	i := bytes.Index(raw, []byte(marker))
	if i < 0 {
		t.Fatal("recorded pod not found in the store file")
	}
	raw[i+3] ^= 0x20
	if err := os.WriteFile(hub.StorePath(), raw, 0o600); err != nil {
		t.Fatal(err)
	}

	cp.KillAPIServer()
	hub.Start()
	if v, err := hub.Metric("edgehub_store_quarantined_total"); err != nil || v != 1 {
		t.Fatalf("quarantined metric %v (%v), want 1", v, err)
	}
	if q, _ := filepath.Glob(hub.StorePath() + ".corrupt-*"); len(q) != 1 {
		t.Fatalf("quarantined files %v, want one", q)
	}
	// Never served: offline with a rebuilt (empty) store the read is a 503.
	_, err := kubelet.CoreV1().Pods("").List(ctx, sel)
	if !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("offline list from a quarantined store: want 503, got %v", err)
	}

	// The cloud returns: the cache is rebuilt and serves the next cut.
	cp.StartAPIServer()
	if err := hubtest.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		l, err := kubelet.CoreV1().Pods("").List(ctx, sel)
		if err != nil || len(l.Items) != 4 {
			return fmt.Errorf("list: %v", err)
		}
		if v, err := hub.Metric("edgehub_cache_records_total", `kind="list"`); err != nil || v < 1 {
			return fmt.Errorf("list not recorded yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cp.KillAPIServer()
	l := must(kubelet.CoreV1().Pods("").List(ctx, sel))
	if len(l.Items) != 4 || l.Items[0].Annotations["canary"] != marker {
		t.Fatalf("rebuilt cache serves %d pods (canary %q)", len(l.Items), l.Items[0].Annotations["canary"])
	}
}
