package ginsession_test

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

	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/adapters/ginsession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/adaptertest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

func init() { gin.SetMode(gin.TestMode) }

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

// handlerRuns counts how often the routes of newRouter ran.
type routes struct {
	runs atomic.Int64
}

// newRouter returns the routes the tests drive.
func (rt *routes) newRouter(m *core.Manager, cfg ginsession.Config) *gin.Engine {
	r := gin.New()
	r.Use(ginsession.New(m, cfg))
	r.Use(func(c *gin.Context) { rt.runs.Add(1) })
	r.GET("/incr", func(c *gin.Context) {
		s := ginsession.Get(c)
		n := getInt(s, "n") + 1
		s.Put("n", n)
		c.String(http.StatusOK, "n=%d", n)
	})
	r.GET("/read", func(c *gin.Context) {
		s := ginsession.Get(c)
		c.String(http.StatusOK, "n=%d new=%t", getInt(s, "n"), s.IsNew())
	})
	r.GET("/put/:key", func(c *gin.Context) {
		ginsession.Get(c).Put(c.Param("key"), true)
		c.String(http.StatusOK, "ok")
	})
	r.GET("/keys", func(c *gin.Context) {
		c.String(http.StatusOK, strings.Join(ginsession.Get(c).Keys(), ","))
	})
	r.GET("/destroy", func(c *gin.Context) {
		if err := ginsession.Get(c).Destroy(c.Request.Context()); err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		c.String(http.StatusOK, "destroyed")
	})
	r.GET("/renew", func(c *gin.Context) {
		ginsession.Get(c).RenewToken()
		c.String(http.StatusOK, "renewed")
	})
	return r
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
		handler gin.HandlerFunc
		status  int
		body    string
	}{
		{"String", func(c *gin.Context) { c.String(http.StatusOK, "hello") }, http.StatusOK, "hello"},
		{"Writer.Write", func(c *gin.Context) { _, _ = c.Writer.Write([]byte("raw")) }, http.StatusOK, "raw"},
		{"JSON with status", func(c *gin.Context) { c.JSON(http.StatusCreated, gin.H{"ok": true}) }, http.StatusCreated, `{"ok":true}`},
		{"AbortWithStatus", func(c *gin.Context) { c.AbortWithStatus(http.StatusUnauthorized) }, http.StatusUnauthorized, ""},
		{"Status without body", func(c *gin.Context) { c.Status(http.StatusAccepted) }, http.StatusAccepted, ""},
		{"nothing written", func(c *gin.Context) {}, http.StatusOK, ""},
		{"Flush then write", func(c *gin.Context) {
			c.Writer.Flush()
			_, _ = c.Writer.WriteString("streamed")
		}, http.StatusOK, "streamed"},
		{"ResponseController flush", func(c *gin.Context) {
			_ = http.NewResponseController(c.Writer).Flush()
			_, _ = c.Writer.WriteString("rc")
		}, http.StatusOK, "rc"},
	}
	r := gin.New()
	r.Use(ginsession.New(m, ginsession.Config{}))
	r.GET("/read", func(c *gin.Context) { c.String(http.StatusOK, "%v", getString(ginsession.Get(c), "by")) })
	for i, tt := range tests {
		path := fmt.Sprintf("/t%d", i)
		r.GET(path, func(c *gin.Context) {
			ginsession.Get(c).Put("by", tt.name)
			tt.handler(c)
		})
	}
	srv := serve(t, r)
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

