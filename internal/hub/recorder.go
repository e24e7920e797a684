package hub

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeunit/edgeunit/internal/hub/kjson"
	"github.com/edgeunit/edgeunit/internal/hub/store"
)

// recorder writes what the proxy saw into the store from one goroutine, off
// the request path: clients never wait for the disk, and a slow disk never
// stalls a reply. Bodies wait for it in a bounded queue: at most
// recordBudget bytes of spooled bodies (beyond that a body is not recorded,
// and counted as dropped) and, for the same collection, only the newest
// full LIST (older ones are superseded). Responses and watch events queued
// together are written in one transaction (group commit: the slower the
// disk, the bigger the batches). LIST bodies arrive as the apiserver sent
// them (often gzip-encoded) and are decoded here, never on the response
// path; a LIST whose bytes are the same as the last one recorded for its
// collection is not even decoded.
type recorder struct {
	h       *Hub
	mu      sync.Mutex
	pending map[string]*listRecord
	queue   chan recOp

	// budget is the bytes of spooled bodies queued or being recorded.
	budget atomic.Int64

	// Owned by the run goroutine.
	scratch []byte
	zr      *gzip.Reader
	memo    map[string]listMemo
	stages  map[string]*pageStage
}

// listMemo remembers the last LIST body recorded for a collection, so an
// identical one is recognized from its CRC without decoding it.
type listMemo struct {
	crc       uint32
	n         int
	itemsHash uint32
}

const (
	recorderQueue = 1024
	// recordBudget bounds the spooled bodies waiting for the recorder.
	recordBudget = 64 << 20
	// maxDecodedList bounds a decoded LIST body the recorder accepts.
	maxDecodedList = 512 << 20
	maxListMemos   = 4096
	// scratchIdle is how long the recorder keeps its decode buffer after
	// its last use before leaving it to the garbage collector.
	scratchIdle = time.Second
	// responseLinger is how long recorded responses wait for company
	// before their transaction commits.
	responseLinger = 20 * time.Millisecond
)

type listRecord struct {
	// body is a LIST response as the apiserver sent it, or nil when items
	// is set. cont is the request's continue token (a later page).
	body  *spool
	cont  string
	paged bool
	// items/kind/apiVersion/rv: a full state assembled from a watch's
	// initial events.
	items            []store.Item
	kind, apiVersion string
	rv               string
}

