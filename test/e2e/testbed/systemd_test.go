//go:build linux

package testbed

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/edgeunit/edgeunit/internal/conversion"
)

// testWait bounds every wait of these tests.
const testWait = 10 * time.Second

// TestSystemdStandIn drives the stand-in as node conversion does: with
// go-systemd on a private connection, RestartUnit and the job's result
// from JobRemoved.
func TestSystemdStandIn(t *testing.T) {
	tests := map[string]struct {
		unit       string
		jobTimeout time.Duration
		wantResult string
		// wantError is the D-Bus error RestartUnit answers, if any.
		wantError string
		wantCalls map[string]int
	}{
		"a known unit restarts":  {unit: "kubelet.service", wantResult: "done", wantCalls: map[string]int{"kubelet.service": 1}},
		"a failed restart fails": {unit: "failing.service", wantResult: "failed", wantCalls: map[string]int{"failing.service": 1}},
		"a hung restart times out": {unit: "hung.service", jobTimeout: 200 * time.Millisecond, wantResult: "timeout",
			wantCalls: map[string]int{"hung.service": 1}},
		"an unknown unit is no such unit": {unit: "sshd.service", wantError: "org.freedesktop.systemd1.NoSuchUnit", wantCalls: map[string]int{}},
		"a unit name is exact":            {unit: "kubelet", wantError: "org.freedesktop.systemd1.NoSuchUnit", wantCalls: map[string]int{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			calls := map[string]int{}
			release := make(chan struct{})
			record := func(unit string, block bool, err error) func() error {
				return func() error {
					mu.Lock()
					calls[unit]++
					mu.Unlock()
					if block {
						<-release
					}
					return err
				}
			}
			units := map[string]func() error{
				"kubelet.service": record("kubelet.service", false, nil),
				"failing.service": record("failing.service", false, errors.New("kubelet exited")),
				"hung.service":    record("hung.service", true, nil),
			}
			if tc.jobTimeout == 0 {
				tc.jobTimeout = testWait
			}
			conn := dialStandIn(t, startTestStandIn(t, units, tc.jobTimeout))
			// Before the stand-in closes, which waits for a hung restart.
			t.Cleanup(func() { close(release) })

			result, err := restartUnit(t, conn, tc.unit)
			if tc.wantError != "" {
				var dbusErr godbus.Error
				if !errors.As(err, &dbusErr) || dbusErr.Name != tc.wantError {
					t.Fatalf("RestartUnit(%s) = %q, %v; want the error %s", tc.unit, result, err, tc.wantError)
				}
			} else if err != nil || result != tc.wantResult {
				t.Fatalf("RestartUnit(%s) = %q, %v; want %q", tc.unit, result, err, tc.wantResult)
			}
			mu.Lock()
			defer mu.Unlock()
			if !maps.Equal(calls, tc.wantCalls) {
				t.Errorf("restarts: %v, want %v", calls, tc.wantCalls)
			}
		})
	}

	t.Run("other methods are unknown", func(t *testing.T) {
		conn := dialStandIn(t, startTestStandIn(t, nil, testWait))
		_, err := conn.GetManagerProperty("Version")
		var dbusErr godbus.Error
		if !errors.As(err, &dbusErr) || dbusErr.Name != "org.freedesktop.DBus.Error.UnknownMethod" {
			t.Fatalf("GetManagerProperty = %v; want the error org.freedesktop.DBus.Error.UnknownMethod", err)
		}
	})

	t.Run("jobs of two clients end each their own", func(t *testing.T) {
		var mu sync.Mutex
		restarts := 0
		s := startTestStandIn(t, map[string]func() error{"kubelet.service": func() error {
			mu.Lock()
			defer mu.Unlock()
			restarts++
			return nil
		}}, testWait)
		a, b := dialStandIn(t, s), dialStandIn(t, s)
		for _, conn := range []*sddbus.Conn{a, b, a} {
			if result, err := restartUnit(t, conn, "kubelet.service"); err != nil || result != "done" {
				t.Fatalf("RestartUnit = %q, %v; want done", result, err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if restarts != 3 {
			t.Errorf("restarts: %d, want 3", restarts)
		}
	})

	t.Run("closing ends the connections", func(t *testing.T) {
		s := startTestStandIn(t, nil, testWait)
		conn := dialStandIn(t, s)
		if !conn.Connected() {
			t.Fatal("not connected")
		}
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
		if err := Poll(context.Background(), testWait, func() (bool, error) { return !conn.Connected(), nil }); err != nil {
			t.Fatalf("the client is still connected after close: %v", err)
		}
		if _, err := os.Stat(s.ln.Addr().String()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the socket outlives close: %v", err)
		}
	})
}

// startTestStandIn serves units on a socket of the test's, closed at
// its end.
func startTestStandIn(t *testing.T, units map[string]func() error, jobTimeout time.Duration) *systemdStandIn {
	t.Helper()
	// Short: a socket path has at most 107 bytes, and t.TempDir's
	// names the subtest.
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s, err := startSystemdStandIn(filepath.Join(dir, "private"), units, jobTimeout, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// dialStandIn connects as node conversion does on systemd's private
// socket: EXTERNAL authentication as our uid, no Hello. It checks that
// every message it gets has a serial of its own, as the D-Bus
// specification wants (godbus itself takes 0).
func dialStandIn(t *testing.T, s *systemdStandIn) *sddbus.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	t.Cleanup(cancel)
	var badSerial atomic.Bool
	t.Cleanup(func() {
		if badSerial.Load() {
			t.Error("a message came with serial 0")
		}
	})
	// The D-Bus specification forbids serial 0 (godbus takes it).
	conn, err := conversion.DialSystemd(ctx, s.ln.Addr().String(), godbus.WithIncomingInterceptor(func(m *godbus.Message) {
		if m.Serial() == 0 {
			badSerial.Store(true)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}

// restartUnit restarts unit and waits for its job's result.
func restartUnit(t *testing.T, conn *sddbus.Conn, unit string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	done := make(chan string, 1)
	if _, err := conn.RestartUnitContext(ctx, unit, "replace", done); err != nil {
		return "", err
	}
	select {
	case result := <-done:
		return result, nil
	case <-ctx.Done():
		t.Fatalf("no JobRemoved for %s within %s", unit, testWait)
		return "", nil
	}
}
