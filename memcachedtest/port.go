package memcachedtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// FreePort returns a free loopback TCP port below the kernel's ephemeral
// range (net.ipv4.ip_local_port_range on Linux, 32768 when it cannot be
// read), reserved for this process until it exits.
//
// A fault test stops a server and starts it again on the same port. A port
// from the ephemeral range — what listening on port 0 returns — may be taken
// meanwhile as the local port of an outgoing connection (this machine's
// database and memcached clients open many), and the restart then fails with
// "address already in use". Below the range only another listener can take
// it, and FreePort never hands a port out twice: within the process by
// memory, across processes (go test runs packages in parallel) by an
// advisory lock on a file per port in the temporary directory. When no such
// port is free it falls back to the kernel's choice.
func FreePort() (int, error) {
	low := ephemeralLow()
	if p, ok := freePortIn(max(low-16384, 10000), low); ok {
		return p, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("memcachedtest: no free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ReleasePort hands back a port FreePort gave out, once nothing listens on it
// (a test's cleanup), so that a long run — a soak of thousands of fault
// histories in one process — does not use up the ports below the ephemeral
// range and fall back to ones an outgoing connection may take. A port
// FreePort did not give out is ignored. Start releases its servers' ports
// when their test ends.
func ReleasePort(port int) {
	portsMu.Lock()
	defer portsMu.Unlock()
	if lock, ok := portsGiven[port]; ok {
		lock.Close()
		delete(portsGiven, port)
	}
}

// freePortIn returns a free port in [first, end) that no process has
// reserved, and reserves it; false when 100 random tries found none.
func freePortIn(first, end int) (int, bool) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for i := 0; i < 100 && first < end; i++ {
		p := first + rand.IntN(end-first)
		if _, ok := portsGiven[p]; ok {
			continue
		}
		lock := reserve(p)
		if lock == nil {
			continue // another process holds it
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			lock.Close()
			continue
		}
		l.Close()
		portsGiven[p] = lock // held open: the lock lasts as long as the process
		return p, true
	}
	return 0, false
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]*os.File{}
)

// reserve takes the lock on port's file, or returns nil when another
// process holds it (or the file cannot be made).
func reserve(port int) *os.File {
	dir := filepath.Join(os.TempDir(), "memcachedtest-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil
	}
	return f
}

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
