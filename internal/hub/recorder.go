package hub

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/edgeunit/edgeunit/internal/hub/kjson"
	"github.com/edgeunit/edgeunit/internal/hub/store"
)

// recorder writes what the proxy saw into the store from one goroutine, off
// the request path: clients never wait for the disk. LIST bodies for the
// same collection coalesce (only the newest is written); watch events are
// batched into one transaction per burst.
type recorder struct {
	h       *Hub
	mu      sync.Mutex
	pending map[string]*listRecord
	queue   chan recOp
}

type listRecord struct {
	body []byte // a LIST response, or nil when items is set
	// items/kind/apiVersion/rv: a full state assembled from a watch's
	// initial events.
	items            []store.Item
	kind, apiVersion string
	rv               string
}

type recOp struct {
	list     string
	changes  *store.ChangeBatch
	response *responseRecord
	flush    chan struct{}
}

type responseRecord struct {
	key  string
	resp store.Response
	// also updates the object in the client's collections.
	prefixes []string
	objKey   string
}

const recorderQueue = 1024

func newRecorder(h *Hub) *recorder {
	return &recorder{h: h, pending: map[string]*listRecord{}, queue: make(chan recOp, recorderQueue)}
}

// list queues a LIST response body (owned by the recorder from now on).
func (r *recorder) list(key string, lr *listRecord) {
	r.mu.Lock()
	if _, ok := r.pending[key]; ok {
		r.pending[key] = lr
		r.mu.Unlock()
		return
	}
	r.pending[key] = lr
	r.mu.Unlock()
	select {
	case r.queue <- recOp{list: key}:
	default:
		r.mu.Lock()
		delete(r.pending, key)
		r.mu.Unlock()
		r.h.metrics.recorded.WithLabelValues("dropped").Inc()
	}
}

// changes queues watch events; it waits for room so no event is lost.
func (r *recorder) changes(ctx context.Context, cb *store.ChangeBatch) {
	select {
	case r.queue <- recOp{changes: cb}:
	case <-ctx.Done():
	}
}

func (r *recorder) response(rr *responseRecord) {
	select {
	case r.queue <- recOp{response: rr}:
	default:
		r.h.metrics.recorded.WithLabelValues("dropped").Inc()
	}
}

// flush waits until everything queued before it is written.
func (r *recorder) flush(ctx context.Context) error {
	ch := make(chan struct{})
	select {
	case r.queue <- recOp{flush: ch}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *recorder) run(stop <-chan struct{}) {
	for {
		var op recOp
		select {
		case op = <-r.queue:
		case <-stop:
			// Drain what is queued so a graceful stop loses nothing.
			for {
				select {
				case op = <-r.queue:
					r.do(op, nil)
				default:
					return
				}
			}
		}
		r.do(op, stop)
	}
}

func (r *recorder) do(op recOp, stop <-chan struct{}) {
	log := r.h.log
	switch {
	case op.flush != nil:
		close(op.flush)
	case op.changes != nil:
		batches := []store.ChangeBatch{*op.changes}
		// Fold in the events queued behind it: one transaction per burst.
	more:
		for len(batches) < 256 {
			select {
			case next := <-r.queue:
				if next.changes == nil {
					r.apply(batches)
					batches = nil
					r.do(next, stop)
					return
				}
				batches = append(batches, *next.changes)
			default:
				break more
			}
		}
		r.apply(batches)
	case op.response != nil:
		rr := op.response
		if err := r.h.store.PutResponse(rr.key, rr.resp); err != nil {
			log.Error(err, "Recording response failed", "key", rr.key)
			return
		}
		if rr.objKey != "" {
			if _, err := r.h.store.UpdateItem(rr.prefixes, rr.objKey, rr.resp.Body); err != nil {
				log.Error(err, "Updating cached object failed", "key", rr.objKey)
			}
		}
		r.h.metrics.recorded.WithLabelValues("response").Inc()
	case op.list != "":
		r.mu.Lock()
		lr := r.pending[op.list]
		delete(r.pending, op.list)
		r.mu.Unlock()
		if lr != nil {
			if err := r.recordList(op.list, lr); err != nil {
				log.Error(err, "Recording list failed", "key", op.list)
			}
		}
	}
}

func (r *recorder) apply(batches []store.ChangeBatch) {
	if len(batches) == 0 {
		return
	}
	if err := r.h.store.ApplyChanges(batches); err != nil {
		r.h.log.Error(err, "Recording watch events failed", "batches", len(batches))
		if errors.Is(err, store.ErrCorrupt) {
			r.h.metrics.corrupt.Inc()
			for _, b := range batches {
				_ = r.h.store.DropCollection(b.Collection)
			}
		}
		return
	}
	n := 0
	for _, b := range batches {
		n += len(b.Changes)
	}
	r.h.metrics.recorded.WithLabelValues("event").Add(float64(n))
}

func (r *recorder) recordList(key string, lr *listRecord) error {
	st := r.h.store
	meta, found, err := st.CollectionMetaOf(key)
	if err != nil {
		if errors.Is(err, store.ErrCorrupt) {
			r.h.metrics.corrupt.Inc()
			_ = st.DropCollection(key)
			found = false
		} else {
			return err
		}
	}
	if lr.body == nil {
		m := store.CollectionMeta{Kind: lr.kind, APIVersion: lr.apiVersion, ResourceVersion: lr.rv, Updated: time.Now()}
		r.h.metrics.recorded.WithLabelValues("list").Inc()
		return st.ReplaceCollection(key, m, lr.items)
	}
	l, err := kjson.ParseList(lr.body)
	if err != nil {
		return err
	}
	if found && stale(l.ResourceVersion, meta.ResourceVersion) {
		return nil
	}
	hash := store.ItemsHash(lr.body[l.ItemsStart:l.ItemsEnd])
	if hash == 0 {
		hash = 1
	}
	if found && meta.ItemsHash == hash {
		r.h.metrics.recorded.WithLabelValues("list_unchanged").Inc()
		return st.TouchCollection(key, l.ResourceVersion)
	}
	items := make([]store.Item, 0, len(l.Items))
	for _, it := range l.Items {
		m, err := kjson.ObjectMeta(it, false)
		if err != nil {
			return err
		}
		items = append(items, store.Item{Key: m.Key(), Value: it})
	}
	r.h.metrics.recorded.WithLabelValues("list").Inc()
	return st.ReplaceCollection(key, store.CollectionMeta{
		Kind: l.Kind, APIVersion: l.APIVersion, ResourceVersion: l.ResourceVersion, ItemsHash: hash, Updated: time.Now(),
	}, items)
}

// stale says whether a list at rv is older than what the collection holds.
func stale(rv, have string) bool {
	a, b := store.ParseRV(rv), store.ParseRV(have)
	return a != 0 && b != 0 && a < b
}
