package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/edgeunit/edgeunit/internal/hub/kjson"
	"github.com/edgeunit/edgeunit/internal/hub/store"
)

const maxWriteBody = 4 << 20

// journalable says whether a write is one the hub answers locally while
// offline: the node's own Lease, its Node status, Pod status (of pods bound
// to the node: writeLocally checks that against the cached pod); and the
// node's registration, answered but not journaled (createNode).
func (h *Hub) journalable(ri reqInfo, r *http.Request) bool {
	put, patch, post := r.Method == http.MethodPut, r.Method == http.MethodPatch, r.Method == http.MethodPost
	switch {
	case ri.prefix == "apis" && ri.group == "coordination.k8s.io" && ri.resource == "leases" && ri.namespace == "kube-node-lease":
		return ((put || patch) && ri.name == h.cfg.NodeName && ri.sub == "") || (post && ri.name == "")
	case ri.prefix == "api" && ri.resource == "nodes":
		return ((put || patch) && ri.name == h.cfg.NodeName && ri.sub == "status") || (post && ri.name == "")
	case ri.prefix == "api" && ri.resource == "pods":
		return (put || patch) && ri.name != "" && ri.sub == "status"
	}
	return false
}

func (h *Hub) serveWrite(w http.ResponseWriter, r *http.Request, client string, ri reqInfo) string {
	body, err := readBody(r.Body, maxWriteBody)
	if err != nil {
		writeStatus(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "edge-hub: "+err.Error())
		return outcomeRejected
	}
	// obj is what the hub journals and caches: a PUT's or POST's object as
	// JSON (the kubelet sends protobuf), a patch as it is (JSON already).
	obj, objErr := body, error(nil)
	if r.Method != http.MethodPatch {
		obj, objErr = objectJSON(r.Header.Get("Content-Type"), body)
	}
	if r.Method == http.MethodPost {
		var m kjson.Meta
		if objErr == nil {
			m, objErr = kjson.ObjectMeta(obj, false)
		}
		if objErr != nil || m.Name != h.cfg.NodeName {
			// Not this node's Lease or Node: an ordinary write.
			return h.passthrough(w, withBody(r, body), ri)
		}
		ri.name = m.Name
		if ri.resource == "nodes" {
			return h.createNode(w, withBody(r, body), client, ri)
		}
	}
	online, epoch, _, _ := h.link.state()
	if online && h.journalDepth.Load() == 0 {
		ctx, cancel := linkContext(r, epoch)
		defer cancel()
		// The body goes up as the client encoded it; the answer comes
		// back as JSON, for the cache.
		req := h.up.request(ctx, r.Method, r.URL.Path, r.URL.RawQuery, body)
		copyHeaders(req.Header, r.Header, "Content-Type", "User-Agent")
		req.Header.Set("Accept", mediaJSON)
		resp, err := h.up.roundTrip(req)
		var rb []byte
		if err == nil {
			rb, err = readBody(resp.Body, maxWriteBody)
			_ = resp.Body.Close()
		}
		switch {
		case err != nil && r.Context().Err() != nil:
			return outcomeError
		case err != nil:
			h.link.markOffline("write failed: " + err.Error())
		default:
			relayAnswer(w, r, resp, rb)
			if resp.StatusCode/100 == 2 {
				h.rememberObject(client, ri, rb)
			}
			return outcomeProxied
		}
	}
	if objErr != nil {
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "edge-hub: the cloud link is down and "+objErr.Error())
		return outcomeRejected
	}
	return h.writeLocally(w, r, client, ri, obj)
}

// withBody gives r back the body serveWrite read from it.
func withBody(r *http.Request, body []byte) *http.Request {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return r
}

// relayAnswer relays an answer the apiserver gave as JSON, re-encoded for
// a client that does not take JSON.
func relayAnswer(w http.ResponseWriter, r *http.Request, resp *http.Response, body []byte) {
	accept := r.Header.Get("Accept")
	if acceptsJSON(accept) || mediaType(resp.Header.Get("Content-Type")) != mediaJSON {
		copyResponse(w, resp, body)
		return
	}
	copyHeader(w.Header(), resp.Header)
	writeObject(w, accept, resp.StatusCode, body)
}

