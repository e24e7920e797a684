package unitdeployment_test

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/edgeunit/edgeunit/test/bench/benchutil"
)

// controllerName is the name the UnitDeployment controller registers.
const controllerName = "unitdeployment"

// tally counts by key.
type tally map[string]int

func (t tally) sub(o tally) tally { return benchutil.SubCounts(t, o) }
func (t tally) total() int        { return benchutil.SumCounts(t, nil) }

// sum adds the entries whose key satisfies keep.
func (t tally) sum(keep func(string) bool) int { return benchutil.SumCounts(t, keep) }

func (t tally) String() string { return benchutil.FormatCounts(t, "%s: %d") }

// writeCounter counts the requests of the manager's client (its cache, its
// writes and its event recorder share one rest.Config) by "verb resource
// code", writes and reads alike.
type writeCounter struct {
	mu     sync.Mutex
	all    tally
	writes tally
}

func newWriteCounter() *writeCounter { return &writeCounter{all: tally{}, writes: tally{}} }

// wrap is a rest.Config.WrapTransport.
func (w *writeCounter) wrap(next http.RoundTripper) http.RoundTripper {
	return benchutil.WrapTransport(func(r benchutil.Request, status int, err error, _ []byte) {
		res := r.Resource
		if r.Sub != "" {
			res += "/" + r.Sub
		}
		code := strconv.Itoa(status)
		if err != nil {
			code = "<error>"
		}
		key := r.Verb + " " + res + " " + code
		w.mu.Lock()
		defer w.mu.Unlock()
		w.all[key]++
		if r.Write {
			w.writes[key]++
		}
	})(next)
}

// counts is a snapshot of a writeCounter.
type counts struct{ all, writes tally }

func (w *writeCounter) snapshot() counts {
	w.mu.Lock()
	defer w.mu.Unlock()
	return counts{all: maps.Clone(w.all), writes: maps.Clone(w.writes)}
}

// window is what the manager's client did between two snapshots.
type window struct {
	all, writes tally
}

func (c counts) since(o counts) window {
	return window{all: c.all.sub(o.all), writes: c.writes.sub(o.writes)}
}

func (w window) total() int { return w.writes.total() }

// of counts the writes to one resource ("deployments",
// "unitdeployments/status", "events").
func (w window) of(resource string) int {
	return w.writes.sum(func(k string) bool { return strings.Fields(k)[1] == resource })
}

func (w window) conflicts() int {
	return w.all.sum(func(k string) bool { return strings.HasSuffix(k, " 409") })
}

// failed counts requests answered neither 2xx nor 409, or not at all.
func (w window) failed() int {
	return w.all.sum(func(k string) bool {
		code := k[strings.LastIndexByte(k, ' ')+1:]
		return code != "409" && !strings.HasPrefix(code, "2")
	})
}

// reconcileCounts reads controller_runtime_reconcile_total of the
// UnitDeployment controller by result from controller-runtime's registry.
func reconcileCounts() tally {
	out := tally{}
	forEachMetric("controller_runtime_reconcile_total", func(l map[string]string, m *dto.Metric) {
		if l["controller"] == controllerName && m.Counter != nil {
			out[l["result"]] += int(m.Counter.GetValue())
		}
	})
	return out
}

// reconcileTime is the sum (seconds) and count of the UnitDeployment
// controller's controller_runtime_reconcile_time_seconds.
func reconcileTime() (sum float64, n uint64) {
	forEachMetric("controller_runtime_reconcile_time_seconds", func(l map[string]string, m *dto.Metric) {
		if l["controller"] == controllerName && m.Histogram != nil {
			sum += m.Histogram.GetSampleSum()
			n += m.Histogram.GetSampleCount()
		}
	})
	return sum, n
}

