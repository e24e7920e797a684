//go:build linux

package hub_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	edgehub "github.com/edgeunit/edgeunit/internal/hub"
	"github.com/edgeunit/edgeunit/internal/hub/hubtest"
	"github.com/edgeunit/edgeunit/internal/netnstest"
)

// silentRead is one read of the kubelet's view through the hub.
type silentRead struct {
	start, end time.Time
	objects    string
	err        error
}

// silentObjects reads the kubelet's view (read's, plus a GET of a pod) and
// returns the objects it saw: names, resourceVersions and contents. The
// lists' own resourceVersion is left out: an online LIST carries the
// apiserver's current revision, which moves with writes that are not the
// node's (the apiserver's own leases).
func silentObjects(ctx context.Context, c kubernetes.Interface) (string, error) {
	v, err := read(ctx, c)
	if err != nil {
		return "", err
	}
	p, err := c.CoreV1().Pods(ns).Get(ctx, "pod-0", metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get pod: %w", err)
	}
	return fmt.Sprintf("node=%s pods=%v configmap=%s pod-0=%s@%s%v", v.Node, v.Pods, v.CM, p.Name, p.ResourceVersion, p.Labels), nil
}

// silentReadyz checks that the hub's /readyz answers 200 mentioning state
// ("online" or "offline"), within a second.
func silentReadyz(h *hubtest.Hub, state string) func() error {
	hc := &http.Client{Timeout: time.Second}
	return func() error {
		resp, err := hc.Get(h.AdminURL() + "/readyz")
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "("+state) {
			return fmt.Errorf("readyz %d %q, want 200 %s", resp.StatusCode, b, state)
		}
		return nil
	}
}

// silentLinkDown is a "Cloud link down" line of the hub's log.
type silentLinkDown struct {
	Time   time.Time `json:"time"`
	Msg    string    `json:"msg"`
	Reason string    `json:"reason"`
}

