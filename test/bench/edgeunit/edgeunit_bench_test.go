// Package edgeunit_test benchmarks the manager at DESIGN.md's scale on a
// real kube-apiserver and etcd (envtest): 100 EdgeUnits × 5 NodePools × 20
// nodes (10,000 nodes). The real manager binary runs as its own process,
// so its peak RSS is its own. Measured: the NodePool phase (pools created →
// every node carries its pool's keys), the EdgeUnit phase (first unit
// created → every unit's children exist and its status is correct, every
// node labelled into its unit), the manager's writes in each phase and in a
// 60 s steady state afterwards (target 0), and its peak RSS.
//
// Run with `make bench` or
//
//	go test -count=1 -timeout 60m -run '^$' -bench EdgeUnit -benchtime 1x ./test/bench/edgeunit/
//
// BENCH_EDGEUNIT_NODES (default 10000), BENCH_EDGEUNIT_UNITS (100),
// BENCH_EDGEUNIT_CREATORS (16) and BENCH_EDGEUNIT_STEADY (60s) change the
// size for quick runs; the nodes must divide evenly into the units' pools.
// BENCH_EDGEUNIT_MANAGER_ARGS adds flags to the manager's command line and
// BENCH_EDGEUNIT_MANAGER_ENV variables to its environment, for experiments.
package edgeunit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers"
	"github.com/edgeunit/edgeunit/test/bench/benchutil"
)

const (
	poolsPerUnit     = 5
	managerNamespace = controllers.DefaultNamespace
	endpointName     = "tunnel"
	// endpointAddress is what the TunnelEndpoint reports for agents: its
	// spec address at the default agent port.
	endpointAddress = "127.0.0.1:10262"

	pollEvery = 250 * time.Millisecond
	// quietFor is how long the manager must be idle (no queued or running
	// reconcile, no request) for a phase to count as finished.
	quietFor = 2 * time.Second

	// Targets, from DESIGN.md "Performance targets: manager".
	targetUnitsConverge = 60 * time.Second
	targetRSSMiB        = 133
)

var (
	numUnits      = benchutil.EnvInt("BENCH_EDGEUNIT_UNITS", 100)
	numPools      = numUnits * poolsPerUnit
	numNodes      = benchutil.EnvInt("BENCH_EDGEUNIT_NODES", 10000)
	nodesPerPool  = int32(numNodes / max(numPools, 1))
	createWorkers = benchutil.EnvInt("BENCH_EDGEUNIT_CREATORS", 16)
	steadyFor     = benchutil.EnvDuration("BENCH_EDGEUNIT_STEADY", 60*time.Second)

	convergeTimeout = benchutil.EnvDuration("BENCH_EDGEUNIT_TIMEOUT", 5*time.Minute)
)

// controllerNames are the controllers whose reconciles are reported and
// whose start marks the manager as ready.
var controllerNames = []string{"nodepool-node", "nodepool", "edgeunit", "tunnelendpoint", "bindings"}

// mark is the state of the counters at one moment.
type mark struct {
	at       time.Time
	mgr      tally // manager's requests by "METHOD code"
	rec      tally // manager's reconciles by "controller result"
	api      tally // apiserver's writes, every client's
	bench    tally // the bench's own writes, keyed as api
	cpu      benchutil.CPUSample
	hwm, rss float64 // manager, MiB
	heapMiB  float64 // manager's Go heap in use
	work     tally   // manager's reconcile durations by controller (histogram sums and counts)
	apiLat   tally   // kube-apiserver's node PATCH durations
}

// window is what happened between two marks.
type window struct {
	dur                        time.Duration
	mgr                        tally
	writes, conflicts, failed  float64
	rec                        tally
	byResource                 tally // the manager's writes by "VERB resource", apiserver side
	rejected                   tally // the manager's writes answered >= 300, by "VERB resource code"
	work, apiLat               tally
	nodeWrites                 float64
	cpu                        benchutil.CPUUse
	hwmAtEnd, rssAtEnd, heapAt float64
}

func (m mark) since(o mark) window {
	w := window{dur: m.at.Sub(o.at), mgr: m.mgr.sub(o.mgr), rec: m.rec.sub(o.rec), cpu: m.cpu.Since(o.cpu),
		hwmAtEnd: m.hwm, rssAtEnd: m.rss, heapAt: m.heapMiB}
	w.writes, w.conflicts, w.failed = writes(w.mgr)
	w.work, w.apiLat = m.work.sub(o.work), m.apiLat.sub(o.apiLat)
	mgrAPI := m.api.sub(o.api).sub(m.bench.sub(o.bench))
	for k := range mgrAPI {
		// kube-apiserver renews its own identity Lease every 10 s; the
		// manager runs without leader election and writes no Lease.
		if strings.Contains(k, " leases.coordination.k8s.io ") {
			delete(mgrAPI, k)
		}
	}
	w.byResource = byResource(mgrAPI)
	w.rejected = tally{}
	for k, v := range mgrAPI {
		if !strings.HasSuffix(k, " 200") && !strings.HasSuffix(k, " 201") {
			w.rejected[k] = v
		}
	}
	w.nodeWrites = w.byResource["PATCH nodes"] + w.byResource["PUT nodes"] + w.byResource["APPLY nodes"]
	return w
}

