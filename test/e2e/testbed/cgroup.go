//go:build linux

package testbed

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroup is one cgroup, at the same path in every cgroup v1 hierarchy (the
// kubelet's cgroupfs driver wants its cgroupRoot in all of them).
type cgroup struct {
	// rel is the path below each hierarchy's root, e.g.
	// /edgeunit-e2e-1a2b/edge-1.
	rel   string
	paths []string
	// created are the directories above rel that newCgroup made (the
	// test's own cgroup path exists only in some hierarchies), deepest
	// first.
	created []string
}

// v1Hierarchies are the mount points of this machine's cgroup v1
// hierarchies (and of the unified one beside them, on a hybrid machine).
func v1Hierarchies() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID parent major:minor root mountpoint options ... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		// cgroup2 too: on a hybrid machine runc also makes each
		// container's cgroup in the unified hierarchy.
		if ok && len(fields) >= 5 && len(postFields) >= 1 && (postFields[0] == "cgroup" || postFields[0] == "cgroup2") {
			out = append(out, fields[4])
		}
	}
	if len(out) == 0 || (len(out) == 1 && !strings.HasPrefix(out[0], "/sys/fs/cgroup/")) {
		return nil, errors.New("no cgroup v1 hierarchy is mounted: the testbed's kubelets run on cgroup v1 (failCgroupV1: false)")
	}
	slices.Sort(out)
	return out, sc.Err()
}

// ownCgroupBase is where the test process's memory cgroup is, so the
// testbed's cgroups nest under it there (and its memory limit, if any,
// holds for the nodes too).
func ownCgroupBase() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "/"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), "memory") {
			return parts[2]
		}
	}
	return "/"
}

// newCgroup creates rel in every hierarchy. Each new cpuset level gets its
// parent's cpus and mems, without which no process may join it.
func newCgroup(rel string) (*cgroup, error) {
	hs, err := v1Hierarchies()
	if err != nil {
		return nil, err
	}
	c := &cgroup{rel: path.Clean(rel)}
	for _, h := range hs {
		p := filepath.Join(h, c.rel)
		var made []string
		err := mkdirCgroup(h, p, &made)
		for _, d := range made {
			if d != p {
				c.created = append(c.created, d)
			}
		}
		if err != nil {
			return c, err
		}
		c.paths = append(c.paths, p)
	}
	slices.SortFunc(c.created, func(a, b string) int { return len(b) - len(a) })
	return c, nil
}

// removeCreatedParents removes the directories above c that newCgroup
// made, once empty.
func (c *cgroup) removeCreatedParents() error {
	var left []string
	for _, d := range c.created {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			left = append(left, d)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("cgroups not removed: %v", left)
	}
	return nil
}

func mkdirCgroup(root, p string, made *[]string) error {
	if p == root {
		return nil
	}
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := mkdirCgroup(root, filepath.Dir(p), made); err != nil {
		return err
	}
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating cgroup %s: %w", p, err)
	} else if err == nil {
		*made = append(*made, p)
	}
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		if _, err := os.Stat(filepath.Join(p, f)); err != nil {
			continue
		}
		v, err := os.ReadFile(filepath.Join(filepath.Dir(p), f))
		if err == nil {
			err = os.WriteFile(filepath.Join(p, f), v, 0o644)
		}
		if err != nil {
			return fmt.Errorf("setting %s of cgroup %s: %w", f, p, err)
		}
	}
	return nil
}

func (c *cgroup) child(name string) (*cgroup, error) { return newCgroup(path.Join(c.rel, name)) }

// pids lists every process in the cgroup and its descendants.
func (c *cgroup) pids() []int {
	var out []int
	for _, root := range c.paths {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for f := range strings.FieldsSeq(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(out, pid) {
					out = append(out, pid)
				}
			}
			return nil
		})
	}
	return out
}

// killAll SIGKILLs every process of the tree until none is left: all of
// them were started by the testbed (kubelet, containerd, shims and their
// containers).
func (c *cgroup) killAll(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids := c.pids()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of cgroup %s survived SIGKILL for %s", pids, c.rel, timeout)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeChildren removes every cgroup below c (not c), deepest first, as a
// reboot leaves none of a dead container's cgroups behind.
func (c *cgroup) removeChildren(timeout time.Duration) error {
	return c.remove(false, timeout)
}

// removeAll removes c and everything below it.
func (c *cgroup) removeAll(timeout time.Duration) error { return c.remove(true, timeout) }

func (c *cgroup) remove(self bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		for _, root := range c.paths {
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() && (self || p != root) {
					dirs = append(dirs, p)
				}
				return nil
			})
			// Deepest first.
			slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
			for _, d := range dirs {
				if err := syscall.Rmdir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
					left = append(left, d)
				}
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups not removed: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// adoptChildren moves this process's children with the given command
// names into c.
func (c *cgroup) adoptChildren(names ...string) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so from the
		// last ')'.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		j := strings.IndexByte(s, '(')
		if i < 0 || j < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(self) || !slices.Contains(names, s[j+1:i]) {
			continue
		}
		for _, p := range c.paths {
			if err := os.WriteFile(filepath.Join(p, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
				return fmt.Errorf("moving %s (pid %d) into cgroup %s: %w", s[j+1:i], pid, p, err)
			}
		}
	}
	return nil
}
