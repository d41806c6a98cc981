package fibersession_test

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
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/compress"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/hybridsession/hybridsession/adapters/fibersession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/adaptertest"
	"github.com/hybridsession/hybridsession/memcachedtest"
	"github.com/valyala/fasthttp"
)

// quiet drops the log of expected failures (memcached stopped on purpose).
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newStore starts memcached and returns a memcached-only Store on it.
func newStore(t testing.TB) (*core.Store, *memcachedtest.Server) {
	t.Helper()
	return newStoreClock(t, nil)
}

// newStoreClock is newStore with the Store's clock (nil: time.Now).
func newStoreClock(t testing.TB, now func() time.Time) (*core.Store, *memcachedtest.Server) {
	t.Helper()
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}},
		Logger:    quiet,
		Clock:     now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	return store, mc
}

// newManager returns a Manager on a new memcached-only Store. Tests use
// cookie.Insecure so that the cookie jar sends the cookie over plain HTTP.
func newManager(t testing.TB, cookie core.CookieConfig) (*core.Manager, *memcachedtest.Server) {
	t.Helper()
	store, mc := newStore(t)
	m, err := core.New(core.Config{Store: store, Cookie: cookie})
	if err != nil {
		t.Fatal(err)
	}
	return m, mc
}

func newApp() *fiber.App {
	return fiber.New(fiber.Config{DisableStartupMessage: true})
}

// routes counts how often its handlers ran.
type routes struct {
	runs atomic.Int64
}

// newApp returns the routes the tests drive, behind the middleware.
func (rt *routes) newApp(m *core.Manager, cfg fibersession.Config) *fiber.App {
	app := newApp()
	app.Use(fibersession.New(m, cfg))
	app.Use(func(c *fiber.Ctx) error { rt.runs.Add(1); return c.Next() })
	app.Get("/incr", func(c *fiber.Ctx) error {
		s := fibersession.Get(c)
		n := getInt(s, "n") + 1
		s.Put("n", n)
		return c.SendString(fmt.Sprintf("n=%d", n))
	})
	app.Get("/read", func(c *fiber.Ctx) error {
		s := fibersession.Get(c)
		return c.SendString(fmt.Sprintf("n=%d new=%t", getInt(s, "n"), s.IsNew()))
	})
	app.Get("/put/:key", func(c *fiber.Ctx) error {
		fibersession.Get(c).Put(c.Params("key"), true)
		return c.SendString("ok")
	})
	app.Get("/keys", func(c *fiber.Ctx) error {
		return c.SendString(strings.Join(fibersession.Get(c).Keys(), ","))
	})
	app.Get("/destroy", func(c *fiber.Ctx) error {
		if err := fibersession.Get(c).Destroy(c.UserContext()); err != nil {
			return err
		}
		return c.SendString("destroyed")
	})
	app.Get("/renew", func(c *fiber.Ctx) error {
		fibersession.Get(c).RenewToken()
		return c.SendString("renewed")
	})
	return app
}

