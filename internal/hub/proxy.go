package hub

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeunit/edgeunit/internal/hub/kjson"
	"github.com/edgeunit/edgeunit/internal/hub/store"
)

// maxRecordedBody bounds what one response may buffer for the cache.
const maxRecordedBody = 512 << 20

// ServeHTTP is the proxy: every request from a local component lands here.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.handle(w, r, identify(r)) }

// handle serves one request of client: a component on the loopback
// listeners (named by identify), or an in-cluster caller (callerClient).
func (h *Hub) handle(w http.ResponseWriter, r *http.Request, client string) {
	start := time.Now()
	ri := parseRequest(r)
	outcome := h.serve(w, r, client, ri)
	h.metrics.requests.WithLabelValues(componentOf(client), metricVerb(ri.verb), outcome).Inc()
	if log := h.log.V(4); log.Enabled() {
		log.Info("Request", "client", client, "verb", ri.verb, "path", r.URL.Path, "outcome", outcome, "duration", time.Since(start).String())
	}
	if outcome == outcomeAborted {
		// The upstream answer broke after part of it was sent: end the
		// client's response as broken (no clean end of body).
		panic(http.ErrAbortHandler)
	}
}

func (h *Hub) serve(w http.ResponseWriter, r *http.Request, client string, ri reqInfo) string {
	if r.Header.Get("Upgrade") != "" {
		return h.passthrough(w, r, ri)
	}
	if r.Method == http.MethodGet && h.cacheable(client, ri, r) {
		if !acceptsJSON(r.Header.Get("Accept")) {
			// The hub reads, caches and filters JSON: a client that takes
			// nothing else goes to the apiserver, unless its answer must be
			// filtered.
			if f := h.filterFor(client, ri); f != nil {
				writeStatus(w, http.StatusNotAcceptable, "NotAcceptable",
					"edge-hub: answers with a rewritten "+f.what+" are served as "+mediaJSON+" only")
				return outcomeRejected
			}
			return h.passthrough(w, r, ri)
		}
		if ri.verb == "watch" {
			return h.serveWatch(w, r, client, ri)
		}
		return h.serveRead(w, r, client, ri)
	}
	// In-cluster callers write as themselves, online only: the journal
	// replays as the node.
	if !isCaller(client) && h.journalable(ri, r) {
		return h.serveWrite(w, r, client, ri)
	}
	return h.passthrough(w, r, ri)
}

// cacheable says whether the hub records (and can answer offline) a read.
func (h *Hub) cacheable(client string, ri reqInfo, r *http.Request) bool {
	if client == ClientHub {
		return false // netbind: see startNetBind
	}
	if isCaller(client) {
		if !callerCacheable(client, ri, r) {
			return false
		}
	} else if !h.cached[client] && h.filterFor(client, ri) == nil {
		// Filtered answers take the cached path, cached or not.
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

// upstreamRead forwards a GET asking for JSON (the cache stores JSON).
// With encoding "gzip" the apiserver's compressed bytes come back as they
// are (to be passed through); with "" the transport negotiates compression
// with the apiserver and decompresses as it reads.
func (h *Hub) upstreamRead(ctx context.Context, r *http.Request, encoding string) (*http.Response, error) {
	req := h.up.request(ctx, http.MethodGet, r.URL.Path, r.URL.RawQuery, nil)
	for _, k := range []string{"User-Agent", "Audit-Id", "X-Request-Id"} {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set("Accept", "application/json")
	if encoding != "" {
		req.Header.Set("Accept-Encoding", encoding)
	}
	return h.up.roundTrip(req)
}

// acceptsGzip says whether the client takes a gzip-encoded answer.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for tok := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(tok), ";")
			if strings.EqualFold(strings.TrimSpace(name), "gzip") {
				q := strings.ReplaceAll(params, " ", "")
				return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
			}
		}
	}
	return false
}

// commitAfter is how much of a response the hub holds before it starts
// answering. A response that ends within it (every GET of an object,
// typical filtered LISTs) is whole before the first byte goes out, so a
// failure while reading it still falls back to the cache; a longer one
// streams to the client as it arrives.
const commitAfter = 256 << 10

