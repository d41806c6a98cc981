package adaptertest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
)

// Run runs the conformance suite against h as subtests of t.
func Run(t *testing.T, h Harness, opts Options) {
	if h.Serve == nil {
		t.Fatal("adaptertest: Harness.Serve is nil")
	}
	r := &runner{h: h, opts: opts}
	t.Run("CookieAttributes", r.cookieAttributes)
	t.Run("RoundTrip", r.roundTrip)
	t.Run("SavedBeforeHeaders", r.savedBeforeHeaders)
	t.Run("UntouchedWritesNothing", r.untouched)
	t.Run("ErrorsRouted", r.errorsRouted)
	t.Run("ConcurrentRequests", r.concurrent)
	t.Run("RenewToken", r.renew)
	t.Run("Destroy", r.destroy)
	t.Run("ChangeAfterCommit", r.late)
	t.Run("Panic", r.panics)
	t.Run("Skip", r.skip)
	t.Run("HeaderToken", r.headerToken)
	t.Run("SeveralManagers", r.severalManagers)
	t.Run("EverydayAPI", r.everyday)
}

type runner struct {
	h    Harness
	opts Options
}

// serve starts the routes behind one Manager.
func (r *runner) serve(t *testing.T, m *core.Manager, routes []Route) string {
	return r.h.Serve(t, []*core.Manager{m}, "", routes)
}

func (r *runner) cookieAttributes(t *testing.T) {
	for _, secure := range []bool{true, false} {
		t.Run(fmt.Sprintf("Secure=%t", secure), func(t *testing.T) {
			e := newEnv(t, r.opts.Durable)
			m := e.manager(func(c *core.Config) { c.Cookie.Insecure = !secure })
			base := r.serve(t, m, basicRoutes())
			hc := &http.Client{Timeout: 10 * time.Second} // no jar: inspect, do not send
			c := &client{t: t, base: base, hc: hc}
			start := time.Now()
			resp, _ := c.get("/incr")
			ck := setCookie(resp, "session")
			if ck == nil {
				t.Fatalf("no session cookie; headers %v", resp.Header)
			}
			if !validToken(ck.Value) {
				t.Errorf("cookie value %q is not a token", ck.Value)
			}
			if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure != secure {
				t.Errorf("cookie %q: want HttpOnly, SameSite=Lax, Path=/, Secure=%t", resp.Header.Values("Set-Cookie"), secure)
			}
			if ck.MaxAge < 86400-2 || ck.MaxAge > 86400 {
				t.Errorf("Max-Age %d, want about 86400", ck.MaxAge)
			}
			if !ck.Expires.IsZero() {
				if d := ck.Expires.Sub(start.Add(24 * time.Hour)); d < -3*time.Second || d > 3*time.Second {
					t.Errorf("Expires %v, want about 24h from now", ck.Expires)
				}
			}
			if v := resp.Header.Values("Vary"); !has(v, "Cookie") {
				t.Errorf("Vary %q, want Cookie", v)
			}
			if v := resp.Header.Values("Cache-Control"); !has(v, `no-cache="Set-Cookie"`) {
				t.Errorf("Cache-Control %q, want no-cache=\"Set-Cookie\"", v)
			}
		})
	}
}

func (r *runner) roundTrip(t *testing.T) {
	e := newEnv(t, r.opts.Durable)
	c := newClient(t, r.serve(t, e.manager(nil), basicRoutes()))
	for i, want := range []string{"n=1", "n=2", "n=3"} {
		resp, body := c.get("/incr")
		if resp.StatusCode != http.StatusOK || body != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i+1, resp.StatusCode, body, want)
		}
		if got := setCookie(resp, "session") != nil; got != (i == 0) {
			t.Errorf("request %d: Set-Cookie present = %t, want %t", i+1, got, i == 0)
		}
	}
	if _, body := c.get("/read"); body != "n=3 new=false" {
		t.Errorf("read: %q", body)
	}
}

