package fiber3session_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/recover"
	"github.com/hybridsession/hybridsession/adapters/fiber3session"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/adaptertest"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/gormtest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// listen serves app on a loopback port until t ends and returns its URL.
func listen(t testing.TB, app *fiber.App) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln, fiber.ListenConfig{DisableStartupMessage: true}) }()
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second) })
	return "http://" + ln.Addr().String()
}

// harness serves the conformance suite's routes through fiber v3.
var harness = adaptertest.Harness{
	Buffered: true, Stream: true, EarlyHints: true,
	Serve: func(t testing.TB, ms []*core.Manager, skip string, routes []adaptertest.Route) string {
		app := fiber.New()
		app.Use(recover.New())
		for _, m := range ms {
			cfg := fiber3session.Config{}
			if skip != "" {
				cfg.Next = func(c fiber.Ctx) bool { return strings.HasPrefix(c.Path(), skip) }
			}
			app.Use(fiber3session.New(m, cfg))
		}
		for _, rt := range routes {
			app.Get(rt.Path, func(c fiber.Ctx) error {
				s := fiber3session.Get(c)
				if rt.Manager != nil {
					s = fiber3session.GetFor(c, rt.Manager)
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
					return c.SendStreamWriter(func(w *bufio.Writer) {
						_, _ = w.WriteString(body)
						_ = w.Flush()
					})
				case adaptertest.ModeEarlyHints:
					if err := c.SendEarlyHints([]string{"</app.css>; rel=preload; as=style"}); err != nil {
						return err
					}
				}
				return c.SendString(rt.Do(s, a))
			})
		}
		return listen(t, app)
	},
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
				table := gormtest.UniqueTable("f3s_")
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

// newStore starts memcached and returns a memcached-only Store.
func newStore(t testing.TB) (*core.Store, *memcachedtest.Server) {
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
	return store, mc
}

func newManager(t testing.TB) (*core.Manager, *memcachedtest.Server) {
	t.Helper()
	store, mc := newStore(t)
	m, err := core.New(core.Config{Store: store, Cookie: core.CookieConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	return m, mc
}

func TestCustomErrorHandler(t *testing.T) {
	m, mc := newManager(t)
	var got error
	app := fiber.New()
	app.Use(fiber3session.New(m, fiber3session.Config{ErrorHandler: func(c fiber.Ctx, err error) error {
		got = err
		return c.Status(http.StatusTeapot).SendString("sessions are down")
	}}))
	app.Get("/", func(c fiber.Ctx) error {
		fiber3session.Get(c).Put("k", 1)
		return c.SendString("handler")
	})
	mc.Stop()
	resp, err := app.Test(httpGet("/"), fiber.TestConfig{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTeapot || string(b) != "sessions are down" {
		t.Errorf("got %d %q", resp.StatusCode, b)
	}
	if !errors.Is(got, core.ErrUnavailable) {
		t.Errorf("error handler got %v, want core.ErrUnavailable", got)
	}
}

// TestDefaultError checks the default error: fiber's status and message,
// the cause reachable with errors.Is, nothing internal in the body.
func TestDefaultError(t *testing.T) {
	m, mc := newManager(t)
	var seen error
	app := fiber.New(fiber.Config{ErrorHandler: func(c fiber.Ctx, err error) error {
		seen = err
		return fiber.DefaultErrorHandler(c, err)
	}})
	app.Use(fiber3session.New(m, fiber3session.Config{}))
	app.Get("/", func(c fiber.Ctx) error { fiber3session.Get(c).Put("k", 1); return nil })
	mc.Stop()
	resp, err := app.Test(httpGet("/"), fiber.TestConfig{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	var fe *fiber.Error
	if resp.StatusCode != 503 || string(b) != "Service Unavailable" || !errors.As(seen, &fe) || fe.Code != 503 ||
		!errors.Is(seen, core.ErrUnavailable) {
		t.Errorf("got %d %q, error %v", resp.StatusCode, b, seen)
	}
}

// TestAccessors checks Get, GetFor and the context lookups.
func TestAccessors(t *testing.T) {
	m, _ := newManager(t)
	app := fiber.New()
	app.Get("/without", func(c fiber.Ctx) error {
		return c.SendString(boolString(fiber3session.Get(c) == nil && fiber3session.GetFor(c, m) == nil))
	})
	app.Get("/with", fiber3session.New(m, fiber3session.Config{}), func(c fiber.Ctx) error {
		s := fiber3session.Get(c)
		return c.SendString(boolString(s != nil && fiber3session.GetFor(c, m) == s &&
			m.FromContext(c) == s && core.FromContext(c.Context()) == s))
	})
	for _, path := range []string{"/without", "/with"} {
		resp, err := app.Test(httpGet(path))
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(resp.Body); string(b) != "true" {
			t.Errorf("%s: %s", path, b)
		}
	}
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func httpGet(path string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://example.com"+path, nil)
	return r
}
