package demo

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/edgeunit/edgeunit/controllers"
)

func TestParseRealNodeMode(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    RealNodeMode
		wantErr bool
	}{
		"auto":  {in: "auto", want: RealNodeAuto},
		"on":    {in: "on", want: RealNodeOn},
		"off":   {in: "off", want: RealNodeOff},
		"empty": {in: "", want: RealNodeOff},
		"typo":  {in: "yes", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseRealNodeMode(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseRealNodeMode(%q) = %q, %v; want %q, error %t", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestRealNodeSkipReason(t *testing.T) {
	tests := map[string]struct {
		goos string
		euid int
		want string
	}{
		"linux root":     {goos: "linux", euid: 0, want: ""},
		"linux not root": {goos: "linux", euid: 1000, want: "it needs root"},
		"darwin root":    {goos: "darwin", euid: 0, want: "Linux only"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := realNodeSkipReason(tc.goos, tc.euid)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("realNodeSkipReason(%s, %d) = %q, want %q", tc.goos, tc.euid, got, tc.want)
			}
		})
	}
}

func TestPlanRealNodeRepoSamples(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ms, err := loadSamples(filepath.Join(root, "config", "samples"), controllers.Scheme())
	if err != nil {
		t.Fatal(err)
	}
	plan, err := planRealNode(ms, "198.19.248.1", 10262)
	if err != nil {
		t.Fatal(err)
	}
	if plan.unit != "factory" || plan.pool != "factory-a" || plan.endpoint != "tunnel" || plan.cloudPool != "cloud" {
		t.Errorf("plan = unit %q, pool %q, endpoint %q, cloud pool %q; want factory, factory-a, tunnel, cloud", plan.unit, plan.pool, plan.endpoint, plan.cloudPool)
	}
	if len(plan.taints) != 1 || plan.taints[0].Key != "example.com/edge" {
		t.Errorf("taints = %+v, want the factory-a pool's example.com/edge", plan.taints)
	}
	// Every sample but the UnitDeployment, whose pods could not start on
	// the real node, in the samples' order.
	var kept []manifest
	for _, m := range ms {
		if m.obj.GetKind() != "UnitDeployment" {
			kept = append(kept, m)
		}
	}
	if len(kept) == len(ms) {
		t.Fatal("the samples have no UnitDeployment")
	}
	if len(plan.objects) != len(kept) {
		t.Fatalf("%d objects to apply, want the %d samples that are not UnitDeployments", len(plan.objects), len(kept))
	}
	for i, m := range plan.objects {
		if m.source != kept[i].source {
			t.Errorf("object %d to apply is %s, want %s", i, m.source, kept[i].source)
		}
		if m.obj.GetKind() != "TunnelEndpoint" {
			if m.obj != kept[i].obj {
				t.Errorf("%s was changed", m.source)
			}
			continue
		}
		addrs, _, _ := unstructured.NestedStringSlice(m.obj.Object, "spec", "service", "addresses")
		if !slices.Equal(addrs, []string{"198.19.248.1"}) {
			t.Errorf("TunnelEndpoint addresses %v, want the tunnel-server's", addrs)
		}
		orig, _, _ := unstructured.NestedStringSlice(kept[i].obj.Object, "spec", "service", "addresses")
		if !slices.Equal(orig, []string{"127.0.0.1"}) {
			t.Errorf("the loaded sample changed too: addresses %v", orig)
		}
	}
	// The agent port is the sample's already: only the address changes.
	want := []string{
		"TunnelEndpoint tunnel: spec.service.addresses [127.0.0.1] -> [198.19.248.1]",
		"UnitDeployment line-dashboard left out (the real node has only the testbed's images)",
	}
	if !slices.Equal(plan.changes, want) {
		t.Errorf("changes = %q, want %q", plan.changes, want)
	}
}

