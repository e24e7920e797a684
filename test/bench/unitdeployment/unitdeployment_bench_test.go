// Package unitdeployment_test benchmarks the UnitDeployment controller on a
// real kube-apiserver and etcd (envtest): one UnitDeployment over 100
// EdgeUnits (one Node each), 10 of them overridden to 2 replicas, rolled out
// 10 units at a time. The controller runs in-process in a manager of its
// own, whose client counts its requests. envtest has no Deployment
// controller, so a simulator in the bench plays it: it reports a new
// generation observed at once and its rollout done a fixed delay later.
//
// Measured: the create phase (UnitDeployment created → every instance
// exists and the status counts them at the current generation, then every
// unit ready), the rollout phase (template changed → every unit runs the
// new revision, ready, Progressing=False RolledOut), the most units
// updating at once during the rollout (sampled at every Deployment change
// the watch delivers; fails above maxUnavailableUnits), the controller's
// writes per instance in each phase, and its writes in a steady state
// afterwards (fails unless 0).
//
// Run with `make bench` or
//
//	KUBEBUILDER_ASSETS=$PWD/bin/k8s go test -tags e2e -count=1 -timeout 30m -run '^$' -bench UnitDeployment -benchtime 1x ./test/bench/unitdeployment/
//
// BENCH_UD_UNITS (default 100), BENCH_UD_OVERRIDDEN (a tenth of the units),
// BENCH_UD_MAX_UNAVAILABLE (10), BENCH_UD_DELAY (the simulated rollout of
// one instance, 200ms), BENCH_UD_STEADY (30s) and BENCH_UD_TIMEOUT (per
// phase, 5m) change the scenario; BENCH_UD_UNITS=20 BENCH_UD_STEADY=5s is a
// quick run. BENCH_UD_TRACE=1 prints every instance change of the create
// and rollout phases, as the watch delivered them.
package unitdeployment_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers"
	"github.com/edgeunit/edgeunit/controllers/unitdeployment"
	"github.com/edgeunit/edgeunit/test/bench/benchutil"
)

var (
	numUnits       = benchutil.EnvInt("BENCH_UD_UNITS", 100)
	numOverridden  = benchutil.EnvInt("BENCH_UD_OVERRIDDEN", max(numUnits/10, 1))
	maxUnavailable = benchutil.EnvInt("BENCH_UD_MAX_UNAVAILABLE", 10)
	simDelay       = benchutil.EnvDuration("BENCH_UD_DELAY", 200*time.Millisecond)
	steadyFor      = benchutil.EnvDuration("BENCH_UD_STEADY", 30*time.Second)
	// trace prints every instance change of the create and rollout phases.
	trace        = os.Getenv("BENCH_UD_TRACE") != ""
	phaseTimeout = benchutil.EnvDuration("BENCH_UD_TIMEOUT", 5*time.Minute)
)

const (
	namespace = "bench-ud"
	udName    = "app"
	container = "app"
	envName   = "APP_VERSION"

	// Every unit carries labelTier (the UnitDeployment selects on it);
	// the overridden ones carry labelSize=large.
	labelTier = "example.com/tier"
	labelSize = "example.com/size"

	overriddenReplicas = 2

	createWorkers = 16
	simWorkers    = 16

	pollEvery = 100 * time.Millisecond
	// quietFor is how long the controller and the simulator must be idle
	// (no queued or running reconcile, no write, no instance changing) for
	// a phase to count as settled.
	quietFor      = 2 * time.Second
	settleTimeout = 2 * time.Minute

	// targetCreate is DESIGN.md's bound for 100 EdgeUnits' children and
	// statuses, taken as a reference for 100 instances and their status.
	targetCreate = 60 * time.Second
)

// version is what the instances' pod template says at one revision.
type version struct{ image, env string }

var (
	v1 = version{image: "registry.example.com/edge/app:1.0", env: "1"}
	v2 = version{image: "registry.example.com/edge/app:1.1", env: "2"}
)