// createNode answers the kubelet's registration of its own Node. Online
// the apiserver does. Offline a Node the hub has cached exists in the
// cloud, so the answer is the apiserver's own 409 AlreadyExists: the
// kubelet then reads the Node and patches its status, both of which the hub
// answers, instead of retrying the create until the link returns. Nothing
// is journaled.
func (h *Hub) createNode(w http.ResponseWriter, r *http.Request, client string, ri reqInfo) string {
	if h.link.Online() {
		return h.passthrough(w, r, ri)
	}
	objRI := ri
	objRI.sub = ""
	cached, err := h.cachedObject(client, objRI)
	if err != nil || cached == nil {
		return h.passthrough(w, r, ri) // offline: 503
	}
	st := apierrors.NewAlreadyExists(corev1.Resource("nodes"), ri.name).Status()
	st.Kind, st.APIVersion = "Status", "v1"
	b, err := json.Marshal(st)
	if err != nil {
		return h.passthrough(w, r, ri)
	}
	writeObject(w, r.Header.Get("Accept"), http.StatusConflict, b)
	return outcomeCacheHit
}

func copyHeaders(dst, src http.Header, keys ...string) {
	for _, k := range keys {
		if v := src.Get(k); v != "" {
			dst.Set(k, v)
		}
	}
}

// rememberObject records a written object as the client's cached copy, so
// offline reads (and offline patches) start from it.
func (h *Hub) rememberObject(client string, ri reqInfo, obj []byte) {
	objRI := ri
	objRI.sub = ""
	h.rec.response(&responseRecord{
		key:      client + " " + objRI.objectPath(),
		resp:     store.Response{ContentType: "application/json", Body: obj, Recorded: time.Now()},
		prefixes: collectionPrefixes(client, objRI),
		objKey:   objRI.objectKey(),
	})
}

// writeLocally answers an offline write from the cached object and
// journals it; body is JSON (see serveWrite).
func (h *Hub) writeLocally(w http.ResponseWriter, r *http.Request, client string, ri reqInfo, body []byte) string {
	objRI := ri
	objRI.sub = ""
	podStatus := ri.prefix == "api" && ri.resource == "pods"
	var base []byte
	if r.Method == http.MethodPatch || podStatus {
		var err error
		if base, err = h.cachedObject(client, objRI); err != nil {
			writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable",
				fmt.Sprintf("edge-hub: the cloud link is down and the cached copy of %s could not be read: %v", objRI.objectPath(), err))
			return outcomeRejected
		}
	}
	if podStatus {
		if msg := h.foreignPod(ri, r.Method, base, body); msg != "" {
			writeStatus(w, http.StatusForbidden, "Forbidden", msg)
			return outcomeRejected
		}
	}
	result := body
	if r.Method == http.MethodPatch {
		if base == nil {
			writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable",
				fmt.Sprintf("edge-hub: the cloud link is down and no cached copy of %s exists to apply the patch to", objRI.objectPath()))
			return outcomeRejected
		}
		var err error
		if result, err = applyPatch(r.Header.Get("Content-Type"), ri.resource, base, body); err != nil {
			writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "edge-hub: the cloud link is down and "+err.Error())
			return outcomeRejected
		}
	}
	ct := r.Header.Get("Content-Type")
	if r.Method != http.MethodPatch {
		ct = mediaJSON // objectJSON made it so
	}
	e := store.Entry{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		ContentType: ct, Body: body,
		Client: client, UserAgent: r.UserAgent(), Time: time.Now(),
	}
	if r.Method == http.MethodPut {
		e.Supersedes = "PUT " + r.URL.Path
	}
	h.writeMu.Lock()
	depth, err := h.store.Append(e, h.cfg.JournalMaxEntries)
	if err == nil {
		h.journalDepth.Store(int64(depth))
	}
	h.writeMu.Unlock()
	if err != nil {
		msg := "edge-hub: the cloud link is down and the write could not be journaled: " + err.Error()
		if errors.Is(err, store.ErrJournalFull) {
			msg = fmt.Sprintf("edge-hub: the cloud link is down and the offline journal is full (%d writes)", h.cfg.JournalMaxEntries)
		}
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", msg)
		return outcomeRejected
	}
	// Synchronously, so the next offline read sees the write.
	if err := h.store.PutResponse(client+" "+objRI.objectPath(), store.Response{ContentType: "application/json", Body: result, Recorded: time.Now()}); err != nil {
		h.log.Error(err, "Caching offline write failed", "path", objRI.objectPath())
	}
	if _, err := h.store.UpdateItem(collectionPrefixes(client, objRI), objRI.objectKey(), result); err != nil {
		h.log.Error(err, "Caching offline write failed", "path", objRI.objectPath())
	}
	h.log.V(2).Info("Journaled offline write", "method", r.Method, "path", r.URL.Path, "client", client, "journalDepth", depth)
	code := http.StatusOK
	if r.Method == http.MethodPost {
		code = http.StatusCreated
	}
	writeObject(w, r.Header.Get("Accept"), code, result)
	return outcomeJournaled
}