// silentLinkDowns returns the hub's "Cloud link down" log lines.
func silentLinkDowns(h *hubtest.Hub) ([]silentLinkDown, error) {
	f, err := os.Open(h.Proc.Log)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var out []silentLinkDown
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line silentLinkDown
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "Cloud link down, serving from cache" {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

// TestHubSilentLinkCut cuts the hub's link to kube-apiserver silently
// (packets dropped both ways, no RST, no ICMP: established connections
// and new ones alike just get no answer), which only the hub's probes (and
// its timeouts) can notice, unlike a killed apiserver that refuses at once.
// The hub runs in a network namespace of its own and reaches the apiserver
// over a veth pair (the "cloud" link); the test reaches the hub's admin
// listener over a second pair that is never cut, and its proxy, which
// listens on the namespace's loopback, with sockets made inside the
// namespace.
//
// It checks that the hub goes offline within its documented bound,
// FailureThreshold × (ProbeInterval + ProbeTimeout), computed from the
// flags the harness passes (asserted with a 3× margin for a loaded
// machine); that kubelet's reads through the hub, made in a loop across the
// cut, never fail and keep returning the same objects although the cloud
// changed meanwhile; that a watch is held open while offline; and that
// when the link returns the hub goes online, ends the watch with 410 so the
// client re-lists, and answers reads with live data again.
func TestHubSilentLinkCut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The node: its namespace, the link the hub reaches the cloud over,
	// and a management link to its admin listener. Both links are
	// deleted, with the namespace, when the test ends.
	netNS := netnstest.New(t, "eu-silent")
	cloud := netNS.Link(t)
	mgmt := netNS.Link(t)

	cp := hubtest.StartControlPlaneWith(t, hubtest.ControlPlaneOptions{BindAddress: cloud.HostIP})
	admin := must(kubernetes.NewForConfig(cp.AdminConfig("hubtest-admin")))
	seed(t, ctx, admin)
	hub := hubtest.StartHubWith(t, cp, cp.URL(), node, hubtest.HubOptions{NetNS: netNS.Name, AdminHost: mgmt.NSIP})
	cfg := hub.Config(kubeletUA)
	cfg.Dial = netNS.DialContext
	kubelet := must(kubernetes.NewForConfig(cfg))

	// The documented bound, from the flags the hub was started with.
	hcfg, err := edgehub.LoadConfig(hub.Args)
	if err != nil {
		t.Fatalf("the hub's flags: %v", err)
	}
	bound := time.Duration(hcfg.FailureThreshold) * (hcfg.ProbeInterval.Duration + hcfg.ProbeTimeout.Duration)
	limit := 3 * bound
	t.Logf("documented detection bound %s = %d × (%s + %s); asserting %s", bound,
		hcfg.FailureThreshold, hcfg.ProbeInterval.Duration, hcfg.ProbeTimeout.Duration, limit)

	if err := hubtest.WaitFor(20*time.Second, 100*time.Millisecond, silentReadyz(hub, "online")); err != nil {
		t.Fatalf("the hub never went online: %v", err)
	}

	// Online: kubelet's reads go through the hub and are recorded.
	sel := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()}
	before, err := silentObjects(ctx, kubelet)
	if err != nil {
		t.Fatalf("online read through the hub: %v", err)
	}
	if !strings.Contains(before, ns+"/pod-3") || strings.Contains(before, ns+"/pod-4") {
		t.Fatalf("online view wrong: %s", before)
	}
	if err := hubtest.WaitFor(10*time.Second, 50*time.Millisecond, func() error {
		r, err := hub.Metric("edgehub_cache_records_total", `kind="response"`)
		if err != nil || r < 3 {
			return fmt.Errorf("responses recorded=%v err=%v", r, err)
		}
		l, err := hub.Metric("edgehub_cache_records_total", `kind="list`) // list or list_unchanged
		if err != nil || l < 1 {
			return fmt.Errorf("lists recorded=%v err=%v", l, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// A watch through the hub, from the list it continues.
	pods := must(kubelet.CoreV1().Pods("").List(ctx, sel))
	w := must(kubelet.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{FieldSelector: sel.FieldSelector, ResourceVersion: pods.ResourceVersion}))
	defer w.Stop()

	// Reads in a loop, each bounded, across the cut and well after its
	// detection; at most maxReads, for at most readerFor.
	const (
		maxReads  = 5000
		readerFor = 3 * time.Minute
	)
	readTimeout := limit
	var (
		mu      sync.Mutex
		reads   []silentRead
		stop    = make(chan struct{})
		stopped = make(chan struct{})
		once    sync.Once
	)
	go func() {
		defer close(stopped)
		pace := time.NewTicker(20 * time.Millisecond)
		defer pace.Stop()
		deadline := time.Now().Add(readerFor)
		for range maxReads {
			if time.Now().After(deadline) {
				return
			}
			rctx, rcancel := context.WithTimeout(ctx, readTimeout)
			r := silentRead{start: time.Now()}
			r.objects, r.err = silentObjects(rctx, kubelet)
			r.end = time.Now()
			rcancel()
			mu.Lock()
			reads = append(reads, r)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-pace.C:
			}
		}
	}()
	stopReader := func() {
		once.Do(func() { close(stop) })
		select {
		case <-stopped:
		case <-time.After(readTimeout + 10*time.Second):
			t.Errorf("the read loop did not stop")
		}
	}
	t.Cleanup(stopReader)
	readsSince := func(from time.Time) (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range reads {
			if !r.start.Before(from) {
				n++
			}
		}
		return n
	}
	if err := hubtest.WaitFor(20*time.Second, 20*time.Millisecond, func() error {
		if n := readsSince(time.Time{}); n < 5 {
			return fmt.Errorf("%d reads done", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The silent cut. The cloud then changes: a pod for the node the hub
	// cannot hear of.
	restore := netNS.Silence(t, cloud)
	cut := time.Now()
	must(admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-silent", Namespace: ns},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: new(false),
			Containers: []corev1.Container{{Name: "c", Image: "example.invalid/app:1"}}},
	}, metav1.CreateOptions{}))

	err = hubtest.WaitFor(limit-time.Since(cut), 50*time.Millisecond, silentReadyz(hub, "offline"))
	detected := time.Since(cut)
	if err != nil || detected > limit+time.Second { // a second: readyz's own timeout
		t.Fatalf("the hub did not go offline within %s (3 × its documented bound %s) of a silent cut: %v", limit, bound, err)
	}
	detectedAt := cut.Add(detected)
	if v, err := hub.Metric("edgehub_cloud_online"); err != nil || v != 0 {
		t.Fatalf("readyz says offline, edgehub_cloud_online %v (%v)", v, err)
	}

	// Reads go on from the cache for a while after the detection.
	if err := hubtest.WaitFor(readTimeout+20*time.Second, 20*time.Millisecond, func() error {
		if n := readsSince(detectedAt); n < 20 {
			return fmt.Errorf("%d reads since the hub went offline", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stopReader()

	mu.Lock()
	all := append([]silentRead(nil), reads...)
	mu.Unlock()
	// When the hub itself went offline, by its log (readyz, polled, is
	// a little later).
	downs, err := silentLinkDowns(hub)
	if err != nil {
		t.Fatalf("reading the hub's log: %v", err)
	}
	var down silentLinkDown
	for _, d := range downs {
		if d.Time.After(cut) {
			down = d
			break
		}
	}
	if down.Time.IsZero() {
		t.Fatalf("the hub's log has no link-down line after the cut: %+v", downs)
	}
	hubDetected := down.Time.Sub(cut)
	var (
		failed, differ, afterCut, held int
		firstAnswer, slowest           time.Duration
		slowestCached                  time.Duration
	)
	for i, r := range all {
		if r.err != nil {
			failed++
			t.Errorf("read %d (issued %s after the cut, took %s) failed: %v", i, r.start.Sub(cut).Round(time.Millisecond), r.end.Sub(r.start).Round(time.Millisecond), r.err)
			continue
		}
		if r.objects != before {
			differ++
			t.Errorf("read %d (issued %s after the cut) saw other objects:\n before %s\n read   %s", i, r.start.Sub(cut).Round(time.Millisecond), before, r.objects)
		}
		took := r.end.Sub(r.start)
		if r.end.After(cut) {
			slowest = max(slowest, took)
		}
		if !r.start.Before(cut) {
			afterCut++
			if firstAnswer == 0 {
				firstAnswer = r.end.Sub(cut)
			}
		}
		if r.end.After(cut) && r.start.Before(down.Time) {
			held++ // in flight between the cut and the detection
		}
		if r.start.After(detectedAt) {
			slowestCached = max(slowestCached, took)
		}
	}
	t.Logf("silent cut: the hub went offline %s after it (its log; reason %q), readyz said so %s after it; the first read issued after the cut was answered %s after it",
		hubDetected.Round(time.Millisecond), down.Reason, detected.Round(time.Millisecond), firstAnswer.Round(time.Millisecond))
	t.Logf("reads: %d in all, %d issued after the cut, %d in flight between the cut and the detection, %d failed, %d with other objects; slowest across the cut %s, slowest issued after readyz said offline %s",
		len(all), afterCut, held, failed, differ, slowest.Round(time.Millisecond), slowestCached.Round(time.Millisecond))
	if failed > 0 || differ > 0 {
		t.FailNow()
	}

	// The watch is held open while offline: nothing delivered, not closed
	// (the pod created in the cloud must not reach it either).
	select {
	case ev, ok := <-w.ResultChan():
		t.Fatalf("watch while offline: got %v %v (open %v), want it held silent", ev.Type, ev.Object, ok)
	default:
	}

	// The link returns: the hub goes online, ends the held watch with 410
	// so the client re-lists, and reads see the cloud again.
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	// Not a documented bound: a probe in flight at the return may still
	// time out, then SuccessThreshold good probes, each at most an interval
	// and a timeout after the last; 3× that.
	backWithin := 3 * (hcfg.ProbeTimeout.Duration + time.Duration(hcfg.SuccessThreshold)*(hcfg.ProbeInterval.Duration+hcfg.ProbeTimeout.Duration))
	if err := hubtest.WaitFor(backWithin, 50*time.Millisecond, silentReadyz(hub, "online")); err != nil {
		t.Fatalf("the hub not back online within %s of the link's return: %v", backWithin, err)
	}
	back := time.Since(restored)
	if v, err := hub.Metric("edgehub_cloud_online"); err != nil || v != 1 {
		t.Fatalf("readyz says online, edgehub_cloud_online %v (%v)", v, err)
	}
	expectWatchGone(t, w, "the link returned")
	if err := hubtest.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		l, err := kubelet.CoreV1().Pods("").List(ctx, sel)
		if err != nil {
			return err
		}
		if len(l.Items) != 5 {
			return fmt.Errorf("list through the hub has %d pods, want 5 with pod-silent", len(l.Items))
		}
		_, err = kubelet.CoreV1().Pods(ns).Get(ctx, "pod-silent", metav1.GetOptions{})
		return err
	}); err != nil {
		t.Fatalf("live data through the hub after the link returned: %v", err)
	}
	t.Logf("link restored: online again after %s, live reads after %s", back.Round(time.Millisecond), time.Since(restored).Round(time.Millisecond))
}