// phase is what one phase measured.
type phase struct {
	verified time.Duration // start → instances exist and the status counts them
	ready    time.Duration // start → every unit ready (rollout: rolled out)
	settled  time.Duration // start → controller and simulator idle
	toReady  window        // the controller's requests from start to ready
	all      window        // from start to settled
	rec      tally         // reconciles by result, start to settled
	recTime  time.Duration // the reconciles' total duration
	track    phaseFigures
	sim      int64 // the simulator's status writes
}

type result struct {
	setup            time.Duration
	create, rollout  phase
	steady           window
	steadyRec        tally
	steadyWriteTimes []time.Duration
	steadyVerified   bool
	steadyTrack      phaseFigures
	revisions        [2]string
	loggedErrors     int
	simConflicts     int64
	simFailures      int64
	loadStart        string
	loadEnd          string
}

var setLoggerOnce sync.Once

func BenchmarkUnitDeployment(b *testing.B) {
	if numUnits < 1 || numOverridden < 0 || numOverridden > numUnits || maxUnavailable < 1 {
		b.Fatalf("BENCH_UD_UNITS (%d) must be positive, BENCH_UD_OVERRIDDEN (%d) at most the units, BENCH_UD_MAX_UNAVAILABLE (%d) positive",
			numUnits, numOverridden, maxUnavailable)
	}
	setLoggerOnce.Do(func() { ctrl.SetLogger(newLogger()) })
	report(b, benchutil.LastRun(b, run))
}

func run(b *testing.B) result {
	ctx, cancel := context.WithTimeout(b.Context(), 3*time.Minute+4*phaseTimeout+3*settleTimeout+steadyFor)
	defer cancel()
	r := result{loadStart: benchutil.LoadAverage()}
	logs := newLogRecorder()
	currentLogs.Store(logs)

	cfg, teardown := benchutil.StartEnv(b)
	defer teardown.Run()

	load := benchutil.NewClient(b, cfg)
	verify := benchutil.NewClient(b, cfg)

	t := time.Now()
	if err := createFixtures(ctx, load); err != nil {
		b.Fatalf("Creating the units, nodes and namespace: %v", err)
	}
	r.setup = time.Since(t)

	tr := newTracker()
	sim := newSimulator(benchutil.NewClient(b, cfg), simDelay, tr)
	stopSim, err := sim.start(ctx, benchutil.Unthrottled(cfg), namespace, simWorkers)
	if err != nil {
		b.Fatalf("Starting the Deployment simulator: %v", err)
	}
	teardown.Add(stopSim)

	wc := newWriteCounter()
	teardown.Add(startManager(ctx, b, cfg, wc, logs))
	if _, err := settle(ctx, wc, tr, sim, time.Now()); err != nil {
		b.Fatalf("The controller did not settle after starting: %v", err)
	}
	fail := func(what string, err error) {
		b.Helper()
		b.Fatalf("%s: %v\n%s\ncontroller log (last 40 lines):\n%s\ninstance changes this phase (last 40):\n%s",
			what, err, describe(ctx, verify), logs.tail(40), strings.Join(lastN(tr.figures().events, 40), "\n"))
	}

	// Create phase.
	ud := desiredUnitDeployment()
	r.create = measure(ctx, b, verify, wc, tr, sim, fail, "create", func() error {
		return load.Create(ctx, ud)
	}, expect{version: v1}, expect{version: v1, ready: true})
	r.revisions[0] = unitdeployment.Revision(&ud.Spec)

	// Rollout phase: a new image and environment for every unit.
	r.rollout = measure(ctx, b, verify, wc, tr, sim, fail, "rollout", func() error {
		cur := &edgev1.UnitDeployment{}
		if err := load.Get(ctx, client.ObjectKeyFromObject(ud), cur); err != nil {
			return err
		}
		before := cur.DeepCopy()
		setVersion(&cur.Spec.Template.Spec.Template.Spec, v2)
		r.revisions[1] = unitdeployment.Revision(&cur.Spec)
		return load.Patch(ctx, cur, client.MergeFrom(before))
	}, expect{version: v2}, expect{version: v2, ready: true, rolledOut: true})
	if r.revisions[0] == r.revisions[1] {
		b.Fatalf("The rollout did not change the revision (%s)", r.revisions[0])
	}

	// Steady state: nothing changes, so the controller should not write.
	tr.startPhase()
	steadyStart, s0, rec0 := time.Now(), wc.snapshot(), reconcileCounts()
	r.steadyWriteTimes = benchutil.SteadyStateWrites(ctx, b, steadyFor, steadyStart, s0.writes.total(), func() int {
		return wc.snapshot().writes.total()
	})
	r.steady = wc.snapshot().since(s0)
	r.steadyRec = reconcileCounts().sub(rec0)
	r.steadyTrack = tr.figures()
	why, err := check(ctx, verify, expect{version: v2, ready: true, rolledOut: true})
	r.steadyVerified = benchutil.SteadyStateVerified(b, why, err)
	r.loggedErrors = logs.errorCount()
	r.simConflicts, r.simFailures = sim.conflicts.Load(), sim.failures.Load()
	if err := sim.err(); err != nil {
		b.Errorf("The Deployment simulator failed: %v", err)
	}
	r.loadEnd = benchutil.LoadAverage()

	if r.rollout.track.max > maxUnavailable {
		b.Errorf("The rollout had %d units updating at once (%v, %.3f s into the rollout), more than maxUnavailableUnits %d; instance changes:\n%s",
			r.rollout.track.max, r.rollout.track.maxUnits, r.rollout.track.maxAfter.Seconds(), maxUnavailable,
			strings.Join(lastN(r.rollout.track.events, 120), "\n"))
	}
	if n := r.steady.total(); n != 0 {
		b.Errorf("The controller wrote %d times in the steady state: %s\ncontroller log (last 40 lines):\n%s", n, r.steady.writes, logs.tail(40))
	}
	teardown.Run()
	return r
}

