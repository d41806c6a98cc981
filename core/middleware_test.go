package core_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newManager returns a Manager on a memcached-only Store (the middleware
// does not care which tiers there are).
func newManager(t *testing.T, mc *memcachedtest.Server, mod func(*core.Config)) *core.Manager {
	t.Helper()
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}, BreakerCooldown: 20 * time.Millisecond},
		Logger:    quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(context.Background()) })
	cfg := core.Config{Store: store, Logger: quiet, Cookie: core.CookieConfig{Insecure: true}}
	if mod != nil {
		mod(&cfg)
	}
	m, err := core.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func jarClient(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 5 * time.Second}
}

func do(t *testing.T, c *http.Client, url string) *http.Response {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func body(t *testing.T, r *http.Response) string {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandlerRoundTripAndCookie(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	m := newManager(t, mc, func(c *core.Config) { c.Cookie = core.CookieConfig{} }) // defaults: Secure
	mux := http.NewServeMux()
	mux.HandleFunc("/inc", func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		n := s.GetInt("n") + 1
		s.Put("n", n)
		fmt.Fprint(w, n) // body first: the cookie must still go out
	})
	mux.HandleFunc("/peek", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, core.FromContext(r.Context()).GetInt("n"))
	})
	srv := httptest.NewServer(m.Handler(mux))
	defer srv.Close()

	c := &http.Client{}
	if r := do(t, c, srv.URL+"/peek"); r.Header.Get("Set-Cookie") != "" {
		t.Fatalf("a visitor who wrote nothing got a cookie: %q", r.Header.Get("Set-Cookie"))
	}
	r := do(t, c, srv.URL+"/inc")
	cookies := r.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("Set-Cookie headers: %v", r.Header.Values("Set-Cookie"))
	}
	ck := cookies[0]
	if ck.Name != "session" || !core.ValidToken(ck.Value) || !ck.HttpOnly || !ck.Secure ||
		ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.MaxAge < 23*3600 {
		t.Fatalf("cookie %+v", ck)
	}
	if r.Header.Get("Vary") != "Cookie" {
		t.Fatalf("Vary = %q", r.Header.Get("Vary"))
	}
	for want := 2; want <= 3; want++ {
		req, _ := http.NewRequest("GET", srv.URL+"/inc", nil)
		req.AddCookie(&http.Cookie{Name: "session", Value: ck.Value})
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if got := body(t, resp); got != fmt.Sprint(want) {
			t.Fatalf("counter %s, want %d", got, want)
		}
		resp.Body.Close()
		if resp.Header.Get("Set-Cookie") != "" {
			t.Fatal("an existing session's cookie was re-sent without need")
		}
	}
}

func TestHandlerErrorsGoToErrorHandlerNotAfterBody(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	m := newManager(t, mc, nil)
	mux := http.NewServeMux()
	mux.HandleFunc("/inc", func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		s.Put("n", s.GetInt("n")+1)
		fmt.Fprint(w, "handler body")
	})
	srv := httptest.NewServer(m.Handler(mux))
	defer srv.Close()
	c := jarClient(t)
	if r := do(t, c, srv.URL+"/inc"); r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	mc.Stop()                // no durable tier: the store is unavailable
	for i := 0; i < 5; i++ { // through the breaker opening and after
		r := do(t, c, srv.URL+"/inc")
		b := body(t, r)
		if r.StatusCode != http.StatusServiceUnavailable || strings.Contains(b, "handler body") {
			t.Fatalf("request %d: status %d body %q, want a bare 503", i, r.StatusCode, b)
		}
	}
	mc.Restart()
	// After the breaker's probe closes it, requests succeed again (a new session).
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := do(t, c, srv.URL+"/inc")
		if r.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d after memcached came back", r.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHandlerFlushKeepsStreaming(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	m := newManager(t, mc, nil)
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		core.FromContext(r.Context()).Put("k", "v")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush through the session writer: %v", err)
		}
		fmt.Fprint(w, "streamed")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if !rec.Flushed || rec.Header().Get("Set-Cookie") == "" || rec.Body.String() != "streamed" {
		t.Fatalf("flushed=%v cookie=%q body=%q", rec.Flushed, rec.Header().Get("Set-Cookie"), rec.Body.String())
	}
}

func TestNewValidatesConfig(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	store, err := core.NewStore(core.StoreConfig{Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(context.Background())
	bad := []core.Config{
		{},
		{Store: store, IdleTimeout: time.Minute, TouchInterval: time.Minute},
		{Store: store, IdleTimeout: -1},
		{Store: store, Cookie: core.CookieConfig{Name: "bad name"}},
	}
	for i, cfg := range bad {
		if _, err := core.New(cfg); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
	if _, err := core.NewStore(core.StoreConfig{}); err != core.ErrNoStore {
		t.Errorf("NewStore without tiers: %v", err)
	}
	if _, err := core.NewStore(core.StoreConfig{Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}, KeyPrefix: "a b"}}); err == nil {
		t.Error("key prefix with a space accepted")
	}
}
