package edgeunit_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/test/bench/benchutil"
)

// managerProc is the real manager binary, run as its own process so its
// memory is its own.
type managerProc struct {
	cmd        *exec.Cmd
	done       chan struct{} // closed when the process exited
	waitErr    error
	logPath    string
	metricsURL string
	http       *http.Client
}

// buildManager builds ./cmd/manager into dir.
func buildManager(ctx context.Context, dir string) (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "manager")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/manager")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/manager: %w\n%s", err, out)
	}
	return bin, nil
}

// writeKubeconfig writes a kubeconfig for cfg (envtest's admin user).
func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*kc, path)
}

// startManager runs bin against the apiserver of kubeconfig and waits until
// the controllers named in controllerNames started their workers (their
// caches synced). stop is safe to call more than once.
func startManager(ctx context.Context, b *testing.B, bin, kubeconfig, dir string) *managerProc {
	b.Helper()
	port, err := testenv.RestartablePort("127.0.0.1")
	if err != nil {
		b.Fatalf("Finding a free port: %v", err)
	}
	logPath := filepath.Join(dir, "manager.log")
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatalf("Creating the manager's log: %v", err)
	}
	cmd := exec.Command(bin,
		"--enable-webhooks=false",
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(port),
		"--health-probe-bind-address=0",
		"--namespace="+managerNamespace,
	)
	// Extra flags for experiments, such as --concurrency=32.
	cmd.Args = append(cmd.Args, strings.Fields(os.Getenv("BENCH_EDGEUNIT_MANAGER_ARGS"))...)
	// BENCH_EDGEUNIT_MANAGER_ENV adds environment variables, such as
	// GOMEMLIMIT=100MiB.
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+kubeconfig), strings.Fields(os.Getenv("BENCH_EDGEUNIT_MANAGER_ENV"))...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should the bench die without its cleanup, the manager dies too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		b.Fatalf("Starting the manager: %v", err)
	}
	m := &managerProc{
		cmd: cmd, done: make(chan struct{}), logPath: logPath,
		metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", port),
		http:       &http.Client{Timeout: 10 * time.Second},
	}
	go func() {
		m.waitErr = cmd.Wait()
		logf.Close()
		close(m.done)
	}()
	b.Cleanup(m.stop)

	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		started := m.startedControllers()
		missing := 0
		for _, c := range controllerNames {
			if !started[c] {
				missing++
			}
		}
		if missing == 0 {
			if _, err := m.scrape(wctx); err == nil {
				return m
			}
		}
		select {
		case <-m.done:
			b.Fatalf("The manager exited while starting: %v; log:\n%s", m.waitErr, m.logTail(40))
		case <-wctx.Done():
			m.stop()
			b.Fatalf("The manager did not start its controllers within 2 minutes (%d of %d missing); log:\n%s", missing, len(controllerNames), m.logTail(40))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM to the process this bench started and, after 30 s,
// SIGKILL; it waits for the process to exit.
func (m *managerProc) stop() {
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

func (m *managerProc) pid() string { return strconv.Itoa(m.cmd.Process.Pid) }

// scrape reads the manager's metrics.
func (m *managerProc) scrape(ctx context.Context) (metricSet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping the manager's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping the manager's metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// startedControllers returns the controllers that logged "Starting
// workers", which they do once their caches synced.
func (m *managerProc) startedControllers() map[string]bool {
	out := map[string]bool{}
	raw, err := os.ReadFile(m.logPath)
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `"Starting workers"`) {
			continue
		}
		for _, c := range controllerNames {
			if strings.Contains(line, `"controller":"`+c+`"`) {
				out[c] = true
			}
		}
	}
	return out
}

// loggedErrors returns the number of error lines in the manager's log and
// the first few.
func (m *managerProc) loggedErrors(first int) (int, []string) {
	f, err := os.Open(m.logPath)
	if err != nil {
		return 0, nil
	}
	defer f.Close()
	n := 0
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.Contains(line, `"level":"error"`) {
			n++
			if len(out) < first {
				out = append(out, truncate(line, 600))
			}
		}
	}
	return n, out
}

func (m *managerProc) logTail(lines int) string {
	raw, err := os.ReadFile(m.logPath)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	for i := range all {
		all[i] = truncate(all[i], 400)
	}
	return strings.Join(all, "\n")
}

// memory returns the manager's peak RSS (VmHWM) and RSS, in MiB.
func (m *managerProc) memory() (peak, rss float64, err error) {
	select {
	case <-m.done:
		return 0, 0, errors.New("the manager exited")
	default:
	}
	return benchutil.ProcMemory(m.pid())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
