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

	"github.com/edgeunit/edgeunit/test/bench/benchutil"
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
		out[name] = benchutil.SubCounts(rs, o[name])
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
	return benchutil.EachSample(fams, family, fn)
}

// loggedErrors counts errors the manager logged (reconcile errors among
// them); the first few are printed.
var loggedErrors atomic.Int64

const printedErrors = 20

// newErrorLogger returns a logger that drops info messages and prints the
// first errors, so the benchmark output stays readable.
func newErrorLogger() logr.Logger {
	return logr.New(benchutil.LogSink{OnError: func(name string, err error, msg string, kv []any) {
		if loggedErrors.Add(1) <= printedErrors {
			fmt.Fprintf(os.Stderr, "manager error [%s]: %s: %v %v\n", name, msg, err, kv)
		}
	}})
}
