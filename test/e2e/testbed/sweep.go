//go:build linux

package testbed

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Names of what a testbed makes on the machine, for sweepStale.
const (
	linkNamePrefix   = "eue2e"
	cgroupNamePrefix = "edgeunit-e2e-"
)

// hostDirsRecord lists the mount points testbeds created on the machine,
// so that a later testbed removes those a killed one left.
var hostDirsRecord = filepath.Join(os.TempDir(), "edgeunit-e2e-host-dirs")

// staleNSMount matches the namespace files of testbed directories.
var staleNSMount = regexp.MustCompile(`/edgeunit-(e2e|bench-realnode)-[^/]+/ns(/|$)`)

// sweepStale removes what an earlier testbed that was killed (a test
// binary's timeout, SIGKILL) left behind: its links and network
// namespaces, its mount namespace files, its cgroups with whatever still
// runs in them (everything a testbed starts runs in its cgroups), and
// the empty mount points it created. Called under the machine-wide
// testbed lock, so no live testbed owns them.
func sweepStale() error {
	var e errs
	if out, err := run("ip", "-o", "link", "show"); err == nil {
		for line := range strings.SplitSeq(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if strings.HasPrefix(name, linkNamePrefix) {
				_, err := run("ip", "link", "del", name)
				e.add(err)
			}
		}
	}
	if out, err := run("ip", "netns", "list"); err == nil {
		for line := range strings.SplitSeq(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], linkNamePrefix+"-") {
				_, err := run("ip", "netns", "del", f[0])
				e.add(err)
			}
		}
	}
	var mounts []string
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) > 4 && staleNSMount.MatchString(fields[4]) {
				mounts = append(mounts, fields[4])
			}
		}
		_ = f.Close()
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		_, err := run("umount", "-l", m)
		e.add(err)
	}
	if hs, err := v1Hierarchies(); err == nil {
		for _, h := range hs {
			stale, _ := filepath.Glob(filepath.Join(h, ownCgroupBase(), cgroupNamePrefix+"*"))
			for _, dir := range stale {
				cg := &cgroup{rel: strings.TrimPrefix(dir, h), paths: []string{dir}}
				e.add(cg.killAll(processKillBound))
				e.add(cg.removeAll(processKillBound))
			}
		}
	}
	if b, err := os.ReadFile(hostDirsRecord); err == nil {
		for d := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
			if d != "" {
				if err := removeEmptyTree(d); err != nil && !errors.Is(err, os.ErrNotExist) {
					e.add(fmt.Errorf("a mount point an earlier testbed made: %w", err))
				}
			}
		}
		e.add(os.Remove(hostDirsRecord))
	}
	if err := e.err(); err != nil {
		return fmt.Errorf("removing what an earlier testbed left: %w", err)
	}
	return nil
}

// recordHostDir notes a mount point this testbed created.
func recordHostDir(d string) error {
	f, err := os.OpenFile(hostDirsRecord, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, d)
	return errors.Join(err, f.Close())
}

// forgetHostDirs drops the record once none of the mount points in it
// exists any more.
func forgetHostDirs() error {
	b, err := os.ReadFile(hostDirsRecord)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for d := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		if _, err := os.Stat(d); d != "" && err == nil {
			return nil // the next testbed's sweep removes it
		}
	}
	return os.Remove(hostDirsRecord)
}