// maxErrorBody bounds an error answer the hub reads to relay it.
const maxErrorBody = 4 << 20

var copyBufPool = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (h *Hub) serveRead(w http.ResponseWriter, r *http.Request, client string, ri reqInfo) string {
	online, epoch, _, _ := h.link.state()
	if online {
		ctx, cancel := linkContext(r, epoch)
		defer cancel()
		filter := h.filterFor(client, ri)
		enc := ""
		if filter == nil && acceptsGzip(r) {
			enc = "gzip" // pass the apiserver's compression through
		}
		resp, err := h.upstreamRead(ctx, r, enc)
		var body []byte
		if err == nil {
			if resp.StatusCode == http.StatusOK {
				outcome, err := h.relayRead(w, r, resp, client, ri, filter)
				_ = resp.Body.Close()
				if err == nil {
					return outcome
				}
				if r.Context().Err() != nil {
					return outcomeError
				}
				// Nothing went out yet: the cache answers instead.
				h.link.markOffline("request failed: " + err.Error())
				if h.serveFromCache(w, r, client, ri, true) {
					return outcomeCacheHit
				}
				return outcomeCacheMiss
			}
			body, err = readBody(resp.Body, maxErrorBody)
			_ = resp.Body.Close()
		}
		switch {
		case err != nil && r.Context().Err() != nil:
			return outcomeError // the client went away
		case err != nil:
			h.link.markOffline("request failed: " + err.Error())
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

// copyHeader copies an upstream answer's headers but the hop-by-hop ones
// and the length (the body may be re-encoded).
func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Trailer", "Upgrade":
			continue
		}
		for _, v := range vs {
			dst.Add(k, v)
		}
	}
}

