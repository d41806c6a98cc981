package echosession_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/adapters/echosession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/memcachedtest"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// quiet drops the log of expected failures (memcached stopped on purpose).
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newManager starts memcached and returns a Manager on a memcached-only
// Store. Tests use cookie.Insecure so that the cookie jar sends the cookie
// over plain HTTP.
func newManager(t testing.TB, cookie core.CookieConfig) (*core.Manager, *memcachedtest.Server) {
	t.Helper()
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}},
		Logger:    quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	m, err := core.New(core.Config{Store: store, Cookie: cookie, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return m, mc
}

func newEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(io.Discard)
	return e
}

// routes counts how often its handlers ran.
type routes struct {
	runs atomic.Int64
}

// newEcho returns the routes the tests drive, behind the middleware.
func (rt *routes) newEcho(m *core.Manager, cfg echosession.Config) *echo.Echo {
	e := newEcho()
	e.Use(echosession.New(m, cfg))
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error { rt.runs.Add(1); return next(c) }
	})
	e.GET("/incr", func(c echo.Context) error {
		s := echosession.Get(c)
		n := s.GetInt("n") + 1
		s.Put("n", n)
		return c.String(http.StatusOK, fmt.Sprintf("n=%d", n))
	})
	e.GET("/read", func(c echo.Context) error {
		s := echosession.Get(c)
		return c.String(http.StatusOK, fmt.Sprintf("n=%d new=%t", s.GetInt("n"), s.IsNew()))
	})
	e.GET("/put/:key", func(c echo.Context) error {
		echosession.Get(c).Put(c.Param("key"), true)
		return c.String(http.StatusOK, "ok")
	})
	e.GET("/keys", func(c echo.Context) error {
		return c.String(http.StatusOK, strings.Join(echosession.Get(c).Keys(), ","))
	})
	e.GET("/destroy", func(c echo.Context) error {
		if err := echosession.Get(c).Destroy(c.Request().Context()); err != nil {
			return err
		}
		return c.String(http.StatusOK, "destroyed")
	})
	e.GET("/renew", func(c echo.Context) error {
		echosession.Get(c).RenewToken()
		return c.String(http.StatusOK, "renewed")
	})
	return e
}

func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// client is a browser: an http.Client with a cookie jar.
type client struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newClient(t *testing.T, srv *httptest.Server) *client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, base: srv.URL, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// get requests path and returns the response with its body read.
func (c *client) get(path string) (*http.Response, string) {
	c.t.Helper()
	return do(c.t, c.hc, c.base+path, "")
}

// token returns the session token the jar holds, "" when none.
func (c *client) token() string {
	u, _ := url.Parse(c.base)
	for _, ck := range c.hc.Jar.Cookies(u) {
		if ck.Name == "session" {
			return ck.Value
		}
	}
	return ""
}

// do sends a GET with an optional session cookie, bypassing any jar.
func do(t *testing.T, hc *http.Client, u, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "gzip") // gzip stays visible to the tests
	if token != "" {
		req.AddCookie(&http.Cookie{Name: "session", Value: token})
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "session" {
			return c
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestRoundTrip(t *testing.T) {
	m, _ := newManager(t, core.CookieConfig{Insecure: true})
	var rt routes
	srv := serve(t, rt.newEcho(m, echosession.Config{}))
	c := newClient(t, srv)
	for i, want := range []string{"n=1", "n=2", "n=3"} {
		resp, body := c.get("/incr")
		if resp.StatusCode != http.StatusOK || body != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i+1, resp.StatusCode, body, want)
		}
		// Only the first response creates the session and sets the cookie.
		if got := sessionCookie(resp) != nil; got != (i == 0) {
			t.Errorf("request %d: Set-Cookie present = %t, want %t", i+1, got, i == 0)
		}
	}
	if _, body := c.get("/read"); body != "n=3 new=false" {
		t.Errorf("read: %q", body)
	}
}

