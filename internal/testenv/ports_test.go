package testenv

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestRestartablePortIsFreeAndBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		p, err := RestartablePort("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if low-lowestPort >= 1000 && (p < lowestPort || p >= low) {
			t.Fatalf("port %d outside [%d, %d)", p, lowestPort, low)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		_ = l.Close()
	}
}

func TestRestartablePortNeverRepeatsAndIsReserved(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p, err := RestartablePort("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d given out twice", p)
		}
		seen[p] = true
		if ephemeralLow()-lowestPort < 1000 {
			continue
		}
		// Another process could not reserve it: a second lock on the
		// same file fails while this process holds the first.
		if f, err := reserve(filepath.Join(os.TempDir(), "edgeunit-test-ports"), p); err == nil {
			_ = f.Close()
			t.Fatalf("port %d could be reserved again", p)
		}
	}
}