// measure runs one phase: start, then waits until check(verified) and
// check(ready) pass, then until everything settled.
func measure(ctx context.Context, b *testing.B, verify client.Client, wc *writeCounter, tr *tracker, sim *simulator, fail func(string, error),
	name string, start func() error, verified, ready expect) phase {
	b.Helper()
	var p phase
	c0, rec0, sim0 := wc.snapshot(), reconcileCounts(), sim.writes.Load()
	rt0, _ := reconcileTime()
	tr.startPhase()
	b.StartTimer()
	t0 := time.Now()
	if err := start(); err != nil {
		b.Fatalf("Starting the %s phase: %v", name, err)
	}
	var err error
	if p.verified, err = waitFor(ctx, t0, func(ctx context.Context) (string, error) { return check(ctx, verify, verified) }); err != nil {
		b.StopTimer()
		fail(fmt.Sprintf("%s: the instances and status were not right in time", name), err)
	}
	if p.ready, err = waitFor(ctx, t0, func(ctx context.Context) (string, error) { return check(ctx, verify, ready) }); err != nil {
		b.StopTimer()
		fail(fmt.Sprintf("%s: the units were not ready in time", name), err)
	}
	b.StopTimer()
	p.toReady = wc.snapshot().since(c0)
	if p.settled, err = settle(ctx, wc, tr, sim, t0); err != nil {
		fail(fmt.Sprintf("%s: the controller did not settle", name), err)
	}
	p.all = wc.snapshot().since(c0)
	p.rec = reconcileCounts().sub(rec0)
	rt1, _ := reconcileTime()
	p.recTime = time.Duration((rt1 - rt0) * float64(time.Second))
	p.track = tr.figures()
	p.sim = sim.writes.Load() - sim0
	return p
}