func TestCookieAttributes(t *testing.T) {
	tests := []struct {
		name   string
		cookie core.CookieConfig
		secure bool
	}{
		{"default is Secure", core.CookieConfig{}, true},
		{"Insecure", core.CookieConfig{Insecure: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := newManager(t, tt.cookie)
			var rt routes
			srv := serve(t, rt.newEcho(m, echosession.Config{}))
			hc := &http.Client{Timeout: 10 * time.Second} // no jar: Secure cookies are inspected, not sent
			start := time.Now()
			resp, _ := do(t, hc, srv.URL+"/incr", "")
			ck := sessionCookie(resp)
			if ck == nil {
				t.Fatalf("no session cookie; headers %v", resp.Header)
			}
			if !core.ValidToken(ck.Value) {
				t.Errorf("cookie value %q is not a token", ck.Value)
			}
			if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure != tt.secure {
				t.Errorf("cookie %q: want HttpOnly, SameSite=Lax, Path=/, Secure=%t", resp.Header.Get("Set-Cookie"), tt.secure)
			}
			wantExp := start.Add(24 * time.Hour)
			if d := ck.Expires.Sub(wantExp); d < -2*time.Second || d > 2*time.Second {
				t.Errorf("Expires %v, want about %v", ck.Expires, wantExp)
			}
			if ck.MaxAge < 86400-2 || ck.MaxAge > 86400 {
				t.Errorf("Max-Age %d, want about 86400", ck.MaxAge)
			}
			if v := resp.Header.Values("Vary"); !contains(v, "Cookie") {
				t.Errorf("Vary %q, want Cookie", v)
			}
			if v := resp.Header.Values("Cache-Control"); !contains(v, `no-cache="Set-Cookie"`) {
				t.Errorf("Cache-Control %q", v)
			}

			// A visitor whose session is only read gets no cookie.
			resp, _ = do(t, hc, srv.URL+"/read", "")
			if h := resp.Header.Values("Set-Cookie"); len(h) != 0 {
				t.Errorf("read-only visitor got Set-Cookie %q", h)
			}
		})
	}
}

// TestCommitBeforeHeaders checks that the session is saved and its cookie
// sent however the handler produces its response.
func TestCommitBeforeHeaders(t *testing.T) {
	m, _ := newManager(t, core.CookieConfig{Insecure: true})
	tests := []struct {
		name    string
		handler echo.HandlerFunc
		status  int
		body    string
	}{
		{"String", func(c echo.Context) error { return c.String(http.StatusOK, "hello") }, http.StatusOK, "hello"},
		{"Response.Write", func(c echo.Context) error {
			_, err := c.Response().Write([]byte("raw"))
			return err
		}, http.StatusOK, "raw"},
		{"JSON with status", func(c echo.Context) error {
			return c.JSON(http.StatusCreated, map[string]bool{"ok": true})
		}, http.StatusCreated, "{\"ok\":true}\n"},
		{"NoContent", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }, http.StatusNoContent, ""},
		{"nothing written", func(c echo.Context) error { return nil }, http.StatusOK, ""},
		{"HTTPError returned", func(c echo.Context) error {
			return echo.NewHTTPError(http.StatusForbidden)
		}, http.StatusForbidden, "{\"message\":\"Forbidden\"}\n"},
		{"plain error returned", func(c echo.Context) error {
			return errors.New("handler failed")
		}, http.StatusInternalServerError, "{\"message\":\"Internal Server Error\"}\n"},
		{"streaming", func(c echo.Context) error {
			c.Response().WriteHeader(http.StatusOK)
			c.Response().Flush()
			_, err := c.Response().Write([]byte("streamed"))
			return err
		}, http.StatusOK, "streamed"},
		{"WrapHandler", echo.WrapHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "net/http")
		})), http.StatusOK, "net/http"},
	}
	e := newEcho()
	e.Use(echosession.New(m, echosession.Config{}))
	e.GET("/read", func(c echo.Context) error { return c.String(http.StatusOK, echosession.Get(c).GetString("by")) })
	for i, tt := range tests {
		e.GET(fmt.Sprintf("/t%d", i), func(c echo.Context) error {
			echosession.Get(c).Put("by", tt.name)
			return tt.handler(c)
		})
	}
	srv := serve(t, e)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, srv)
			resp, body := c.get(fmt.Sprintf("/t%d", i))
			if resp.StatusCode != tt.status || body != tt.body {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tt.status, tt.body)
			}
			if sessionCookie(resp) == nil {
				t.Fatalf("no Set-Cookie; headers %v", resp.Header)
			}
			if _, body := c.get("/read"); body != tt.name {
				t.Errorf("next request reads %q, want %q", body, tt.name)
			}
		})
	}
}

