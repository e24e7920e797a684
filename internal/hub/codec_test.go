package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/edgeunit/edgeunit/internal/hub/store"
)

const (
	// kubeletAccept is the kubelet's default Accept; client-go sends
	// "<ContentType>, */*" (kube-proxy's) when none is configured.
	kubeletAccept = mediaProtobuf + "," + mediaJSON
	kubeletUA     = "kubelet/v1.36.3 (linux/amd64) kubernetes/test"
	leasePath     = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
)

// protobufBody encodes obj as client-go does with protobuf configured.
func protobufBody(t *testing.T, obj runtime.Object) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := pbCodec.Encode(obj, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testLease(node string, renew time.Time) *coordinationv1.Lease {
	holder, rt := node, metav1.NewMicroTime(renew)
	return &coordinationv1.Lease{
		TypeMeta:   metav1.TypeMeta{Kind: "Lease", APIVersion: "coordination.k8s.io/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: "kube-node-lease"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &rt},
	}
}

func testNode(name, message string) *corev1.Node {
	n := &corev1.Node{TypeMeta: metav1.TypeMeta{Kind: "Node", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "5"}}
	if message != "" {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Message: message}}
	}
	return n
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkContentType fails the test for an answer whose body is not what its
// Content-Type says.
type checkContentType struct {
	t  *testing.T
	rt http.RoundTripper
}

func (c checkContentType) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if err != nil || r.URL.Query().Get("watch") != "" {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	// client-go retries a 503 with Retry-After for 10 s: the tests want
	// the 503.
	resp.Header.Del("Retry-After")
	if err := bodyIs(resp.Header.Get("Content-Type"), b); err != nil {
		c.t.Errorf("%s %s answered %d: %v", r.Method, r.URL.Path, resp.StatusCode, err)
	}
	return resp, nil
}

// bodyIs checks that b is encoded as the media type ct says.
func bodyIs(ct string, b []byte) error {
	switch mediaType(ct) {
	case mediaJSON:
		if !json.Valid(b) {
			return fmt.Errorf("labelled %s, body is not JSON: %q", ct, b)
		}
	case mediaProtobuf:
		if _, _, err := pbCodec.Decode(b, nil, nil); err != nil {
			return fmt.Errorf("labelled %s, body is not protobuf: %w", ct, err)
		}
	default:
		return fmt.Errorf("unexpected Content-Type %q", ct)
	}
	return nil
}

// kubeletClient talks to h as the kubelet does: protobuf bodies, and
// accept as its Accept ("" for client-go's "<ContentType>, */*").
func kubeletClient(t *testing.T, h http.Handler, accept string) kubernetes.Interface {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, UserAgent: kubeletUA, QPS: -1,
		ContentConfig: rest.ContentConfig{ContentType: mediaProtobuf, AcceptContentTypes: accept},
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper { return checkContentType{t: t, rt: rt} },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func cacheObject(t *testing.T, h *Hub, path string, body []byte) {
	t.Helper()
	if err := h.store.PutResponse(ClientKubelet+" "+path, store.Response{ContentType: mediaJSON, Body: body, Recorded: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

// TestKubeletDefaultEncodingsOffline: offline, the writes the kubelet makes
// with its default encodings (protobuf bodies) are answered in a type it
// takes, journaled and cached as JSON, and read back; its Node registration
// after a reboot gets the apiserver's 409.
func TestKubeletDefaultEncodingsOffline(t *testing.T) {
	const node = "n1"
	tests := map[string]struct {
		accept string
		reads  bool // the cache answers reads (JSON accepted)
	}{
		"kubelet":               {accept: kubeletAccept, reads: true},
		"kube-proxy's":          {accept: "", reads: true},
		"protobuf answers only": {accept: mediaProtobuf},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			h := offlineHub(t, node)
			cacheObject(t, h, "/api/v1/nodes/"+node, mustJSON(t, testNode(node, "")))
			cacheObject(t, h, "/api/v1/namespaces/ns/pods/p1", podJSON("p1", node))
			c := kubeletClient(t, h, tc.accept)

			// Registration after a reboot: the cached Node exists.
			_, err := c.CoreV1().Nodes().Create(ctx, testNode(node, ""), metav1.CreateOptions{})
			var se *apierrors.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("create own node: %v, want a Status error", err)
			}
			got, want := se.ErrStatus, apierrors.NewAlreadyExists(corev1.Resource("nodes"), node).ErrStatus
			got.TypeMeta = metav1.TypeMeta{}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("create own node:\n got  %+v\n want %+v", got, want)
			}
			if _, err := c.CoreV1().Nodes().Create(ctx, testNode("n2", ""), metav1.CreateOptions{}); !apierrors.IsServiceUnavailable(err) {
				t.Fatalf("create another node: %v, want 503", err)
			}
			if d := h.store.JournalDepth(); d != 0 {
				t.Fatalf("node creates journaled: depth %d", d)
			}

			renew := time.Now().Add(time.Hour).Truncate(time.Second)
			l, err := c.CoordinationV1().Leases("kube-node-lease").Create(ctx, testLease(node, renew.Add(-time.Minute)), metav1.CreateOptions{})
			if err != nil || *l.Spec.HolderIdentity != node {
				t.Fatalf("lease create: %v %+v", err, l)
			}
			l, err = c.CoordinationV1().Leases("kube-node-lease").Update(ctx, testLease(node, renew), metav1.UpdateOptions{})
			if err != nil || !l.Spec.RenewTime.Equal(&metav1.MicroTime{Time: renew}) {
				t.Fatalf("lease update: %v %+v", err, l)
			}
			n, err := c.CoreV1().Nodes().UpdateStatus(ctx, testNode(node, "put"), metav1.UpdateOptions{})
			if err != nil || n.Status.Conditions[0].Message != "put" {
				t.Fatalf("node status update: %v %+v", err, n)
			}
			n, err = c.CoreV1().Nodes().PatchStatus(ctx, node, []byte(`{"status":{"conditions":[{"type":"Ready","message":"patched"}]}}`))
			if err != nil || n.Status.Conditions[0].Message != "patched" {
				t.Fatalf("node status patch: %v %+v", err, n)
			}
			pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
				ObjectMeta: metav1.ObjectMeta{Name: "p1", Namespace: "ns"}, Spec: corev1.PodSpec{NodeName: node},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, Message: "offline"}}
			p, err := c.CoreV1().Pods("ns").UpdateStatus(ctx, pod, metav1.UpdateOptions{})
			if err != nil || p.Status.Message != "offline" {
				t.Fatalf("pod status update: %v %+v", err, p)
			}

			// Journaled as JSON (a patch as it came), in order.
			wantJournal := []string{"POST " + leasePath, "PUT " + leasePath + "/" + node, "PUT /api/v1/nodes/n1/status",
				"PATCH /api/v1/nodes/n1/status", "PUT /api/v1/namespaces/ns/pods/p1/status"}
			var journal []string
			for _, e := range drainJournal(t, h) {
				journal = append(journal, e.Method+" "+e.Path)
				wantCT := mediaJSON
				if e.Method == http.MethodPatch {
					wantCT = string(types.StrategicMergePatchType)
				}
				if e.ContentType != wantCT || !json.Valid(e.Body) {
					t.Errorf("journaled %s %s as %q: %q", e.Method, e.Path, e.ContentType, e.Body)
				}
			}
			if !reflect.DeepEqual(journal, wantJournal) {
				t.Fatalf("journal %v, want %v", journal, wantJournal)
			}

			// Read back from the cache.
			gl, err := c.CoordinationV1().Leases("kube-node-lease").Get(ctx, node, metav1.GetOptions{})
			gn, nerr := c.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
			gp, perr := c.CoreV1().Pods("ns").Get(ctx, "p1", metav1.GetOptions{})
			if !tc.reads {
				// The cache holds JSON only: no answer rather than a mislabelled one.
				for _, err := range []error{err, nerr, perr} {
					if !apierrors.IsServiceUnavailable(err) {
						t.Fatalf("offline read by a protobuf-only client: %v, want 503", err)
					}
				}
				return
			}
			if err != nil || !gl.Spec.RenewTime.Equal(&metav1.MicroTime{Time: renew}) {
				t.Fatalf("lease read back: %v %+v", err, gl)
			}
			if nerr != nil || gn.Status.Conditions[0].Message != "patched" {
				t.Fatalf("node read back: %v %+v", nerr, gn)
			}
			if perr != nil || gp.Status.Message != "offline" {
				t.Fatalf("pod read back: %v %+v", perr, gp)
			}
		})
	}
}