// savedBeforeHeaders checks that the session is saved and its cookie sent
// however the handler produces its response.
func (r *runner) savedBeforeHeaders(t *testing.T) {
	type tc struct {
		name, method string
		mode         Mode
		status       int
		body         string // "" with check false: not checked
		checkBody    bool
	}
	tests := []tc{
		{"String", http.MethodGet, ModeString, 200, "put k", true},
		{"Nothing", http.MethodGet, ModeNothing, 200, "", true},
		{"Error", http.MethodGet, ModeError, 403, "", false},
		{"HEAD", http.MethodHead, ModeString, 200, "", true},
	}
	if r.h.Stream {
		tests = append(tests, tc{"Stream", http.MethodGet, ModeStream, 200, "put k", true})
	}
	if r.h.EarlyHints {
		tests = append(tests, tc{"EarlyHints", http.MethodGet, ModeEarlyHints, 200, "put k", true})
	}
	if r.h.Hijack {
		tests = append(tests, tc{"Hijack", http.MethodGet, ModeHijack, 200, "put k", true})
	}
	e := newEnv(t, r.opts.Durable)
	m := e.manager(nil)
	var routes []Route
	for i, tt := range tests {
		routes = append(routes, Route{Path: fmt.Sprintf("/m%d", i), Mode: tt.mode, Do: put})
	}
	routes = append(routes, Route{Path: "/has", Do: func(s *core.Session, _ string) string {
		return fmt.Sprint(s.Get("k") != nil)
	}})
	base := r.serve(t, m, routes)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, base)
			sets, _ := mcStats(t, e.mc.Addr)
			resp, body := c.do(tt.method, fmt.Sprintf("/m%d", i))
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.checkBody && body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if tt.mode != ModeHijack && setCookie(resp, "session") == nil {
				t.Errorf("no session cookie on the response; headers %v", resp.Header)
			}
			if tt.mode == ModeHijack {
				// The cookie cannot travel: the handler wrote the bytes
				// itself. The session must still have been saved.
				if s2, _ := mcStats(t, e.mc.Addr); s2 == sets {
					t.Errorf("hijacked: the session was not saved")
				}
				return
			}
			if _, body := c.get("/has"); body != "true" {
				t.Errorf("the change was not saved: /has says %q", body)
			}
		})
	}
}

// untouched checks that a request without a cookie that only reads its
// (new) session writes nothing to the store and gets no cookie.
func (r *runner) untouched(t *testing.T) {
	e := newEnv(t, r.opts.Durable)
	base := r.serve(t, e.manager(nil), basicRoutes())
	c := newClient(t, base)
	sets, touches := mcStats(t, e.mc.Addr)
	for range 3 {
		resp, body := c.get("/read")
		if body != "n=0 new=true" {
			t.Fatalf("read: %q", body)
		}
		if h := resp.Header.Values("Set-Cookie"); len(h) != 0 {
			t.Errorf("Set-Cookie %q for a session nobody wrote", h)
		}
	}
	if s2, t2 := mcStats(t, e.mc.Addr); s2 != sets || t2 != touches {
		t.Errorf("memcached storage commands %d→%d, touches %d→%d: want none", sets, s2, touches, t2)
	}
	if st := e.st.Stats(); st.DBWrites != 0 {
		t.Errorf("%d database writes", st.DBWrites)
	}
}

// errorsRouted stops memcached under a Store without a durable tier, so
// loads and saves fail with core.ErrUnavailable: the framework's error
// handling answers 503, never after the handler's body, and no cookie.
func (r *runner) errorsRouted(t *testing.T) {
	tests := []struct {
		name     string
		existing bool
		path     string
		ran      bool
	}{
		{"load fails", true, "/read", false},
		{"save fails as the handler writes", false, "/big", true},
		{"save fails after the handler wrote nothing", false, "/silent", true},
		{"save fails when the handler returns an error", false, "/error", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			var mu sync.Mutex
			ran := false
			mark := func(s *core.Session, _ string) string {
				mu.Lock()
				ran = true
				mu.Unlock()
				s.Put("k", 1)
				return strings.Repeat("handler output ", 1000)
			}
			base := r.serve(t, e.manager(nil), basicRoutes(
				Route{Path: "/big", Do: mark},
				Route{Path: "/silent", Do: mark, Mode: ModeNothing},
				Route{Path: "/error", Do: mark, Mode: ModeError},
			))
			c := newClient(t, base)
			if tt.existing {
				c.get("/incr")
				mu.Lock()
				ran = false
				mu.Unlock()
			}
			e.mc.Stop()
			resp, body := c.get(tt.path)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 503", resp.StatusCode)
			}
			if strings.Contains(body, "handler output") {
				t.Errorf("the handler's output reached the client with the error")
			}
			mu.Lock()
			if ran != tt.ran {
				t.Errorf("handler ran = %t, want %t", ran, tt.ran)
			}
			mu.Unlock()
			if h := resp.Header.Values("Set-Cookie"); len(h) != 0 {
				t.Errorf("Set-Cookie %q on a failed request", h)
			}
		})
	}
}

