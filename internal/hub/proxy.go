package hub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/edgeunit/edgeunit/internal/hub/kjson"
	"github.com/edgeunit/edgeunit/internal/hub/store"
)

// maxRecordedBody bounds what one response may buffer for the cache.
const maxRecordedBody = 512 << 20

// ServeHTTP is the proxy: every request from a local component lands here.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	client := identify(r)
	ri := parseRequest(r)
	outcome := h.serve(w, r, client, ri)
	h.metrics.requests.WithLabelValues(client, ri.verb, outcome).Inc()
	h.log.V(4).Info("Request", "client", client, "verb", ri.verb, "path", r.URL.Path, "outcome", outcome, "duration", time.Since(start).String())
}

func (h *Hub) serve(w http.ResponseWriter, r *http.Request, client string, ri reqInfo) string {
	if r.Header.Get("Upgrade") != "" {
		return h.passthrough(w, r, ri)
	}
	if r.Method == http.MethodGet && h.cacheable(client, ri, r) {
		if ri.verb == "watch" {
			return h.serveWatch(w, r, client, ri)
		}
		return h.serveRead(w, r, client, ri)
	}
	if h.journalable(ri, r) {
		return h.serveWrite(w, r, client, ri)
	}
	return h.passthrough(w, r, ri)
}

// cacheable says whether the hub records (and can answer offline) a read.
func (h *Hub) cacheable(client string, ri reqInfo, r *http.Request) bool {
	if !h.cached[client] && !(h.filtered[client] && ri.resource == "endpointslices") {
		return false
	}
	if ri.sub != "" && ri.sub != "status" {
		return false // logs, exec, proxy...: streams, never cached
	}
	if !ri.isResource() && (ri.verb == "watch" || isWatch(ri.query)) {
		return false
	}
	// Tables and metadata-only views would need their own conversions.
	return !strings.Contains(r.Header.Get("Accept"), "as=")
}

// passthrough proxies a request the hub does not cache.
func (h *Hub) passthrough(w http.ResponseWriter, r *http.Request, ri reqInfo) string {
	if !h.link.Online() {
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable",
			fmt.Sprintf("edge-hub: the cloud link is down; %s %s cannot be served until it returns", r.Method, r.URL.Path))
		return outcomeRejected
	}
	h.proxy.ServeHTTP(w, r)
	return outcomeProxied
}

// linkContext is the request's context, also canceled when the link goes
// down: requests in flight to a vanished apiserver fail over at once.
func linkContext(r *http.Request, epoch context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(epoch, cancel)
	return ctx, func() { stop(); cancel() }
}

// upstreamRead forwards a GET asking for JSON (the cache stores JSON) and
// letting the transport negotiate compression with the apiserver.
func (h *Hub) upstreamRead(ctx context.Context, r *http.Request) (*http.Response, error) {
	req := h.up.request(ctx, http.MethodGet, r.URL.Path, r.URL.RawQuery, nil)
	for _, k := range []string{"User-Agent", "Audit-Id", "X-Request-Id"} {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set("Accept", "application/json")
	return h.up.rt.RoundTrip(req)
}

func (h *Hub) serveRead(w http.ResponseWriter, r *http.Request, client string, ri reqInfo) string {
	online, epoch, _, _ := h.link.state()
	if online {
		ctx, cancel := linkContext(r, epoch)
		defer cancel()
		resp, err := h.upstreamRead(ctx, r)
		var body []byte
		if err == nil {
			body, err = readBody(resp.Body, maxRecordedBody)
			_ = resp.Body.Close()
		}
		switch {
		case err != nil && r.Context().Err() != nil:
			return outcomeError // the client went away
		case err != nil:
			h.link.markOffline("request failed: " + err.Error())
		case resp.StatusCode == http.StatusOK:
			h.relayRead(w, resp, body, client, ri, r)
			return outcomeProxied
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			// The apiserver is there but cannot answer (shutting down,
			// overloaded): the cache is the better answer when it has one.
			if h.serveFromCache(w, r, client, ri, false) {
				return outcomeCacheHit
			}
			copyResponse(w, resp, body)
			return outcomeProxied
		default:
			if resp.StatusCode == http.StatusNotFound && ri.name != "" {
				_ = h.store.DropResponse(responseKey(client, r))
			}
			copyResponse(w, resp, body)
			return outcomeProxied
		}
	}
	if h.serveFromCache(w, r, client, ri, true) {
		return outcomeCacheHit
	}
	return outcomeCacheMiss
}

func readBody(rc io.Reader, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("response larger than %d bytes", limit)
	}
	return buf.Bytes(), nil
}

