package benchutil

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// Memory returns this process's peak RSS since ResetPeakRSS, its RSS after
// a GC, and the Go heap in use, in MiB.
func Memory() (peak, rss, heap float64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = float64(ms.HeapInuse) / (1 << 20)
	peak, rss, _ = ProcMemory("self")
	return peak, rss, heap
}

// ProcMemory returns a process's peak RSS (VmHWM) and RSS (VmRSS) in MiB;
// pid is a number or "self".
func ProcMemory(pid string) (peak, rss float64, err error) {
	raw, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		var kb float64
		switch {
		case strings.HasPrefix(line, "VmHWM:"):
			if _, err := fmt.Sscanf(strings.TrimPrefix(line, "VmHWM:"), "%f", &kb); err == nil {
				peak = kb / 1024
			}
		case strings.HasPrefix(line, "VmRSS:"):
			if _, err := fmt.Sscanf(strings.TrimPrefix(line, "VmRSS:"), "%f", &kb); err == nil {
				rss = kb / 1024
			}
		}
	}
	return peak, rss, nil
}

// ResetPeakRSS resets this process's VmHWM (Linux >= 4.0) so a scenario
// reports its own peak; best effort.
func ResetPeakRSS() {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}