// waitFor polls cond every pollEvery until it passes or phaseTimeout ends,
// and returns the time from t0 to the poll that passed.
func waitFor(ctx context.Context, t0 time.Time, cond func(context.Context) (string, error)) (time.Duration, error) {
	last := "not checked yet"
	var at time.Duration
	err := wait.PollUntilContextTimeout(ctx, pollEvery, phaseTimeout, true, func(ctx context.Context) (bool, error) {
		why, err := cond(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			last = err.Error()
		case err != nil:
		case why != "":
			last = why
		default:
			at = time.Since(t0)
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return 0, fmt.Errorf("after %s: %s", time.Since(t0).Round(time.Millisecond), last)
	}
	return at, nil
}

// settle waits until the controller has no queued or running reconcile,
// wrote nothing, and no instance changed for quietFor, and returns the
// time from t0 to the last of these.
func settle(ctx context.Context, wc *writeCounter, tr *tracker, sim *simulator, t0 time.Time) (time.Duration, error) {
	quietSince := time.Now()
	prev := -1
	var busy int
	err := wait.PollUntilContextTimeout(ctx, pollEvery, settleTimeout, true, func(context.Context) (bool, error) {
		var err error
		if busy, err = controllerBusy(); err != nil {
			return false, err
		}
		w := wc.snapshot().writes.total()
		if busy > 0 || w != prev || tr.updating() > 0 || sim.q.Len() > 0 || time.Since(tr.lastChanged()) < quietFor {
			quietSince, prev = time.Now(), w
			return false, nil
		}
		return time.Since(quietSince) >= quietFor, nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w (%d reconciles queued or running, %d instances updating)", err, busy, tr.updating())
	}
	return quietSince.Sub(t0), nil
}

// expect is what check verifies.
type expect struct {
	version version
	// ready: every unit ready and Ready=True.
	ready bool
	// rolledOut: also every instance complete, Available=True and
	// Progressing=False RolledOut.
	rolledOut bool
}

// check says what is not as expected yet ("" when all is): the status at
// the current generation and revision, counting every unit, and every
// unit's instance rendered from that revision, with its override.
func check(ctx context.Context, c client.Client, e expect) (string, error) {
	ud := &edgev1.UnitDeployment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: udName}, ud); err != nil {
		return "", fmt.Errorf("getting the UnitDeployment: %w", err)
	}
	st := ud.Status
	rev := unitdeployment.Revision(&ud.Spec)
	n := int32(numUnits)
	switch {
	case st.ObservedGeneration != ud.Generation:
		return fmt.Sprintf("status.observedGeneration %d, generation %d", st.ObservedGeneration, ud.Generation), nil
	case st.UpdateRevision != rev:
		return fmt.Sprintf("status.updateRevision %q, want %q", st.UpdateRevision, rev), nil
	case st.Units != n || st.UpdatedUnits != n || len(st.Instances) != numUnits:
		return fmt.Sprintf("status units %d, updatedUnits %d, %d instances listed; want %d", st.Units, st.UpdatedUnits, len(st.Instances), n), nil
	}
	for _, is := range st.Instances {
		if is.Revision != rev || is.Replicas != wantReplicas(is.Unit) || is.Nodes != 1 {
			return fmt.Sprintf("status.instances %s: revision %q replicas %d nodes %d; want %q, %d, 1", is.Unit, is.Revision, is.Replicas, is.Nodes, rev, wantReplicas(is.Unit)), nil
		}
	}
	if e.ready {
		if st.ReadyUnits != n {
			return fmt.Sprintf("status.readyUnits %d of %d", st.ReadyUnits, n), nil
		}
		if why := condition(st.Conditions, edgev1.ConditionReady, metav1.ConditionTrue, ""); why != "" {
			return why, nil
		}
	}
	if e.rolledOut {
		if why := condition(st.Conditions, edgev1.ConditionProgressing, metav1.ConditionFalse, edgev1.ReasonRolledOut); why != "" {
			return why, nil
		}
		if why := condition(st.Conditions, edgev1.ConditionAvailable, metav1.ConditionTrue, ""); why != "" {
			return why, nil
		}
	}

	var list appsv1.DeploymentList
	if err := c.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{edgev1.LabelUnitDeployment: udName}); err != nil {
		return "", fmt.Errorf("listing instances: %w", err)
	}
	if len(list.Items) != numUnits {
		return fmt.Sprintf("%d of %d instances exist", len(list.Items), numUnits), nil
	}
	for i := range list.Items {
		d := &list.Items[i]
		unit := d.Labels[edgev1.LabelUnit]
		if why := instanceProblem(d, ud, unit, rev, e); why != "" {
			return fmt.Sprintf("instance %s: %s", d.Name, why), nil
		}
	}
	return "", nil
}