func (r *runner) concurrent(t *testing.T) {
	e := newEnv(t, r.opts.Durable)
	c := newClient(t, r.serve(t, e.manager(nil), basicRoutes()))
	c.get("/incr")
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.hc.Get(fmt.Sprintf("%s/put?a=k%02d", c.base, i))
			if err != nil {
				t.Error(err)
				return
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("put k%02d: status %d", i, resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	_, body := c.get("/keys")
	want := make([]string, 0, n+1)
	for i := range n {
		want = append(want, fmt.Sprintf("k%02d", i))
	}
	want = append(want, "n")
	if body != strings.Join(want, ",") {
		t.Errorf("keys %q, want %q", body, strings.Join(want, ","))
	}
}

func (r *runner) renew(t *testing.T) {
	e := newEnv(t, r.opts.Durable)
	c := newClient(t, r.serve(t, e.manager(nil), basicRoutes()))
	c.get("/incr")
	old := c.cookie("session")
	resp, _ := c.get("/renew")
	ck := setCookie(resp, "session")
	if ck == nil || !validToken(ck.Value) || ck.Value == old {
		t.Fatalf("renew: want a new token cookie, got %q", resp.Header.Values("Set-Cookie"))
	}
	if _, body := c.get("/read"); body != "n=1 new=false" {
		t.Errorf("values after renewal: %q", body)
	}
	if body := withCookie(t, c.base, "/read", old); body != "n=0 new=true" {
		t.Errorf("old token still loads: %q", body)
	}
}

func (r *runner) destroy(t *testing.T) {
	e := newEnv(t, r.opts.Durable)
	c := newClient(t, r.serve(t, e.manager(nil), basicRoutes()))
	c.get("/incr")
	old := c.cookie("session")
	if old == "" {
		t.Fatal("no session cookie after the first request")
	}
	resp, body := c.get("/destroy")
	if body != "destroyed" {
		t.Fatalf("destroy: %d %q", resp.StatusCode, body)
	}
	ck := setCookie(resp, "session")
	if ck == nil || ck.MaxAge >= 0 && !(ck.Expires.Before(time.Now()) && !ck.Expires.IsZero()) || ck.Value != "" {
		t.Fatalf("destroy: want an expired empty cookie, got %q", resp.Header.Values("Set-Cookie"))
	}
	if c.cookie("session") != "" {
		t.Errorf("the jar still holds a session cookie")
	}
	if body := withCookie(t, c.base, "/read", old); body != "n=0 new=true" {
		t.Errorf("old token still loads: %q", body)
	}
}

// late checks that a change made after the response was committed is
// reported with core.ErrChangedAfterCommit (or, in a buffering framework,
// saved).
func (r *runner) late(t *testing.T) {
	e := newEnv(t, r.opts.Durable)
	base := r.serve(t, e.manager(nil), basicRoutes(Route{Path: "/late", Mode: ModeLate, Do: put}))
	c := newClient(t, base)
	c.get("/incr") // an existing session: the late change could be saved by mistake
	c.do(http.MethodGet, "/late?a=late")
	_, keys := c.get("/keys")
	saved := strings.Contains(keys, "late")
	switch {
	case r.h.Buffered && !saved:
		t.Errorf("buffered framework: the change made while writing the body was lost (keys %q)", keys)
	case !r.h.Buffered && saved:
		t.Errorf("a change made after the headers went out was saved (keys %q): the cookie could not follow", keys)
	case !r.h.Buffered && !e.log.has(core.ErrChangedAfterCommit):
		t.Errorf("the lost change was not logged with core.ErrChangedAfterCommit")
	}
}

func (r *runner) panics(t *testing.T) {
	e := newEnv(t, r.opts.Durable)
	base := r.serve(t, e.manager(nil), basicRoutes(Route{Path: "/panic", Mode: ModePanic, Do: put}))
	c := newClient(t, base)
	sets, _ := mcStats(t, e.mc.Addr)
	resp, _ := c.get("/panic")
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status %d, want 500 from the framework's recovery", resp.StatusCode)
	}
	if h := resp.Header.Values("Set-Cookie"); len(h) != 0 {
		t.Errorf("Set-Cookie %q after a panic", h)
	}
	if s2, _ := mcStats(t, e.mc.Addr); s2 != sets {
		t.Errorf("the session of a panicking handler was written (%d storage commands)", s2-sets)
	}
}

func (r *runner) skip(t *testing.T) {
	e := newEnv(t, r.opts.Durable)
	m := e.manager(nil)
	read := basicRoutes()[1].Do
	base := r.h.Serve(t, []*core.Manager{m}, "/static/", append(basicRoutes(),
		Route{Path: "/static/app.js", Do: read}))
	c := newClient(t, base)
	c.get("/incr")
	resp, body := c.get("/static/app.js")
	if body != "no session" {
		t.Errorf("skipped path: %q, want no session", body)
	}
	if h := resp.Header.Values("Set-Cookie"); len(h) != 0 {
		t.Errorf("Set-Cookie %q on a skipped path", h)
	}
	if _, body := c.get("/read"); body != "n=1 new=false" {
		t.Errorf("not skipped: %q", body)
	}
}

// headerToken runs a session whose token travels in Authorization: Bearer
// and in a named header.
func (r *runner) headerToken(t *testing.T) {
	for _, name := range []string{"Authorization", "X-Session-Token"} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, r.opts.Durable)
			base := r.serve(t, e.manager(func(c *core.Config) { c.TokenHeader = name }), basicRoutes())
			c := &client{t: t, base: base, hc: &http.Client{Timeout: 10 * time.Second}}
			respName := name
			send := func(tok string) string { return tok }
			if name == "Authorization" {
				respName = "Session-Token"
				send = func(tok string) string { return "Bearer " + tok }
			}
			resp, _ := c.get("/incr")
			tok := resp.Header.Get(respName)
			if !validToken(tok) {
				t.Fatalf("response header %s = %q, want a token; headers %v", respName, tok, resp.Header)
			}
			if h := resp.Header.Values("Set-Cookie"); len(h) != 0 {
				t.Errorf("Set-Cookie %q in header mode", h)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q on a response carrying a token", resp.Header.Get("Cache-Control"))
			}
			resp, body := c.do(http.MethodGet, "/incr", name, send(tok))
			if body != "n=2" {
				t.Fatalf("second request with the header: %q", body)
			}
			if v := resp.Header.Values(respName); len(v) != 0 {
				t.Errorf("token re-sent without need: %q", v)
			}
			resp, _ = c.do(http.MethodGet, "/renew", name, send(tok))
			fresh := resp.Header.Get(respName)
			if !validToken(fresh) || fresh == tok {
				t.Fatalf("renew: header %q", fresh)
			}
			if _, body := c.do(http.MethodGet, "/read", name, send(tok)); body != "n=0 new=true" {
				t.Errorf("old token after renewal: %q", body)
			}
			resp, _ = c.do(http.MethodGet, "/destroy", name, send(fresh))
			if v := resp.Header.Values(respName); len(v) != 1 || v[0] != "" {
				t.Errorf("destroy: header %s = %q, want one empty value", respName, v)
			}
			if _, body := c.do(http.MethodGet, "/read", name, send(fresh)); body != "n=0 new=true" {
				t.Errorf("destroyed token: %q", body)
			}
		})
	}
}

