package hub

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Request outcomes.
const (
	outcomeProxied   = "proxied"    // answered by the apiserver
	outcomeCacheHit  = "cache_hit"  // answered from the cache
	outcomeCacheMiss = "cache_miss" // offline and nothing cached: 503
	outcomeJournaled = "journaled"  // offline write answered locally
	outcomeRejected  = "rejected"   // offline write the hub cannot take: 503 (403 for another node's pod)
	outcomeHeld      = "held"       // offline watch kept open
	outcomeError     = "error"      // upstream failed and no fallback
	outcomeAborted   = "aborted"    // upstream cut mid-answer: the answer is broken off
)

type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	cacheHits   *prometheus.CounterVec
	cacheMisses *prometheus.CounterVec
	replayed    *prometheus.CounterVec
	recorded    *prometheus.CounterVec
	corrupt     prometheus.Counter
	quarantined prometheus.Counter
	topoChanges prometheus.Counter
}

func newMetrics(h *Hub) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgehub_requests_total", Help: "Requests by client, verb and outcome.",
		}, []string{"client", "verb", "outcome"}),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgehub_cache_hits_total", Help: "Reads answered from the cache, by client and resource.",
		}, []string{"client", "resource"}),
		cacheMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgehub_cache_misses_total", Help: "Offline reads with nothing cached, by client and resource.",
		}, []string{"client", "resource"}),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgehub_journal_replayed_total", Help: "Journaled writes replayed, by result (applied, retried_conflict, dropped_conflict, dropped_not_found, dropped_rejected).",
		}, []string{"result"}),
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgehub_cache_records_total", Help: "Cache updates by kind (list, list_unchanged, event, response, dropped).",
		}, []string{"kind"}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgehub_store_corrupt_values_total", Help: "Stored values that failed their checksum and were dropped, never served.",
		}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgehub_store_quarantined_total", Help: "Store files that failed verification at start and were quarantined.",
		}),
		topoChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgehub_topology_changes_total", Help: "Service topology changes that made filtered watches re-list.",
		}),
	}
	m.reg.MustRegister(m.requests, m.cacheHits, m.cacheMisses, m.replayed, m.recorded, m.corrupt, m.quarantined, m.topoChanges,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edgehub_cloud_online", Help: "1 while the apiserver is reachable."}, func() float64 {
			if h.link.Online() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edgehub_offline_duration_seconds", Help: "How long the current outage has lasted (0 while online)."}, func() float64 {
			return h.link.offlineFor().Seconds()
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgehub_offline_seconds_total", Help: "Time spent offline since start."}, h.link.offlineSeconds),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edgehub_journal_depth", Help: "Offline writes waiting to be replayed."}, func() float64 {
			return float64(h.journalDepth.Load())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edgehub_store_size_bytes", Help: "Size of the cache file."}, func() float64 {
			return float64(h.store.SizeBytes())
		}),
	)
	return m
}

// metricVerb and metricResource keep label values to a known set: a
// client chooses its method, and an in-cluster caller its path.
func metricVerb(v string) string {
	switch v {
	case "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "head", "options":
		return v
	}
	return "other"
}

func metricResource(client, r string) string {
	if isCaller(client) && r != "" && !knownResource(r) {
		return "other"
	}
	return r
}
