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
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/adapters/echosession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/adaptertest"
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
	m, err := core.New(core.Config{Store: store, Cookie: cookie})
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
		n := getInt(s, "n") + 1
		s.Put("n", n)
		return c.String(http.StatusOK, fmt.Sprintf("n=%d", n))
	})
	e.GET("/read", func(c echo.Context) error {
		s := echosession.Get(c)
		return c.String(http.StatusOK, fmt.Sprintf("n=%d new=%t", getInt(s, "n"), s.IsNew()))
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
	e.GET("/read", func(c echo.Context) error { return c.String(http.StatusOK, getString(echosession.Get(c), "by")) })
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
	e.GET("/", func(c echo.Context) error { return c.String(http.StatusOK, getString(echosession.Get(c), "before")) })
	c := newClient(t, serve(t, e))
	if _, body := c.get("/"); body != "" {
		t.Fatalf("first request: %q", body)
	}
	if _, body := c.get("/"); body != "yes" {
		t.Errorf("the change made in a Before function was lost: %q", body)
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
		// The suite covers the other failures; gzip is echo's own.
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

// harness serves the conformance suite's routes through echo v4.
var harness = adaptertest.Harness{
	Stream: true, Hijack: true,
	Serve: func(t testing.TB, ms []*core.Manager, skip string, routes []adaptertest.Route) string {
		e := newEcho()
		e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}))
		for _, m := range ms {
			cfg := echosession.Config{}
			if skip != "" {
				cfg.Skipper = func(c echo.Context) bool { return strings.HasPrefix(c.Request().URL.Path, skip) }
			}
			e.Use(echosession.New(m, cfg))
		}
		for _, rt := range routes {
			h := func(c echo.Context) error {
				s := echosession.Get(c)
				if rt.Manager != nil {
					s = echosession.GetFor(c, rt.Manager)
				}
				a := c.QueryParam("a")
				switch rt.Mode {
				case adaptertest.ModeNothing:
					rt.Do(s, a)
					return nil
				case adaptertest.ModeError:
					rt.Do(s, a)
					return echo.ErrForbidden
				case adaptertest.ModeLate:
					if err := c.String(http.StatusOK, "late"); err != nil {
						return err
					}
					rt.Do(s, a)
					return nil
				case adaptertest.ModePanic:
					rt.Do(s, a)
					panic("boom")
				case adaptertest.ModeStream:
					body := rt.Do(s, a)
					c.Response().WriteHeader(http.StatusOK)
					c.Response().Flush()
					_, err := io.WriteString(c.Response(), body)
					return err
				case adaptertest.ModeHijack:
					body := rt.Do(s, a)
					conn, bw, err := c.Response().Hijack()
					if err != nil {
						return err
					}
					defer conn.Close()
					fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
					return bw.Flush()
				}
				return c.String(http.StatusOK, rt.Do(s, a))
			}
			e.GET(rt.Path, h)
			e.HEAD(rt.Path, h)
		}
		srv := httptest.NewServer(e)
		t.Cleanup(srv.Close)
		return srv.URL
	},
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, harness, adaptertest.Options{})
}

// getInt and getString read a session value as the tests compare it: the zero value
// when it is absent or does not convert.
func getInt(s *core.Session, key string) int       { v, _ := core.Value[int](s, key); return v }
func getString(s *core.Session, key string) string { v, _ := core.Value[string](s, key); return v }
