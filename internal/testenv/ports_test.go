package testenv

import (
	"net"
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
