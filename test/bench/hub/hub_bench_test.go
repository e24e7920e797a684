// Package hub_test benchmarks the edge hub against a real kube-apiserver:
// latency through the hub against direct, offline LIST against the
// apiserver's own online LIST, the hub's memory, and reads across a cut.
// Run with `make bench` (go test -run '^$' -bench . -benchtime 1x).
package hub_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/edgeunit/edgeunit/internal/hub/hubtest"
)

const kubeletUA = "kubelet/v1.36.3 (linux/amd64) kubernetes/bench"

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return v
}

func pod(ns string, i int) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%05d", i), Namespace: ns,
			Labels:      map[string]string{"app": "bench", "shard": fmt.Sprint(i % 16)},
			Annotations: map[string]string{"edge.edgeunit.io/bench": "a-typical-annotation-value"}},
		Spec: corev1.PodSpec{
			NodeName:                     fmt.Sprintf("edge-%d", i%50),
			AutomountServiceAccountToken: new(false),
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.example.invalid/team/app:v1.2.3",
				Args:  []string{"--port=8080", "--log-level=info"},
				Env:   []corev1.EnvVar{{Name: "MODE", Value: "edge"}, {Name: "REGION", Value: "pop-17"}},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			}},
		},
	}
}

func createPods(b *testing.B, ctx context.Context, c kubernetes.Interface, ns string, from, to int) {
	must(c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}))
	next := atomic.Int64{}
	next.Store(int64(from))
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= to || ctx.Err() != nil {
					return
				}
				if _, err := c.CoreV1().Pods(ns).Create(ctx, pod(ns, i), metav1.CreateOptions{}); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatalf("%d pod creations failed", failed.Load())
	}
}

// lat collects durations.
type lat []time.Duration

func (l lat) pct(p float64) time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pair measures fn against two clients over warmup+n rounds, alternating
// which goes first (d h, h d, ...) so machine load — including the hub's
// own recording after one of its answers — falls on both alike. Warm-up
// rounds are not counted. With gc set, both processes' garbage is
// collected before each sample so one sample's garbage does not land on
// the next one's clock.
func pair(warmup, n int, gc bool, direct, hub func() error) (lat, lat, error) {
	var d, h lat
	for i := range warmup + n {
		order := []struct {
			fn  func() error
			dst *lat
		}{{direct, &d}, {hub, &h}}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, o := range order {
			if gc {
				runtime.GC()
			}
			start := time.Now()
			if err := o.fn(); err != nil {
				return nil, nil, err
			}
			if i >= warmup {
				*o.dst = append(*o.dst, time.Since(start))
			}
		}
	}
	return d, h, nil
}

type row struct {
	name, unit   string
	value        float64
	target, note string
}