// serve runs app on a loopback listener until the test ends and returns
// its base URL.
func serve(t *testing.T, app *fiber.App) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = app.Listener(ln)
	}()
	t.Cleanup(func() {
		_ = app.Shutdown()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// client is a browser: an http.Client with a cookie jar.
type client struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newClient(t *testing.T, base string) *client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, base: base, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// get requests path and returns the response with its body read.
func (c *client) get(path string) (*http.Response, string) {
	c.t.Helper()
	return do(c.t, c.hc, c.base+path, "session", "")
}

// cookie returns the value of the cookie name the jar holds, "" when none.
func (c *client) cookie(name string) string {
	u, _ := url.Parse(c.base)
	for _, ck := range c.hc.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// do sends a GET with an optional cookie name=value, bypassing any jar.
func do(t *testing.T, hc *http.Client, u, name, value string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "gzip") // gzip stays visible to the tests
	if value != "" {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
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

func findCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// headerHas reports whether a comma-separated header of resp lists v.
func headerHas(resp *http.Response, name, v string) bool {
	for _, line := range resp.Header.Values(name) {
		for _, item := range strings.Split(line, ",") {
			if strings.TrimSpace(item) == v {
				return true
			}
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
		handler fiber.Handler
		status  int
		body    string
	}{
		{"SendString", func(c *fiber.Ctx) error { return c.SendString("hello") }, http.StatusOK, "hello"},
		{"Write", func(c *fiber.Ctx) error { _, err := c.Write([]byte("raw")); return err }, http.StatusOK, "raw"},
		{"JSON with status", func(c *fiber.Ctx) error {
			return c.Status(http.StatusCreated).JSON(fiber.Map{"ok": true})
		}, http.StatusCreated, `{"ok":true}`},
		{"SendStatus", func(c *fiber.Ctx) error { return c.SendStatus(http.StatusNoContent) }, http.StatusNoContent, ""},
		{"nothing written", func(c *fiber.Ctx) error { return nil }, http.StatusOK, ""},
		{"fiber.Error returned", func(c *fiber.Ctx) error { return fiber.ErrForbidden }, http.StatusForbidden, "Forbidden"},
		{"plain error returned", func(c *fiber.Ctx) error { return errors.New("handler failed") }, http.StatusInternalServerError, "handler failed"},
		{"body stream", func(c *fiber.Ctx) error {
			c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
				_, _ = w.WriteString("streamed")
			})
			return nil
		}, http.StatusOK, "streamed"},
	}
	app := newApp()
	app.Use(fibersession.New(m, fibersession.Config{}))
	app.Get("/read", func(c *fiber.Ctx) error { return c.SendString(getString(fibersession.Get(c), "by")) })
	for i, tt := range tests {
		app.Get(fmt.Sprintf("/t%d", i), func(c *fiber.Ctx) error {
			fibersession.Get(c).Put("by", tt.name)
			return tt.handler(c)
		})
	}
	base := serve(t, app)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, base)
			resp, body := c.get(fmt.Sprintf("/t%d", i))
			if resp.StatusCode != tt.status || body != tt.body {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tt.status, tt.body)
			}
			if findCookie(resp, "session") == nil {
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
		// The suite covers the other failures; compress is fiber's own.
		{"save fails under compress", false, "/big", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, mc := newManager(t, core.CookieConfig{Insecure: true})
			var rt routes
			app := rt.newApp(m, fibersession.Config{})
			app.Get("/silent", func(c *fiber.Ctx) error { fibersession.Get(c).Put("k", 1); return nil })
			app.Get("/error", func(c *fiber.Ctx) error {
				fibersession.Get(c).Put("k", 1)
				return fiber.ErrForbidden
			})
			app.Get("/big", compress.New(), func(c *fiber.Ctx) error {
				fibersession.Get(c).Put("k", 1)
				return c.SendString(strings.Repeat("handler output ", 1000))
			})
			c := newClient(t, serve(t, app))
			if tt.existing {
				c.get("/incr")
			}
			mc.Stop()
			before := rt.runs.Load()
			resp, body := c.get(tt.path)
			if resp.StatusCode != http.StatusServiceUnavailable || body != "Service Unavailable" {
				t.Errorf("got %d %q, want 503 from fiber's error handler", resp.StatusCode, body)
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
	app := rt.newApp(m, fibersession.Config{ErrorHandler: func(c *fiber.Ctx, err error) error {
		got.Store(err)
		// Write appends to the body: the handler's must be gone.
		_, werr := c.Status(http.StatusTeapot).WriteString("sessions are down")
		return werr
	}})
	c := newClient(t, serve(t, app))
	mc.Stop()
	resp, body := c.get("/incr")
	if resp.StatusCode != http.StatusTeapot || body != "sessions are down" {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
	if err, _ := got.Load().(error); !errors.Is(err, core.ErrUnavailable) {
		t.Errorf("error handler got %v, want core.ErrUnavailable", err)
	}
}

// TestDefaultError checks the error the middleware hands to fiber: a
// *fiber.Error for fiber, the cause for logs, nothing internal in Error.
func TestDefaultError(t *testing.T) {
	m, mc := newManager(t, core.CookieConfig{Insecure: true})
	var got atomic.Value
	app := fiber.New(fiber.Config{DisableStartupMessage: true, ErrorHandler: func(c *fiber.Ctx, err error) error {
		got.Store(err)
		return fiber.DefaultErrorHandler(c, err)
	}})
	app.Use(fibersession.New(m, fibersession.Config{}))
	app.Get("/", func(c *fiber.Ctx) error { fibersession.Get(c).Put("k", 1); return nil })
	c := newClient(t, serve(t, app))
	mc.Stop()
	c.get("/")
	err, _ := got.Load().(error)
	var fe *fiber.Error
	if !errors.As(err, &fe) || fe.Code != http.StatusServiceUnavailable {
		t.Errorf("errors.As(%v, *fiber.Error) = %v, want code 503", err, fe)
	}
	if !errors.Is(err, core.ErrUnavailable) {
		t.Errorf("%v does not wrap core.ErrUnavailable", err)
	}
	if err != nil && err.Error() != "Service Unavailable" {
		t.Errorf("Error() = %q, want only the status text", err.Error())
	}
}

func TestContextAndGet(t *testing.T) {
	m, _ := newManager(t, core.CookieConfig{Insecure: true})
	app := newApp()
	app.Get("/without", func(c *fiber.Ctx) error {
		return c.SendString(fmt.Sprint(fibersession.Get(c) == nil && core.FromContext(c.UserContext()) == nil))
	})
	app.Get("/with", fibersession.New(m, fibersession.Config{}), func(c *fiber.Ctx) error {
		s := fibersession.Get(c)
		return c.SendString(fmt.Sprint(s != nil && core.FromContext(c.UserContext()) == s))
	})
	c := newClient(t, serve(t, app))
	for _, path := range []string{"/without", "/with"} {
		if _, body := c.get(path); body != "true" {
			t.Errorf("%s: %s", path, body)
		}
	}
}

// TestCookieValueCopied checks that the token the session keeps does not
// change when fasthttp reuses the request buffer for the next request.
func TestCookieValueCopied(t *testing.T) {
	m, _ := newManager(t, core.CookieConfig{Insecure: true})
	var rt routes
	h := rt.newApp(m, fibersession.Config{}).Handler()
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/incr")
	h(&ctx)
	token := string(ctx.Response.Header.PeekCookie("session"))
	var ck fasthttp.Cookie
	if err := ck.Parse(token); err != nil {
		t.Fatal(err)
	}
	tok := string(ck.Value())

	// Keep one session past its request, then reuse the buffers.
	app := newApp()
	var kept *core.Session
	app.Use(fibersession.New(m, fibersession.Config{}))
	app.Get("/", func(c *fiber.Ctx) error { kept = fibersession.Get(c); return nil })
	h2 := app.Handler()
	var ctx2 fasthttp.RequestCtx
	ctx2.Request.SetRequestURI("/")
	ctx2.Request.Header.SetCookie("session", tok)
	h2(&ctx2)
	ctx2.Request.Header.SetCookie("session", strings.Repeat("x", len(tok)))
	if kept.Token() != tok {
		t.Errorf("kept session token changed to %q", kept.Token())
	}
}

// harness serves the conformance suite's routes through fiber v2.
var harness = adaptertest.Harness{
	Buffered: true, Stream: true,
	Serve: func(t testing.TB, ms []*core.Manager, skip string, routes []adaptertest.Route) string {
		app := newApp()
		app.Use(recover.New())
		for _, m := range ms {
			cfg := fibersession.Config{}
			if skip != "" {
				cfg.Next = func(c *fiber.Ctx) bool { return strings.HasPrefix(c.Path(), skip) }
			}
			app.Use(fibersession.New(m, cfg))
		}
		for _, rt := range routes {
			app.Get(rt.Path, func(c *fiber.Ctx) error {
				s := fibersession.Get(c)
				if rt.Manager != nil {
					s = fibersession.GetFor(c, rt.Manager)
				}
				a := c.Query("a")
				switch rt.Mode {
				case adaptertest.ModeNothing:
					rt.Do(s, a)
					return nil
				case adaptertest.ModeError:
					rt.Do(s, a)
					return fiber.ErrForbidden
				case adaptertest.ModeLate:
					if err := c.SendString("late"); err != nil {
						return err
					}
					rt.Do(s, a)
					return nil
				case adaptertest.ModePanic:
					rt.Do(s, a)
					panic("boom")
				case adaptertest.ModeStream:
					body := rt.Do(s, a)
					c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
						_, _ = w.WriteString(body)
						_ = w.Flush()
					})
					return nil
				}
				return c.SendString(rt.Do(s, a))
			})
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = app.Listener(ln) }()
		t.Cleanup(func() { _ = app.Shutdown() })
		return "http://" + ln.Addr().String()
	},
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, harness, adaptertest.Options{})
}

// getInt and getString read a session value as the tests compare it: the zero value
// when it is absent or does not convert.
func getInt(s *core.Session, key string) int       { v, _ := core.Value[int](s, key); return v }
func getString(s *core.Session, key string) string { v, _ := core.Value[string](s, key); return v }
