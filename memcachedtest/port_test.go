package memcachedtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
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

// A port reserved by one process is not handed out by another: go test
// runs packages in parallel, and a fault test's server must find its port
// free when it starts again. This process takes every free port of a small
// range; a child process asked for one of that range must find none.
func TestFreePortReservedAcrossProcesses(t *testing.T) {
	const size = 8
	if v := os.Getenv("MEMCACHEDTEST_PORT_CHILD"); v != "" {
		first, _ := strconv.Atoi(v)
		p, ok := freePortIn(first, first+size)
		fmt.Println("port", p, ok)
		return
	}
	first := 10000 + rand.IntN(6000)
	held := map[int]bool{}
	for range 100 {
		if p, ok := freePortIn(first, first+size); ok {
			held[p] = true
		}
	}
	if len(held) == 0 {
		t.Skipf("no free port in %d..%d", first, first+size-1)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFreePortReservedAcrossProcesses$")
	cmd.Env = append(os.Environ(), "MEMCACHEDTEST_PORT_CHILD="+strconv.Itoa(first))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var p int
	var ok bool
	if _, err := fmt.Sscanf(string(out), "port %d %t", &p, &ok); err != nil {
		t.Fatalf("child said %q", out)
	}
	if ok && held[p] {
		t.Errorf("another process was handed port %d, which this one holds", p)
	}
}

// ReleasePort hands a port back: its cross-process lock is free again and
// this process may give it out once more.
func TestReleasePort(t *testing.T) {
	p, ok := freePortIn(20000, 30000)
	if !ok {
		t.Fatal("no free port in [20000, 30000)")
	}
	if lock := reserve(p); lock != nil {
		lock.Close()
		t.Fatalf("port %d from FreePort is not locked", p)
	}
	ReleasePort(p)
	lock := reserve(p)
	if lock == nil {
		t.Fatalf("port %d is still locked after ReleasePort", p)
	}
	lock.Close()
	portsMu.Lock()
	_, given := portsGiven[p]
	portsMu.Unlock()
	if given {
		t.Fatalf("port %d is still marked given after ReleasePort", p)
	}
}
