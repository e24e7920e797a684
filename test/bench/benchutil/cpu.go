package benchutil

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// CPUSample is CPU time used so far by this process, its child processes
// (kube-apiserver, etcd, a manager binary: by command name) and the whole
// machine.
type CPUSample struct {
	At                   time.Time
	Self                 time.Duration
	Children             map[string]time.Duration
	MachineBusy, Machine time.Duration // all CPUs
}

// SampleCPU reads the CPU times now.
func SampleCPU() CPUSample {
	s := CPUSample{At: time.Now(), Children: map[string]time.Duration{}}
	self := os.Getpid()
	s.Self, _, _ = ProcCPU(strconv.Itoa(self))
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid := filepath.Base(d)
		cpu, comm, ppid := ProcCPU(pid)
		if ppid == self {
			s.Children[comm] += cpu
		}
	}
	if raw, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(raw), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			d := time.Duration(n) * time.Second / clockTicks
			s.Machine += d
			if i != 3 && i != 4 { // idle, iowait
				s.MachineBusy += d
			}
		}
	}
	return s
}

// ProcCPU returns a process's user+system CPU time, command and parent.
func ProcCPU(pid string) (time.Duration, string, int) {
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

// CPUUse is CPU used between two samples, in cores.
type CPUUse struct {
	Self     float64
	Children map[string]float64 // by command name
	Machine  float64            // busy share of all CPUs, scaled to cores
}

// Since returns the CPU used from o to s.
func (s CPUSample) Since(o CPUSample) CPUUse {
	u := CPUUse{Children: map[string]float64{}}
	wall := s.At.Sub(o.At).Seconds()
	if wall <= 0 {
		return u
	}
	cores := func(d time.Duration) float64 { return d.Seconds() / wall }
	u.Self = cores(s.Self - o.Self)
	for comm, d := range s.Children {
		u.Children[comm] = cores(d - o.Children[comm])
	}
	if total := s.Machine - o.Machine; total > 0 {
		u.Machine = float64(s.MachineBusy-o.MachineBusy) / float64(total) * float64(NumCPU())
	}
	return u
}

// NumCPU is the number of CPUs /proc/stat lists.
func NumCPU() int {
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

// LoadAverage is /proc/loadavg's first three fields ("1.00 0.50 0.25").
func LoadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
