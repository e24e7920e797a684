package hub

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/edgeunit/edgeunit/internal/netbind"
)

func TestParseRequest(t *testing.T) {
	tests := map[string]struct {
		method, target                     string
		verb, ns, resource, name, sub, key string
	}{
		"list all pods":     {"GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&limit=500", "list", "", "pods", "", "", "kubelet /api/v1/pods?fieldSelector=spec.nodeName%3Dn1"},
		"watch ns pods":     {"GET", "/api/v1/namespaces/a/pods?watch=true&resourceVersion=5", "watch", "a", "pods", "", "", "kubelet /api/v1/namespaces/a/pods"},
		"get node":          {"GET", "/api/v1/nodes/n1", "get", "", "nodes", "n1", "", ""},
		"get namespace":     {"GET", "/api/v1/namespaces/a", "get", "a", "namespaces", "a", "", ""},
		"pod status patch":  {"PATCH", "/api/v1/namespaces/a/pods/p/status", "patch", "a", "pods", "p", "status", ""},
		"lease update":      {"PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1", "update", "kube-node-lease", "leases", "n1", "", ""},
		"group list labels": {"GET", "/apis/discovery.k8s.io/v1/endpointslices?labelSelector=a%3Db", "list", "", "endpointslices", "", "", "kubelet /apis/discovery.k8s.io/v1/endpointslices?labelSelector=a%3Db"},
		"non-resource":      {"GET", "/version", "get", "", "", "", "", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			u, _ := url.Parse(tc.target)
			ri := parseRequest(&http.Request{Method: tc.method, URL: u})
			if ri.verb != tc.verb || ri.namespace != tc.ns || ri.resource != tc.resource || ri.name != tc.name || ri.sub != tc.sub {
				t.Fatalf("got verb=%s ns=%s res=%s name=%s sub=%s", ri.verb, ri.namespace, ri.resource, ri.name, ri.sub)
			}
			if tc.key != "" {
				if k := collectionKey("kubelet", ri); k != tc.key {
					t.Fatalf("collection key %q, want %q", k, tc.key)
				}
			}
		})
	}
}

func TestIdentify(t *testing.T) {
	tests := map[string]string{
		"kubelet/v1.36.3 (linux/amd64) kubernetes/abc": ClientKubelet,
		"kube-proxy/v1.36.3 (linux/amd64)":             ClientKubeProxy,
		"CoreDNS/1.11":                                 ClientCoreDNS,
		"flanneld/0.25":                                ClientFlannel,
		"tunnel-agent/v0.1":                            ClientTunnelAgent,
		"edge-hub-netbind":                             ClientHub,
		"kubectl/v1.36":                                ClientOther,
		"":                                             ClientOther,
	}
	for ua, want := range tests {
		r := &http.Request{Header: http.Header{"User-Agent": {ua}}}
		if got := identify(r); got != want {
			t.Errorf("%q: got %s, want %s", ua, got, want)
		}
	}
}

// TestNetBindNeverCached: netbind's reads through the proxy are not
// answered from the cache even when every client is cached, since a GET
// recorded earlier can be older than netbind's own durable copy.
func TestNetBindNeverCached(t *testing.T) {
	h := &Hub{cached: set([]string{ClientKubelet, ClientOther})}
	for _, target := range []string{"/apis/edge.edgeunit.io/v1alpha1/edgeunits/u1", "/apis/edge.edgeunit.io/v1alpha1/edgeunits?watch=1&fieldSelector=metadata.name%3Du1"} {
		u, _ := url.Parse(target)
		r := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{"User-Agent": {netbind.UserAgent}}}
		if h.cacheable(identify(r), parseRequest(r), r) {
			t.Errorf("netbind's %s is cacheable", target)
		}
		r.Header.Set("User-Agent", "kubectl/v1.36")
		if !h.cacheable(identify(r), parseRequest(r), r) {
			t.Errorf("%s by another client is not cacheable: the test cannot tell", target)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	tests := map[string]struct {
		args []string
		err  string
	}{
		"ok":                  {[]string{"--node-name=n", "--server=https://127.0.0.1:6443"}, ""},
		"no node":             {[]string{"--server=https://127.0.0.1:6443"}, "--node-name is required"},
		"no server":           {[]string{"--node-name=n"}, "--kubeconfig or --server"},
		"public listener":     {[]string{"--node-name=n", "--server=https://x", "--listen-http=0.0.0.0:1"}, "loopback only"},
		"cert w/o key":        {[]string{"--node-name=n", "--server=https://x", "--cert-file=a"}, "go together"},
		"unknown client":      {[]string{"--node-name=n", "--server=https://x", "--cache-clients=kubelet,bogus"}, `unknown client "bogus"`},
		"bad duration":        {[]string{"--node-name=n", "--server=https://x", "--probe-interval=0s"}, "--probe-interval"},
		"bad flag":            {[]string{"--nope"}, "not defined"},
		"in-cluster":          {[]string{"--node-name=n", "--server=https://x", "--listen-in-cluster=169.254.31.1:10269"}, ""},
		"in-cluster ipv6":     {[]string{"--node-name=n", "--server=https://x", "--listen-in-cluster=[fe80::31]:10269"}, "IPv4 link-local"},
		"in-cluster routable": {[]string{"--node-name=n", "--server=https://x", "--listen-in-cluster=10.1.2.3:10269"}, "IPv4 link-local"},
		"in-cluster name":     {[]string{"--node-name=n", "--server=https://x", "--listen-in-cluster=hub.local:10269"}, "IPv4 link-local"},
		"in-cluster no port":  {[]string{"--node-name=n", "--server=https://x", "--listen-in-cluster=169.254.31.1"}, "--listen-in-cluster"},
		"in-cluster no HTTP":  {[]string{"--node-name=n", "--server=https://x", "--listen-in-cluster=169.254.31.1:10269", "--listen-http="}, "needs --listen-http"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := LoadConfig(tc.args)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want it to mention %q", err, tc.err)
			}
		})
	}
}

func TestTopologyFilter(t *testing.T) {
	h := &Hub{cfg: Config{NodeName: "n1"}}
	h.metrics = &metrics{}
	topo := newTopology(h)
	topo.nodeUnit = map[string]string{"n1": "u1", "n2": "u1", "n3": "u2"}
	topo.svcMode = map[string]string{"ns/unit-svc": TopologyUnit, "ns/node-svc": TopologyNode}
	slice := func(svc string) []byte {
		return []byte(`{"kind":"EndpointSlice","metadata":{"name":"s","namespace":"ns","labels":{"kubernetes.io/service-name":"` + svc + `"}},` +
			`"endpoints":[{"addresses":["a"],"nodeName":"n1"},{"addresses":["b"],"nodeName":"n2"},{"addresses":["c"],"nodeName":"n3"},{"addresses":["d"]}]}`)
	}
	tests := map[string]struct {
		svc  string
		want []string
	}{
		"unit":          {"unit-svc", []string{`"a"`, `"b"`}},
		"node":          {"node-svc", []string{`"a"`}},
		"not annotated": {"other", []string{`"a"`, `"b"`, `"c"`, `"d"`}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, _ := topo.filter(slice(tc.svc))
			n := strings.Count(string(out), `"addresses"`)
			if n != len(tc.want) {
				t.Fatalf("%d endpoints kept, want %d: %s", n, len(tc.want), out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Fatalf("endpoint %s missing: %s", w, out)
				}
			}
		})
	}
}
