package nodepool_test

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The controllers controllers/nodepool registers.
var controllerNames = []string{"nodepool-node", "nodepool"}

// reconcileCounts are controller_runtime_reconcile_total by result
// (success, error, requeue, requeue_after).
type reconcileCounts map[string]float64

func (r reconcileCounts) String() string {
	var parts []string
	var total float64
	for _, k := range slices.Sorted(maps.Keys(r)) {
		total += r[k]
		parts = append(parts, fmt.Sprintf("%s %.0f", k, r[k]))
	}
	return fmt.Sprintf("%.0f (%s)", total, strings.Join(parts, ", "))
}

type reconcileSnapshot map[string]reconcileCounts

func (s reconcileSnapshot) sub(o reconcileSnapshot) map[string]reconcileCounts {
	out := map[string]reconcileCounts{}
	for name, rs := range s {
		out[name] = reconcileCounts{}
		for res, v := range rs {
			if d := v - o[name][res]; d != 0 {
				out[name][res] = d
			}
		}
	}
	return out
}

// gatherReconciles reads the reconcile counters from controller-runtime's
// global registry. The metrics are process-wide and cumulative across the
// scenarios' managers (same controller names), so only differences mean
// anything.
func gatherReconciles() reconcileSnapshot {
	out := reconcileSnapshot{}
	for _, name := range controllerNames {
		out[name] = reconcileCounts{}
	}
	forEachMetric("controller_runtime_reconcile_total", func(labels map[string]string, m *dto.Metric) {
		if rs, ok := out[labels["controller"]]; ok && m.Counter != nil {
			rs[labels["result"]] += m.Counter.GetValue()
		}
	})
	return out
}

// queuesBusy returns the number of queued plus running reconciles of the
// NodePool controllers.
func queuesBusy() (int, error) {
	var n float64
	ok := forEachMetric("workqueue_depth", func(labels map[string]string, m *dto.Metric) {
		if slices.Contains(controllerNames, labels["name"]) && m.Gauge != nil {
			n += m.Gauge.GetValue()
		}
	})
	ok = forEachMetric("controller_runtime_active_workers", func(labels map[string]string, m *dto.Metric) {
		if slices.Contains(controllerNames, labels["controller"]) && m.Gauge != nil {
			n += m.Gauge.GetValue()
		}
	}) && ok
	if !ok {
		return 0, fmt.Errorf("controller-runtime metrics workqueue_depth or controller_runtime_active_workers not found")
	}
	return int(n), nil
}

// forEachMetric calls fn for each sample of the named family and reports
// whether the family exists.
func forEachMetric(family string, fn func(labels map[string]string, m *dto.Metric)) bool {
	fams, err := metrics.Registry.Gather()
	if err != nil {
		return false
	}
	for _, f := range fams {
		if f.GetName() != family {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			fn(labels, m)
		}
		return true
	}
	return false
}

// loggedErrors counts errors the manager logged (reconcile errors among
// them); the first few are printed.
var loggedErrors atomic.Int64

const printedErrors = 20

// errorSink is a logr sink that drops info messages and prints the first
// errors, so the benchmark output stays readable.
type errorSink struct {
	name   string
	values []any
}

func newErrorLogger() logr.Logger { return logr.New(errorSink{}) }

func (errorSink) Init(logr.RuntimeInfo)    {}
func (errorSink) Enabled(int) bool         { return false }
func (errorSink) Info(int, string, ...any) {}
func (s errorSink) WithValues(kv ...any) logr.LogSink {
	s.values = append(slices.Clip(s.values), kv...)
	return s
}
func (s errorSink) WithName(n string) logr.LogSink {
	if s.name != "" {
		n = s.name + "/" + n
	}
	s.name = n
	return s
}

func (s errorSink) Error(err error, msg string, kv ...any) {
	if loggedErrors.Add(1) <= printedErrors {
		fmt.Fprintf(os.Stderr, "manager error [%s]: %s: %v %v\n", s.name, msg, err, append(slices.Clip(s.values), kv...))
	}
}