// copyResponse relays an upstream answer read whole. A Content-Encoding
// still present is real: the body is relayed as the apiserver encoded it.
func copyResponse(w http.ResponseWriter, resp *http.Response, body []byte) {
	copyHeader(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// relayRead answers a successful read from the apiserver's response and
// hands the body, as the apiserver sent it, to the recorder. Up to
// commitAfter bytes are read before anything is written: an error there
// is returned (nothing was sent; the caller falls back to the cache).
// Beyond that the body streams through as it arrives, teed into the
// recorder's spool; a failure mid-stream aborts the client's response
// (outcomeAborted) as a direct connection would have failed.
func (h *Hub) relayRead(w http.ResponseWriter, r *http.Request, resp *http.Response, client string, ri reqInfo, filter *answerFilter) (string, error) {
	enc := resp.Header.Get("Content-Encoding")
	record := enc == "" || enc == "gzip"
	sp := newSpool(nil, 0, enc == "gzip")
	buf := copyBufPool.Get().(*[32 << 10]byte)
	defer copyBufPool.Put(buf)

	complete := false
	for sp.Len() < commitAfter {
		n, err := resp.Body.Read(buf[:])
		if n > 0 {
			_, _ = sp.Write(buf[:n])
		}
		if errors.Is(err, io.EOF) {
			complete = true
			break
		}
		if err != nil {
			sp.release()
			return "", err
		}
	}

	if !complete && filter != nil {
		// Filtering rewrites the body: it needs all of it.
		if err := h.spoolRest(sp, resp.Body, buf[:]); err != nil {
			sp.release()
			return "", err
		}
		complete = true
	}
	hdr := w.Header()
	copyHeader(hdr, resp.Header)
	if complete {
		if filter != nil {
			body := sp.bytesTo(nil)
			var out []byte
			if ri.verb == "list" {
				out = filter.list(body)
			} else {
				out = filter.apply(body)
			}
			hdr.Set("Content-Length", strconv.Itoa(len(out)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(out)
		} else {
			hdr.Set("Content-Length", strconv.Itoa(sp.Len()))
			w.WriteHeader(http.StatusOK)
			_ = sp.writeTo(w)
		}
		if record {
			h.record(client, ri, r, sp)
		} else {
			sp.release()
		}
		return outcomeProxied, nil
	}

	// Stream: what was held first, then the rest as it arrives.
	if resp.ContentLength >= 0 && !resp.Uncompressed {
		hdr.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(http.StatusOK)
	if err := sp.writeTo(w); err != nil {
		sp.release()
		return outcomeError, nil // the client went away
	}
	if !record || !sp.charge(&h.rec.budget, recordBudget) {
		if record {
			h.rec.dropped()
		}
		sp.release()
		sp = nil
	}
	for {
		n, err := resp.Body.Read(buf[:])
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				sp.release()
				return outcomeError, nil // the client went away
			}
			if sp != nil {
				if _, serr := sp.Write(buf[:n]); serr != nil {
					sp.release()
					sp = nil
					h.rec.dropped()
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			sp.release()
			if r.Context().Err() != nil {
				return outcomeError, nil
			}
			// Cut mid-stream: this answer is lost, as it would have been
			// for a direct client; the link goes offline so the reads
			// that follow are served from the cache.
			if isLinkError(r.Context().Err(), err) {
				h.link.markOffline("response cut: " + err.Error())
			}
			h.log.V(2).Info("Upstream response cut mid-stream", "path", r.URL.Path, "err", err.Error())
			return outcomeAborted, nil
		}
	}
	if sp != nil {
		h.record(client, ri, r, sp)
	}
	return outcomeProxied, nil
}

// spoolRest reads the rest of body into sp (no budget: a filtered answer).
func (h *Hub) spoolRest(sp *spool, body io.Reader, buf []byte) error {
	for {
		n, err := body.Read(buf)
		if n > 0 {
			_, _ = sp.Write(buf[:n])
			if sp.Len() > maxRecordedBody {
				return fmt.Errorf("response larger than %d bytes", maxRecordedBody)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// record hands a relayed body to the recorder (which then owns sp).
func (h *Hub) record(client string, ri reqInfo, r *http.Request, sp *spool) {
	if ri.verb == "list" {
		if sp.budget == nil && !sp.charge(&h.rec.budget, recordBudget) {
			h.rec.dropped()
			sp.release()
			return
		}
		cont := ri.query.Get("continue")
		h.rec.list(collectionKey(client, ri), &listRecord{body: sp, cont: cont, paged: cont != "" || ri.query.Has("limit")})
		return
	}
	var body []byte
	if sp.gzip {
		var zr *gzip.Reader
		b, err := sp.decoded(nil, &zr, maxRecordedBody)
		if err != nil {
			sp.release()
			return
		}
		body = b
	} else {
		body = sp.bytesTo(make([]byte, 0, sp.Len()))
	}
	sp.release()
	h.rec.response(&responseRecord{key: responseKey(client, r), resp: store.Response{ContentType: "application/json", Body: body, Recorded: time.Now()}, skipSame: true})
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
		h.metrics.cacheHits.WithLabelValues(componentOf(client), metricResource(client, ri.resource)).Inc()
		return true
	}
	if final {
		h.metrics.cacheMisses.WithLabelValues(componentOf(client), metricResource(client, ri.resource)).Inc()
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable",
			fmt.Sprintf("edge-hub: the cloud link is down and no cached copy of %s exists for %s", r.URL.RequestURI(), componentOf(client)))
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
	filter := h.filterFor(client, ri)
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
			if filter != nil {
				v = filter.apply(v)
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
	if !isJSONObject(resp.ContentType, body) {
		// Served only as what it is (a hub before protobuf support cached
		// offline protobuf writes under a JSON label).
		return false, fmt.Errorf("cached %s is not a JSON object: %w", r.URL.Path, store.ErrCorrupt)
	}
	if f := h.filterFor(client, ri); f != nil {
		body = f.apply(body)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return true, nil
}

// isJSONObject says whether a cached value is the JSON object its label
// (contentType, empty for collection items) must say it is.
func isJSONObject(contentType string, b []byte) bool {
	if contentType != "" && mediaType(contentType) != mediaJSON {
		return false
	}
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
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