// drainJournal removes and returns the journal's entries, in order.
func drainJournal(t *testing.T, h *Hub) []store.Entry {
	t.Helper()
	var out []store.Entry
	for {
		e, ok, err := h.store.First()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, e)
		if err := h.store.Remove(e); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOfflineNodeCreateUncached: with no cached copy of its Node the hub
// cannot say it exists: the registration waits for the cloud (503).
func TestOfflineNodeCreateUncached(t *testing.T) {
	h := offlineHub(t, "n1")
	_, err := kubeletClient(t, h, kubeletAccept).CoreV1().Nodes().Create(context.Background(), testNode("n1", ""), metav1.CreateOptions{})
	if !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("create of an uncached node: %v, want 503", err)
	}
}

// fakeAPIServer records the requests it gets and answers writes by echoing
// them as JSON (the hub asks for JSON), after a 409 for the first write
// when conflict is set; a GET returns the object at resourceVersion 42.
type fakeAPIServer struct {
	mu       sync.Mutex
	calls    []call
	conflict bool
	current  []byte
}

type call struct {
	method, path, contentType, accept string
	body                              []byte
}

func (f *fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.calls = append(f.calls, call{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Accept"), b})
	conflict := f.conflict && r.Method != http.MethodGet
	if conflict {
		f.conflict = false
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", mediaJSON)
	switch {
	case conflict:
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Conflict","code":409}`))
	case r.Method == http.MethodGet:
		_, _ = w.Write(f.current)
	default:
		if mediaType(r.Header.Get("Content-Type")) == mediaProtobuf {
			var err error
			if b, err = objectJSON(mediaProtobuf, b); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
		}
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		}
		_, _ = w.Write(b)
	}
}

func (f *fakeAPIServer) writes() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.method != http.MethodGet {
			out = append(out, c)
		}
	}
	return out
}