func TestPlanRealNodeErrors(t *testing.T) {
	const (
		edgePool  = "apiVersion: edge.edgeunit.io/v1alpha1\nkind: NodePool\nmetadata:\n  name: edge\nspec:\n  type: Edge\n"
		cloudPool = "apiVersion: edge.edgeunit.io/v1alpha1\nkind: NodePool\nmetadata:\n  name: edge\nspec:\n  type: Cloud\n"
		endpoint  = "apiVersion: edge.edgeunit.io/v1alpha1\nkind: TunnelEndpoint\nmetadata:\n  name: tunnel\nspec:\n  service:\n    type: ClusterIP\n    addresses: [127.0.0.1]\n  ports:\n    agent: 20000\n"
		unit      = "apiVersion: edge.edgeunit.io/v1alpha1\nkind: EdgeUnit\nmetadata:\n  name: site\nspec:\n  nodePools: [edge]\n  tunnel:\n    endpoint: tunnel\n"
		noTunnel  = "apiVersion: edge.edgeunit.io/v1alpha1\nkind: EdgeUnit\nmetadata:\n  name: site\nspec:\n  nodePools: [edge]\n"
	)
	tests := map[string]struct {
		docs    []string
		wantErr bool
		changes []string
	}{
		"usable":              {docs: []string{edgePool, endpoint, unit}, changes: []string{"TunnelEndpoint tunnel: spec.service.addresses [127.0.0.1] -> [198.19.248.1]", "TunnelEndpoint tunnel: spec.ports.agent 20000 -> 10262"}},
		"unit without tunnel": {docs: []string{edgePool, endpoint, noTunnel}, wantErr: true},
		"endpoint missing":    {docs: []string{edgePool, unit}, wantErr: true},
		"cloud pool only":     {docs: []string{cloudPool, endpoint, unit}, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "samples.yaml"), []byte(strings.Join(tc.docs, "---\n")), 0o600); err != nil {
				t.Fatal(err)
			}
			ms, err := loadSamples(dir, controllers.Scheme())
			if err != nil {
				t.Fatal(err)
			}
			plan, err := planRealNode(ms, "198.19.248.1", 10262)
			if (err != nil) != tc.wantErr {
				t.Fatalf("planRealNode: %v, want error %t", err, tc.wantErr)
			}
			if err == nil && !slices.Equal(plan.changes, tc.changes) {
				t.Errorf("changes = %q, want %q", plan.changes, tc.changes)
			}
		})
	}
}

// fakeNode is a real node's stand-in for the helper's socket.
type fakeNode struct {
	lines   []string
	err     error
	release chan struct{}
	entered chan struct{}
}

func (f *fakeNode) PowerCycle(ctx context.Context, progress func(string)) error {
	if f.entered != nil {
		close(f.entered)
	}
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, l := range f.lines {
		progress(l)
	}
	return f.err
}

// serveRealNode serves a helper's socket in a test directory.
func serveRealNode(t *testing.T) (*realNodeService, string) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), realNodeSocketName)
	var log bytes.Buffer
	svc := newRealNodeService(&log)
	l, err := listenUnix(socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: svc.handler(), ReadHeaderTimeout: realNodeServeTimeout}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); svc.handlers.Wait() })
	return svc, socket
}

func TestRealNodeStartLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tests := map[string]struct {
		state  realNodeState
		reason string
	}{
		"ready":   {state: realNodeReady},
		"skipped": {state: realNodeSkipped, reason: "another real-node testbed runs on this machine"},
		"failed":  {state: realNodeFailed, reason: "waiting for pod default/testapp:\nnot Ready"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			svc, socket := serveRealNode(t)
			svc.print("Real edge node: starting")
			type result struct {
				state  realNodeState
				reason string
				err    error
			}
			out := &firstWrite{seen: make(chan struct{})}
			done := make(chan result, 1)
			go func() {
				s, r, err := followStartLog(ctx, socket, out, func() error { return nil })
				done <- result{s, r, err}
			}()
			// Lines printed while the demo follows arrive too, and the
			// start log ends only with the start.
			<-out.seen
			svc.printf("line %d\nline %d", 2, 3)
			select {
			case r := <-done:
				t.Fatalf("followStartLog returned before the start ended: %+v", r)
			case <-time.After(200 * time.Millisecond):
			}
			svc.finish(tc.state, tc.reason, nil)
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.state != tc.state || r.reason != oneLine(tc.reason) {
				t.Errorf("start ended %q (%q), want %q (%q)", r.state, r.reason, tc.state, oneLine(tc.reason))
			}
			if want := "Real edge node: starting\nline 2\nline 3\n"; out.buf.String() != want {
				t.Errorf("start log %q, want %q", out.buf.String(), want)
			}
		})
	}
}

