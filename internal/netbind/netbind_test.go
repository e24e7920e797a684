package netbind

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func TestBackendDataPatch(t *testing.T) {
	const mac = "0a:58:0a:f4:00:01"
	tests := map[string]struct {
		annotations map[string]string
		wantPatch   bool
		wantValue   map[string]any
		wantErr     bool
	}{
		"absent: flannel has not registered": {annotations: map[string]string{}},
		"already bound (case-insensitive)":   {annotations: map[string]string{BackendDataAnnotation: `{"VNI":1,"VtepMAC":"0A:58:0A:F4:00:01"}`}},
		"random MAC replaced, VNI kept": {
			annotations: map[string]string{BackendDataAnnotation: `{"VNI":1,"VtepMAC":"12:34:56:78:9a:bc"}`},
			wantPatch:   true, wantValue: map[string]any{"VNI": float64(1), "VtepMAC": mac},
		},
		"empty value": {annotations: map[string]string{BackendDataAnnotation: ``}, wantPatch: true, wantValue: map[string]any{"VtepMAC": mac}},
		"not JSON":    {annotations: map[string]string{BackendDataAnnotation: `nope`}, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			patch, err := backendDataPatch(tc.annotations, "42", mac)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tc.wantErr)
			}
			if (patch != nil) != tc.wantPatch {
				t.Fatalf("patch %s, want one: %v", patch, tc.wantPatch)
			}
			if patch == nil {
				return
			}
			var p struct {
				Metadata struct {
					ResourceVersion string            `json:"resourceVersion"`
					Annotations     map[string]string `json:"annotations"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(patch, &p); err != nil {
				t.Fatal(err)
			}
			if p.Metadata.ResourceVersion != "42" || len(p.Metadata.Annotations) != 1 {
				t.Fatalf("patch %s: want the resourceVersion precondition and only our annotation", patch)
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(p.Metadata.Annotations[BackendDataAnnotation]), &v); err != nil {
				t.Fatal(err)
			}
			if len(v) != len(tc.wantValue) || v["VtepMAC"] != tc.wantValue["VtepMAC"] || v["VNI"] != tc.wantValue["VNI"] {
				t.Fatalf("value %v, want %v", v, tc.wantValue)
			}
		})
	}
}

func TestBindingsFor(t *testing.T) {
	u := &edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: "u", ResourceVersion: "7"}, Status: edgev1.EdgeUnitStatus{Bindings: []edgev1.NodeBinding{
		{Node: "other", VTEPMAC: "0a:00:00:00:00:02", Pods: []edgev1.PodIPBinding{{Pod: "ns/x", IP: "10.0.0.9"}}},
		{Node: "n1", VTEPMAC: "0A:00:00:00:00:01", VTEPIP: "192.0.2.1", Pods: []edgev1.PodIPBinding{{Pod: "ns/a", IP: "10.0.0.2"}}},
	}}}
	tests := map[string]struct {
		node string
		want Bindings
	}{
		"this node's entry only, MAC lowercased": {node: "n1", want: Bindings{Unit: "u", Node: "n1", VTEPMAC: "0a:00:00:00:00:01", VTEPIP: "192.0.2.1", Pods: map[string]string{"ns/a": "10.0.0.2"}}},
		"no entry binds nothing":                 {node: "n9", want: Bindings{Unit: "u", Node: "n9"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := bindingsFor(u, tc.node); !got.Equal(tc.want) || got.ResourceVersion != "7" {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestStoreDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", StateFileName)
	s, err := OpenStore(path)
	if err != nil || s.Get().Node != "" {
		t.Fatalf("new store: %+v %v", s.Get(), err)
	}
	changed := s.Changed()
	if err := s.Update(func(b *Bindings) {
		*b = Bindings{Unit: "u", Node: "n1", VTEPMAC: "0a:00:00:00:00:01", Pods: map[string]string{"ns/a": "10.0.0.2"}, AnnotationPending: true}
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed not signalled")
	}
	s2, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := s2.Get(); got.Pods["ns/a"] != "10.0.0.2" || !got.AnnotationPending || got.VTEPMAC != "0a:00:00:00:00:01" {
		t.Fatalf("reloaded %+v", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
	// A flipped byte is detected, the file moved aside, the copy empty.
	raw, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(raw), "10.0.0.2", "10.0.0.3", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	s3, err := OpenStore(path)
	if err == nil || s3 == nil || s3.Get().Pods != nil {
		t.Fatalf("corrupt copy: %+v %v, want an empty store and an error", s3, err)
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Fatalf("corrupt copy not kept aside: %v", err)
	}
}

func TestHandler(t *testing.T) {
	s, err := OpenStore(filepath.Join(t.TempDir(), StateFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(b *Bindings) { b.Node, b.Pods = "n1", map[string]string{"ns/a": "10.0.0.2"} }); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		query    string
		podIPs   bool
		wantCode int
		wantBody string
	}{
		"bound":        {query: "namespace=ns&name=a", podIPs: true, wantCode: 200, wantBody: `{"ip":"10.0.0.2"}`},
		"unbound":      {query: "namespace=ns&name=b", podIPs: true, wantCode: 404, wantBody: "no IP is bound"},
		"switched off": {query: "namespace=ns&name=a", podIPs: false, wantCode: 404, wantBody: "off for this unit"},
		"missing name": {query: "namespace=ns", podIPs: true, wantCode: 400},
		"invalid name": {query: "namespace=ns&name=A_b", podIPs: true, wantCode: 400},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Handler(s, tc.podIPs).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/podip?"+tc.query, nil))
			if rec.Code != tc.wantCode || !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Fatalf("%d %s, want %d with %q", rec.Code, rec.Body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestHandlerBoundIPs(t *testing.T) {
	tests := map[string]struct {
		pods   map[string]string
		podIPs bool
		want   string
	}{
		"every bound IP, sorted, once": {pods: map[string]string{"ns/b": "10.0.0.3", "ns/a": "10.0.0.2", "other/c": "10.0.0.2"}, podIPs: true, want: `{"ips":["10.0.0.2","10.0.0.3"]}`},
		"nothing bound":                {podIPs: true, want: `{"ips":[]}`},
		"switched off":                 {pods: map[string]string{"ns/a": "10.0.0.2"}, podIPs: false, want: `{"ips":[]}`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := OpenStore(filepath.Join(t.TempDir(), StateFileName))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Update(func(b *Bindings) { b.Node, b.Pods = "n1", tc.pods }); err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			Handler(s, tc.podIPs).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/bound-ips", nil))
			if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != tc.want {
				t.Fatalf("%d %s, want 200 %s", rec.Code, rec.Body, tc.want)
			}
		})
	}
	s, _ := OpenStore(filepath.Join(t.TempDir(), StateFileName))
	rec := httptest.NewRecorder()
	Handler(s, true).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/bound-ips", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d, want 405 (read-only)", rec.Code)
	}
}

func TestParseListen(t *testing.T) {
	tests := map[string]struct {
		in, network string
		wantErr     bool
	}{
		"unix":          {in: "unix:///var/run/edgeunit/netbind.sock", network: "unix"},
		"relative unix": {in: "unix://run/x.sock", wantErr: true},
		"loopback":      {in: "127.0.0.1:10269", network: "tcp"},
		"http loopback": {in: "http://[::1]:10269", network: "tcp"},
		"all addresses": {in: ":10269", wantErr: true},
		"remote":        {in: "192.0.2.1:10269", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			network, _, err := ParseListen(tc.in)
			if (err != nil) != tc.wantErr || network != tc.network {
				t.Fatalf("%q: %s %v", tc.in, network, err)
			}
		})
	}
}
