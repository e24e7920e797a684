package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers"
	"github.com/edgeunit/edgeunit/internal/demo"
	"github.com/edgeunit/edgeunit/internal/testenv"
)

// The test binary doubles as edgeunit-demo, so the tests run the real
// command (flags, signals, exit codes) without a separate build.
const runMainEnv = "EDGEUNIT_DEMO_RUN_MAIN"

// testBinDir holds the tunnel binaries the demos in these tests run.
var testBinDir string

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Exit(run())
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, cleanup, err := demo.TestBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	testBinDir = dir
	return m.Run()
}

// demoCmd prepares the command with the repository's binaries and a
// kubeconfig path in a test directory.
func demoCmd(t *testing.T, ctx context.Context, args ...string) (*exec.Cmd, string) {
	t.Helper()
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	// The simulated cluster only, as root too: a real node needs the
	// machine-wide testbed, which `make e2e` may hold.
	args = append([]string{"--assets", assets, "--bin-dir", testBinDir, "--kubeconfig-out", kubeconfig, "--ready-timeout", "2m", "--real-node=off"}, args...)
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	// Should the test time out, SIGTERM still lets the demo clean up.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	return cmd, kubeconfig
}

var workDirRE = regexp.MustCompile(`working directory (\S+)\)`)

func TestExitAfterSetup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd, kubeconfig := demoCmd(t, ctx, "--exit-after-setup")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("edgeunit-demo --exit-after-setup: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	text := string(out)
	// The kubectl tables were produced through the printed kubeconfig while
	// the demo ran: pools Ready with their members, nodes with the pools'
	// labels.
	for _, re := range []string{
		`kubeconfig:\s+` + regexp.QuoteMeta(kubeconfig),
		`nodepool\.edge\.edgeunit\.io/factory-a\s+Edge\s+True\s+3\s+3`,
		`nodepool\.edge\.edgeunit\.io/cloud\s+Cloud\s+True\s+2\s+2`,
		`node/factory-a-1\s+Ready\s.*edge\.edgeunit\.io/autonomy=true,.*edge\.edgeunit\.io/pool-type=edge,.*topology\.kubernetes\.io/region=factory-a`,
		`node/cloud-1\s+Ready\s.*edge\.edgeunit\.io/pool-type=cloud`,
		// The tunnel: three agents connected to the demo's tunnel-server,
		// so the unit is TunnelConnected (but not Ready: no hub runs).
		`edgeunit\.edge\.edgeunit\.io/factory\s+False\s+\["factory-a"\]\s+3\s+False\s+True\s`,
		`tunnelendpoint\.edge\.edgeunit\.io/tunnel\s+False\s+0\s+3\s+ClusterIP\s`,
		`(?m)^factory-a-1  servers=1  lastSeen=\S+\nfactory-a-2  servers=1  lastSeen=\S+\nfactory-a-3  servers=1  lastSeen=\S+$`,
		`tunnel-server\s+pid \d+\s+agents dial 127\.0\.0\.1:\d+`,
		`EdgeUnit factory: TunnelConnected=True: All 3 tunnel agents are connected`,
		`label node spare-1 edge\.edgeunit\.io/nodepool=factory-a`,
		`kill -STOP \d+`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("output does not match %s:\n%s", re, text)
		}
	}
	if regexp.MustCompile(`node/spare-1\s.*pool-type`).MatchString(text) {
		t.Errorf("spare-1 belongs to no pool but carries pool labels:\n%s", text)
	}
	assertCleanedUp(t, text, kubeconfig)
}

// TestSIGTERM runs the demo until it is ready, uses the kubeconfig it
// printed, then stops it with SIGTERM and checks that it cleaned up.
func TestSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd, kubeconfig := demoCmd(t, ctx)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		output strings.Builder
	)
	ready := make(chan struct{})
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			output.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "runs until you press Ctrl-C") {
				once.Do(func() { close(ready) })
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	text := func() string { mu.Lock(); defer mu.Unlock(); return output.String() }

	select {
	case <-ready:
	case <-copied:
		_ = cmd.Wait()
		t.Fatalf("edgeunit-demo exited before it was ready\nstdout:\n%s\nstderr:\n%s", text(), stderr.String())
	case <-ctx.Done():
		t.Fatalf("edgeunit-demo was not ready in time\nstdout:\n%s\nstderr:\n%s", text(), stderr.String())
	}

	// The kubeconfig works while the demo runs.
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("loading the printed kubeconfig: %v", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: controllers.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	var pools edgev1.NodePoolList
	if err := c.List(ctx, &pools); err != nil {
		t.Fatalf("listing NodePools with the printed kubeconfig: %v", err)
	}
	for _, p := range pools.Items {
		if !meta.IsStatusConditionTrue(p.Status.Conditions, edgev1.ConditionReady) {
			t.Errorf("NodePool %s is not Ready", p.Name)
		}
	}
	// The tunnel runs while the demo does.
	var te edgev1.TunnelEndpoint
	if err := c.Get(ctx, client.ObjectKey{Name: "tunnel"}, &te); err != nil {
		t.Fatal(err)
	}
	if te.Status.ConnectedAgents != 3 {
		t.Errorf("TunnelEndpoint tunnel: connectedAgents %d, want 3", te.Status.ConnectedAgents)
	}
	var unit edgev1.EdgeUnit
	if err := c.Get(ctx, client.ObjectKey{Name: "factory"}, &unit); err != nil {
		t.Fatal(err)
	}
	if !meta.IsStatusConditionTrue(unit.Status.Conditions, edgev1.ConditionTunnelConnected) {
		t.Errorf("EdgeUnit factory is not TunnelConnected: %+v", unit.Status.Conditions)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-copied
	if err := cmd.Wait(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Errorf("edgeunit-demo exited with %d after SIGTERM, want 0\nstderr:\n%s", exit.ExitCode(), stderr.String())
		} else {
			t.Fatal(err)
		}
	}
	if !strings.Contains(stderr.String(), "Received terminated") {
		t.Errorf("stderr does not acknowledge the signal:\n%s", stderr.String())
	}
	assertCleanedUp(t, text(), kubeconfig)
}

var pidRE = regexp.MustCompile(`(tunnel-server|tunnel-agent \S+)\s+pid (\d+)`)

// assertCleanedUp checks that the demo's working directory and kubeconfig
// are gone, that no process (kube-apiserver, etcd, the tunnel's) still uses
// the directory, and that the tunnel processes it printed are gone.
func assertCleanedUp(t *testing.T, output, kubeconfig string) {
	t.Helper()
	pids := map[string]string{}
	for _, m := range pidRE.FindAllStringSubmatch(output, -1) {
		pids[m[2]] = m[1]
	}
	if len(pids) != 4 {
		t.Errorf("output names %d tunnel processes (%v), want a server and 3 agents:\n%s", len(pids), pids, output)
	}
	for pid, name := range pids {
		n, err := strconv.Atoi(pid)
		if err != nil {
			t.Fatal(err)
		}
		if testenv.Running(n, strings.Fields(name)[0]) {
			t.Errorf("%s (pid %d) is still there after the demo exited", name, n)
		}
	}
	m := workDirRE.FindStringSubmatch(output)
	if m == nil {
		t.Fatalf("output does not name the working directory:\n%s", output)
	}
	workDir := m[1]
	for _, p := range []string{workDir, kubeconfig} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left behind (stat: %v)", p, err)
		}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(workDir)) {
			t.Errorf("process %s still runs: %s", e.Name(), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		}
	}
}
