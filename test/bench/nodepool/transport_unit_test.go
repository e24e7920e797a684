package nodepool_test

import (
	"net/http"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := map[string]struct {
		method, path, watch string
		want                request
	}{
		"node list":          {http.MethodGet, "/api/v1/nodes", "", request{verb: cList}},
		"node watch":         {http.MethodGet, "/api/v1/nodes", "true", request{verb: cWatch}},
		"node get":           {http.MethodGet, "/api/v1/nodes/n1", "", request{verb: cGet}},
		"discovery":          {http.MethodGet, "/apis", "", request{verb: cGet}},
		"node patch":         {http.MethodPatch, "/api/v1/nodes/n1", "", request{verb: cPatch, write: true, target: cNodeWrite, name: "n1"}},
		"node status put":    {http.MethodPut, "/api/v1/nodes/n1/status", "", request{verb: cPut, write: true, target: cOtherWrite}},
		"pool finalizer":     {http.MethodPatch, "/apis/edge.edgeunit.io/v1alpha1/nodepools/p1", "", request{verb: cPatch, write: true, target: cPoolWrite}},
		"pool status":        {http.MethodPatch, "/apis/edge.edgeunit.io/v1alpha1/nodepools/p1/status", "", request{verb: cPatch, write: true, target: cPoolStatusWrite}},
		"pool list":          {http.MethodGet, "/apis/edge.edgeunit.io/v1alpha1/nodepools", "", request{verb: cList}},
		"event create":       {http.MethodPost, "/apis/events.k8s.io/v1/namespaces/default/events", "", request{verb: cPost, write: true, target: cEventWrite}},
		"core event patch":   {http.MethodPatch, "/api/v1/namespaces/default/events/e1", "", request{verb: cPatch, write: true, target: cEventWrite}},
		"namespaced get":     {http.MethodGet, "/api/v1/namespaces/default/configmaps/c1", "", request{verb: cGet}},
		"namespaced list":    {http.MethodGet, "/api/v1/namespaces/default/configmaps", "", request{verb: cList}},
		"lease update other": {http.MethodPut, "/apis/coordination.k8s.io/v1/namespaces/default/leases/l1", "", request{verb: cPut, write: true, target: cOtherWrite}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := classify(tc.method, tc.path, tc.watch); got != tc.want {
				t.Errorf("classify(%s %s) = %+v, want %+v", tc.method, tc.path, got, tc.want)
			}
		})
	}
}

func TestRequestCounter(t *testing.T) {
	rc := newRequestCounter()
	rc.record(http.MethodPatch, "/api/v1/nodes/n1", "", 200, false)
	before := rc.snapshot()
	rc.record(http.MethodPatch, "/api/v1/nodes/n1", "", 409, false)
	rc.record(http.MethodGet, "/api/v1/nodes", "1", 200, false)
	rc.record(http.MethodPatch, "/apis/edge.edgeunit.io/v1alpha1/nodepools/p/status", "", 429, false)
	rc.record(http.MethodGet, "/api/v1/nodes/n2", "", 0, true)
	w := rc.snapshot().sub(before)
	if w.writes() != 2 || w.reads() != 2 || w[cNodeWrite] != 1 || w[cPoolStatusWrite] != 1 ||
		w[cConflict] != 1 || w[cThrottled] != 1 || w[cFailed] != 1 {
		t.Errorf("window = %s", w)
	}
	if got := rc.perNode()["n1"]; got != 2 {
		t.Errorf("writes to n1 = %d, want 2", got)
	}
}
