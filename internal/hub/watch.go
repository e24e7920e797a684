package hub

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgeunit/edgeunit/internal/hub/kjson"
	"github.com/edgeunit/edgeunit/internal/hub/store"
)

// serveWatch proxies a watch, recording its events, and when the link is
// or goes down keeps the client's stream open (silent) until the link is
// back, then ends it with 410 Expired so the client re-lists from the
// apiserver.
func (h *Hub) serveWatch(w http.ResponseWriter, r *http.Request, client string, ri reqInfo) string {
	key := collectionKey(client, ri)
	rc := http.NewResponseController(w)
	online, epoch, _, _ := h.link.state()
	filter := h.filterFor(client, ri)
	var topoCh <-chan struct{}
	if filter != nil {
		topoCh = filter.changes()
		if filter.expireWatch != nil && filter.expireWatch() {
			writeWatchHeader(w, rc)
			writeEvent(w, rc, expiredEvent("edge-hub: "+filter.what+" changed; re-list"))
			return outcomeProxied
		}
	}
	started := false
	if online {
		ctx, cancel := linkContext(r, epoch)
		var topoFired atomic.Bool
		if topoCh != nil {
			go func() {
				select {
				case <-topoCh:
					topoFired.Store(true)
					cancel()
				case <-ctx.Done():
				}
			}()
		}
		resp, err := h.upstreamRead(ctx, r, "")
		switch {
		case err != nil && r.Context().Err() != nil:
			cancel()
			return outcomeError
		case err != nil && topoFired.Load():
			cancel()
			writeWatchHeader(w, rc)
			writeEvent(w, rc, expiredEvent("edge-hub: "+filter.what+" changed; re-list"))
			return outcomeProxied
		case err != nil:
			cancel()
			h.link.markOffline("watch failed: " + err.Error())
		case resp.StatusCode != http.StatusOK:
			body, _ := readBody(resp.Body, 1<<20)
			_ = resp.Body.Close()
			cancel()
			copyResponse(w, resp, body)
			return outcomeProxied
		default:
			writeWatchHeader(w, rc)
			started = true
			end := h.relayWatch(ctx, w, rc, resp.Body, client, ri, key)
			_ = resp.Body.Close()
			cancel()
			switch {
			case r.Context().Err() != nil:
				return outcomeProxied
			case topoFired.Load():
				writeEvent(w, rc, expiredEvent("edge-hub: "+filter.what+" changed; re-list"))
				return outcomeProxied
			case end == nil:
				return outcomeProxied // the apiserver ended it (timeout)
			}
			h.link.markOffline("watch stream broke: " + end.Error())
		}
	}
	return h.holdWatch(w, r, rc, client, ri, key, started, topoCh, filter)
}

func writeWatchHeader(w http.ResponseWriter, rc *http.ResponseController) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
}

func writeEvent(w http.ResponseWriter, rc *http.ResponseController, ev []byte) {
	_, _ = w.Write(ev)
	_, _ = w.Write([]byte("\n"))
	_ = rc.Flush()
}

func expiredEvent(msg string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "ERROR", "object": map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": "Expired", "code": 410,
	}})
	return b
}

// relayWatch copies events to the client and the recorder until the stream
// ends: nil on a clean end, the error otherwise.
func (h *Hub) relayWatch(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, body io.Reader, client string, ri reqInfo, key string) error {
	dec := json.NewDecoder(body)
	filter := h.filterFor(client, ri)
	initial := ri.query.Get("sendInitialEvents") == "true"
	var staged []store.Item
	var kind, apiVersion string
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) && ctx.Err() == nil {
				return nil
			}
			return err
		}
		ev, err := kjson.ParseEvent(raw)
		if err != nil {
			return err
		}
		out := []byte(raw)
		if filter != nil && (ev.Type == "ADDED" || ev.Type == "MODIFIED") {
			if fo, changed := filter.object(ev.Object); changed {
				out, _ = json.Marshal(struct {
					Type   string          `json:"type"`
					Object json.RawMessage `json:"object"`
				}{ev.Type, fo})
			}
		}
		writeEvent(w, rc, out)
		if ev.Type == "ERROR" {
			continue
		}
		m, err := kjson.ObjectMeta(ev.Object, false)
		if err != nil {
			continue
		}
		if kind == "" && m.Kind != "" {
			kind, apiVersion = m.Kind, m.APIVersion
		}
		if initial {
			switch {
			case ev.Type == "ADDED":
				staged = append(staged, store.Item{Key: m.Key(), Value: ev.Object})
				continue
			case ev.Type == "BOOKMARK" && m.InitialEventsEnd():
				initial = false
				if kind == "" {
					kind, apiVersion = kindOf(ri.resource), apiVersionOf(ri)
				}
				h.rec.list(key, &listRecord{items: staged, kind: kind + "List", apiVersion: apiVersion, rv: m.ResourceVersion})
				staged = nil
				continue
			}
		}
		cb := &store.ChangeBatch{Collection: key, ResourceVersion: m.ResourceVersion}
		if kind != "" {
			cb.Kind, cb.APIVersion = kind+"List", apiVersion
		} else {
			cb.Kind, cb.APIVersion = kindOf(ri.resource)+"List", apiVersionOf(ri)
		}
		switch ev.Type {
		case "ADDED", "MODIFIED":
			cb.Changes = []store.Change{{Key: m.Key(), Value: ev.Object, RV: store.ParseRV(m.ResourceVersion)}}
		case "DELETED":
			cb.Changes = []store.Change{{Key: m.Key(), Delete: true, RV: store.ParseRV(m.ResourceVersion)}}
		}
		h.rec.changes(ctx, cb)
	}
}

