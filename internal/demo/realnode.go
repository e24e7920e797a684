package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// The real edge node: next to the simulated cluster the demo runs, as root,
// a cluster of its own with one real edge node (kubelet, containerd and
// runc in network and mount namespaces of their own, from the e2e testbed,
// package test/e2e/testbed). The node joins the samples' EdgeUnit, whose
// hub installer converts it; a test app runs on it and `kubectl logs`
// reaches it through the tunnel.
//
// It runs in a helper process (`edgeunit-demo real-node run`), for two
// reasons: the testbed moves its parent's etcd and kube-apiserver children
// into cgroups it kills when it stops, which would take the simulated
// cluster's with them; and a person's `edgeunit-demo real-node
// power-cycle` needs something to talk to. The helper serves a Unix
// socket: the demo reads the helper's progress and summary from it, and
// power-cycle asks it to cut the node's power and boot it again.

// RealNodeMode says whether the demo adds a real edge node.
type RealNodeMode string

const (
	// RealNodeOff runs simulated nodes only; the zero value means this.
	RealNodeOff RealNodeMode = "off"
	// RealNodeAuto adds a real edge node where the machine allows it
	// (Linux, root, the binaries `make e2e-deps` builds, cgroup v1, no
	// other testbed running); otherwise one line says why not, and the
	// rest runs as without it.
	RealNodeAuto RealNodeMode = "auto"
	// RealNodeOn adds a real edge node or fails.
	RealNodeOn RealNodeMode = "on"
)

// ParseRealNodeMode parses the --real-node flag.
func ParseRealNodeMode(s string) (RealNodeMode, error) {
	switch m := RealNodeMode(s); m {
	case RealNodeOff, RealNodeAuto, RealNodeOn:
		return m, nil
	case "":
		return RealNodeOff, nil
	}
	return "", fmt.Errorf("--real-node must be auto, on or off, got %q", s)
}

// Names of the real node's files next to the demo's kubeconfig.
const (
	realNodeSocketName     = "real-node.sock"
	realNodeKubeconfigName = "real-node.kubeconfig"
)

// DefaultRealNodeSocket is where the real node's helper listens when the
// demo writes its kubeconfig to the default place.
func DefaultRealNodeSocket() string {
	return filepath.Join(filepath.Dir(DefaultKubeconfigOut()), realNodeSocketName)
}

// realNodeSkipReason says why this demo cannot run a real edge node at
// all, or "": it needs Linux and root. The helper checks the rest.
func realNodeSkipReason(goos string, euid int) string {
	switch {
	case goos != "linux":
		return "it runs on Linux only (network and mount namespaces, cgroup v1)"
	case euid != 0:
		return "it needs root, for the network and mount namespaces and cgroups its kubelet and containerd run in (run `sudo make demo`)"
	}
	return ""
}

// The real node's helper reports how its start ended in these trailers of
// the start log; power-cycle's errors come in realNodeErrorTrailer too.
const (
	realNodeStateTrailer = "Edgeunit-Demo-State"
	realNodeErrorTrailer = "Edgeunit-Demo-Error"
)

// realNodeState is how the helper's start ended so far.
type realNodeState string

const (
	realNodeStarting realNodeState = "starting"
	realNodeReady    realNodeState = "ready"
	realNodeSkipped  realNodeState = "skipped"
	realNodeFailed   realNodeState = "failed"
)

// skipError is a reason not to run the real node that is no failure: the
// machine does not allow it.
type skipError struct{ reason string }

func (e *skipError) Error() string { return e.reason }

// powerCycler is the real node as the helper's socket drives it.
type powerCycler interface {
	// PowerCycle cuts the node's power and boots it again, saying what
	// happened, line by line, through progress.
	PowerCycle(ctx context.Context, progress func(string)) error
}

// realNodeService is what the helper serves on its socket: the lines its
// start printed (progress, then the summary) with how the start ended,
// and power cycles of the node once it is up.
type realNodeService struct {
	// log receives every line too (the helper's log).
	log io.Writer

	mu     sync.Mutex
	lines  []string
	state  realNodeState
	reason string
	node   powerCycler
	// changed is closed and replaced whenever lines or state change.
	changed chan struct{}

	// cycling is held while a power cycle runs: one at a time.
	cycling sync.Mutex
	// handlers counts running requests, so the helper stops the node only
	// after them.
	handlers sync.WaitGroup
}

