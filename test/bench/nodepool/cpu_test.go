package nodepool_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// cpuSample is CPU time used so far by this process, its child processes
// (kube-apiserver and etcd, by command name) and the whole machine.
type cpuSample struct {
	at                   time.Time
	self                 time.Duration
	children             map[string]time.Duration
	machineBusy, machine time.Duration // all CPUs
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now(), children: map[string]time.Duration{}}
	self := os.Getpid()
	s.self, _, _ = procCPU(strconv.Itoa(self))
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid := filepath.Base(d)
		cpu, comm, ppid := procCPU(pid)
		if ppid == self {
			s.children[comm] += cpu
		}
	}
	if raw, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(raw), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			d := time.Duration(n) * time.Second / clockTicks
			s.machine += d
			if i != 3 && i != 4 { // idle, iowait
				s.machineBusy += d
			}
		}
	}
	return s
}

// procCPU returns a process's user+system CPU time, command and parent.
func procCPU(pid string) (time.Duration, string, int) {
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, "", 0
	}
	// pid (comm) state ppid ... utime(14) stime(15); comm may hold spaces.
	s := string(raw)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return 0, "", 0
	}
	comm := s[open+1 : closing]
	f := strings.Fields(s[closing+1:])
	if len(f) < 13 {
		return 0, comm, 0
	}
	ppid, _ := strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks, comm, ppid
}

// cpuUse is CPU used between two samples, in cores.
type cpuUse struct {
	bench, apiserver, etcd, machine float64
}

func (s cpuSample) since(o cpuSample) cpuUse {
	wall := s.at.Sub(o.at).Seconds()
	if wall <= 0 {
		return cpuUse{}
	}
	cores := func(d time.Duration) float64 { return d.Seconds() / wall }
	u := cpuUse{
		bench:     cores(s.self - o.self),
		apiserver: cores(s.children["kube-apiserver"] - o.children["kube-apiserver"]),
		etcd:      cores(s.children["etcd"] - o.children["etcd"]),
	}
	if total := s.machine - o.machine; total > 0 {
		// Busy share of all CPUs, scaled to cores.
		u.machine = float64(s.machineBusy-o.machineBusy) / float64(total) * float64(numCPU())
	}
	return u
}

func (u cpuUse) String() string {
	return fmt.Sprintf("bench process (manager + clients) %.2f, kube-apiserver %.2f, etcd %.2f; whole machine %.2f of %d cores busy",
		u.bench, u.apiserver, u.etcd, u.machine, numCPU())
}

func numCPU() int {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "cpu") && len(line) > 3 && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	return n
}
