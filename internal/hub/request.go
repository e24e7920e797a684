package hub

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/edgeunit/edgeunit/internal/netbind"
)

// reqInfo is what the hub reads from a request's path and query.
type reqInfo struct {
	verb string // get list watch create update patch delete deletecollection proxy
	// resource request parts; resource is empty for non-resource paths.
	prefix, group, version, namespace, resource, name, sub string
	path                                                   string
	query                                                  url.Values
}

func (ri reqInfo) isResource() bool { return ri.resource != "" }

// collectionPath is the path of the resource collection (no name).
func (ri reqInfo) collectionPath() string {
	p := ri.groupVersionPath()
	if ri.namespace != "" && ri.resource != "namespaces" {
		p += "/namespaces/" + ri.namespace
	}
	return p + "/" + ri.resource
}

// objectPath is the path of the object (no subresource).
func (ri reqInfo) objectPath() string { return ri.collectionPath() + "/" + ri.name }

func (ri reqInfo) groupVersionPath() string {
	if ri.prefix == "api" {
		return "/api/" + ri.version
	}
	return "/apis/" + ri.group + "/" + ri.version
}

// objectKey is the key of the object in collections.
func (ri reqInfo) objectKey() string {
	if ri.namespace == "" || ri.resource == "namespaces" {
		return ri.name
	}
	return ri.namespace + "/" + ri.name
}

func parseRequest(r *http.Request) reqInfo {
	ri := reqInfo{path: r.URL.Path, query: r.URL.Query()}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	ri.verb = strings.ToLower(r.Method)
	switch r.Method {
	case http.MethodPost:
		ri.verb = "create"
	case http.MethodPut:
		ri.verb = "update"
	}
	var rest []string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		ri.prefix, ri.version, rest = "api", parts[1], parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		ri.prefix, ri.group, ri.version, rest = "apis", parts[1], parts[2], parts[3:]
	default:
		return ri
	}
	if len(rest) > 0 && rest[0] == "watch" { // legacy watch paths: not cached
		return ri
	}
	if len(rest) >= 3 && rest[0] == "namespaces" {
		ri.namespace, rest = rest[1], rest[2:]
	} else if len(rest) == 2 && rest[0] == "namespaces" {
		ri.namespace = rest[1]
		rest = []string{"namespaces", rest[1]}
	}
	switch len(rest) {
	case 0:
		return ri
	case 1:
		ri.resource = rest[0]
	case 2:
		ri.resource, ri.name = rest[0], rest[1]
	default:
		ri.resource, ri.name, ri.sub = rest[0], rest[1], strings.Join(rest[2:], "/")
	}
	if r.Method == http.MethodGet {
		switch {
		case ri.name == "" && isWatch(ri.query):
			ri.verb = "watch"
		case ri.name == "":
			ri.verb = "list"
		}
	}
	if r.Method == http.MethodDelete && ri.name == "" {
		ri.verb = "deletecollection"
	}
	return ri
}

func isWatch(q url.Values) bool {
	w := q.Get("watch")
	return w == "true" || w == "1"
}

// collectionKey identifies a LIST/WATCH target for a client: the same path
// and selectors map to one collection whatever the paging, timeout or
// resourceVersion parameters.
func collectionKey(client string, ri reqInfo) string {
	k := client + " " + ri.collectionPath()
	var sel []string
	if v := ri.query.Get("labelSelector"); v != "" {
		sel = append(sel, "labelSelector="+url.QueryEscape(v))
	}
	if v := ri.query.Get("fieldSelector"); v != "" {
		sel = append(sel, "fieldSelector="+url.QueryEscape(v))
	}
	if len(sel) > 0 {
		k += "?" + strings.Join(sel, "&")
	}
	return k
}

// collectionPrefixes are the collections (path and selector variants)
// whose items may hold the object ri names: the all-namespaces one and, for
// namespaced objects, the namespace's one.
func collectionPrefixes(client string, ri reqInfo) []string {
	all := client + " " + ri.groupVersionPath() + "/" + ri.resource
	if ri.namespace == "" || ri.resource == "namespaces" {
		return []string{all}
	}
	return []string{all, client + " " + ri.groupVersionPath() + "/namespaces/" + ri.namespace + "/" + ri.resource}
}

func responseKey(client string, r *http.Request) string {
	k := client + " " + r.URL.Path
	if r.URL.RawQuery != "" {
		q := r.URL.Query()
		q.Del("resourceVersion")
		q.Del("timeout")
		if e := q.Encode(); e != "" {
			k += "?" + e
		}
	}
	return k
}

// identify names the client from its verified certificate or User-Agent.
func identify(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
		cn := r.TLS.PeerCertificates[0].Subject.CommonName
		switch {
		case strings.HasPrefix(cn, "system:node:"):
			return ClientKubelet
		case cn == "system:kube-proxy":
			return ClientKubeProxy
		}
	}
	ua := strings.ToLower(r.UserAgent())
	if i := strings.IndexAny(ua, "/ "); i >= 0 {
		ua = ua[:i]
	}
	switch ua {
	case "kubelet":
		return ClientKubelet
	case "kube-proxy":
		return ClientKubeProxy
	case "coredns":
		return ClientCoreDNS
	case "flanneld", "flannel":
		return ClientFlannel
	case "tunnel-agent":
		return ClientTunnelAgent
	case netbind.UserAgent:
		return ClientHub
	}
	return ClientOther
}

// kindOf guesses the kind of a resource for an empty collection recorded
// from a watch (list responses carry their kind).
var knownKinds = map[string]string{
	"pods": "Pod", "nodes": "Node", "services": "Service", "endpoints": "Endpoints",
	"endpointslices": "EndpointSlice", "configmaps": "ConfigMap", "secrets": "Secret",
	"leases": "Lease", "namespaces": "Namespace", "persistentvolumes": "PersistentVolume",
	"persistentvolumeclaims": "PersistentVolumeClaim", "runtimeclasses": "RuntimeClass",
	"csidrivers": "CSIDriver", "csinodes": "CSINode", "serviceaccounts": "ServiceAccount",
	"events": "Event", "ingresses": "Ingress", "networkpolicies": "NetworkPolicy",
	"edgeunits": "EdgeUnit", "nodepools": "NodePool", "tunnelendpoints": "TunnelEndpoint",
}

func knownResource(resource string) bool { _, ok := knownKinds[resource]; return ok }

func kindOf(resource string) string {
	if k, ok := knownKinds[resource]; ok {
		return k
	}
	s := strings.TrimSuffix(resource, "s")
	if s == "" {
		return "Object"
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func mustURL(path, rawQuery string) *url.URL { return &url.URL{Path: path, RawQuery: rawQuery} }
