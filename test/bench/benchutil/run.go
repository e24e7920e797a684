package benchutil

import (
	"context"
	"testing"
	"time"
)

// LastRun runs run b.N times, each time with the timer stopped (run starts
// it around what it times), and returns what the last run measured.
func LastRun[R any](b *testing.B, run func(*testing.B) R) R {
	var r R
	for range b.N {
		b.StopTimer()
		r = run(b)
	}
	return r
}

// Verdict is "ok" when a figure met its target and "MISSED" when not.
func Verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

// SteadyStateWrites watches a steady state of d, in which nothing changes
// and the code under test should not write: it reads writes, a cumulative
// count of its writes that stood at from, each second, and returns when,
// since start, the count rose. Sampling each second tells a trailing write
// from a periodic one. It fails tb if ctx ends first.
func SteadyStateWrites[N Number](ctx context.Context, tb testing.TB, d time.Duration, start time.Time, from N, writes func() N) []time.Duration {
	tb.Helper()
	var times []time.Duration
	prev := from
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		select {
		case <-tick.C:
			if w := writes(); w > prev {
				times = append(times, time.Since(start).Round(time.Second))
				prev = w
			}
		case <-deadline.C:
			return times
		case <-ctx.Done():
			tb.Fatalf("Steady state interrupted: %v", ctx.Err())
		}
	}
}

// SteadyStateVerified takes the result of checking the state after a
// steady state (why: what is wrong, "" when nothing is) and reports whether
// it still holds; it fails tb when the check failed and marks tb failed
// when the state regressed.
func SteadyStateVerified(tb testing.TB, why string, err error) bool {
	tb.Helper()
	if err != nil {
		tb.Fatalf("Verifying after the steady state: %v", err)
	}
	if why != "" {
		tb.Errorf("State regressed during the steady state: %s", why)
	}
	return why == ""
}
