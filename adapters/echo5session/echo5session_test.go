package echo5session_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hybridsession/hybridsession/adapters/echo5session"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/adaptertest"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/gormtest"
	"github.com/hybridsession/hybridsession/memcachedtest"
	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// harness serves the conformance suite's routes through echo v5.
var harness = adaptertest.Harness{
	Stream: true, Hijack: true,
	Serve: func(t testing.TB, ms []*core.Manager, skip string, routes []adaptertest.Route) string {
		// Auto HEAD: echo answers HEAD with the GET handler behind a
		// writer that holds the status back.
		e := echo.NewWithConfig(echo.Config{Logger: quiet,
			Router: echo.NewRouter(echo.RouterConfig{AutoHandleHEAD: true})})
		e.Use(middleware.Recover())
		for _, m := range ms {
			cfg := echo5session.Config{}
			if skip != "" {
				cfg.Skipper = func(c *echo.Context) bool { return strings.HasPrefix(c.Request().URL.Path, skip) }
			}
			e.Use(echo5session.New(m, cfg))
		}
		for _, rt := range routes {
			e.GET(rt.Path, func(c *echo.Context) error {
				s := echo5session.Get(c)
				if rt.Manager != nil {
					s = echo5session.GetFor(c, rt.Manager)
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
					http.NewResponseController(c.Response()).Flush()
					_, err := io.WriteString(c.Response(), body)
					return err
				case adaptertest.ModeHijack:
					body := rt.Do(s, a)
					conn, bw, err := http.NewResponseController(c.Response()).Hijack()
					if err != nil {
						return err
					}
					defer conn.Close()
					fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
					return bw.Flush()
				}
				return c.String(http.StatusOK, rt.Do(s, a))
			})
		}
		srv := httptest.NewServer(e)
		t.Cleanup(srv.Close)
		return srv.URL
	},
}

func newEcho() *echo.Echo {
	e := echo.New()
	e.Logger = quiet
	return e
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, harness, adaptertest.Options{})
}

// TestConformanceDurable runs the suite with each database as the durable
// tier behind memcached.
func TestConformanceDurable(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	for _, b := range gormtest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			adaptertest.Run(t, harness, adaptertest.Options{Durable: func(t testing.TB) durable.Tier {
				db := b.Open(t)
				table := gormtest.UniqueTable("e5s_")
				st, err := gormstore.New(db, gormstore.Config{TableName: table})
				if err != nil {
					t.Fatal(err)
				}
				// Registered before the store's own cleanup, so it runs after.
				t.Cleanup(func() { _ = db.Migrator().DropTable(table) })
				return st
			}})
		})
	}
}

// newManager starts memcached and returns a Manager on a memcached-only
// Store with an Insecure cookie.
func newManager(t testing.TB) (*core.Manager, *memcachedtest.Server) {
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
	m, err := core.New(core.Config{Store: store, Cookie: core.CookieConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	return m, mc
}

func get(t *testing.T, h http.Handler, path string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestBeforeFuncsMayChangeSession checks that functions registered with
// the Response's Before run before the session is saved.
func TestBeforeFuncsMayChangeSession(t *testing.T) {
	m, _ := newManager(t)
	e := newEcho()
	e.Use(echo5session.New(m, echo5session.Config{}))
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			r, err := echo.UnwrapResponse(c.Response())
			if err != nil {
				return err
			}
			r.Before(func() { echo5session.Get(c).Put("before", "yes") })
			return next(c)
		}
	})
	e.GET("/", func(c *echo.Context) error { return c.String(http.StatusOK, getString(echo5session.Get(c), "before")) })
	rec := get(t, e, "/")
	cs := rec.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("no cookie: %v", rec.Header())
	}
	if rec := get(t, e, "/", cs[0]); rec.Body.String() != "yes" {
		t.Errorf("the change made in a Before function was lost: %q", rec.Body.String())
	}
}

func TestCustomErrorHandler(t *testing.T) {
	m, mc := newManager(t)
	var got atomic.Value
	e := newEcho()
	e.Use(echo5session.New(m, echo5session.Config{ErrorHandler: func(c *echo.Context, err error) error {
		got.Store(err)
		return echo.NewHTTPError(http.StatusTeapot, "sessions are down").Wrap(err)
	}}))
	e.GET("/", func(c *echo.Context) error {
		echo5session.Get(c).Put("k", 1)
		return c.String(http.StatusOK, "handler")
	})
	mc.Stop()
	rec := get(t, e, "/")
	if rec.Code != http.StatusTeapot || rec.Body.String() != "{\"message\":\"sessions are down\"}\n" {
		t.Errorf("got %d %q", rec.Code, rec.Body.String())
	}
	if err, _ := got.Load().(error); !errors.Is(err, core.ErrUnavailable) {
		t.Errorf("error handler got %v, want core.ErrUnavailable", err)
	}
}

// TestAccessors checks Get and GetFor outside the middleware and against
// core.FromContext inside it.
func TestAccessors(t *testing.T) {
	m, _ := newManager(t)
	e := newEcho()
	e.GET("/without", func(c *echo.Context) error {
		return c.String(http.StatusOK, fmt.Sprint(echo5session.Get(c) == nil && echo5session.GetFor(c, m) == nil))
	})
	e.GET("/with", func(c *echo.Context) error {
		s := echo5session.Get(c)
		return c.String(http.StatusOK, fmt.Sprint(s != nil && echo5session.GetFor(c, m) == s &&
			core.FromContext(c.Request().Context()) == s))
	}, echo5session.New(m, echo5session.Config{}))
	for _, path := range []string{"/without", "/with"} {
		if rec := get(t, e, path); rec.Body.String() != "true" {
			t.Errorf("%s: %s", path, rec.Body.String())
		}
	}
}

// getString read a session value as the tests compare it: the zero value
// when it is absent or does not convert.
func getString(s *core.Session, key string) string { v, _ := core.Value[string](s, key); return v }
