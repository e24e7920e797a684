package unitdeployment_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers"
)

// complete is rollout.go's test of an instance whose own rollout is done:
// its controller saw its latest spec and every replica is updated and
// available, no old pod left.
func complete(d *appsv1.Deployment) bool {
	want := ptr.Deref(d.Spec.Replicas, 1)
	s := d.Status
	return s.ObservedGeneration >= d.Generation &&
		s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
}

// simulator stands in for kube-controller-manager's Deployment controller,
// which envtest lacks. When it sees a Deployment generation it has not
// observed, it writes what the Deployment controller would at once: the
// generation observed and, for an existing instance, one surge pod of the
// new template beside the old pods, which stay available (1 or 2 replicas
// at the default 25 % maxSurge and maxUnavailable). delay later it writes
// the rollout done: every replica updated, ready and available.
type simulator struct {
	c     client.Client // uncached, not rate limited
	delay time.Duration
	q     workqueue.TypedRateLimitingInterface[types.NamespacedName]
	track *tracker

	mu      sync.Mutex
	started map[types.NamespacedName]seen // generation first written, and when

	writes, conflicts, failures atomic.Int64
	lastErr                     atomic.Value // error
}

type seen struct {
	gen int64
	at  time.Time
}

// maxRetries bounds the attempts at one Deployment's status before the
// simulator gives up on it (and counts a failure).
const maxRetries = 20

func newSimulator(c client.Client, delay time.Duration, t *tracker) *simulator {
	return &simulator{
		c: c, delay: delay, track: t, started: map[types.NamespacedName]seen{},
		q: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](5*time.Millisecond, time.Second),
			workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{}),
	}
}

// start watches the namespace's Deployments with its own informer, feeds
// the tracker and its queue from it, and runs workers until ctx ends.
// stop shuts the queue and waits for the workers and the informer.
func (s *simulator) start(ctx context.Context, cfg *rest.Config, namespace string, workers int) (stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop = sync.OnceFunc(func() {
		cancel()
		s.q.ShutDown()
		wg.Wait()
	})
	ic, err := cache.New(cfg, cache.Options{
		Scheme:            controllers.Scheme(),
		DefaultNamespaces: map[string]cache.Config{namespace: {}},
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("creating the simulator's cache: %w", err)
	}
	inf, err := ic.GetInformer(ctx, &appsv1.Deployment{})
	if err != nil {
		stop()
		return nil, fmt.Errorf("getting the simulator's Deployment informer: %w", err)
	}
	onChange := func(obj any) {
		d, ok := obj.(*appsv1.Deployment)
		if !ok {
			return
		}
		s.track.observe(d)
		if !complete(d) {
			s.q.Add(client.ObjectKeyFromObject(d))
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    onChange,
		UpdateFunc: func(_, obj any) { onChange(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if d, ok := obj.(*appsv1.Deployment); ok {
				s.track.forget(d)
			}
		},
	}); err != nil {
		stop()
		return nil, fmt.Errorf("adding the simulator's event handler: %w", err)
	}
	wg.Go(func() { _ = ic.Start(ctx) })
	syncCtx, syncCancel := context.WithTimeout(ctx, time.Minute)
	defer syncCancel()
	if !ic.WaitForCacheSync(syncCtx) {
		stop()
		return nil, errors.New("the simulator's cache did not sync within a minute")
	}
	for range workers {
		wg.Go(func() {
			// Ends when the queue shuts down.
			for {
				key, shutdown := s.q.Get()
				if shutdown {
					return
				}
				s.handle(ctx, key)
			}
		})
	}
	return stop, nil
}

func (s *simulator) handle(ctx context.Context, key types.NamespacedName) {
	defer s.q.Done(key)
	err := s.step(ctx, key)
	switch {
	case err == nil:
		s.q.Forget(key)
	case ctx.Err() != nil:
		s.q.Forget(key)
	case s.q.NumRequeues(key) >= maxRetries:
		s.failures.Add(1)
		s.lastErr.Store(fmt.Errorf("giving up on %s after %d attempts: %w", key, maxRetries, err))
		s.q.Forget(key)
	default:
		if apierrors.IsConflict(err) {
			s.conflicts.Add(1)
		}
		s.q.AddRateLimited(key)
	}
}

// step moves one Deployment's simulated rollout on by at most one status
// write.
func (s *simulator) step(ctx context.Context, key types.NamespacedName) error {
	d := &appsv1.Deployment{}
	if err := s.c.Get(ctx, key, d); err != nil {
		if apierrors.IsNotFound(err) {
			s.mu.Lock()
			delete(s.started, key)
			s.mu.Unlock()
			return nil
		}
		return err
	}
	want := ptr.Deref(d.Spec.Replicas, 1)
	now := time.Now()
	if d.Status.ObservedGeneration < d.Generation {
		st := appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation,
			Replicas:           want, UpdatedReplicas: want, UnavailableReplicas: want,
		}
		if old := d.Status.AvailableReplicas; old > 0 {
			st = appsv1.DeploymentStatus{
				ObservedGeneration: d.Generation,
				Replicas:           old + 1, UpdatedReplicas: 1, ReadyReplicas: old, AvailableReplicas: old, UnavailableReplicas: 1,
			}
		}
		d.Status = st
		if err := s.c.Status().Update(ctx, d); err != nil {
			return err
		}
		s.writes.Add(1)
		s.mu.Lock()
		s.started[key] = seen{gen: d.Generation, at: now}
		s.mu.Unlock()
		s.q.AddAfter(key, s.delay)
		return nil
	}
	if complete(d) {
		s.mu.Lock()
		delete(s.started, key)
		s.mu.Unlock()
		return nil
	}
	s.mu.Lock()
	m, ok := s.started[key]
	if !ok || m.gen != d.Generation {
		m = seen{gen: d.Generation, at: now}
		s.started[key] = m
	}
	s.mu.Unlock()
	if remaining := s.delay - now.Sub(m.at); remaining > 0 {
		s.q.AddAfter(key, remaining)
		return nil
	}
	d.Status = appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation,
		Replicas:           want, UpdatedReplicas: want, ReadyReplicas: want, AvailableReplicas: want,
	}
	if err := s.c.Status().Update(ctx, d); err != nil {
		return err
	}
	s.writes.Add(1)
	return nil
}