// TestStoreUnavailable stops memcached under a Store without a durable tier,
// so loads and saves fail with core.ErrUnavailable.
func TestStoreUnavailable(t *testing.T) {
	tests := []struct {
		name       string
		existing   bool // the client has a session before memcached stops
		path       string
		handlerRun bool
	}{
		// The suite covers the other failures; this is gin's own.
		{"save fails on AbortWithStatus", false, "/abort", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, mc := newManager(t, core.CookieConfig{Insecure: true})
			var rt routes
			r := rt.newRouter(m, ginsession.Config{})
			r.GET("/silent", func(c *gin.Context) { ginsession.Get(c).Put("k", 1) })
			r.GET("/abort", func(c *gin.Context) {
				ginsession.Get(c).Put("k", 1)
				c.AbortWithStatus(http.StatusForbidden)
				_, _ = c.Writer.WriteString("after abort")
			})
			srv := serve(t, r)
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
			if body != "" {
				t.Errorf("body %q, want none (the default error handler writes no body)", body)
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
	srv := serve(t, rt.newRouter(m, ginsession.Config{ErrorHandler: func(c *gin.Context, err error) {
		got.Store(err)
		c.JSON(http.StatusTeapot, gin.H{"error": "sessions are down"})
	}}))
	mc.Stop()
	resp, body := newClient(t, srv).get("/incr")
	if resp.StatusCode != http.StatusTeapot || body != `{"error":"sessions are down"}` {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
	if err, _ := got.Load().(error); !errors.Is(err, core.ErrUnavailable) {
		t.Errorf("error handler got %v, want core.ErrUnavailable", err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q: the error handler's, not the handler's, must win", ct)
	}
}

func TestContextAndGet(t *testing.T) {
	m, _ := newManager(t, core.CookieConfig{Insecure: true})
	r := gin.New()
	r.GET("/without", func(c *gin.Context) {
		c.String(http.StatusOK, "%t", ginsession.Get(c) == nil && core.FromContext(c.Request.Context()) == nil)
	})
	r.GET("/with", ginsession.New(m, ginsession.Config{}), func(c *gin.Context) {
		s := ginsession.Get(c)
		c.String(http.StatusOK, "%t", s != nil && core.FromContext(c.Request.Context()) == s &&
			ginsession.GetFor(c, m) == s && m.FromContext(c.Request.Context()) == s)
	})
	// Given the *gin.Context itself, core.FromContext finds the session only
	// when the engine forwards lookups to the request's context; Get, the
	// documented accessor, needs no such setting.
	r.GET("/gin-context", ginsession.New(m, ginsession.Config{}), func(c *gin.Context) {
		c.String(http.StatusOK, "%t", ginsession.Get(c) != nil && core.FromContext(c) == nil)
	})
	fallback := gin.New()
	fallback.ContextWithFallback = true
	fallback.GET("/gin-context", ginsession.New(m, ginsession.Config{}), func(c *gin.Context) {
		c.String(http.StatusOK, "%t", core.FromContext(c) == ginsession.Get(c) && m.FromContext(c) == ginsession.Get(c))
	})
	for _, h := range []http.Handler{r, fallback} {
		c := newClient(t, serve(t, h))
		paths := []string{"/gin-context"}
		if h == http.Handler(r) {
			paths = []string{"/without", "/with", "/gin-context"}
		}
		for _, path := range paths {
			if _, body := c.get(path); body != "true" {
				t.Errorf("%s: %s", path, body)
			}
		}
	}
}

// harness serves the conformance suite's routes through gin.
var harness = adaptertest.Harness{
	Stream: true, Hijack: true,
	Serve: func(t testing.TB, ms []*core.Manager, skip string, routes []adaptertest.Route) string {
		r := gin.New()
		r.Use(gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, _ any) {
			c.AbortWithStatus(http.StatusInternalServerError)
		}))
		for _, m := range ms {
			cfg := ginsession.Config{}
			if skip != "" {
				cfg.SkipPaths = []string{skip}
			}
			r.Use(ginsession.New(m, cfg))
		}
		for _, rt := range routes {
			h := func(c *gin.Context) {
				s := ginsession.Get(c)
				if rt.Manager != nil {
					s = ginsession.GetFor(c, rt.Manager)
				}
				a := c.Query("a")
				switch rt.Mode {
				case adaptertest.ModeNothing:
					rt.Do(s, a)
				case adaptertest.ModeError:
					rt.Do(s, a)
					c.AbortWithStatus(http.StatusForbidden)
				case adaptertest.ModeLate:
					c.String(http.StatusOK, "late")
					c.Writer.Flush()
					rt.Do(s, a)
				case adaptertest.ModePanic:
					rt.Do(s, a)
					panic("boom")
				case adaptertest.ModeStream:
					body := rt.Do(s, a)
					c.Status(http.StatusOK)
					c.Writer.Flush()
					_, _ = c.Writer.WriteString(body)
				case adaptertest.ModeHijack:
					body := rt.Do(s, a)
					conn, bw, err := c.Writer.Hijack()
					if err != nil {
						t.Errorf("hijack: %v", err)
						return
					}
					defer conn.Close()
					fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
					_ = bw.Flush()
				default:
					c.String(http.StatusOK, rt.Do(s, a))
				}
			}
			r.GET(rt.Path, h)
			r.HEAD(rt.Path, h)
		}
		srv := httptest.NewServer(r)
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