func instanceProblem(d *appsv1.Deployment, ud *edgev1.UnitDeployment, unit, rev string, e expect) string {
	if d.Name != udName+"-"+unit {
		return fmt.Sprintf("unit label %q", unit)
	}
	if !metav1.IsControlledBy(d, ud) {
		return "not controlled by the UnitDeployment"
	}
	if got := d.Annotations[edgev1.AnnotationRevision]; got != rev {
		return fmt.Sprintf("revision %q, want %q", got, rev)
	}
	if got := ptr.Deref(d.Spec.Replicas, 1); got != wantReplicas(unit) {
		return fmt.Sprintf("replicas %d, want %d", got, wantReplicas(unit))
	}
	pod := d.Spec.Template.Spec
	if got := pod.NodeSelector[edgev1.LabelUnit]; got != unit {
		return fmt.Sprintf("node selector %s=%q", edgev1.LabelUnit, got)
	}
	i := slices.IndexFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == container })
	if i < 0 {
		return "no container " + container
	}
	c := pod.Containers[i]
	j := slices.IndexFunc(c.Env, func(v corev1.EnvVar) bool { return v.Name == envName })
	if c.Image != e.version.image || j < 0 || c.Env[j].Value != e.version.env {
		return fmt.Sprintf("image %q env %v, want %q and %s=%s", c.Image, c.Env, e.version.image, envName, e.version.env)
	}
	if e.rolledOut && !complete(d) {
		return fmt.Sprintf("rollout not complete: generation %d, status %+v", d.Generation, d.Status)
	}
	return ""
}

func condition(conds []metav1.Condition, typ string, status metav1.ConditionStatus, reason string) string {
	c := meta.FindStatusCondition(conds, typ)
	switch {
	case c == nil:
		return "no " + typ + " condition"
	case c.Status != status || reason != "" && c.Reason != reason:
		return fmt.Sprintf("%s=%s %s: %s", typ, c.Status, c.Reason, c.Message)
	}
	return ""
}

// describe summarises the UnitDeployment's status and its instances for a
// failure report.
func describe(ctx context.Context, c client.Client) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ud := &edgev1.UnitDeployment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: udName}, ud); err != nil {
		return fmt.Sprintf("getting the UnitDeployment: %v", err)
	}
	st := ud.Status
	var sb strings.Builder
	fmt.Fprintf(&sb, "UnitDeployment generation %d, observedGeneration %d, updateRevision %s (spec's %s), units %d, updatedUnits %d, readyUnits %d, instances listed %d\n",
		ud.Generation, st.ObservedGeneration, st.UpdateRevision, unitdeployment.Revision(&ud.Spec), st.Units, st.UpdatedUnits, st.ReadyUnits, len(st.Instances))
	for _, cd := range st.Conditions {
		fmt.Fprintf(&sb, "  %s=%s %s (observedGeneration %d): %s\n", cd.Type, cd.Status, cd.Reason, cd.ObservedGeneration, cd.Message)
	}
	var list appsv1.DeploymentList
	if err := c.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{edgev1.LabelUnitDeployment: udName}); err != nil {
		fmt.Fprintf(&sb, "listing instances: %v", err)
		return sb.String()
	}
	byRev, incomplete := map[string]int{}, []string{}
	for i := range list.Items {
		d := &list.Items[i]
		byRev[d.Annotations[edgev1.AnnotationRevision]]++
		if !complete(d) {
			incomplete = append(incomplete, fmt.Sprintf("%s (gen %d, %+v)", d.Name, d.Generation, d.Status))
		}
	}
	fmt.Fprintf(&sb, "  %d instances, by revision %v; not complete: %d %v", len(list.Items), byRev, len(incomplete), lastN(incomplete, 5))
	return sb.String()
}