type result struct {
	createNodes, poolsCreated, poolsConverge, unitsCreated, unitsConverge time.Duration
	unitsChildren                                                         time.Duration // units' statuses and children alone
	pools, units, steady, all                                             window
	steadyWriteTimes                                                      []time.Duration
	steadyVerified                                                        bool
	loggedErrors                                                          int
	firstErrors                                                           []string
	loadStart, loadEnd                                                    string
}

func BenchmarkEdgeUnit(b *testing.B) {
	if numUnits <= 0 || numNodes <= 0 || numNodes%numPools != 0 {
		b.Fatalf("BENCH_EDGEUNIT_NODES (%d) must be a positive multiple of %d pools (BENCH_EDGEUNIT_UNITS %d × %d)", numNodes, numPools, numUnits, poolsPerUnit)
	}
	if createWorkers < 1 {
		b.Fatalf("BENCH_EDGEUNIT_CREATORS must be positive")
	}
	report(b, benchutil.LastRun(b, run))
}

func run(b *testing.B) result {
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Minute)
	defer cancel()
	r := result{loadStart: benchutil.LoadAverage()}
	dir := b.TempDir()

	// Build the manager while the control plane starts.
	type built struct {
		bin string
		err error
	}
	buildDone := make(chan built, 1)
	go func() {
		bin, err := buildManager(ctx, dir)
		buildDone <- built{bin, err}
	}()
	cfg, _ := benchutil.StartEnv(b) // stopped at the cleanup
	bl := <-buildDone
	if bl.err != nil {
		b.Fatalf("Building the manager: %v", bl.err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(cfg, kubeconfig); err != nil {
		b.Fatalf("Writing a kubeconfig: %v", err)
	}

	bw := &benchWrites{t: tally{}}
	load := newClient(b, cfg, bw)
	verify := newVerifier(ctx, b, cfg)
	if err := load.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}); err != nil {
		b.Fatalf("Creating namespace %s: %v", managerNamespace, err)
	}
	mgr := startManager(ctx, b, bl.bin, kubeconfig, dir)
	defer mgr.stop()
	mk := func() mark { return takeMark(ctx, b, mgr, cfg, bw) }
	start := mk()

	// Nodes, then a quiet manager: node creation is not measured.
	t := time.Now()
	if err := createNodes(ctx, load); err != nil {
		b.Fatalf("Creating nodes: %v", err)
	}
	r.createNodes = time.Since(t)
	waitIdle(ctx, b, mgr)

	// NodePool phase.
	poolsStart := mk()
	t0 := time.Now()
	if err := createAll(ctx, load, numPools, func(i int) client.Object { return desiredPool(i) }); err != nil {
		b.Fatalf("Creating NodePools: %v", err)
	}
	r.poolsCreated = time.Since(t0)
	d, err := waitFor(ctx, verify, poolsConverged(false), t0, convergeTimeout)
	if err != nil {
		b.Fatalf("NodePools did not converge: %v", err)
	}
	r.poolsConverge = d
	waitIdle(ctx, b, mgr)
	r.pools = mk().since(poolsStart)

	// The TunnelEndpoint, ready to be dialled, before the units.
	if err := load.Create(ctx, desiredEndpoint()); err != nil {
		b.Fatalf("Creating the TunnelEndpoint: %v", err)
	}
	if _, err := waitFor(ctx, verify, endpointHasAddress, time.Now(), time.Minute); err != nil {
		b.Fatalf("TunnelEndpoint reports no address: %v", err)
	}
	waitIdle(ctx, b, mgr)

	// EdgeUnit phase: the timed part.
	unitsStart := mk()
	b.StartTimer()
	t0 = time.Now()
	if err := createAll(ctx, load, numUnits, func(i int) client.Object { return desiredUnit(i) }); err != nil {
		b.Fatalf("Creating EdgeUnits: %v", err)
	}
	r.unitsCreated = time.Since(t0)
	// Also note when the units' statuses and children alone were first
	// right: the rest is the nodes' unit label.
	var childrenAt time.Duration
	d, err = waitFor(ctx, verify, func(ctx context.Context, c client.Client) (string, error) {
		if childrenAt == 0 {
			if why, err := unitsAndChildren(ctx, c); why != "" || err != nil {
				return why, err
			}
			childrenAt = time.Since(t0)
		}
		return poolsConverged(true)(ctx, c)
	}, t0, convergeTimeout)
	b.StopTimer()
	r.unitsChildren = childrenAt
	if err != nil {
		b.Fatalf("EdgeUnits did not converge: %v\nmanager log:\n%s", err, mgr.logTail(20))
	}
	r.unitsConverge = d
	converged := mk()
	r.units = converged.since(unitsStart)

	// Steady state from the moment of convergence: nothing changes, so the
	// manager should not write.
	convergedWrites, _, _ := writes(converged.mgr)
	r.steadyWriteTimes = benchutil.SteadyStateWrites(ctx, b, steadyFor, converged.at, convergedWrites, func() float64 {
		s, err := mgr.scrape(ctx)
		if err != nil {
			b.Fatalf("Steady state: %v", err)
		}
		w, _, _ := writes(managerRequests(s))
		return w
	})
	end := mk()
	r.steady = end.since(converged)
	r.all = end.since(start)
	why, err := unitsConverged(ctx, verify)
	r.steadyVerified = benchutil.SteadyStateVerified(b, why, err)
	r.loggedErrors, r.firstErrors = mgr.loggedErrors(10)
	r.loadEnd = benchutil.LoadAverage()
	mgr.stop()
	return r
}

