// Package tunnel is the integration test of the reverse tunnel: the real
// tunnel-server and tunnel-agent binaries, a real kube-apiserver whose
// egress selector points at the server, and a kubelet stand-in in a network
// namespace that the control plane cannot route to.
package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/testenv"
)

func TestTunnelIntegration(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Tunnel integration")
}

var (
	repoRoot string
	binDir   string
	k8s      client.Client
	env      *envtest.Environment
	kubecfg  string
)

// proc is a process the test started; only it is ever killed.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = GinkgoWriter.Write(b)
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) stop() {
	GinkgoHelper()
	Expect(p.kill()).To(Succeed())
}

// kill ends the process and waits for it.
func (p *proc) kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("process %d (%s) did not exit after SIGKILL", p.cmd.Process.Pid, p.cmd.Path)
	}
}

var (
	procsMu sync.Mutex
	procs   []*proc
)

// start runs a binary. Every process started is killed by stopAll, which
// the suite registers once, so a process started in one spec may outlive it
// (a restarted server) and is still cleaned up if a later spec fails. The
// kernel kills it if the test binary dies first (a go test timeout); agents
// run through `ip netns exec`, which execs the agent in place, so the signal
// reaches the agent itself.
func start(name string, args ...string) *proc {
	p := &proc{cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	Expect(p.cmd.Start()).To(Succeed())
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p
}

// stopAll kills the processes this test started, newest first; one that
// does not exit fails the suite after the others were stopped.
func stopAll() {
	procsMu.Lock()
	defer procsMu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].kill(); err != nil {
			errs = append(errs, err)
		}
	}
	procs = nil
	Expect(errors.Join(errs...)).NotTo(HaveOccurred())
}

// freePort returns a port on host nothing listens on, outside the ephemeral
// range so a server restarted on it finds it free again.
func freePort(host string) int {
	p, err := testenv.RestartablePort(host)
	Expect(err).NotTo(HaveOccurred())
	return p
}

func writeFile(dir, name string, data []byte) string {
	p := filepath.Join(dir, name)
	Expect(os.WriteFile(p, data, 0o600)).To(Succeed())
	return p
}

// kubectlCommand is kubectl against the test's kube-apiserver, killed when
// ctx ends or the test binary dies.
func kubectlCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubecfg}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// kubectl runs a kubectl command to completion and returns its combined
// output.
func kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := kubectlCommand(ctx, append([]string{"--request-timeout", "20s"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// startKubectl starts a long-running kubectl (port-forward) bound to ctx. It
// is killed and waited for when the spec ends, whichever way it ends.
func startKubectl(ctx context.Context, args ...string) *proc {
	p := &proc{cmd: kubectlCommand(ctx, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	Expect(p.cmd.Start()).To(Succeed())
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	DeferCleanup(p.kill)
	return p
}

var _ = BeforeSuite(func() {
	// As internal/testenv/suite: generous on a loaded machine.
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	var err error
	repoRoot, err = testenv.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	binDir = GinkgoT().TempDir()
	build := exec.Command("go", "build", "-o", binDir+"/", "./cmd/tunnel-server", "./cmd/tunnel-agent")
	build.Dir = repoRoot
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "building the tunnel binaries: %s", out)
})

// startControlPlane starts kube-apiserver (and etcd) with an egress selector
// sending the cluster egress over HTTP CONNECT with TLS client certificates
// to connectAddr.
func startControlPlane(dir, connectAddr, caFile, certFile, keyFile string) {
	assets, err := testenv.AssetsDir()
	Expect(err).NotTo(HaveOccurred())
	egress := fmt.Sprintf(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      tcp:
        url: https://%s
        tlsConfig:
          caBundle: %s
          clientCert: %s
          clientKey: %s
`, connectAddr, caFile, certFile, keyFile)
	egressFile := writeFile(dir, "egress.yaml", []byte(egress))
	env = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(repoRoot, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		// As internal/testenv: the 20 s defaults are too tight under load.
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	apiServer := env.ControlPlane.GetAPIServer().Configure()
	apiServer.Append("egress-selector-config-file", egressFile)
	// Service webhooks and APIServices are dialled at an endpoint of their
	// Service rather than its ClusterIP, which nothing routes here; both go
	// over the cluster egress either way (URL webhooks go over the
	// controlplane egress, which is not the tunnel's).
	apiServer.Append("enable-aggregator-routing", "true")
	cfg, err := env.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })

	user, err := env.ControlPlane.AddUser(envtest.User{Name: "tunnel-test-admin", Groups: []string{"system:masters"}}, cfg)
	Expect(err).NotTo(HaveOccurred())
	kc, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	kubecfg = writeFile(dir, "kubeconfig", kc)

	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(edgev1.AddToScheme(scheme)).To(Succeed())
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
}

func itoa(i int) string { return strconv.Itoa(i) }

var _ = io.Discard
