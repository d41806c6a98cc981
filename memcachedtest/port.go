package memcachedtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// FreePort returns a free loopback TCP port below the kernel's ephemeral
// range (net.ipv4.ip_local_port_range on Linux, 32768 when it cannot be
// read), not handed out before by this process.
//
// A fault test stops a server and starts it again on the same port. A port
// from the ephemeral range — what listening on port 0 returns — may be taken
// meanwhile as the local port of an outgoing connection (this machine's
// database and memcached clients open many), and the restart then fails with
// "address already in use". Below the range only another listener can take
// it. When no such port is free it falls back to the kernel's choice.
func FreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	low := ephemeralLow()
	if first := max(low-16384, 10000); first < low {
		for range 100 {
			p := first + rand.IntN(low-first)
			if portsGiven[p] {
				continue
			}
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				continue
			}
			l.Close()
			portsGiven[p] = true
			return p, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("memcachedtest: no free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}