func BenchmarkHub(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cp := hubtest.StartControlPlane(b)
	// EDGEHUB_BENCH_PPROF=<dir> saves a CPU profile of the hub process
	// over the latency measurements (hub.cpu.pprof in dir).
	pprofDir := os.Getenv("EDGEHUB_BENCH_PPROF")
	hubArgs := []string{"--v=0"}
	if pprofDir != "" {
		hubArgs = append(hubArgs, "--profiling")
	}
	// The bench measures the proxy, not authorization: the hub reads every
	// pod of a namespace, which a node identity may not, so it runs as the
	// admin; and both clients speak JSON, so they compare like for like.
	hub := hubtest.StartHubWith(b, cp, cp.URL(), "edge-1", hubtest.HubOptions{CertFile: cp.AdminCert, KeyFile: cp.AdminKey, Args: hubArgs})
	direct := must(kubernetes.NewForConfig(cp.AdminConfig(kubeletUA)))
	throughCfg := hub.Config(kubeletUA)
	throughCfg.ContentConfig = cp.AdminConfig(kubeletUA).ContentConfig
	through := must(kubernetes.NewForConfig(throughCfg))
	var rows []row
	report := func(r row) {
		rows = append(rows, r)
		b.ReportMetric(r.value, r.unit)
	}
	if err := hubtest.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		if v, err := hub.Metric("edgehub_cloud_online"); err != nil || v != 1 {
			return fmt.Errorf("hub not online")
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	idle, _ := must2(hubtest.RSSKiB(hub.Proc.Cmd.Process.Pid))
	report(row{"hub RSS idle", "idle-rss-MiB", float64(idle) / 1024, "<= 30 MiB", verdict(float64(idle)/1024, 30)})

	start := time.Now()
	createPods(b, ctx, direct, "b1k", 0, 1000)
	createPods(b, ctx, direct, "b9k", 1000, 10000)
	b.Logf("created 10,000 pods in %s", time.Since(start).Round(time.Millisecond))

	b.ResetTimer()
	profDone := make(chan struct{})
	if pprofDir != "" {
		go func() {
			defer close(profDone)
			resp, err := http.Get(hub.AdminURL() + "/debug/pprof/profile?seconds=100")
			if err != nil {
				b.Logf("hub profile: %v", err)
				return
			}
			defer func() { _ = resp.Body.Close() }()
			raw, _ := io.ReadAll(resp.Body)
			_ = os.WriteFile(filepath.Join(pprofDir, "hub.cpu.pprof"), raw, 0o600)
		}()
	} else {
		close(profDone)
	}
	// GET: random pods.
	get := func(c kubernetes.Interface) func() error {
		return func() error {
			i := rand.IntN(1000)
			_, err := c.CoreV1().Pods("b1k").Get(ctx, fmt.Sprintf("pod-%05d", i), metav1.GetOptions{})
			return err
		}
	}
	d, h := must3(pair(20, 1000, false, get(direct), get(through)))
	ratioRows(report, "GET", d, h)

	list := func(c kubernetes.Interface, ns string) func() error {
		return func() error {
			l, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err == nil && len(l.Items) == 0 {
				err = fmt.Errorf("empty list")
			}
			return err
		}
	}
	raw := func(c kubernetes.Interface, ns string) func() error {
		return func() error {
			path := "/api/v1/pods"
			if ns != "" {
				path = "/api/v1/namespaces/" + ns + "/pods"
			}
			body, err := c.CoreV1().RESTClient().Get().AbsPath(path).DoRaw(ctx)
			if err == nil && len(body) < 1000 {
				err = fmt.Errorf("short list")
			}
			return err
		}
	}
	d, h = must3(pair(3, 80, true, list(direct, "b1k"), list(through, "b1k")))
	ratioRows(report, "LIST 1k (client-go, decoded)", d, h)
	d, h = must3(pair(2, 20, true, list(direct, ""), list(through, "")))
	ratioRows(report, "LIST 10k (client-go, decoded)", d, h)
	d, h = must3(pair(2, 30, true, raw(direct, ""), raw(through, "")))
	ratioRows(report, "LIST 10k (raw bytes)", d, h)

	// Memory with 10,000 pods cached (after the recorder caught up).
	if err := hubtest.WaitFor(60*time.Second, 200*time.Millisecond, func() error {
		v, err := hub.Metric("edgehub_cache_records_total", `kind="list"`)
		if err != nil || v < 2 {
			return fmt.Errorf("lists recorded %v", v)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	// At rest: the hub returns the memory of its last big LIST once its
	// recorder has been idle a second; the peak is reported apart.
	time.Sleep(3 * time.Second)
	rss, hwm := must2(hubtest.RSSKiB(hub.Proc.Cmd.Process.Pid))
	report(row{"hub RSS, 10k pods cached", "cached-rss-MiB", float64(rss) / 1024, "<= 150 MiB", verdict(float64(rss)/1024, 150)})
	report(row{"hub peak RSS under LIST load", "peak-rss-MiB", float64(hwm) / 1024, "<= 250 MiB", verdict(float64(hwm)/1024, 250)})

	// The apiserver's own online LIST of 10,000 pods (raw).
	online, _ := must3(pair(1, 5, true, raw(direct, ""), func() error { return nil }))

	// Cut while a reader GETs through the hub non-stop.
	var failed, okAfter, okBefore atomic.Int64
	var firstOK atomic.Int64 // ns after the kill
	var killAt atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := through.CoreV1().Pods("b1k").Get(ctx, "pod-00001", metav1.GetOptions{})
			k := killAt.Load()
			if err != nil {
				failed.Add(1)
				continue
			}
			if k == 0 {
				okBefore.Add(1)
			} else {
				if okAfter.Add(1) == 1 {
					firstOK.Store(time.Now().UnixNano() - k)
				}
			}
		}
	})
	_ = hubtest.WaitFor(10*time.Second, 10*time.Millisecond, func() error { // reader warmed up
		if okBefore.Load() < 50 {
			return fmt.Errorf("warming up")
		}
		return nil
	})
	killAt.Store(time.Now().UnixNano())
	_ = cp.APIServer.Cmd.Process.Kill()
	_ = hubtest.WaitFor(10*time.Second, 10*time.Millisecond, func() error {
		if okAfter.Load() < 200 {
			return fmt.Errorf("reads after cut %d", okAfter.Load())
		}
		return nil
	})
	close(stop)
	wg.Wait()
	cp.KillAPIServer()
	report(row{"first cached answer after the kill", "first-cached-ms", float64(firstOK.Load()) / 1e6, "<= 100 ms", verdict(float64(firstOK.Load())/1e6, 100)})
	report(row{"failed reads across the cut", "failed-reads", float64(failed.Load()), "0", fmt.Sprintf("%s, %d reads after the cut", verdict(float64(failed.Load()), 0), okAfter.Load())})

	offline, _ := must3(pair(1, 5, true, raw(through, ""), func() error { return nil }))
	report(row{"offline LIST 10k p50 (raw)", "offline-list-p50-ms", ms(offline.pct(0.5)), "", ""})
	report(row{"apiserver online LIST 10k p50 (raw)", "online-list-p50-ms", ms(online.pct(0.5)), "", ""})
	report(row{"offline / online LIST 10k p50", "offline-over-online", ms(offline.pct(0.5)) / ms(online.pct(0.5)), "<= 0.5", verdict(ms(offline.pct(0.5))/ms(online.pct(0.5)), 0.5)})
	offDec, _ := must3(pair(0, 5, true, list(through, ""), func() error { return nil }))
	report(row{"offline LIST 10k p50 (client-go, decoded)", "offline-list-decoded-p50-ms", ms(offDec.pct(0.5)), "", "client decode dominates"})
	b.StopTimer()
	<-profDone

	fmt.Printf("\n%-48s %10s   %-10s %s\n", "edge-hub benchmark", "value", "target", "note")
	for _, r := range rows {
		fmt.Printf("%-48s %10.2f   %-10s %s\n", r.name, r.value, r.target, r.note)
	}
}

func ratioRows(report func(row), name string, d, h lat) {
	n := fmt.Sprintf("n=%d each", len(d))
	report(row{name + " direct p50", slug(name) + "-direct-p50-ms", ms(d.pct(0.5)), "", n})
	report(row{name + " hub p50", slug(name) + "-hub-p50-ms", ms(h.pct(0.5)), "", ""})
	report(row{name + " direct p99", slug(name) + "-direct-p99-ms", ms(d.pct(0.99)), "", ""})
	report(row{name + " hub p99", slug(name) + "-hub-p99-ms", ms(h.pct(0.99)), "", ""})
	report(row{name + " hub/direct p50", slug(name) + "-ratio-p50", ms(h.pct(0.5)) / ms(d.pct(0.5)), "<= 1.2", verdict(ms(h.pct(0.5))/ms(d.pct(0.5)), 1.2)})
	report(row{name + " hub/direct p99", slug(name) + "-ratio-p99", ms(h.pct(0.99)) / ms(d.pct(0.99)), "<= 1.2", verdict(ms(h.pct(0.99))/ms(d.pct(0.99)), 1.2)})
}

func verdict(v, limit float64) string {
	if v <= limit {
		return "ok"
	}
	return "MISSED"
}

func slug(s string) string {
	out := []byte{}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			out = append(out, c)
		case c >= 'A' && c <= 'Z':
			out = append(out, c+32)
		case len(out) > 0 && out[len(out)-1] != '-':
			out = append(out, '-')
		}
	}
	for len(out) > 0 && out[len(out)-1] == '-' {
		out = out[:len(out)-1]
	}
	return string(out)
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

func must3[A, B any](a A, b B, err error) (A, B) { return must2(a, b, err) }
