package memcachedtest

import (
	"net"
	"strconv"
	"testing"
)

func TestFreePortBelowEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 20 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if low > 10000 && p >= low {
			t.Errorf("FreePort() = %d, inside the ephemeral range (from %d)", p, low)
		}
		if seen[p] {
			t.Errorf("FreePort() handed out %d twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d from FreePort is not free: %v", p, err)
		}
		l.Close()
	}
}