// TestBeforeFuncsMayChangeSession checks that the session is saved after
// the functions registered with Response.Before.
func TestBeforeFuncsMayChangeSession(t *testing.T) {
	m, _ := newManager(t, core.CookieConfig{Insecure: true})
	e := newEcho()
	e.Use(echosession.New(m, echosession.Config{}))
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Response().Before(func() { echosession.Get(c).Put("before", "yes") })
			return next(c)
		}
	})
	e.GET("/", func(c echo.Context) error { return c.String(http.StatusOK, echosession.Get(c).GetString("before")) })
	c := newClient(t, serve(t, e))
	if _, body := c.get("/"); body != "" {
		t.Fatalf("first request: %q", body)
	}
	if _, body := c.get("/"); body != "yes" {
		t.Errorf("the change made in a Before function was lost: %q", body)
	}
}

func TestDestroy(t *testing.T) {
	m, _ := newManager(t, core.CookieConfig{Insecure: true})
	var rt routes
	srv := serve(t, rt.newEcho(m, echosession.Config{}))
	c := newClient(t, srv)
	c.get("/incr")
	old := c.token()
	if old == "" {
		t.Fatal("no session cookie after the first request")
	}
	resp, body := c.get("/destroy")
	if body != "destroyed" {
		t.Fatalf("destroy: %d %q", resp.StatusCode, body)
	}
	ck := sessionCookie(resp)
	if ck == nil || ck.MaxAge >= 0 || ck.Value != "" {
		t.Fatalf("destroy: want an expired empty cookie, got %q", resp.Header.Values("Set-Cookie"))
	}
	if tok := c.token(); tok != "" {
		t.Errorf("the jar still holds a session cookie")
	}
	if _, body := do(t, c.hc, srv.URL+"/read", old); body != "n=0 new=true" {
		t.Errorf("old token still loads: %q", body)
	}
}

func TestRenewToken(t *testing.T) {
	m, _ := newManager(t, core.CookieConfig{Insecure: true})
	var rt routes
	srv := serve(t, rt.newEcho(m, echosession.Config{}))
	c := newClient(t, srv)
	c.get("/incr")
	old := c.token()
	resp, _ := c.get("/renew")
	ck := sessionCookie(resp)
	if ck == nil || !core.ValidToken(ck.Value) || ck.Value == old {
		t.Fatalf("renew: want a new token cookie, got %q", resp.Header.Values("Set-Cookie"))
	}
	if c.token() != ck.Value {
		t.Errorf("the jar did not take the new token")
	}
	if _, body := c.get("/read"); body != "n=1 new=false" {
		t.Errorf("values after renewal: %q", body)
	}
	if _, body := do(t, c.hc, srv.URL+"/read", old); body != "n=0 new=true" {
		t.Errorf("old token still loads: %q", body)
	}
}