func newRealNodeService(log io.Writer) *realNodeService {
	return &realNodeService{log: log, state: realNodeStarting, changed: make(chan struct{})}
}

// print adds text (one or more lines) to the start log.
func (s *realNodeService) print(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range strings.SplitSeq(strings.TrimSuffix(text, "\n"), "\n") {
		s.lines = append(s.lines, l)
		fmt.Fprintln(s.log, l)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *realNodeService) printf(format string, args ...any) { s.print(fmt.Sprintf(format, args...)) }

// finish records how the start ended; node is the node to power-cycle
// when it is ready.
func (s *realNodeService) finish(state realNodeState, reason string, node powerCycler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state, s.reason, s.node = state, reason, node
	fmt.Fprintf(s.log, "start %s %s\n", state, reason)
	close(s.changed)
	s.changed = make(chan struct{})
}

// forget drops the node, once it is being stopped: no power cycle after.
func (s *realNodeService) forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.node = nil
}

func (s *realNodeService) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/start-log", s.serveStartLog)
	mux.HandleFunc("POST /v1/power-cycle", s.servePowerCycle)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handlers.Add(1)
		defer s.handlers.Done()
		mux.ServeHTTP(w, r)
	})
}

// serveStartLog streams the start log from its first line, following it
// until the start has ended, which the trailers then say.
func (s *realNodeService) serveStartLog(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Trailer", realNodeStateTrailer+", "+realNodeErrorTrailer)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	flusher, _ := w.(http.Flusher)
	sent := 0
	for {
		s.mu.Lock()
		lines := s.lines[sent:]
		state, reason, changed := s.state, s.reason, s.changed
		s.mu.Unlock()
		for _, l := range lines {
			if _, err := fmt.Fprintln(w, l); err != nil {
				return
			}
		}
		sent += len(lines)
		if flusher != nil {
			flusher.Flush()
		}
		if state != realNodeStarting {
			w.Header().Set(realNodeStateTrailer, string(state))
			w.Header().Set(realNodeErrorTrailer, oneLine(reason))
			return
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
}

// servePowerCycle power-cycles the node, streaming what happens; an
// error comes in the error trailer.
func (s *realNodeService) servePowerCycle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	node, state := s.node, s.state
	s.mu.Unlock()
	if node == nil {
		http.Error(w, fmt.Sprintf("the real edge node is not up (its start: %s)", state), http.StatusConflict)
		return
	}
	if !s.cycling.TryLock() {
		http.Error(w, "a power cycle of the real edge node is running already", http.StatusConflict)
		return
	}
	defer s.cycling.Unlock()
	w.Header().Set("Trailer", realNodeErrorTrailer)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	flusher, _ := w.(http.Flusher)
	err := node.PowerCycle(r.Context(), func(line string) {
		fmt.Fprintln(s.log, line)
		fmt.Fprintln(w, line)
		if flusher != nil {
			flusher.Flush()
		}
	})
	if err != nil {
		fmt.Fprintf(s.log, "power cycle failed: %v\n", err)
		w.Header().Set(realNodeErrorTrailer, oneLine(err.Error()))
	}
}

// oneLine makes text fit an HTTP header.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// listenUnix listens on socket, replacing a stale socket file that no one
// serves any more, and refusing one that someone still does.
func listenUnix(socket string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", socket, time.Second); err == nil {
		_ = c.Close()
		return nil, fmt.Errorf("another demo's real edge node serves %s", socket)
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	l, err := net.Listen("unix", socket)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

// unixClient talks HTTP to the helper's socket.
func unixClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}}
}

// realNodeURL is any URL on the helper's socket.
const realNodeURL = "http://real-node"