// firstWrite is a buffer that says when it is first written to.
type firstWrite struct {
	buf  bytes.Buffer
	once sync.Once
	seen chan struct{}
}

func (w *firstWrite) Write(p []byte) (int, error) {
	n, err := w.buf.Write(p)
	w.once.Do(func() { close(w.seen) })
	return n, err
}

func TestFollowStartLogHelperGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gone := errors.New("real-node helper (pid 1) exit status 1")
	_, _, err := followStartLog(ctx, filepath.Join(t.TempDir(), "none.sock"), &bytes.Buffer{}, func() error { return gone })
	if !errors.Is(err, gone) {
		t.Errorf("followStartLog = %v, want the helper's exit", err)
	}
}

func TestPowerCycleSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("not up", func(t *testing.T) {
		svc, socket := serveRealNode(t)
		svc.finish(realNodeSkipped, "not root", nil)
		err := PowerCycle(ctx, socket, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "is not up") {
			t.Errorf("PowerCycle = %v, want an error saying the node is not up", err)
		}
	})
	t.Run("cycles", func(t *testing.T) {
		svc, socket := serveRealNode(t)
		svc.finish(realNodeReady, "", &fakeNode{lines: []string{"Power cut", "Booted"}})
		var out bytes.Buffer
		if err := PowerCycle(ctx, socket, &out); err != nil {
			t.Fatal(err)
		}
		if out.String() != "Power cut\nBooted\n" {
			t.Errorf("printed %q", out.String())
		}
	})
	t.Run("fails", func(t *testing.T) {
		svc, socket := serveRealNode(t)
		svc.finish(realNodeReady, "", &fakeNode{lines: []string{"Power cut"}, err: errors.New("booting real-edge-1:\ncontainerd exited")})
		var out bytes.Buffer
		err := PowerCycle(ctx, socket, &out)
		if err == nil || err.Error() != "booting real-edge-1: containerd exited" {
			t.Errorf("PowerCycle = %v, want the node's error", err)
		}
		if out.String() != "Power cut\n" {
			t.Errorf("printed %q", out.String())
		}
	})
	t.Run("one at a time", func(t *testing.T) {
		svc, socket := serveRealNode(t)
		node := &fakeNode{release: make(chan struct{}), entered: make(chan struct{})}
		svc.finish(realNodeReady, "", node)
		first := make(chan error, 1)
		go func() { first <- PowerCycle(ctx, socket, &bytes.Buffer{}) }()
		<-node.entered
		err := PowerCycle(ctx, socket, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "running already") {
			t.Errorf("second PowerCycle = %v, want an error: one runs already", err)
		}
		close(node.release)
		if err := <-first; err != nil {
			t.Errorf("first PowerCycle: %v", err)
		}
	})
	t.Run("no helper", func(t *testing.T) {
		err := PowerCycle(ctx, filepath.Join(t.TempDir(), "none.sock"), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "no real edge node answers") {
			t.Errorf("PowerCycle = %v, want an error saying no node answers", err)
		}
	})
}

func TestListenUnixRefusesALiveSocket(t *testing.T) {
	_, socket := serveRealNode(t)
	if l, err := listenUnix(socket); err == nil {
		_ = l.Close()
		t.Fatal("listenUnix took over a socket another helper serves")
	}
	// A stale socket file, which no one serves, is replaced.
	stale := filepath.Join(t.TempDir(), "stale.sock")
	l, err := listenUnix(stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = l.Close()
	l, err = listenUnix(stale)
	if err != nil {
		t.Fatalf("listenUnix on a stale socket: %v", err)
	}
	_ = l.Close()
}
