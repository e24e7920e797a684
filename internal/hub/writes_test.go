package hub

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgeunit/edgeunit/internal/hub/store"
)

// offlineHub is a hub that never reached its apiserver (New starts
// offline and nothing runs the prober), on a fresh store.
func offlineHub(t *testing.T, node string) *Hub {
	t.Helper()
	return offlineHubFor(t, node, "https://127.0.0.1:1")
}

// offlineHubFor is offlineHub with server as its apiserver, for tests that
// then mark the link online.
func offlineHubFor(t *testing.T, node, server string) *Hub {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Server, cfg.DataDir = node, server, t.TempDir()
	cfg.ListenHTTP, cfg.ListenHTTPS, cfg.ListenAdmin = "127.0.0.1:0", "", ""
	h, err := New(cfg, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.store.Close() })
	if h.link.Online() {
		t.Fatal("a new hub starts online")
	}
	return h
}

func podJSON(name, nodeName string) []byte {
	spec := ""
	if nodeName != "" {
		spec = `"spec":{"nodeName":"` + nodeName + `"},`
	}
	return []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"` + name + `","namespace":"ns","uid":"u-` + name + `"},` +
		spec + `"status":{"phase":"Pending"}}`)
}

func requestCount(t *testing.T, h *Hub, verb, outcome string) float64 {
	t.Helper()
	var m dto.Metric
	if err := h.metrics.requests.WithLabelValues(ClientKubelet, verb, outcome).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestOfflinePodStatusOnlyForOwnPods: offline, the hub takes a Pod status
// write only for a pod bound to its node, as NodeRestriction does online.
// The cached pod decides; a PUT's body only when nothing is cached.
func TestOfflinePodStatusOnlyForOwnPods(t *testing.T) {
	const node = "n1"
	const patch = `{"status":{"phase":"Running"}}`
	tests := []struct {
		name       string
		method     string
		pod        string
		cachedNode string // "-": nothing cached
		body       []byte
		code       int
		message    string
	}{
		{name: "own pod patch", method: http.MethodPatch, pod: "mine", cachedNode: node, body: []byte(patch), code: http.StatusOK},
		{name: "other node's pod patch", method: http.MethodPatch, pod: "theirs", cachedNode: "n2", body: []byte(patch), code: http.StatusForbidden,
			message: `edge-hub: offline, only the status of pods bound to node "n1" is written; pod ns/theirs is bound to "n2"`},
		{name: "unbound pod patch", method: http.MethodPatch, pod: "pending", cachedNode: "", body: []byte(patch), code: http.StatusForbidden,
			message: `edge-hub: offline, only the status of pods bound to node "n1" is written; pod ns/pending is not bound to a node`},
		{name: "uncached put for this node", method: http.MethodPut, pod: "new", cachedNode: "-", body: podJSON("new", node), code: http.StatusOK},
		{name: "uncached put for another node", method: http.MethodPut, pod: "new", cachedNode: "-", body: podJSON("new", "n2"), code: http.StatusForbidden,
			message: `edge-hub: offline, only the status of pods bound to node "n1" is written; pod ns/new is bound to "n2"`},
		{name: "uncached put of an unbound pod", method: http.MethodPut, pod: "new", cachedNode: "-", body: podJSON("new", ""), code: http.StatusForbidden,
			message: `edge-hub: offline, only the status of pods bound to node "n1" is written; pod ns/new is not bound to a node`},
		// The body is the client's claim: the cached copy wins either way.
		{name: "put claiming this node for another node's pod", method: http.MethodPut, pod: "theirs", cachedNode: "n2", body: podJSON("theirs", node), code: http.StatusForbidden,
			message: `edge-hub: offline, only the status of pods bound to node "n1" is written; pod ns/theirs is bound to "n2"`},
		{name: "put naming another node for own pod", method: http.MethodPut, pod: "mine", cachedNode: node, body: podJSON("mine", "n2"), code: http.StatusOK},
		// Unchanged: a patch with nothing to apply it to is a 503.
		{name: "uncached patch", method: http.MethodPatch, pod: "new", cachedNode: "-", body: []byte(patch), code: http.StatusServiceUnavailable,
			message: "no cached copy of /api/v1/namespaces/ns/pods/new exists"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := offlineHub(t, node)
			if tc.cachedNode != "-" {
				// As the kubelet's records leave it: its own pods in its
				// field-selected LIST, another pod from a GET.
				if tc.cachedNode == node {
					key := ClientKubelet + " /api/v1/pods?fieldSelector=spec.nodeName%3D" + node
					meta := store.CollectionMeta{Kind: "PodList", APIVersion: "v1", ResourceVersion: "10", Updated: time.Now()}
					if err := h.store.ReplaceCollection(key, meta, []store.Item{{Key: "ns/" + tc.pod, Value: podJSON(tc.pod, node)}}); err != nil {
						t.Fatal(err)
					}
				} else if err := h.store.PutResponse(ClientKubelet+" /api/v1/namespaces/ns/pods/"+tc.pod,
					store.Response{ContentType: "application/json", Body: podJSON(tc.pod, tc.cachedNode), Recorded: time.Now()}); err != nil {
					t.Fatal(err)
				}
			}
			verb := map[string]string{http.MethodPatch: "patch", http.MethodPut: "update"}[tc.method]
			r := httptest.NewRequest(tc.method, "/api/v1/namespaces/ns/pods/"+tc.pod+"/status", strings.NewReader(string(tc.body)))
			r.Header.Set("User-Agent", "kubelet/v1.36.3 (linux/amd64) kubernetes/test")
			if tc.method == http.MethodPatch {
				r.Header.Set("Content-Type", "application/strategic-merge-patch+json")
			} else {
				r.Header.Set("Content-Type", "application/json")
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)

			if w.Code != tc.code {
				t.Fatalf("code %d, want %d: %s", w.Code, tc.code, w.Body)
			}
			depth := h.store.JournalDepth()
			if tc.code != http.StatusOK {
				var st metav1.Status
				if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.Kind != "Status" || st.Code != int32(tc.code) {
					t.Fatalf("answer is not a Status with code %d (%v): %s", tc.code, err, w.Body)
				}
				if tc.code == http.StatusForbidden && (st.Reason != metav1.StatusReasonForbidden || st.Message != tc.message) {
					t.Fatalf("reason %q message %q, want Forbidden %q", st.Reason, st.Message, tc.message)
				}
				if !strings.Contains(st.Message, tc.message) {
					t.Fatalf("message %q, want it to contain %q", st.Message, tc.message)
				}
				if depth != 0 || h.journalDepth.Load() != 0 {
					t.Fatalf("a refused write was journaled: depth %d (gauge %d)", depth, h.journalDepth.Load())
				}
				if n := requestCount(t, h, verb, outcomeRejected); n != 1 {
					t.Fatalf("rejected requests %v, want 1", n)
				}
				return
			}
			if depth != 1 || h.journalDepth.Load() != 1 {
				t.Fatalf("journal depth %d (gauge %d), want 1", depth, h.journalDepth.Load())
			}
			e, ok, err := h.store.First()
			if err != nil || !ok || e.Method != tc.method || e.Path != r.URL.Path || string(e.Body) != string(tc.body) {
				t.Fatalf("journaled %+v (ok %v, err %v), want the %s of %s", e, ok, err, tc.method, r.URL.Path)
			}
			if n := requestCount(t, h, verb, outcomeJournaled); n != 1 {
				t.Fatalf("journaled requests %v, want 1", n)
			}
		})
	}
}
