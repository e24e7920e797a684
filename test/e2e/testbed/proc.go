//go:build linux

package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a process the testbed started. It dies with the test binary
// (SIGKILL on the parent's death) and is stopped by PID, never by name.
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// startProc starts argv with its output in logPath (appended, so a
// restarted process keeps its earlier log). With cgroup set, the process
// joins that cgroup (every v1 hierarchy) before it execs argv, so nothing
// it forks escapes the node's cgroup tree.
func startProc(name, logPath string, cg *cgroup, env []string, argv ...string) (*Proc, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logf.Close() }()
	fmt.Fprintf(logf, "=== %s starting: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	if cg != nil {
		// The shell moves itself into the cgroup, then becomes argv.
		var join strings.Builder
		for _, p := range cg.paths {
			fmt.Fprintf(&join, "echo $$ > %s/cgroup.procs && ", shellQuote(p))
		}
		argv = append([]string{"/bin/sh", "-c", join.String() + `exec "$@"`, "sh"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// PID is the process's ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited says whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// Stop ends the process: SIGTERM, then SIGKILL after grace. It says so
// when the process outlives both.
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		return p.Kill()
	}
}

// Kill ends the process at once (a power cut) and waits for it.
func (p *Proc) Kill() error {
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s (pid %d) still runs 30 s after SIGKILL", p.Name, p.PID())
	}
}

// Tail is the end of the process's log, for failure messages.
func (p *Proc) Tail(lines int) string { return tail(p.Log, lines) }

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return "\n--- " + path + " ---\n" + strings.Join(all, "\n")
}

// commandTimeout bounds every short command the testbed runs (ip, mount,
// ctr, nsenter ...), so a hung one fails the step instead of the run.
const commandTimeout = 2 * time.Minute

// run runs a short command and returns its combined output.
func run(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// errs collects errors of cleanup steps that all must run.
type errs struct{ list []error }

func (e *errs) add(err error) {
	if err != nil {
		e.list = append(e.list, err)
	}
}

func (e *errs) err() error { return errors.Join(e.list...) }