func endpointHasAddress(ctx context.Context, c client.Client) (string, error) {
	te := &edgev1.TunnelEndpoint{}
	if err := c.Get(ctx, client.ObjectKey{Name: endpointName}, te); err != nil {
		return "", err
	}
	for _, a := range te.Status.Addresses {
		if a == endpointAddress {
			return "", nil
		}
	}
	return fmt.Sprintf("addresses %v", te.Status.Addresses), nil
}

func takeMark(ctx context.Context, b *testing.B, m *managerProc, cfg *rest.Config, bw *benchWrites) mark {
	b.Helper()
	s, err := m.scrape(ctx)
	if err != nil {
		b.Fatalf("%v", err)
	}
	as, err := scrapeAPIServer(ctx, cfg)
	if err != nil {
		b.Fatalf("%v", err)
	}
	api := apiserverWrites(as)
	mk := mark{at: time.Now(), mgr: managerRequests(s), rec: reconciles(s), api: api, bench: bw.snapshot(), cpu: benchutil.SampleCPU(),
		heapMiB: s.sum("go_memstats_heap_inuse_bytes", nil) / (1 << 20),
		work:    s.histograms("workqueue_work_duration_seconds", "name"),
		apiLat:  apiserverLatency(as)}
	if mk.hwm, mk.rss, err = m.memory(); err != nil {
		b.Fatalf("Reading the manager's memory: %v", err)
	}
	return mk
}

// waitIdle waits until the manager has no queued or running reconcile and
// made no request for quietFor.
func waitIdle(ctx context.Context, b *testing.B, m *managerProc) {
	b.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var (
		quietSince time.Time
		prev       float64 = -1
	)
	for {
		s, err := m.scrape(ctx)
		if err != nil {
			b.Fatalf("Waiting for the manager to settle: %v", err)
		}
		busy, reqs := queued(s), managerRequests(s).total()
		switch {
		case busy > 0 || reqs != prev:
			quietSince = time.Time{}
		case quietSince.IsZero():
			quietSince = time.Now()
		case time.Since(quietSince) >= quietFor:
			return
		}
		prev = reqs
		select {
		case <-time.After(pollEvery):
		case <-ctx.Done():
			b.Fatalf("The manager did not settle: %v (%.0f reconciles queued or running)", ctx.Err(), busy)
		}
	}
}

