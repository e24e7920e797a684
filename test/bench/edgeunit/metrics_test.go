package edgeunit_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"

	"github.com/edgeunit/edgeunit/test/bench/benchutil"
)

// metricSet is a scrape: family name -> samples.
type metricSet map[string]*dto.MetricFamily

func parseMetrics(r io.Reader) (metricSet, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return fams, nil
}

// each calls fn with the labels and value of every sample of family.
func (s metricSet) each(family string, fn func(labels map[string]string, v float64)) {
	f := s[family]
	if f == nil {
		return
	}
	for _, m := range f.GetMetric() {
		labels := make(map[string]string, len(m.GetLabel()))
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		var v float64
		switch {
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		case m.Untyped != nil:
			v = m.Untyped.GetValue()
		default:
			continue
		}
		fn(labels, v)
	}
}

// sum adds the samples of family whose labels pass keep (nil: all).
func (s metricSet) sum(family string, keep func(map[string]string) bool) float64 {
	var n float64
	s.each(family, func(l map[string]string, v float64) {
		if keep == nil || keep(l) {
			n += v
		}
	})
	return n
}

// tally is a set of counters by key; subtract two to get a window.
type tally map[string]float64

func (t tally) sub(o tally) tally { return benchutil.SubCounts(t, o) }

func (t tally) add(o tally) tally {
	out := maps.Clone(t)
	for k, v := range o {
		out[k] += v
		if out[k] == 0 {
			delete(out, k)
		}
	}
	return out
}

func (t tally) total() float64 { return benchutil.SumCounts(t, nil) }

func (t tally) String() string { return benchutil.FormatCounts(t, "%s %.0f") }

var writeMethods = []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// managerRequests is the manager's client-go rest_client_requests_total by
// "METHOD code".
func managerRequests(s metricSet) tally {
	out := tally{}
	s.each("rest_client_requests_total", func(l map[string]string, v float64) {
		out[l["method"]+" "+l["code"]] += v
	})
	return out
}

// writes counts the entries of t (from managerRequests) that are writes;
// conflicts those answered 409, failed those answered >= 400 other than
// 409, or not at all.
func writes(t tally) (writes, conflicts, failed float64) {
	for k, v := range t {
		method, code, _ := strings.Cut(k, " ")
		if slices.Contains(writeMethods, method) {
			writes += v
		}
		switch {
		case code == "409":
			conflicts += v
		case code == "<error>" || (len(code) == 3 && code >= "400"):
			failed += v
		}
	}
	return writes, conflicts, failed
}

// histograms returns, for family, the sum and count of observations by
// the value of label, as "<value> sum" and "<value> count".
func (s metricSet) histograms(family, label string) tally {
	out := tally{}
	f := s[family]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		if m.Histogram == nil {
			continue
		}
		v := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				v = l.GetValue()
			}
		}
		out[v+" sum"] += m.Histogram.GetSampleSum()
		out[v+" count"] += float64(m.Histogram.GetSampleCount())
	}
	return out
}

// means formats the "<value> sum"/"<value> count" pairs of t as mean
// milliseconds.
func means(t tally) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(t)) {
		v, ok := strings.CutSuffix(k, " count")
		if !ok || t[k] == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.1f ms (n=%.0f)", v, 1000*t[v+" sum"]/t[k], t[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// queued is the work the manager's controllers have queued or running.
func queued(s metricSet) float64 {
	return s.sum("workqueue_depth", nil) + s.sum("controller_runtime_active_workers", nil)
}

// reconciles is controller_runtime_reconcile_total by "controller result"
// for the controllers this bench reports on.
func reconciles(s metricSet) tally {
	out := tally{}
	s.each("controller_runtime_reconcile_total", func(l map[string]string, v float64) {
		if slices.Contains(controllerNames, l["controller"]) {
			out[l["controller"]+" "+l["result"]] += v
		}
	})
	return out
}

// scrapeAPIServer reads kube-apiserver's metrics.
func scrapeAPIServer(ctx context.Context, cfg *rest.Config) (metricSet, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping kube-apiserver's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping kube-apiserver's metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// apiserverWrites is kube-apiserver's apiserver_request_total for writes,
// by "VERB resource[.group][/subresource] code". It counts every client's
// writes; subtract the bench's own to get the manager's.
func apiserverWrites(s metricSet) tally {
	out := tally{}
	s.each("apiserver_request_total", func(l map[string]string, v float64) {
		switch l["verb"] {
		case "POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION":
			out[l["verb"]+" "+resourceKey(l["group"], l["resource"], l["subresource"])+" "+l["code"]] += v
		}
	})
	return out
}

// apiserverLatency is kube-apiserver's request duration for node patches.
func apiserverLatency(s metricSet) tally {
	out := tally{}
	f := s["apiserver_request_duration_seconds"]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		if m.Histogram == nil || l["verb"] != "PATCH" || l["resource"] != "nodes" || l["subresource"] != "" {
			continue
		}
		out["PATCH nodes sum"] += m.Histogram.GetSampleSum()
		out["PATCH nodes count"] += float64(m.Histogram.GetSampleCount())
	}
	return out
}

func resourceKey(group, resource, sub string) string {
	k := resource
	if group != "" {
		k += "." + group
	}
	if sub != "" {
		k += "/" + sub
	}
	return k
}

// byResource folds "VERB resource code" keys into "VERB resource".
func byResource(t tally) tally {
	out := tally{}
	for k, v := range t {
		if i := strings.LastIndexByte(k, ' '); i > 0 {
			k = k[:i]
		}
		out[k] += v
	}
	return out
}
