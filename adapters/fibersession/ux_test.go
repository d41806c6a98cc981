package fibersession_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/hybridsession/hybridsession/adapters/fibersession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

func TestPlainHTTPSecureCookieWarnsOnce(t *testing.T) {
	var logs bytes.Buffer
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	store, err := core.NewStore(core.StoreConfig{Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	app := newApp()
	app.Use(fibersession.New(m, fibersession.Config{}))
	app.Get("/", func(c *fiber.Ctx) error {
		fibersession.Get(c).Put("k", "v")
		return nil
	})
	base := serve(t, app)
	newClient(t, base).get("/")
	newClient(t, base).get("/")
	if n := strings.Count(logs.String(), "plain-HTTP"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.String())
	}
}

func mustStore(t *testing.T) *core.Store {
	st, _ := newStore(t)
	return st
}