func apiVersionOf(ri reqInfo) string {
	if ri.prefix == "apis" {
		return ri.group + "/" + ri.version
	}
	return ri.version
}

// holdWatch serves a watch while offline.
func (h *Hub) holdWatch(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, client string, ri reqInfo, key string, started bool, topoCh <-chan struct{}, filter *answerFilter) string {
	online, _, back, _ := h.link.state()
	if online {
		// It came back while we were deciding: let the client re-watch.
		if !started {
			writeWatchHeader(w, rc)
		}
		writeEvent(w, rc, expiredEvent("edge-hub: cloud link restored; re-list"))
		return outcomeProxied
	}
	if !started {
		if ri.query.Get("sendInitialEvents") == "true" {
			ok, err := h.sendInitialEvents(w, rc, client, ri, key)
			if err != nil || !ok {
				if err != nil {
					h.log.Error(err, "Cached collection unusable", "key", key)
					_ = h.store.DropCollection(key)
				}
				h.metrics.cacheMisses.WithLabelValues(componentOf(client), metricResource(client, ri.resource)).Inc()
				writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "edge-hub: the cloud link is down and nothing is cached for "+r.URL.RequestURI())
				return outcomeCacheMiss
			}
			h.metrics.cacheHits.WithLabelValues(componentOf(client), metricResource(client, ri.resource)).Inc()
		} else {
			writeWatchHeader(w, rc)
		}
	}
	var timeout <-chan time.Time
	if s, err := strconv.Atoi(ri.query.Get("timeoutSeconds")); err == nil && s > 0 {
		t := time.NewTimer(time.Duration(s) * time.Second)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-back:
		writeEvent(w, rc, expiredEvent("edge-hub: cloud link restored; re-list"))
	case <-topoCh:
		writeEvent(w, rc, expiredEvent("edge-hub: "+filter.what+" changed; re-list"))
	case <-timeout:
	case <-r.Context().Done():
	}
	return outcomeHeld
}

// sendInitialEvents replays a cached collection as ADDED events and the
// end-of-initial-events bookmark (the streaming-list protocol).
func (h *Hub) sendInitialEvents(w http.ResponseWriter, rc *http.ResponseController, client string, ri reqInfo, key string) (bool, error) {
	filter := h.filterFor(client, ri)
	return h.store.Collection(key, func(m store.CollectionMeta, each func(func(string, []byte) error) error) error {
		if err := each(func(string, []byte) error { return nil }); err != nil {
			return err
		}
		listKind, apiVersion := h.listKind(m, ri)
		kind := strings.TrimSuffix(listKind, "List")
		writeWatchHeader(w, rc)
		_ = each(func(_ string, v []byte) error {
			v = kjson.WithTypeMeta(v, kind, apiVersion)
			if filter != nil {
				v = filter.apply(v)
			}
			_, _ = w.Write([]byte(`{"type":"ADDED","object":`))
			_, _ = w.Write(v)
			_, err := w.Write([]byte("}\n"))
			return err
		})
		bm, _ := json.Marshal(map[string]any{"type": "BOOKMARK", "object": map[string]any{
			"kind": kind, "apiVersion": apiVersion,
			"metadata": map[string]any{"resourceVersion": m.ResourceVersion, "annotations": map[string]string{"k8s.io/initial-events-end": "true"}},
		}})
		writeEvent(w, rc, bm)
		return nil
	})
}
