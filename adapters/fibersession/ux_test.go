package fibersession_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hybridsession/hybridsession/adapters/fibersession"
	"github.com/hybridsession/hybridsession/core"
)

// A flash set before a redirect is shown once on the page redirected to;
// remember-me gives that session alone a persistent cookie; an oversized
// session answers 413.
func TestFlashRememberMeAndTooLarge(t *testing.T) {
	m, _ := newManager(t, core.CookieConfig{Insecure: true, SessionOnly: true})
	app := newApp()
	app.Use(fibersession.New(m, fibersession.Config{}))
	app.Get("/save", func(c *fiber.Ctx) error {
		fibersession.Get(c).AddFlash("success", "Saved.")
		return c.Redirect("/show", http.StatusSeeOther)
	})
	app.Get("/show", func(c *fiber.Ctx) error {
		var b strings.Builder
		for _, f := range fibersession.Get(c).Flashes() {
			b.WriteString(f.Kind + ":" + f.Message + ";")
		}
		return c.SendString(b.String())
	})
	app.Get("/login", func(c *fiber.Ctx) error {
		s := fibersession.Get(c)
		s.RenewToken()
		s.Put("user", "ada")
		if c.Query("remember") != "" {
			s.RememberMe(30 * 24 * time.Hour)
		}
		return c.SendString("ok")
	})
	app.Get("/big", func(c *fiber.Ctx) error {
		fibersession.Get(c).Put("big", strings.Repeat("x", 2<<20))
		return c.SendString("handler body")
	})
	base := serve(t, app)

	c := newClient(t, base)
	if _, body := c.get("/save"); body != "success:Saved.;" {
		t.Fatalf("page after the redirect: %q", body)
	}
	if _, body := c.get("/show"); body != "" {
		t.Fatalf("flash shown twice: %q", body)
	}

	resp, _ := newClient(t, base).get("/login")
	if ck := findCookie(resp, "session"); ck == nil || ck.MaxAge != 0 || !ck.Expires.IsZero() {
		t.Fatalf("cookie without remember-me: %+v, want a browser-session cookie", ck)
	}
	resp, _ = newClient(t, base).get("/login?remember=1")
	ck := findCookie(resp, "session")
	if ck == nil || ck.MaxAge < int((30*24*time.Hour-time.Minute)/time.Second) || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Fatalf("remember-me cookie: %+v, want HttpOnly, Lax, Max-Age about 30 days", ck)
	}

	resp, body := newClient(t, base).get("/big")
	if resp.StatusCode != http.StatusRequestEntityTooLarge || strings.Contains(body, "handler body") {
		t.Fatalf("oversized session: %d %q, want 413 without the handler's body", resp.StatusCode, body)
	}
}

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