type recOp struct {
	list     string
	page     *listRecord // a page of a paginated LIST: FIFO, never coalesced
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
	// skipSame: not rewritten when the stored body is the same (a GET).
	skipSame bool
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

func newRecorder(h *Hub) *recorder {
	return &recorder{h: h, pending: map[string]*listRecord{}, queue: make(chan recOp, recorderQueue),
		memo: map[string]listMemo{}, stages: map[string]*pageStage{}}
}

// newSpool starts spooling a body for the recorder, charged to its budget.
func (r *recorder) newSpool(gzipped bool) *spool {
	return newSpool(&r.budget, recordBudget, gzipped)
}

func (r *recorder) dropped() { r.h.metrics.recorded.WithLabelValues("dropped").Inc() }

// list queues a LIST (owned by the recorder from now on). Full LISTs of the
// same collection coalesce; pages are queued in order.
func (r *recorder) list(key string, lr *listRecord) {
	if lr.paged {
		select {
		case r.queue <- recOp{page: lr, list: key}:
		default:
			lr.body.release()
			r.dropped()
		}
		return
	}
	r.mu.Lock()
	if old, ok := r.pending[key]; ok {
		r.pending[key] = lr
		r.mu.Unlock()
		if old != nil {
			old.body.release()
		}
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
		lr.body.release()
		r.dropped()
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
		r.dropped()
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
	idle := time.NewTimer(scratchIdle)
	defer idle.Stop()
	for {
		var op recOp
		select {
		case op = <-r.queue:
		case <-idle.C:
			// Let an idle hub give the memory of its last big LIST back.
			if r.scratch != nil {
				r.scratch = nil
				debug.FreeOSMemory()
			}
			continue
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
		idle.Reset(scratchIdle)
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
		// Likewise for responses: one transaction for those queued, and
		// those arriving within responseLinger (while online: going
		// offline commits at once, so offline reads see them).
		recs := []*responseRecord{op.response}
		online, _, _, down := r.h.link.state()
		linger := time.NewTimer(responseLinger)
		if !online || stop == nil {
			linger.Stop()
			linger = time.NewTimer(0)
		}
	collect:
		for len(recs) < 256 {
			select {
			case next := <-r.queue:
				if next.response == nil {
					linger.Stop()
					r.putResponses(recs)
					r.do(next, stop)
					return
				}
				recs = append(recs, next.response)
			case <-linger.C:
				break collect
			case <-down:
				break collect
			case <-stop:
				break collect
			}
		}
		linger.Stop()
		r.putResponses(recs)
	case op.page != nil:
		defer op.page.body.release()
		if err := r.recordPage(op.list, op.page); err != nil {
			log.V(2).Info("Not recording list page", "key", op.list, "err", err.Error())
		} else {
			r.h.hasCache.Store(true)
		}
	case op.list != "":
		r.mu.Lock()
		lr := r.pending[op.list]
		delete(r.pending, op.list)
		r.mu.Unlock()
		if lr != nil {
			defer lr.body.release()
			if err := r.recordList(op.list, lr); err != nil {
				log.Error(err, "Recording list failed", "key", op.list)
			} else {
				r.h.hasCache.Store(true)
			}
		}
	}
}

func (r *recorder) putResponses(recs []*responseRecord) {
	writes := make([]store.ResponseWrite, len(recs))
	for i, rr := range recs {
		writes[i] = store.ResponseWrite{Key: rr.key, Response: rr.resp, Prefixes: rr.prefixes, ObjKey: rr.objKey, SkipSame: rr.skipSame}
	}
	written, err := r.h.store.PutResponses(writes)
	if err != nil {
		r.h.log.Error(err, "Recording responses failed", "responses", len(recs))
		return
	}
	if written > 0 {
		r.h.hasCache.Store(true)
	}
	r.h.metrics.recorded.WithLabelValues("response").Add(float64(written))
	if same := len(recs) - written; same > 0 {
		r.h.metrics.recorded.WithLabelValues("response_unchanged").Add(float64(same))
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
	if n > 0 {
		r.h.hasCache.Store(true)
	}
	r.h.metrics.recorded.WithLabelValues("event").Add(float64(n))
}

// decode returns a spooled body's identity bytes in the recorder's scratch
// buffer (valid until the next call).
func (r *recorder) decode(sp *spool) ([]byte, error) {
	b, err := sp.decoded(r.scratch, &r.zr, maxDecodedList)
	if cap(b) <= maxDecodedList {
		r.scratch = b[:0]
	}
	return b, err
}

// metaOf reads a collection's meta, dropping it when corrupt.
func (r *recorder) metaOf(key string) (store.CollectionMeta, bool, error) {
	meta, found, err := r.h.store.CollectionMetaOf(key)
	if err != nil && errors.Is(err, store.ErrCorrupt) {
		r.h.metrics.corrupt.Inc()
		_ = r.h.store.DropCollection(key)
		return meta, false, nil
	}
	return meta, found, err
}

func (r *recorder) recordList(key string, lr *listRecord) error {
	meta, found, err := r.metaOf(key)
	if err != nil {
		return err
	}
	if lr.body == nil {
		m := store.CollectionMeta{Kind: lr.kind, APIVersion: lr.apiVersion, ResourceVersion: lr.rv, Updated: time.Now()}
		r.h.metrics.recorded.WithLabelValues("list").Inc()
		delete(r.memo, key)
		return r.h.store.ReplaceCollection(key, m, lr.items)
	}
	// The same bytes as the LIST recorded last, and the collection still
	// holds exactly that: nothing to do, not even decoding.
	if mm, ok := r.memo[key]; ok && found && mm.crc == lr.body.crc && mm.n == lr.body.Len() && meta.ItemsHash == mm.itemsHash {
		r.h.metrics.recorded.WithLabelValues("list_unchanged").Inc()
		return nil
	}
	body, err := r.decode(lr.body)
	if err != nil {
		return err
	}
	l, err := kjson.ParseList(body)
	if err != nil {
		return err
	}
	if l.Continue != "" {
		return nil // a first page: not a full state
	}
	return r.recordParsed(key, lr.body, meta, found, body, l)
}

// recordParsed records a full LIST response body (parsed as l).
func (r *recorder) recordParsed(key string, sp *spool, meta store.CollectionMeta, found bool, body []byte, l kjson.List) error {
	st := r.h.store
	if found && stale(l.ResourceVersion, meta.ResourceVersion) {
		return nil
	}
	hash := store.ItemsHash(body[l.ItemsStart:l.ItemsEnd])
	if hash == 0 {
		hash = 1
	}
	r.remember(key, listMemo{crc: sp.crc, n: sp.Len(), itemsHash: hash})
	if found && meta.ItemsHash == hash {
		r.h.metrics.recorded.WithLabelValues("list_unchanged").Inc()
		if meta.ResourceVersion == l.ResourceVersion {
			return nil
		}
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

func (r *recorder) remember(key string, m listMemo) {
	if len(r.memo) >= maxListMemos {
		clear(r.memo)
	}
	r.memo[key] = m
}

// recordPage records a page of a paginated LIST: pages are staged and
// recorded together once the last page arrives.
func (r *recorder) recordPage(key string, lr *listRecord) error {
	body, err := r.decode(lr.body)
	if err != nil {
		return err
	}
	l, err := kjson.ParseList(body)
	if err != nil {
		return err
	}
	if lr.cont == "" && l.Continue == "" {
		// Asked with a limit, answered whole: a full LIST.
		meta, found, err := r.metaOf(key)
		if err != nil {
			return err
		}
		return r.recordParsed(key, lr.body, meta, found, body, l)
	}
	var st *pageStage
	if lr.cont == "" {
		st = &pageStage{key: key, kind: l.Kind, apiVersion: l.APIVersion, rv: l.ResourceVersion, started: time.Now()}
	} else if st = r.stages[lr.cont]; st == nil || st.key != key {
		return nil // a page of a LIST whose start we did not see
	}
	delete(r.stages, lr.cont)
	for _, it := range l.Items {
		m, err := kjson.ObjectMeta(it, false)
		if err != nil {
			return err
		}
		st.items = append(st.items, store.Item{Key: m.Key(), Value: bytes.Clone(it)})
	}
	if l.Continue == "" {
		return r.recordList(key, &listRecord{items: st.items, kind: st.kind, apiVersion: st.apiVersion, rv: st.rv})
	}
	for k, s := range r.stages { // bound abandoned pagings
		if len(r.stages) < maxPageStages && time.Since(s.started) < 5*time.Minute {
			break
		}
		delete(r.stages, k)
	}
	r.stages[l.Continue] = st
	return nil
}

// stale says whether a list at rv is older than what the collection holds.
func stale(rv, have string) bool {
	a, b := store.ParseRV(rv), store.ParseRV(have)
	return a != 0 && b != 0 && a < b
}
