package demo

import (
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

// processStopTimeout bounds how long a child gets to exit after SIGTERM
// before it is killed, and then how long the kill may take.
const processStopTimeout = 5 * time.Second

// process is a child the demo started (tunnel-server, tunnel-agent). Its
// output goes to a log file in the working directory.
type process struct {
	// Name says what it is, for messages: "tunnel-agent factory-a-1".
	Name string
	// PID is its process id.
	PID int
	// Log is the file its stdout and stderr go to.
	Log string
	// stopTimeout is how long it gets to exit after SIGTERM;
	// processStopTimeout when zero.
	stopTimeout time.Duration

	cmd  *exec.Cmd
	done chan struct{}
	// err is what Wait returned; read it only after done is closed.
	err error
}

// processes are the children of one demo. Stop ends them by PID; an exit
// that Stop did not cause is reported on Exited.
type processes struct {
	mu       sync.Mutex
	list     []*process
	stopping bool
	// exited receives each process that exits on its own. Buffered so a
	// demo that no longer reads it never blocks a waiter.
	exited chan *process
}

func newProcesses() *processes {
	return &processes{exited: make(chan *process, 64)}
}

// start runs bin with args, output to logPath. The child is put into its
// own process group, so a Ctrl-C in the terminal reaches only the demo,
// which then stops its children in order; on Linux the child is also
// killed should the demo itself die without cleaning up.
func (ps *processes) start(name, bin string, args []string, logPath string) (*process, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.stopping {
		return nil, fmt.Errorf("starting %s: the demo is stopping", name)
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	defer logFile.Close() // The child holds its own descriptor.
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &process{Name: name, PID: cmd.Process.Pid, Log: logPath, cmd: cmd, done: make(chan struct{})}
	ps.list = append(ps.list, p)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		ps.mu.Lock()
		stopping := ps.stopping
		ps.mu.Unlock()
		if !stopping {
			select {
			case ps.exited <- p:
			default:
			}
		}
	}()
	return p, nil
}

// Exited reports whether the process has exited, and how.
func (p *process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// exitError describes how a process ended, with the end of its log.
func (p *process) exitError() error {
	why := "exited"
	if p.err != nil {
		why = p.err.Error()
	}
	return fmt.Errorf("%s (pid %d) %s%s", p.Name, p.PID, why, logTail(p.Log, 15))
}

// stop sends SIGTERM, waits (stopTimeout), then SIGKILL. It is a no-op for a process that
// has exited already.
func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping %s (pid %d): %w", p.Name, p.PID, err)
	}
	grace := p.stopTimeout
	if grace == 0 {
		grace = processStopTimeout
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing %s (pid %d): %w", p.Name, p.PID, err)
	}
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %s and was killed", p.Name, p.PID, grace)
	case <-time.After(processStopTimeout):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, p.PID)
	}
}

// stopAll stops every process, the last started first (agents before their
// server), and keeps any further exit from being reported.
func (ps *processes) stopAll() error {
	ps.mu.Lock()
	ps.stopping = true
	list := ps.list
	ps.mu.Unlock()
	var errs []error
	for i := len(list) - 1; i >= 0; i-- {
		if err := list[i].stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// all lists the processes started so far, running or not.
func (ps *processes) all() []*process {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]*process(nil), ps.list...)
}

// logTail returns the last lines of a log file for an error message.
func logTail(path string, lines int) string {
	raw, err := os.ReadFile(path)
	if err != nil || len(raw) == 0 {
		return ""
	}
	l := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return fmt.Sprintf("\n--- last lines of %s ---\n%s", filepath.Base(path), strings.Join(l, "\n"))
}
