// Package adaptertest is the conformance suite for hybridsession's
// framework adapters (gin, echo, fiber, the net/http middleware in core):
// the behaviours every adapter must show, written once and run by every
// adapter's tests, as durabletest is for durable tiers.
//
// An adapter provides a Harness — how to serve a few neutral routes
// through its framework and middleware — and calls Run:
//
//	func TestConformance(t *testing.T) {
//		adaptertest.Run(t, harness, adaptertest.Options{})
//	}
//
// The suite starts real memcached processes (memcachedtest) and talks to
// the adapter over real HTTP with cookie jars. It checks the cookie's
// attributes; that the session is saved before the response headers
// whatever way the handler responds (string, nothing, an error, HEAD,
// streaming, 103 Early Hints, hijacking); that failures go to the
// framework's error handler and never follow the handler's body; that a
// request that never touched its session writes nothing and gets no
// cookie; that concurrent requests keep each other's keys; RenewToken and
// Destroy; that a change made after the response was committed is
// reported with core.ErrChangedAfterCommit; panics; the skip option; the
// token in a request header; and several Managers in one request.
package adaptertest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// Mode is how a route's handler responds, in its framework's idiom.
type Mode int

// The ways a route responds. Each runs the route's Do first (except
// ModeLate and ModeEarlyHints, which say when they run it) and then:
const (
	// ModeString responds 200 with Do's result as a text body, as
	// handlers usually do (c.String, c.SendString, fmt.Fprint).
	ModeString Mode = iota
	// ModeNothing returns without writing anything.
	ModeNothing
	// ModeError returns the framework's error for 403 Forbidden (gin:
	// c.AbortWithStatus; net/http: http.Error), which the framework's
	// error handling answers.
	ModeError
	// ModeLate writes the body "late" first, flushing it where the
	// framework streams, and only then runs Do: its change comes after
	// the response was committed.
	ModeLate
	// ModePanic panics after Do.
	ModePanic
	// ModeStream writes the header, flushes, then writes Do's result
	// (fiber: a body stream writer).
	ModeStream
	// ModeEarlyHints sends 103 Early Hints with a Link header, then runs
	// Do and responds like ModeString.
	ModeEarlyHints
	// ModeHijack takes over the connection and writes a bare
	// "HTTP/1.1 200 OK" response with Do's result as the body.
	ModeHijack
)

// Route is one handler the harness registers with GET (which also answers
// HEAD) at Path.
type Route struct {
	Path string
	// Manager, when not nil, says whose session Do receives: the
	// adapter's per-Manager accessor. Nil means the adapter's plain
	// accessor (Get), which returns the innermost session.
	Manager *core.Manager
	// Do is the handler's work: it receives the session (nil when the
	// middleware did not run) and the request's "a" query parameter, and
	// returns the body.
	Do   func(s *core.Session, arg string) string
	Mode Mode
}

// Harness serves routes through one adapter.
type Harness struct {
	// Serve starts a server on a loopback port that serves routes behind
	// the adapter's middleware for each of ms, ms[0] outermost, with
	// default configuration except that requests whose path starts with
	// skip (when not "") are skipped with the adapter's skip option. It
	// recovers panics with the framework's usual recovery (500). It returns
	// the server's base URL and stops the server when t ends.
	Serve func(t testing.TB, ms []*core.Manager, skip string, routes []Route) string

	// Buffered says that the framework buffers the whole response until
	// the handler returns (fiber), so that the session is saved when the
	// handler returns: a change made after writing the body is still
	// saved, and ModeLate reports nothing.
	Buffered bool
	// Stream, EarlyHints and Hijack say which of those modes the harness
	// implements.
	Stream, EarlyHints, Hijack bool
}

// Options configures Run. The zero value tests on memcached alone.
type Options struct {
	// Durable, when not nil, returns a fresh durable tier for each subtest
	// that tolerates one (it should register its cleanup with t.Cleanup).
	// Tests of failures always run on memcached alone, so that stopping
	// memcached makes the store unavailable.
	Durable func(t testing.TB) durable.Tier
}

// env is one subtest's memcached, store and log.
type env struct {
	t   *testing.T
	mc  *memcachedtest.Server
	st  *core.Store
	log *logCapture
}

