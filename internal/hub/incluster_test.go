package hub

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgeunit/edgeunit/internal/hub/store"
)

func service(ns, name string) []byte {
	return fmt.Appendf(nil, `{"kind":"Service","apiVersion":"v1","metadata":{"name":%q,"namespace":%q,"resourceVersion":"7"},`+
		`"spec":{"clusterIP":"10.0.0.1","clusterIPs":["10.0.0.1"],"ports":[{"name":"https","port":443,"protocol":"TCP","targetPort":6443}]}}`, name, ns)
}

// TestRewriteAPIService: while the in-cluster listener serves, the
// kubelet's view of default/kubernetes names it, and nothing else changes.
func TestRewriteAPIService(t *testing.T) {
	h := &Hub{cfg: Config{ListenInCluster: "169.254.31.1:10269"}}
	ic, err := newInCluster(h)
	if err != nil {
		t.Fatal(err)
	}
	h.inCluster = ic
	api := service("default", "kubernetes")
	if out, changed := ic.rewriteService(api); changed || string(out) != string(api) {
		t.Fatalf("rewritten before the listener serves: %s", out)
	}
	before := ic.changes()
	ic.setServing(true)
	select {
	case <-before:
	default:
		t.Fatal("starting to serve did not signal a change: the kubelet's watches would not re-list")
	}
	out, changed := ic.rewriteService(api)
	if !changed {
		t.Fatal("default/kubernetes not rewritten while serving")
	}
	for _, want := range []string{`"clusterIP":"169.254.31.1"`, `"clusterIPs":["169.254.31.1"]`, `"port":10269`, `"targetPort":6443`, `"resourceVersion":"7"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rewritten Service lacks %s: %s", want, out)
		}
	}
	for _, other := range [][]byte{service("default", "web"), service("kube-system", "kubernetes")} {
		if out, changed := ic.rewriteService(other); changed || string(out) != string(other) {
			t.Errorf("another Service was rewritten: %s", out)
		}
	}

	tests := map[string]struct {
		client, path string
		want         bool
	}{
		"kubelet, all services":        {ClientKubelet, "/api/v1/services", true},
		"kubelet, default's services":  {ClientKubelet, "/api/v1/namespaces/default/services", true},
		"kubelet, the Service":         {ClientKubelet, "/api/v1/namespaces/default/services/kubernetes", true},
		"kubelet, another namespace":   {ClientKubelet, "/api/v1/namespaces/web/services", false},
		"kubelet, endpoints":           {ClientKubelet, "/api/v1/endpoints", false},
		"kube-proxy, services":         {ClientKubeProxy, "/api/v1/services", false},
		"an in-cluster caller":         {callerClient(ClientOther, "system:serviceaccount:default:app"), "/api/v1/services", false},
		"kube-proxy, endpoint slices":  {ClientKubeProxy, "/apis/discovery.k8s.io/v1/endpointslices", false},
		"other clients, services list": {ClientOther, "/api/v1/services", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			u, _ := url.Parse(tc.path)
			f := h.filterFor(tc.client, parseRequest(&http.Request{Method: http.MethodGet, URL: u}))
			if got := f != nil && f.what == "in-cluster API endpoint"; got != tc.want {
				t.Fatalf("rewrites = %v, want %v", got, tc.want)
			}
		})
	}
}

func jwt(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(fmt.Appendf(nil, `{"sub":"system:serviceaccount:default:app","exp":%d}`, exp.Unix())) + ".c2ln"
}

// TestCallersOffline: offline, a token seen online is its user (also after
// a restart, from the store); an expired one and one never seen are
// refused.
func TestCallersOffline(t *testing.T) {
	dir := t.TempDir()
	open := func() *Hub {
		st, _, err := store.Open(filepath.Join(dir, "cache.db"), 5*time.Second, logr.Discard())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return &Hub{log: logr.Discard(), store: st, link: newLink(logr.Discard(), false)}
	}
	h := open()
	c := newCallers(h)
	seen, expired := jwt(time.Now().Add(time.Hour)), jwt(time.Now().Add(-time.Minute))
	for _, tok := range []string{seen, expired} {
		c.remember(tokenSum(tok), callerRecord{User: "system:serviceaccount:default:app", Expires: tokenExpiry(tok)})
	}
	_ = h.store.Close()

	c = newCallers(open()) // a restart: nothing in memory
	ctx := context.Background()
	if user, err := c.identify(ctx, seen); err != nil || user != "system:serviceaccount:default:app" {
		t.Fatalf("a token seen online: user %q, error %v", user, err)
	}
	for name, tc := range map[string]struct {
		token string
		code  int
	}{
		"expired":    {expired, http.StatusUnauthorized},
		"never seen": {jwt(time.Now().Add(time.Hour)) + "x", http.StatusServiceUnavailable},
	} {
		_, err := c.identify(ctx, tc.token)
		var se *statusError
		if !errors.As(err, &se) || se.code != tc.code {
			t.Errorf("%s token: error %v, want HTTP %d", name, err, tc.code)
		}
	}
}

func TestTokenExpiry(t *testing.T) {
	at := time.Unix(1893456000, 0)
	if got := tokenExpiry(jwt(at)); !got.Equal(at) {
		t.Errorf("expiry %v, want %v", got, at)
	}
	for _, tok := range []string{"static-token", "a.b", "a.!!!.c", "a." + base64.RawURLEncoding.EncodeToString([]byte(`{}`)) + ".c"} {
		if got := tokenExpiry(tok); !got.IsZero() {
			t.Errorf("tokenExpiry(%q) = %v, want none", tok, got)
		}
	}
}

// TestCallersAreCachedButNeverJournaled: an in-cluster caller's reads are
// cached under its identity whatever its component, and its writes are
// never journaled (the journal replays as the node).
func TestCallersAreCachedButNeverJournaled(t *testing.T) {
	h := &Hub{cfg: Config{NodeName: "n1"}, cached: set([]string{ClientKubelet})}
	caller := callerClient(ClientOther, "system:serviceaccount:default:app")
	u, _ := url.Parse("/api/v1/namespaces/default/configmaps/data")
	r := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}
	if !h.cacheable(caller, parseRequest(r), r) {
		t.Error("a caller's read is not cacheable")
	}
	if h.cacheable(ClientOther, parseRequest(r), r) {
		t.Error("a loopback client that is not cached became cacheable")
	}
	if componentOf(caller) != ClientOther || !isCaller(caller) || isCaller(ClientOther) {
		t.Errorf("client name %q does not split", caller)
	}
	u, _ = url.Parse("/api/v1/namespaces/default/pods/p/status")
	w := &http.Request{Method: http.MethodPatch, URL: u, Header: http.Header{}}
	if !h.journalable(parseRequest(w), w) {
		t.Fatal("a pod status patch is not journalable: the test cannot tell")
	}
	rec := &recordingWriter{header: http.Header{}}
	h.link = newLink(logr.Discard(), false)
	if out := h.serve(rec, w.WithContext(withCallerToken(context.Background(), "t")), caller, parseRequest(w)); out != outcomeRejected || rec.code != http.StatusServiceUnavailable {
		t.Errorf("a caller's offline pod status patch: outcome %s, HTTP %d; want rejected with 503, not journaled", out, rec.code)
	}
}

type recordingWriter struct {
	header http.Header
	code   int
}

func (w *recordingWriter) Header() http.Header { return w.header }
func (w *recordingWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(b), nil
}
func (w *recordingWriter) WriteHeader(code int) { w.code = code }

func TestCallerCacheable(t *testing.T) {
	reader := callerClient(ClientOther, "system:serviceaccount:default:app")
	tests := map[string]struct {
		client, target string
		want           bool
	}{
		"an object":                      {reader, "/api/v1/namespaces/default/configmaps/data", true},
		"a list with selectors":          {reader, "/api/v1/namespaces/default/configmaps?labelSelector=a%3Db&limit=500", true},
		"discovery":                      {reader, "/apis/apps/v1", true},
		"the version":                    {reader, "/version", true},
		"a made-up parameter":            {reader, "/api/v1/namespaces/default/configmaps/data?n=1", false},
		"discovery with a parameter":     {reader, "/version?n=1", false},
		"another non-resource path":      {reader, "/openapi/v2", false},
		"a token without a user":         {callerClient(ClientOther, ""), "/api/v1/namespaces/default/configmaps/data", false},
		"logs":                           {reader, "/api/v1/namespaces/default/pods/p/log", false},
		"a user spelling another's keys": {callerClient(ClientOther, "a /api/v1/x"), "/api/v1/namespaces/default/configmaps/data", true},
	}
	h := &Hub{}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			u, _ := url.Parse(tc.target)
			r := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}
			if got := h.cacheable(tc.client, parseRequest(r), r); got != tc.want {
				t.Fatalf("cacheable = %v, want %v", got, tc.want)
			}
		})
	}
	if c := callerClient(ClientOther, "a /api/v1/x"); strings.ContainsAny(strings.TrimPrefix(c, ClientOther+callerSep), " /") {
		t.Errorf("caller name %q keeps the user's spaces or slashes: it could spell another user's cache keys", c)
	}
}

// TestKubeletWatchAfterStaleList: a Service list the kubelet got before
// the listener served makes its next watch end at once, so it re-lists
// and sees the listener's address; a list while serving clears that.
func TestKubeletWatchAfterStaleList(t *testing.T) {
	h := &Hub{cfg: Config{ListenInCluster: "169.254.31.1:10269"}}
	ic, err := newInCluster(h)
	if err != nil {
		t.Fatal(err)
	}
	h.inCluster = ic
	req := func(target string) reqInfo {
		u, _ := url.Parse(target)
		return parseRequest(&http.Request{Method: http.MethodGet, URL: u})
	}
	list, watch := req("/api/v1/services"), req("/api/v1/services?watch=true&resourceVersion=5")
	f := h.filterFor(ClientKubelet, list) // answered before serving
	if f.expireWatch() {
		t.Fatal("a watch expires before the listener serves")
	}
	ic.setServing(true)
	if !h.filterFor(ClientKubelet, watch).expireWatch() {
		t.Fatal("the watch after a list answered before serving does not expire: the kubelet keeps the apiserver's address")
	}
	h.filterFor(ClientKubelet, list) // the re-list, served rewritten
	if h.filterFor(ClientKubelet, watch).expireWatch() {
		t.Fatal("the watch after a list answered while serving expires: the kubelet would re-list forever")
	}
}

// TestLearnFromTokenRequest: a token the apiserver issues through the hub
// (the kubelet's TokenRequest, protobuf or JSON) is known offline, as its
// service account; the client still gets the answer whole.
func TestLearnFromTokenRequest(t *testing.T) {
	st, _, err := store.Open(filepath.Join(t.TempDir(), "cache.db"), 5*time.Second, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	h := &Hub{log: logr.Discard(), store: st, link: newLink(logr.Discard(), false)}
	c := newCallers(h)
	for name, encode := range map[string]func(*authenticationv1.TokenRequest) (string, []byte){
		"protobuf": func(tr *authenticationv1.TokenRequest) (string, []byte) {
			var buf bytes.Buffer
			if err := pbCodec.Encode(tr, &buf); err != nil {
				t.Fatal(err)
			}
			return mediaProtobuf, buf.Bytes()
		},
		"json": func(tr *authenticationv1.TokenRequest) (string, []byte) {
			b, _ := json.Marshal(tr)
			return mediaJSON, b
		},
	} {
		t.Run(name, func(t *testing.T) {
			token := jwt(time.Now().Add(time.Hour)) + name
			tr := &authenticationv1.TokenRequest{TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenRequest"},
				Status: authenticationv1.TokenRequestStatus{Token: token}}
			ct, body := encode(tr)
			u, _ := url.Parse("/api/v1/namespaces/shop/serviceaccounts/till/token")
			resp := &http.Response{StatusCode: http.StatusCreated, Header: http.Header{"Content-Type": {ct}},
				Body: io.NopCloser(bytes.NewReader(body)), Request: &http.Request{Method: http.MethodPost, URL: u}}
			c.learnFromTokenRequest(resp)
			if got, _ := io.ReadAll(resp.Body); !bytes.Equal(got, body) {
				t.Fatal("the client's answer changed")
			}
			if user, err := c.identify(context.Background(), token); err != nil || user != "system:serviceaccount:shop:till" {
				t.Fatalf("offline, the learned token is %q (%v); want system:serviceaccount:shop:till", user, err)
			}
		})
	}
}

// TestReadyMeansCanAnswer: offline, the hub is ready only with a cache to
// answer from; online it is.
func TestReadyMeansCanAnswer(t *testing.T) {
	h := &Hub{log: logr.Discard(), link: newLink(logr.Discard(), false)}
	h.metrics = newMetrics(h)
	h.ready.Store(true)
	admin := h.adminHandler()
	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "nothing cached") {
		t.Errorf("offline with an empty cache: HTTP %d %q, want 503", code, body)
	}
	h.hasCache.Store(true)
	if code, body := readyz(); code != http.StatusOK || !strings.Contains(body, "offline, serving from cache") {
		t.Errorf("offline with a cache: HTTP %d %q, want 200", code, body)
	}
	h.hasCache.Store(false)
	h.link.markOnline()
	if code, body := readyz(); code != http.StatusOK || !strings.Contains(body, "online") {
		t.Errorf("online: HTTP %d %q, want 200", code, body)
	}
}