// copyLines copies body to w line by line, as the lines arrive.
func copyLines(w io.Writer, body io.Reader) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if _, err := fmt.Fprintln(w, sc.Text()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// followStartLog prints the helper's start log to w as it grows and
// returns how the start ended. alive says whether the helper still runs:
// until it listens, connecting is retried while it does.
func followStartLog(ctx context.Context, socket string, w io.Writer, alive func() error) (realNodeState, string, error) {
	c := unixClient(socket)
	var resp *http.Response
	deadline := time.Now().Add(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, realNodeURL+"/v1/start-log", nil)
		if err != nil {
			return "", "", err
		}
		resp, err = c.Do(req)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return "", "", ctx.Err()
		}
		if aerr := alive(); aerr != nil {
			return "", "", aerr
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("the real node's helper does not answer on %s: %w", socket, err)
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return "", "", fmt.Errorf("the real node's helper: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if err := copyLines(w, resp.Body); err != nil {
		if ctx.Err() != nil {
			return "", "", ctx.Err()
		}
		return "", "", fmt.Errorf("reading the real node's start log: %w", errors.Join(err, alive()))
	}
	state := realNodeState(resp.Trailer.Get(realNodeStateTrailer))
	if state == "" {
		return "", "", fmt.Errorf("the real node's helper ended its start log without saying how the start ended: %w", errors.Join(ctx.Err(), alive()))
	}
	return state, resp.Trailer.Get(realNodeErrorTrailer), nil
}

// PowerCycle asks the real edge node's helper, at socket, to cut the
// node's power and boot it again, printing what happens to w. It is
// `edgeunit-demo real-node power-cycle`.
func PowerCycle(ctx context.Context, socket string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, realNodeURL+"/v1/power-cycle", nil)
	if err != nil {
		return err
	}
	resp, err := unixClient(socket).Do(req)
	if err != nil {
		return fmt.Errorf("no real edge node answers on %s (does `make demo` run, as root, with its real node up?): %w", socket, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return errors.New(strings.TrimSpace(string(b)))
	}
	if err := copyLines(w, resp.Body); err != nil {
		return fmt.Errorf("reading the power cycle's progress: %w", err)
	}
	if msg := resp.Trailer.Get(realNodeErrorTrailer); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// realNodePlan is what the real node does with the samples: the node
// joins pool, an Edge pool of unit, whose tunnel is endpoint; objects are
// the samples to apply, adapted to the real node's cluster as changes
// say.
type realNodePlan struct {
	unit, pool, endpoint string
	// cloudPool is a Cloud pool for the stand-in cloud node, if any.
	cloudPool string
	// taints are the pool's taints, which the test app tolerates.
	taints  []edgev1.NodePoolTaint
	objects []manifest
	changes []string
}

// planRealNode picks, from the samples, the first EdgeUnit (by name) whose
// tunnel's TunnelEndpoint and an Edge pool are among them, and points the
// TunnelEndpoint at the tunnel-server the real node's cluster runs for it:
// agents dial addr on agentPort.
func planRealNode(ms []manifest, addr string, agentPort int32) (realNodePlan, error) {
	var (
		units     []edgev1.EdgeUnit
		pools     = map[string]edgev1.NodePool{}
		endpoints = map[string]int{}
	)
	for i, m := range ms {
		switch m.obj.GetKind() {
		case "EdgeUnit":
			var u edgev1.EdgeUnit
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m.obj.Object, &u); err != nil {
				return realNodePlan{}, fmt.Errorf("%s: %w", m.source, err)
			}
			units = append(units, u)
		case "NodePool":
			var p edgev1.NodePool
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m.obj.Object, &p); err != nil {
				return realNodePlan{}, fmt.Errorf("%s: %w", m.source, err)
			}
			pools[p.Name] = p
		case "TunnelEndpoint":
			endpoints[m.obj.GetName()] = i
		}
	}
	slices.SortFunc(units, func(a, b edgev1.EdgeUnit) int { return strings.Compare(a.Name, b.Name) })
	var plan realNodePlan
	for _, u := range units {
		if u.Spec.Tunnel == nil {
			continue
		}
		if _, ok := endpoints[u.Spec.Tunnel.Endpoint]; !ok {
			continue
		}
		for _, name := range u.Spec.NodePools {
			if p, ok := pools[name]; ok && p.Spec.Type != edgev1.NodePoolCloud {
				plan = realNodePlan{unit: u.Name, pool: name, endpoint: u.Spec.Tunnel.Endpoint, taints: p.Spec.Taints}
				break
			}
		}
		if plan.unit != "" {
			break
		}
	}
	if plan.unit == "" {
		return plan, errors.New("no EdgeUnit in the samples has a tunnel to a TunnelEndpoint and an Edge NodePool that are in the samples too")
	}
	for _, name := range slices.Sorted(maps.Keys(pools)) {
		if pools[name].Spec.Type == edgev1.NodePoolCloud {
			plan.cloudPool = name
			break
		}
	}
	for i, m := range ms {
		obj := m.obj
		if obj.GetKind() == "UnitDeployment" {
			// Its pods would land on the real node, which has only the
			// images the testbed imported: they would never start. The
			// simulated cluster shows the UnitDeployment.
			plan.changes = append(plan.changes, fmt.Sprintf("UnitDeployment %s left out (the real node has only the testbed's images)", obj.GetName()))
			continue
		}
		if i == endpoints[plan.endpoint] {
			var te edgev1.TunnelEndpoint
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m.obj.Object, &te); err != nil {
				return plan, fmt.Errorf("%s: %w", m.source, err)
			}
			obj = obj.DeepCopy()
			if old := te.Spec.Service.Addresses; !slices.Equal(old, []string{addr}) {
				if err := unstructured.SetNestedStringSlice(obj.Object, []string{addr}, "spec", "service", "addresses"); err != nil {
					return plan, err
				}
				plan.changes = append(plan.changes, fmt.Sprintf("TunnelEndpoint %s: spec.service.addresses %v -> [%s]", plan.endpoint, old, addr))
			}
			// Unset is the default, which the tunnel-server's port is too.
			if old := te.Spec.Ports.Agent; old != 0 && old != agentPort {
				if err := unstructured.SetNestedField(obj.Object, int64(agentPort), "spec", "ports", "agent"); err != nil {
					return plan, err
				}
				plan.changes = append(plan.changes, fmt.Sprintf("TunnelEndpoint %s: spec.ports.agent %d -> %d", plan.endpoint, old, agentPort))
			}
		}
		plan.objects = append(plan.objects, manifest{source: m.source, obj: obj})
	}
	return plan, nil
}