// startManager runs a manager with only the UnitDeployment controller,
// configured as controllers.NewManager configures it (client QPS and
// burst, workers, its Deployment cache, managed fields stripped), its
// client counted by wc; it returns once the controller started its
// workers. The returned stop is idempotent.
func startManager(ctx context.Context, b *testing.B, cfg *rest.Config, wc *writeCounter, logs *logRecorder) func() {
	b.Helper()
	mcfg := rest.CopyConfig(cfg)
	mcfg.QPS, mcfg.Burst = controllers.DefaultQPS, controllers.DefaultBurst
	mcfg.WrapTransport = wc.wrap
	mgr, err := ctrl.NewManager(mcfg, ctrl.Options{
		Scheme:                 controllers.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{
			ByObject: map[client.Object]cache.ByObject{
				&appsv1.Deployment{}: {Label: unitdeployment.InstanceSelector()},
			},
			DefaultTransform: cache.TransformStripManagedFields(),
		},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		b.Fatalf("Creating the manager: %v", err)
	}
	mctx, cancel := context.WithCancel(ctx)
	if err := unitdeployment.SetupWithManager(mctx, mgr, controller.Options{
		MaxConcurrentReconciles: controllers.DefaultConcurrency, CacheSyncTimeout: 2 * time.Minute,
	}); err != nil {
		cancel()
		b.Fatalf("Setting up the UnitDeployment controller: %v", err)
	}
	exited := make(chan struct{})
	var startErr error
	go func() {
		defer close(exited)
		startErr = mgr.Start(mctx)
	}()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case <-exited:
			if startErr != nil && !errors.Is(startErr, context.Canceled) {
				b.Logf("Manager exited: %v", startErr)
			}
		case <-time.After(30 * time.Second):
			b.Logf("Manager did not stop within 30s")
		}
	})
	select {
	case <-logs.started:
		return stop
	case <-exited:
		b.Fatalf("The manager exited while starting: %v\n%s", startErr, logs.tail(20))
	case <-time.After(2 * time.Minute):
		stop()
		b.Fatalf("The UnitDeployment controller did not start its workers within 2 minutes\n%s", logs.tail(20))
	}
	return stop
}

func unitName(i int) string { return fmt.Sprintf("unit-%03d", i) }
func poolName(i int) string { return fmt.Sprintf("pool-%03d", i) }
func nodeName(i int) string { return fmt.Sprintf("edge-node-%03d", i) }

// wantReplicas is the replicas of a unit's instance: the override's for
// the first numOverridden units.
func wantReplicas(unit string) int32 {
	var i int
	if _, err := fmt.Sscanf(unit, "unit-%d", &i); err == nil && i < numOverridden {
		return overriddenReplicas
	}
	return 1
}

// createFixtures creates the namespace, a NodePool (with a taint) and an
// EdgeUnit per unit, and one Ready Node per unit labelled into it.
func createFixtures(ctx context.Context, c client.Client) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", namespace, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(createWorkers)
	for i := range numUnits {
		g.Go(func() error {
			if err := c.Create(gctx, benchutil.Pool(poolName(i))); err != nil {
				return fmt.Errorf("creating NodePool %s: %w", poolName(i), err)
			}
			size := "small"
			if i < numOverridden {
				size = "large"
			}
			u := &edgev1.EdgeUnit{
				ObjectMeta: metav1.ObjectMeta{Name: unitName(i), Labels: map[string]string{labelTier: "edge", labelSize: size}},
				Spec:       edgev1.EdgeUnitSpec{NodePools: []string{poolName(i)}},
			}
			if err := c.Create(gctx, u); err != nil {
				return fmt.Errorf("creating EdgeUnit %s: %w", u.Name, err)
			}
			if err := benchutil.CreateNode(gctx, c, nodeName(i), poolName(i), i); err != nil {
				return err
			}
			// The EdgeUnit controller would label the node into its unit;
			// it does not run here.
			patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, edgev1.LabelUnit, unitName(i))
			if err := c.Patch(gctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName(i)}}, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
				return fmt.Errorf("labelling node %s into %s: %w", nodeName(i), unitName(i), err)
			}
			return nil
		})
	}
	return g.Wait()
}

