package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/hub/kjson"
	"github.com/edgeunit/edgeunit/internal/hub/store"
)

// Topology modes of the edge.edgeunit.io/topology Service annotation.
const (
	TopologyUnit = "unit"
	TopologyNode = "node"

	labelServiceName = "kubernetes.io/service-name"
)

// topology knows which Services ask for topology and which unit each node
// is in, from metadata-only watches of Nodes and Services that it records
// like any client's (so it works offline and after a restart offline).
// It reads as the node: under the Node authorizer listing all Nodes needs
// the grant in config/rbac/node_reader.yaml.
//
// Strict filtering: for an annotated Service, an EndpointSlice keeps only
// endpoints whose nodeName is in this node's unit ("unit") or is this node
// ("node"); endpoints with no nodeName are dropped, since where they run is
// unknown. A node without a unit label filters "unit" Services as "node".
type topology struct {
	h        *Hub
	mu       sync.RWMutex
	nodeUnit map[string]string // node -> unit
	svcMode  map[string]string // namespace/name -> mode
	changed  chan struct{}
}

func newTopology(h *Hub) *topology {
	return &topology{h: h, nodeUnit: map[string]string{}, svcMode: map[string]string{}, changed: make(chan struct{})}
}

// changes is closed at the next change of any filtering decision.
func (t *topology) changes() <-chan struct{} {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.changed
}

func (t *topology) notify() {
	close(t.changed)
	t.changed = make(chan struct{})
	t.h.metrics.topoChanges.Inc()
	t.h.log.V(2).Info("Service topology changed, filtered watches will re-list")
}

type topoSource struct {
	resource, path string
	value          func(kjson.Meta) string
	target         func(t *topology) map[string]string
}

var topoSources = []topoSource{
	{resource: "nodes", path: "/api/v1/nodes",
		value:  func(m kjson.Meta) string { return m.Labels[v1alpha1.LabelUnit] },
		target: func(t *topology) map[string]string { return t.nodeUnit }},
	{resource: "services", path: "/api/v1/services",
		value: func(m kjson.Meta) string {
			if v := m.Annotations[v1alpha1.AnnotationTopology]; v == TopologyUnit || v == TopologyNode {
				return v
			}
			return ""
		},
		target: func(t *topology) map[string]string { return t.svcMode }},
}

func (t *topology) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, src := range topoSources {
		t.load(src)
		wg.Go(func() { t.sync(ctx, src) })
	}
	wg.Wait()
}

func topoKey(src topoSource) string { return ClientHub + " " + src.path }

// load reads the recorded state, for a start while offline.
func (t *topology) load(src topoSource) {
	m := map[string]string{}
	_, err := t.h.store.Collection(topoKey(src), func(_ store.CollectionMeta, each func(func(string, []byte) error) error) error {
		return each(func(k string, v []byte) error {
			meta, err := kjson.ObjectMeta(v, true)
			if err == nil {
				if val := src.value(meta); val != "" {
					m[k] = val
				}
			}
			return nil
		})
	})
	if err != nil {
		t.h.log.Error(err, "Recorded topology unusable", "resource", src.resource)
		_ = t.h.store.DropCollection(topoKey(src))
		return
	}
	t.replace(src, m)
}

func (t *topology) replace(src topoSource, m map[string]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	target := src.target(t)
	if maps.Equal(target, m) {
		return
	}
	clear(target)
	maps.Copy(target, m)
	t.notify()
}

func (t *topology) set(src topoSource, key, val string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	target := src.target(t)
	if target[key] == val {
		return
	}
	if val == "" {
		delete(target, key)
	} else {
		target[key] = val
	}
	t.notify()
}

const (
	metaListAccept  = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
	metaWatchAccept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
)

// refusedError is the apiserver's refusal of a topology list or watch.
type refusedError struct {
	what    string
	code    int
	message string
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.what, e.code, e.message)
}

// httpError reads a failed answer into an error, a *refusedError for 401
// and 403.
func httpError(what string, resp *http.Response) error {
	body, _ := readBody(resp.Body, maxErrorBody)
	var st struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(body, &st)
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return &refusedError{what: what, code: resp.StatusCode, message: st.Message}
	}
	return fmt.Errorf("%s: HTTP %d: %s", what, resp.StatusCode, st.Message)
}