// severalManagers runs two Managers (cookies "user" and "admin") in one
// request: each handler finds each Manager's own session.
func (r *runner) severalManagers(t *testing.T) {
	e := newEnv(t, r.opts.Durable)
	user := e.manager(func(c *core.Config) { c.Cookie.Name = "user" })
	admin := e.manager(func(c *core.Config) { c.Cookie.Name = "admin" })
	routes := []Route{
		{Path: "/user", Manager: user, Do: func(s *core.Session, a string) string { s.Put("who", "user"); return "ok" }},
		{Path: "/admin", Manager: admin, Do: func(s *core.Session, a string) string { s.Put("who", "admin"); return "ok" }},
		{Path: "/whoami-user", Manager: user, Do: func(s *core.Session, _ string) string { who, _ := core.Value[string](s, "who"); return who }},
		{Path: "/whoami-admin", Manager: admin, Do: func(s *core.Session, _ string) string { who, _ := core.Value[string](s, "who"); return who }},
		{Path: "/inner", Do: func(s *core.Session, _ string) string { who, _ := core.Value[string](s, "who"); return who }},
	}
	c := newClient(t, r.h.Serve(t, []*core.Manager{user, admin}, "", routes))
	c.get("/user")
	c.get("/admin")
	if c.cookie("user") == "" || c.cookie("admin") == "" || c.cookie("user") == c.cookie("admin") {
		t.Fatalf("cookies user=%q admin=%q, want two different tokens", c.cookie("user"), c.cookie("admin"))
	}
	for path, want := range map[string]string{"/whoami-user": "user", "/whoami-admin": "admin", "/inner": "admin"} {
		if _, body := c.get(path); body != want {
			t.Errorf("%s: %q, want %q", path, body, want)
		}
	}
}

