// Package memcachedtest starts real memcached processes for tests, on free
// loopback ports, and stops, kills and restarts them for fault tests — the
// memcached counterpart of net/http/httptest.
//
// It needs the memcached binary in PATH (Debian: apt-get install memcached).
// When it is missing, Start fails the test with that instruction rather than
// skipping: a test suite that silently skips its cache tests proves nothing.
//
//	func TestX(t *testing.T) {
//		mc := memcachedtest.Start(t, memcachedtest.Options{})
//		client := memcache.New(mc.Addr)
//		// ...
//	}
package memcachedtest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options configures a memcached process. The zero value is a 64 MiB server
// with memcached's default 1 MiB item size limit.
type Options struct {
	// MemoryMB is memcached's -m, the memory for items in MiB.
	// Optional. Default 64. A small value makes memcached evict under load.
	MemoryMB int
	// MaxItemSize is memcached's -I, such as "1m" or "2m". Optional.
	// Default: memcached's own (1m).
	MaxItemSize string
	// TLS starts memcached with TLS only (memcached -Z), with certificates
	// generated for the test (Server.TLS). Plain-text clients are refused.
	TLS bool
	// RequireClientCert makes a TLS memcached require a client certificate
	// signed by Server.TLS.CA (mutual TLS). Implies TLS.
	RequireClientCert bool
}

// Server is one memcached process listening on 127.0.0.1.
type Server struct {
	// Addr is "127.0.0.1:port". It stays the same across Restart.
	Addr string
	// TLS holds the certificates when Options.TLS is set, nil otherwise.
	// Use TLS.ClientConfig for a client's tls.Config.
	TLS *TLS

	t    testing.TB
	opts Options
	bin  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Binary returns the path of the memcached binary, or an error that says
// how to install it.
func Binary() (string, error) {
	if p, err := exec.LookPath("memcached"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/memcached", "/usr/local/bin/memcached", "/usr/sbin/memcached"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("memcachedtest: memcached not found in PATH; install it (Debian/Ubuntu: apt-get install memcached; macOS: brew install memcached) — these tests need a real memcached")
}

// Start starts memcached on a free loopback port and waits until it accepts
// connections. The process is killed when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	if opts.MemoryMB == 0 {
		opts.MemoryMB = 64
	}
	if opts.RequireClientCert {
		opts.TLS = true
	}
	s := &Server{t: t, opts: opts, bin: bin}
	if opts.TLS {
		s.TLS = newTLS(t, t.TempDir())
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := FreePort()
		if err != nil {
			t.Fatalf("memcachedtest: no free port: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(func() { ReleasePort(port) }) // runs after Kill
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("memcachedtest: memcached did not start: %v", lastErr)
	return nil
}

func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	args := []string{"-l", "127.0.0.1", "-p", port, "-U", "0", "-m", strconv.Itoa(s.opts.MemoryMB), "-t", "2"}
	if s.opts.MaxItemSize != "" {
		args = append(args, "-I", s.opts.MaxItemSize)
	}
	if s.TLS != nil {
		args = append(args, s.TLS.tlsArgs(s.opts.RequireClientCert)...)
	}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root") // memcached refuses to run as root otherwise
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	// Await readiness: the first successful "version" exchange.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := s.ping(); err == nil {
			break
		}
		select {
		case <-done:
			return fmt.Errorf("memcached exited at start (port %s taken?)", port)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("memcached on %s not ready after 10s", s.Addr)
		}
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return nil
}

func (s *Server) ping() error {
	var c net.Conn
	var err error
	if s.TLS != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", s.Addr, s.TLS.ClientConfig(true))
	} else {
		c, err = net.DialTimeout("tcp", s.Addr, time.Second)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("version\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if len(line) < 8 || line[:8] != "VERSION " {
		return fmt.Errorf("unexpected answer %q", line)
	}
	return nil
}

// Stop stops memcached gracefully (SIGTERM) and waits for it to exit. Every
// item is lost, as in a real restart.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill kills memcached (SIGKILL) and waits for it to exit.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig os.Signal) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a paused process cannot handle SIGTERM
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Pause freezes the process (SIGSTOP): connections and data stay, but
// nothing is answered — a node that is unreachable without losing its
// items, like one behind a network partition or a blackhole. Resume undoes it.
func (s *Server) Pause() { s.raw(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (s *Server) Resume() { s.raw(syscall.SIGCONT) }

func (s *Server) raw(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Restart stops memcached if it runs and starts a new, empty one on the same
// port, waiting until it accepts connections.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 50; attempt++ { // the port may linger briefly
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("memcachedtest: restart on %s: %v", s.Addr, err)
}

// Running reports whether the process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}