// foreignPod applies NodeRestriction's rule to an offline Pod status
// write: a node writes only the status of pods bound to it. The cached copy
// (base) decides; a PUT's body is only the client's claim, used when no copy
// is cached. It returns why the write is refused, or "" to take it. A PATCH
// with nothing cached passes here and gets writeLocally's 503.
func (h *Hub) foreignPod(ri reqInfo, method string, base, body []byte) string {
	obj := base
	if obj == nil {
		if method != http.MethodPut {
			return ""
		}
		obj = body
	}
	var pod struct {
		Spec struct {
			NodeName string `json:"nodeName"`
		} `json:"spec"`
	}
	_ = json.Unmarshal(obj, &pod) // undecodable: bound to no node
	if pod.Spec.NodeName == h.cfg.NodeName {
		return ""
	}
	bound := "is not bound to a node"
	if pod.Spec.NodeName != "" {
		bound = fmt.Sprintf("is bound to %q", pod.Spec.NodeName)
	}
	return fmt.Sprintf("edge-hub: offline, only the status of pods bound to node %q is written; pod %s/%s %s",
		h.cfg.NodeName, ri.namespace, ri.name, bound)
}

// cachedObject finds the client's (or else kubelet's) cached copy of an
// object.
func (h *Hub) cachedObject(client string, ri reqInfo) ([]byte, error) {
	for _, c := range []string{client, ClientKubelet} {
		resp, found, err := h.store.GetResponse(c + " " + ri.objectPath())
		if err != nil {
			return nil, err
		}
		if found && isJSONObject(resp.ContentType, resp.Body) {
			return resp.Body, nil
		}
		kind, apiVersion, v, err := h.store.FindItem(collectionPrefixes(c, ri), ri.objectKey())
		if err != nil {
			return nil, err
		}
		if v != nil {
			return kjson.WithTypeMeta(v, strings.TrimSuffix(kind, "List"), apiVersion), nil
		}
	}
	return nil, nil
}

func applyPatch(contentType, resource string, base, patch []byte) ([]byte, error) {
	ct := contentType
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	switch strings.TrimSpace(ct) {
	case "application/strategic-merge-patch+json":
		var schema any
		switch resource {
		case "nodes":
			schema = corev1.Node{}
		case "pods":
			schema = corev1.Pod{}
		case "leases":
			schema = coordinationv1.Lease{}
		default:
			return nil, fmt.Errorf("strategic merge patches of %s are not supported offline", resource)
		}
		out, err := strategicpatch.StrategicMergePatch(base, patch, schema)
		if err != nil {
			return nil, fmt.Errorf("the patch does not apply to the cached object: %w", err)
		}
		return out, nil
	case "application/merge-patch+json":
		out, err := jsonpatch.MergePatch(base, patch)
		if err != nil {
			return nil, fmt.Errorf("the patch does not apply to the cached object: %w", err)
		}
		return out, nil
	case "application/json-patch+json":
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, fmt.Errorf("invalid JSON patch: %w", err)
		}
		out, err := p.Apply(base)
		if err != nil {
			return nil, fmt.Errorf("the patch does not apply to the cached object: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%q patches are not supported offline", contentType)
}

func (h *Hub) kickReplay() {
	select {
	case h.replayKick <- struct{}{}:
	default:
	}
}

// replayLoop drains the journal in order whenever the link is up.
func (h *Hub) replayLoop(ctx context.Context) {
	backoff := 500 * time.Millisecond
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.replayKick:
		case <-t.C:
		}
		for ctx.Err() == nil && h.link.Online() {
			e, ok, err := h.store.First()
			if err != nil {
				h.log.Error(err, "Journal entry unreadable, dropping the journal head")
				h.metrics.corrupt.Inc()
				if errors.Is(err, store.ErrCorrupt) {
					_ = h.store.Remove(store.Entry{Seq: e.Seq})
				}
				break
			}
			if !ok {
				backoff = 500 * time.Millisecond
				break
			}
			result, retry := h.replayOne(ctx, e)
			if retry {
				h.log.V(2).Info("Replay paused", "seq", e.Seq, "path", e.Path, "result", result, "retryIn", backoff.String())
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, 30*time.Second)
				break
			}
			h.metrics.replayed.WithLabelValues(result).Inc()
			h.writeMu.Lock()
			if err := h.store.Remove(e); err != nil {
				h.writeMu.Unlock()
				h.log.Error(err, "Removing replayed entry failed", "seq", e.Seq)
				break
			}
			h.journalDepth.Store(int64(h.store.JournalDepth()))
			h.writeMu.Unlock()
			h.log.V(2).Info("Replayed offline write", "seq", e.Seq, "method", e.Method, "path", e.Path, "result", result)
		}
	}
}