func newEnv(t *testing.T, durable func(testing.TB) durable.Tier) *env {
	t.Helper()
	e := &env{t: t, mc: memcachedtest.Start(t, memcachedtest.Options{}), log: &logCapture{}}
	cfg := core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{e.mc.Addr}, BreakerCooldown: 20 * time.Millisecond},
		Logger:    slog.New(e.log),
	}
	if durable != nil {
		cfg.Durable = durable(t)
	}
	st, err := core.NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	e.st = st
	return e
}

// manager returns a Manager on e's store with an Insecure cookie (the jar
// sends it over plain HTTP), changed by mod.
func (e *env) manager(mod func(*core.Config)) *core.Manager {
	e.t.Helper()
	cfg := core.Config{Store: e.st, Cookie: core.CookieConfig{Insecure: true}}
	if mod != nil {
		mod(&cfg)
	}
	m, err := core.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// logCapture is a slog.Handler that keeps the errors logged.
type logCapture struct {
	mu   sync.Mutex
	errs []error
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok {
			l.mu.Lock()
			l.errs = append(l.errs, err)
			l.mu.Unlock()
		}
		return true
	})
	return nil
}
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCapture) WithGroup(string) slog.Handler      { return l }

func (l *logCapture) has(target error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// intValue returns the int under key, 0 when absent.
func intValue(s *core.Session, key string) int {
	n, _ := core.Value[int](s, key)
	return n
}

// The routes most tests use, on the plain accessor.
func basicRoutes(extra ...Route) []Route {
	rs := []Route{
		{Path: "/incr", Do: func(s *core.Session, _ string) string {
			n := intValue(s, "n") + 1
			s.Put("n", n)
			return fmt.Sprintf("n=%d", n)
		}},
		{Path: "/read", Do: func(s *core.Session, _ string) string {
			if s == nil {
				return "no session"
			}
			return fmt.Sprintf("n=%d new=%t", intValue(s, "n"), s.IsNew())
		}},
		{Path: "/put", Do: func(s *core.Session, a string) string { s.Put(a, true); return "ok" }},
		{Path: "/keys", Do: func(s *core.Session, _ string) string { return strings.Join(s.Keys(), ",") }},
		{Path: "/renew", Do: func(s *core.Session, _ string) string { s.RenewToken(); return "renewed" }},
		{Path: "/destroy", Do: func(s *core.Session, _ string) string {
			if err := s.Destroy(context.Background()); err != nil {
				return "error: " + err.Error()
			}
			return "destroyed"
		}},
	}
	return append(rs, extra...)
}

// put is a Do that records its argument (or "k") as a key.
func put(s *core.Session, a string) string {
	if a == "" {
		a = "k"
	}
	s.Put(a, true)
	return "put " + a
}

// client is a browser: an http.Client with a cookie jar.
type client struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newClient(t *testing.T, base string) *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, base: base, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// do sends method to path with header lines (name, value pairs) and
// returns the response with its body read.
func (c *client) do(method, path string, header ...string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp, string(b)
}

func (c *client) get(path string) (*http.Response, string) {
	c.t.Helper()
	return c.do(http.MethodGet, path)
}

// cookie returns the value of the jar's cookie called name, "" when none.
func (c *client) cookie(name string) string {
	u, _ := url.Parse(c.base)
	for _, ck := range c.hc.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// withCookie sends a GET with only the given session cookie, bypassing
// the jar.
func withCookie(t *testing.T, base, path, token string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: token})
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func setCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func has(list []string, s string) bool {
	for _, v := range list {
		for _, part := range strings.Split(v, ",") {
			if strings.TrimSpace(part) == s {
				return true
			}
		}
	}
	return false
}

// mcStats returns memcached's counters of storage commands (cmd_set counts
// set, add, replace, cas, append and prepend) and touches.
func mcStats(t *testing.T, addr string) (sets, touches int) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "stats\r\n"); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		line := sc.Text()
		if line == "END" {
			break
		}
		var name string
		var v int
		if n, _ := fmt.Sscanf(line, "STAT %s %d", &name, &v); n == 2 {
			switch name {
			case "cmd_set":
				sets = v
			case "cmd_touch":
				touches = v
			}
		}
	}
	return sets, touches
}