// desiredUnitDeployment selects every unit by label, overrides the
// replicas of the large ones and rolls out maxUnavailable units at a time.
func desiredUnitDeployment() *edgev1.UnitDeployment {
	ud := &edgev1.UnitDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: udName, Namespace: namespace},
		Spec: edgev1.UnitDeploymentSpec{
			Units: edgev1.UnitSelector{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{labelTier: "edge"}}},
			Template: edgev1.InstanceTemplate{
				Metadata: edgev1.InstanceMetadata{Labels: map[string]string{"app.kubernetes.io/name": udName}},
				Spec: edgev1.InstanceSpec{
					Replicas: ptr.To[int32](1),
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": udName}},
						Spec: corev1.PodSpec{
							AutomountServiceAccountToken: ptr.To(false),
							Containers:                   []corev1.Container{{Name: container}},
						},
					},
				},
			},
			Overrides: []edgev1.UnitOverride{{
				Units:    edgev1.UnitSelector{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{labelSize: "large"}}},
				Replicas: ptr.To[int32](overriddenReplicas),
			}},
			Rollout: edgev1.UnitRolloutSpec{MaxUnavailableUnits: int32(maxUnavailable)},
		},
	}
	setVersion(&ud.Spec.Template.Spec.Template.Spec, v1)
	return ud
}

func setVersion(pod *corev1.PodSpec, v version) {
	c := &pod.Containers[0]
	c.Image = v.image
	c.Env = []corev1.EnvVar{{Name: envName, Value: v.env}}
}

