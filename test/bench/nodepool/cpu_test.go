package nodepool_test

import (
	"fmt"

	"github.com/edgeunit/edgeunit/test/bench/benchutil"
)

// cpuSample is CPU time used so far by this process, its child processes
// (kube-apiserver and etcd) and the whole machine.
type cpuSample struct{ benchutil.CPUSample }

func sampleCPU() cpuSample { return cpuSample{benchutil.SampleCPU()} }

// cpuUse is CPU used between two samples, in cores.
type cpuUse struct{ benchutil.CPUUse }

func (s cpuSample) since(o cpuSample) cpuUse { return cpuUse{s.Since(o.CPUSample)} }

func (u cpuUse) String() string {
	return fmt.Sprintf("bench process (manager + clients) %.2f, kube-apiserver %.2f, etcd %.2f; whole machine %.2f of %d cores busy",
		u.Self, u.Children["kube-apiserver"], u.Children["etcd"], u.Machine, benchutil.NumCPU())
}