func (s *simulator) err() error {
	if e, ok := s.lastErr.Load().(error); ok {
		return e
	}
	return nil
}

// tracker follows, from every Deployment version the simulator's watch
// delivers (in the apiserver's order), which units' instances are updating
// but not complete, and keeps per phase the most at once, which units those
// were, the mean over time and when each unit started and finished.
type tracker struct {
	mu         sync.Mutex
	incomplete map[string]bool // by unit
	lastChange time.Time

	phaseStart time.Time
	max        int
	maxAt      time.Time
	maxUnits   []string
	area       time.Duration // ∫ incomplete units dt since phaseStart
	began      map[string]time.Time
	ended      map[string]time.Time
	events     []string // the phase's changes, bounded, for a failure report
}

const maxTrackerEvents = 2000

func newTracker() *tracker {
	return &tracker{incomplete: map[string]bool{}, began: map[string]time.Time{}, ended: map[string]time.Time{}}
}

func (t *tracker) observe(d *appsv1.Deployment) {
	unit := d.Labels[edgev1.LabelUnit]
	if unit == "" {
		return
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	was, is := t.incomplete[unit], !complete(d)
	if was == is {
		return
	}
	t.accumulate(now)
	t.incomplete[unit] = is
	if is {
		if _, ok := t.began[unit]; !ok {
			t.began[unit] = now
		}
	} else {
		t.ended[unit] = now
	}
	n := t.count()
	if len(t.events) < maxTrackerEvents {
		t.events = append(t.events, fmt.Sprintf("%7.3fs %s %s gen %d observed %d updated %d available %d replicas %d/%d → %d updating",
			now.Sub(t.phaseStart).Seconds(), unit, map[bool]string{true: "updating", false: "complete"}[is],
			d.Generation, d.Status.ObservedGeneration, d.Status.UpdatedReplicas, d.Status.AvailableReplicas,
			d.Status.Replicas, ptr.Deref(d.Spec.Replicas, 1), n))
	}
	if n > t.max {
		t.max, t.maxAt, t.maxUnits = n, now, t.units()
	}
}

func (t *tracker) forget(d *appsv1.Deployment) {
	unit := d.Labels[edgev1.LabelUnit]
	t.mu.Lock()
	defer t.mu.Unlock()
	t.accumulate(time.Now())
	delete(t.incomplete, unit)
}

// accumulate adds the time since the last change to area; t.mu is held.
func (t *tracker) accumulate(now time.Time) {
	if !t.lastChange.IsZero() && !t.phaseStart.IsZero() {
		from := t.lastChange
		if from.Before(t.phaseStart) {
			from = t.phaseStart
		}
		t.area += time.Duration(t.count()) * now.Sub(from)
	}
	t.lastChange = now
}

func (t *tracker) count() int {
	n := 0
	for _, v := range t.incomplete {
		if v {
			n++
		}
	}
	return n
}

func (t *tracker) units() []string {
	var out []string
	for u, v := range t.incomplete {
		if v {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// updating is the number of instances not complete now.
func (t *tracker) updating() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count()
}

// lastChanged is when an instance last became complete or incomplete.
func (t *tracker) lastChanged() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastChange
}

// startPhase starts a new phase's figures at now.
func (t *tracker) startPhase() {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.accumulate(now)
	t.phaseStart = now
	t.max, t.maxAt, t.maxUnits = t.count(), now, t.units()
	t.area = 0
	t.began, t.ended = map[string]time.Time{}, map[string]time.Time{}
	t.events = nil
}

// phaseFigures are a tracker's figures for one phase.
type phaseFigures struct {
	max      int
	maxAfter time.Duration // from the phase's start
	maxUnits []string
	mean     float64 // instances updating, averaged from the phase's start to the last completion
	// first start and last completion of an instance, from the phase's
	// start; mean time one instance took.
	firstBegan, lastEnded, meanInstance time.Duration
	began, ended                        int
	events                              []string
}

// figures returns the phase's figures up to now.
func (t *tracker) figures() phaseFigures {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.accumulate(now)
	f := phaseFigures{
		max: t.max, maxAfter: t.maxAt.Sub(t.phaseStart), maxUnits: slices.Clone(t.maxUnits),
		began: len(t.began), ended: len(t.ended), events: slices.Clone(t.events),
	}
	var sum time.Duration
	n := 0
	for u, b := range t.began {
		if f.firstBegan == 0 || b.Sub(t.phaseStart) < f.firstBegan {
			f.firstBegan = b.Sub(t.phaseStart)
		}
		if e, ok := t.ended[u]; ok && e.After(b) {
			sum += e.Sub(b)
			n++
		}
	}
	for _, e := range t.ended {
		f.lastEnded = max(f.lastEnded, e.Sub(t.phaseStart))
	}
	if n > 0 {
		f.meanInstance = sum / time.Duration(n)
	}
	// Averaged up to the last completion: the quiet tail adds nothing.
	if f.lastEnded > 0 {
		f.mean = float64(t.area) / float64(f.lastEnded)
	}
	return f
}