// RealNodeOptions configure the real edge node's helper process,
// `edgeunit-demo real-node run`, which the demo starts.
type RealNodeOptions struct {
	// RepoRoot is the repository, whose bin/ holds what the node runs
	// (`make e2e-deps`); the helper works from there.
	RepoRoot string
	// SamplesDir holds the objects to apply (config/samples).
	SamplesDir string
	// Socket is where the helper serves its start log and power cycles.
	Socket string
	// KubeconfigOut is where the admin kubeconfig of the real node's
	// cluster is written; removed on exit.
	KubeconfigOut string
	// Kubectl runs the commands whose output the summary shows.
	Kubectl string
	// Log receives every line the helper prints.
	Log io.Writer
}

// realNodeServeTimeout bounds reading a request's headers on the socket.
const realNodeServeTimeout = 10 * time.Second

// RunRealNode is the helper: it serves its socket, starts the real node and
// prints its summary there, and runs until ctx ends, then stops the node
// and removes everything it made.
func RunRealNode(ctx context.Context, o RealNodeOptions) error {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.RepoRoot != "" {
		// The testbed finds its binaries from the working directory.
		if err := os.Chdir(o.RepoRoot); err != nil {
			return err
		}
	}
	svc := newRealNodeService(o.Log)
	l, err := listenUnix(o.Socket)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: svc.handler(), ReadHeaderTimeout: realNodeServeTimeout}
	go func() { _ = srv.Serve(l) }()

	node, err := startRealNode(ctx, o, svc)
	var skip *skipError
	switch {
	case err == nil:
		svc.finish(realNodeReady, "", node)
	case errors.As(err, &skip):
		svc.finish(realNodeSkipped, skip.reason, nil)
	default:
		svc.finish(realNodeFailed, err.Error(), nil)
	}
	<-ctx.Done()

	// Requests first: a power cycle holds the node until it ends.
	svc.forget()
	errs := []error{srv.Close()}
	svc.handlers.Wait()
	if err := os.Remove(o.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if node != nil {
		fmt.Fprintln(o.Log, "Stopping the real edge node and its cluster")
		errs = append(errs, node.stop(false))
	}
	return errors.Join(errs...)
}