// replayOne sends one journaled write; retry means keep it and try later.
func (h *Hub) replayOne(ctx context.Context, e store.Entry) (result string, retry bool) {
	code, body, err := h.send(ctx, e.Method, e.Path, e.RawQuery, e.ContentType, e.Body, e.UserAgent)
	if err != nil {
		return "error", true
	}
	ri := parseRequest(&http.Request{Method: e.Method, URL: mustURL(e.Path, e.RawQuery)})
	switch {
	case code/100 == 2:
		h.rememberObject(e.Client, ri, body)
		return "applied", false
	case code == http.StatusConflict && (e.Method == http.MethodPut || e.Method == http.MethodPost):
		// Last writer wins on the node's own objects: retry once on top of
		// the current version. A hub before protobuf support journaled
		// protobuf bodies as they came.
		obj, err := objectJSON(e.ContentType, e.Body)
		if err != nil {
			return "dropped_rejected", false
		}
		objPath := e.Path
		if e.Method == http.MethodPost {
			m, _ := kjson.ObjectMeta(obj, false)
			objPath = strings.TrimSuffix(e.Path, "/") + "/" + m.Name
		}
		getPath := strings.TrimSuffix(objPath, "/status")
		gc, cur, err := h.send(ctx, http.MethodGet, getPath, "", "", nil, e.UserAgent)
		if err != nil || gc >= 500 {
			return "error", true
		}
		if gc != http.StatusOK {
			return "dropped_conflict", false
		}
		cm, err := kjson.ObjectMeta(cur, false)
		if err != nil {
			return "dropped_conflict", false
		}
		nb, err := setResourceVersion(obj, cm.ResourceVersion)
		if err != nil {
			return "dropped_rejected", false
		}
		code, body, err = h.send(ctx, http.MethodPut, objPath, e.RawQuery, mediaJSON, nb, e.UserAgent)
		switch {
		case err != nil || code >= 500 || code == http.StatusTooManyRequests:
			return "error", true
		case code/100 == 2:
			h.rememberObject(e.Client, parseRequest(&http.Request{Method: http.MethodPut, URL: mustURL(objPath, "")}), body)
			return "applied_after_conflict", false
		}
		return "dropped_conflict", false
	case code == http.StatusConflict:
		return "dropped_conflict", false
	case code == http.StatusNotFound:
		return "dropped_not_found", false
	case code >= 500 || code == http.StatusTooManyRequests:
		return "error", true
	}
	h.log.Info("Offline write rejected on replay, dropping it", "method", e.Method, "path", e.Path, "code", code, "response", string(body))
	return "dropped_rejected", false
}

func (h *Hub) send(ctx context.Context, method, path, rawQuery, contentType string, body []byte, ua string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req := h.up.request(ctx, method, path, rawQuery, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "edge-hub/replay ("+ua+")")
	resp, err := h.up.roundTrip(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	rb, err := readBody(resp.Body, maxWriteBody)
	return resp.StatusCode, rb, err
}

func setResourceVersion(obj []byte, rv string) ([]byte, error) {
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(string(obj)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	md, _ := m["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		m["metadata"] = md
	}
	md["resourceVersion"] = rv
	return json.Marshal(m)
}