func report(b *testing.B, r result) {
	b.ReportMetric(r.unitsConverge.Seconds(), "converge_s")
	b.ReportMetric(r.poolsConverge.Seconds(), "pools_converge_s")
	b.ReportMetric(r.unitsChildren.Seconds(), "units_children_s")
	b.ReportMetric(r.steady.writes, "steady_writes")
	b.ReportMetric(r.steady.hwmAtEnd, "manager_rss_MiB")
	b.ReportMetric(r.units.nodeWrites/float64(numNodes), "writes_per_node")
	b.ReportMetric(r.pools.nodeWrites/float64(numNodes), "pools_writes_per_node")
	b.ReportMetric(r.all.conflicts, "conflicts")

	var sb strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&sb, format+"\n", a...) }
	p("\n=== EdgeUnit benchmark: %d EdgeUnits × %d NodePools × %d nodes = %d nodes; manager (own process) at its default QPS %d / burst %d ===",
		numUnits, poolsPerUnit, nodesPerPool, numNodes, controllers.DefaultQPS, controllers.DefaultBurst)
	p("  machine: %d cores, load average %s at the start, %s at the end; extra manager flags: %q, environment: %q", benchutil.NumCPU(), r.loadStart, r.loadEnd, os.Getenv("BENCH_EDGEUNIT_MANAGER_ARGS"), os.Getenv("BENCH_EDGEUNIT_MANAGER_ENV"))
	p("  nodes created (with Ready status, %d creators)  %7.2f s", createWorkers, r.createNodes.Seconds())
	p("  NodePool phase: %d pools created in %.2f s; all pools Ready and all nodes carrying their pool's keys %.2f s after the first (tail %.2f s)",
		numPools, r.poolsCreated.Seconds(), r.poolsConverge.Seconds(), (r.poolsConverge - r.poolsCreated).Seconds())
	printWindow(p, "NodePool phase (to idle)", r.pools)
	p("  EdgeUnit phase: %d units created in %.2f s; the units' children and statuses verified %.2f s after the first   target <= %.0f s: %s",
		numUnits, r.unitsCreated.Seconds(), r.unitsChildren.Seconds(), targetUnitsConverge.Seconds(), benchutil.Verdict(r.unitsChildren <= targetUnitsConverge))
	p("    and with every node and pool also carrying its unit's keys (a second write to each of the %d nodes) %.2f s after the first   within %.0f s too: %s",
		numNodes, r.unitsConverge.Seconds(), targetUnitsConverge.Seconds(), benchutil.Verdict(r.unitsConverge <= targetUnitsConverge))
	printWindow(p, "EdgeUnit phase (to verified)", r.units)
	p("  steady state (%s from convergence): %.0f writes, at %v; state still verified: %t   target 0: %s",
		steadyFor, r.steady.writes, r.steadyWriteTimes, r.steadyVerified, benchutil.Verdict(r.steady.writes == 0))
	printWindow(p, "steady state", r.steady)
	p("  node writes per node: %.3f in the NodePool phase, %.3f in the EdgeUnit phase   target <= 1 each: %s",
		r.pools.nodeWrites/float64(numNodes), r.units.nodeWrites/float64(numNodes),
		benchutil.Verdict(r.pools.nodeWrites <= float64(numNodes) && r.units.nodeWrites <= float64(numNodes)))
	p("  409 conflicts (whole run): %.0f   target 0: %s; other failed requests: %.0f; errors in the manager's log: %d",
		r.all.conflicts, benchutil.Verdict(r.all.conflicts == 0), r.all.failed, r.loggedErrors)
	failedReqs := tally{}
	for k, v := range r.all.mgr {
		if code := k[strings.LastIndexByte(k, ' ')+1:]; !strings.HasPrefix(code, "2") {
			failedReqs[k] = v
		}
	}
	p("    manager requests not answered 2xx (whole run, by method and code): %s", failedReqs)
	for _, e := range r.firstErrors {
		p("    %s", e)
	}
	p("  manager peak RSS (VmHWM) %.1f MiB   target <= %d MiB: %s; RSS at the end %.1f MiB, Go heap in use %.1f MiB; VmHWM after the NodePool phase %.1f MiB, after the EdgeUnit phase %.1f MiB",
		r.steady.hwmAtEnd, targetRSSMiB, benchutil.Verdict(r.steady.hwmAtEnd <= targetRSSMiB), r.steady.rssAtEnd, r.steady.heapAt, r.pools.hwmAtEnd, r.units.hwmAtEnd)
	fmt.Print(sb.String())
}

func printWindow(p func(string, ...any), name string, w window) {
	p("    %s, %.1f s: manager writes %.0f (409 %.0f, failed %.0f); requests by method and code: %s", name, w.dur.Seconds(), w.writes, w.conflicts, w.failed, w.mgr)
	p("    %s: manager writes by resource (kube-apiserver's count less the bench's): %s", name, w.byResource)
	p("    %s: manager writes kube-apiserver refused: %s", name, w.rejected)
	p("    %s: reconciles: %s", name, w.rec)
	p("    %s: manager's mean reconcile time by controller: %s; kube-apiserver's mean node PATCH time: %s", name, means(w.work), means(w.apiLat))
	p("    %s: CPU in cores: manager %.2f, kube-apiserver %.2f, etcd %.2f, bench clients %.2f; whole machine %.2f of %d busy",
		name, w.cpu.Children["manager"], w.cpu.Children["kube-apiserver"], w.cpu.Children["etcd"], w.cpu.Self, w.cpu.Machine, benchutil.NumCPU())
}