func report(b *testing.B, r result) {
	perInstance := func(w window) float64 { return float64(w.total()) / float64(numUnits) }
	b.ReportMetric(r.create.verified.Seconds(), "create_s")
	b.ReportMetric(r.create.ready.Seconds(), "create_ready_s")
	b.ReportMetric(r.rollout.ready.Seconds(), "rollout_s")
	b.ReportMetric(perInstance(r.create.all), "writes_per_instance_create")
	b.ReportMetric(perInstance(r.rollout.all), "writes_per_instance_rollout")
	b.ReportMetric(float64(r.steady.total()), "steady_writes")
	b.ReportMetric(float64(r.rollout.track.max), "max_units_updating")
	b.ReportMetric(r.rollout.track.mean, "mean_units_updating")

	waves := int(math.Ceil(float64(numUnits) / float64(maxUnavailable)))
	ideal := time.Duration(waves) * simDelay
	conflicts := r.create.all.conflicts() + r.rollout.all.conflicts() + r.steady.conflicts()
	failed := r.create.all.failed() + r.rollout.all.failed() + r.steady.failed()

	var sb strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&sb, format+"\n", a...) }
	p("\n=== UnitDeployment benchmark: %d units (1 node each), %d overridden to %d replicas, maxUnavailableUnits %d, simulated instance rollout %s; controller in-process at QPS %d / burst %d, %d workers ===",
		numUnits, numOverridden, overriddenReplicas, maxUnavailable, simDelay, controllers.DefaultQPS, controllers.DefaultBurst, controllers.DefaultConcurrency)
	p("  machine: %d cores, load average %s at the start, %s at the end; setup (namespace, %d NodePools, EdgeUnits, Nodes) %.2f s",
		benchutil.NumCPU(), r.loadStart, r.loadEnd, numUnits, r.setup.Seconds())
	p("  %-58s %10s   %s", "figure", "measured", "target")
	row := func(name, value, target string) { p("  %-58s %10s   %s", name, value, target) }
	row("create: instances exist, status counts them (create_s)", fmt.Sprintf("%.2f s", r.create.verified.Seconds()),
		fmt.Sprintf("<= %.0f s (DESIGN.md's bound for 100 EdgeUnits, as a reference): %s", targetCreate.Seconds(), benchutil.Verdict(r.create.verified <= targetCreate)))
	row("create: every unit ready, Ready=True (create_ready_s)", fmt.Sprintf("%.2f s", r.create.ready.Seconds()), "-")
	row("rollout: every unit on the new revision, ready (rollout_s)", fmt.Sprintf("%.2f s", r.rollout.ready.Seconds()),
		fmt.Sprintf("floor %d waves x %s = %.2f s; overhead %.2f s", waves, simDelay, ideal.Seconds(), (r.rollout.ready-ideal).Seconds()))
	row("rollout: most units updating at once (max_units_updating)", strconv.Itoa(r.rollout.track.max),
		fmt.Sprintf("<= %d: %s", maxUnavailable, benchutil.Verdict(r.rollout.track.max <= maxUnavailable)))
	row("rollout: units updating, mean to the last completion", fmt.Sprintf("%.2f", r.rollout.track.mean), fmt.Sprintf("close to %d is a full budget", maxUnavailable))
	row("create: controller writes per instance", fmt.Sprintf("%.2f", perInstance(r.create.all)), "- (1 apply per instance is the floor)")
	row("rollout: controller writes per instance", fmt.Sprintf("%.2f", perInstance(r.rollout.all)), "- (1 apply per instance is the floor)")
	row(fmt.Sprintf("steady state (%s): controller writes", steadyFor), strconv.Itoa(r.steady.total()), "0: "+benchutil.Verdict(r.steady.total() == 0))
	row("409 conflicts (whole run)", strconv.Itoa(conflicts), "0: "+benchutil.Verdict(conflicts == 0))
	for _, ph := range []struct {
		name string
		p    phase
	}{{"create", r.create}, {"rollout", r.rollout}} {
		w := ph.p.all
		p("  %s: verified %.2f s, ready %.2f s, settled %.2f s after the start; controller writes %d to ready, %d to settled: deployments %d (%.2f per instance), unitdeployments/status %d, events %d",
			ph.name, ph.p.verified.Seconds(), ph.p.ready.Seconds(), ph.p.settled.Seconds(), ph.p.toReady.total(), w.total(),
			w.of("deployments"), float64(w.of("deployments"))/float64(numUnits), w.of("unitdeployments/status"), w.of("events"))
		p("    %s: writes by verb, resource and code: %s", ph.name, w.writes)
		p("    %s: reconciles %d (%s), %.3f s each on average, %.2f s in all; simulator status writes %d",
			ph.name, ph.p.rec.total(), ph.p.rec, ph.p.recTime.Seconds()/float64(max(ph.p.rec.total(), 1)), ph.p.recTime.Seconds(), ph.p.sim)
		t := ph.p.track
		p("    %s: instances updating: at most %d (%.3f s in), mean %.2f; first began %.3f s in, last finished %.3f s in; %d began, %d finished, %.3f s each on average",
			ph.name, t.max, t.maxAfter.Seconds(), t.mean, t.firstBegan.Seconds(), t.lastEnded.Seconds(), t.began, t.ended, t.meanInstance.Seconds())
	}
	if trace {
		for _, ph := range []struct {
			name string
			p    phase
		}{{"create", r.create}, {"rollout", r.rollout}} {
			p("  %s: instance changes (time from the phase's start):\n    %s", ph.name, strings.Join(ph.p.track.events, "\n    "))
		}
	}
	p("  steady state: controller writes %d at %v after its start; reconciles %d (%s); instances changed %d; state still verified: %t",
		r.steady.total(), r.steadyWriteTimes, r.steadyRec.total(), r.steadyRec, r.steadyTrack.began+r.steadyTrack.ended, r.steadyVerified)
	p("  revisions: %s -> %s; requests not answered 2xx or 409: %d; errors in the controller's log: %d; simulator conflicts %d, failures %d",
		r.revisions[0], r.revisions[1], failed, r.loggedErrors, r.simConflicts, r.simFailures)
	fmt.Print(sb.String())
}

func lastN(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
