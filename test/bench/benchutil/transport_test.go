package benchutil

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	tests := map[string]struct {
		method, path, watch string
		want                Request
	}{
		"node list":      {http.MethodGet, "/api/v1/nodes", "", Request{Verb: VerbList, Resource: "nodes"}},
		"node watch":     {http.MethodGet, "/api/v1/nodes", "true", Request{Verb: VerbWatch, Resource: "nodes"}},
		"node get":       {http.MethodGet, "/api/v1/nodes/n1", "", Request{Verb: VerbGet, Resource: "nodes", Name: "n1"}},
		"discovery":      {http.MethodGet, "/apis", "", Request{Verb: VerbGet}},
		"node status":    {http.MethodPut, "/api/v1/nodes/n1/status", "", Request{Verb: VerbPut, Write: true, Resource: "nodes", Name: "n1", Sub: "status"}},
		"pool status":    {http.MethodPatch, "/apis/edge.edgeunit.io/v1alpha1/nodepools/p1/status", "", Request{Verb: VerbPatch, Write: true, Group: "edge.edgeunit.io", Resource: "nodepools", Name: "p1", Sub: "status"}},
		"namespaced":     {http.MethodPost, "/apis/apps/v1/namespaces/ns/daemonsets", "", Request{Verb: VerbPost, Write: true, Group: "apps", Resource: "daemonsets"}},
		"namespaced del": {http.MethodDelete, "/api/v1/namespaces/ns/configmaps/c", "", Request{Verb: VerbDelete, Write: true, Resource: "configmaps", Name: "c"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := ParseRequest(tc.method, tc.path, tc.watch)
			tc.want.Method, tc.want.Path, tc.want.WatchParam = tc.method, tc.path, tc.watch
			if got != tc.want {
				t.Errorf("ParseRequest(%s %s) = %+v, want %+v", tc.method, tc.path, got, tc.want)
			}
		})
	}
}

func TestWrapTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			w.WriteHeader(http.StatusConflict)
		}
	}))
	defer srv.Close()
	var seen []Request
	var statuses []int
	var bodies []string
	c := &http.Client{Transport: WrapTransport(func(r Request, status int, err error, body []byte) {
		seen, statuses, bodies = append(seen, r), append(statuses, status), append(bodies, string(body))
	})(http.DefaultTransport)}
	resp, err := c.Get(srv.URL + "/api/v1/nodes?watch=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodPatch, srv.URL+"/api/v1/nodes/n1", strings.NewReader(`{"a":1}`))
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(seen) != 2 || seen[0].Verb != VerbWatch || seen[1].Verb != VerbPatch || seen[1].Name != "n1" ||
		statuses[0] != 200 || statuses[1] != 409 || bodies[1] != `{"a":1}` {
		t.Errorf("observed %+v, statuses %v, bodies %q", seen, statuses, bodies)
	}
}
