package ginsession_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/adapters/ginsession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// A flash set before a redirect is shown once on the page redirected to;
// remember-me gives that session alone a persistent cookie; an oversized
// session answers 413.
func TestFlashRememberMeAndTooLarge(t *testing.T) {
	m, _ := newManager(t, core.CookieConfig{Insecure: true, SessionOnly: true})
	r := gin.New()
	r.Use(ginsession.New(m, ginsession.Config{}))
	r.GET("/save", func(c *gin.Context) {
		ginsession.Get(c).AddFlash("success", "Saved.")
		c.Redirect(http.StatusSeeOther, "/show")
	})
	r.GET("/show", func(c *gin.Context) {
		var b strings.Builder
		for _, f := range ginsession.Get(c).Flashes() {
			b.WriteString(f.Kind + ":" + f.Message + ";")
		}
		c.String(http.StatusOK, b.String())
	})
	r.GET("/login", func(c *gin.Context) {
		s := ginsession.Get(c)
		s.RenewToken()
		s.Put("user", "ada")
		if c.Query("remember") != "" {
			s.RememberMe(30 * 24 * time.Hour)
		}
		c.String(http.StatusOK, "ok")
	})
	r.GET("/big", func(c *gin.Context) {
		ginsession.Get(c).Put("big", strings.Repeat("x", 2<<20))
		c.String(http.StatusOK, "handler body")
	})
	srv := serve(t, r)

	c := newClient(t, srv)
	if _, body := c.get("/save"); body != "success:Saved.;" {
		t.Fatalf("page after the redirect: %q", body)
	}
	if _, body := c.get("/show"); body != "" {
		t.Fatalf("flash shown twice: %q", body)
	}

	resp, _ := newClient(t, srv).get("/login")
	if ck := sessionCookie(resp); ck == nil || ck.MaxAge != 0 || !ck.Expires.IsZero() {
		t.Fatalf("cookie without remember-me: %+v, want a browser-session cookie", ck)
	}
	resp, _ = newClient(t, srv).get("/login?remember=1")
	ck := sessionCookie(resp)
	if ck == nil || ck.MaxAge < int((30*24*time.Hour-time.Minute)/time.Second) || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Fatalf("remember-me cookie: %+v, want HttpOnly, Lax, Max-Age about 30 days", ck)
	}

	resp, body := newClient(t, srv).get("/big")
	if resp.StatusCode != http.StatusRequestEntityTooLarge || strings.Contains(body, "handler body") {
		t.Fatalf("oversized session: %d %q, want 413 without the handler's body", resp.StatusCode, body)
	}
}

// A Secure cookie set on a plain-HTTP request is logged once.
func TestPlainHTTPSecureCookieWarnsOnce(t *testing.T) {
	var logs bytes.Buffer
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	store, err := core.NewStore(core.StoreConfig{Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	m, err := core.New(core.Config{Store: store, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	r.Use(ginsession.New(m, ginsession.Config{}))
	r.GET("/", func(c *gin.Context) { ginsession.Get(c).Put("k", "v") })
	srv := serve(t, r)
	newClient(t, srv).get("/")
	newClient(t, srv).get("/")
	if n := strings.Count(logs.String(), "plain-HTTP"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.String())
	}
}
