package fibersession_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/hybridsession/hybridsession/adapters/fibersession"
	"github.com/hybridsession/hybridsession/core"
)

func TestPlainHTTPSecureCookieWarnsOnce(t *testing.T) {
	var logs bytes.Buffer
	m, err := core.New(core.Config{Store: mustStore(t), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
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