// TestStoreUnavailable stops memcached under a Store without a durable tier,
// so loads and saves fail with core.ErrUnavailable.
func TestStoreUnavailable(t *testing.T) {
	tests := []struct {
		name       string
		existing   bool // the client has a session before memcached stops
		path       string
		handlerRun bool
	}{
		{"load fails", true, "/read", false},
		{"save fails on the handler's first write", false, "/incr", true},
		{"save fails after the handler wrote nothing", false, "/silent", true},
		{"save fails when the handler returns an error", false, "/error", true},
		{"save fails under gzip", false, "/gzip/big", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, mc := newManager(t, core.CookieConfig{Insecure: true})
			var rt routes
			e := rt.newEcho(m, echosession.Config{})
			e.GET("/silent", func(c echo.Context) error { echosession.Get(c).Put("k", 1); return nil })
			e.GET("/error", func(c echo.Context) error {
				echosession.Get(c).Put("k", 1)
				return echo.NewHTTPError(http.StatusForbidden)
			})
			e.GET("/gzip/big", func(c echo.Context) error {
				echosession.Get(c).Put("k", 1)
				return c.String(http.StatusOK, strings.Repeat("handler output ", 1000))
			}, middleware.Gzip())
			srv := serve(t, e)
			c := newClient(t, srv)
			if tt.existing {
				c.get("/incr")
			}
			mc.Stop()
			before := rt.runs.Load()
			resp, body := c.get(tt.path)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 503", resp.StatusCode)
			}
			if want := "{\"message\":\"Service Unavailable\"}\n"; body != want {
				t.Errorf("body %q, want echo's error %q", body, want)
			}
			if ce := resp.Header.Get("Content-Encoding"); ce != "" {
				t.Errorf("Content-Encoding %q on the error response", ce)
			}
			if ran := rt.runs.Load() > before; ran != tt.handlerRun {
				t.Errorf("handler ran = %t, want %t", ran, tt.handlerRun)
			}
			if h := resp.Header.Values("Set-Cookie"); len(h) != 0 {
				t.Errorf("Set-Cookie %q on a failed save", h)
			}
		})
	}
}

func TestCustomErrorHandler(t *testing.T) {
	m, mc := newManager(t, core.CookieConfig{Insecure: true})
	var got atomic.Value
	var rt routes
	srv := serve(t, rt.newEcho(m, echosession.Config{ErrorHandler: func(c echo.Context, err error) error {
		got.Store(err)
		return echo.NewHTTPError(http.StatusTeapot, "sessions are down").SetInternal(err)
	}}))
	mc.Stop()
	resp, body := newClient(t, srv).get("/incr")
	if resp.StatusCode != http.StatusTeapot || body != "{\"message\":\"sessions are down\"}\n" {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
	if err, _ := got.Load().(error); !errors.Is(err, core.ErrUnavailable) {
		t.Errorf("error handler got %v, want core.ErrUnavailable", err)
	}
}

func TestConcurrentRequests(t *testing.T) {
	m, _ := newManager(t, core.CookieConfig{Insecure: true})
	var rt routes
	srv := serve(t, rt.newEcho(m, echosession.Config{}))
	c := newClient(t, srv)
	c.get("/incr")
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.hc.Get(fmt.Sprintf("%s/put/k%02d", srv.URL, i))
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

func TestContextAndGet(t *testing.T) {
	m, _ := newManager(t, core.CookieConfig{Insecure: true})
	e := newEcho()
	e.GET("/without", func(c echo.Context) error {
		return c.String(http.StatusOK, fmt.Sprint(echosession.Get(c) == nil))
	})
	e.GET("/with", func(c echo.Context) error {
		s := echosession.Get(c)
		return c.String(http.StatusOK, fmt.Sprint(s != nil && core.FromContext(c.Request().Context()) == s))
	}, echosession.New(m, echosession.Config{}))
	c := newClient(t, serve(t, e))
	for _, path := range []string{"/without", "/with"} {
		if _, body := c.get(path); body != "true" {
			t.Errorf("%s: %s", path, body)
		}
	}
}

// TestPanicDoesNotSave checks that a handler that panics before writing
// does not save its changes, and that echo's recovery answers.
func TestPanicDoesNotSave(t *testing.T) {
	m, _ := newManager(t, core.CookieConfig{Insecure: true})
	e := newEcho()
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true, DisableErrorHandler: false}))
	e.Use(echosession.New(m, echosession.Config{}))
	e.GET("/panic", func(c echo.Context) error {
		echosession.Get(c).Put("k", 1)
		panic("boom")
	})
	resp, _ := newClient(t, serve(t, e)).get("/panic")
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", resp.StatusCode)
	}
	if h := resp.Header.Values("Set-Cookie"); len(h) != 0 {
		t.Errorf("Set-Cookie %q after a panic", h)
	}
}