func copyResponse(w http.ResponseWriter, resp *http.Response, body []byte) {
	for k, vs := range resp.Header {
		if k == "Content-Length" || k == "Content-Encoding" || k == "Transfer-Encoding" || k == "Connection" {
			continue
		}
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// relayRead answers a successful read and hands the body to the recorder.
func (h *Hub) relayRead(w http.ResponseWriter, resp *http.Response, body []byte, client string, ri reqInfo, r *http.Request) {
	out := body
	if h.filters(client, ri) {
		if ri.verb == "list" {
			out = h.topo.filterList(body)
		} else {
			out = h.topo.filterObject(body)
		}
	}
	copyResponse(w, resp, out)
	if ri.verb == "list" {
		h.recordListPage(client, ri, body)
		return
	}
	rr := &responseRecord{key: responseKey(client, r), resp: store.Response{ContentType: "application/json", Body: body, Recorded: time.Now()}}
	h.rec.response(rr)
}

func (h *Hub) filters(client string, ri reqInfo) bool {
	return h.filtered[client] && ri.resource == "endpointslices" && ri.group == "discovery.k8s.io"
}

// pageStage collects the pages of a paginated LIST until the last one.
type pageStage struct {
	key              string
	items            []store.Item
	kind, apiVersion string
	rv               string
	started          time.Time
}

const maxPageStages = 64

// recordListPage records a LIST response; pages of a paginated LIST are
// staged and recorded together once the last page arrives.
func (h *Hub) recordListPage(client string, ri reqInfo, body []byte) {
	key := collectionKey(client, ri)
	cont := ri.query.Get("continue")
	l, err := kjson.ParseList(body)
	if err != nil {
		h.log.V(2).Info("Not recording unparsable list", "key", key, "err", err.Error())
		return
	}
	if cont == "" && l.Continue == "" {
		h.rec.list(key, &listRecord{body: body})
		return
	}
	h.pagesMu.Lock()
	defer h.pagesMu.Unlock()
	var st *pageStage
	if cont == "" {
		st = &pageStage{key: key, kind: l.Kind, apiVersion: l.APIVersion, rv: l.ResourceVersion, started: time.Now()}
	} else if st = h.pages[cont]; st == nil || st.key != key {
		return // a page of a LIST whose start we did not see
	}
	delete(h.pages, cont)
	for _, it := range l.Items {
		m, err := kjson.ObjectMeta(it, false)
		if err != nil {
			return
		}
		st.items = append(st.items, store.Item{Key: m.Key(), Value: bytes.Clone(it)})
	}
	if l.Continue == "" {
		h.rec.list(key, &listRecord{items: st.items, kind: st.kind, apiVersion: st.apiVersion, rv: st.rv})
		return
	}
	for k, s := range h.pages { // bound abandoned pagings
		if len(h.pages) < maxPageStages && time.Since(s.started) < 5*time.Minute {
			break
		}
		delete(h.pages, k)
	}
	h.pages[l.Continue] = st
}

// serveFromCache answers a GET/LIST from the store; false when it has
// nothing (then, if final, it has written a 503).
func (h *Hub) serveFromCache(w http.ResponseWriter, r *http.Request, client string, ri reqInfo, final bool) bool {
	var ok bool
	var err error
	if ri.verb == "list" {
		ok, err = h.serveCachedList(w, client, ri)
	} else {
		ok, err = h.serveCachedObject(w, r, client, ri)
	}
	if err != nil {
		h.log.Error(err, "Cached value unusable, dropping it", "client", client, "path", r.URL.Path)
		if errors.Is(err, store.ErrCorrupt) {
			h.metrics.corrupt.Inc()
			if ri.verb == "list" {
				_ = h.store.DropCollection(collectionKey(client, ri))
			} else {
				_ = h.store.DropResponse(responseKey(client, r))
			}
		}
		ok = false
	}
	if ok {
		h.metrics.cacheHits.WithLabelValues(client, ri.resource).Inc()
		return true
	}
	if final {
		h.metrics.cacheMisses.WithLabelValues(client, ri.resource).Inc()
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable",
			fmt.Sprintf("edge-hub: the cloud link is down and no cached copy of %s exists for %s", r.URL.RequestURI(), client))
	}
	return false
}

func (h *Hub) listKind(m store.CollectionMeta, ri reqInfo) (kind, apiVersion string) {
	kind, apiVersion = m.Kind, m.APIVersion
	if kind == "" {
		kind = kindOf(ri.resource) + "List"
	}
	if apiVersion == "" {
		if ri.prefix == "apis" {
			apiVersion = ri.group + "/" + ri.version
		} else {
			apiVersion = ri.version
		}
	}
	return kind, apiVersion
}

// serveCachedList streams a recorded collection as a list: the stored
// object bytes are written as they are, never decoded.
func (h *Hub) serveCachedList(w http.ResponseWriter, client string, ri reqInfo) (bool, error) {
	filter := h.filters(client, ri)
	return h.store.Collection(collectionKey(client, ri), func(m store.CollectionMeta, each func(func(string, []byte) error) error) error {
		// Verify every checksum before the first byte goes out: a bad
		// value must turn into a miss, not a torn answer.
		if err := each(func(string, []byte) error { return nil }); err != nil {
			return err
		}
		kind, apiVersion := h.listKind(m, ri)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		bw := bufio.NewWriterSize(w, 256<<10)
		head, _ := json.Marshal(struct {
			Kind       string `json:"kind"`
			APIVersion string `json:"apiVersion"`
			Metadata   struct {
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		}{Kind: kind, APIVersion: apiVersion, Metadata: struct {
			ResourceVersion string `json:"resourceVersion"`
		}{m.ResourceVersion}})
		_, _ = bw.Write(head[:len(head)-1])
		_, _ = bw.WriteString(`,"items":[`)
		first := true
		_ = each(func(_ string, v []byte) error {
			if filter {
				v = h.topo.filterObject(v)
			}
			if !first {
				_ = bw.WriteByte(',')
			}
			first = false
			_, err := bw.Write(v)
			return err
		})
		_, _ = bw.WriteString("]}")
		return bw.Flush()
	})
}

func (h *Hub) serveCachedObject(w http.ResponseWriter, r *http.Request, client string, ri reqInfo) (bool, error) {
	resp, found, err := h.store.GetResponse(responseKey(client, r))
	if err != nil {
		return false, err
	}
	body := resp.Body
	if !found && ri.isResource() && ri.name != "" && ri.sub == "" {
		kind, apiVersion, v, err := h.store.FindItem(collectionPrefixes(client, ri), ri.objectKey())
		if err != nil || v == nil {
			return false, err
		}
		body = kjson.WithTypeMeta(v, strings.TrimSuffix(kind, "List"), apiVersion)
		found = true
	}
	if !found {
		return false, nil
	}
	if h.filters(client, ri) {
		body = h.topo.filterObject(body)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return true, nil
}

// writeStatus writes a metav1.Status error, which clients show as is.
func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	body, _ := json.Marshal(map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code,
	})
	w.Header().Set("Content-Type", "application/json")
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
