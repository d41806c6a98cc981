package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"
)

// nodes runs the memcached processes of the demo, so that the operator
// panel can kill, restart, add and remove them. Nodes given with
// -memcached are not ours: the panel can only remove them.
type nodes struct {
	bin string

	mu    sync.Mutex
	procs map[string]*exec.Cmd // by address; nil value: ours but stopped
	done  map[string]chan struct{}
}

// memcachedBinary finds memcached in PATH or /usr/bin.
func memcachedBinary() (string, error) {
	if p, err := exec.LookPath("memcached"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/memcached"); err == nil {
		return "/usr/bin/memcached", nil
	}
	return "", errors.New("memcached is not installed (apt-get install memcached)")
}

func newNodes() (*nodes, error) {
	bin, err := memcachedBinary()
	if err != nil {
		return nil, err
	}
	return &nodes{bin: bin, procs: map[string]*exec.Cmd{}, done: map[string]chan struct{}{}}, nil
}

// spawn starts a new memcached on a free loopback port and returns its address.
func (n *nodes) spawn() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr, n.start(addr)
}

// start starts memcached on addr (empty, as after a restart) and waits
// until it accepts connections.
func (n *nodes) start(addr string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.procs[addr] != nil {
		return fmt.Errorf("memcached %s is running", addr)
	}
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-l", host, "-p", port, "-U", "0", "-m", "64"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root")
	}
	cmd := exec.Command(n.bin, args...)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("memcached %s did not start: %w", addr, err)
		}
		select {
		case <-done:
			return fmt.Errorf("memcached %s exited at start", addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	n.procs[addr], n.done[addr] = cmd, done
	return nil
}

// kill kills memcached at addr (SIGKILL: it loses everything) and waits
// for it to exit. The address stays ours, to start again.
func (n *nodes) kill(addr string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	cmd, ok := n.procs[addr]
	if !ok {
		return fmt.Errorf("memcached %s is not run by the demo", addr)
	}
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Kill()
	<-n.done[addr]
	n.procs[addr] = nil
	return nil
}

// forget kills addr's process, if ours, and forgets it.
func (n *nodes) forget(addr string) {
	_ = n.kill(addr)
	n.mu.Lock()
	delete(n.procs, addr)
	delete(n.done, addr)
	n.mu.Unlock()
}

// state returns whether addr is ours and whether it runs.
func (n *nodes) state(addr string) (managed, running bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	cmd, ok := n.procs[addr]
	return ok, cmd != nil
}

// stop kills every process.
func (n *nodes) stop() {
	n.mu.Lock()
	addrs := make([]string, 0, len(n.procs))
	for a := range n.procs {
		addrs = append(addrs, a)
	}
	n.mu.Unlock()
	for _, a := range addrs {
		n.forget(a)
	}
}