func serveRaw(h http.Handler, method, path, contentType, accept string, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	r.Header.Set("User-Agent", kubeletUA)
	r.Header.Set("Content-Type", contentType)
	r.Header.Set("Accept", accept)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestReplayOfProtobufWrites: offline writes sent as protobuf are replayed
// as the JSON they were journaled as, also on the conflict retry, and so is
// a protobuf entry an older hub journaled as it came.
func TestReplayOfProtobufWrites(t *testing.T) {
	const node = "n1"
	renew := time.Now().Add(time.Hour).Truncate(time.Second)
	pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "p1", Namespace: "ns"}, Spec: corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Message: "offline"}}
	tests := map[string]struct {
		method, path string
		body         runtime.Object
		legacy       bool // journaled as protobuf by an older hub
		conflict     bool
		result       string
		retryPath    string // where the conflict retry PUTs
	}{
		"lease update":                  {method: http.MethodPut, path: leasePath + "/" + node, body: testLease(node, renew), result: "applied"},
		"lease update after a conflict": {method: http.MethodPut, path: leasePath + "/" + node, body: testLease(node, renew), conflict: true, result: "applied_after_conflict", retryPath: leasePath + "/" + node},
		"lease create":                  {method: http.MethodPost, path: leasePath, body: testLease(node, renew), result: "applied"},
		"lease create after a conflict": {method: http.MethodPost, path: leasePath, body: testLease(node, renew), conflict: true, result: "applied_after_conflict", retryPath: leasePath + "/" + node},
		"node status update":            {method: http.MethodPut, path: "/api/v1/nodes/n1/status", body: testNode(node, "offline"), result: "applied"},
		"pod status update":             {method: http.MethodPut, path: "/api/v1/namespaces/ns/pods/p1/status", body: pod, result: "applied"},
		"older hub's protobuf entry after a conflict": {method: http.MethodPut, path: leasePath + "/" + node, body: testLease(node, renew), legacy: true,
			conflict: true, result: "applied_after_conflict", retryPath: leasePath + "/" + node},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			current := testLease(node, renew.Add(-time.Hour))
			current.ResourceVersion = "42"
			fake := &fakeAPIServer{conflict: tc.conflict, current: mustJSON(t, current)}
			up := httptest.NewServer(fake)
			t.Cleanup(up.Close)
			h := offlineHubFor(t, node, up.URL)
			cacheObject(t, h, "/api/v1/namespaces/ns/pods/p1", podJSON("p1", node))
			pb := protobufBody(t, tc.body)
			if tc.legacy {
				if _, err := h.store.Append(store.Entry{Method: tc.method, Path: tc.path, ContentType: mediaProtobuf, Body: pb,
					Client: ClientKubelet, UserAgent: kubeletUA, Time: time.Now()}, 100); err != nil {
					t.Fatal(err)
				}
			} else if w := serveRaw(h, tc.method, tc.path, mediaProtobuf, kubeletAccept, pb); w.Code/100 != 2 {
				t.Fatalf("offline write: %d %s", w.Code, w.Body)
			}
			e, ok, err := h.store.First()
			if err != nil || !ok {
				t.Fatalf("nothing journaled: %v", err)
			}
			h.link.markOnline()
			if result, retry := h.replayOne(context.Background(), e); result != tc.result || retry {
				t.Fatalf("replay: %s (retry %v), want %s", result, retry, tc.result)
			}

			writes := fake.writes()
			last := writes[len(writes)-1]
			if tc.conflict && (len(writes) != 2 || last.method != http.MethodPut || last.path != tc.retryPath) {
				t.Fatalf("writes after a conflict: %+v, want a retry PUT of %s", writes, tc.retryPath)
			}
			if !tc.conflict && (len(writes) != 1 || last.method != tc.method || last.path != tc.path) {
				t.Fatalf("writes: %+v, want one %s of %s", writes, tc.method, tc.path)
			}
			if last.contentType != mediaJSON || last.accept != mediaJSON {
				t.Fatalf("replayed with Content-Type %q Accept %q, want JSON", last.contentType, last.accept)
			}
			// The replayed object is the one written, as JSON.
			got := reflect.New(reflect.TypeOf(tc.body).Elem()).Interface().(runtime.Object)
			if err := json.Unmarshal(last.body, got); err != nil {
				t.Fatalf("replayed body is not JSON: %v: %q", err, last.body)
			}
			wantRV := tc.body.(metav1.Object).GetResourceVersion()
			if tc.conflict {
				wantRV = "42"
			}
			if m := got.(metav1.Object); m.GetResourceVersion() != wantRV {
				t.Fatalf("replayed resourceVersion %q, want %q", m.GetResourceVersion(), wantRV)
			}
			got.(metav1.Object).SetResourceVersion(tc.body.(metav1.Object).GetResourceVersion())
			if !apiequality.Semantic.DeepEqual(got, tc.body) {
				t.Fatalf("replayed\n %+v\nwant\n %+v", got, tc.body)
			}
		})
	}
}