// everyday checks the everyday session API through the adapter: a
// one-time (flash) message set on one response is shown once on the next (as after a
// redirect); RememberMe gives that session alone a persistent cookie when
// the others are browser-session cookies; a session over the item size
// limit answers 413 without the handler's body.
func (r *runner) everyday(t *testing.T) {
	e := newEnv(t, r.opts.Durable)
	m := e.manager(func(c *core.Config) { c.Cookie.SessionOnly = true })
	base := r.serve(t, m, basicRoutes(
		Route{Path: "/flash", Do: func(s *core.Session, _ string) string {
			s.Put("flash", "success:Saved.")
			return "saved"
		}},
		Route{Path: "/show", Do: func(s *core.Session, _ string) string {
			if msg, ok := s.Pop("flash").(string); ok {
				return msg + ";"
			}
			return ""
		}},
		Route{Path: "/login", Do: func(s *core.Session, a string) string {
			s.RenewToken()
			s.Put("user", "ada")
			if a != "" {
				s.RememberMe(30 * 24 * time.Hour)
			}
			return "ok"
		}},
		Route{Path: "/big", Do: func(s *core.Session, _ string) string {
			s.Put("big", strings.Repeat("x", 2<<20))
			return "handler body"
		}},
	))
	c := newClient(t, base)
	c.get("/flash")
	if _, body := c.get("/show"); body != "success:Saved.;" {
		t.Errorf("the next page shows %q, want the flash", body)
	}
	if _, body := c.get("/show"); body != "" {
		t.Errorf("the flash was shown twice: %q", body)
	}

	resp, _ := newClient(t, base).get("/login")
	if ck := setCookie(resp, "session"); ck == nil || ck.MaxAge != 0 || !ck.Expires.IsZero() {
		t.Errorf("cookie without remember-me: %+v, want a browser-session cookie", ck)
	}
	resp, _ = newClient(t, base).get("/login?a=1")
	if ck := setCookie(resp, "session"); ck == nil || ck.MaxAge < int((30*24*time.Hour-time.Minute)/time.Second) || !ck.HttpOnly {
		t.Errorf("remember-me cookie: %+v, want HttpOnly and Max-Age of about 30 days", ck)
	}

	resp, body := newClient(t, base).get("/big")
	if resp.StatusCode != http.StatusRequestEntityTooLarge || strings.Contains(body, "handler body") {
		t.Errorf("oversized session: %d %q, want 413 without the handler's body", resp.StatusCode, body)
	}
}

// validToken reports whether s has the shape of the Manager's tokens: 43
// characters of the unpadded base64url alphabet (32 random bytes).
func validToken(s string) bool {
	return len(s) == 43 && strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == ""
}