// sync lists and watches one source while the link is up. A refusal is
// logged when it starts and when it ends: filtering then runs on what was
// recorded before, which an operator must hear about without -v.
func (t *topology) sync(ctx context.Context, src topoSource) {
	backoff := 500 * time.Millisecond
	refused := false
	listed := func() {
		if refused {
			refused = false
			t.h.log.Info("Topology watch allowed again", "resource", src.resource)
		}
	}
	for ctx.Err() == nil {
		online, epoch, back, _ := t.h.link.state()
		if !online {
			select {
			case <-ctx.Done():
				return
			case <-back:
			}
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(epoch, cancel)
		err := t.listWatch(lctx, src, listed)
		stop()
		cancel()
		if err == nil {
			backoff = 500 * time.Millisecond
			continue
		}
		var re *refusedError
		switch {
		case ctx.Err() != nil:
		case errors.As(err, &re):
			if !refused {
				refused = true
				t.h.log.Error(err, "Topology watch refused, filtering EndpointSlices on the topology recorded before",
					"resource", src.resource, "need", "list and watch of "+src.resource+" for group system:nodes (ClusterRole edgeunit-node-reader)")
			}
		default:
			t.h.log.V(2).Info("Topology watch ended", "resource", src.resource, "err", err.Error())
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// listWatch lists src, calls listed, and watches until an error.
func (t *topology) listWatch(ctx context.Context, src topoSource, listed func()) error {
	req := t.h.up.request(ctx, http.MethodGet, src.path, "", nil)
	req.Header.Set("Accept", metaListAccept)
	req.Header.Set("User-Agent", "edge-hub/topology")
	resp, err := t.h.up.rt.RoundTrip(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		defer func() { _ = resp.Body.Close() }()
		return httpError("listing "+src.resource, resp)
	}
	body, err := readBody(resp.Body, maxRecordedBody)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	l, err := kjson.ParseList(body)
	if err != nil {
		return err
	}
	m := map[string]string{}
	items := make([]store.Item, 0, len(l.Items))
	for _, it := range l.Items {
		meta, err := kjson.ObjectMeta(it, true)
		if err != nil {
			return err
		}
		items = append(items, store.Item{Key: meta.Key(), Value: it})
		if v := src.value(meta); v != "" {
			m[meta.Key()] = v
		}
	}
	if err := t.h.store.ReplaceCollection(topoKey(src), store.CollectionMeta{Kind: l.Kind, APIVersion: l.APIVersion, ResourceVersion: l.ResourceVersion, Updated: time.Now()}, items); err != nil {
		return err
	}
	t.replace(src, m)
	t.h.log.V(2).Info("Topology listed", "resource", src.resource, "objects", len(items), "relevant", len(m))
	listed()

	rv := l.ResourceVersion
	for ctx.Err() == nil {
		q := url.Values{"watch": {"true"}, "resourceVersion": {rv}, "allowWatchBookmarks": {"true"}, "timeoutSeconds": {"300"}}
		req := t.h.up.request(ctx, http.MethodGet, src.path, q.Encode(), nil)
		req.Header.Set("Accept", metaWatchAccept)
		req.Header.Set("User-Agent", "edge-hub/topology")
		resp, err := t.h.up.rt.RoundTrip(req)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			err := httpError("watching "+src.resource, resp)
			_ = resp.Body.Close()
			return err
		}
		rv, err = t.consume(ctx, src, resp.Body, rv)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

var errRelist = errors.New("watch expired, re-list")

func (t *topology) consume(ctx context.Context, src topoSource, body io.Reader, rv string) (string, error) {
	dec := json.NewDecoder(body)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return rv, nil
			}
			return rv, err
		}
		ev, err := kjson.ParseEvent(raw)
		if err != nil {
			return rv, err
		}
		if ev.Type == "ERROR" {
			return rv, errRelist
		}
		meta, err := kjson.ObjectMeta(ev.Object, true)
		if err != nil {
			return rv, err
		}
		rv = meta.ResourceVersion
		cb := &store.ChangeBatch{Collection: topoKey(src), ResourceVersion: rv}
		switch ev.Type {
		case "ADDED", "MODIFIED":
			t.set(src, meta.Key(), src.value(meta))
			cb.Changes = []store.Change{{Key: meta.Key(), Value: ev.Object, RV: store.ParseRV(rv)}}
		case "DELETED":
			t.set(src, meta.Key(), "")
			cb.Changes = []store.Change{{Key: meta.Key(), Delete: true, RV: store.ParseRV(rv)}}
		}
		t.h.rec.changes(ctx, cb)
	}
}

// filter returns an EndpointSlice with only the endpoints this node may
// use; changed is false when the slice is served as it is.
func (t *topology) filter(obj []byte) (out []byte, changed bool) {
	meta, err := kjson.ObjectMeta(obj, true)
	if err != nil {
		return obj, false
	}
	svc := meta.Labels[labelServiceName]
	if svc == "" {
		return obj, false
	}
	node := t.h.cfg.NodeName
	t.mu.RLock()
	mode := t.svcMode[meta.Namespace+"/"+svc]
	unit := t.nodeUnit[node]
	keep := func(nodeName string) bool {
		if nodeName == "" {
			return false
		}
		if mode == TopologyUnit && unit != "" {
			return t.nodeUnit[nodeName] == unit
		}
		return nodeName == node
	}
	if mode == "" {
		t.mu.RUnlock()
		return obj, false
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(obj, &doc); err != nil {
		t.mu.RUnlock()
		return obj, false
	}
	var eps []json.RawMessage
	_ = json.Unmarshal(doc["endpoints"], &eps)
	kept := make([]json.RawMessage, 0, len(eps))
	for _, ep := range eps {
		var e struct {
			NodeName string `json:"nodeName"`
		}
		_ = json.Unmarshal(ep, &e)
		if keep(e.NodeName) {
			kept = append(kept, ep)
		}
	}
	t.mu.RUnlock()
	if len(kept) == len(eps) {
		return obj, false
	}
	doc["endpoints"], _ = json.Marshal(kept)
	out, err = json.Marshal(doc)
	if err != nil {
		return obj, false
	}
	return out, true
}