// TestOnlineProtobufWrites: online, a write goes up as the client encoded
// it, with JSON asked back (for the cache); the answer is relayed in a type
// the client takes.
func TestOnlineProtobufWrites(t *testing.T) {
	const node = "n1"
	for name, accept := range map[string]string{"kubelet": kubeletAccept, "kube-proxy's": "", "protobuf only": mediaProtobuf} {
		t.Run(name, func(t *testing.T) {
			fake := &fakeAPIServer{}
			up := httptest.NewServer(fake)
			t.Cleanup(up.Close)
			h := offlineHubFor(t, node, up.URL)
			h.link.markOnline()
			renew := time.Now().Truncate(time.Second)
			l, err := kubeletClient(t, h, accept).CoordinationV1().Leases("kube-node-lease").Update(context.Background(), testLease(node, renew), metav1.UpdateOptions{})
			if err != nil || !l.Spec.RenewTime.Equal(&metav1.MicroTime{Time: renew}) {
				t.Fatalf("lease update: %v %+v", err, l)
			}
			writes := fake.writes()
			if len(writes) != 1 || writes[0].contentType != mediaProtobuf || writes[0].accept != mediaJSON {
				t.Fatalf("upstream got %+v, want one protobuf write asking for JSON", writes)
			}
			if h.store.JournalDepth() != 0 {
				t.Fatal("an online write was journaled")
			}
		})
	}
}