// controllerBusy is the UnitDeployment controller's queued plus running
// reconciles. Its priority queue reports a depth only once something was
// queued, so only the workers' gauge must exist.
func controllerBusy() (int, error) {
	var n float64
	forEachMetric("workqueue_depth", func(l map[string]string, m *dto.Metric) {
		if l["name"] == controllerName && m.Gauge != nil {
			n += m.Gauge.GetValue()
		}
	})
	ok := forEachMetric("controller_runtime_active_workers", func(l map[string]string, m *dto.Metric) {
		if l["controller"] == controllerName && m.Gauge != nil {
			n += m.Gauge.GetValue()
		}
	})
	if !ok {
		return 0, fmt.Errorf("controller-runtime metric controller_runtime_active_workers not found (last gather error: %v)", gatherErr.Load())
	}
	return int(n), nil
}

// gatherErr is the last error of gathering controller-runtime's metrics.
var gatherErr atomic.Value // string

// forEachMetric calls fn for each sample of the named family and reports
// whether the family exists.
func forEachMetric(family string, fn func(labels map[string]string, m *dto.Metric)) bool {
	// Gather returns what it could gather with its error.
	fams, err := metrics.Registry.Gather()
	if err != nil {
		gatherErr.Store(err.Error())
	}
	return benchutil.EachSample(fams, family, fn)
}

// logRecorder keeps the manager's recent log lines (to V(2), where the
// controller logs each instance it applies) for a failure report, counts
// its errors and notices when the controller started its workers.
type logRecorder struct {
	mu      sync.Mutex
	lines   []string // ring of the last maxLines
	next    int
	errors  int
	started chan struct{}
	once    sync.Once
}

const (
	maxLines      = 400
	printedErrors = 10
)

func newLogRecorder() *logRecorder { return &logRecorder{started: make(chan struct{})} }

func (r *logRecorder) add(line string, isErr bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if isErr {
		r.errors++
		if r.errors <= printedErrors {
			fmt.Fprintln(os.Stderr, "manager error: "+line)
		}
	}
	if len(r.lines) < maxLines {
		r.lines = append(r.lines, line)
		return
	}
	r.lines[r.next] = line
	r.next = (r.next + 1) % maxLines
}

// tail returns the last n lines.
func (r *logRecorder) tail(n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ordered := append(slices.Clone(r.lines[r.next:]), r.lines[:r.next]...)
	if len(ordered) > n {
		ordered = ordered[len(ordered)-n:]
	}
	return strings.Join(ordered, "\n")
}

func (r *logRecorder) errorCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errors
}

// currentLogs is the logRecorder of the running scenario: controller-runtime
// takes one logger per process.
var currentLogs atomic.Pointer[logRecorder]

// newLogger returns a logger into currentLogs, to V(2).
func newLogger() logr.Logger {
	return logr.New(benchutil.LogSink{
		MaxLevel: 2,
		OnInfo: func(name string, level int, msg string, kv []any) {
			rec := currentLogs.Load()
			if rec == nil {
				return
			}
			if msg == "Starting workers" && hasValue(kv, "controller", controllerName) {
				rec.once.Do(func() { close(rec.started) })
			}
			rec.add(logLine(name, fmt.Sprintf("V(%d)", level), msg, nil, kv), false)
		},
		OnError: func(name string, err error, msg string, kv []any) {
			if rec := currentLogs.Load(); rec != nil {
				rec.add(logLine(name, "ERROR", msg, err, kv), true)
			}
		},
	})
}

// logLine formats one message of the logger name.
func logLine(name, level, msg string, err error, kv []any) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s [%s] %q", time.Now().Format("15:04:05.000"), level, name, msg)
	if err != nil {
		fmt.Fprintf(&sb, " error=%q", err.Error())
	}
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&sb, " %v=%v", kv[i], kv[i+1])
	}
	return sb.String()
}

func hasValue(kv []any, key, value string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if k, ok := kv[i].(string); ok && k == key && fmt.Sprint(kv[i+1]) == value {
			return true
		}
	}
	return false
}