// TestProtobufOnlyAnswer: a client that takes only protobuf gets the
// offline answer in protobuf, labelled so.
func TestProtobufOnlyAnswer(t *testing.T) {
	h := offlineHub(t, "n1")
	renew := time.Now().Truncate(time.Second)
	w := serveRaw(h, http.MethodPut, leasePath+"/n1", mediaProtobuf, mediaProtobuf, protobufBody(t, testLease("n1", renew)))
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != mediaProtobuf {
		t.Fatalf("answer %d %q: %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	var got coordinationv1.Lease
	if _, _, err := pbCodec.Decode(w.Body.Bytes(), nil, &got); err != nil || !got.Spec.RenewTime.Equal(&metav1.MicroTime{Time: renew}) {
		t.Fatalf("answer: %v %+v", err, got)
	}
	// Nothing the hub could encode: the client hears so.
	w = serveRaw(h, http.MethodPut, leasePath+"/n1", mediaProtobuf, "application/yaml", protobufBody(t, testLease("n1", renew)))
	if w.Code != http.StatusNotAcceptable || !strings.Contains(w.Body.String(), "NotAcceptable") {
		t.Fatalf("answer for application/yaml: %d %s", w.Code, w.Body)
	}
}

func TestAnswerType(t *testing.T) {
	tests := map[string]string{
		"":                                      mediaJSON,
		kubeletAccept:                           mediaJSON,
		mediaProtobuf + ", */*":                 mediaJSON,
		mediaProtobuf:                           mediaProtobuf,
		"application/json;q=0," + mediaProtobuf: mediaProtobuf,
		"application/json;as=Table;g=meta.k8s.io;v=v1": "",
		"application/yaml": "",
	}
	for accept, want := range tests {
		if got := answerType(accept); got != want {
			t.Errorf("answerType(%q) = %q, want %q", accept, got, want)
		}
	}
}

// TestCachedProtobufNotServedAsJSON: a value an older hub cached from a
// protobuf write under a JSON label is not served as JSON.
func TestCachedProtobufNotServedAsJSON(t *testing.T) {
	h := offlineHub(t, "n1")
	cacheObject(t, h, leasePath+"/n1", protobufBody(t, testLease("n1", time.Now())))
	w := serveRaw(h, http.MethodGet, leasePath+"/n1", "", kubeletAccept, nil)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("GET of a protobuf value labelled JSON: %d %q", w.Code, w.Body)
	}
	if err := bodyIs(w.Header().Get("Content-Type"), w.Body.Bytes()); err != nil {
		t.Fatal(err)
	}
}
